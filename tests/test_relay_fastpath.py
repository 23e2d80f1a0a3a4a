"""
Tests for the relay's per-message shortcuts: what a just-committed message
is delivered from (the store's memory, not its file), a next hop in brackets
resolved without a resolver, and next hops parsed once per router.  Each
shortcut must give what the long way gives.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.client import AddressPolicy, Nexthop, ResolutionError, Router, resolveAll, resolveNow
from mtaguard.client._routing import Undeliverable
from mtaguard.config import ParameterView
from mtaguard.queue._store import INLINE_CONTENT_BYTES, ManualWorker

from .test_client_routing import FakeResolver
from . import test_queue_manager as _managerTests
from .test_queue_local import anEnvelope
from .test_queue_manager import OK

SMALL = b"Subject: small\r\n\r\n" + b"line of the body\r\n" * 40
LARGE = b"Subject: large\r\n\r\n" + b"x" * 78 + b"\r\n" * 1 + (b"y" * 78 + b"\r\n") * (INLINE_CONTENT_BYTES // 80 + 10)



class CommittedContentTests(SynchronousTestCase):
    """
    L{QueueStore.committedContent}: a small message's content while its
    commit callbacks run, and nothing otherwise.
    """

    def commitAndAsk(self, *chunks: bytes) -> tuple[Any, Any, Any]:
        from mtaguard.queue import QueueStore

        directory = self.mktemp()
        worker = ManualWorker()
        store = QueueStore(directory, reactor=Clock(), worker=worker)
        store.start()
        self.addCleanup(store.stop)
        message = store.newMessage(anEnvelope(OK, arrival=1.0))
        for chunk in chunks:
            message.write(chunk)
        seen: list[Any] = []
        committed: Deferred[str] = message.commit()
        committed.addCallback(lambda queueID: seen.append(store.committedContent(queueID)) or queueID)
        worker.runAll()
        queueID = self.successResultOf(committed)
        return store, queueID, seen[0]

    def test_small(self) -> None:
        """
        While the commit's callbacks run, a message up to
        C{INLINE_CONTENT_BYTES} has its content, all chunks joined; the
        same bytes as the file's content.
        """
        store, queueID, content = self.commitAndAsk(SMALL[:10], SMALL[10:])
        self.assertEqual(content, SMALL)
        with open(os.path.join(store.activeDirectory, queueID), "rb") as handle:
            self.assertTrue(handle.read().endswith(SMALL))

    def test_large(self) -> None:
        """
        A larger message is only on disk: C{None}.
        """
        self.assertGreater(len(LARGE), INLINE_CONTENT_BYTES)
        store, queueID, content = self.commitAndAsk(LARGE[:1000], LARGE[1000:])
        self.assertIsNone(content)

    def test_afterCallbacks(self) -> None:
        """
        Once the commit's callbacks have run, the store keeps nothing.
        """
        store, queueID, content = self.commitAndAsk(SMALL)
        self.assertEqual(content, SMALL)
        self.assertIsNone(store.committedContent(queueID))


class _ManagerHarness(SynchronousTestCase):
    """
    L{tests.test_queue_manager.QueueManagerTests}' set-up and helpers (a real queue directory, next
    hops in memory), without its tests.
    """

    setUp = _managerTests.QueueManagerTests.setUp
    tearDown = _managerTests.QueueManagerTests.tearDown
    makeManager = _managerTests.QueueManagerTests.makeManager
    start = _managerTests.QueueManagerTests.start
    commit = _managerTests.QueueManagerTests.commit
    commitTold = _managerTests.QueueManagerTests.commitTold
    path = _managerTests.QueueManagerTests.path
    lines = _managerTests.QueueManagerTests.lines
    deliveryLines = _managerTests.QueueManagerTests.deliveryLines
    delivered = _managerTests.QueueManagerTests.delivered


class SentFromMemoryTests(_ManagerHarness):
    """
    The manager sends a small message it is told about at commit from the
    store's copy, and anything else from its file.  The tests change the
    file's content after the commit (same size): what the next hop receives
    says where it was read from.
    """

    def commitWith(self, content: bytes, *recipients: str) -> str:
        """
        Commit C{content} to C{recipients}, tell the running manager in the
        commit's callbacks (as smtpd does), then overwrite the content in
        the file before any byte moves.
        """
        queueID = self.commitTold(*recipients, content=content, settle=False)
        with open(self.path(queueID), "r+b") as handle:
            handle.seek(-len(content), os.SEEK_END)
            handle.write(content.replace(b"Subject: ", b"Subject! "))
        self.network.settle()
        return queueID

    def receivedSubjects(self) -> list[bytes]:
        return [
            line
            for message in self.network.queue.committed
            for line in bytes(message.content).split(b"\r\n")
            if line.startswith(b"Subject")
        ]

    def test_smallFromMemory(self) -> None:
        """
        A small message told at commit is sent from memory.
        """
        self.start()
        queueID = self.commitWith(SMALL, OK)
        self.assertEqual(self.receivedSubjects(), [b"Subject: small"])
        self.assertFalse(os.path.exists(self.path(queueID)))

    def test_largeFromFile(self) -> None:
        """
        A message larger than C{INLINE_CONTENT_BYTES} is sent from its file.
        """
        self.start()
        self.commitWith(LARGE, OK)
        self.assertEqual(self.receivedSubjects(), [b"Subject! large"])

    def test_queueRunReadsFile(self) -> None:
        """
        A message found by a queue run is read from its file, as before.
        """
        self.commit(OK)
        self.start()
        self.assertEqual(self.delivered(), [(OK,)])

    def test_waitingHoldsNoContent(self) -> None:
        """
        A delivery that has to wait for a connection slot drops the copy:
        it is read from the file when its turn comes (a backlog of waiting
        deliveries holds no message content).
        """
        self.network.queue.holdCommits = True
        self.start(default_destination_concurrency_limit="1")
        self.commitWith(SMALL, OK)
        self.commitWith(SMALL.replace(b"small", b"other"), OK)
        self.network.queue.releaseCommits()
        self.network.settle()
        self.network.queue.releaseCommits()
        self.network.settle()
        self.assertEqual(self.receivedSubjects(), [b"Subject: small", b"Subject! other"])


class _NoResolver:
    """
    A resolver that must not be asked.
    """

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"resolver asked: {name}")


class LiteralNexthopTests(SynchronousTestCase):
    """
    L{resolveNow}: next hops in brackets resolved in the call, exactly as
    L{resolveAll} resolves them.
    """

    def both(self, nexthops: tuple[Nexthop, ...], policy: AddressPolicy) -> tuple[Any, Any]:
        """
        What L{resolveAll} and L{resolveNow} give: a list, or the error.
        """
        results: list[Any] = []
        resolveAll(nexthops, FakeResolver({}), policy).addCallbacks(results.append, lambda f: results.append(f.value))
        try:
            now: Any = resolveNow(nexthops, policy)
        except ResolutionError as error:
            now = error
        [later] = results
        return later, now

    def assertSame(self, later: Any, now: Any) -> None:
        if isinstance(later, ResolutionError):
            self.assertIsInstance(now, ResolutionError)
            self.assertEqual((now.status, now.reason), (later.status, later.reason))
        else:
            self.assertEqual(now, later)

    def test_literal(self) -> None:
        """
        C{[192.0.2.1]:2525} is its own destination.
        """
        later, now = self.both((Nexthop("smtp", "192.0.2.1", 2525, False),), AddressPolicy())
        self.assertSame(later, now)
        self.assertEqual([(d.address, d.port) for d in now], [("192.0.2.1", 2525)])

    def test_list(self) -> None:
        """
        A list of literals, IPv6 included, in order, within the address
        limit.
        """
        nexthops = (
            Nexthop("smtp", "192.0.2.1", 25, False),
            Nexthop("smtp", "ipv6:2001:db8::1", 587, False),
            Nexthop("smtp", "192.0.2.3", 25, False),
        )
        for policy in (AddressPolicy(), AddressPolicy(addressLimit=2), AddressPolicy(families=frozenset({4}))):
            self.assertSame(*self.both(nexthops, policy))

    def test_familyDisabled(self) -> None:
        """
        A literal of a disabled family fails as the long way fails.
        """
        later, now = self.both((Nexthop("smtp", "2001:db8::1", 25, False),), AddressPolicy(families=frozenset({4})))
        self.assertIsInstance(later, ResolutionError)
        self.assertSame(later, now)

    def test_loop(self) -> None:
        """
        Our own address on port 25 is a mail loop, found the same way.
        """
        policy = AddressPolicy(localAddresses=frozenset({"192.0.2.5"}))
        later, now = self.both((Nexthop("smtp", "192.0.2.5", 25, False),), policy)
        self.assertIsInstance(later, ResolutionError)
        self.assertSame(later, now)

    def test_needsLookup(self) -> None:
        """
        A name, with or without MX lookups, or a list with one, is left to
        the resolver.
        """
        self.assertIsNone(resolveNow((Nexthop("smtp", "mx.example.org", 25, False),)))
        self.assertIsNone(resolveNow((Nexthop("smtp", "example.org", 25, True),)))
        self.assertIsNone(
            resolveNow((Nexthop("smtp", "192.0.2.1", 25, False), Nexthop("smtp", "example.org", 25, True)))
        )


class LiteralRelayhostTests(_ManagerHarness):
    """
    With C{relayhost = [address]:port} the manager asks no resolver.
    """

    def test_noResolver(self) -> None:
        """
        Messages go to the literal relayhost without a resolver call, and
        the connection is reused as usual.
        """
        manager = self.makeManager(relayhost="[192.0.2.44]:2525")
        manager._resolver = _NoResolver()
        self.manager = manager
        manager.startService()
        self.network.settle()
        first = self.commit(OK)
        manager.queued(first, (OK,))
        self.network.settle()
        second = self.commit("second@mx.example.org")
        manager.queued(second, ("second@mx.example.org",))
        self.network.settle()
        self.assertEqual(self.delivered(), [(OK,), ("second@mx.example.org",)])
        self.assertEqual(set(self.network.connections), {"192.0.2.44"})
        [line] = self.deliveryLines(OK)
        self.assertIn("relay=192.0.2.44[192.0.2.44]:2525", line)


class RouterParseTests(SynchronousTestCase):
    """
    A router parses each next hop once; the route is the one a fresh parse
    gives.
    """

    def test_sameRoute(self) -> None:
        view = ParameterView({"compatibility_level": "3.6", "relayhost": "[192.0.2.1]:2525, [192.0.2.2]"})
        router = Router.fromView(view)
        first = router.route("a@one.example")
        second = router.route("b@two.example")
        self.assertIs(first, second)
        self.assertEqual(first, Router.fromView(view).route("c@three.example"))

    def test_badNexthopEachTime(self) -> None:
        """
        A malformed next hop from transport_maps is undeliverable at every
        lookup, not remembered as something else.
        """
        router = Router.fromView(
            ParameterView({"compatibility_level": "3.6", "transport_maps": "inline:{ bad.example=smtp:[nope }"})
        )
        for _ in range(2):
            route = router.route("a@bad.example")
            self.assertIsInstance(route, Undeliverable)


class MarkerBatchTests(_ManagerHarness):
    """
    Done markers asked for while a marker job is in the worker share the
    next job; each request keeps its own outcome.
    """

    def requestFor(self, queueID: str, remove: bool) -> Any:
        from mtaguard.queue import RecipientStatus, parseQueueFile
        from mtaguard.queue._manager import _MarkRequest

        with open(self.path(queueID), "rb") as handle:
            header = parseQueueFile(handle.read()).header
        return _MarkRequest(self.path(queueID), header.recipients, RecipientStatus.DELIVERED, remove)

    def test_sharedJob(self) -> None:
        """
        The first request gets a job at once; the ones asked for while it
        runs go together in the next, which starts when it ends.
        """
        from mtaguard.queue import RecipientStatus

        manager = self.makeManager()
        held = ManualWorker()
        manager._worker = held
        first, second, third = (self.commit(OK) for _ in range(3))
        results: list[Any] = []
        manager._mark(self.requestFor(first, True)).addCallback(results.append)
        self.assertEqual(len(held.pending), 1)
        manager._mark(self.requestFor(second, True)).addCallback(results.append)
        manager._mark(self.requestFor(third, False)).addCallback(results.append)
        self.assertEqual(len(held.pending), 1)
        held.runNext()
        self.assertEqual(results, [True])
        self.assertEqual(len(held.pending), 1)
        held.runNext()
        self.assertEqual(results, [True, True, False])
        self.assertEqual(held.pending, type(held.pending)())
        self.assertFalse(os.path.exists(self.path(first)))
        self.assertFalse(os.path.exists(self.path(second)))
        self.assertEqual(self.statuses(third), {OK: RecipientStatus.DELIVERED})

    def test_failureIsPerRequest(self) -> None:
        """
        A marker that cannot be made durable fails its own request only; a
        file deleted meanwhile is not an error.
        """
        manager = self.makeManager()
        held = ManualWorker()
        manager._worker = held
        blocker, broken, fine = (self.commit(OK) for _ in range(3))
        gone = self.commit(OK)
        brokenPath = self.path(broken)

        def fsync(descriptor: int) -> None:
            if os.path.samefile(f"/proc/self/fd/{descriptor}", brokenPath):
                raise OSError(5, "Input/output error")
            os.fsync(descriptor)

        manager._fsync = fsync
        outcomes: list[Any] = []
        manager._mark(self.requestFor(blocker, False))
        requests = [self.requestFor(queueID, True) for queueID in (broken, fine, gone)]
        os.unlink(self.path(gone))
        for request in requests:
            manager._mark(request).addBoth(outcomes.append)
        held.runAll()
        [error, removed, nothing] = outcomes
        self.assertIsInstance(error.value, OSError)
        self.assertEqual((removed, nothing), (True, False))
        self.assertTrue(os.path.exists(brokenPath))
        self.assertFalse(os.path.exists(self.path(fine)))

    statuses = _managerTests.QueueManagerTests.statuses


class MarkTogetherTests(_ManagerHarness):
    """
    L{markTogether}: all markers written before the first fsync, each
    file fsync'ed, each outcome its own.
    """

    statuses = _managerTests.QueueManagerTests.statuses

    def test_writtenBeforeFirstFsync(self) -> None:
        from mtaguard.queue import RecipientStatus, parseQueueFile
        from mtaguard.queue._markers import markTogether

        queueIDs = [self.commit(OK) for _ in range(3)]
        gone = self.commit(OK)
        marks = []
        for queueID in [*queueIDs, gone]:
            with open(self.path(queueID), "rb") as handle:
                header = parseQueueFile(handle.read()).header
            marks.append((self.path(queueID), header.recipients, RecipientStatus.DELIVERED))
        os.unlink(self.path(gone))
        seen: list[list[RecipientStatus]] = []

        def fsync(descriptor: int) -> None:
            seen.append([self.statuses(queueID)[OK] for queueID in queueIDs])
            os.fsync(descriptor)

        self.assertEqual(markTogether(marks, fsync), [True, True, True, False])
        self.assertEqual(seen, [[RecipientStatus.DELIVERED] * 3] * 3)

    def test_fsyncFailureIsItsOwn(self) -> None:
        from mtaguard.queue import RecipientStatus, parseQueueFile
        from mtaguard.queue._markers import markTogether

        queueIDs = [self.commit(OK) for _ in range(2)]
        marks = []
        for queueID in queueIDs:
            with open(self.path(queueID), "rb") as handle:
                header = parseQueueFile(handle.read()).header
            marks.append((self.path(queueID), header.recipients, RecipientStatus.BOUNCED))
        calls: list[int] = []

        def fsync(descriptor: int) -> None:
            calls.append(descriptor)
            if len(calls) == 1:
                raise OSError(5, "Input/output error")

        [failed, fine] = markTogether(marks, fsync)
        self.assertIsInstance(failed, OSError)
        self.assertIs(fine, True)
        self.assertEqual(len(calls), 2)


class PerRouteTests(_ManagerHarness):
    """
    What the manager works out once per route or connection, not per
    message.
    """

    def startLiteral(self, **values: str) -> Any:
        manager = self.makeManager(relayhost="[192.0.2.44]:2525", **values)
        manager._resolver = _NoResolver()
        self.manager = manager
        manager.startService()
        self.network.settle()
        return manager

    def send(self, count: int) -> None:
        manager = self.manager
        assert manager is not None
        for _ in range(count):
            queueID = self.commit(OK)
            manager.queued(queueID, (OK,))
            self.network.settle()

    def test_literalResolvedOnce(self) -> None:
        """
        A bracketed next hop is worked out for its first message only.
        """
        from mtaguard.queue import _manager

        calls: list[Any] = []
        resolveNow = _manager.resolveNow
        self.patch(_manager, "resolveNow", lambda *args: calls.append(args) or resolveNow(*args))
        self.startLiteral()
        self.send(3)
        self.assertEqual(len(self.delivered()), 3)
        self.assertEqual(len(calls), 1)

    def test_literalErrorEachTime(self) -> None:
        """
        A bracketed next hop that cannot be used (its address family is
        off) defers every message with the same error.
        """
        manager = self.makeManager(relayhost="[2001:db8::44]:2525", inet_protocols="ipv4")
        manager._resolver = _NoResolver()
        self.manager = manager
        manager.startService()
        self.send(2)
        lines = self.deliveryLines(OK)
        self.assertEqual(len(lines), 2)
        for line in lines:
            self.assertIn("status=deferred", line)
            self.assertIn("address family disabled", line)

    def test_closeWatchedOnce(self) -> None:
        """
        A connection cached after every message is watched for its close
        once, not once per caching.
        """
        manager = self.startLiteral(smtp_connection_cache_destinations="[192.0.2.44]:2525")
        self.send(4)
        self.assertEqual(len(self.delivered()), 4)
        self.assertEqual(set(self.network.connections), {"192.0.2.44"})
        self.assertEqual(len(self.network.connections), 1)
        [[connection]] = manager._cache.values()
        self.assertEqual(len(connection.protocol._closedWaiters), 1)


class _CountingTransport(StringTransport):
    """
    A L{StringTransport} that records each write and counts producer
    registrations.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.registrations = 0

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.registrations += 1
        super().registerProducer(producer, streaming)


