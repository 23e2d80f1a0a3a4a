# -*- test-case-name: tests.test_postscreen_protocol -*-
"""
postscreen's Twisted adapter: one L{PostscreenProtocol} per connection runs
the before-220 core (L{EarlySession}), the dummy SMTP engine when needed,
and hands a clean client to smtpd in the same process.

The hand-off moves the connection, not the bytes: the smtpd protocol is
connected to the very transport the client connected on, and postscreen
stays in the chain only as a forwarder of events (received data, TLS
handshake completion, connection loss).  No second TCP hop, no reconnect;
smtpd sends its own C{220 } greeting, which completes a C{220-} teaser, and
reads whatever the client sent during the tests.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..deadline import hangUp
from ..smtp._escape import escapeForLog
from ..tls import IPeerName
from ._access import Access
from ._cache import Verdicts
from ._checks import CheckFail, CheckPass, ClientInfo, describeFailure, runCheck
from ._early import (
    CacheUpdate,
    Drop,
    EarlySession,
    EnterDummyEngine,
    PASS_NEW_LOG_FORMAT,
    PASS_OLD_LOG_FORMAT,
    HandOff,
    Log,
    SendTeaser,
    StartCheck,
    StartDNSBL,
    WaitUntil,
)

log = Logger(namespace="mtaguard.postscreen")

#: Log formats of the connection-level events (Postfix's texts).
CONNECT_LOG_FORMAT = "CONNECT from [{address}]:{port} to [{serverAddress}]:{serverPort}"
DISCONNECT_LOG_FORMAT = "DISCONNECT [{address}]:{port}"
TOO_MANY_CONNECTIONS_LOG_FORMAT = "NOQUEUE: reject: CONNECT from [{address}]:{port}: too many connections"
SERVER_PORTS_BUSY_LOG_FORMAT = "NOQUEUE: reject: CONNECT from [{address}]:{port}: all server ports busy"
SCREENING_PORTS_BUSY_LOG_FORMAT = "reject: connect from [{address}]:{port}: all screening ports busy"

#: Replies to connections refused for load (Postfix's texts).
TOO_MANY_CONNECTIONS_REPLY = b"421 4.7.0 Error: too many connections\r\n"
SERVER_PORTS_BUSY_REPLY = b"421 4.3.2 All server ports are busy\r\n"
SCREENING_PORTS_BUSY_REPLY = b"421 4.3.2 All screening ports are busy\r\n"

#: Bytes kept from a client that talks during the tests; reading pauses
#: beyond this (the kernel buffers the rest, as it does for Postfix, which
#: only peeks).
PREGREET_BUFFER_LIMIT = 4096

#: Seconds a refused or dropped client gets to read its reply before the
#: connection is aborted.
CLOSE_GRACE = 10.0


def _hostPort(address: Any) -> tuple[str, int]:
    return str(getattr(address, "host", "unknown")), int(getattr(address, "port", 0))


@implementer(IHandshakeListener, IPeerName)
class PostscreenProtocol(Protocol):
    """
    One connection to postscreen.

    @ivar handedOff: the smtpd protocol the connection went to, or L{None}.
    """

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self._clock = factory.clock
        self.handedOff: Optional[Protocol] = None
        self._early: Optional[EarlySession] = None
        self._engine: Any = None
        self._buffer = b""
        self._paused = False
        self._timer: Optional[IDelayedCall] = None
        self._abort: Optional[IDelayedCall] = None
        self._pending: list[Any] = []
        self._done = False
        self._counted = False
        self._start = 0.0
        self.client = ClientInfo("unknown", 0, "unknown", 0)

    # -- IPeerName / IHandshakeListener: forwarded after the hand-off ------

    @property
    def peerName(self) -> str:
        inner: Any = self.handedOff
        if IPeerName.providedBy(inner):
            return str(inner.peerName)
        return f"[{self.client.address}]:{self.client.port}"

    def handshakeCompleted(self) -> None:
        inner: Any = self.handedOff
        if inner is not None:
            if IHandshakeListener.providedBy(inner):
                inner.handshakeCompleted()
            return
        if self._engine is not None and not self._done:
            self._run(self._engine.tlsStarted(self._clock.seconds()))

    # -- connection events ---------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        address, port = _hostPort(transport.getPeer())
        serverAddress, serverPort = _hostPort(transport.getHost())
        self.client = ClientInfo(address, port, serverAddress, serverPort)
        self._start = self._clock.seconds()
        factory = self.factory
        self._log(CONNECT_LOG_FORMAT, serverAddress=serverAddress, serverPort=serverPort)
        factory.sessionStarted(self)
        self._counted = True
        refusal = factory.refusal(self)
        if refusal is not None:
            logFormat, reply = refusal
            self._log(logFormat)
            self._end(reply)
            return
        access = factory.access(address)
        if access is Access.DUNNO and self._passOld(address, serverAddress):
            return
        self._early = EarlySession(
            factory.earlySettings(),
            clientAddress=address,
            clientPort=port,
            serverAddress=serverAddress,
            serverPort=serverPort,
        )
        if access is Access.PERMIT:
            self._connected(access, None)
            return
        # What is known without waiting: another open session's state
        # (handed over silently), or a recent verdict held in memory.
        shared = factory.sharedVerdicts(address)
        if shared is not None:
            self._connected(access, shared, shared=True)
            return
        recent = factory.recentVerdicts(address)
        if recent is not None:
            self._connected(access, recent)
            return
        looking = factory.verdictsFor(address)
        looking.addCallback(lambda cached: self._connected(access, cached))
        looking.addErrback(self._failed, "cache lookup")

    def _passOld(self, address: str, serverAddress: str) -> bool:
        """
        Hand a returning client to smtpd at once when what is known
        without waiting (another open session's state, or a recent verdict
        in memory) shows every enabled test still passed: the same outcome
        as L{EarlySession.connected} on that entry, without building the
        before-220 state, since most connections of a busy server are such
        clients.

        @return: whether the client was handed off.
        """
        factory = self.factory
        shared = factory.sharedVerdicts(address)
        known = shared if shared is not None else factory.recentVerdicts(address)
        if known is None or factory.allowlistVeto(serverAddress):
            return False
        if not factory.earlySettings().passOld(known, self._start):
            return False
        if shared is None:
            # Postfix logs PASS OLD only after its own cache lookup, not when
            # it goes by another open session's state.
            self._log(PASS_OLD_LOG_FORMAT)
        self._handOff()
        return True

    def _connected(self, access: Access, cached: Optional[Verdicts], *, shared: bool = False) -> None:
        if self._done or self._early is None:
            return
        actions = self._early.connected(
            self._clock.seconds(),
            access=access,
            cached=cached,
            allowlistVeto=self.factory.allowlistVeto(self.client.serverAddress),
            shared=shared,
        )
        final = actions[-1] if actions else None
        if not isinstance(final, (HandOff, Drop)):
            # Step 7 of Postfix's order: after the access list and the cache
            # (which may hand off at once), before any test runs.
            busy = self.factory.screeningPortsBusy()
            if busy:
                for action in actions:
                    if isinstance(action, Log):
                        self._run([action])
                self._log(SCREENING_PORTS_BUSY_LOG_FORMAT)
                self._end(SCREENING_PORTS_BUSY_REPLY)
                return
        self._run(actions)
        if self._buffer and self._early is not None and not self._done and self.handedOff is None and self._engine is None:
            self._run(self._early.clientSpoke(self._clock.seconds(), self._buffer))

    def dataReceived(self, data: bytes) -> None:
        inner = self.handedOff
        if inner is not None:
            inner.dataReceived(data)
            return
        if self._done:
            return
        if self._engine is not None:
            self._run(self._engine.dataReceived(self._clock.seconds(), data))
            return
        self._buffer += data
        if len(self._buffer) >= PREGREET_BUFFER_LIMIT and not self._paused:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]
        if self._early is not None:
            self._run(self._early.clientSpoke(self._clock.seconds(), data))

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        inner = self.handedOff
        self._cancelTimers()
        if inner is not None:
            inner.connectionLost(reason)
            return
        now = self._clock.seconds()
        if not self._done:
            if self._engine is not None:
                self._run(self._engine.connectionLost(now))
            elif self._early is not None:
                self._run(self._early.hungUp(now))
            self._done = True
        self._finish()

    # -- executing the core's actions --------------------------------------

    def _run(self, actions: Sequence[Any]) -> None:
        for action in actions:
            # Once the session ended or moved to smtpd, only its record
            # (log lines, the cache) is still written.
            if (self._done or self.handedOff is not None) and not isinstance(action, (Log, CacheUpdate)):
                continue
            self._execute(action)

    def _execute(self, action: Any) -> None:
        transport = self.transport
        if isinstance(action, Log):
            logFormat = action.format
            if logFormat == PASS_NEW_LOG_FORMAT and not self.factory.firstPass(self.client.address):
                logFormat = PASS_OLD_LOG_FORMAT
            log.info(logFormat, **action.fields)
        elif isinstance(action, SendTeaser):
            transport.write(action.data)  # type: ignore[union-attr]
        elif isinstance(action, StartDNSBL):
            self._startDNSBL()
        elif isinstance(action, StartCheck):
            self._startCheck(action.name)
        elif isinstance(action, WaitUntil):
            self._schedule(action.deadline)
        elif isinstance(action, CacheUpdate):
            self.factory.storeVerdicts(self.client.address, action.verdicts)
        elif isinstance(action, HandOff):
            self._handOff()
        elif isinstance(action, Drop):
            self._end(action.reply)
        elif isinstance(action, EnterDummyEngine):
            self._enterEngine(action)
        else:
            self._executeEngineAction(action)

    def _executeEngineAction(self, action: Any) -> None:
        from ._engine import Disconnect, Send, StartTLS

        if isinstance(action, Send):
            self.transport.write(action.data)  # type: ignore[union-attr]
        elif isinstance(action, StartTLS):
            self.transport.startTLS(self.factory.tlsCreator)  # type: ignore[union-attr]
        elif isinstance(action, Disconnect):
            self._end(None)
        else:
            raise TypeError(f"unknown postscreen action {action!r}")

    def _schedule(self, deadline: float) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        delay = max(0.0, deadline - self._clock.seconds())
        self._timer = self._clock.callLater(delay, self._timerFired)

    def _timerFired(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        if self._engine is not None:
            self._run(self._engine.timerFired(now))
        elif self._early is not None:
            self._run(self._early.waitEnded(now))

    def _startDNSBL(self) -> None:
        setup = self.factory.dnsbl
        if setup is None:
            return
        lookup = setup.lookup.lookup(self.client.address, setup.sites)
        self._pending.append(lookup)

        def done(result: Any) -> None:
            if self._early is not None and self.handedOff is None and not self._done:
                self._run(
                    self._early.dnsblDone(self._clock.seconds(), result.score, result.ttl, result.listedBy)
                )

        lookup.addCallback(done)
        lookup.addErrback(self._failed, "DNSBL lookup")

    def _startCheck(self, name: str) -> None:
        check = self.factory.checks.before[name]
        running = runCheck(check, self.client)
        self._pending.append(running)

        def done(outcome: Any) -> None:
            if self._early is None or self.handedOff is not None or self._done:
                return
            now = self._clock.seconds()
            if isinstance(outcome, CheckPass):
                self._run(self._early.checkDone(now, name, True, ttl=outcome.ttl))
            elif isinstance(outcome, CheckFail):
                self._run(
                    self._early.checkDone(
                        now,
                        name,
                        False,
                        reason=escapeForLog(outcome.reason, limit=100),
                        reply=outcome.reply,
                    )
                )

        def broke(failure: Failure) -> None:
            if failure.check(CancelledError):
                return
            log.warn(
                "warning: postscreen check {name} failed for [{address}]:{port}: {error}",
                name=name,
                address=self.client.address,
                port=self.client.port,
                error=describeFailure(failure),
            )
            if self._early is not None and self.handedOff is None and not self._done:
                self._run(self._early.checkDone(self._clock.seconds(), name, None))

        running.addCallbacks(done, broke)
        running.addErrback(self._failed, f"check {name}")

    def _enterEngine(self, entry: EnterDummyEngine) -> None:
        self._engine = self.factory.newEngine(entry, self.client, self._start)
        # The before-220 phase is over; its state is not needed any more.
        self._early = None
        self._cancelPending()
        buffered, self._buffer = self._buffer, b""
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]
        self._run(self._engine.start(self._clock.seconds()))
        if buffered and not self._done:
            self._run(self._engine.dataReceived(self._clock.seconds(), buffered))

    def _handOff(self) -> None:
        transport = self.transport
        assert transport is not None
        self._cancelTimers()
        self._cancelPending()
        self._done = True
        if self._counted:
            self._counted = False
            self.factory.sessionEnded(self)
        inner = self.factory.handOff(self, transport.getPeer())
        if inner is None:
            # smtpd refused the client (its own per-client limits); it
            # already wrote its reply through its refusal protocol.
            return
        self.handedOff = inner
        inner.makeConnection(transport)
        buffered, self._buffer = self._buffer, b""
        if self._paused:
            self._paused = False
            transport.resumeProducing()  # type: ignore[attr-defined]
        if buffered:
            inner.dataReceived(buffered)

    def _end(self, reply: Optional[bytes]) -> None:
        if self._done and self._abort is not None:
            return
        self._done = True
        self._cancelPending()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._abort = hangUp(self.transport, self._clock, reply, grace=CLOSE_GRACE)  # type: ignore[arg-type]

    def _finish(self) -> None:
        if self.handedOff is None:
            self._log(DISCONNECT_LOG_FORMAT)
        if self._counted:
            self._counted = False
            self.factory.sessionEnded(self)

    def _cancelTimers(self) -> None:
        for call in (self._timer, self._abort):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._abort = None

    def _cancelPending(self) -> None:
        pending, self._pending = self._pending, []
        for deferred in pending:
            deferred.cancel()

    def _failed(self, failure: Failure, what: str) -> None:
        # Only a bug gets here: the core, the cache wrapper and the lookups
        # do not fail.  Tell the client to come back rather than hang.
        if failure.check(CancelledError):
            return
        log.failure(
            "postscreen: {what} failed for [{address}]:{port}",
            failure,
            what=what,
            address=self.client.address,
            port=self.client.port,
        )
        if not self._done and self.handedOff is None:
            self._end(b"421 4.3.2 No system resources\r\n")

    def _log(self, format: str, **fields: Any) -> None:
        log.info(format, address=self.client.address, port=self.client.port, **fields)
