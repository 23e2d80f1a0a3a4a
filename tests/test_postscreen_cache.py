"""
Tests for L{mtaguard.postscreen._cache}: postscreen's verdict cache in
SQLite and memcached, its degradation to "no cache", cleanup, and the
choice of provider from C{postscreen_cache_map}.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from typing import Any

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.task import Clock, deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mtaguard.config import ConfigurationError, ParameterView
from mtaguard.interfaces import IVerdictCache
from mtaguard.postscreen import (
    CacheCleaner,
    CacheUnavailable,
    DegradingCache,
    MemcacheVerdictCache,
    SQLiteVerdictCache,
    Verdicts,
    cacheFromParameter,
)
from mtaguard.queue import ManualWorker, SynchronousWorker

DAY = 24 * 3600
NOW = 1_795_638_930

MEMCACHED = "/usr/bin/memcached"


def capture() -> tuple[Logger, list[dict[str, Any]]]:
    """
    @return: a logger and the list of events it emits.
    """
    events: list[dict[str, Any]] = []
    return Logger(namespace="test", observer=events.append), events


def rendered(events: list[dict[str, Any]]) -> list[str]:
    """
    @return: the text of each event.
    """
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in events]


class VerdictsTests(SynchronousTestCase):
    """
    L{Verdicts} values and their Postfix-compatible text form.
    """

    def test_postfixForm(self) -> None:
        """
        The value is Postfix's: five integers joined by C{;}, in the order
        pregreet, dnsbl, pipelining, non-SMTP command, bare newline; the
        same line as C{postmap -s} shows parses back.
        """
        value = "1795725333;1;1798230934;1798230934;1798230934"
        verdicts = Verdicts.fromValue(value)
        self.assertEqual(verdicts.pregreet, 1795725333)
        self.assertEqual(verdicts.dnsbl, 1)
        self.assertEqual(verdicts.bare_newline, 1798230934)
        self.assertEqual(verdicts.toValue(), value)
        self.assertEqual(Verdicts().toValue(), "0;0;0;0;0")

    def test_malformed(self) -> None:
        """
        Anything but five non-negative integers is refused.
        """
        for value in ("", "1;2;3;4", "1;2;3;4;5;6", "1;2;x;4;5", "1;-2;3;4;5", "1;２;3;4;5"):
            self.assertRaises(ValueError, Verdicts.fromValue, value)

    def test_obsolete(self) -> None:
        """
        An entry is obsolete only when every expiry lies more than the
        retention time in the past.
        """
        verdicts = Verdicts(NOW - 10 * DAY, 1, NOW - 8 * DAY, 0, 0)
        self.assertTrue(verdicts.isObsolete(NOW, 7 * DAY))
        self.assertFalse(verdicts.isObsolete(NOW, 9 * DAY))


class SQLiteTests(SynchronousTestCase):
    """
    L{SQLiteVerdictCache}, with a synchronous worker.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.path = os.path.join(self.mktemp() + ".d", "postscreen_cache.sqlite")
        os.makedirs(os.path.dirname(self.path))

    def cache(self, **kw: Any) -> SQLiteVerdictCache:
        cache = SQLiteVerdictCache(self.path, clock=self.clock, worker=SynchronousWorker(), **kw)
        self.addCleanup(cache.close)
        return cache

    def test_interface(self) -> None:
        """
        It provides L{IVerdictCache}.
        """
        self.assertTrue(verifyObject(IVerdictCache, self.cache()))

    def test_roundTrip(self) -> None:
        """
        A stored verdict reads back; an unknown client reads as C{None};
        a second put replaces the first.
        """
        cache = self.cache()
        self.assertIsNone(self.successResultOf(cache.get("192.0.2.1")))
        first = Verdicts(NOW + DAY, 1, 0, 0, 0)
        self.assertIsNone(self.successResultOf(cache.put("192.0.2.1", first)))
        self.assertEqual(self.successResultOf(cache.get("192.0.2.1")), first)
        second = Verdicts(NOW + DAY, 1, NOW + 30 * DAY, NOW + 30 * DAY, NOW + 30 * DAY)
        self.successResultOf(cache.put("192.0.2.1", second))
        self.assertEqual(self.successResultOf(cache.get("192.0.2.1")), second)
        self.assertIsNone(self.successResultOf(cache.get("2001:db8::1")))

    def test_walMode(self) -> None:
        """
        The database is in WAL mode, so readers do not block the writer.
        """
        import sqlite3

        self.successResultOf(self.cache().put("192.0.2.1", Verdicts()))
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone()[0], "wal")

    def test_expiredEntryStillRead(self) -> None:
        """
        An expired entry is returned as stored: the caller compares each
        expiry with the time, as postscreen does.
        """
        cache = self.cache()
        old = Verdicts(NOW - DAY, 1, NOW - DAY, NOW - DAY, NOW - DAY)
        self.successResultOf(cache.put("192.0.2.1", old))
        self.assertEqual(self.successResultOf(cache.get("192.0.2.1")), old)

    def test_cleanupCounts(self) -> None:
        """
        Cleanup drops the entries whose every expiry is more than the
        retention time ago and counts what it retained and dropped.
        """
        cache = self.cache(retention=7 * DAY)
        self.successResultOf(cache.put("192.0.2.1", Verdicts(NOW - 8 * DAY, 1, 0, 0, 0)))
        self.successResultOf(cache.put("192.0.2.2", Verdicts(NOW - 8 * DAY, 1, NOW - 6 * DAY, 0, 0)))
        self.successResultOf(cache.put("192.0.2.3", Verdicts(NOW + DAY, 1, 0, 0, 0)))
        self.successResultOf(cache.put("192.0.2.4", Verdicts(NOW - 30 * DAY, 1, 1, 1, 1)))
        self.assertEqual(self.successResultOf(cache.cleanup()), (2, 2))
        self.assertIsNone(self.successResultOf(cache.get("192.0.2.1")))
        self.assertIsNotNone(self.successResultOf(cache.get("192.0.2.2")))
        self.clock.advance(2 * DAY)
        self.assertEqual(self.successResultOf(cache.cleanup()), (1, 1))

    def test_twoCachesOneFile(self) -> None:
        """
        Two caches (two mtaguard processes) on one file see each other's
        verdicts, interleaved, and one's cleanup is seen by the other.
        """
        one, two = self.cache(), self.cache()
        verdicts = Verdicts(NOW + DAY, 1, 0, 0, 0)
        self.successResultOf(one.put("192.0.2.1", verdicts))
        self.assertEqual(self.successResultOf(two.get("192.0.2.1")), verdicts)
        for n in range(20):
            writer = (one, two)[n % 2]
            self.successResultOf(writer.put(f"192.0.2.{n + 10}", Verdicts(NOW - 30 * DAY, 1, 1, 1, 1)))
        self.assertEqual(self.successResultOf(two.cleanup()), (1, 20))
        self.assertIsNone(self.successResultOf(one.get("192.0.2.11")))

    def test_offTheReactorThread(self) -> None:
        """
        Nothing is read or written until the worker runs the job: every
        SQLite call goes through the worker.
        """
        worker = ManualWorker()
        cache = SQLiteVerdictCache(self.path, clock=self.clock, worker=worker)
        put = cache.put("192.0.2.1", Verdicts(NOW + DAY, 1, 0, 0, 0))
        self.assertNoResult(put)
        self.assertFalse(os.path.exists(self.path))
        worker.runAll()
        self.successResultOf(put)
        get = cache.get("192.0.2.1")
        self.assertNoResult(get)
        worker.runAll()
        self.assertIsNotNone(self.successResultOf(get))
        closed = cache.close()
        worker.runAll()
        self.successResultOf(closed)

    def test_boundedTime(self) -> None:
        """
        A call whose worker does not finish within the timeout fails with
        L{CacheUnavailable} in the reactor thread.
        """
        worker = ManualWorker()
        cache = SQLiteVerdictCache(self.path, clock=self.clock, worker=worker, timeout=2)
        get = cache.get("192.0.2.1")
        self.clock.advance(2)
        self.failureResultOf(get, CacheUnavailable)