class SmallContentTests(SynchronousTestCase):
    """
    Content that fits in one chunk is written with the end of data in one
    write, without a producer; larger content still streams.
    """

    def server(self) -> Any:
        from .test_client_protocol import ScriptedServer

        return ScriptedServer(_CountingTransport())

    def test_oneWrite(self) -> None:
        from .test_client_protocol import outbound, toData

        s = self.server()
        content = b"Subject: one\r\n\r\n.starts with a dot\r\nbody\r\n"
        delivered = toData(s, outbound(content))
        self.assertEqual(s.transport.writes[-1], b"Subject: one\r\n\r\n..starts with a dot\r\nbody\r\n.\r\n")
        self.assertEqual(s.transport.registrations, 0)
        s.take()
        s.reply(b"250 2.0.0 Ok: queued\r\n")
        self.assertEqual(self.successResultOf(delivered).outcomes[0].status, "sent")

    def test_noFinalLineEnd(self) -> None:
        """
        Content without a final CRLF gets one before the end of data, in
        the same write.
        """
        from .test_client_protocol import outbound, toData

        s = self.server()
        toData(s, outbound(b"Subject: x\r\n\r\nno end"))
        self.assertEqual(s.transport.writes[-1], b"Subject: x\r\n\r\nno end\r\n.\r\n")

    def test_unreadable(self) -> None:
        """
        A source that fails to read aborts the connection without an end
        of data, as the producer does.
        """
        import io

        from mtaguard.client import OutboundMessage

        from .test_client_protocol import SENDER, LOCAL, toData

        class Broken(io.BytesIO):
            def read(self, size: Any = -1) -> bytes:
                raise OSError(5, "Input/output error")

        s = self.server()
        delivered = toData(s, OutboundMessage(SENDER, (LOCAL,), (), Broken(), 100, "QID9"))
        self.assertTrue(s.transport.disconnected)
        self.assertNotIn(b".\r\n", b"".join(s.transport.writes[-1:]))
        s.lose()
        self.assertEqual(self.successResultOf(delivered).outcomes[0].status, "deferred")

    def test_largeStillStreams(self) -> None:
        from mtaguard.client import CHUNK_SIZE

        from .test_client_protocol import outbound, toData

        s = self.server()
        content = b"Subject: big\r\n\r\n" + b"z" * 78 + b"\r\n" + (b"w" * 78 + b"\r\n") * (CHUNK_SIZE // 80 + 1)
        toData(s, outbound(content))
        self.assertEqual(s.transport.registrations, 1)


class EarlyReleaseTests(_ManagerHarness):
    """
    A delivery with nothing left for another server frees its connection
    and concurrency slot once the session is over; its markers become
    durable meanwhile, and the attempt waits for them.
    """

    def test_nextMessageBeforeMarker(self) -> None:
        manager = self.makeManager(
            relayhost="[192.0.2.44]:2525",
            default_destination_concurrency_limit="1",
            smtp_connection_cache_destinations="[192.0.2.44]:2525",
        )
        self.manager = manager
        manager.startService()
        self.network.settle()
        held = ManualWorker()
        store = self.store.worker

        class HoldingMarkers:
            # Marker jobs wait; reading a file and the rest run at once.
            def run(self, job: Any) -> Deferred[Any]:
                return (held if job.__name__ == "mark" else store).run(job)

        manager._worker = HoldingMarkers()
        first = self.commit(OK)
        manager.queued(first, (OK,))
        self.network.settle()
        second = self.commit(OK)
        manager.queued(second, (OK,))
        self.network.settle()
        # Both sent over the one connection while the first marker job
        # still waits in the worker: nothing logged, both files there.
        self.assertEqual(self.delivered(), [(OK,), (OK,)])
        self.assertEqual(self.network.connections, ["192.0.2.44"])
        self.assertEqual(self.deliveryLines(OK), [])
        self.assertTrue(os.path.exists(self.path(first)))
        self.assertTrue(os.path.exists(self.path(second)))
        held.runAll()
        self.assertEqual(len(self.deliveryLines(OK)), 2)
        self.assertIn(f"{first}: removed", self.lines())
        self.assertIn(f"{second}: removed", self.lines())
        self.assertFalse(os.path.exists(self.path(first)))
        self.assertFalse(os.path.exists(self.path(second)))

    def test_markerFailureDefers(self) -> None:
        """
        A marker that cannot be written after the connection was released
        still fails the attempt, as when the connection waited for it: the
        failure is logged, the outcome is not.
        """
        manager = self.makeManager(relayhost="[192.0.2.44]:2525")

        def fsync(descriptor: int) -> None:
            raise OSError(5, "Input/output error")

        manager._fsync = fsync
        self.manager = manager
        manager.startService()
        self.network.settle()
        queueID = self.commit(OK)
        manager.queued(queueID, (OK,))
        self.network.settle()
        self.assertEqual(self.delivered(), [(OK,)])
        self.assertTrue(any(f"{queueID}: delivery failed" in line for line in self.lines()))
        self.assertEqual(self.deliveryLines(OK), [])
        self.flushLoggedErrors(OSError)
