"""
postscreen: connection-level zombie defense in front of smtpd.

The before-220 core (L{_early}), the dummy SMTP engine (L{_engine}), the
Twisted protocol, factory and service that hand clean clients to smtpd in
the same process, the verdict cache (Postfix's temporary allowlist,
C{postscreen_cache_map}: SQLite or memcached, degrading to "no cache"), and
the values third-party checks exchange with postscreen (see
C{docs/postscreen-checks.md}).
"""

from ._checks import (
    AFTER_GREETING,
    BEFORE_GREETING,
    CheckFail,
    CheckPass,
    CheckResources,
    ClientInfo,
    discoverChecks,
)

from ._cache import (
    CacheCleaner,
    CacheUnavailable,
    DegradingCache,
    MemcacheVerdictCache,
    SQLiteVerdictCache,
    Verdicts,
    cacheFromParameter,
    parseMemcacheFile,
)

__all__ = [
    "AFTER_GREETING",
    "BEFORE_GREETING",
    "CheckFail",
    "CheckPass",
    "CheckResources",
    "ClientInfo",
    "discoverChecks",
    "CacheCleaner",
    "CacheUnavailable",
    "DegradingCache",
    "MemcacheVerdictCache",
    "SQLiteVerdictCache",
    "Verdicts",
    "cacheFromParameter",
    "parseMemcacheFile",
]
