# -*- test-case-name: tests.test_client_session -*-
"""
The SMTP client conversation as a sans-I/O state machine: L{ClientSession}
is fed what happened (bytes from the server, TLS up, the connection lost, a
deadline expired, a message to deliver) and returns what to do (L{Action}s):
bytes to send, the Postfix timeout to arm, start TLS now, send the message
content now, what became of each recipient, and whether the connection can
carry another message.

States, named as Postfix's C{smtp_proto.c} names them (C{smtp_helo},
C{smtp_start_tls}, C{smtp_xfer}); each waits for one reply under the
Postfix timeout given in brackets::

    greeting [smtp_helo_timeout]
      | 2xx                   4xx/5xx: defer, QUIT
      v
    EHLO [smtp_helo_timeout] --5xx--> HELO [smtp_helo_timeout]
      | 2xx                               | 2xx (no extensions)
      v                                   v
      +--> STARTTLS [smtp_helo_timeout]   (level may/encrypt+, if offered;
      |      | 220: discard buffered plaintext, StartTLS
      |      v      [smtp_starttls_timeout], then EHLO again
      +--> AUTH [smtp_helo_timeout]       (credentials given, AUTH offered)
      v
    ready (no reply awaited) <-----------------------------------+
      | deliver(message): RSET [smtp_rset_timeout] first on a    |
      | reused connection; SIZE / SMTPUTF8 checked first         |
      v                                                          |
    MAIL [smtp_mail_timeout]                                     |
    RCPT ... [smtp_rcpt_timeout]  (pipelined with MAIL and DATA  |
    DATA [smtp_data_init_timeout]  in one write, RFC 2920)       |
      | 354                                                      |
      v                                                          |
    message body [smtp_data_xfer_timeout, with smtp_min_data_rate]
      |  (or BDAT chunks when CHUNKING and PIPELINING are offered)|
      v                                                          |
    end of data [smtp_data_done_timeout] ------ MessageDone -----+
    QUIT [smtp_quit_timeout] (from ready, or after a failed handshake)

A C{421} to anything defers everything pending and drops the connection.
4xx to RCPT defers that recipient, 5xx bounces it; 4xx/5xx to MAIL, DATA or
the end of data defers or bounces the whole message.  Nothing is ever sent
in clear when the TLS level is C{encrypt} or above.

The session (TLS, extensions, authentication) and the transaction (one
message, its recipients' fate) are separate objects: a transaction is
replaced for every message, the session lives as long as the connection.
"""

from __future__ import annotations

import base64
from collections import deque
from typing import Optional, Union

from attrs import define, field, frozen

from ._content import ChunkEncoder, DataEncoder
from ._replyparser import MalformedReply, ReplyParser, ServerReply, parseEhlo

__all__ = [
    "Action",
    "AwaitReply",
    "ClientSession",
    "Close",
    "ConnectionUnusable",
    "Message",
    "MessageDone",
    "PlaintextDiscarded",
    "Ready",
    "RecipientOutcome",
    "Send",
    "SendContent",
    "SessionSettings",
    "StartTLS",
    "TLS_LEVELS",
]

#: The C{smtp_tls_security_level} values the client implements.  C{dane},
#: C{dane-only} and C{fingerprint} are not supported (yet): refusing them is
#: safer than quietly treating them as something weaker.
TLS_LEVELS = ("none", "may", "encrypt", "verify", "secure")

# Levels at which a message must never go out in clear.
_TLS_REQUIRED = ("encrypt", "verify", "secure")


def _checkAddress(instance: object, attribute: object, value: str) -> None:
    if any(c in value for c in "\r\n\0<>"):
        raise ValueError(f"unusable address {value!r}")


@frozen
class Message:
    """
    One queued message to deliver over this connection.

    @ivar sender: The envelope sender (C{""} for the null sender).
    @ivar recipients: The recipients to deliver to here, at least one.
    @ivar size: The content size in bytes, for C{SIZE=} and the server's
        C{SIZE} limit.
    @ivar eightBit: The message was received with C{BODY=8BITMIME}.
        C{BODY=8BITMIME} is passed on when the server offers 8BITMIME;
        otherwise the content is sent as is (no MIME conversion to
        quoted-printable, as with Postfix's C{disable_mime_output_conversion
        = yes}).
    @ivar smtputf8: The sender asked for C{SMTPUTF8}.  A message that needs
        it (asked for, or with a non-ASCII envelope address) is bounced with
        C{5.6.7} by a server that does not offer SMTPUTF8, as Postfix does.
    """

    sender: str = field(validator=_checkAddress)
    recipients: tuple[str, ...] = field()
    size: int
    eightBit: bool = False
    smtputf8: bool = False

    @recipients.validator
    def _checkRecipients(self, attribute: object, value: tuple[str, ...]) -> None:
        if not value:
            raise ValueError("a message needs at least one recipient")
        for recipient in value:
            _checkAddress(self, attribute, recipient)

    @property
    def needsSmtpUtf8(self) -> bool:
        """
        Whether the message cannot be delivered without SMTPUTF8.
        """
        return self.smtputf8 or not all(
            address.isascii() for address in (self.sender, *self.recipients)
        )


