"""
Tests for L{mtaguard.queue.QueueManager}: messages in a real queue
directory delivered by the SMTP client to mtaguard's own server, in memory
(L{twisted.test.iosim}), with a fake resolver and a L{Clock}.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Callable, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from mtaguard.client import Destination, Router
from mtaguard.config import ParameterView
from mtaguard.queue import QueueManager, QueueStore, RecipientStatus, SynchronousWorker, parseQueueFile
from mtaguard.queue._store import ManualWorker
from mtaguard.smtpd import ServerContext, SMTPServerProtocol
from mtaguard.testing import MemoryQueue

from .smtpdharness import BASE
from .test_client_routing import FakeResolver, a, mx
from .test_queue_local import anEnvelope

ARRIVAL = 1_764_000_000.0
CONTENT = b"Subject: hello\r\n\r\nbody\r\n"

OK = "ok@mx.example.org"
BAD = "bad@other.example"
LATER = "later@down.example"
LOCAL = "someone@local.example"

RESOLVER_RECORDS: dict[tuple[str, str], list[Any]] = {
    ("mx.example.org", "MX"): [mx(10, "mx.example.org")],
    ("mx.example.org", "A"): [a("192.0.2.1")],
    ("other.example", "MX"): [mx(10, "mx.example.org")],
    ("down.example", "MX"): [mx(10, "down.example")],
    ("down.example", "A"): [a("192.0.2.9")],
    # Three servers, tried in order: mx1 is the hostile one in the tests
    # of the next-MX rules.
    ("two.example", "MX"): [mx(10, "mx1.two.example"), mx(20, "mx2.two.example"), mx(30, "mx3.two.example")],
    ("mx1.two.example", "A"): [a("192.0.2.21")],
    ("mx2.two.example", "A"): [a("192.0.2.22")],
    ("mx3.two.example", "A"): [a("192.0.2.23")],
}

MX1 = "192.0.2.21"
MX2 = "192.0.2.22"
MX3 = "192.0.2.23"


def managerView(**values: str) -> ParameterView:
    settings = {
        "compatibility_level": "3.6",
        "myhostname": "relay.example.net",
        "mydomain": "example.net",
        "smtp_tls_security_level": "none",
        "queue_run_delay": "60s",
        "minimal_backoff_time": "300s",
        "maximal_backoff_time": "1000s",
        "maximal_queue_lifetime": "1d",
        "bounce_queue_lifetime": "1h",
    }
    settings.update(values)
    return ParameterView(settings)


class Network:
    """
    Next hops in memory: every connection gets a fresh mtaguard server
    with L{serverSettings}; addresses in L{down} refuse connections.
    """

    def __init__(self) -> None:
        self.serverSettings: dict[str, str] = dict(BASE)
        self.serverClock = Clock()
        self.queue = MemoryQueue()
        self.down: set[str] = set()
        #: address -> the server protocol to answer there instead.
        self.hostile: dict[str, Callable[[], Protocol]] = {}
        self.connections: list[str] = []
        self.pumps: list[IOPump] = []

    def endpoint(self, destination: Destination) -> IStreamClientEndpoint:
        return _Endpoint(self, destination)

    def settle(self) -> None:
        """
        Move bytes on every connection until nothing moves.
        """
        moved = True
        while moved:
            moved = False
            for pump in list(self.pumps):
                if pump.pump():
                    moved = True

    def openConnections(self) -> int:
        return sum(1 for pump in self.pumps if not (pump.clientIO.disconnected and pump.serverIO.disconnected))


@implementer(IStreamClientEndpoint)
class _Endpoint:
    def __init__(self, network: Network, destination: Destination) -> None:
        self.network = network
        self.destination = destination

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        network = self.network
        network.connections.append(self.destination.address)
        if self.destination.address in network.down:
            return fail(ConnectionRefusedError())
        server: Protocol
        if self.destination.address in network.hostile:
            server = network.hostile[self.destination.address]()
        else:
            server = SMTPServerProtocol(
                ServerContext(view=ParameterView(network.serverSettings), queue=network.queue, clock=network.serverClock)
            )
        client = factory.buildProtocol(IPv4Address("TCP", self.destination.address, self.destination.port))
        assert client is not None
        serverTransport = FakeTransport(server, isServer=True, peerAddress=IPv4Address("TCP", "203.0.113.9", 40000))
        clientTransport = FakeTransport(client, isServer=False)
        pump = connect(server, serverTransport, client, clientTransport, greet=False)
        network.pumps.append(pump)
        return succeed(client)


class HostileServer(Protocol):
    """
    A next hop that follows a script: its greeting, then one reply per
    command verb (a callable gets the command line).  C{DROP} closes the
    connection instead of answering; C{SILENT} answers nothing.
    """

    DROP = b"drop"
    SILENT = b""

    DEFAULTS: dict[str, Any] = {
        "EHLO": b"250 mx1.two.example\r\n",
        "HELO": b"250 mx1.two.example\r\n",
        "MAIL": b"250 2.1.0 Ok\r\n",
        "RCPT": b"250 2.1.5 Ok\r\n",
        "DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
        ".": b"250 2.0.0 Ok: queued\r\n",
        "RSET": b"250 2.0.0 Ok\r\n",
        "QUIT": b"221 2.0.0 Bye\r\n",
    }

    def __init__(
        self, greeting: bytes = b"220 mx1.two.example ESMTP\r\n", dropAfter: tuple[str, ...] = (), **replies: Any
    ) -> None:
        self.greeting = greeting
        self.dropAfter = dropAfter
        self.replies = dict(self.DEFAULTS)
        self.replies.update({verb.replace("END", "."): reply for verb, reply in replies.items()})
        self.buffer = b""
        self.inData = False
        self.received: list[bytes] = []

    def connectionMade(self) -> None:
        self.answer(self.greeting)

    def answer(self, reply: bytes) -> None:
        if reply == self.DROP:
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif reply:
            self.transport.write(reply)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self.received.append(line)
            if self.inData:
                if line == b".":
                    self.inData = False
                    self.answer(self.reply(".", line))
                continue
            verb = line.split(b" ", 1)[0].upper().decode("ascii", "replace")
            reply = self.reply(verb, line)
            if verb == "DATA" and reply.startswith(b"354"):
                self.inData = True
            self.answer(reply)
            if verb in self.dropAfter:
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
            if verb == "STARTTLS" and reply.startswith(b"220"):
                self.transport.startTLS(_FailingHandshake())  # type: ignore[union-attr]

    def reply(self, verb: str, line: bytes) -> bytes:
        reply = self.replies.get(verb, b"502 5.5.2 Error: command not recognized\r\n")
        result: bytes = reply(line) if callable(reply) else reply
        return result


class _FailingHandshake:
    """
    A TLS context for L{twisted.test.iosim}'s pretend handshake that never
    agrees with its peer.
    """

    def iosimVerify(self, other: object) -> bool:
        return False


class _MayPolicy:
    """
    A client TLS policy at level C{may} whose handshakes never get far
    (the hostile server hangs up after its 220 to STARTTLS).
    """

    level = "may"
    context = object()
    warnings: list[str] = []

    def creatorFor(self, hostname: str) -> object:
        return _FailingHandshake()

    def verdict(self, transport: Any, hop: str) -> Any:
        raise AssertionError("no handshake completes here")


class QueueManagerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        # The queue manager compares queue files' modification times (the
        # file system's clock) with its own: start this clock just after
        # the real one, so that new files are due and a deferred file's
        # future time is this clock's.
        self.clock.advance(float(int(time.time())) + 2)
        self.directory = self.mktemp()
        self.store = QueueStore(self.directory, reactor=self.clock, worker=SynchronousWorker())
        self.store.start()
        self.addCleanup(self.store.stop)
        self.network = Network()
        self.events: list[dict[str, Any]] = []
        self.fsyncs: list[int] = []
        self.manager: Optional[QueueManager] = None
        #: Replaces the TLS policy of every next hop when set.
        self.tlsPolicy: Any = None
        #: Replaces the TLS policy lookup when set.
        self.tlsPolicyFor: Optional[Callable[[str], Any]] = None

    def tearDown(self) -> None:
        if self.manager is not None and self.manager.running:
            self.manager.stopService()

    def makeManager(self, **values: str) -> QueueManager:
        view = managerView(**values)

        def fsync(descriptor: int) -> None:
            self.events.append({"log_format": "fsync", "fsync": True})
            os.fsync(descriptor)

        manager = QueueManager(
            self.store,
            view=view,
            router=Router.fromView(view),
            resolver=FakeResolver(RESOLVER_RECORDS),
            isLocal=lambda address: address.endswith("@local.example"),
            clock=self.clock,
            log=Logger(observer=self.events.append),
            connector=self.network.endpoint,
            fsync=fsync,
            tlsPolicyFor=self.tlsPolicyFor
            if self.tlsPolicyFor is not None
            else None if self.tlsPolicy is None else (lambda domain: self.tlsPolicy),
        )
        return manager

    def start(self, **values: str) -> QueueManager:
        if self.manager is not None and self.manager.running:
            self.manager.stopService()
        self.manager = self.makeManager(**values)
        self.manager.startService()
        self.network.settle()
        return self.manager

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.network.settle()

    def commit(self, *recipients: str, sender: str = "sender@client.example") -> str:
        message = self.store.newMessage(anEnvelope(*recipients, arrival=self.clock.seconds(), sender=sender))
        message.write(CONTENT)
        return self.successResultOf(message.commit())

    def path(self, queueID: str) -> str:
        return os.path.join(self.store.activeDirectory, queueID)

    def statuses(self, queueID: str) -> dict[str, RecipientStatus]:
        with open(self.path(queueID), "rb") as f:
            header = parseQueueFile(f.read()).header
        return {r.address: r.status for r in header.recipients}

    def lines(self) -> list[str]:
        return [formatEvent(event) for event in self.events if not event.get("fsync")]

    def deliveryLines(self, recipient: str) -> list[str]:
        return [line for line in self.lines() if f"to=<{recipient}>" in line]

    def delivered(self) -> list[tuple[str, ...]]:
        return [message.envelope.recipients for message in self.network.queue.committed]

    def test_delivered(self) -> None:
        """
        A message for a remote recipient is delivered to the next hop found
        through the MX records, logged in Postfix's form, and its queue
        file removed.
        """
        queueID = self.commit(OK)
        self.start()
        self.assertEqual(self.delivered(), [(OK,)])
        [queued] = self.network.queue.committed
        self.assertTrue(bytes(queued.content).endswith(CONTENT))
        self.assertFalse(os.path.exists(self.path(queueID)))
        [line] = self.deliveryLines(OK)
        self.assertTrue(line.startswith(f"{queueID}: to=<{OK}>, relay=mx.example.org[192.0.2.1]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (250 "), line)
        self.assertIn(f"{queueID}: removed", self.lines())
        self.assertEqual(self.network.openConnections(), 0)
        # qmgr's line, before the delivery's, as Postfix logs them.
        active = f"{queueID}: from=<sender@client.example>, size={len(CONTENT)}, nrcpt=1 (queue active)"
        self.assertLess(self.lines().index(active), self.lines().index(line))

    def test_durableBeforeLogged(self) -> None:
        """
        Each outcome is fsync'ed into the queue file before it is logged.
        """
        self.commit(OK)
        self.start()
        kinds = ["fsync" if event.get("fsync") else formatEvent(event) for event in self.events]
        sent = [i for i, line in enumerate(kinds) if "status=sent" in line]
        self.assertEqual(len(sent), 1)
        self.assertIn("fsync", kinds[: sent[0]])

    def test_removedWithLastMarker(self) -> None:
        """
        The worker job that makes the last pending recipient's done marker
        durable removes the file too (after the fsync): the file is read
        once, not again to find that nothing is pending.
        """
        queueID = self.commit(OK)
        jobs: list[str] = []
        worker = self.store.worker

        class CountingWorker:
            def run(self, job: Callable[[], Any]) -> Deferred[Any]:
                jobs.append(getattr(job, "__name__", "?"))
                return worker.run(job)

        self.store.worker = CountingWorker()  # type: ignore[assignment]
        path = self.path(queueID)
        present: list[bool] = []
        makeManager = self.makeManager

        def observing(**values: str) -> QueueManager:
            manager = makeManager(**values)
            fsync = manager._fsync

            def checked(descriptor: int) -> None:
                fsync(descriptor)
                present.append(os.path.exists(path))

            manager._fsync = checked
            return manager

        self.makeManager = observing  # type: ignore[method-assign]
        self.start()
        self.assertEqual(self.delivered(), [(OK,)])
        self.assertEqual(present, [True])
        self.assertFalse(os.path.exists(path))
        # The queue run's listing, the read, the marker with the removal.
        self.assertEqual(len(jobs), 3, jobs)
        self.assertEqual(jobs[-1], "mark")
        self.assertIn(f"{queueID}: removed", self.lines())
        sent = [i for i, line in enumerate(self.lines()) if "status=sent" in line]
        self.assertLess(sent[0], self.lines().index(f"{queueID}: removed"))

    def test_bouncedRemovedAfterNotification(self) -> None:
        """
        A file whose last recipient bounced goes only once the
        notification is queued, without being read again.
        """
        self.network.serverSettings["smtpd_relay_restrictions"] = "reject_unauth_destination"
        queueID = self.commit(OK, BAD)
        self.start()
        self.assertFalse(os.path.exists(self.path(queueID)))
        lines = self.lines()
        notified = [i for i, line in enumerate(lines) if "sender non-delivery notification" in line]
        self.assertEqual(len(notified), 1, lines)
        self.assertLess(notified[0], lines.index(f"{queueID}: removed"))

    def test_localLeftAlone(self) -> None:
        """
        Local recipients are not delivered by the queue manager and keep
        the file: it is removed only when nothing is pending.
        """
        queueID = self.commit(OK, LOCAL)
        self.start()
        self.assertEqual(self.delivered(), [(OK,)])
        self.assertEqual(self.statuses(queueID), {OK: RecipientStatus.DELIVERED, LOCAL: RecipientStatus.PENDING})
        self.assertEqual(self.deliveryLines(LOCAL), [])

    def test_deferredRetriedAfterBackoff(self) -> None:
        """
        A 4xx reply defers the recipient; the file is tried again only
        once the backoff (its time in the queue, at least
        minimal_backoff_time) has passed, then sent and removed.
        """
        # Default relay restrictions: 454 for a domain the server does not
        # relay for.
        queueID = self.commit(BAD)
        self.start()
        [line] = self.deliveryLines(BAD)
        self.assertIn("relay=mx.example.org[192.0.2.1]:25", line)
        self.assertIn("dsn=4.7.1, status=deferred (host mx.example.org[192.0.2.1] said: 454 4.7.1", line)
        self.assertEqual(self.statuses(queueID), {BAD: RecipientStatus.PENDING})
        self.assertEqual(len(self.network.connections), 1)
        # Queue runs every 60 s; minimal_backoff_time is 300 s.
        self.advance(240)
        self.assertEqual(len(self.network.connections), 1)
        self.advance(60)
        self.assertEqual(len(self.network.connections), 2)
        self.assertEqual(len(self.deliveryLines(BAD)), 2)
        # Deferred again after 300 s in the queue: as with Postfix, the
        # wait is the time in the queue (bounded), here 300 s again; the
        # next attempt is the file's modification time.
        self.assertEqual(os.stat(self.path(queueID)).st_mtime, self.clock.seconds() + 300)
        self.advance(240)
        self.assertEqual(len(self.network.connections), 2)
        self.network.serverSettings["smtpd_relay_restrictions"] = "permit"
        self.advance(60)
        self.assertEqual(len(self.network.connections), 3)
        self.assertEqual(self.delivered(), [(BAD,)])
        self.assertIn("status=sent (250 ", self.deliveryLines(BAD)[-1])
        self.assertFalse(os.path.exists(self.path(queueID)))
        # Each attempt re-enters Postfix's active queue, and says so.
        self.assertEqual(len([line for line in self.lines() if line.endswith("(queue active)")]), 3)

    def test_backoffIsTimeInQueue(self) -> None:
        """
        Each wait is the message's time in the queue so far, between
        minimal_backoff_time (300 s) and maximal_backoff_time (1000 s):
        attempts at 0, 300, 600, 1200 and 2200 s.
        """
        self.network.down.add("192.0.2.9")
        queueID = self.commit(LATER)
        start = self.clock.seconds()
        self.start()
        attempts = [0.0]
        for _ in range(4 * 1000 // 60 + 10):
            before = self.network.connections.count("192.0.2.9")
            self.advance(60)
            if self.network.connections.count("192.0.2.9") > before:
                attempts.append(self.clock.seconds() - start)
            if len(attempts) == 5:
                break
        # Queue runs come every 60 s, so an attempt is at most a run late.
        self.assertEqual([int(a // 60) * 60 for a in attempts], [0, 300, 600, 1200, 2220])
        self.assertEqual(self.statuses(queueID), {LATER: RecipientStatus.PENDING})

    def test_partialSuccessNeverResent(self) -> None:
        """
        A 5xx bounces its recipient while another is sent and a third,
        whose next hop is down, is deferred; one non-delivery notification
        is queued for the sender.  After a restart on the same queue only
        the deferred recipient is delivered.
        """
        self.network.serverSettings["smtpd_relay_restrictions"] = "reject_unauth_destination"
        self.network.down.add("192.0.2.9")
        queueID = self.commit(OK, BAD, LATER)
        self.start()
        self.assertEqual(self.delivered(), [(OK,)])
        self.assertEqual(
            self.statuses(queueID),
            {OK: RecipientStatus.DELIVERED, BAD: RecipientStatus.BOUNCED, LATER: RecipientStatus.PENDING},
        )
        [bounced] = self.deliveryLines(BAD)
        self.assertIn("dsn=5.7.1, status=bounced (host mx.example.org[192.0.2.1] said: 554 5.7.1", bounced)
        [deferred] = self.deliveryLines(LATER)
        self.assertIn(
            "relay=none, delay=0, delays=0/0/0/0, dsn=4.4.1, status=deferred (connect to down.example[192.0.2.9]:25: Connection refused)",
            deferred,
        )
        notified = [line for line in self.lines() if line.startswith(f"{queueID}: sender non-delivery notification: ")]
        self.assertEqual(len(notified), 1)

        # Restart: everything reachable and accepted now.  The backoff is
        # in the file, so it holds across the restart.
        self.network.down.clear()
        self.network.serverSettings["smtpd_relay_restrictions"] = "permit"
        self.clock.advance(10)
        self.start()
        self.assertEqual(self.delivered(), [(OK,)])
        self.advance(300)
        self.assertEqual(self.delivered(), [(OK,), (LATER,)])
        self.assertEqual(len(self.deliveryLines(OK)), 1)
        self.assertEqual(len(self.deliveryLines(BAD)), 1)
        self.assertFalse(os.path.exists(self.path(queueID)))
        notified = [line for line in self.lines() if line.startswith(f"{queueID}: sender non-delivery notification: ")]
        self.assertEqual(len(notified), 1)

    def test_notificationQueued(self) -> None:
        """
        A bounced recipient makes a non-delivery notification: queued with
        the null sender, addressed to the original sender, a
        multipart/report naming the recipient and the server's reply.
        """
        import email
        import email.policy

        self.network.serverSettings["smtpd_relay_restrictions"] = "reject_unauth_destination"
        self.network.down.add("192.0.2.9")
        queueID = self.commit(BAD, LATER, sender="sender@local.example")
        self.start()
        [line] = [l for l in self.lines() if l.startswith(f"{queueID}: sender non-delivery notification: ")]
        bounceID = line.rsplit(" ", 1)[1]
        with open(self.path(bounceID), "rb") as handle:
            queued = parseQueueFile(handle.read())
        self.assertEqual(queued.header.envelope.sender, "")
        self.assertEqual(queued.header.envelope.recipients, ("sender@local.example",))
        report = email.message_from_bytes(queued.content, policy=email.policy.default)
        self.assertEqual(report.get_content_type(), "multipart/report")
        self.assertIn(f"Final-Recipient: rfc822; {BAD}".encode(), queued.content)
        self.assertIn(b"Status: 5.7.1", queued.content)
        self.assertNotIn(f"Final-Recipient: rfc822; {LATER}".encode(), queued.content)

    def commitTold(
        self,
        *recipients: str,
        sender: str = "sender@client.example",
        content: bytes = CONTENT,
        settle: bool = True,
    ) -> str:
        """
        Commit a message and tell the running manager, as smtpd does
        through L{mtaguard.service.SharedServices.queued}: from the
        commit's callback.

        @param settle: whether to let the next hops answer before
            returning.
        """
        manager = self.manager
        assert manager is not None
        # As with the thread pool, the commit fires after smtpd added its
        # callback.
        worker = self.store.worker
        held = ManualWorker()
        self.store.worker = held
        try:
            message = self.store.newMessage(anEnvelope(*recipients, arrival=self.clock.seconds(), sender=sender))
            message.write(content)
            committed: Deferred[str] = message.commit()
            committed.addCallback(lambda queueID: manager.queued(queueID, recipients) or queueID)
            held.runAll()
        finally:
            self.store.worker = worker
        queueID = self.successResultOf(committed)
        if settle:
            self.network.settle()
        return queueID

    def test_committedNotReadBack(self) -> None:
        """
        A message the manager is told about as it is committed is
        delivered from what the store knows: its file is not read back
        (its last marker's job removes it), and the header the store gives
        is the one a read would give.
        """
        self.start()
        headers: list[Any] = []
        committedHeader = self.store.committedHeader

        def recorded(queueID: str) -> Any:
            header = committedHeader(queueID)
            headers.append(header)
            return header

        self.patch(self.store, "committedHeader", recorded)
        jobs: list[str] = []
        worker = self.store.worker

        class CountingWorker:
            def run(self, job: Callable[[], Any]) -> Deferred[Any]:
                jobs.append(getattr(job, "__name__", "?"))
                return worker.run(job)

        manager = self.manager
        assert manager is not None
        self.patch(manager, "_worker", CountingWorker())
        queueID = self.commitTold(OK, "second@mx.example.org", LOCAL)
        [header] = headers
        self.assertIsNotNone(header)
        with open(self.path(queueID), "rb") as handle:
            self.assertEqual(parseQueueFile(handle.read()).header, header.__class__(
                queueID=header.queueID,
                envelope=header.envelope,
                recipients=tuple(
                    r.__class__(r.address, r.status if r.address == LOCAL else RecipientStatus.DELIVERED, r.statusOffset)
                    for r in header.recipients
                ),
                size=header.size,
                contentOffset=header.contentOffset,
            ))
        self.assertEqual(self.delivered(), [(OK, "second@mx.example.org")])
        # No read: the two markers, then (a local recipient is pending) the
        # look at the file that keeps it.
        self.assertEqual(jobs, ["mark", "mark", "finish"])
        self.assertTrue(os.path.exists(self.path(queueID)))

    def test_committedBounceHasContent(self) -> None:
        """
        A bounce for a message whose header came from the store reads the
        content for the notification.
        """
        self.start()
        self.network.serverSettings["smtpd_relay_restrictions"] = "reject_unauth_destination"
        queueID = self.commitTold(BAD, sender="sender@local.example")
        [line] = [l for l in self.lines() if l.startswith(f"{queueID}: sender non-delivery notification: ")]
        bounceID = line.rsplit(" ", 1)[1]
        with open(self.path(bounceID), "rb") as handle:
            queued = parseQueueFile(handle.read())
        self.assertIn(b"Subject: hello", queued.content)
        self.assertFalse(os.path.exists(self.path(queueID)))

    def test_connectFailureDeferred(self) -> None:
        """
        A connection that fails defers the recipients and keeps the file.
        """
        self.network.down.add("192.0.2.9")
        queueID = self.commit(LATER)
        self.start()
        [line] = self.deliveryLines(LATER)
        self.assertIn("status=deferred (connect to down.example[192.0.2.9]:25: Connection refused)", line)
        self.assertEqual(self.statuses(queueID), {LATER: RecipientStatus.PENDING})
        self.assertEqual(self.network.connections, ["192.0.2.9"])

    def test_expired(self) -> None:
        """
        A recipient still deferred after maximal_queue_lifetime is bounced
        with "message expired", and the file removed.
        """
        self.network.down.add("192.0.2.9")
        queueID = self.commit(LATER)
        self.start()
        self.advance(86400 - 60)
        self.assertTrue(os.path.exists(self.path(queueID)))
        self.assertNotIn("bounced", self.deliveryLines(LATER)[-1])
        for _ in range(20):
            self.advance(60)
        last = self.deliveryLines(LATER)[-1]
        self.assertIn("status=bounced (message expired; last error: connect to down.example[192.0.2.9]:25", last)
        self.assertFalse(os.path.exists(self.path(queueID)))
        notified = [line for line in self.lines() if line.startswith(f"{queueID}: sender non-delivery notification: ")]
        self.assertEqual(len(notified), 1)

    def test_nullSenderExpiresSooner(self) -> None:
        """
        A null-sender message expires after bounce_queue_lifetime.
        """
        self.network.down.add("192.0.2.9")
        queueID = self.commit(LATER, sender="")
        self.start()
        for _ in range(80):
            self.advance(60)
        self.assertIn("message expired", self.deliveryLines(LATER)[-1])
        self.assertFalse(os.path.exists(self.path(queueID)))

    def test_concurrencyLimit(self) -> None:
        """
        At most default_destination_concurrency_limit connections are open
        to one next hop; the next message waits for one to finish, and then
        goes over that same connection (cached on demand, as Postfix's
        smtp_connection_cache_on_demand), which is closed when no more mail
        waits.
        """
        self.network.queue.holdCommits = True
        first = self.commit(OK)
        second = self.commit(OK)
        self.start(default_destination_concurrency_limit="1")
        self.assertEqual(len(self.network.connections), 1)
        self.network.queue.releaseCommits()
        self.network.settle()
        self.network.queue.releaseCommits()
        self.network.settle()
        self.assertEqual(len(self.network.connections), 1)
        self.assertFalse(os.path.exists(self.path(first)))
        self.assertFalse(os.path.exists(self.path(second)))
        self.assertEqual(self.delivered(), [(OK,), (OK,)])
        self.assertEqual(self.network.openConnections(), 0)

    # -- connection reuse --------------------------------------------------

    def queueNow(self, *recipients: str) -> str:
        """
        Commit a message and hand it to the running manager, as smtpd does.
        """
        queueID = self.commit(*recipients)
        assert self.manager is not None
        self.manager.queued(queueID, recipients)
        self.network.settle()
        return queueID

    def test_cachedForListedDestination(self) -> None:
        """
        A connection to a destination in smtp_connection_cache_destinations
        stays open after its message, carries the next message (the second
        transaction starts with RSET), and is closed after
        smtp_connection_cache_time_limit of idleness.
        """
        servers: list[HostileServer] = []

        def hostile() -> HostileServer:
            servers.append(HostileServer())
            return servers[-1]

        self.network.hostile[MX1] = hostile
        self.start(smtp_connection_cache_destinations="two.example")
        self.queueNow("a@two.example")
        self.assertEqual(self.network.openConnections(), 1)
        self.advance(1)
        self.queueNow("b@two.example")
        self.assertEqual(self.network.connections, [MX1])
        self.assertSentBy("a@two.example", MX1)
        self.assertSentBy("b@two.example", MX1)
        # Postfix's mark of a reused connection in the delivery log line.
        self.assertNotIn("conn_use=", self.deliveryLines("a@two.example")[0])
        self.assertIn("relay=mx1.two.example[192.0.2.21]:25, conn_use=2, delay=", self.deliveryLines("b@two.example")[0])
        [server] = servers
        self.assertIn(b"RSET", server.received)
        self.assertEqual(server.received.count(b"EHLO relay.example.net"), 1)
        self.advance(1)
        self.assertEqual(self.network.openConnections(), 1)
        self.advance(1)
        self.assertEqual(self.network.openConnections(), 0)
        self.assertEqual(server.received[-1], b"QUIT")

    def test_cachedWhileDeliveriesRun(self) -> None:
        """
        With smtp_connection_cache_on_demand, a connection whose message is
        done while another delivery to the same next hop is in progress is
        kept and carries the next message (Postfix's qmgr keeps on-demand
        caching on for concurrent deliveries); the last delivery of the
        burst closes its connection, and a cached one is closed after
        smtp_connection_cache_time_limit.
        """
        self.network.queue.holdCommits = True
        self.start()
        self.queueNow(OK)
        self.queueNow(OK)
        self.assertEqual(len(self.network.connections), 2)
        message, committed = self.network.queue.pendingCommits.pop(0)
        message._commitNow()
        committed.callback(message.queueID)
        self.network.settle()
        self.assertEqual(self.network.openConnections(), 2)
        self.queueNow(OK)
        self.assertEqual(len(self.network.connections), 2)
        self.assertEqual(len([line for line in self.deliveryLines(OK) if "conn_use=2" in line]), 0)
        self.network.queue.releaseCommits()
        self.network.settle()
        self.assertEqual(len(self.delivered()), 3)
        self.assertEqual(len([line for line in self.deliveryLines(OK) if "conn_use=2" in line]), 1)
        self.assertEqual(self.network.openConnections(), 1)
        self.advance(2)
        self.assertEqual(self.network.openConnections(), 0)

    def test_reuseTimeLimit(self) -> None:
        """
        A connection older than smtp_connection_reuse_time_limit is not
        reused: the next message gets a new connection.
        """
        self.network.hostile[MX1] = HostileServer
        self.start(
            smtp_connection_cache_destinations="two.example",
            smtp_connection_cache_time_limit="100s",
            smtp_connection_reuse_time_limit="10s",
        )
        self.queueNow("a@two.example")
        self.advance(5)
        self.queueNow("b@two.example")
        self.assertEqual(self.network.connections, [MX1])
        self.advance(6)
        self.queueNow("c@two.example")
        self.assertEqual(self.network.connections, [MX1, MX1])
        self.assertSentBy("c@two.example", MX1)

    def test_reuseCountLimit(self) -> None:
        """
        smtp_connection_reuse_count_limit bounds the messages one
        connection carries.
        """
        self.network.hostile[MX1] = HostileServer
        self.start(smtp_connection_cache_destinations="two.example", smtp_connection_reuse_count_limit="2")
        for recipient in ("a@two.example", "b@two.example", "c@two.example"):
            self.queueNow(recipient)
        self.assertEqual(self.network.connections, [MX1, MX1])

    def test_notReusedAfterUnexpectedInput(self) -> None:
        """
        A server that sends more than the reply to the end of data has
        broken the conversation: its connection is closed, not reused.
        """
        self.network.hostile[MX1] = lambda: HostileServer(END=b"250 2.0.0 Ok\r\n250 2.0.0 extra\r\n")
        self.start(smtp_connection_cache_destinations="two.example")
        self.queueNow("a@two.example")
        self.assertEqual(self.network.openConnections(), 0)
        self.queueNow("b@two.example")
        self.assertEqual(self.network.connections, [MX1, MX1])
        self.assertSentBy("a@two.example", MX1)
        self.assertSentBy("b@two.example", MX1)

    def test_notReusedAfterProtocolError(self) -> None:
        """
        A connection whose session ended in a protocol error (a malformed
        reply) is never cached.
        """
        self.network.hostile[MX1] = lambda: HostileServer(RCPT=b"2x0 what\r\n")
        self.start(smtp_connection_cache_destinations="two.example", smtp_mx_address_limit="1")
        self.queueNow("a@two.example")
        self.assertEqual(self.network.openConnections(), 0)
        self.assertEqual(self.network.connections, [MX1])

    def test_failedRsetGoesToNewConnection(self) -> None:
        """
        A cached connection whose RSET fails hands the message back
        untried: it is delivered over a new connection, logged once.
        """
        self.network.hostile[MX1] = lambda: HostileServer(RSET=b"421 4.3.2 closing\r\n")
        self.start(smtp_connection_cache_destinations="two.example")
        self.queueNow("a@two.example")
        self.queueNow("b@two.example")
        self.assertEqual(self.network.connections, [MX1, MX1])
        self.assertSentBy("b@two.example", MX1)

    def test_notSharedAcrossNexthops(self) -> None:
        """
        A connection is reused only for the next-hop domain (and so the TLS
        policy, chosen per next-hop domain) it was made for, even when two
        domains share a server.
        """
        self.network.serverSettings["smtpd_relay_restrictions"] = "permit"
        self.start(smtp_connection_cache_destinations="mx.example.org, other.example")
        self.queueNow(OK)
        self.queueNow("x@other.example")
        self.assertEqual(self.network.connections, ["192.0.2.1", "192.0.2.1"])
        self.queueNow(OK)
        self.assertEqual(self.network.connections, ["192.0.2.1", "192.0.2.1"])

    def test_plaintextRetryAfterTLSFailure(self) -> None:
        """
        At level C{may}, a TLS handshake that fails sends the message to the
        same server again at once, in clear, as Postfix does; that
        plaintext connection is never cached for mail that expects TLS to
        be tried.
        """
        self.tlsPolicy = _MayPolicy()
        servers: list[HostileServer] = []

        def hostile() -> HostileServer:
            servers.append(
                HostileServer(
                    EHLO=b"250-mx1.two.example\r\n250 STARTTLS\r\n",
                    STARTTLS=b"220 2.0.0 Ready to start TLS\r\n",
                )
            )
            return servers[-1]

        self.network.hostile[MX1] = hostile
        self.start(smtp_connection_cache_destinations="two.example")
        self.queueNow("a@two.example")
        self.assertEqual(self.network.connections, [MX1, MX1])
        self.assertSentBy("a@two.example", MX1)
        self.assertIn(b"STARTTLS", servers[0].received)
        self.assertNotIn(b"STARTTLS", servers[1].received)
        self.assertEqual(self.network.openConnections(), 0)

    def test_unusableTLSPolicy(self) -> None:
        """
        A next hop whose TLS policy cannot be built defers its recipients
        with the reason, like any connection that cannot be made.
        """

        def broken(domain: str) -> Any:
            raise ValueError("smtp_tls_CAfile: no such file")

        self.tlsPolicyFor = broken
        queueID = self.commit(OK)
        self.start()
        [line] = self.deliveryLines(OK)
        self.assertIn(
            "relay=none, delay=0, delays=0/0/0/0, dsn=4.3.5, status=deferred (cannot connect to"
            " mx.example.org[192.0.2.1]:25: smtp_tls_CAfile: no such file)",
            line,
        )
        self.assertEqual(self.statuses(queueID), {OK: RecipientStatus.PENDING})

    def test_stopClosesCached(self) -> None:
        """
        Stopping the manager closes the cached connections.
        """
        self.network.hostile[MX1] = HostileServer
        manager = self.start(smtp_connection_cache_destinations="two.example")
        self.queueNow("a@two.example")
        self.assertEqual(self.network.openConnections(), 1)
        manager.stopService()
        self.network.settle()
        self.assertEqual(self.network.openConnections(), 0)

    def test_flush(self) -> None:
        """
        L{QueueManager.flush} (C{postqueue -f}) makes every deferred
        message due now: it is attempted at once, not after its backoff.
        """
        self.network.down.add("192.0.2.9")
        queueID = self.commit(LATER)
        self.start()
        self.assertEqual(self.network.connections, ["192.0.2.9"])
        self.advance(10)
        self.assertEqual(len(self.network.connections), 1)
        self.network.down.clear()
        self.network.serverSettings["smtpd_relay_restrictions"] = "permit"
        self.manager.flush()  # type: ignore[union-attr]
        self.network.settle()
        self.assertEqual(self.network.connections, ["192.0.2.9", "192.0.2.9"])
        self.assertEqual(self.delivered(), [(LATER,)])
        self.assertFalse(os.path.exists(self.path(queueID)))

    def test_deliverNow(self) -> None:
        """
        L{QueueManager.deliverNow} (C{postqueue -i}) attempts that message
        only, at once, and says whether it is in the queue; text that is not
        a queue ID is refused before it reaches the file system.
        """
        self.network.down.add("192.0.2.9")
        first = self.commit(LATER)
        second = self.commit(LATER)
        manager = self.start()
        self.assertEqual(len(self.network.connections), 2)
        self.network.down.clear()
        self.network.serverSettings["smtpd_relay_restrictions"] = "permit"
        self.assertTrue(self.successResultOf(manager.deliverNow(first)))
        self.network.settle()
        self.assertEqual(len(self.network.connections), 3)
        self.assertFalse(os.path.exists(self.path(first)))
        self.assertTrue(os.path.exists(self.path(second)))
        self.assertFalse(self.successResultOf(manager.deliverNow(first)))
        self.assertRaises(ValueError, manager.deliverNow, "../active")

    def test_requeueKeepsDone(self) -> None:
        """
        L{QueueManager.requeue} (C{postsuper -r}) attempts the message again
        at once, with the routing of now; a recipient already delivered is
        not sent again, and the queue ID stays the same.
        """
        self.network.down.add("192.0.2.9")
        queueID = self.commit(OK, LATER)
        manager = self.start()
        self.assertEqual(self.delivered(), [(OK,)])
        self.network.down.clear()
        self.network.serverSettings["smtpd_relay_restrictions"] = "permit"
        self.assertEqual(self.successResultOf(manager.requeue([queueID])), [queueID])
        self.network.settle()
        self.assertEqual(self.delivered(), [(OK,), (LATER,)])
        self.assertEqual(len(self.deliveryLines(OK)), 1)
        self.assertFalse(os.path.exists(self.path(queueID)))
        self.assertIn("Requeued: 1 message", self.lines())

    def test_requeueAll(self) -> None:
        """
        C{requeue(None)} requeues every message; unknown queue IDs are not
        counted.
        """
        self.network.down.add("192.0.2.9")
        first = self.commit(LATER)
        second = self.commit(LATER)
        manager = self.start()
        self.assertEqual(self.successResultOf(manager.requeue(["4dFVry0000z3"])), [])
        self.network.down.clear()
        self.network.serverSettings["smtpd_relay_restrictions"] = "permit"
        self.assertEqual(sorted(self.successResultOf(manager.requeue(None))), sorted([first, second]))
        self.network.settle()
        self.assertEqual(self.delivered(), [(LATER,), (LATER,)])

    def test_requeueWhileDelivering(self) -> None:
        """
        A message requeued while an attempt is in progress is attempted
        again right after that attempt ends, not after its backoff.
        """
        self.network.down.add("192.0.2.9")
        self.network.queue.holdCommits = True
        queueID = self.commit(OK, LATER)
        manager = self.start()
        # OK's delivery waits for the next hop's commit; LATER was refused.
        self.assertEqual(sorted(self.network.connections), ["192.0.2.1", "192.0.2.9"])
        self.successResultOf(manager.requeue([queueID]))
        self.network.settle()
        self.assertEqual(self.network.connections.count("192.0.2.9"), 1)
        self.network.queue.releaseCommits()
        self.network.settle()
        self.assertEqual(self.network.connections.count("192.0.2.9"), 2)
        self.assertEqual(self.network.connections.count("192.0.2.1"), 1)

    def test_delete(self) -> None:
        """
        L{QueueManager.delete} (C{postsuper -d} while running) removes the
        file and logs Postfix's C{removed} line.
        """
        self.network.down.add("192.0.2.9")
        queueID = self.commit(LATER)
        manager = self.start()
        self.assertEqual(self.successResultOf(manager.delete([queueID, "4dFVry0000z3"])), [queueID])
        self.assertFalse(os.path.exists(self.path(queueID)))
        self.assertIn(f"{queueID}: removed", self.lines())
        self.assertRaises(ValueError, manager.delete, ["../x"])

    # -- the next MX after a failed session ------------------------------

    def nextMX(self, *recipients: str, **values: str) -> str:
        """
        Commit a message for C{recipients} and start, with mx2 accepting
        anything.
        """
        self.network.serverSettings["smtpd_relay_restrictions"] = "permit"
        queueID = self.commit(*recipients)
        self.start(**values)
        return queueID

    def assertSentBy(self, recipient: str, address: str) -> None:
        [line] = self.deliveryLines(recipient)
        self.assertIn(f"[{address}]:25,", line)
        self.assertIn("status=sent (250 ", line)

    def test_nextMXAfter4xxGreeting(self) -> None:
        """
        A 421 greeting sends the message to the next MX; only the final
        outcome gets a to= line, the failure is noted as Postfix does.
        """
        self.network.hostile[MX1] = lambda: HostileServer(b"421 4.3.2 mx1 busy\r\n")
        queueID = self.nextMX("a@two.example")
        self.assertEqual(self.network.connections, [MX1, MX2])
        self.assertSentBy("a@two.example", MX2)
        self.assertIn(
            f"{queueID}: host mx1.two.example[192.0.2.21] refused to talk to me: 421 4.3.2 mx1 busy",
            self.lines(),
        )
        self.assertFalse(os.path.exists(self.path(queueID)))

    def test_nextMXAfter5xxGreeting(self) -> None:
        """
        With smtp_skip_5xx_greeting = yes (the default) a 5xx greeting
        moves on to the next MX like a 4xx one.
        """
        self.network.hostile[MX1] = lambda: HostileServer(b"554 5.7.1 go away\r\n")
        self.nextMX("a@two.example")
        self.assertEqual(self.network.connections, [MX1, MX2])
        self.assertSentBy("a@two.example", MX2)

    def test_5xxGreetingNotSkipped(self) -> None:
        """
        With smtp_skip_5xx_greeting = no a 5xx greeting bounces the
        message; no other MX is tried.
        """
        self.network.hostile[MX1] = lambda: HostileServer(b"554 5.7.1 go away\r\n")
        queueID = self.nextMX("a@two.example", smtp_skip_5xx_greeting="no")
        self.assertEqual(self.network.connections, [MX1])
        [line] = self.deliveryLines("a@two.example")
        self.assertIn("dsn=5.7.1, status=bounced (host mx1.two.example[192.0.2.21] refused to talk to me: 554 5.7.1 go away)", line)
        self.assertFalse(os.path.exists(self.path(queueID)))

    def test_nextMXAfterHeloFailure(self) -> None:
        """
        EHLO and HELO both refused: the next MX.
        """
        self.network.hostile[MX1] = lambda: HostileServer(
            EHLO=b"550 5.5.1 no\r\n", HELO=b"550 5.5.1 no\r\n"
        )
        self.nextMX("a@two.example")
        self.assertEqual(self.network.connections, [MX1, MX2])
        self.assertSentBy("a@two.example", MX2)

    def test_nextMXAfterLostConnection(self) -> None:
        """
        A connection lost before MAIL: the next MX.
        """
        self.network.hostile[MX1] = lambda: HostileServer(EHLO=HostileServer.DROP)
        self.nextMX("a@two.example")
        self.assertEqual(self.network.connections, [MX1, MX2])
        self.assertSentBy("a@two.example", MX2)

    def test_nextMXAfterTimeout(self) -> None:
        """
        A server that never greets is abandoned after smtp_helo_timeout,
        then the next MX is tried.
        """
        self.network.hostile[MX1] = lambda: HostileServer(HostileServer.SILENT)
        self.nextMX("a@two.example", smtp_helo_timeout="30s")
        self.assertEqual(self.network.connections, [MX1])
        self.assertEqual(self.delivered(), [])
        self.advance(30)
        self.assertEqual(self.network.connections, [MX1, MX2])
        self.assertSentBy("a@two.example", MX2)

    def test_nextMXAfterMail4xx(self) -> None:
        """
        A 4xx reply to MAIL FROM: the next MX.
        """
        self.network.hostile[MX1] = lambda: HostileServer(MAIL=b"451 4.3.0 try later\r\n")
        self.nextMX("a@two.example")
        self.assertEqual(self.network.connections, [MX1, MX2])
        self.assertSentBy("a@two.example", MX2)

    def test_rcptRepliesPerRecipient(self) -> None:
        """
        On one server a 4xx to RCPT moves only that recipient on to the
        next MX, a 5xx bounces its recipient there and then (it is never
        tried elsewhere), and an accepted one is sent.
        """

        def rcpt(line: bytes) -> bytes:
            if b"<soft@" in line:
                return b"451 4.2.0 mailbox busy\r\n"
            if b"<hard@" in line:
                return b"550 5.1.1 no such user\r\n"
            return b"250 2.1.5 Ok\r\n"

        servers: list[HostileServer] = []

        def hostile() -> HostileServer:
            servers.append(HostileServer(RCPT=rcpt))
            return servers[-1]

        self.network.hostile[MX1] = hostile
        queueID = self.nextMX("soft@two.example", "hard@two.example", "ok@two.example")
        self.assertEqual(self.network.connections, [MX1, MX2])
        self.assertSentBy("ok@two.example", MX1)
        self.assertSentBy("soft@two.example", MX2)
        [bounced] = self.deliveryLines("hard@two.example")
        self.assertIn("relay=mx1.two.example[192.0.2.21]:25,", bounced)
        self.assertIn("status=bounced (host mx1.two.example[192.0.2.21] said: 550 5.1.1 no such user", bounced)
        self.assertEqual(self.delivered(), [("soft@two.example",)])
        self.assertIn(
            f"{queueID}: host mx1.two.example[192.0.2.21] said: 451 4.2.0 mailbox busy (in reply to RCPT TO command)",
            self.lines(),
        )

    def test_lastServerDefers(self) -> None:
        """
        When every server fails softly, the last one's failure defers the
        recipient, logged with that server as relay.
        """
        for address in (MX1, MX2, MX3):
            self.network.hostile[address] = lambda: HostileServer(b"421 4.3.2 busy\r\n")
        queueID = self.nextMX("a@two.example")
        self.assertEqual(self.network.connections, [MX1, MX2, MX3])
        [line] = self.deliveryLines("a@two.example")
        self.assertIn("relay=mx3.two.example[192.0.2.23]:25,", line)
        self.assertIn("status=deferred (host mx3.two.example[192.0.2.23] refused to talk to me: 421 4.3.2 busy)", line)
        self.assertEqual(self.statuses(queueID), {"a@two.example": RecipientStatus.PENDING})

    def test_sessionLimit(self) -> None:
        """
        smtp_mx_session_limit counts sessions that completed the handshake:
        with a limit of 1, a failed greeting does not use it up, a 4xx to
        MAIL after EHLO does.
        """
        self.network.hostile[MX1] = lambda: HostileServer(b"421 4.3.2 busy\r\n")
        self.network.hostile[MX2] = lambda: HostileServer(MAIL=b"451 4.3.0 try later\r\n")
        self.nextMX("a@two.example", smtp_mx_session_limit="1")
        self.assertEqual(self.network.connections, [MX1, MX2])
        [line] = self.deliveryLines("a@two.example")
        self.assertIn("relay=mx2.two.example[192.0.2.22]:25,", line)
        self.assertIn("status=deferred (host mx2.two.example[192.0.2.22] said: 451 4.3.0 try later", line)

    def test_addressLimit(self) -> None:
        """
        smtp_mx_address_limit bounds the servers tried: with 1, the first
        server's soft failure defers the recipient.
        """
        self.network.hostile[MX1] = lambda: HostileServer(b"421 4.3.2 busy\r\n")
        self.nextMX("a@two.example", smtp_mx_address_limit="1")
        self.assertEqual(self.network.connections, [MX1])
        [line] = self.deliveryLines("a@two.example")
        self.assertIn("relay=mx1.two.example[192.0.2.21]:25,", line)
        self.assertIn("status=deferred (", line)

    def test_refusedThenSessionFailure(self) -> None:
        """
        A refused connection and a failed session in a row: the third
        server delivers.
        """
        self.network.down.add(MX1)
        self.network.hostile[MX2] = lambda: HostileServer(MAIL=b"451 4.3.0 try later\r\n")
        self.network.serverSettings["smtpd_relay_restrictions"] = "permit"
        self.commit("a@two.example")
        self.start()
        self.assertEqual(self.network.connections, [MX1, MX2, MX3])
        self.assertSentBy("a@two.example", MX3)


class SASLClientTests(SynchronousTestCase):
    """
    C{smtp_sasl_auth_enable}: the queue manager logs in to a relay host
    with the password C{smtp_sasl_password_maps} holds for it.
    """

    def run_(self, **values: str) -> tuple[QueueManagerTests, HostileServer]:
        case = QueueManagerTests("test_delivered")
        case.setUp()
        self.addCleanup(case.tearDown)
        server = HostileServer(
            EHLO=b"250-mx1.two.example\r\n250 AUTH PLAIN LOGIN\r\n",
            AUTH=b"235 2.7.0 Authentication successful\r\n",
        )
        case.network.hostile[MX1] = lambda: server
        passwords = os.path.abspath(self.mktemp())
        with open(passwords, "w") as handle:
            handle.write("[mx1.two.example]:587 relayuser:s3cret\n")
        case.commit(OK)
        case.start(
            relayhost="[mx1.two.example]:587",
            smtp_sasl_auth_enable="yes",
            smtp_sasl_password_maps=f"texthash:{passwords}",
            **values,
        )
        return case, server

    def test_loginWithPassword(self) -> None:
        """
        With plaintext mechanisms allowed, AUTH PLAIN carries the user and
        password found under the relayhost as written, and the message is
        sent.
        """
        import base64

        case, server = self.run_(smtp_sasl_security_options="noanonymous")
        token = base64.b64encode(b"\0relayuser\0s3cret")
        self.assertIn(b"AUTH PLAIN " + token, server.received)
        self.assertTrue(any("status=sent" in line for line in case.deliveryLines(OK)), case.lines())

    def test_defaultSecurityOptions(self) -> None:
        """
        With Postfix's default C{noplaintext}, PLAIN and LOGIN are not used
        and the message is deferred, not sent unauthenticated.
        """
        case, server = self.run_()
        self.assertFalse(any(line.startswith(b"AUTH") for line in server.received))
        self.assertFalse(any(line.startswith(b"MAIL") for line in server.received))
        self.assertTrue(
            any("status=deferred" in line and "no mechanism available" in line for line in case.deliveryLines(OK)),
            case.lines(),
        )


class ServiceWiringTests(SynchronousTestCase):
    """
    L{mtaguard.service} builds one queue manager for the C{smtp} transports.
    """

    def test_buildSmtp(self) -> None:
        """
        The C{smtp} builder adds one shared queue manager (C{qmgr}) and its
        control socket service (C{control}) to the service tree, whatever
        the number of C{smtp} services; committed messages are handed to
        it.
        """
        from twisted.application.service import MultiService

        from mtaguard.config import parseConfiguration
        from mtaguard.control._server import ControlService
        from mtaguard.service import ClientTransport, SharedServices, _buildSmtp

        import twisted.names.client

        # The real resolver would schedule re-reads of resolv.conf on the
        # global reactor.
        self.patch(twisted.names.client, "createResolver", lambda: FakeResolver({}))
        # Short, for the control socket's path (108 bytes at most).
        queueDirectory = tempfile.mkdtemp(prefix="mtg-qm-")
        self.addCleanup(shutil.rmtree, queueDirectory, True)
        configuration = parseConfiguration(
            self.mktemp(),
            f"queue_directory = {queueDirectory}\nmyhostname = mx.example.org\n",
            "smtp unix - - n - - smtp\nrelay unix - - n - - smtp\n",
        )
        top = MultiService()
        shared = SharedServices(configuration, top, Clock())
        children = [
            _buildSmtp(entry, configuration.view(entry), (), shared) for entry in configuration.services()
        ]
        self.assertEqual([child.name for child in children], ["smtp/unix", "relay/unix"])
        managers = {child.manager for child in children if isinstance(child, ClientTransport)}
        self.assertEqual(len(managers), 1)
        [manager] = managers
        self.assertIsInstance(manager, QueueManager)
        self.assertIs(top.getServiceNamed("qmgr"), manager)
        control = top.getServiceNamed("control")
        self.assertIsInstance(control, ControlService)
        self.assertEqual(control.path, os.path.join(queueDirectory, "mtaguard", "private", "control"))
        calls: list[str] = []
        self.patch(manager, "attempt", lambda queueID, header=None: calls.append(queueID) or succeed(None))
        shared.queued("ID1", ("a@remote.example",))
        shared.queued("ID2", ("postmaster@mx.example.org",))
        self.assertEqual(calls, ["ID1"])



class MarkerTests(SynchronousTestCase):
    """
    L{markRecipient} copes with a file deleted by mtaguard-postsuper.
    """

    def test_deletedFile(self) -> None:
        """
        A queue file removed while its message was being delivered has
        nothing left to mark: no error, C{False}.
        """
        from mtaguard.queue._format import QueuedRecipient
        from mtaguard.queue._markers import markRecipient

        recipient = QueuedRecipient("x@example.org", RecipientStatus.PENDING, 10)
        self.assertFalse(
            markRecipient(os.path.join(self.mktemp(), "gone"), recipient, RecipientStatus.DELIVERED)
        )
