# -*- test-case-name: tests.test_smtpd_protocol -*-
"""
The SMTP server protocol: a thin adapter between a Twisted transport and
the sans-I/O parser, with the session rules of Postfix's smtpd.

Bytes go into L{ServerParser}; events come out one at a time, and the next
one is taken only when the previous command's reply is out, so replies stay
in command order while a queue write or a delayed reply is pending.  Every
wait for the peer runs under a L{Deadline}; every limit has a bound taken
from a parameter.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..config import ParameterView, params
from ..deadline import Deadline, hangUp
from ..sendnow import canSendNow, sendNow
from ..interfaces import IQueue
from ..queue import Envelope
from ..tls import IPeerName, peerTLSSummary
from ..smtp import ChunkContent, Command, DataContent, EndOfChunk, EndOfData, ServerParser
from ..smtp import _replies as replies
from ..smtp._arguments import (
    ArgumentSyntaxError,
    parseMailFrom,
    parseRcptTo,
    validateBody,
    validateSize,
    validateSmtpUtf8,
)
from ..smtp._escape import escapeForLog
from ..smtp._replies import Reply
from ._auth import (
    MECHANISMS,
    AuthExchange,
    Challenge,
    Credentials,
    authenticate,
    failureReply,
    logExchangeError,
)
from ._delivery import Address, DeliveryQueue, User
from ._forbidden import ForbiddenCommands
from ._policy import ClientFacts, RelayPolicy, matchNetworks, parseNetworks, softened, withCode
from ._session import Session, Transaction

log = Logger(namespace="mtaguard.smtpd")

#: Commands Postfix counts as "junk" when repeated (smtpd_junk_command_limit).
JUNK_COMMANDS = frozenset({"HELO", "EHLO", "NOOP", "RSET", "VRFY", "ETRN"})

#: Commands refused before STARTTLS when TLS is required (Postfix's
#: smtpd_tls_security_level = encrypt).
TLS_REQUIRED_COMMANDS = frozenset({"MAIL", "RCPT", "DATA", "BDAT", "VRFY", "ETRN", "AUTH"})

#: Read no more from the socket while this much pipelined input is waiting:
#: commands are small, so a client that sends more is either pipelining far
#: ahead or flooding, and either way can wait.
PIPELINE_HIGH_WATER = 64 * 1024

#: The replies when an embedding application's validateFrom/validateTo
#: refuses without an SMTP code of its own.
SENDER_REJECTED = Reply(550, "5.1.0", "<{address}>: Sender address rejected")
RECIPIENT_REJECTED = Reply(550, "5.1.1", "<{address}>: Recipient address rejected")

#: How long a peer that does not read gets to take our last reply before the
#: connection is aborted.
HANGUP_GRACE = 10.0


_lastReceivedDate = (-1, "")


def _receivedDate(now: float) -> str:
    """
    The date of a Received header, in Postfix's form: "Wed, 25 Nov 2026
    21:37:41 +0000 (UTC)".  Formatted once per second: every message of a
    busy second shares it.
    """
    global _lastReceivedDate
    second = int(now)
    cachedSecond, text = _lastReceivedDate
    if second != cachedSecond:
        text = time.strftime("%a, %d %b %Y %H:%M:%S +0000 (UTC)", time.gmtime(second))
        _lastReceivedDate = (second, text)
    return text


class ServerContext:
    """
    Everything the protocol needs that outlives one connection: the
    service's parameters, collaborators, and per-service state.
    """

    def __init__(
        self,
        *,
        view: ParameterView,
        queue: IQueue | None = None,
        delivery: DeliveryQueue | None = None,
        clock: IReactorTime,
        serviceName: str = "smtp",
        tlsCreator: Any = None,
        tlsRequired: bool = False,
        wrapperMode: bool = False,
        portal: Any = None,
        queued: Callable[[str, tuple[str, ...]], None] | None = None,
    ) -> None:
        if (queue is None) == (delivery is None):
            raise ValueError("give exactly one of queue and delivery")
        self.view = view
        self.queue = queue
        self.delivery = delivery
        self.clock = clock
        self.serviceName = serviceName
        self.tlsCreator = tlsCreator
        #: smtpd_tls_security_level = encrypt: mail only inside TLS.
        self.tlsRequired = tlsRequired
        #: smtpd_tls_wrappermode: TLS from the first byte (port 465).
        self.wrapperMode = wrapperMode
        #: twisted.cred portal for SMTP AUTH; None: AUTH not offered.
        self.portal = portal
        #: Told the queue ID and recipients of every committed message.
        self.queued = queued or (lambda queueID, recipients: None)
        self.policy = RelayPolicy(view)
        self.forbidden = ForbiddenCommands.fromList(view[params.smtpd_forbidden_commands])
        self.bareNewlineExclusions = parseNetworks(view[params.smtpd_forbid_bare_newline_exclusions])

    def bareNewlineMode(self, clientAddress: str) -> str:
        """
        The parser's bare-newline mode for a client: the configured one,
        or C{no} for clients in C{smtpd_forbid_bare_newline_exclusions}.
        """
        if matchNetworks(self.bareNewlineExclusions, clientAddress):
            return "no"
        mode = self.view[params.smtpd_forbid_bare_newline]
        return "normalize" if mode == "yes" else mode


@implementer(IHandshakeListener, IPeerName)
class SMTPServerProtocol(Protocol):
    """
    One SMTP server session.
    """

    def __init__(self, context: ServerContext) -> None:
        self._context = context
        self._view = context.view
        self._clock = context.clock
        self._busy = False
        self._closing = False
        self._readPaused = False
        self._abortCall: Any = None
        self._inData = False
        self._inChunk = False
        self._tlsStarting = False
        self._sendNow = False
        #: The client address the factory counted this session under, to
        #: give back when it ends; None when no factory counted it.
        self.countedHost: Optional[str] = None
        self.session: Session
        self._parser: ServerParser
        self._deadline = Deadline(clock=self._clock, expired=self._timedOut)

    # -- connection events ---------------------------------------------------

    def connectionMade(self) -> None:
        # Protocol.transport is typed ITransport | None (None until
        # makeConnection, which always runs before connectionMade).  Every
        # "type: ignore[union-attr]" or "[arg-type]" on self.transport in
        # this class is for that None, which no connected protocol sees.
        self._sendNow = canSendNow(self.transport)
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        address = getattr(peer, "host", "127.0.0.1")
        port = getattr(peer, "port", 0)
        self.session = Session(clientAddress=address, clientPort=port)
        if self._context.wrapperMode:
            self._tlsStarting = True
        self._mode = self._context.bareNewlineMode(address)
        self._parser = ServerParser(
            lineLengthLimit=self._view[params.line_length_limit], bareNewline=self._mode
        )
        log.info("connect from {client}", client=self.session.client)
        banner = self._view.expand("smtpd_banner")
        self._write(f"220 {banner}\r\n".encode("utf-8", "surrogateescape"))
        self._startCommandDeadline()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._deadline.transferred(len(data))
        self._parser.receive(data)
        if not self._readPaused and self._parser.buffered() > PIPELINE_HIGH_WATER:
            self._readPaused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]
        self._advance()

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake after STARTTLS finished: log it as Postfix does and
        wait for the client's new EHLO.
        """
        self._tlsStarting = False
        self.session.tls = True
        if self._view[params.smtpd_tls_loglevel] >= 1:
            log.info("{summary}", summary=peerTLSSummary(self.transport, self.session.client))  # type: ignore[arg-type]
        self._startCommandDeadline()

    @property
    def peerName(self) -> str:
        """
        The client as Postfix logs it (L{IPeerName}), for TLS warnings.
        """
        return self.session.client

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        try:
            self._connectionLost()
        finally:
            host, self.countedHost = self.countedHost, None
            if host is not None:
                self.factory.sessionEnded(host)

    def _connectionLost(self) -> None:
        self._deadline.cancel()
        if self._abortCall is not None and self._abortCall.active():
            self._abortCall.cancel()
        transaction = self.session.transaction
        if transaction is not None and transaction.message is not None:
            transaction.message.abort()
        if not self._closing:
            log.info(
                "lost connection after {state} from {client}",
                state=self._stateName(),
                client=self.session.client,
            )
        log.info(
            "disconnect from {client} {statistics}",
            client=self.session.client,
            statistics=self.session.statistics.summary(),
        )

    # -- the event loop --------------------------------------------------------

    def _advance(self) -> None:
        while not self._busy and not self._closing:
            event = self._parser.nextEvent()
            if event is None:
                break
            # The parser makes exactly these final classes: comparing types
            # is cheaper than a chain of isinstance calls.
            kind = type(event)
            if kind is Command:
                self._command(event)  # type: ignore[arg-type]
            elif kind is DataContent or kind is ChunkContent:
                self._content(event.data)  # type: ignore[union-attr]
            elif kind is EndOfData:
                self._endOfData(event.bareLineFeed)  # type: ignore[union-attr]
            elif kind is EndOfChunk:
                self._endOfChunk(event.last, event.size, event.bareLineFeed)  # type: ignore[union-attr]
        if (
            self._readPaused
            and not self._closing
            and self._parser.buffered() <= PIPELINE_HIGH_WATER // 2
        ):
            self._readPaused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def _startCommandDeadline(self) -> None:
        self._deadline.startRequest(
            self._view[params.smtpd_timeout],
            perRequest=self._view[params.smtpd_per_request_deadline],
        )

    def _startContentDeadline(self) -> None:
        self._deadline.startRequest(
            self._view[params.smtpd_timeout],
            perRequest=self._view[params.smtpd_per_request_deadline],
            minDataRate=self._view[params.smtpd_min_data_rate],
        )

    def _wait(self) -> None:
        """
        The server itself is working; the client's clock stops.
        """
        self._busy = True
        self._deadline.pause()

    def _done(self) -> None:
        """
        The work is done; go on with buffered input.
        """
        self._busy = False
        self._deadline.resume()
        if not self._closing:
            self._advance()

    # -- output ----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._sendNow:
            sendNow(self.transport, data)
        else:
            self.transport.write(data)  # type: ignore[union-attr]

    def _reply(self, reply: Reply | bytes, then: Callable[[], None] | None = None) -> None:
        """
        Send a reply, after C{smtpd_error_sleep_time} once the client has
        made C{smtpd_soft_error_limit} errors (without blocking the reactor).
        """
        data = reply if isinstance(reply, bytes) else reply.toBytes()
        # Postfix counts a command's error after its reply, so the decision
        # uses the count from before this command.
        if self._errorsBefore >= self._view[params.smtpd_soft_error_limit]:
            self._wait()

            def later() -> None:
                if self._closing:
                    return
                self._write(data)
                if then is not None:
                    then()
                self._done()

            self._clock.callLater(self._view[params.smtpd_error_sleep_time], later)
            return
        self._write(data)
        if then is not None:
            then()

    def _hangUp(self, reply: Reply | bytes | None) -> None:
        if self._closing:
            return
        self._closing = True
        self._deadline.cancel()
        data = None if reply is None else reply if isinstance(reply, bytes) else reply.toBytes()
        self._abortCall = hangUp(self.transport, self._clock, data, grace=HANGUP_GRACE)  # type: ignore[arg-type]

    def _hostname(self) -> str:
        return self._view[params.myhostname]

    def _stateName(self) -> str:
        if self._inData:
            return f"DATA ({self._parser.contentBytes} bytes)"
        if self._inChunk:
            return f"BDAT ({self._parser.contentBytes} bytes)"
        return self.session.lastCommand

    def _timedOut(self) -> None:
        log.info(
            "timeout after {state} from {client}",
            state=self._stateName(),
            client=self.session.client,
        )
        self._abortTransaction()
        self._hangUp(replies.TIMEOUT.format(myhostname=self._hostname()))

    def _logReject(self, state: str, reply: Reply | str, recipient: str | None = None) -> None:
        transaction = self.session.transaction
        fields = []
        if transaction is not None:
            fields.append(f"from=<{transaction.sender}>")
        if recipient is not None:
            fields.append(f"to=<{recipient}>")
        fields.append(f"proto={self.session.protocol}")
        if self.session.helo is not None:
            fields.append(f"helo=<{escapeForLog(self.session.helo)}>")
        text = reply if isinstance(reply, str) else reply.toBytes().decode("utf-8", "replace").rstrip("\r\n")
        log.info(
            "NOQUEUE: reject: {state} from {client}: {text}; {fields}",
            state=state,
            client=self.session.client,
            text=text,
            fields=" ".join(fields),
        )

    # -- commands ------------------------------------------------------------

    _errorsBefore = 0

    def _command(self, command: Command) -> None:
        session = self.session
        if self._authExchange is not None:
            self._authResponse(command)
            return
        self._errorsBefore = session.errors
        if session.errors >= self._view[params.smtpd_hard_error_limit]:
            log.info(
                "too many errors after {state} from {client}",
                state=session.lastCommand,
                client=session.client,
            )
            self._hangUp(replies.TOO_MANY_ERRORS.format(myhostname=self._hostname()))
            return
        if command.truncated:
            log.warn(
                "warning: {client}: request longer than {limit}: {start}...",
                client=session.client,
                limit=self._view[params.line_length_limit],
                start=escapeForLog(command.line, 30),
            )
        if command.bareLineFeed and self._mode == "reject":
            self._logReject(session.lastCommand, "bare <LF> received")
            self._hangUp(
                withCode(replies.BARE_LF, 
                    self._view[params.smtpd_forbid_bare_newline_reject_code]
                ).format(myhostname=self._hostname())
            )
            return
        if not command.line.isascii() and self._view[params.smtputf8_enable]:
            # ASCII is valid UTF-8: only other lines need decoding.
            try:
                command.line.decode("utf-8")
            except UnicodeDecodeError:
                session.errors += 1
                session.statistics.record("unknown", False)
                session.lastCommand = "UNKNOWN"
                self._reply(replies.BAD_UTF8)
                return
        verb = command.verb
        if not verb:
            session.errors += 1
            self._reply(replies.BAD_SYNTAX)
            return
        handler = self._handlers.get(verb)
        if handler is None:
            token = command.line.split(None, 1)[0] if command.line.split() else b""
            session.statistics.record("unknown", False)
            if self._context.forbidden.matches(token):
                log.warn(
                    "warning: non-SMTP command from {client}: {line}",
                    client=session.client,
                    line=escapeForLog(command.line, 100),
                )
                self._hangUp(replies.NON_SMTP_COMMAND)
                return
            session.lastCommand = "UNKNOWN"
            session.errors += 1
            self._reply(replies.COMMAND_NOT_RECOGNIZED)
            return
        session.lastCommand = verb
        if (
            self._context.tlsRequired
            and verb in TLS_REQUIRED_COMMANDS
            and not session.tls
        ):
            self._refuse(verb, replies.MUST_STARTTLS)
            self._startCommandDeadline()
            return
        if verb in JUNK_COMMANDS:
            if session.junk > self._view[params.smtpd_junk_command_limit]:
                session.errors += 1
            session.junk += 1
        handler(self, command)
        if not self._busy and not self._closing and not self._inData and not self._inChunk:
            self._startCommandDeadline()

    def _refuse(self, verb: str, reply: Reply) -> None:
        """
        Count a failed command and send its reply.
        """
        self._record(verb, False)
        self._reply(reply)

    def _record(self, verb: str, success: bool) -> None:
        self.session.statistics.record(verb.lower(), success)
        if not success:
            self.session.errors += 1

    def _pipeliningCheck(self, command: Command) -> bool:
        """
        Postfix's "improper command pipelining": input that arrived before
        the reply to a command that must end a pipelined group.  Logged, and
        refused with C{smtpd_forbid_unauth_pipelining}.
        """
        if self._parser.buffered() == 0:
            return True
        log.info(
            "improper command pipelining after {verb} from {client}: {pending}",
            verb=command.verb,
            client=self.session.client,
            pending=escapeForLog(self._parser.peek(100), 100),
        )
        if self._view[params.smtpd_forbid_unauth_pipelining] and self.session.authUser is None:
            self._hangUp(replies.PIPELINING_SYNC)
            return False
        return True

    def _resetTransaction(self) -> None:
        self._abortTransaction()

    def _abortTransaction(self) -> None:
        transaction = self.session.transaction
        if transaction is not None and transaction.message is not None:
            transaction.message.abort()
        self.session.transaction = None

    def do_HELO(self, command: Command, esmtp: bool = False) -> None:
        name = command.argument.strip()
        verb = "EHLO" if esmtp else "HELO"
        if not name:
            self._refuse(verb, (replies.EHLO_SYNTAX if esmtp else replies.HELO_SYNTAX))
            return
        self._resetTransaction()
        self.session.helo = name
        self.session.esmtp = esmtp
        self._record(verb, True)
        if not self._pipeliningCheck(command):
            return
        hostname = self._hostname()
        if not esmtp:
            self._reply(f"250 {hostname}\r\n".encode("utf-8", "surrogateescape"))
            return
        self._reply(replies.multiline(250, [hostname] + self._extensions()))

    def do_EHLO(self, command: Command) -> None:
        self.do_HELO(command, esmtp=True)

    def _extensions(self) -> list[str]:
        view = self._view
        limit = view[params.message_size_limit]
        keywords = ["PIPELINING", f"SIZE {limit}" if limit else "SIZE"]
        if not view[params.disable_vrfy_command]:
            keywords.append("VRFY")
        if self._authOffered():
            keywords.append("AUTH " + " ".join(MECHANISMS))
        if self._context.tlsCreator is not None and not self.session.tls:
            keywords.append("STARTTLS")
        keywords += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        if view[params.smtputf8_enable]:
            keywords.append("SMTPUTF8")
        keywords.append("CHUNKING")
        discard = {k.upper() for k in view[params.smtpd_discard_ehlo_keywords]}
        return [k for k in keywords if k.split()[0].upper() not in discard]

    def do_MAIL(self, command: Command) -> None:
        session = self.session
        view = self._view
        if session.helo is None and view[params.smtpd_helo_required]:
            self._refuse("MAIL", replies.SEND_HELO_FIRST)
            return
        if session.transaction is not None:
            self._refuse("MAIL", replies.NESTED_MAIL)
            return
        try:
            sender, parameters = parseMailFrom(
                command.argument, strict=view[params.strict_rfc821_envelopes]
            )
        except ArgumentSyntaxError as error:
            self._refuse("MAIL", error.reply)
            return
        try:
            self._checkMailParameters(sender, parameters)
        except ArgumentSyntaxError as error:
            self._refuse("MAIL", error.reply)
            return
        declared: int | None = None
        if "SIZE" in parameters:
            try:
                declared = validateSize(parameters["SIZE"] or "")
            except ArgumentSyntaxError as error:
                self._refuse("MAIL", error.reply)
                return
            limit = view[params.message_size_limit]
            if limit and declared > limit:
                self._record("MAIL", False)
                self._logReject("MAIL", replies.MESSAGE_SIZE_EXCEEDS_LIMIT)
                self._reply(replies.MESSAGE_SIZE_EXCEEDS_LIMIT)
                return
        transaction = Transaction(sender=sender, parameters=parameters, declaredSize=declared)
        delivery = self._context.delivery
        if delivery is None:
            session.transaction = transaction
            self._record("MAIL", True)
            self._reply(replies.MAIL_OK)
            return
        transaction.delivery = delivery.deliveryForTransaction()
        transaction.origin = Address(sender)
        self._validate(
            "MAIL",
            lambda: transaction.delivery.validateFrom(self._heloPair(), transaction.origin),
            accepted=lambda _: setattr(session, "transaction", transaction),
            ok=replies.MAIL_OK,
            refused=lambda: SENDER_REJECTED.format(address=sender),
        )

    _heloPairFor: str | None = None
    _heloPairCached: tuple[bytes, bytes] = (b"", b"")

    def _heloPair(self) -> tuple[bytes, bytes]:
        helo = self.session.helo or ""
        if helo is not self._heloPairFor:
            # Asked for at MAIL, at each RCPT and at DATA: encode once per
            # HELO name (the client address never changes).
            self._heloPairFor = helo
            self._heloPairCached = (
                helo.encode("utf-8", "surrogateescape"),
                self.session.clientAddress.encode("ascii"),
            )
        return self._heloPairCached

    def _validate(
        self,
        verb: str,
        check: Callable[[], Any],
        *,
        accepted: Callable[[Any], None],
        ok: Reply,
        refused: Callable[[], Reply],
    ) -> None:
        """
        Ask the embedding application (C{validateFrom}, C{validateTo}),
        which may answer later; replies keep their order meanwhile and the
        client is not charged for the wait.

        @param refused: makes the reply for a refusal without an SMTP code
            of the application's own (only then: formatting it costs as
            much as the rest of an accepted command).
        """
        # The protocol counts as busy while the application runs, as it
        # does while a Deferred it returned is pending.
        self._busy = True
        try:
            result = check()
        except Exception:
            result = fail()
        if not isinstance(result, Deferred):
            # Most applications answer at once: no Deferred, no pause of the
            # deadline (which would cancel and re-create its timer), and the
            # caller's event loop goes on by itself.
            self._busy = False
            accepted(result)
            self._record(verb, True)
            if not self._closing:
                self._write(ok.toBytes())
            return
        self._busy = False
        self._wait()

        def good(result: Any) -> None:
            accepted(result)
            self._record(verb, True)
            if not self._closing:
                self._write(ok.toBytes())

        def bad(failure: Failure) -> None:
            self._record(verb, False)
            code = getattr(failure.value, "code", None)
            response = getattr(failure.value, "resp", None)
            reply = refused()
            if isinstance(code, int) and 400 <= code < 600 and response:
                text = response.decode("utf-8", "replace") if isinstance(response, bytes) else str(response)
                reply = Reply(code, "", text)
            log.info(
                "NOQUEUE: reject: {verb} from {client}: {reply}",
                verb=verb,
                client=self.session.client,
                reply=reply.toBytes().decode("utf-8", "replace").rstrip("\r\n"),
            )
            if not self._closing:
                self._write(reply.toBytes())

        def finish(_: object) -> None:
            if not self._closing:
                self._startCommandDeadline()
            self._done()

        result.addCallbacks(good, bad)
        result.addBoth(finish)

    def _checkMailParameters(self, sender: str, parameters: dict[str, str | None]) -> None:
        """
        The MAIL FROM parameters this server announced, and nothing else.

        @raise ArgumentSyntaxError: with Postfix's reply.
        """
        for keyword, value in parameters.items():
            if keyword == "BODY":
                validateBody(value)
            elif keyword == "SMTPUTF8" and self._view[params.smtputf8_enable]:
                validateSmtpUtf8(value)
            elif keyword == "AUTH":
                # RFC 4954 AUTH=<...>: accepted and ignored, as Postfix does
                # for clients it does not trust.
                pass
            elif keyword != "SIZE":
                option = keyword if value is None else f"{keyword}={value}"
                raise ArgumentSyntaxError(replies.UNSUPPORTED_OPTION.format(option=option))
        if not sender.isascii() and "SMTPUTF8" not in parameters:
            raise ArgumentSyntaxError(replies.SMTPUTF8_REQUIRED)

    def do_RCPT(self, command: Command) -> None:
        session = self.session
        transaction = session.transaction
        if transaction is None:
            self._refuse("RCPT", replies.NEED_MAIL)
            return
        try:
            recipient, parameters = parseRcptTo(
                command.argument, strict=self._view[params.strict_rfc821_envelopes]
            )
            for keyword, value in parameters.items():
                # No DSN is announced, so NOTIFY and ORCPT are not accepted.
                option = keyword if value is None else f"{keyword}={value}"
                raise ArgumentSyntaxError(replies.UNSUPPORTED_OPTION.format(option=option))
            if not recipient.isascii() and "SMTPUTF8" not in transaction.parameters:
                raise ArgumentSyntaxError(replies.SMTPUTF8_REQUIRED)
        except ArgumentSyntaxError as error:
            self._refuse("RCPT", error.reply)
            return
        if len(transaction.recipients) >= self._view[params.smtpd_recipient_limit]:
            # Postfix counts these as successes up to the overshoot limit.
            session.recipientsOvershoot += 1
            overshoot = session.recipientsOvershoot > self._view[params.smtpd_recipient_overshoot_limit]
            self._record("RCPT", not overshoot)
            self._reply(replies.TOO_MANY_RECIPIENTS)
            return
        refusal = self._context.policy.checkRecipient(
            ClientFacts(session.clientAddress, session.authUser is not None), recipient
        )
        if refusal is not None:
            if self._view[params.soft_bounce]:
                refusal = softened(refusal)
            transaction.rejected += 1
            self._record("RCPT", False)
            self._logReject("RCPT", refusal, recipient)
            self._reply(refusal)
            return
        if transaction.delivery is None:
            transaction.recipients.append(recipient)
            self._record("RCPT", True)
            self._reply(replies.RCPT_OK)
            return

        user = User(Address(recipient), self._heloPair(), self, transaction.origin)

        def accepted(factory: Any) -> None:
            transaction.recipients.append(recipient)
            transaction.factories.append(factory)
            transaction.users.append(user)

        self._validate(
            "RCPT",
            lambda: transaction.delivery.validateTo(user),
            accepted=accepted,
            ok=replies.RCPT_OK,
            refused=lambda: RECIPIENT_REJECTED.format(address=recipient),
        )

    def _startMessage(self, verb: str) -> bool:
        """
        Open the queue file for the current transaction.
        """
        session = self.session
        transaction = session.transaction
        assert transaction is not None
        try:
            if self._context.delivery is not None:
                message = self._context.delivery.newMessage(transaction.factories)
            else:
                assert self._context.queue is not None
                message = self._context.queue.newMessage(
                    Envelope(
                        sender=transaction.sender,
                        recipients=tuple(transaction.recipients),
                        parameters=tuple(transaction.parameters.items()),
                        clientAddress=session.clientAddress,
                        clientPort=session.clientPort,
                        clientName=session.clientName,
                        helo=session.helo or "",
                        protocol=session.protocol,
                        tls=session.tls,
                        authUser=session.authUser,
                        arrival=self._clock.seconds(),
                    )
                )
        except OSError as error:
            log.warn(
                "warning: {client}: cannot create queue file: {error}",
                client=session.client,
                error=str(error),
            )
            self._refuse(verb, replies.INSUFFICIENT_STORAGE)
            return False
        transaction.message = message
        log.info("{queueID}: client={client}", queueID=message.queueID, client=session.client)
        message.registerProducer(self.transport, True)
        header = None
        if transaction.delivery is not None:
            # The application's own Received header, as twisted.mail does.
            own = transaction.delivery.receivedHeader(
                self._heloPair(), transaction.origin, list(transaction.users)
            )
            if own:
                header = own if own.endswith(b"\r\n") else own + b"\r\n"
        message.write(header or self._receivedHeader(message.queueID))
        return True

    def _receivedHeader(self, queueID: str) -> bytes:
        session = self.session
        transaction = session.transaction
        assert transaction is not None
        protocol = session.protocol + ("S" if session.tls else "") + ("A" if session.authUser else "")
        helo = session.helo or session.clientAddress
        when = _receivedDate(self._clock.seconds())
        recipient = (
            f"\r\n\tfor <{transaction.recipients[0]}>" if len(transaction.recipients) == 1 else ""
        )
        header = (
            f"Received: from {helo} ({session.clientName} [{session.clientAddress}])\r\n"
            f"\tby {self._hostname()} (mtaguard) with {protocol} id {queueID}"
            f"{recipient}; {when}\r\n"
        )
        return header.encode("utf-8", "surrogateescape")

    def do_DATA(self, command: Command) -> None:
        session = self.session
        transaction = session.transaction
        if transaction is None or not transaction.recipients:
            self._record("DATA", False)
            if transaction is not None and transaction.rejected:
                self._reply(replies.NO_VALID_RECIPIENTS)
            else:
                self._reply(replies.NEED_RCPT if transaction is not None else replies.NEED_MAIL)
            return
        if command.argument.strip():
            self._refuse("DATA", replies.DATA_SYNTAX)
            return
        if not self._pipeliningCheck(command):
            return
        if not self._startMessage("DATA"):
            return
        self._inData = True
        self._parser.startData()
        self._reply(replies.START_DATA)
        self._startContentDeadline()

    def _content(self, data: bytes) -> None:
        transaction = self.session.transaction
        if transaction is None or transaction.message is None or transaction.tooBig:
            return
        transaction.contentSize += len(data)
        limit = self._view[params.message_size_limit]
        if limit and transaction.contentSize > limit:
            # Keep reading to the end of data, but store nothing more.
            transaction.tooBig = True
            transaction.message.abort()
            return
        transaction.message.write(data)

    def _finishMessage(self, verb: str, bareLineFeed: bool) -> None:
        session = self.session
        transaction = session.transaction
        assert transaction is not None
        if transaction.tooBig:
            self._record(verb, False)
            self._logReject("END-OF-MESSAGE", replies.MESSAGE_FILE_TOO_BIG)
            session.transaction = None
            self._reply(replies.MESSAGE_FILE_TOO_BIG)
            self._startCommandDeadline()
            return
        if bareLineFeed and self._mode == "reject":
            reply = withCode(replies.BARE_LF, 
                self._view[params.smtpd_forbid_bare_newline_reject_code]
            ).format(myhostname=self._hostname())
            self._record(verb, False)
            self._logReject("END-OF-MESSAGE", "bare <LF> received")
            self._abortTransaction()
            if reply.code in (421, 521):
                self._hangUp(reply)
            else:
                self._reply(reply)
                self._startCommandDeadline()
            return
        message = transaction.message
        assert message is not None
        message.unregisterProducer()
        self._busy = True
        committed = message.commit()

        recipients = tuple(transaction.recipients)
        # Whether the commit is still pending once addBoth returns: then the
        # deadline is paused for it and the event loop must be restarted.
        pending = False

        def settled(result: str | Failure) -> None:
            try:
                if isinstance(result, Failure):
                    session.transaction = None
                    log.warn(
                        "warning: {client}: queue file write error: {error}",
                        client=session.client,
                        error=result.getErrorMessage(),
                    )
                    self._record(verb, False)
                    if not self._closing:
                        self._write(replies.QUEUE_FILE_WRITE_ERROR.toBytes())
                        self._startCommandDeadline()
                    return
                session.transaction = None
                session.junk = 0
                session.recipientsOvershoot = 0
                self._record(verb, True)
                if not self._closing:
                    self._write(replies.QUEUED.formatBytes(queueID=result))
                    self._startCommandDeadline()
                self._context.queued(result, recipients)
            finally:
                if pending:
                    self._done()
                else:
                    # Committed at once (in-memory delivery): the caller's
                    # event loop goes on by itself, and the deadline was
                    # never paused.
                    self._busy = False

        committed.addBoth(settled)
        if self._busy:
            pending = True
            self._deadline.pause()

    def _endOfData(self, bareLineFeed: bool) -> None:
        self._inData = False
        self._finishMessage("DATA", bareLineFeed)

    def do_BDAT(self, command: Command) -> None:
        parts = command.argument.split()
        if not parts or len(parts) > 2 or not parts[0].isdigit() or (
            len(parts) == 2 and parts[1].upper() != "LAST"
        ):
            self._refuse("BDAT", replies.BDAT_SYNTAX)
            return
        size = int(parts[0])
        last = len(parts) == 2
        session = self.session
        transaction = session.transaction
        if transaction is None or not transaction.recipients:
            # The chunk must still be read and thrown away.
            self._record("BDAT", False)
            self._discardChunk = (
                replies.NO_VALID_RECIPIENTS
                if transaction is not None and transaction.rejected
                else replies.NEED_RCPT if transaction is not None else replies.NEED_MAIL
            )
        else:
            self._discardChunk = None
            if transaction.message is None and not self._startMessage("BDAT"):
                self._discardChunk = replies.INSUFFICIENT_STORAGE
                session.transaction = None
        self._inChunk = True
        self._parser.startChunk(size, last)
        self._startContentDeadline()

    _discardChunk: Reply | None = None

    def _endOfChunk(self, last: bool, size: int, bareLineFeed: bool) -> None:
        self._inChunk = False
        if self._discardChunk is not None:
            reply, self._discardChunk = self._discardChunk, None
            self._reply(reply)
            self._startCommandDeadline()
            return
        transaction = self.session.transaction
        if transaction is not None:
            transaction.failed = transaction.failed or bareLineFeed
        if last:
            self._finishMessage("BDAT", transaction.failed if transaction else False)
            return
        self._record("BDAT", True)
        self._reply(replies.CHUNK_OK.formatBytes(size=size))
        self._startCommandDeadline()

    def do_RSET(self, command: Command) -> None:
        self._resetTransaction()
        self._record("RSET", True)
        self._reply(replies.OK)

    def do_NOOP(self, command: Command) -> None:
        self._record("NOOP", True)
        if not self._pipeliningCheck(command):
            return
        self._reply(replies.OK)

    def do_QUIT(self, command: Command) -> None:
        self._record("QUIT", True)
        self._closing = True
        self._deadline.cancel()
        self._abortCall = hangUp(self.transport, self._clock, replies.BYE.toBytes(), grace=HANGUP_GRACE)  # type: ignore[arg-type]

    def do_VRFY(self, command: Command) -> None:
        if self._view[params.disable_vrfy_command]:
            self._refuse("VRFY", replies.VRFY_DISABLED)
            return
        if not command.argument.strip():
            self._refuse("VRFY", replies.VRFY_SYNTAX)
            return
        self._record("VRFY", True)
        self._reply(replies.CANNOT_VERIFY.format(address=command.argument.strip().strip("<>")))

    def do_HELP(self, command: Command) -> None:
        self._reply(replies.HELP)

    def do_STARTTLS(self, command: Command) -> None:
        session = self.session
        if self._context.tlsCreator is None:
            self._refuse("STARTTLS", replies.COMMAND_NOT_IMPLEMENTED)
            return
        if command.argument.strip():
            self._refuse("STARTTLS", replies.STARTTLS_SYNTAX)
            return
        if session.tls:
            self._refuse("STARTTLS", replies.TLS_ALREADY_ACTIVE)
            return
        self._record("STARTTLS", True)
        self._write(replies.READY_TO_START_TLS.toBytes())
        # Anything the client sent after STARTTLS was sent in plaintext and
        # must never be acted on (CVE-2011-0411).
        injected = self._parser.discardBuffered()
        if injected:
            log.warn(
                "warning: {client}: discarding {count} bytes of plaintext sent after STARTTLS",
                client=session.client,
                count=injected,
            )
        self._abortTransaction()
        session.helo = None
        session.esmtp = False
        session.authUser = None
        self._tlsStarting = True
        self.transport.startTLS(self._context.tlsCreator)  # type: ignore[union-attr]
        self._deadline.startRequest(
            self._view[params.smtpd_starttls_timeout],
            perRequest=self._view[params.smtpd_per_request_deadline],
        )

    _authExchange: AuthExchange | None = None
    _authMechanism = ""

    def _authOffered(self) -> bool:
        if self._context.portal is None or not self._view[params.smtpd_sasl_auth_enable]:
            return False
        return self.session.tls or not self._view[params.smtpd_tls_auth_only]

    def do_AUTH(self, command: Command) -> None:
        session = self.session
        if self._context.portal is None or not self._view[params.smtpd_sasl_auth_enable]:
            self._refuse("AUTH", replies.AUTH_NOT_ENABLED)
            return
        if not self._authOffered():
            self._refuse("AUTH", replies.AUTH_ENCRYPTION_REQUIRED)
            return
        if session.authUser is not None:
            self._refuse("AUTH", replies.ALREADY_AUTHENTICATED)
            return
        if session.transaction is not None:
            self._refuse("AUTH", replies.AUTH_IN_TRANSACTION)
            return
        parts = command.argument.split()
        if not parts or len(parts) > 2:
            self._refuse("AUTH", replies.AUTH_SYNTAX)
            return
        self._authMechanism = parts[0]
        try:
            exchange = AuthExchange(
                parts[0],
                parts[1] if len(parts) == 2 else None,
                responseLimit=self._view[params.smtpd_sasl_response_limit],
            )
            step = exchange.start()
        except ArgumentSyntaxError as error:
            self._authFailed(error)
            return
        self._authStep(exchange, step)

    def _authStep(self, exchange: AuthExchange, step: Challenge | Credentials) -> None:
        if isinstance(step, Challenge):
            self._authExchange = exchange
            self._reply(step.reply)
            return
        self._authExchange = None
        self._wait()
        mechanism = self._authMechanism

        def good(user: str) -> None:
            self.session.authUser = user
            self._record("AUTH", True)
            if not self._closing:
                self._write(replies.AUTH_SUCCESSFUL.toBytes())

        def bad(failure: Failure) -> None:
            self._record("AUTH", False)
            reply = failureReply(self.session.client, mechanism, step.username, failure)
            if not self._closing:
                self._write(reply.toBytes())

        def finish(_: object) -> None:
            if not self._closing:
                self._startCommandDeadline()
            self._done()

        checked = authenticate(self._context.portal, step)
        checked.addCallbacks(good, bad)
        checked.addBoth(finish)

    def _authResponse(self, command: Command) -> None:
        exchange = self._authExchange
        assert exchange is not None
        self._authExchange = None
        try:
            step = exchange.respond(command.line)
        except ArgumentSyntaxError as error:
            self._authFailed(error)
            self._startCommandDeadline()
            return
        self._authStep(exchange, step)
        if not self._busy:
            self._startCommandDeadline()

    def _authFailed(self, error: ArgumentSyntaxError) -> None:
        logExchangeError(self.session.client, self._authMechanism, error)
        self._refuse("AUTH", error.reply)

    def do_ETRN(self, command: Command) -> None:
        self._refuse("ETRN", replies.COMMAND_NOT_IMPLEMENTED)

    _handlers: dict[str, Callable[["SMTPServerProtocol", Command], None]] = {}


SMTPServerProtocol._handlers = {
    "HELO": SMTPServerProtocol.do_HELO,
    "EHLO": SMTPServerProtocol.do_EHLO,
    "MAIL": SMTPServerProtocol.do_MAIL,
    "RCPT": SMTPServerProtocol.do_RCPT,
    "DATA": SMTPServerProtocol.do_DATA,
    "BDAT": SMTPServerProtocol.do_BDAT,
    "RSET": SMTPServerProtocol.do_RSET,
    "NOOP": SMTPServerProtocol.do_NOOP,
    "QUIT": SMTPServerProtocol.do_QUIT,
    "VRFY": SMTPServerProtocol.do_VRFY,
    "HELP": SMTPServerProtocol.do_HELP,
    "STARTTLS": SMTPServerProtocol.do_STARTTLS,
    "ETRN": SMTPServerProtocol.do_ETRN,
    "AUTH": SMTPServerProtocol.do_AUTH,
}