def _checkLevel(instance: object, attribute: object, value: str) -> None:
    if value not in TLS_LEVELS:
        raise ValueError(f"unsupported TLS security level {value!r}")


@frozen
class SessionSettings:
    """
    What a session needs to know beyond the conversation itself.

    @ivar nextHop: The server as Postfix names it in texts,
        C{host[address]} (C{mx.example.com[192.0.2.1]}).
    @ivar heloName: Our name for EHLO and HELO (C{smtp_helo_name}).
    @ivar tlsLevel: C{smtp_tls_security_level}, one of L{TLS_LEVELS}.
        Certificate verification for C{verify} and C{secure} is the TLS
        context's job; the session only decides whether TLS is required.
    @ivar username: The SASL login name (C{smtp_sasl_password_maps}), or
        C{None} not to authenticate.
    @ivar password: The SASL password.
    @ivar authOverPlaintext: Whether PLAIN and LOGIN may be used without TLS.
        Off by default, like Postfix's C{smtp_sasl_security_options =
        noplaintext}: a password must not cross the network in clear.
    @ivar authOverTLS: Whether PLAIN and LOGIN may be used inside TLS
        (C{noplaintext} absent from C{smtp_sasl_tls_security_options}).
    @ivar authMechanisms: The mechanisms we may use, in order of preference
        (C{smtp_sasl_mechanism_filter} applied).
    @ivar discardEhloKeywords: Extensions to ignore when the server offers
        them (C{smtp_discard_ehlo_keywords}), upper case.
    @ivar lineLengthLimit: The longest reply line accepted
        (C{line_length_limit}).
    @ivar maxReplyLines: The most lines one reply may have.
    @ivar skip5xxGreeting: C{smtp_skip_5xx_greeting}: a 5xx greeting only
        defers, as a 4xx one does, so that the next server is tried (the
        Postfix default); off, it bounces the message.
    """

    nextHop: str
    heloName: str = field(validator=_checkAddress)
    tlsLevel: str = field(default="none", validator=_checkLevel)
    username: Optional[str] = None
    password: Optional[str] = None
    authOverPlaintext: bool = False
    authOverTLS: bool = True
    authMechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    discardEhloKeywords: frozenset[str] = frozenset()
    lineLengthLimit: int = 2048
    maxReplyLines: int = 100
    skip5xxGreeting: bool = True


# Actions.


@frozen
class Send:
    """
    Write these bytes to the server.
    """

    data: bytes


@frozen
class AwaitReply:
    """
    The session now waits for a reply: arm the deadline.

    @ivar timeout: The Postfix parameter that limits the wait
        (C{smtp_mail_timeout}, ...), used with C{smtp_per_request_deadline}
        and a minimum data rate of 0.
    @ivar during: What the session is doing, in Postfix's words, for
        C{conversation with X timed out while ...}.
    """

    timeout: str
    during: str


@frozen
class StartTLS:
    """
    Start the TLS handshake now, before reading anything else: call
    L{ClientSession.tlsEstablished} or L{ClientSession.tlsFailed} when it
    is over.

    @ivar timeout: The parameter that limits the handshake.
    """

    timeout: str = "smtp_starttls_timeout"


@frozen
class PlaintextDiscarded:
    """
    The server sent bytes after its C{220} to C{STARTTLS}, in plaintext,
    before the handshake; they were thrown away unread.  Log a warning
    naming the next hop: it, or something between us, is tampering.

    @ivar count: How many bytes.
    """

    count: int


@frozen
class SendContent:
    """
    Send the message content now: through a producer, pass each chunk of
    the queue file to L{ClientSession.encodeContent} and write the result,
    then call L{ClientSession.contentDone}.

    @ivar chunked: The content goes in BDAT chunks rather than after DATA.
    @ivar timeout: The parameter that limits each write, credited by
        C{smtp_min_data_rate}.
    """

    chunked: bool
    timeout: str = "smtp_data_xfer_timeout"


@frozen
class RecipientOutcome:
    """
    What became of one recipient; reported exactly once per recipient.

    @ivar recipient: The address.
    @ivar status: C{"sent"}, C{"deferred"} or C{"bounced"}.
    @ivar dsn: The enhanced status code (C{2.0.0}, C{4.4.2}, ...).
    @ivar reason: The text for the log's parenthesis and the DSN, in
        Postfix's words (C{host X said: 550 ... (in reply to RCPT TO
        command)}; for C{sent}, the server's reply).
    @ivar reply: The server reply that decided it, if one did.
    """

    recipient: str
    status: str
    dsn: str
    reason: str
    reply: Optional[ServerReply] = None


