"""
Tests for L{mtaguard.client.SMTPClientProtocol}: the client delivering to
mtaguard's own server in memory, and to hostile scripted next hops that
trickle, stop reading, or inject plaintext around STARTTLS.
"""

from __future__ import annotations

import io
from typing import Any, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import TimeoutError
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.client import (
    CHUNK_SIZE,
    ClientSession,
    ConnectionUnusable,
    DeliveryResult,
    OutboundMessage,
    RecipientOutcome,
    SessionSettings,
    SMTPClientProtocol,
    connectNextHop,
)
from mtaguard.config import ParameterView
from mtaguard.queue import Envelope, encodeQueueFile, parseQueueFile
from mtaguard.smtpd import ServerContext, SMTPServerProtocol
from mtaguard.testing import MemoryQueue

from .smtpdharness import BASE

HOP = "mx.example.org[192.0.2.1]"
LOCAL = "postmaster@mx.example.org"
SENDER = "alice@client.example"

#: Leading dots (a lone "." line too), 8-bit bytes, and a last line
#: without its line ending: what must survive the round trip.
CONTENT = (
    b"Subject: round trip\r\n"
    b"\r\n"
    b".leading dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"caf\xc3\xa9 and \xff\xfe raw 8-bit\r\n"
    b"last line"
)


def clientView(**values: str) -> ParameterView:
    """
    The delivering service's parameters: Postfix's defaults, per-request
    deadlines on unless overridden.
    """
    settings = dict(BASE)
    settings["smtp_per_request_deadline"] = "yes"
    settings.update(values)
    return ParameterView(settings)


def outbound(
    content: bytes = CONTENT,
    recipients: tuple[str, ...] = (LOCAL,),
    source: Optional[io.BytesIO] = None,
    parameters: tuple[tuple[str, Optional[str]], ...] = (("BODY", "8BITMIME"),),
) -> OutboundMessage:
    """
    A message whose content comes from a file-like source.
    """
    return OutboundMessage(
        SENDER,
        recipients,
        parameters,
        source if source is not None else io.BytesIO(content),
        len(content),
        "QID1",
    )


class Recorder:
    """
    Collects what the protocol reports through its callbacks.
    """

    def __init__(self) -> None:
        self.outcomes: list[RecipientOutcome] = []
        self.done: list[DeliveryResult] = []
        self.unusable: list[ConnectionUnusable] = []

    def protocol(
        self,
        clock: Clock,
        view: Optional[ParameterView] = None,
        tlsLevel: str = "none",
        discard: frozenset[str] = frozenset(),
        **kw: Any,
    ) -> SMTPClientProtocol:
        session = ClientSession(
            SessionSettings(
                nextHop=HOP,
                heloName="client.example",
                tlsLevel=tlsLevel,
                discardEhloKeywords=discard,
            )
        )
        return SMTPClientProtocol(
            session=session,
            nextHop=HOP,
            view=view or clientView(),
            clock=clock,
            onOutcome=self.outcomes.append,
            onMessageDone=self.done.append,
            onUnusable=self.unusable.append,
            **kw,
        )