class CleanerTests(SynchronousTestCase):
    """
    L{CacheCleaner}: periodic cleanup.
    """

    def test_periodicCleanupLogged(self) -> None:
        """
        Every interval (not at start) the cache is cleaned and Postfix's
        line is logged.
        """
        clock = Clock()
        clock.advance(NOW)
        path = self.mktemp()
        cache = SQLiteVerdictCache(path, clock=clock, worker=SynchronousWorker(), name="btree:" + path)
        self.addCleanup(cache.close)
        self.successResultOf(cache.put("192.0.2.1", Verdicts(NOW - 30 * DAY, 1, 1, 1, 1)))
        self.successResultOf(cache.put("192.0.2.2", Verdicts(NOW + DAY, 1, 1, 1, 1)))
        log, events = capture()
        cleaner = CacheCleaner(cache, clock=clock, interval=12 * 3600, log=log)
        cleaner.startService()
        self.assertEqual(events, [])
        clock.advance(12 * 3600)
        self.assertEqual(
            rendered(events), [f"cache btree:{path} full cleanup: retained=1 dropped=1 entries"]
        )
        self.assertEqual((events[0]["retained"], events[0]["dropped"]), (1, 1))
        clock.advance(12 * 3600)
        self.assertEqual(len(events), 2)
        cleaner.stopService()
        clock.advance(48 * 3600)
        self.assertEqual(len(events), 2)

    def test_zeroDisables(self) -> None:
        """
        An interval of 0 disables cleanup.
        """
        clock = Clock()
        cache = FailingCache()
        cleaner = CacheCleaner(cache, clock=clock, interval=0)
        cleaner.startService()
        clock.advance(100 * DAY)
        self.assertEqual(cache.calls, 0)
        self.assertEqual(clock.getDelayedCalls(), [])


