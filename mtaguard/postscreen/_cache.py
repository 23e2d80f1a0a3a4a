# -*- test-case-name: tests.test_postscreen_cache -*-
"""
postscreen's verdict cache (Postfix's "temporary allowlist"), behind
L{IVerdictCache}.

A cache entry maps a client address to its L{Verdicts}: the Unix time until
which each test's pass verdict holds.  The value is stored in exactly the
form Postfix's postscreen stores it (C{postscreen_tests.c}), so that the
entries can be compared with C{postmap -s} output::

    <pregreet>;<dnsbl>;<pipelining>;<non_smtp_command>;<bare_newline>

each a decimal integer: an expiry time in Unix seconds, C{0} for "never
passed" and C{1} for "never passed, the test was disabled when written".

Providers:

 - L{SQLiteVerdictCache}: the embedded default.  Postfix's default
   C{postscreen_cache_map = btree:$data_directory/postscreen_cache} (and
   any C{hash:} or C{lmdb:} path) is mapped to an SQLite database in WAL
   mode at that path plus C{.sqlite}; every SQLite call runs in an
   L{IQueueWorker} (a thread), never in the reactor thread.
 - L{MemcacheVerdictCache}: C{memcache:}, shared by several mtaguard
   instances, through L{twisted.protocols.memcache.MemCacheProtocol}.
 - L{DegradingCache} wraps either so that a failure or a timeout means
   "no cache" (one warning per outage), never a dropped or wrongly passed
   client.

L{cacheFromParameter} chooses the provider from C{postscreen_cache_map};
L{CacheCleaner} runs the periodic cleanup.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any, Callable, TypeVar, cast

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.memcache import MemCacheProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ..config import ConfigurationError, ParameterView, params
from ..interfaces import IQueueWorker, IVerdictCache

T = TypeVar("T")

_log = Logger(namespace="mtaguard.postscreen")

#: Map types whose path is turned into an SQLite file (path + C{.sqlite}).
FILE_MAP_TYPES = ("btree", "hash", "lmdb")

#: SQLite suffix added to a C{btree:}/C{hash:}/C{lmdb:} path.
SQLITE_SUFFIX = ".sqlite"

#: The longest relative TTL memcached accepts; larger values are read as
#: an absolute Unix time (memcached's protocol.txt).
MEMCACHED_MAX_RELATIVE_TTL = 30 * 24 * 3600

#: Postfix's memcache_table defaults.
MEMCACHE_DEFAULT_PORT = 11211
MEMCACHE_DEFAULT_TIMEOUT = 2.0


class CacheUnavailable(Exception):
    """
    The cache did not answer in time (or at all).
    """


@frozen
class Verdicts:
    """
    Per-test expiry times of one client, in Postfix's order.

    Each is a Unix time in seconds until which the client's pass of that
    test holds; C{0} means the test was never passed, C{1} that it was never
    passed and disabled when the entry was written (Postfix's
    C{PSC_TIME_STAMP_NEW} and C{PSC_TIME_STAMP_DISABLED}).
    """

    pregreet: int = 0
    dnsbl: int = 0
    pipelining: int = 0
    non_smtp_command: int = 0
    bare_newline: int = 0
    #: Third-party tests' expiry times, C{(name, time)} sorted by name.
    #: They follow Postfix's five fields as C{;name=time}, which Postfix's
    #: own postscreen ignores when it reads a shared entry.
    extra: tuple[tuple[str, int], ...] = ()

    def toValue(self) -> str:
        """
        @return: the value as Postfix's postscreen stores it: the five
            integers joined by C{;}, then any third-party C{;name=time}.
        """
        fields = [str(t) for t in self.times()]
        fields.extend(f"{name}={time}" for name, time in self.extra)
        return ";".join(fields)

    @classmethod
    def fromValue(cls, value: str) -> Verdicts:
        """
        Parse a value written by L{toValue} (or by Postfix's postscreen).

        @raise ValueError: if C{value} does not start with five
            C{;}-separated non-negative integers, or a further field is not
            C{name=integer}.
        """
        parts = value.strip().split(";")
        head, tail = parts[:5], parts[5:]
        if len(head) != 5 or not all(p.isdigit() and p.isascii() for p in head):
            raise ValueError(f"malformed postscreen cache value: {value[:100]!r}")
        extra: dict[str, int] = {}
        for part in tail:
            name, equals, time = part.partition("=")
            if not equals or not name or not (time.isdigit() and time.isascii()):
                raise ValueError(f"malformed postscreen cache value: {value[:100]!r}")
            extra[name] = int(time)
        a, b, c, d, e = (int(p) for p in head)
        return cls(a, b, c, d, e, tuple(sorted(extra.items())))

    def times(self) -> tuple[int, int, int, int, int]:
        """
        @return: the five expiry times, in Postfix's order.
        """
        return (
            self.pregreet,
            self.dnsbl,
            self.pipelining,
            self.non_smtp_command,
            self.bare_newline,
        )

    def extraTime(self, name: str) -> int:
        """
        @return: the expiry time of the third-party test C{name}; C{0}
            (never passed) when the entry has none.
        """
        return dict(self.extra).get(name, 0)

    def latestExpiry(self) -> int:
        """
        @return: the latest of the expiry times.
        """
        return max([*self.times(), *(time for _, time in self.extra)])

    def isObsolete(self, now: float, retention: int) -> bool:
        """
        @return: whether cleanup drops the entry: every expiry lies more
            than C{retention} seconds before C{now} (Postfix's rule).
        """
        return self.latestExpiry() + retention < now


def _timeout(d: Deferred[T], seconds: float, clock: IReactorTime, what: str) -> Deferred[T]:
    """
    Fail C{d} with L{CacheUnavailable} unless it fires within C{seconds}.
    """

    def timedOut(failure: Failure) -> T:
        failure.trap(DeferredTimeoutError)
        raise CacheUnavailable(f"{what}: no answer within {seconds:g}s")

    return d.addTimeout(seconds, clock).addErrback(timedOut)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS postscreen_cache (
    client TEXT PRIMARY KEY NOT NULL,
    verdicts TEXT NOT NULL,
    latest INTEGER NOT NULL
)
"""


@implementer(IVerdictCache)
class SQLiteVerdictCache:
    """
    The embedded verdict cache: one SQLite database in WAL mode, so that
    several caches (several mtaguard processes) can share the file.

    Every SQLite call runs through C{worker} (a one-at-a-time section
    guards the connection, so a thread pool of any size is fine); the
    reactor side fails a call with L{CacheUnavailable} after C{timeout}
    seconds, and SQLite waits at most C{timeout} for another writer's
    lock.

    @ivar path: the database file.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: IReactorTime,
        worker: IQueueWorker,
        retention: int = 7 * 24 * 3600,
        timeout: float = 5.0,
        name: str | None = None,
    ) -> None:
        self.path = path
        self.name = name if name is not None else f"sqlite:{path}"
        self._clock = clock
        self._worker = worker
        self._retention = retention
        self._timeout = timeout
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        # Called in the worker, under the lock.
        if self._connection is None:
            connection = sqlite3.connect(
                self.path,
                timeout=self._timeout,
                check_same_thread=False,
                isolation_level=None,
            )
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute(_SCHEMA)
                connection.execute(
                    "CREATE INDEX IF NOT EXISTS postscreen_cache_latest"
                    " ON postscreen_cache (latest)"
                )
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _call(self, job: Callable[[sqlite3.Connection], T], what: str) -> Deferred[T]:
        def locked() -> T:
            with self._lock:
                return job(self._connect())

        return _timeout(self._worker.run(locked), self._timeout, self._clock, f"{self.name} {what}")

    def get(self, clientAddress: str) -> Deferred[Verdicts | None]:
        """
        See L{IVerdictCache.get}.  A malformed value reads as no entry.
        """

        def job(connection: sqlite3.Connection) -> Verdicts | None:
            row = connection.execute(
                "SELECT verdicts FROM postscreen_cache WHERE client = ?", (clientAddress,)
            ).fetchone()
            if row is None:
                return None
            try:
                return Verdicts.fromValue(str(row[0]))
            except ValueError:
                return None

        return self._call(job, "lookup")

    def put(self, clientAddress: str, verdicts: Verdicts) -> Deferred[None]:
        """
        See L{IVerdictCache.put}.
        """
        value = verdicts.toValue()
        latest = verdicts.latestExpiry()

        def job(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT OR REPLACE INTO postscreen_cache (client, verdicts, latest)"
                " VALUES (?, ?, ?)",
                (clientAddress, value, latest),
            )

        return self._call(job, "update")

    def cleanup(self) -> Deferred[tuple[int, int]]:
        """
        See L{IVerdictCache.cleanup}: one transaction deletes the entries
        whose latest expiry is more than the retention time ago.
        """
        limit = int(self._clock.seconds()) - self._retention

        def job(connection: sqlite3.Connection) -> tuple[int, int]:
            connection.execute("BEGIN IMMEDIATE")
            try:
                dropped = connection.execute(
                    "DELETE FROM postscreen_cache WHERE latest < ?", (limit,)
                ).rowcount
                (retained,) = connection.execute("SELECT COUNT(*) FROM postscreen_cache").fetchone()
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return int(retained), int(dropped)

        return self._call(job, "cleanup")

    def close(self) -> Deferred[None]:
        """
        See L{IVerdictCache.close}.
        """

        def job() -> None:
            with self._lock:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

        return self._worker.run(job)


class _VerdictProtocol(MemCacheProtocol):
    """
    A memcache connection that tells its cache when it is lost, and aborts
    (rather than waits for a close) when a command times out.
    """

    onLost: Callable[[_VerdictProtocol], None] | None = None

    def timeoutConnection(self) -> None:
        MemCacheProtocol.timeoutConnection(self)
        cast(Any, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        MemCacheProtocol.connectionLost(self, reason)
        if self.onLost is not None:
            self.onLost(self)


@implementer(IVerdictCache)
class MemcacheVerdictCache:
    """
    A verdict cache in a memcached server, shared by every mtaguard
    instance that names it (Postfix's C{memcache:} table).

    One connection, made when first needed and made again on the next call
    after it is lost; the connect and every command are bounded by
    C{timeout} seconds.  An entry is written with the TTL of its longest
    test expiry; an entry whose tests have all expired already is kept for
    what remains of the retention time (C{postscreen_cache_retention_time})
    and not written at all past it.  memcached expires entries itself, so
    L{cleanup} has nothing to do (Postfix's advice: set
    C{postscreen_cache_cleanup_interval = 0} with memcache).

    @ivar keyFormat: the key of an address: C{%s} is replaced with the
        address (Postfix's C{key_format}), after C{prefix}.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        clock: IReactorTime,
        reactor: Any,
        prefix: str = "",
        timeout: float = MEMCACHE_DEFAULT_TIMEOUT,
        retention: int = 7 * 24 * 3600,
        keyFormat: str = "%s",
        maxTTL: int | None = None,
        name: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.name = name if name is not None else f"memcache:inet:{host}:{port}"
        self.prefix = prefix
        self.keyFormat = keyFormat
        self._clock = clock
        self._reactor = reactor
        self._timeout = timeout
        self._retention = retention
        self._maxTTL = maxTTL
        self._protocol: _VerdictProtocol | None = None
        self._connecting: list[Deferred[_VerdictProtocol]] | None = None

    def _key(self, clientAddress: str) -> bytes:
        key = (self.prefix + self.keyFormat.replace("%s", clientAddress).replace("%%", "%")).encode("utf-8")
        if len(key) > MemCacheProtocol.MAX_KEY_LENGTH or any(b <= 0x20 or b == 0x7F for b in key):
            raise ValueError(f"unusable memcache key {key[:100]!r}")
        return key

    def _lost(self, protocol: _VerdictProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    def _connection(self) -> Deferred[_VerdictProtocol]:
        if self._protocol is not None:
            return succeed(self._protocol)
        waiter: Deferred[_VerdictProtocol] = Deferred()
        if self._connecting is not None:
            self._connecting.append(waiter)
            return waiter
        self._connecting = [waiter]
        protocol: _VerdictProtocol = cast(Any, _VerdictProtocol)(timeOut=self._timeout)
        cast(Any, protocol).callLater = self._clock.callLater
        protocol.onLost = self._lost
        endpoint = TCP4ClientEndpoint(self._reactor, self.host, self.port, timeout=max(1, int(self._timeout)))
        connecting = _timeout(
            connectProtocol(endpoint, protocol), self._timeout, self._clock, f"{self.name} connect"
        )

        def done(result: object) -> None:
            waiters, self._connecting = self._connecting or [], None
            if isinstance(result, Failure):
                for w in waiters:
                    w.errback(result)
            else:
                self._protocol = protocol
                for w in waiters:
                    w.callback(protocol)

        connecting.addBoth(done)
        return waiter

    def get(self, clientAddress: str) -> Deferred[Verdicts | None]:
        """
        See L{IVerdictCache.get}.  A malformed value reads as no entry.
        """
        try:
            key = self._key(clientAddress)
        except ValueError:
            return fail()

        def lookup(protocol: _VerdictProtocol) -> Deferred[Any]:
            return cast(Deferred[Any], cast(Any, protocol).get(key))

        def parse(result: tuple[int, bytes | None]) -> Verdicts | None:
            value = result[1]
            if value is None:
                return None
            try:
                return Verdicts.fromValue(value.decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                return None

        return self._connection().addCallback(lookup).addCallback(parse)

    def _ttl(self, verdicts: Verdicts) -> int | None:
        now = int(self._clock.seconds())
        latest = verdicts.latestExpiry()
        ttl = latest - now
        if ttl <= 0:
            ttl = latest + self._retention - now
            if ttl <= 0:
                return None
        if self._maxTTL is not None and self._maxTTL > 0:
            ttl = min(ttl, self._maxTTL)
        if ttl > MEMCACHED_MAX_RELATIVE_TTL:
            return now + ttl
        return ttl

    def put(self, clientAddress: str, verdicts: Verdicts) -> Deferred[None]:
        """
        See L{IVerdictCache.put}.
        """
        try:
            key = self._key(clientAddress)
        except ValueError:
            return fail()
        expireTime = self._ttl(verdicts)
        value = verdicts.toValue().encode("ascii")

        def store(protocol: _VerdictProtocol) -> Deferred[Any]:
            if expireTime is None:
                return cast(Deferred[Any], cast(Any, protocol).delete(key))
            return cast(Deferred[Any], cast(Any, protocol).set(key, value, expireTime=expireTime))

        def discard(result: object) -> None:
            return None

        return self._connection().addCallback(store).addCallback(discard)

    def cleanup(self) -> Deferred[tuple[int, int]]:
        """
        See L{IVerdictCache.cleanup}: memcached expires entries itself.
        """
        return succeed((0, 0))

    def close(self) -> Deferred[None]:
        """
        See L{IVerdictCache.close}: the connection is closed.
        """
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.loseConnection()
        return succeed(None)


@implementer(IVerdictCache)
class DegradingCache:
    """
    A cache that never fails: when C{inner} fails or (given a C{clock})
    does not answer within C{timeout}, a lookup answers C{None} ("not in
    the cache", so the client is tested as a new one) and an update is
    dropped.  The first failure of an outage is logged as a warning; the
    first success after it as a recovery.  During an outage C{inner} is
    tried at most once per C{retryInterval} seconds (given a C{clock}), so
    that clients do not each wait for a dead server.
    """

    def __init__(
        self,
        inner: IVerdictCache,
        log: Logger,
        *,
        clock: IReactorTime | None = None,
        timeout: float = 5.0,
        retryInterval: float = 10.0,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self._log = log
        self._clock = clock
        self._timeout = timeout
        self._retryInterval = retryInterval
        self._down = False
        self._downSince = 0.0

    def _resting(self) -> bool:
        return (
            self._down
            and self._clock is not None
            and self._clock.seconds() - self._downSince < self._retryInterval
        )

    def _guard(self, d: Deferred[T], what: str) -> Deferred[T]:
        if self._clock is not None:
            d = _timeout(d, self._timeout, self._clock, f"{self.name} {what}")
        return d

    def _failed(self, failure: Failure) -> None:
        if self._clock is not None:
            self._downSince = self._clock.seconds()
        if not self._down:
            self._down = True
            reason = failure.getErrorMessage() or str(failure.type)
            self._log.warn(
                "warning: postscreen cache {name} unavailable: {reason}; continuing without it",
                name=self.name,
                reason=reason,
            )

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            self._log.info("postscreen cache {name} available again", name=self.name)

    def _protect(self, call: Callable[[], Deferred[T]], what: str, default: T) -> Deferred[T]:
        if self._resting():
            return succeed(default)
        try:
            d = self._guard(call(), what)
        except BaseException:
            d = fail()

        def ok(result: T) -> T:
            self._succeeded()
            return result

        def bad(failure: Failure) -> T:
            self._failed(failure)
            return default

        return d.addCallbacks(ok, bad)

    def get(self, clientAddress: str) -> Deferred[Verdicts | None]:
        """
        See L{IVerdictCache.get}; C{None} when C{inner} fails.
        """
        return self._protect(lambda: self.inner.get(clientAddress), "lookup", None)

    def put(self, clientAddress: str, verdicts: Verdicts) -> Deferred[None]:
        """
        See L{IVerdictCache.put}; the update is dropped when C{inner} fails.
        """
        return self._protect(lambda: self.inner.put(clientAddress, verdicts), "update", None)

    def cleanup(self) -> Deferred[tuple[int, int]]:
        """
        See L{IVerdictCache.cleanup}; C{(0, 0)} when C{inner} fails.
        """
        return self._protect(self.inner.cleanup, "cleanup", (0, 0))

    def close(self) -> Deferred[None]:
        """
        See L{IVerdictCache.close}.
        """
        return self.inner.close().addErrback(lambda f: None)


class CacheCleaner(Service):
    """
    Clean C{cache} every C{interval} seconds (the first time one interval
    after starting, as Postfix does; an interval of 0 disables cleaning),
    logging Postfix's C{cache NAME full cleanup: retained=N dropped=M
    entries}.
    """

    def __init__(self, cache: IVerdictCache, *, clock: IReactorTime, interval: int, log: Logger = _log) -> None:
        self.cache = cache
        self.interval = interval
        self._clock = clock
        self._log = log
        self._loop: LoopingCall | None = None

    def cleanOnce(self) -> Deferred[None]:
        """
        Clean the cache now and log the counts.
        """

        def logged(counts: tuple[int, int]) -> None:
            retained, dropped = counts
            self._log.info(
                "cache {name} full cleanup: retained={retained} dropped={dropped} entries",
                name=self.cache.name,
                retained=retained,
                dropped=dropped,
            )

        def failed(failure: Failure) -> None:
            self._log.warn(
                "warning: cache {name} cleanup failed: {reason}",
                name=self.cache.name,
                reason=failure.getErrorMessage(),
            )

        return self.cache.cleanup().addCallbacks(logged, failed)

    def startService(self) -> None:
        Service.startService(self)
        if self.interval > 0:
            loop = LoopingCall(self.cleanOnce)
            loop.clock = self._clock
            self._loop = loop
            loop.start(self.interval, now=False)

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return None


def parseMemcacheFile(path: str) -> dict[str, str]:
    """
    Read a Postfix C{memcache_table(5)} file: C{name = value} lines,
    C{#} comments, indented lines continuing the previous one.

    @raise ConfigurationError: if the file cannot be read or a line is not
        C{name = value}.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigurationError(f"postscreen_cache_map: cannot read {path}: {e.strerror}") from e
    settings: dict[str, str] = {}
    last: str | None = None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and last is not None:
            settings[last] += " " + line.strip()
            continue
        name, equals, value = line.partition("=")
        if not equals or not name.strip():
            raise ConfigurationError(f"{path}, line {number}: expected name = value")
        last = name.strip()
        settings[last] = value.strip()
    return settings


def _inetAddress(text: str, where: str) -> tuple[str, int]:
    server = text.split(",")[0].split()[0] if text.strip() else ""
    if server.startswith("unix:"):
        raise ConfigurationError(f"{where}: unix: memcache servers are not supported; use inet:host:port")
    if server.startswith("inet:"):
        server = server[len("inet:"):]
    host, colon, port = server.rpartition(":")
    if not colon:
        host, port = server, str(MEMCACHE_DEFAULT_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"{where}: bad memcache server {text!r}; expected inet:host:port")
    return host, int(port)


def cacheFromParameter(
    view: ParameterView, *, reactor: Any, dataDirectory: str, log: Logger = _log
) -> IVerdictCache | None:
    """
    The verdict cache that C{postscreen_cache_map} names, wrapped in a
    L{DegradingCache}, or C{None} when the parameter is empty (no cache).

     - C{btree:PATH}, C{hash:PATH}, C{lmdb:PATH}: an L{SQLiteVerdictCache}
       in C{PATH.sqlite} (a relative C{PATH} is taken under
       C{dataDirectory}), its calls run in C{reactor}'s thread pool;
     - C{memcache:inet:HOST:PORT}: a L{MemcacheVerdictCache};
     - C{memcache:/path/to/file.cf}: the same, configured by a Postfix
       C{memcache_table(5)} file, of which C{memcache} (the server, first
       of a list), C{key_format} (only C{%s} and C{%%}), C{ttl} (an upper
       bound on entry lifetimes) and C{timeout} are used;
     - a C{proxy:} prefix is stripped (mtaguard needs no proxymap), with a
       note in the log.

    @param reactor: provides C{IReactorTime}, C{IReactorTCP} and
        C{IReactorThreads}.
    @raise ConfigurationError: for another table type, more than one
        table, or a malformed C{memcache:} table.
    """
    tables = view[params.postscreen_cache_map]
    if not tables:
        return None
    if len(tables) > 1:
        raise ConfigurationError(
            f"postscreen_cache_map: one table expected, got {len(tables)}: {' '.join(tables)}"
        )
    table = tables[0]
    retention = view[params.postscreen_cache_retention_time]
    if table.startswith("proxy:"):
        log.info(
            "postscreen_cache_map: ignoring proxy: in {table}; mtaguard opens the table itself",
            table=table,
        )
        table = table[len("proxy:"):]
    kind, colon, rest = table.partition(":")
    if not colon or not rest:
        raise ConfigurationError(f"postscreen_cache_map: expected type:name, got {table!r}")
    cache: IVerdictCache
    if kind in FILE_MAP_TYPES:
        from ..queue import ThreadPoolWorker

        path = os.path.join(dataDirectory, rest) + SQLITE_SUFFIX
        cache = SQLiteVerdictCache(
            path,
            clock=reactor,
            worker=ThreadPoolWorker(reactor, reactor.getThreadPool()),
            retention=retention,
            name=table,
        )
    elif kind == "memcache":
        if rest.startswith(("inet:", "unix:")):
            host, port = _inetAddress(rest, "postscreen_cache_map")
            cache = MemcacheVerdictCache(
                host, port, clock=reactor, reactor=reactor, retention=retention, name=table
            )
        else:
            settings = parseMemcacheFile(rest)
            host, port = _inetAddress(settings.get("memcache", "inet:localhost:11211"), rest)
            keyFormat = settings.get("key_format", "%s")
            if "%" in keyFormat.replace("%%", "").replace("%s", ""):
                raise ConfigurationError(f"{rest}: key_format: only %s and %% are supported")
            try:
                maxTTL = int(settings["ttl"]) if "ttl" in settings else None
                timeout = float(settings.get("timeout", MEMCACHE_DEFAULT_TIMEOUT))
            except ValueError as e:
                raise ConfigurationError(f"{rest}: {e}") from e
            cache = MemcacheVerdictCache(
                host,
                port,
                clock=reactor,
                reactor=reactor,
                retention=retention,
                keyFormat=keyFormat,
                maxTTL=maxTTL,
                timeout=timeout,
                name=table,
            )
    else:
        raise ConfigurationError(
            f"postscreen_cache_map: unsupported table type {kind}: in {table};"
            f" use btree:, hash:, lmdb: (an SQLite file) or memcache:"
        )
    return DegradingCache(cache, log, clock=reactor)