class RecordingSource(io.BytesIO):
    """
    A content source that remembers how much each read asked for.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: Optional[int] = -1) -> bytes:
        self.reads.append(-1 if size is None else size)
        return super().read(size)


class TCPLikeTransport(FakeTransport):
    """
    A L{FakeTransport} with a TCP transport's flow control: a streaming
    producer is paused while more than C{bufferSize} bytes wait to be sent,
    and resumed when the peer has taken them.
    """

    bufferSize = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.registrations: list[bool] = []
        self.pauses = 0
        self.maxBuffered = 0
        self._pausedProducer = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.registrations.append(streaming)
        super().registerProducer(producer, streaming)

    def write(self, data: bytes) -> None:
        super().write(data)
        buffered = sum(len(chunk) for chunk in self.stream)
        self.maxBuffered = max(self.maxBuffered, buffered)
        if (
            self.producer is not None
            and self.streamingProducer
            and not self._pausedProducer
            and buffered > self.bufferSize
        ):
            self._pausedProducer = True
            self.pauses += 1
            self.producer.pauseProducing()

    def getOutBuffer(self) -> Any:
        data = super().getOutBuffer()
        if self._pausedProducer:
            self._pausedProducer = False
            if self.producer is not None:
                self.producer.resumeProducing()
        return data


class InMemoryDelivery:
    """
    The client connected to mtaguard's own server through L{iosim}, both
    on one L{Clock}.
    """

    def __init__(
        self, testCase: SynchronousTestCase, client: str = "127.0.0.1", **server: str
    ) -> None:
        self.clock = Clock()
        # The server's timers run on a clock of their own, so that the
        # client's can be inspected alone.
        self.serverClock = Clock()
        settings = dict(BASE)
        settings.update(server)
        self.queue = MemoryQueue()
        self.server = SMTPServerProtocol(
            ServerContext(view=ParameterView(settings), queue=self.queue, clock=self.serverClock)
        )
        self.recorder = Recorder()
        # The server offers CHUNKING: BDAT unless the test case says DATA.
        discard = frozenset({"CHUNKING"}) if getattr(testCase, "useData", False) else frozenset()
        self.client = self.recorder.protocol(self.clock, discard=discard)
        self.serverTransport = FakeTransport(
            self.server, isServer=True, peerAddress=IPv4Address("TCP", client, 40000)
        )
        self.clientTransport = TCPLikeTransport(self.client, isServer=False)
        self.pump: IOPump = connect(
            self.server,
            self.serverTransport,
            self.client,
            self.clientTransport,
            clock=self.clock,
        )

    def deliver(self, message: OutboundMessage) -> Deferred[DeliveryResult]:
        delivered = self.client.deliver(message)
        self.pump.flush()
        return delivered


def stored(content: bytes) -> bytes:
    """
    What the next hop must store for C{content}: CRLF line endings, and a
    final CRLF added to an unterminated last line.
    """
    return content if content.endswith(b"\r\n") else content + b"\r\n"


def withoutReceived(queued: bytes) -> bytes:
    """
    The queued content without the Received header the server put first.
    """
    lines = queued.split(b"\r\n")
    assert lines[0].startswith(b"Received: ")
    index = 1
    while lines[index].startswith(b"\t"):
        index += 1
    return b"\r\n".join(lines[index:])


class EndToEndTests(SynchronousTestCase):
    """
    The client against mtaguard's server, in memory, sending content in
    BDAT chunks (the server offers CHUNKING and PIPELINING).
    """

    useData = False

    def test_transferMode(self) -> None:
        """
        These tests run the transfer mode they claim to.
        """
        d = InMemoryDelivery(self)
        self.successResultOf(d.deliver(outbound()))
        summary = d.server.session.statistics.summary()
        used, unused = ("data=", "bdat=") if self.useData else ("bdat=", "data=")
        self.assertIn(used, summary)
        self.assertNotIn(unused, summary)

    def test_roundTrip(self) -> None:
        """
        A message with leading dots and 8-bit bytes is queued by the next
        hop exactly as it was queued here; every recipient is reported
        sent with the server's reply, through the callbacks and the
        L{Deferred}.
        """
        d = InMemoryDelivery(self)
        result = self.successResultOf(d.deliver(outbound()))
        [message] = d.queue.committed
        self.assertEqual(withoutReceived(bytes(message.content)), stored(CONTENT))
        self.assertEqual(message.envelope.sender, SENDER)
        self.assertEqual(message.envelope.recipients, (LOCAL,))
        self.assertIn(("BODY", "8BITMIME"), message.envelope.parameters)
        [outcome] = result.outcomes
        self.assertEqual((outcome.recipient, outcome.status, outcome.dsn), (LOCAL, "sent", "2.0.0"))
        self.assertEqual(d.recorder.outcomes, [outcome])
        self.assertEqual(d.recorder.done, [result])
        self.assertFalse(result.untried)
        self.assertTrue(d.client.ready)

    def test_fromQueueFile(self) -> None:
        """
        L{OutboundMessage.fromQueueFile} reads the envelope and pending
        recipients from a queue file and streams its content from the
        content offset.
        """
        envelope = Envelope(
            SENDER, (LOCAL,), (("BODY", "8BITMIME"),), "192.0.2.9", 4000, "unknown",
            "client.example", "ESMTP", False, None, 0.0,
        )
        data = encodeQueueFile("QID7", envelope, CONTENT)
        header = parseQueueFile(data).header
        message = OutboundMessage.fromQueueFile(header, io.BytesIO(data))
        self.assertEqual((message.queueID, message.size, message.recipients), ("QID7", len(CONTENT), (LOCAL,)))
        d = InMemoryDelivery(self)
        self.successResultOf(d.deliver(message))
        [queued] = d.queue.committed
        self.assertEqual(withoutReceived(bytes(queued.content)), stored(CONTENT))

    def test_largeContentStreamed(self) -> None:
        """
        Large content goes through a streaming producer registered with the
        transport, read 64 KB at a time, paused whenever the transport's
        buffer is full: memory stays bounded by a chunk plus the transport
        buffer, and the next hop gets every byte.
        """
        line = b"x" * 70 + b"\r\n"
        content = b"Subject: big\r\n\r\n" + b".dot line\r\n" + line * 30000
        source = RecordingSource(content)
        d = InMemoryDelivery(self)
        result = self.successResultOf(d.deliver(outbound(content, source=source)))
        self.assertEqual(result.outcomes[0].status, "sent")
        [message] = d.queue.committed
        self.assertEqual(withoutReceived(bytes(message.content)), content)
        self.assertEqual(d.clientTransport.registrations, [True])
        self.assertGreater(d.clientTransport.pauses, 10)
        self.assertLessEqual(max(source.reads), CHUNK_SIZE)
        self.assertNotIn(-1, source.reads)
        self.assertGreaterEqual(len(source.reads), len(content) // CHUNK_SIZE)
        # One chunk, plus dot-stuffing, beyond the transport's bound.
        self.assertLess(d.clientTransport.maxBuffered, TCPLikeTransport.bufferSize + CHUNK_SIZE + 4096)
        self.assertIsNone(d.clientTransport.producer)

    def test_severalMessagesOneConnection(self) -> None:
        """
        One connection carries several messages one after the other, and
        QUIT closes it.
        """
        d = InMemoryDelivery(self)
        first = self.successResultOf(d.deliver(outbound(b"Subject: one\r\n\r\n1\r\n")))
        second = self.successResultOf(d.deliver(outbound(b"Subject: two\r\n\r\n2\r\n")))
        third = self.successResultOf(d.deliver(outbound(b"Subject: three\r\n\r\n3\r\n")))
        for result in (first, second, third):
            self.assertEqual([o.status for o in result.outcomes], ["sent"])
        self.assertEqual(
            [withoutReceived(bytes(m.content)) for m in d.queue.committed],
            [b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n2\r\n", b"Subject: three\r\n\r\n3\r\n"],
        )
        closed = d.client.quit()
        d.pump.flush()
        self.successResultOf(closed)
        self.assertFalse(d.client.usable)
        self.assertEqual(d.recorder.unusable, [])
        self.assertEqual(d.clock.getDelayedCalls(), [])

    def test_mixedOutcomesDeferred(self) -> None:
        """
        A server that refuses one recipient with 454 (relay access denied):
        the other is sent, the refused one deferred with the server's words.
        """
        d = InMemoryDelivery(self, client="203.0.113.9")
        result = self.successResultOf(d.deliver(outbound(recipients=(LOCAL, "victim@remote.example"))))
        self.assertEqual(
            sorted((o.recipient, o.status, o.dsn) for o in result.outcomes),
            [(LOCAL, "sent", "2.0.0"), ("victim@remote.example", "deferred", "4.7.1")],
        )
        [refused] = [o for o in result.outcomes if o.status == "deferred"]
        self.assertEqual(
            refused.reason,
            f"host {HOP} said: 454 4.7.1 <victim@remote.example>: Relay access denied"
            " (in reply to RCPT TO command)",
        )
        [message] = d.queue.committed
        self.assertEqual(message.envelope.recipients, (LOCAL,))

    def test_mixedOutcomesBounced(self) -> None:
        """
        With C{reject_unauth_destination} the refused recipient is bounced
        (5xx), the other still sent, and the connection can carry the next
        message.
        """
        d = InMemoryDelivery(
            self,
            client="203.0.113.9",
            smtpd_relay_restrictions="permit_mynetworks, reject_unauth_destination",
        )
        result = self.successResultOf(d.deliver(outbound(recipients=("victim@remote.example", LOCAL))))
        self.assertEqual(
            [(o.recipient, o.status, o.dsn) for o in result.outcomes],
            [("victim@remote.example", "bounced", "5.7.1"), (LOCAL, "sent", "2.0.0")],
        )
        self.assertTrue(d.client.ready)
        again = self.successResultOf(d.deliver(outbound()))
        self.assertEqual([o.status for o in again.outcomes], ["sent"])

    def test_idleConnectionRunsNoTimer(self) -> None:
        """
        Between messages nothing is awaited: no deadline runs, so an idle
        cached connection is not timed out by the protocol.
        """
        d = InMemoryDelivery(self)
        self.successResultOf(d.deliver(outbound()))
        self.assertEqual(d.clock.getDelayedCalls(), [])
        d.clock.advance(10000)
        self.assertTrue(d.client.ready)


class EndToEndDataTests(EndToEndTests):
    """
    The same, with content sent after DATA (dot-stuffed) because the
    client ignores the server's CHUNKING.
    """

    useData = True


class ScriptedServer:
    """
    A next hop we script by hand: the client on a L{StringTransport},
    every reply written by the test.
    """

    def __init__(
        self,
        transport: Optional[StringTransport] = None,
        view: Optional[ParameterView] = None,
        tlsLevel: str = "none",
        **kw: Any,
    ) -> None:
        self.clock = Clock()
        self.recorder = Recorder()
        self.client = self.recorder.protocol(self.clock, view=view, tlsLevel=tlsLevel, **kw)
        self.transport = transport or StringTransport()
        self.client.makeConnection(self.transport)

    def reply(self, data: bytes) -> bytes:
        """
        Send C{data} to the client; return what it wrote in response.
        """
        self.client.dataReceived(data)
        return self.take()

    def take(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    def lose(self, reason: Optional[Failure] = None) -> None:
        self.client.connectionLost(reason or Failure(ConnectionLost()))


EHLO = b"250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


class TrickleTests(SynchronousTestCase):
    """
    Next hops that trickle their replies are abandoned at the deadline
    with per-request deadlines on, as Postfix does.
    """

    def test_greetingTrickleAbandoned(self) -> None:
        """
        A greeting trickled one byte every (smtp_helo_timeout - 1) seconds
        never completes: with C{smtp_per_request_deadline = yes} the
        connection is aborted once the one budget is spent, and the waiting
        message is deferred, not lost.
        """
        s = ScriptedServer()
        delivered = s.client.deliver(outbound())
        s.clock.advance(299)
        s.client.dataReceived(b"2")
        self.assertFalse(s.transport.disconnected)
        # The byte earned nothing: the budget still ends 300 s after the
        # connect, not 299 s after the byte.
        s.clock.advance(1)
        self.assertTrue(s.transport.disconnected)
        self.assertEqual(s.clock.seconds(), 300)
        self.assertEqual(s.take(), b"")
        s.lose()
        result = self.successResultOf(delivered)
        [outcome] = result.outcomes
        self.assertEqual((outcome.status, outcome.dsn), ("deferred", "4.4.2"))
        self.assertEqual(
            outcome.reason,
            f"conversation with {HOP} timed out while receiving the initial server greeting",
        )
        self.assertFalse(s.client.usable)

    def test_greetingTrickleSurvivesWithoutDeadline(self) -> None:
        """
        With C{smtp_per_request_deadline = no} (Postfix's classic per-I/O
        timeout) the same trickle is accepted: that is the setting's
        weakness, and why the deadline exists.
        """
        s = ScriptedServer(view=clientView(smtp_per_request_deadline="no"))
        for byte in b"220 mx.example.org ESMTP\r\n":
            s.clock.advance(299)
            s.client.dataReceived(bytes([byte]))
        self.assertFalse(s.transport.disconnected)
        self.assertEqual(s.take(), b"EHLO client.example\r\n")

    def test_eachReplyGetsItsOwnBudget(self) -> None:
        """
        Each request has a budget of its own: a server slow to greet (but
        within the timeout) does not eat into the EHLO reply's budget.
        """
        s = ScriptedServer()
        s.clock.advance(299)
        self.assertEqual(s.reply(b"220 mx.example.org ESMTP\r\n"), b"EHLO client.example\r\n")
        s.clock.advance(299)
        s.reply(EHLO)
        self.assertFalse(s.transport.disconnected)
        self.assertTrue(s.client.ready)


class NotReadingTransport(StringTransport):
    """
    A connection to a next hop that reads slowly: once C{limit} bytes wait
    in the send buffer the streaming producer is paused, until the test
    calls L{drain}.
    """

    limit = CHUNK_SIZE

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.written = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        self.written += len(data)
        if self.producer is not None and self.streaming and not self.paused and len(self.value()) >= self.limit:
            self.paused = True
            self.producer.pauseProducing()

    def drain(self) -> None:
        """
        The peer reads what is buffered.
        """
        self.clear()
        if self.paused and self.producer is not None:
            self.paused = False
            self.producer.resumeProducing()


def toData(s: ScriptedServer, message: OutboundMessage) -> Deferred[DeliveryResult]:
    """
    Take C{message} through the handshake, MAIL, RCPT and DATA, up to the
    354 that starts the content.
    """
    delivered = s.client.deliver(message)
    s.reply(b"220 mx.example.org ESMTP\r\n")
    s.reply(EHLO)
    s.reply(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n")
    s.transport.clear()
    s.client.dataReceived(b"354 End data with <CR><LF>.<CR><LF>\r\n")
    return delivered


class SlowReaderTests(SynchronousTestCase):
    """
    A next hop that takes our DATA too slowly is abandoned in bounded time,
    its message deferred.
    """

    big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 10000

    def test_stopsReading(self) -> None:
        """
        A peer that stops reading pauses our producer for good; the
        C{smtp_data_xfer_timeout} budget runs out, the connection is
        aborted and the recipient deferred.
        """
        transport = NotReadingTransport()
        s = ScriptedServer(transport)
        delivered = toData(s, outbound(self.big))
        self.assertTrue(transport.paused)
        self.assertTrue(transport.streaming)
        self.assertLess(transport.written, NotReadingTransport.limit + CHUNK_SIZE + 4096)
        s.clock.advance(179)
        self.assertFalse(transport.disconnected)
        s.clock.advance(1)
        self.assertTrue(transport.disconnected)
        s.lose()
        [outcome] = self.successResultOf(delivered).outcomes
        self.assertEqual((outcome.status, outcome.dsn), ("deferred", "4.4.2"))
        self.assertEqual(
            outcome.reason, f"conversation with {HOP} timed out while sending message body"
        )
        self.assertIsNone(transport.producer)

    def test_readsTooSlowly(self) -> None:
        """
        A peer that reads one buffer every (smtp_data_xfer_timeout - 1)
        seconds is slower than C{smtp_min_data_rate}: each write earns less
        time than the wait costs, and it is abandoned after a few buffers,
        long before the message would be through.
        """
        transport = NotReadingTransport()
        s = ScriptedServer(transport)
        delivered = toData(s, outbound(self.big))
        drains = 0
        while not transport.disconnected:
            s.clock.advance(179)
            if transport.disconnected:
                break
            transport.drain()
            drains += 1
        # 64 KB every 179 s is 366 bytes/s, below smtp_min_data_rate (500):
        # each buffer earns 131 s of the 179 s its wait costs.
        self.assertLess(drains, 4)
        self.assertLess(s.clock.seconds(), 4 * 180)
        self.assertLess(transport.written, len(self.big) // 4)
        s.lose()
        [outcome] = self.successResultOf(delivered).outcomes
        self.assertEqual(outcome.status, "deferred")

    def test_slowReaderSurvivesWithoutDeadline(self) -> None:
        """
        With C{smtp_per_request_deadline = no} every write restarts the
        per-I/O timeout, so the same slow reader gets the whole message:
        the weakness the deadline removes.
        """
        transport = NotReadingTransport()
        s = ScriptedServer(transport, view=clientView(smtp_per_request_deadline="no"))
        delivered = toData(s, outbound(self.big))
        drains = 0
        while transport.producer is not None:
            s.clock.advance(179)
            self.assertFalse(transport.disconnected)
            transport.drain()
            drains += 1
        self.assertGreater(drains, 100)
        self.assertTrue(transport.value().endswith(b"\r\n.\r\n"))
        s.reply(b"250 2.0.0 Ok: queued\r\n")
        self.assertEqual(self.successResultOf(delivered).outcomes[0].status, "sent")

    def test_atMinimumRate(self) -> None:
        """
        A peer that reads at the minimum data rate gets the whole message
        under per-request deadlines: each 64 KB written earns more than the
        wait for the next drain costs.
        """
        transport = NotReadingTransport()
        s = ScriptedServer(transport)
        delivered = toData(s, outbound(self.big))
        while transport.producer is not None:
            self.assertFalse(transport.disconnected)
            s.clock.advance(60)
            transport.drain()
        s.take()
        s.reply(b"250 2.0.0 Ok: queued\r\n")
        self.assertEqual(self.successResultOf(delivered).outcomes[0].status, "sent")

    def test_contentShorterThanSize(self) -> None:
        """
        A content source that ends before the message's size (a truncated
        queue file) is never completed with the end-of-data marker: the
        connection is aborted so that the next hop discards the half
        message, and the recipient is deferred.
        """
        s = ScriptedServer()
        message = OutboundMessage(SENDER, (LOCAL,), (), io.BytesIO(b"Subject: x\r\n"), 1000, "QID9")
        with capturedLogs() as events:
            delivered = toData(s, message)
        self.assertTrue(s.transport.disconnected)
        self.assertNotIn(b"\r\n.\r\n", s.transport.value())
        self.assertTrue(any("ends 988 bytes before its size" in str(e.get("error")) for e in events))
        s.lose()
        [outcome] = self.successResultOf(delivered).outcomes
        self.assertEqual(outcome.status, "deferred")


class StartTLSTransport(StringTransport):
    """
    A transport whose C{startTLS} only records the call, with what had been
    written by then.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tlsStarts: list[object] = []

    def startTLS(self, creator: object) -> None:
        self.tlsStarts.append(creator)