@implementer(IVerdictCache)
class FailingCache:
    """
    A cache whose calls fail, hang or succeed as the test says.

    @ivar mode: C{"fail"}, C{"hang"} or C{"ok"}.
    """

    name = "memcache:inet:192.0.2.99:11211"

    def __init__(self, mode: str = "fail") -> None:
        self.mode = mode
        self.calls = 0
        self.stored: dict[str, Verdicts] = {}

    def _answer(self, value: Any) -> Deferred[Any]:
        self.calls += 1
        if self.mode == "fail":
            return fail(ConnectionRefusedError("Connection refused"))
        if self.mode == "hang":
            return Deferred()
        return succeed(value)

    def get(self, clientAddress: str) -> Deferred[Verdicts | None]:
        return self._answer(self.stored.get(clientAddress))

    def put(self, clientAddress: str, verdicts: Verdicts) -> Deferred[None]:
        if self.mode == "ok":
            self.stored[clientAddress] = verdicts
        return self._answer(None)

    def cleanup(self) -> Deferred[tuple[int, int]]:
        return self._answer((len(self.stored), 0))

    def close(self) -> Deferred[None]:
        return succeed(None)


class DegradingTests(SynchronousTestCase):
    """
    L{DegradingCache}: an unavailable cache means "no cache".
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.inner = FailingCache()
        self.log, self.events = capture()
        self.cache = DegradingCache(self.inner, self.log, clock=self.clock, timeout=2, retryInterval=10)

    def test_interface(self) -> None:
        """
        It provides L{IVerdictCache}, named as the cache it wraps.
        """
        self.assertTrue(verifyObject(IVerdictCache, self.cache))
        self.assertEqual(self.cache.name, self.inner.name)

    def test_failureIsNoEntry(self) -> None:
        """
        A failing cache reads as "not cached" (the client is tested as new,
        never passed), an update is dropped, and one warning is logged for
        the outage however many calls fail.
        """
        self.assertIsNone(self.successResultOf(self.cache.get("192.0.2.1")))
        self.assertIsNone(self.successResultOf(self.cache.put("192.0.2.1", Verdicts())))
        self.clock.advance(11)
        self.assertIsNone(self.successResultOf(self.cache.get("192.0.2.1")))
        self.assertEqual(self.successResultOf(self.cache.cleanup()), (0, 0))
        self.assertEqual(
            rendered(self.events),
            [
                "warning: postscreen cache memcache:inet:192.0.2.99:11211 unavailable:"
                " Connection refused; continuing without it"
            ],
        )

    def test_timeoutIsNoEntry(self) -> None:
        """
        A cache that does not answer within the timeout reads as "not
        cached", with one warning.
        """
        self.inner.mode = "hang"
        get = self.cache.get("192.0.2.1")
        self.assertNoResult(get)
        self.clock.advance(2)
        self.assertIsNone(self.successResultOf(get))
        self.assertEqual(len(self.events), 1)
        self.assertIn("unavailable:", rendered(self.events)[0])
        self.assertIn("no answer within 2s", rendered(self.events)[0])

    def test_restsDuringOutage(self) -> None:
        """
        During an outage the inner cache is tried at most once per retry
        interval; other calls answer at once.
        """
        self.successResultOf(self.cache.get("192.0.2.1"))
        self.successResultOf(self.cache.get("192.0.2.2"))
        self.assertEqual(self.inner.calls, 1)
        self.clock.advance(10)
        self.successResultOf(self.cache.get("192.0.2.3"))
        self.assertEqual(self.inner.calls, 2)

    def test_recovery(self) -> None:
        """
        The first success after an outage is logged, and a later outage
        warns again.
        """
        self.successResultOf(self.cache.get("192.0.2.1"))
        self.inner.mode = "ok"
        self.clock.advance(10)
        verdicts = Verdicts(5, 1, 0, 0, 0)
        self.successResultOf(self.cache.put("192.0.2.1", verdicts))
        self.assertEqual(self.successResultOf(self.cache.get("192.0.2.1")), verdicts)
        self.assertEqual(
            rendered(self.events)[1],
            "postscreen cache memcache:inet:192.0.2.99:11211 available again",
        )
        self.inner.mode = "fail"
        self.successResultOf(self.cache.get("192.0.2.1"))
        self.assertEqual(len(self.events), 3)

    def test_raisingInner(self) -> None:
        """
        An inner cache that raises instead of failing its Deferred also
        degrades.
        """

        def boom(clientAddress: str) -> Deferred[Verdicts | None]:
            raise OSError("disk I/O error")

        self.inner.get = boom  # type: ignore[method-assign]
        self.assertIsNone(self.successResultOf(self.cache.get("192.0.2.1")))
        self.assertIn("disk I/O error", rendered(self.events)[0])


class FromParameterTests(SynchronousTestCase):
    """
    L{cacheFromParameter} reads C{postscreen_cache_map}.
    """

    class FakeReactor(Clock):
        def getThreadPool(self) -> Any:
            return None

    def choose(self, value: str, **extra: str) -> Any:
        view = ParameterView(dict({"postscreen_cache_map": value, "data_directory": "/d"}, **extra))
        self.log, self.events = capture()
        return cacheFromParameter(view, reactor=self.FakeReactor(), dataDirectory="/d", log=self.log)

    def test_empty(self) -> None:
        """
        An empty value means no cache.
        """
        self.assertIsNone(self.choose(""))

    def test_default(self) -> None:
        """
        Postfix's default C{btree:$data_directory/postscreen_cache} is an
        SQLite file at that path plus C{.sqlite}, wrapped to degrade.
        """
        view = ParameterView({"data_directory": "/d"})
        cache = cacheFromParameter(view, reactor=self.FakeReactor(), dataDirectory="/d")
        assert isinstance(cache, DegradingCache)
        assert isinstance(cache.inner, SQLiteVerdictCache)
        self.assertEqual(cache.inner.path, "/d/postscreen_cache.sqlite")
        self.assertEqual(cache.name, "btree:/d/postscreen_cache")
        for kind in ("hash", "lmdb"):
            other = self.choose(f"{kind}:/x/cache")
            self.assertEqual(other.inner.path, "/x/cache.sqlite")

    def test_relativePath(self) -> None:
        """
        A relative path is taken under the data directory.
        """
        self.assertEqual(self.choose("btree:cache").inner.path, "/d/cache.sqlite")

    def test_proxyStripped(self) -> None:
        """
        C{proxy:} is stripped, with a note.
        """
        cache = self.choose("proxy:btree:$data_directory/ps")
        self.assertEqual(cache.inner.path, "/d/ps.sqlite")
        self.assertIn("proxy:", rendered(self.events)[0])

    def test_memcacheInet(self) -> None:
        """
        C{memcache:inet:host:port} is a memcached server.
        """
        cache = self.choose("memcache:inet:127.0.0.1:11311")
        assert isinstance(cache.inner, MemcacheVerdictCache)
        self.assertEqual((cache.inner.host, cache.inner.port), ("127.0.0.1", 11311))

    def test_memcacheFile(self) -> None:
        """
        C{memcache:/path.cf} reads Postfix's memcache_table file:
        C{memcache}, C{key_format}, C{ttl}, C{timeout}.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# postscreen\nmemcache = inet:10.0.0.5:11212\nkey_format = ps:%s\nttl = 3600\n")
        cache = self.choose("memcache:" + path)
        inner = cache.inner
        self.assertEqual((inner.host, inner.port, inner.keyFormat), ("10.0.0.5", 11212, "ps:%s"))
        self.assertEqual(inner._key("192.0.2.1"), b"ps:192.0.2.1")

    def test_errors(self) -> None:
        """
        Unsupported table types and malformed memcache tables are
        configuration errors that name the problem.
        """
        for value in ("pgsql:/etc/ps.cf", "memcache:unix:/run/m.sock", "memcache:inet:host:port", "btree"):
            with self.assertRaises(ConfigurationError) as caught:
                self.choose(value)
            self.assertIn("postscreen_cache_map", str(caught.exception))
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("key_format = %u\n")
        self.assertRaises(ConfigurationError, self.choose, "memcache:" + path)
        self.assertRaises(ConfigurationError, self.choose, "memcache:/nonexistent/m.cf")


