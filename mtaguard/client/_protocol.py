# -*- test-case-name: tests.test_client_protocol -*-
"""
The SMTP client protocol: a thin Twisted adapter around one
L{ClientSession}.

The session decides everything; this module only does what its actions say
and feeds it what happened:

  - bytes read go to L{ClientSession.bytesReceived};
  - L{Send} is written, L{AwaitReply} arms the L{Deadline} with the named
    Postfix timeout and C{smtp_per_request_deadline};
  - L{StartTLS} calls C{transport.startTLS} in the same call, before any
    further byte can be read in clear; the handshake's end goes back to the
    session as C{tlsEstablished} or C{tlsFailed}, after the caller's TLS
    verdict;
  - L{SendContent} streams the queue file through a push producer, 64 KB at
    a time, under C{smtp_data_xfer_timeout} credited with
    C{smtp_min_data_rate} per byte written, so that a next hop that stops
    reading (its transport pauses us) is abandoned in bounded time;
  - an expired deadline goes to L{ClientSession.timedOut}: the message is
    deferred, never lost, and the connection is aborted, because a peer
    that stopped reading would keep C{loseConnection} waiting forever.

Outcomes leave through callbacks, as they happen, and through the
L{Deferred} that L{SMTPClientProtocol.deliver} returns.
"""

from __future__ import annotations

import io
from typing import IO, Callable, Iterable, Optional

from attrs import field, frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..config import Parameter, ParameterView, params
from ..deadline import Deadline, hangUp
from ..queue import QueueFileHeader
from ._session import (
    Action,
    AwaitReply,
    ClientSession,
    Close,
    ConnectionUnusable,
    Message,
    MessageDone,
    PlaintextDiscarded,
    Ready,
    RecipientOutcome,
    Send,
    SendContent,
    StartTLS,
)

__all__ = [
    "CHUNK_SIZE",
    "ContentError",
    "DeliveryResult",
    "OutboundMessage",
    "SMTPClientProtocol",
]

log = Logger(namespace="mtaguard.client")

#: How much of the queue file is read, encoded and written at a time: the
#: most message content the protocol holds in memory (plus what the
#: transport buffers before it pauses the producer).
CHUNK_SIZE = 64 * 1024

#: How long a clean close (after the reply to QUIT) may take before the
#: connection is aborted: a next hop that does not read must not keep the
#: socket.
CLOSE_GRACE = 10.0

#: The Postfix parameter for each timeout name the session uses.  An
#: explicit table rather than a lookup by name: parameters are never read
#: by string (see L{mtaguard.config}), and a name the session invents
#: fails loudly here instead of falling back to some default.
_TIMEOUTS: dict[str, Parameter[int]] = {
    parameter.name: parameter
    for parameter in (
        params.smtp_helo_timeout,
        params.smtp_starttls_timeout,
        params.smtp_mail_timeout,
        params.smtp_rcpt_timeout,
        params.smtp_data_init_timeout,
        params.smtp_data_xfer_timeout,
        params.smtp_data_done_timeout,
        params.smtp_rset_timeout,
        params.smtp_quit_timeout,
    )
}


def _parameterValue(parameters: tuple[tuple[str, Optional[str]], ...], name: str) -> Optional[str]:
    """
    The value of the ESMTP parameter C{name} (case-insensitive), C{""} for
    one given without a value, C{None} if absent.
    """
    for key, value in parameters:
        if key.upper() == name:
            return "" if value is None else value
    return None