@frozen
class MessageDone:
    """
    Every recipient of this message has an outcome.
    """

    message: Message


@frozen
class Ready:
    """
    The session waits for L{ClientSession.deliver} or L{ClientSession.quit};
    no reply is awaited (cancel the deadline; the connection may be cached).
    """


@frozen
class ConnectionUnusable:
    """
    This connection will carry no further message: do not cache or reuse
    it.  Sent once; a L{Close} follows, now or after QUIT.

    @ivar reason: Why, in Postfix's words.
    @ivar untried: A message handed to L{ClientSession.deliver} that was not
        attempted at all (the connection died while checking a reused
        connection with RSET, or before TLS at level C{may}): it can be
        retried on another connection at once, no outcome was reported.
    @ivar retryPlaintext: The TLS handshake failed at level C{may}: Postfix
        retries the delivery without TLS.
    """

    reason: str
    untried: Optional[Message] = None
    retryPlaintext: bool = False


@frozen
class Close:
    """
    The conversation is over: close the connection.

    @ivar abort: Drop it at once (C{abortConnection}): the server is not to
        be trusted to read or close properly.
    """

    abort: bool = False


Action = Union[
    Send,
    AwaitReply,
    StartTLS,
    PlaintextDiscarded,
    SendContent,
    RecipientOutcome,
    MessageDone,
    Ready,
    ConnectionUnusable,
    Close,
]


@frozen(eq=False)
class _Step:
    """
    A request whose reply the session waits for.

    @ivar timeout: The Postfix timeout parameter for the wait.
    @ivar during: Postfix's words for the wait, for timeouts and losses.
    @ivar request: Postfix's words for the request, for C{(in reply to
        ...)}.
    """

    timeout: str
    during: str
    request: str


_GREETING = _Step("smtp_helo_timeout", "receiving the initial server greeting", "initial greeting")
_EHLO = _Step("smtp_helo_timeout", "performing the EHLO handshake", "EHLO command")
_HELO = _Step("smtp_helo_timeout", "performing the HELO handshake", "HELO command")
_STARTTLS = _Step("smtp_helo_timeout", "sending STARTTLS", "STARTTLS command")
_AUTH_PLAIN = _Step("smtp_helo_timeout", "performing SASL authentication", "AUTH command")
_AUTH_LOGIN = _Step("smtp_helo_timeout", "performing SASL authentication", "AUTH command")
_AUTH_USER = _Step("smtp_helo_timeout", "performing SASL authentication", "AUTH command")
_AUTH_PASSWORD = _Step("smtp_helo_timeout", "performing SASL authentication", "AUTH command")
_AUTH_CANCEL = _Step("smtp_helo_timeout", "performing SASL authentication", "AUTH command")
_RSET = _Step("smtp_rset_timeout", "sending RSET", "RSET command")
_MAIL = _Step("smtp_mail_timeout", "sending MAIL FROM", "MAIL FROM command")
_RCPT = _Step("smtp_rcpt_timeout", "sending RCPT TO", "RCPT TO command")
_DATA = _Step("smtp_data_init_timeout", "sending DATA command", "DATA command")
_BDAT = _Step("smtp_data_xfer_timeout", "sending message body", "BDAT command")
_END = _Step(
    "smtp_data_done_timeout",
    "sending end of data -- message may be sent more than once",
    "end of DATA command",
)
_QUIT = _Step("smtp_quit_timeout", "sending QUIT", "QUIT command")

_CONTENT_DURING = "sending message body"

# Phases: where the session is between replies.
_CONNECTING = "connecting"  # greeting and handshake
_TLS_HANDSHAKE = "tls"  # StartTLS returned, handshake running
_READY = "ready"
_TRANSACTION = "transaction"
_CONTENT = "content"  # the producer is sending the body
_QUITTING = "quitting"
_CLOSED = "closed"


@frozen
class _Expected:
    """
    One reply the session waits for, in order.

    @ivar step: The request.
    @ivar recipient: For RCPT, the recipient's index in the message.
    @ivar serial: Distinguishes waits, so that each gets one L{AwaitReply}.
    """

    step: _Step
    recipient: int
    serial: int


@define
class _Transaction:
    """
    One message on its way: replaced for every message.

    @ivar message: The message.
    @ivar pipelined: MAIL, RCPT and DATA went in one write.
    @ivar chunked: The content goes in BDAT chunks.
    @ivar nextRecipient: Without pipelining, the next RCPT to send.
    @ivar accepted: Indexes of the recipients the server took.
    @ivar reported: Indexes of the recipients that have an outcome.
    @ivar failed: The whole message already has its outcome (MAIL or DATA
        refused); later replies of the group are only consumed.
    @ivar void: DATA was answered 354 although no recipient was accepted:
        an empty body is sent only to get back in step.
    @ivar chunkFailure: The first BDAT chunk the server refused.
    @ivar encoder: The content encoder, from 354 (or the RCPT replies, for
        BDAT) on.
    """

    message: Message
    pipelined: bool
    chunked: bool
    nextRecipient: int = 0
    accepted: list[int] = field(factory=list)
    reported: set[int] = field(factory=set)
    failed: bool = False
    void: bool = False
    chunkFailure: Optional[ServerReply] = None
    encoder: Union[DataEncoder, ChunkEncoder, None] = None