class MemcacheUnitTests(SynchronousTestCase):
    """
    L{MemcacheVerdictCache} without a server.
    """

    def cache(self, **kw: Any) -> MemcacheVerdictCache:
        clock = Clock()
        clock.advance(NOW)
        return MemcacheVerdictCache("127.0.0.1", 11211, clock=clock, reactor=clock, **kw)

    def test_interface(self) -> None:
        """
        It provides L{IVerdictCache}.
        """
        self.assertTrue(verifyObject(IVerdictCache, self.cache()))

    def test_ttl(self) -> None:
        """
        The TTL is the time to the longest expiry; an entry with only
        expired tests lives for the rest of the retention time, and not at
        all past it; over 30 days memcached needs an absolute time.
        """
        cache = self.cache(retention=7 * DAY)
        self.assertEqual(cache._ttl(Verdicts(NOW + DAY, 1, NOW + 60, 0, 0)), DAY)
        self.assertEqual(cache._ttl(Verdicts(NOW - DAY, 1, 0, 0, 0)), 6 * DAY)
        self.assertIsNone(cache._ttl(Verdicts(NOW - 8 * DAY, 1, 0, 0, 0)))
        self.assertEqual(cache._ttl(Verdicts(NOW + 31 * DAY, 1, 0, 0, 0)), NOW + 31 * DAY)
        self.assertEqual(self.cache(maxTTL=3600)._ttl(Verdicts(NOW + DAY, 0, 0, 0, 0)), 3600)

    def test_badKey(self) -> None:
        """
        An address that cannot be a memcache key fails the call.
        """
        self.failureResultOf(self.cache().get("a b"), ValueError)