def _tupleOfStrings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@frozen
class OutboundMessage:
    """
    One queued message to deliver over a connection.

    @ivar sender: The envelope sender, C{""} for the null sender.
    @ivar recipients: The recipients to try on this connection (the queue
        file's pending ones for this next hop).
    @ivar parameters: The C{MAIL FROM} parameters the message was received
        with, as the queue keeps them; C{BODY=8BITMIME} and C{SMTPUTF8}
        are passed on.
    @ivar content: The content source: a binary file positioned at the
        first byte of content (a queue file opened and seeked to its
        content offset).  Read L{size} bytes at most, L{CHUNK_SIZE} at a
        time; never closed here (the caller owns it).
    @ivar size: The content size in bytes (the queue file's C{size}).
    @ivar queueID: The queue ID, for logs.
    """

    sender: str
    recipients: tuple[str, ...] = field(converter=_tupleOfStrings)
    parameters: tuple[tuple[str, Optional[str]], ...]
    content: IO[bytes] = field(eq=False, repr=False)
    size: int
    queueID: str = ""

    @classmethod
    def fromQueueFile(
        cls,
        header: QueueFileHeader,
        queueFile: IO[bytes],
        recipients: Optional[tuple[str, ...]] = None,
    ) -> OutboundMessage:
        """
        The message of a parsed queue file: seeks C{queueFile} to the
        content.

        @param header: The queue file's parsed header.
        @param queueFile: The queue file, opened for binary reading.
        @param recipients: The recipients to try here; by default every
            recipient not yet done.
        """
        queueFile.seek(header.contentOffset)
        return cls._fromSource(header, queueFile, recipients)

    @classmethod
    def _fromSource(
        cls,
        header: QueueFileHeader,
        source: IO[bytes],
        recipients: Optional[tuple[str, ...]],
    ) -> OutboundMessage:
        if recipients is None:
            recipients = tuple(recipient.address for recipient in header.pending)
        envelope = header.envelope
        return cls(
            envelope.sender,
            recipients,
            envelope.parameters,
            source,
            header.size,
            header.queueID,
        )

    @classmethod
    def fromContent(
        cls,
        header: QueueFileHeader,
        content: bytes,
        recipients: Optional[tuple[str, ...]] = None,
    ) -> OutboundMessage:
        """
        The message of a queue file whose content is already in memory
        (just committed, or read with its header): no file is opened.

        @param header: The queue file's parsed header.
        @param content: Its content, C{header.size} bytes.
        @param recipients: The recipients to try here; by default every
            recipient not yet done.
        """
        return cls._fromSource(header, io.BytesIO(content), recipients)

    def toSessionMessage(self) -> Message:
        """
        The session's view of this message.
        """
        body = _parameterValue(self.parameters, "BODY")
        return Message(
            self.sender,
            self.recipients,
            self.size,
            eightBit=body is not None and body.upper() == "8BITMIME",
            smtputf8=_parameterValue(self.parameters, "SMTPUTF8") is not None,
        )


@frozen
class DeliveryResult:
    """
    What became of one L{SMTPClientProtocol.deliver}.

    @ivar message: The message.
    @ivar outcomes: One per recipient, in the order the session reported
        them (the same objects the C{onOutcome} callback was given); empty
        when L{untried}.
    @ivar untried: The message was not attempted at all (a reused
        connection failed its RSET, or the TLS handshake failed at level
        C{may}): try it again on another connection now, nothing was
        reported for it.
    @ivar retryPlaintext: With L{untried}: the TLS handshake failed at
        level C{may}, and Postfix retries such a delivery without TLS.
    """

    message: OutboundMessage
    outcomes: tuple[RecipientOutcome, ...]
    untried: bool = False
    retryPlaintext: bool = False


class _InFlight:
    """
    The message the session is working on, with what we learnt so far.
    """

    def __init__(self, outbound: OutboundMessage, message: Message) -> None:
        self.outbound = outbound
        self.message = message
        self.outcomes: list[RecipientOutcome] = []
        self.deferred: Deferred[DeliveryResult] = Deferred()


class ContentError(Exception):
    """
    The content source could not be read, or ended before its size.
    """