TLS_EHLO = b"250-mx.example.org\r\n250-PIPELINING\r\n250 STARTTLS\r\n"


class StartTLSTests(SynchronousTestCase):
    """
    STARTTLS: the handshake starts in the call that read the 220, injected
    plaintext is discarded and warned about, and the verdict decides.
    """

    creator = object()

    def setUpTLS(
        self, level: str = "encrypt", verdict: Any = None
    ) -> tuple[ScriptedServer, StartTLSTransport, list[object]]:
        transport = StartTLSTransport()
        checked: list[object] = []

        def tlsVerdict(checkedTransport: object) -> Optional[str]:
            checked.append(checkedTransport)
            return verdict

        s = ScriptedServer(transport, tlsLevel=level, tlsCreator=self.creator, tlsVerdict=tlsVerdict)
        s.reply(b"220 mx.example.org ESMTP\r\n")
        self.assertEqual(s.reply(TLS_EHLO), b"STARTTLS\r\n")
        return s, transport, checked

    def test_responseInjectionDiscarded(self) -> None:
        """
        C{220 go} and C{250 injected} in one segment: TLS starts at once
        with the given creator, the injected reply is discarded unread and
        a warning names the next hop; nothing is written until the
        handshake completes, and then only a new EHLO.
        """
        s, transport, checked = self.setUpTLS()
        with capturedLogs() as events:
            written = s.reply(b"220 go\r\n250 injected\r\n")
        self.assertEqual(written, b"")
        self.assertEqual(transport.tlsStarts, [self.creator])
        [warning] = [e for e in events if e.get("count") is not None]
        self.assertEqual(warning["count"], len(b"250 injected\r\n"))
        self.assertEqual(warning["nextHop"], HOP)
        self.assertIn("warning: {nextHop}: discarding", warning["log_format"])
        # More plaintext before the handshake is over is not acted on either.
        with capturedLogs() as events:
            self.assertEqual(s.reply(b"250 more injected\r\n"), b"")
        self.assertEqual(len([e for e in events if e.get("count")]), 1)
        self.assertEqual(checked, [])
        s.client.handshakeCompleted()
        self.assertEqual(checked, [transport])
        self.assertEqual(s.take(), b"EHLO client.example\r\n")
        s.reply(b"250-mx.example.org\r\n250 PIPELINING\r\n")
        self.assertTrue(s.client.ready)

    def test_startTLSInSameCall(self) -> None:
        """
        C{startTLS} is called from inside the C{dataReceived} that carried
        the 220, before it returns: no later read can be taken in clear.
        """
        s, transport, _ = self.setUpTLS()
        calls: list[int] = []
        original = transport.startTLS

        def startTLS(creator: object) -> None:
            calls.append(len(transport.tlsStarts))
            original(creator)

        transport.startTLS = startTLS  # type: ignore[method-assign]
        s.client.dataReceived(b"220 2.0.0 Ready to start TLS\r\n")
        self.assertEqual(calls, [0])
        self.assertEqual(transport.tlsStarts, [self.creator])

    def test_verdictRefuses(self) -> None:
        """
        A handshake that completes but fails the level's checks (the
        verdict gives a reason) defers the message with C{Cannot start
        TLS} and aborts the connection: nothing is sent in clear.
        """
        s, transport, checked = self.setUpTLS(verdict="certificate verification failed")
        delivered = s.client.deliver(outbound())
        s.reply(b"220 go\r\n")
        s.client.handshakeCompleted()
        self.assertEqual(checked, [transport])
        self.assertTrue(transport.disconnected)
        self.assertEqual(s.take(), b"")
        s.lose()
        [outcome] = self.successResultOf(delivered).outcomes
        self.assertEqual(outcome.status, "deferred")
        self.assertEqual(outcome.dsn, "4.7.5")
        self.assertIn("Cannot start TLS: certificate verification failed", outcome.reason)
        [unusable] = s.recorder.unusable
        self.assertFalse(unusable.retryPlaintext)

    def test_handshakeFailsAtMay(self) -> None:
        """
        At level C{may} a handshake that fails (the TLS layer drops the
        connection) hands the message back untried for a plaintext retry,
        as Postfix does.
        """
        s, transport, checked = self.setUpTLS(level="may")
        delivered = s.client.deliver(outbound())
        s.reply(b"220 go\r\n")
        s.lose(Failure(ConnectionLost("handshake failure")))
        result = self.successResultOf(delivered)
        self.assertTrue(result.untried)
        self.assertTrue(result.retryPlaintext)
        self.assertEqual(result.outcomes, ())
        self.assertEqual(s.recorder.outcomes, [])
        # The verdict is asked why; it has no reason of its own here.
        self.assertEqual(checked, [transport])

    def test_handshakeFailedByCertificateCheck(self) -> None:
        """
        At C{verify} a certificate the level refuses fails the handshake
        itself (OpenSSL's verify callback), so the TLS layer only says
        C{certificate verify failed}: the message is deferred with the
        verdict's reason, Postfix's C{Server certificate not verified}.
        """
        s, transport, checked = self.setUpTLS(level="verify", verdict="Server certificate not verified")
        delivered = s.client.deliver(outbound())
        s.reply(b"220 go\r\n")
        with capturedLogs() as events:
            s.lose(Failure(ConnectionLost("certificate verify failed")))
        self.assertEqual(checked, [transport])
        # The TLS layer's words are still logged, as Postfix does.
        [logged] = [e for e in events if e.get("detail") is not None]
        self.assertEqual(logged["nextHop"], HOP)
        self.assertIn("certificate verify failed", logged["detail"])
        [outcome] = self.successResultOf(delivered).outcomes
        self.assertEqual((outcome.status, outcome.dsn), ("deferred", "4.7.5"))
        self.assertIn("Cannot start TLS: Server certificate not verified", outcome.reason)
        self.assertNotIn("certificate verify failed", outcome.reason)

    def test_handshakeTimesOut(self) -> None:
        """
        A handshake that never finishes is bounded by
        C{smtp_starttls_timeout}.
        """
        s, transport, _ = self.setUpTLS()
        delivered = s.client.deliver(outbound())
        s.reply(b"220 go\r\n")
        s.clock.advance(299)
        self.assertFalse(transport.disconnected)
        s.clock.advance(1)
        self.assertTrue(transport.disconnected)
        s.lose()
        [outcome] = self.successResultOf(delivered).outcomes
        self.assertEqual(outcome.status, "deferred")
        self.assertIn("timed out while performing the TLS handshake", outcome.reason)

    def test_noCreator(self) -> None:
        """
        Without a TLS client context the session's STARTTLS cannot be
        honoured: it is treated as a failed handshake, not sent in clear.
        """
        s = ScriptedServer(StartTLSTransport(), tlsLevel="encrypt")
        delivered = s.client.deliver(outbound())
        s.reply(b"220 mx.example.org ESMTP\r\n")
        s.reply(TLS_EHLO)
        s.reply(b"220 go\r\n")
        self.assertTrue(s.transport.disconnected)
        s.lose()
        [outcome] = self.successResultOf(delivered).outcomes
        self.assertEqual(outcome.dsn, "4.7.5")