def _status(reply: ServerReply) -> str:
    # Anything that is not a 5xx (a nonsensical 2xx or 3xx included) is a
    # reason to try again later, never to bounce.
    return "bounced" if reply.code >= 500 else "deferred"


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode("utf-8"))


class ClientSession:
    """
    One SMTP client connection, from the greeting to QUIT, possibly
    carrying several messages one after the other.

    Call L{connectionMade} first; feed every byte read to L{bytesReceived};
    give messages to L{deliver} (before the handshake is over, or whenever
    the session has returned L{Ready}); report TLS with L{tlsEstablished}
    and L{tlsFailed}, the end of the connection with L{connectionLost}, an
    expired deadline with L{timedOut}.  Every method returns the actions to
    take, in order.
    """

    def __init__(self, settings: SessionSettings) -> None:
        """
        @param settings: The next hop, our name, TLS and SASL settings.
        """
        self._settings = settings
        self._hop = settings.nextHop
        self._parser = ReplyParser(
            lineLengthLimit=settings.lineLengthLimit, maxLines=settings.maxReplyLines
        )
        self._expected: deque[_Expected] = deque()
        self._serial = 0
        self._awaiting: Optional[int] = None
        self._phase = _CONNECTING
        # Session state: lives as long as the connection.
        self._extensions: dict[str, str] = {}
        self._esmtp = False
        self._tls = False
        self._tlsDeclined = False
        self._authenticated = False
        self._used = False
        self._established = False
        # The message waiting for the handshake or for RSET to finish.
        self._pending: Optional[Message] = None
        self._transaction: Optional[_Transaction] = None

    @property
    def established(self) -> bool:
        """
        Whether the handshake (greeting, EHLO or HELO, STARTTLS, AUTH) was
        completed: what Postfix counts against C{smtp_mx_session_limit}.
        """
        return self._established

    # Inputs.

    def connectionMade(self) -> list[Action]:
        """
        The TCP connection is up: wait for the greeting.
        """
        self._expect(_GREETING)
        return self._arm([])

    def deliver(self, message: Message) -> list[Action]:
        """
        Deliver C{message} over this connection: now if the session is
        ready, otherwise as soon as the handshake is over.

        @param message: The message.
        @raise RuntimeError: If the session already has a message, or will
            not carry another one.
        """
        if self._pending is not None or self._transaction is not None:
            raise RuntimeError("one message at a time")
        if self._phase not in (_CONNECTING, _TLS_HANDSHAKE, _READY):
            raise RuntimeError("this connection carries no more messages")
        self._pending = message
        if self._phase != _READY:
            return []
        return self._arm(self._begin())

    def quit(self) -> list[Action]:
        """
        No more messages: say QUIT and close once the server answers.

        @raise RuntimeError: In the middle of a message or handshake.
        """
        if self._phase in (_QUITTING, _CLOSED):
            return []
        if self._phase != _READY:
            raise RuntimeError("QUIT only between messages")
        return self._arm(self._sendQuit())

    def bytesReceived(self, data: bytes) -> list[Action]:
        """
        Bytes read from the connection.

        @param data: The bytes.
        """
        if self._phase == _CLOSED:
            return []
        if self._phase == _TLS_HANDSHAKE:
            # Plaintext that arrives while TLS starts is never acted on.
            return [PlaintextDiscarded(len(data))] if data else []
        self._parser.receive(data)
        actions: list[Action] = []
        while self._expected and self._phase != _CLOSED:
            event = self._parser.nextReply()
            if event is None:
                break
            if isinstance(event, MalformedReply):
                actions += self._malformed(event)
                break
            actions += self._replyReceived(event)
            if self._phase == _TLS_HANDSHAKE:
                # The 220 to STARTTLS: whatever came with it is injected.
                count = self._parser.discardBuffered()
                if count:
                    actions.insert(len(actions) - 1, PlaintextDiscarded(count))
                return actions
        if self._phase != _CLOSED and self._parser.failed:
            # Flooded while no reply was expected.
            event = self._parser.nextReply()
            assert isinstance(event, MalformedReply)
            actions += self._malformed(event)
        elif self._phase == _READY and not self._expected and self._parser.buffered():
            # Input nobody asked for, between messages: on a reused
            # connection it would be taken as the reply to our next RSET
            # (a desynchronised or injected conversation).  Never reuse it.
            count = self._parser.discardBuffered()
            self._phase = _CLOSED
            actions += self._unusable(f"host {self._hop} sent {count} bytes of unexpected input while idle")
            actions.append(Close(abort=True))
        return self._arm(actions)

    def tlsEstablished(self) -> list[Action]:
        """
        The TLS handshake succeeded (and the certificate passed the level's
        checks): start over with EHLO, forgetting everything learnt in
        clear (RFC 3207 section 4.2).
        """
        if self._phase != _TLS_HANDSHAKE:
            raise RuntimeError("no TLS handshake was started")
        self._phase = _CONNECTING
        self._tls = True
        self._extensions = {}
        self._esmtp = False
        return self._arm(self._sendEhlo())

    def tlsFailed(self, reason: str = "handshake failure") -> list[Action]:
        """
        The TLS handshake failed, or the certificate did not pass the
        level's checks.  At level C{may} the message is handed back for a
        plaintext retry on a new connection (as Postfix does); otherwise it
        is deferred.

        @param reason: What failed, for C{Cannot start TLS: ...}.
        """
        if self._phase != _TLS_HANDSHAKE:
            raise RuntimeError("no TLS handshake was started")
        text = f"Cannot start TLS: {reason}"
        if self._settings.tlsLevel == "may":
            untried, self._pending = self._pending, None
            self._phase = _CLOSED
            return [ConnectionUnusable(text, untried, retryPlaintext=True), Close(abort=True)]
        return self._abandon("4.7.5", text, quit=False)

    def encodeContent(self, chunk: bytes) -> bytes:
        """
        Encode the next chunk of the queued content for the wire.

        @param chunk: Queue file content, cut anywhere.
        @return: The bytes to write (maybe none yet).
        """
        transaction = self._transaction
        if self._phase != _CONTENT or transaction is None or transaction.encoder is None:
            raise RuntimeError("not sending content")
        data = transaction.encoder.encode(chunk)
        if data and transaction.chunked:
            self._expect(_BDAT)
        return data

    def contentDone(self) -> list[Action]:
        """
        The whole content has been passed to L{encodeContent}: send the end
        and wait for the server's verdict on the message.
        """
        transaction = self._transaction
        if self._phase != _CONTENT or transaction is None or transaction.encoder is None:
            raise RuntimeError("not sending content")
        data = transaction.encoder.finish()
        self._expect(_END)
        self._phase = _TRANSACTION
        return self._arm([Send(data)])

    def timedOut(self) -> list[Action]:
        """
        The armed deadline expired: defer what is pending and drop the
        connection.
        """
        if self._phase == _CLOSED:
            return []
        if self._phase == _QUITTING:
            self._phase = _CLOSED
            return [Close(abort=True)]
        actions = self._lost(f"conversation with {self._hop} timed out while {self._during()}")
        return actions + [Close(abort=True)]

    def connectionLost(self) -> list[Action]:
        """
        The connection is gone.  Anything pending is deferred.
        """
        if self._phase in (_CLOSED, _QUITTING):
            self._phase = _CLOSED
            return []
        return self._lost(f"lost connection with {self._hop} while {self._during()}")

    # Replies.

    def _replyReceived(self, reply: ServerReply) -> list[Action]:
        expected = self._expected.popleft()
        step = expected.step
        if step is _RSET:
            return self._rsetReply(reply)
        if reply.code == 421 and step is not _QUIT and step is not _GREETING:
            # The server is going away (RFC 5321 3.8): nothing else will be
            # answered, whatever was pipelined.
            return self._abandon(reply.dsn, self._said(reply, step), quit=False, reply=reply)
        if step is _GREETING:
            if reply.code // 100 != 2:
                reason = f"host {self._hop} refused to talk to me: {reply}"
                if reply.code // 100 == 5 and not self._settings.skip5xxGreeting:
                    # smtp_skip_5xx_greeting = no: the server's word is final.
                    actions = self._deferAll(reply.dsn, reason, reply) + self._unusable(reason)
                    return actions + self._sendQuit()
                # A 421 server is going away (RFC 5321 3.8): no QUIT.
                return self._abandon(reply.dsn, reason, reply=reply, quit=reply.code != 421)
            return self._sendEhlo()
        if step is _EHLO:
            if reply.code // 100 == 2:
                self._esmtp = True
                self._extensions = {
                    keyword: value
                    for keyword, value in parseEhlo(reply).items()
                    if keyword not in self._settings.discardEhloKeywords
                }
                return self._handshakeDone()
            if reply.code // 100 == 5:
                # An SMTP-only server: fall back to HELO, no extensions.
                self._expect(_HELO)
                return [self._line(b"HELO " + self._settings.heloName.encode())]
            return self._abandon(reply.dsn, self._said(reply, step), reply=reply)
        if step is _HELO:
            if reply.code // 100 != 2:
                return self._abandon(reply.dsn, self._said(reply, step), reply=reply)
            self._extensions = {}
            return self._handshakeDone()
        if step is _STARTTLS:
            if reply.code // 100 == 2:
                self._phase = _TLS_HANDSHAKE
                return [StartTLS()]
            if self._settings.tlsLevel == "may":
                # Opportunistic: carry on in clear.
                self._tlsDeclined = True
                return self._handshakeDone()
            return self._abandon(
                "4.7.5",
                f"TLS is required, but host {self._hop} refused to start TLS: {reply}",
                reply=reply,
            )
        if step in (_AUTH_PLAIN, _AUTH_LOGIN, _AUTH_USER, _AUTH_PASSWORD, _AUTH_CANCEL):
            return self._authReply(step, reply)
        if step is _QUIT:
            self._phase = _CLOSED
            return [Close()]
        return self._transactionReply(expected, reply)

    def _rsetReply(self, reply: ServerReply) -> list[Action]:
        if reply.code // 100 == 2:
            return self._startTransaction()
        # The reused connection is not fit for use.  The message was not
        # tried: it goes back for another connection, without an outcome.
        untried, self._pending = self._pending, None
        actions = self._unusable(self._said(reply, _RSET), untried=untried)
        if reply.code == 421:
            self._phase = _CLOSED
            return actions + [Close(abort=True)]
        return actions + self._sendQuit()

    def _authReply(self, step: _Step, reply: ServerReply) -> list[Action]:
        username = self._settings.username or ""
        password = self._settings.password or ""
        if step is _AUTH_LOGIN and reply.code == 334:
            self._expect(_AUTH_USER)
            return [self._line(_b64(username))]
        if step is _AUTH_USER and reply.code == 334:
            self._expect(_AUTH_PASSWORD)
            return [self._line(_b64(password))]
        if step in (_AUTH_PLAIN, _AUTH_PASSWORD) and reply.code // 100 == 2:
            self._authenticated = True
            return self._handshakeDone()
        if reply.code == 334 and step is not _AUTH_CANCEL:
            # A challenge we did not expect: cancel the exchange (RFC 4954
            # section 4) and fail on whatever comes next, so that a server
            # cannot keep us in a challenge loop.
            self._expect(_AUTH_CANCEL)
            return [self._line(b"*")]
        # Like Postfix's smtp_sasl_auth_soft_bounce = yes: a refused login is
        # a configuration problem to fix, not a reason to bounce mail.
        return self._abandon(
            "4" + reply.dsn[1:],
            f"SASL authentication failed; server {self._hop} said: {reply}",
            reply=reply,
        )

    def _transactionReply(self, expected: _Expected, reply: ServerReply) -> list[Action]:
        transaction = self._transaction
        assert transaction is not None
        step = expected.step
        positive = reply.code // 100 == 2
        actions: list[Action] = []
        if step is _MAIL:
            if not positive:
                actions += self._failMessage(reply, step)
            elif not transaction.pipelined:
                actions += self._sendRecipient()
        elif step is _RCPT:
            if positive:
                transaction.accepted.append(expected.recipient)
            elif not transaction.failed:
                actions.append(self._recipientFailed(expected.recipient, reply, step))
            if not transaction.pipelined:
                actions += self._sendRecipient()
            elif transaction.chunked and expected.recipient == len(transaction.message.recipients) - 1:
                actions += self._startContent()
        elif step is _DATA:
            if reply.code == 354:
                if transaction.failed or not transaction.accepted:
                    # The server wants a body for a transaction that has
                    # none: end it at once to get back in step.
                    transaction.void = True
                    self._expect(_END)
                    actions.append(Send(b".\r\n"))
                else:
                    actions += self._startContent()
            elif not transaction.failed and transaction.accepted:
                actions += self._failMessage(reply, step)
        elif step is _BDAT:
            if not positive and transaction.chunkFailure is None:
                transaction.chunkFailure = reply
        elif step is _END:
            if not transaction.void and not transaction.failed:
                failure = transaction.chunkFailure or (None if positive else reply)
                if failure is not None:
                    actions += self._failMessage(failure, _BDAT if failure is not reply else step)
                else:
                    actions += self._reportSent(reply)
        # Done when nothing more is awaited and nothing more is to be sent
        # (the content phase sends, so it is not done).
        if not self._expected and self._phase == _TRANSACTION:
            actions += self._finishMessage()
        return actions

    # Handshake.

    def _sendEhlo(self) -> list[Action]:
        self._expect(_EHLO)
        return [self._line(b"EHLO " + self._settings.heloName.encode())]

    def _handshakeDone(self) -> list[Action]:
        """
        After EHLO/HELO (and each step after it): STARTTLS, AUTH, or ready.
        """
        level = self._settings.tlsLevel
        if not self._tls and level != "none" and not self._tlsDeclined:
            if "STARTTLS" in self._extensions:
                self._expect(_STARTTLS)
                return [self._line(b"STARTTLS")]
            if level in _TLS_REQUIRED:
                # STARTTLS stripped or never offered: never send in clear.
                return self._abandon(
                    "4.7.4", f"TLS is required, but was not offered by host {self._hop}"
                )
        settings = self._settings
        if settings.username is not None and not self._authenticated and "AUTH" in self._extensions:
            offered = self._extensions["AUTH"].upper().split()
            allowed = settings.authOverTLS if self._tls else settings.authOverPlaintext
            usable = [m for m in settings.authMechanisms if m in offered] if allowed else []
            if usable and usable[0] == "PLAIN":
                self._expect(_AUTH_PLAIN)
                token = _b64(f"\0{settings.username}\0{settings.password or ''}")
                return [self._line(b"AUTH PLAIN " + token)]
            if usable and usable[0] == "LOGIN":
                self._expect(_AUTH_LOGIN)
                return [self._line(b"AUTH LOGIN")]
            return self._abandon(
                "4.7.0",
                "SASL authentication failed; cannot authenticate to server "
                f"{self._hop}: no mechanism available",
            )
        self._phase = _READY
        self._established = True
        if self._pending is None:
            return [Ready()]
        return self._begin()

    # Transactions.

    def _begin(self) -> list[Action]:
        """
        Start the pending message; on a reused connection, check it with
        RSET first.
        """
        self._phase = _TRANSACTION
        if self._used:
            self._expect(_RSET)
            return [self._line(b"RSET")]
        return self._startTransaction()

    def _startTransaction(self) -> list[Action]:
        message = self._pending
        assert message is not None
        self._pending = None
        extensions = self._extensions
        pipelined = "PIPELINING" in extensions
        chunked = pipelined and "CHUNKING" in extensions
        transaction = self._transaction = _Transaction(message, pipelined, chunked)
        if message.needsSmtpUtf8 and "SMTPUTF8" not in extensions:
            return self._failLocally(
                "5.6.7", f"SMTPUTF8 is required, but was not offered by host {self._hop}"
            )
        limit = extensions.get("SIZE", "")
        if limit.isdigit() and 0 < int(limit) < message.size:
            return self._failLocally(
                "5.3.4",
                f"message size {message.size} exceeds size limit {int(limit)} "
                f"of server {self._hop}",
            )
        # From here on the server sees this message: a later one on this
        # connection starts with RSET.
        self._used = True
        mail = b"MAIL FROM:<" + message.sender.encode("utf-8") + b">"
        if "SIZE" in extensions:
            mail += b" SIZE=%d" % message.size
        if message.eightBit and "8BITMIME" in extensions:
            mail += b" BODY=8BITMIME"
        if message.needsSmtpUtf8:
            mail += b" SMTPUTF8"
        self._expect(_MAIL)
        if not pipelined:
            return [self._line(mail)]
        # RFC 2920: the whole group in one write, replies matched in order.
        lines = [mail]
        for index, recipient in enumerate(message.recipients):
            lines.append(self._rcptLine(recipient))
            self._expect(_RCPT, index)
        transaction.nextRecipient = len(message.recipients)
        if not chunked:
            lines.append(b"DATA")
            self._expect(_DATA)
        return [Send(b"".join(line + b"\r\n" for line in lines))]

    def _rcptLine(self, recipient: str) -> bytes:
        return b"RCPT TO:<" + recipient.encode("utf-8") + b">"

    def _sendRecipient(self) -> list[Action]:
        """
        Without pipelining: the next RCPT, or DATA (or the BDAT content)
        once all are answered, or the end if none was accepted.
        """
        transaction = self._transaction
        assert transaction is not None
        recipients = transaction.message.recipients
        if transaction.nextRecipient < len(recipients):
            index = transaction.nextRecipient
            transaction.nextRecipient += 1
            self._expect(_RCPT, index)
            return [self._line(self._rcptLine(recipients[index]))]
        if not transaction.accepted:
            return []
        if transaction.chunked:
            return self._startContent()
        self._expect(_DATA)
        return [self._line(b"DATA")]

    def _startContent(self) -> list[Action]:
        transaction = self._transaction
        assert transaction is not None
        if transaction.failed or not transaction.accepted:
            return []
        self._phase = _CONTENT
        transaction.encoder = ChunkEncoder() if transaction.chunked else DataEncoder()
        return [SendContent(transaction.chunked)]

    def _finishMessage(self) -> list[Action]:
        transaction = self._transaction
        assert transaction is not None
        self._transaction = None
        self._phase = _READY
        return [MessageDone(transaction.message), Ready()]

    def _recipientFailed(self, index: int, reply: ServerReply, step: _Step) -> RecipientOutcome:
        transaction = self._transaction
        assert transaction is not None
        transaction.reported.add(index)
        return RecipientOutcome(
            transaction.message.recipients[index],
            _status(reply),
            reply.dsn,
            self._said(reply, step),
            reply,
        )

    def _failMessage(self, reply: ServerReply, step: _Step) -> list[Action]:
        """
        The server refused the whole message: every recipient without an
        outcome gets this reply's.
        """
        transaction = self._transaction
        assert transaction is not None
        transaction.failed = True
        return [
            self._recipientFailed(index, reply, step)
            for index in range(len(transaction.message.recipients))
            if index not in transaction.reported
        ]

    def _reportSent(self, reply: ServerReply) -> list[Action]:
        transaction = self._transaction
        assert transaction is not None
        outcomes: list[Action] = []
        for index in transaction.accepted:
            transaction.reported.add(index)
            outcomes.append(
                RecipientOutcome(
                    transaction.message.recipients[index], "sent", reply.dsn, str(reply), reply
                )
            )
        return outcomes

    def _failLocally(self, dsn: str, reason: str) -> list[Action]:
        """
        Fail the message before anything is sent for it (SIZE, SMTPUTF8):
        the connection stays in step and ready for the next message.
        """
        transaction = self._transaction
        assert transaction is not None
        status = "bounced" if dsn.startswith("5") else "deferred"
        actions: list[Action] = [
            RecipientOutcome(recipient, status, dsn, reason)
            for recipient in transaction.message.recipients
        ]
        return actions + self._finishMessage()

    # Failures.

    def _said(self, reply: ServerReply, step: _Step) -> str:
        return f"host {self._hop} said: {reply} (in reply to {step.request})"

    def _during(self) -> str:
        if self._phase == _CONTENT:
            return _CONTENT_DURING
        if self._phase == _TLS_HANDSHAKE:
            return "performing the TLS handshake"
        if self._expected:
            return self._expected[0].step.during
        return "waiting for the next message"

    def _deferAll(
        self, dsn: str, reason: str, reply: Optional[ServerReply] = None
    ) -> list[Action]:
        """
        Give every recipient still without an outcome this deferral (or
        bounce, for a 5xx C{dsn}), and finish the message.
        """
        status = "bounced" if dsn.startswith("5") else "deferred"
        actions: list[Action] = []
        transaction = self._transaction
        if transaction is not None:
            for index, recipient in enumerate(transaction.message.recipients):
                if index not in transaction.reported:
                    actions.append(RecipientOutcome(recipient, status, dsn, reason, reply))
            actions.append(MessageDone(transaction.message))
            self._transaction = None
        elif self._pending is not None:
            message, self._pending = self._pending, None
            actions += [
                RecipientOutcome(recipient, status, dsn, reason, reply)
                for recipient in message.recipients
            ]
            actions.append(MessageDone(message))
        return actions

    def _abandon(
        self, dsn: str, reason: str, *, quit: bool = True, reply: Optional[ServerReply] = None
    ) -> list[Action]:
        """
        The connection cannot deliver: fail what is pending (deferred, never
        bounced: another MX or a later try may do better), then QUIT if the
        conversation is still in step, or drop it.
        """
        if not dsn.startswith("4"):
            dsn = "4" + dsn[1:]
        actions = self._deferAll(dsn, reason, reply) + self._unusable(reason)
        if quit:
            return actions + self._sendQuit()
        self._phase = _CLOSED
        return actions + [Close(abort=True)]

    def _unusable(self, reason: str, untried: Optional[Message] = None) -> list[Action]:
        self._expected.clear()
        return [ConnectionUnusable(reason, untried)]

    def _sendQuit(self) -> list[Action]:
        self._expected.clear()
        self._phase = _QUITTING
        self._expect(_QUIT)
        return [self._line(b"QUIT")]

    def _malformed(self, event: MalformedReply) -> list[Action]:
        reason = (
            f"host {self._hop} sent a malformed reply while {self._during()}: {event.reason}"
        )
        return self._abandon("4.5.0", reason, quit=False)

    def _lost(self, reason: str) -> list[Action]:
        untried: Optional[Message] = None
        if self._expected and self._expected[0].step is _RSET:
            # A reused connection died before this message was tried.
            untried, self._pending = self._pending, None
        actions = self._deferAll("4.4.2", reason)
        self._phase = _CLOSED
        self._expected.clear()
        return actions + [ConnectionUnusable(reason, untried)]

    # Plumbing.

    def _expect(self, step: _Step, recipient: int = -1) -> None:
        self._serial += 1
        self._expected.append(_Expected(step, recipient, self._serial))

    def _line(self, line: bytes) -> Send:
        return Send(line + b"\r\n")

    def _arm(self, actions: list[Action]) -> list[Action]:
        """
        Add an L{AwaitReply} when the session has started waiting for a new
        reply, so that each wait gets its own budget, as Postfix re-arms its
        stream deadline per request.  Not while content is being sent: the
        content deadline covers BDAT replies that arrive meanwhile.
        """
        if self._phase in (_CONTENT, _CLOSED, _TLS_HANDSHAKE) or not self._expected:
            if not self._expected:
                self._awaiting = None
            return actions
        head = self._expected[0]
        if head.serial != self._awaiting:
            self._awaiting = head.serial
            actions.append(AwaitReply(head.step.timeout, head.step.during))
        return actions