@implementer(IPushProducer)
class _ContentProducer:
    """
    Streams one message's content from its source to the transport: read
    L{CHUNK_SIZE} bytes, encode, write, until the transport pauses us or
    the content ends.

    A push producer rather than a pull one, so that every write happens as
    soon as the transport can take it and the transport's own flow control
    (C{pauseProducing} when its buffer is full) is the only brake: the
    memory held is one chunk plus the transport's buffer, whatever the
    message size.
    """

    def __init__(
        self,
        source: IO[bytes],
        size: int,
        chunk: Callable[[bytes], None],
        done: Callable[[], None],
        failed: Callable[[ContentError], None],
    ) -> None:
        self._source = source
        self._remaining = size
        self._chunk = chunk
        self._done = done
        self._failed = failed
        self._paused = False
        self._stopped = False
        # Guards against a transport that calls resumeProducing from inside
        # our own write: the outer loop carries on, no second loop starts.
        self._running = False

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._produce()

    def stopProducing(self) -> None:
        self._stopped = True

    def _produce(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            while not (self._paused or self._stopped):
                if self._remaining == 0:
                    self._stopped = True
                    self._done()
                    return
                try:
                    data = self._source.read(min(CHUNK_SIZE, self._remaining))
                except OSError as error:
                    self._stopped = True
                    self._failed(ContentError(f"error reading message content: {error}"))
                    return
                if not data:
                    self._stopped = True
                    self._failed(
                        ContentError(
                            f"message content ends {self._remaining} bytes before its size"
                        )
                    )
                    return
                self._remaining -= len(data)
                self._chunk(data)
        finally:
            self._running = False


def _ignore(value: object) -> None:
    pass


@implementer(IHandshakeListener)
class SMTPClientProtocol(Protocol):
    """
    One SMTP client connection to a next hop, driving one L{ClientSession}:
    the greeting, the handshake, any number of messages one after another
    (L{deliver}), and QUIT (L{quit}).

    Every recipient's outcome is reported exactly once, through
    C{onOutcome} as soon as it is known (so that the queue can mark it done
    at once) and in the L{DeliveryResult} of its message.
    """

    def __init__(
        self,
        *,
        session: ClientSession,
        nextHop: str,
        view: ParameterView,
        clock: IReactorTime,
        tlsCreator: object | None = None,
        tlsVerdict: Callable[[ITransport], Optional[str]] | None = None,
        onOutcome: Callable[[RecipientOutcome], None] = _ignore,
        onMessageDone: Callable[[DeliveryResult], None] = _ignore,
        onUnusable: Callable[[ConnectionUnusable], None] = _ignore,
        log: Logger = log,
    ) -> None:
        """
        @param session: The session to drive; fresh, not yet connected.
        @param nextHop: The server as Postfix names it, C{host[address]}
            (the session's C{nextHop}), for warnings.
        @param view: The parameters of the delivering service: the
            C{smtp_*_timeout}s, C{smtp_per_request_deadline} and
            C{smtp_min_data_rate}.
        @param clock: Schedules the deadlines.
        @param tlsCreator: What to pass to C{transport.startTLS} after the
            server's C{220} to C{STARTTLS} (an
            C{IOpenSSLClientConnectionCreator} for the next hop), or
            C{None} when this connection has none: then a handshake the
            session asks for fails at once.
        @param tlsVerdict: Called with the transport when the handshake
            completes; returns C{None} if the connection passes the TLS
            security level's checks (and logs it), or the reason it does
            not, for C{Cannot start TLS: <reason>}.  C{None} accepts every
            completed handshake.
        @param onOutcome: Told each recipient's outcome as soon as it is
            known.
        @param onMessageDone: Told when every recipient of a message has
            its outcome.
        @param onUnusable: Told (once) that the connection will carry no
            further message: do not cache it.
        @param log: Where warnings go.
        """
        self._session = session
        self._nextHop = nextHop
        self._view = view
        self._clock = clock
        self._tlsCreator = tlsCreator
        self._tlsVerdict = tlsVerdict
        self._onOutcome = onOutcome
        self._onMessageDone = onMessageDone
        self._onUnusable = onUnusable
        self._log = log
        self._deadline: Deadline | None = None
        self._inFlight: _InFlight | None = None
        self._producer: _ContentProducer | None = None
        self._handshaking = False
        self._connected = False
        self._finished = False
        self._ready = False
        self._usable = True
        self._closeCall: IDelayedCall | None = None
        self._closedWaiters: list[Deferred[None]] = []
        #: What the session waits for, in Postfix's words (for logs).
        self.during = "connecting"

    # -- public API --------------------------------------------------------

    @property
    def ready(self) -> bool:
        """
        Whether the connection is idle and can take a message now (the
        handshake is over and no message is in flight).
        """
        return self._ready and self._usable and not self._finished

    @property
    def usable(self) -> bool:
        """
        Whether the connection may still carry a message: it is up and
        the session has not given it up.
        """
        return self._usable and not self._finished

    @property
    def established(self) -> bool:
        """
        Whether the session completed its handshake (greeting, EHLO/HELO,
        STARTTLS, AUTH): Postfix counts only such sessions against
        C{smtp_mx_session_limit}.
        """
        return self._session.established

    def deliver(self, message: OutboundMessage) -> Deferred[DeliveryResult]:
        """
        Deliver one message over this connection: now if it is ready, or
        as soon as the greeting and handshake are over.  One message at a
        time; wait for the returned L{Deferred} before the next one.

        @param message: The message; its content source is read from its
            current position.
        @return: Fires with the L{DeliveryResult} once every recipient has
            an outcome (or the message was handed back untried).  It does
            not fail for anything the next hop does: a lost connection or a
            timeout defers the recipients.
        @raise RuntimeError: If a message is in flight or the connection
            carries no more messages (see L{usable}).
        """
        if self.transport is None:
            raise RuntimeError("not connected yet")
        if not self.usable:
            raise RuntimeError("this connection carries no more messages")
        if self._inFlight is not None:
            raise RuntimeError("one message at a time")
        inFlight = _InFlight(message, message.toSessionMessage())
        actions = self._session.deliver(inFlight.message)
        self._inFlight = inFlight
        self._ready = False
        deferred = inFlight.deferred
        self._dispatch(actions)
        return deferred

    def quit(self) -> Deferred[None]:
        """
        No more messages: send QUIT, and close once the server answers (or
        its QUIT deadline expires).

        @return: Fires when the connection is closed.
        @raise RuntimeError: In the middle of a message or the handshake.
        """
        if self._finished:
            return succeed(None)
        actions = self._session.quit()
        closed = self.whenClosed()
        self._dispatch(actions)
        return closed

    def whenClosed(self) -> Deferred[None]:
        """
        @return: Fires when the connection is gone, for whatever reason.
        """
        if self._finished:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._closedWaiters.append(waiter)
        return waiter

    # -- IProtocol ---------------------------------------------------------

    def connectionMade(self) -> None:
        self._connected = True
        self._dispatch(self._session.connectionMade())

    def dataReceived(self, data: bytes) -> None:
        if self._finished:
            return
        if self._deadline is not None:
            self._deadline.transferred(len(data))
        self._dispatch(self._session.bytesReceived(data))

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake is over: ask the verdict, then tell the session.
        """
        if not self._handshaking or self._finished:
            return
        self._handshaking = False
        reason: Optional[str] = None
        if self._tlsVerdict is not None:
            try:
                reason = self._tlsVerdict(self.transport)  # type: ignore[arg-type]
            except Exception:
                # A bug in the verdict must not pass an unchecked connection.
                self._log.failure("TLS verdict for {nextHop} failed", nextHop=self._nextHop)
                reason = "internal error checking the TLS connection"
        if reason is None:
            self._dispatch(self._session.tlsEstablished())
        else:
            self._dispatch(self._session.tlsFailed(reason))

    def _handshakeFailure(self, reason: Failure) -> str:
        """
        Why a handshake failed, for C{Cannot start TLS: <reason>}: the
        verdict's reason when it has one, else what the TLS layer said.

        At C{verify} and C{secure} a certificate the level refuses fails
        the handshake inside OpenSSL's verify callback, so the TLS layer
        only says C{certificate verify failed}; the verdict knows Postfix's
        reason (C{Server certificate not verified}, C{... not trusted}).
        """
        detail = reason.getErrorMessage()
        # Postfix logs the TLS layer's words too, whatever the reason.
        self._log.info("SSL_connect error to {nextHop}: {detail}", nextHop=self._nextHop, detail=detail)
        if self._tlsVerdict is None:
            return detail
        try:
            judged = self._tlsVerdict(self.transport)  # type: ignore[arg-type]
        except Exception:
            # The message is deferred (or retried in clear at may) either
            # way; only the text is at stake, so keep the TLS layer's.
            return detail
        return judged or detail

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self._connected = False
        self._usable = False
        self._stopDeadline()
        if self._closeCall is not None and self._closeCall.active():
            self._closeCall.cancel()
        self._closeCall = None
        self._stopProducer(unregister=False)
        if not self._finished:
            if self._handshaking:
                # The TLS layer reports a failed handshake by dropping the
                # connection; the session must hear it as a TLS failure (a
                # level-may retry in clear), not as a plain loss.
                self._handshaking = False
                actions = self._session.tlsFailed(self._handshakeFailure(reason))
            else:
                actions = self._session.connectionLost()
            self._dispatch(actions)
        self._finished = True
        self._usable = False
        self._ready = False
        inFlight, self._inFlight = self._inFlight, None
        if inFlight is not None:
            # The session reports every message it was given; this is only
            # a safety net, so that no caller waits forever.
            inFlight.deferred.errback(reason)
        waiters, self._closedWaiters = self._closedWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- actions -----------------------------------------------------------

    def _dispatch(self, actions: list[Action]) -> None:
        """
        Carry out the session's actions in order.  Content starts after the
        others, so that the producer never runs in the middle of a list;
        finished messages are reported last, so that a caller told of one
        already knows whether the connection is still L{usable}.
        """
        content: SendContent | None = None
        finished: list[tuple[_InFlight, DeliveryResult]] = []
        for action in actions:
            if isinstance(action, Send):
                self._write(action.data)
            elif isinstance(action, AwaitReply):
                self.during = action.during
                self._startRequest(_TIMEOUTS[action.timeout])
            elif isinstance(action, RecipientOutcome):
                if self._inFlight is not None:
                    self._inFlight.outcomes.append(action)
                self._onOutcome(action)
            elif isinstance(action, MessageDone):
                inFlight, self._inFlight = self._inFlight, None
                if inFlight is not None:
                    finished.append(
                        (inFlight, DeliveryResult(inFlight.outbound, tuple(inFlight.outcomes)))
                    )
            elif isinstance(action, Ready):
                # Nothing is awaited: an idle connection runs no deadline
                # (how long it may stay cached is the caller's business).
                self.during = "waiting for the next message"
                self._stopDeadline()
                self._ready = True
            elif isinstance(action, PlaintextDiscarded):
                self._log.warn(
                    "warning: {nextHop}: discarding {count} bytes of plaintext sent "
                    "after the 220 reply to STARTTLS: possible response injection",
                    nextHop=self._nextHop,
                    count=action.count,
                )
            elif isinstance(action, StartTLS):
                self._startTLS(action)
            elif isinstance(action, SendContent):
                content = action
            elif isinstance(action, ConnectionUnusable):
                finished += self._unusable(action)
            elif isinstance(action, Close):
                content = None
                self._close(action)
        if content is not None:
            self._sendContent(content)
        for inFlight, result in finished:
            if not result.untried:
                self._onMessageDone(result)
            inFlight.deferred.callback(result)

    def _write(self, data: bytes) -> None:
        if not self._connected:
            return
        self.transport.write(data)  # type: ignore[union-attr]
        if self._deadline is not None:
            self._deadline.transferred(len(data))

    def _unusable(self, action: ConnectionUnusable) -> list[tuple[_InFlight, DeliveryResult]]:
        """
        The connection carries no more messages; the message in flight
        comes back if the session never tried it.
        """
        self._usable = False
        self._ready = False
        self._onUnusable(action)
        inFlight = self._inFlight
        if action.untried is None or inFlight is None or action.untried is not inFlight.message:
            return []
        self._inFlight = None
        result = DeliveryResult(
            inFlight.outbound, (), untried=True, retryPlaintext=action.retryPlaintext
        )
        return [(inFlight, result)]

    def _close(self, action: Close) -> None:
        self._stopDeadline()
        self._stopProducer(unregister=True)
        self._usable = False
        self._ready = False
        if not self._connected:
            return
        transport = self.transport
        assert transport is not None
        if action.abort:
            # The peer is not trusted to read, or to close cleanly.
            transport.abortConnection()  # type: ignore[attr-defined]
        elif self._closeCall is None:
            self._closeCall = hangUp(transport, self._clock, None, grace=CLOSE_GRACE)

    # -- deadlines ---------------------------------------------------------

    def _startRequest(self, timeout: Parameter[int], minDataRate: int = 0) -> None:
        """
        A new request/reply budget, as Postfix's C{smtp_stream_setup}.
        """
        if self._finished:
            return
        if self._deadline is None:
            self._deadline = Deadline(clock=self._clock, expired=self._timedOut)
        self._deadline.startRequest(
            self._view[timeout],
            perRequest=self._view[params.smtp_per_request_deadline],
            minDataRate=minDataRate,
        )

    def _stopDeadline(self) -> None:
        # A cancelled Deadline ignores every later call; the next request
        # gets a new one.
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timedOut(self) -> None:
        self._deadline = None
        self._handshaking = False
        self._dispatch(self._session.timedOut())

    # -- TLS ---------------------------------------------------------------

    def _startTLS(self, action: StartTLS) -> None:
        if self._tlsCreator is None:
            self._dispatch(self._session.tlsFailed("no TLS client context configured"))
            return
        self._handshaking = True
        self.during = "performing the TLS handshake"
        self._startRequest(_TIMEOUTS[action.timeout])
        # Synchronously, in the call that read the 220: no byte after it
        # may be read in clear (the session has discarded what came with
        # it).
        self.transport.startTLS(self._tlsCreator)  # type: ignore[union-attr]

    # -- content -----------------------------------------------------------

    def _sendContent(self, action: SendContent) -> None:
        inFlight = self._inFlight
        assert inFlight is not None
        self.during = "sending message body"
        self._startRequest(
            _TIMEOUTS[action.timeout], minDataRate=self._view[params.smtp_min_data_rate]
        )
        if inFlight.outbound.size <= CHUNK_SIZE:
            self._sendSmallContent(inFlight.outbound)
            return
        producer = self._producer = _ContentProducer(
            inFlight.outbound.content,
            inFlight.outbound.size,
            self._contentChunk,
            self._contentDone,
            self._contentFailed,
        )
        self.transport.registerProducer(producer, True)  # type: ignore[union-attr]
        # A push producer starts on its own: the transport only pauses and
        # resumes it.
        producer.resumeProducing()

    def _sendSmallContent(self, outbound: OutboundMessage) -> None:
        """
        Content that fits in one chunk, as the producer would send it in
        one turn (read, encode, end of data), without registering a
        producer, and with the end of data in the same write: a typical
        message costs one C{transport.write} for its content, not two.
        """
        pieces = []
        remaining = outbound.size
        while remaining:
            try:
                piece = outbound.content.read(remaining)
            except OSError as error:
                self._contentFailed(ContentError(f"error reading message content: {error}"))
                return
            if not piece:
                self._contentFailed(
                    ContentError(f"message content ends {remaining} bytes before its size")
                )
                return
            pieces.append(piece)
            remaining -= len(piece)
        encoded = self._session.encodeContent(b"".join(pieces)) if pieces else b""
        actions = self._session.contentDone()
        if encoded:
            # The end of data is the first Send of contentDone.
            for index, action in enumerate(actions):
                if isinstance(action, Send):
                    actions[index] = Send(encoded + action.data)
                    break
            else:
                actions.insert(0, Send(encoded))
        self._dispatch(actions)

    def _contentChunk(self, chunk: bytes) -> None:
        data = self._session.encodeContent(chunk)
        if data:
            self._write(data)

    def _contentDone(self) -> None:
        self._stopProducer(unregister=True)
        self._dispatch(self._session.contentDone())

    def _contentFailed(self, error: ContentError) -> None:
        # Half a message must not be completed: drop the connection, so
        # that the next hop discards the transaction; the session defers
        # the recipients when the loss is reported.
        inFlight = self._inFlight
        self._log.error(
            "{queueID}: {error}",
            queueID=inFlight.outbound.queueID if inFlight is not None else "",
            error=str(error),
        )
        self._stopProducer(unregister=True)
        self._usable = False
        if self._connected:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def _stopProducer(self, *, unregister: bool) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        producer.stopProducing()
        if unregister and self._connected:
            self.transport.unregisterProducer()  # type: ignore[union-attr]