class ReuseAndLossTests(SynchronousTestCase):
    """
    The protocol's bookkeeping around connection reuse and losses.
    """

    def test_oneMessageAtATime(self) -> None:
        """
        A second L{SMTPClientProtocol.deliver} before the first is done is
        a caller bug.
        """
        s = ScriptedServer()
        s.client.deliver(outbound())
        self.assertRaises(RuntimeError, s.client.deliver, outbound())

    def test_lostMidData(self) -> None:
        """
        A connection lost while the content is being sent defers the
        message and stops the producer.
        """
        transport = NotReadingTransport()
        s = ScriptedServer(transport)
        delivered = toData(s, outbound(SlowReaderTests.big))
        s.lose(Failure(ConnectionDone()))
        [outcome] = self.successResultOf(delivered).outcomes
        self.assertEqual(outcome.status, "deferred")
        self.assertIn("lost connection with", outcome.reason)
        self.assertFalse(s.client.usable)
        self.assertEqual(s.clock.getDelayedCalls(), [])
        self.assertRaises(RuntimeError, s.client.deliver, outbound())

    def test_rsetRefusedHandsMessageBack(self) -> None:
        """
        A reused connection whose RSET is refused hands the next message
        back untried, so that it can go out on another connection at once.
        """
        s = ScriptedServer()
        first = s.client.deliver(outbound())
        s.reply(b"220 mx.example.org ESMTP\r\n")
        s.reply(EHLO)
        s.reply(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n")
        s.reply(b"250 2.0.0 Ok\r\n")
        self.assertEqual(self.successResultOf(first).outcomes[0].status, "sent")
        second = s.client.deliver(outbound())
        self.assertEqual(s.take(), b"RSET\r\n")
        self.assertEqual(s.reply(b"500 what\r\n"), b"QUIT\r\n")
        result = self.successResultOf(second)
        self.assertTrue(result.untried)
        self.assertFalse(s.client.usable)
        self.assertEqual(len(s.recorder.unusable), 1)

    def test_usableKnownWhenDeliveryFires(self) -> None:
        """
        When a message's L{Deferred} fires because the server went away
        (421), the connection already says it is not usable.
        """
        s = ScriptedServer()
        seen: list[bool] = []
        delivered = s.client.deliver(outbound())
        delivered.addCallback(lambda result: seen.append(s.client.usable))
        s.reply(b"220 mx.example.org ESMTP\r\n")
        s.reply(EHLO)
        s.reply(b"421 4.3.2 going away\r\n")
        self.assertEqual(seen, [False])
        self.assertTrue(s.transport.disconnected)


class QuitTests(SynchronousTestCase):
    """
    Closing a connection cannot be held up by the next hop.
    """

    def handshake(self) -> ScriptedServer:
        s = ScriptedServer()
        s.reply(b"220 mx.example.org ESMTP\r\n")
        s.reply(EHLO)
        self.assertTrue(s.client.ready)
        return s

    def test_quitUnanswered(self) -> None:
        """
        A QUIT that is never answered is bounded by C{smtp_quit_timeout}:
        then the connection is aborted.
        """
        s = self.handshake()
        closed = s.client.quit()
        self.assertEqual(s.take(), b"QUIT\r\n")
        s.clock.advance(299)
        self.assertFalse(s.transport.disconnecting)
        s.clock.advance(1)
        self.assertTrue(s.transport.disconnected)
        self.assertNoResult(closed)
        s.lose(Failure(ConnectionDone()))
        self.successResultOf(closed)
        self.assertEqual(s.recorder.outcomes, [])

    def test_quitAnsweredPeerNotClosing(self) -> None:
        """
        After the reply to QUIT the connection is closed cleanly, and
        aborted after a grace period if the close does not complete (a peer
        that does not read keeps C{loseConnection} waiting).
        """
        s = self.handshake()
        closed = s.client.quit()
        s.reply(b"221 2.0.0 Bye\r\n")
        self.assertTrue(s.transport.disconnecting)
        self.assertFalse(s.transport.disconnected)
        s.clock.advance(10)
        self.assertTrue(s.transport.disconnected)
        s.lose(Failure(ConnectionDone()))
        self.successResultOf(closed)
        self.assertEqual(s.clock.getDelayedCalls(), [])

    def test_quitClosesCleanly(self) -> None:
        """
        A connection that closes after the reply to QUIT leaves no timer
        behind.
        """
        s = self.handshake()
        closed = s.client.quit()
        s.reply(b"221 2.0.0 Bye\r\n")
        s.lose(Failure(ConnectionDone()))
        self.successResultOf(closed)
        self.assertEqual(s.clock.getDelayedCalls(), [])


class ConnectTests(SynchronousTestCase):
    """
    L{connectNextHop} bounds the TCP connect with C{smtp_connect_timeout}.
    """

    def test_connectTimeout(self) -> None:
        """
        A connect that does not complete within C{smtp_connect_timeout}
        fails with L{TimeoutError}, and the attempt is stopped.
        """
        reactor = MemoryReactorClock()
        endpoint = TCP4ClientEndpoint(reactor, "192.0.2.1", 25, timeout=1000)
        protocol = Recorder().protocol(reactor)
        connecting = connectNextHop(endpoint, protocol, view=clientView(), clock=reactor)
        reactor.advance(29)
        self.assertNoResult(connecting)
        reactor.advance(1)
        self.failureResultOf(connecting, TimeoutError)
        self.assertTrue(reactor.connectors[0].stoppedConnecting)

    def test_connected(self) -> None:
        """
        Once the connection is up the protocol is handed back, waiting for
        the greeting under C{smtp_helo_timeout}.
        """
        reactor = MemoryReactorClock()
        endpoint = TCP4ClientEndpoint(reactor, "192.0.2.1", 25)
        protocol = Recorder().protocol(reactor)
        connecting = connectNextHop(
            endpoint, protocol, view=clientView(smtp_connect_timeout="5s"), clock=reactor
        )
        factory = reactor.tcpClients[0][2]
        built = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 25))
        built.makeConnection(StringTransport())
        self.assertIs(self.successResultOf(connecting), protocol)
        reactor.advance(10)
        self.assertTrue(protocol.usable)

    def test_noTimeout(self) -> None:
        """
        C{smtp_connect_timeout = 0} leaves the connect to the kernel.
        """
        reactor = MemoryReactorClock()
        endpoint = TCP4ClientEndpoint(reactor, "192.0.2.1", 25, timeout=100000)
        connecting = connectNextHop(
            endpoint, Recorder().protocol(reactor), view=clientView(smtp_connect_timeout="0"), clock=reactor
        )
        reactor.advance(10000)
        self.assertNoResult(connecting)