def freePort() -> int:
    """
    @return: a TCP port on 127.0.0.1 free at the time of the call.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RealMemcachedTests(TestCase):
    """
    L{MemcacheVerdictCache} against a real memcached started by the test,
    with the real reactor.
    """

    timeout = 30

    @inlineCallbacks
    def setUp(self) -> Any:
        if not os.path.exists(MEMCACHED) and shutil.which("memcached") is None:
            if os.environ.get("CI") == "true":
                self.fail("memcached is not installed, but CI requires it")
            raise SkipTest("memcached is not installed (Debian package memcached)")
        binary = MEMCACHED if os.path.exists(MEMCACHED) else str(shutil.which("memcached"))
        self.port = freePort()
        self.binary = binary
        self.startServer()
        self.addCleanup(self.stopServer)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                yield deferLater(globalReactor, 0.05, lambda: None)
        else:
            self.fail("memcached did not start listening")

    def startServer(self) -> None:
        """
        Start memcached on C{self.port} (as root it must be told which user
        to run as).
        """
        command = [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        if os.geteuid() == 0:
            command += ["-u", "root"]
        self.server = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stopServer(self) -> None:
        if self.server.poll() is None:
            self.server.kill()
        self.server.wait()

    def instance(self, **kw: Any) -> MemcacheVerdictCache:
        cache = MemcacheVerdictCache(
            "127.0.0.1", self.port, clock=globalReactor, reactor=globalReactor, prefix="mtaguard:", **kw
        )
        self.addCleanup(cache.close)
        return cache

    @inlineCallbacks
    def test_twoInstancesShareAVerdict(self) -> Any:
        """
        A verdict stored by one mtaguard instance is read by another that
        names the same memcached; an unknown client reads as C{None}.
        """
        one, two = self.instance(), self.instance()
        now = int(globalReactor.seconds())
        verdicts = Verdicts(now + DAY, 1, now + 30 * DAY, now + 30 * DAY, now + 30 * DAY)
        yield one.put("192.0.2.7", verdicts)
        got = yield two.get("192.0.2.7")
        self.assertEqual(got, verdicts)
        missing = yield two.get("192.0.2.8")
        self.assertIsNone(missing)
        self.assertEqual((yield two.cleanup()), (0, 0))

    @inlineCallbacks
    def test_reconnectsAfterRestart(self) -> Any:
        """
        After memcached goes away, calls fail (and a L{DegradingCache}
        answers C{None} with one warning); once it is back, the next call
        reconnects and the recovery is logged.
        """
        log, events = capture()
        inner = self.instance(timeout=2)
        cache = DegradingCache(inner, log, clock=globalReactor, timeout=3, retryInterval=0)
        now = int(globalReactor.seconds())
        yield cache.put("192.0.2.9", Verdicts(now + DAY, 1, 0, 0, 0))
        self.stopServer()
        yield deferLater(globalReactor, 0.1, lambda: None)
        self.assertIsNone((yield cache.get("192.0.2.9")))
        self.assertIsNone((yield cache.get("192.0.2.9")))
        self.assertEqual(len(events), 1)
        self.assertIn("unavailable", rendered(events)[0])
        self.startServer()
        for _ in range(100):
            yield deferLater(globalReactor, 0.05, lambda: None)
            result = yield cache.get("192.0.2.9")
            if len(events) == 2:
                break
        self.assertIsNone(result)  # a fresh server has nothing stored
        self.assertEqual(rendered(events)[1], f"postscreen cache {inner.name} available again")


class ThreadedSQLiteTests(TestCase):
    """
    L{SQLiteVerdictCache} with its calls in real threads, as in
    production.
    """

    @inlineCallbacks
    def test_concurrentCallsInThreads(self) -> Any:
        """
        Many concurrent puts and gets from two caches on one file, each run
        in a pool of several threads, all succeed and agree.
        """
        from twisted.python.threadpool import ThreadPool

        from mtaguard.queue import ThreadPoolWorker

        pool = ThreadPool(minthreads=0, maxthreads=4)
        pool.start()
        self.addCleanup(pool.stop)
        path = self.mktemp()
        worker = ThreadPoolWorker(globalReactor, pool)
        one = SQLiteVerdictCache(path, clock=globalReactor, worker=worker)
        two = SQLiteVerdictCache(path, clock=globalReactor, worker=worker)
        # Create the schema once, so the two first connections do not race
        # to switch the file to WAL mode.
        yield one.get("192.0.2.0")
        now = int(globalReactor.seconds())
        writes = [
            (one, two)[n % 2].put(f"192.0.2.{n}", Verdicts(now + n, 1, 0, 0, 0)) for n in range(1, 41)
        ]
        for d in writes:
            yield d
        for n in range(1, 41):
            got = yield (two, one)[n % 2].get(f"192.0.2.{n}")
            self.assertEqual(got, Verdicts(now + n, 1, 0, 0, 0))
        yield one.close()
        yield two.close()
