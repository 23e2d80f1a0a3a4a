"""
postscreen: connection-level zombie defense in front of smtpd.

So far its verdict cache (Postfix's temporary allowlist,
C{postscreen_cache_map}): L{IVerdictCache} providers in SQLite and
memcached, a wrapper that degrades to "no cache", and periodic cleanup.
"""

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
    "CacheCleaner",
    "CacheUnavailable",
    "DegradingCache",
    "MemcacheVerdictCache",
    "SQLiteVerdictCache",
    "Verdicts",
    "cacheFromParameter",
    "parseMemcacheFile",
]
