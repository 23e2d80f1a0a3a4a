"""
Regression tests for the TLS renegotiation attack class: a client that
starts a second handshake on an established TLS 1.2 session (CPU
exhaustion, and the old prefix-injection attacks) is refused and cut off,
and the attempt is logged; TLS 1.3 KeyUpdate is not mistaken for it.

The loopback tests drive C{openssl s_client -starttls smtp} against a tiny
test-only STARTTLS server using L{mtaguard.tls}'s creator, on 127.0.0.1
with the real reactor.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from OpenSSL import SSL
from twisted.internet import defer, protocol, reactor
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer, provider

from mtaguard import _certificate, tls
from mtaguard.config import parseConfiguration


def serverCreator(directory: str, clock: Any) -> tls.NoRenegotiationServerCreator:
    """
    A creator from a level-C{may} configuration with a fresh ECDSA
    certificate in C{directory}.
    """
    key, cert = _certificate.makeSelfSigned("mx.test.example", 1, ecdsa=True)
    path = os.path.join(directory, "chain.pem")
    with open(path, "wb") as handle:
        handle.write(key + cert)
    mainCf = f"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {path}\n"
    result = tls.serverTLS(parseConfiguration(directory, mainCf, "").view(), reactor=clock)
    assert result.creator is not None, result.warnings
    return result.creator


class LogCollector:
    """
    Collect formatted log events while installed.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, event: LogEvent) -> None:
        self.lines.append(formatEvent(event))

    def warnings(self) -> list[str]:
        return [line for line in self.lines if "renegotiation" in line]


class FakeTLSProtocol:
    """
    Stands in for L{twisted.protocols.tls.TLSMemoryBIOProtocol}: counts
    aborts and has no transport (so the peer is C{unknown[unknown]}).
    """

    def __init__(self) -> None:
        self.aborted = 0

    def abortConnection(self) -> None:
        self.aborted += 1


def pump(one: SSL.Connection, other: SSL.Connection) -> None:
    """
    Move pending TLS records between two memory-BIO connections.
    """
    for _ in range(10):
        moved = False
        for source, target in ((one, other), (other, one)):
            try:
                data = source.bio_read(65536)
            except SSL.WantReadError:
                continue
            target.bio_write(data)
            moved = True
        for connection in (one, other):
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error:
                pass
            try:
                connection.recv(65536)
            except (SSL.WantReadError, SSL.ZeroReturnError, SSL.Error):
                pass
        if not moved:
            return


class InMemoryRenegotiationTests(SynchronousTestCase):
    """
    The info-callback guard, deterministically: in-memory handshakes and a
    L{Clock}.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.clock = Clock()
        self.creator = serverCreator(self.directory, self.clock)
        self.logs = LogCollector()
        globalLogPublisher.addObserver(self.logs)
        self.addCleanup(globalLogPublisher.removeObserver, self.logs)

    def connect(self, maximum: int) -> tuple[FakeTLSProtocol, SSL.Connection, SSL.Connection]:
        fake = FakeTLSProtocol()
        server = self.creator.serverConnectionForTLS(fake)
        server.set_accept_state()
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_max_proto_version(maximum)
        client = SSL.Connection(context, None)
        client.set_connect_state()
        try:
            client.do_handshake()
        except SSL.WantReadError:
            pass
        pump(client, server)
        self.assertEqual(server.get_state_string(), b"SSL negotiation finished successfully")
        return fake, server, client

    def test_secondHandshakeAborts(self) -> None:
        """
        A client renegotiation on TLS 1.2 is refused by OpenSSL, logged and
        the connection aborted on the next reactor turn, never inside
        OpenSSL's callback.
        """
        fake, server, client = self.connect(SSL.TLS1_2_VERSION)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        client.renegotiate()
        try:
            client.do_handshake()
        except SSL.Error:
            pass
        pump(client, server)
        self.assertEqual(fake.aborted, 0)
        self.assertEqual(
            self.logs.warnings(),
            ["warning: TLS renegotiation attempt from unknown[unknown]: aborting"],
        )
        self.clock.advance(0)
        self.assertEqual(fake.aborted, 1)
        self.assertEqual(server.total_renegotiations(), 0)

    def test_tls13KeyUpdateIgnored(self) -> None:
        """
        TLS 1.3 post-handshake messages (session tickets, and the client's
        traffic after them) do not trip the guard.
        """
        fake, server, client = self.connect(SSL.TLS1_3_VERSION)
        client.send(b"NOOP\r\n")
        pump(client, server)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((fake.aborted, self.logs.warnings()), (0, []))


class TinySMTP(LineReceiver):
    """
    Just enough SMTP for C{openssl s_client -starttls smtp}: greeting,
    EHLO with STARTTLS, STARTTLS, NOOP, QUIT.
    """

    delimiter = b"\r\n"

    def connectionMade(self) -> None:
        self.sendLine(b"220 mx.test.example ESMTP test")

    def lineReceived(self, line: bytes) -> None:
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"EHLO":
            self.sendLine(b"250-mx.test.example")
            self.sendLine(b"250 STARTTLS")
        elif verb == b"STARTTLS":
            self.sendLine(b"220 2.0.0 Ready to start TLS")
            # No plaintext may survive into the TLS session.
            self.clearLineBuffer()
            self.transport.startTLS(self.factory.creator)  # type: ignore[attr-defined]
        elif verb == b"NOOP":
            self.sendLine(b"250 2.0.0 Ok")
        elif verb == b"QUIT":
            self.sendLine(b"221 2.0.0 Bye")
            self.transport.loseConnection()  # type: ignore[union-attr]
        else:
            self.sendLine(b"502 5.5.2 Error: command not recognized")

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.lost.append(reason)  # type: ignore[attr-defined]
        waiting, self.factory.waiting = self.factory.waiting, []  # type: ignore[attr-defined]
        for deferred in waiting:
            deferred.callback(None)


class TinySMTPFactory(protocol.ServerFactory):
    protocol = TinySMTP

    def __init__(self, creator: tls.NoRenegotiationServerCreator) -> None:
        self.creator = creator
        self.lost: list[Any] = []
        self.waiting: list[defer.Deferred[Any]] = []

    def whenLost(self) -> defer.Deferred[Any]:
        if self.lost:
            return defer.succeed(None)
        deferred: defer.Deferred[Any] = defer.Deferred()
        self.waiting.append(deferred)
        return deferred


class SClient(protocol.ProcessProtocol):
    """
    C{openssl s_client}, with a way to wait for text in its output.
    """

    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._waiting: list[tuple[bytes, int, defer.Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        self.output += data
        self._check()

    errReceived = outReceived

    def _check(self) -> None:
        # Update the list before firing: a callback may call waitFor again.
        ready = [entry for entry in self._waiting if self.output.count(entry[0]) >= entry[1]]
        self._waiting = [entry for entry in self._waiting if entry not in ready]
        for _, _, deferred in ready:
            deferred.callback(None)

    def waitFor(self, text: bytes, count: int = 1) -> defer.Deferred[None]:
        """
        Fire when C{text} has appeared C{count} times in the output.
        """
        deferred: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((text, count, deferred))
        self._check()
        return deferred

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)
        waiting, self._waiting = self._waiting, []
        for _, _, deferred in waiting:
            deferred.errback(
                AssertionError(f"s_client ended; output:\n{self.output.decode(errors='replace')}")
            )


class OpenSSLClientRenegotiationTests(TestCase):
    """
    A real C{openssl s_client} over loopback.
    """

    timeout = 30

    def setUp(self) -> None:
        self.openssl = shutil.which("openssl")
        if self.openssl is None:
            if os.environ.get("CI") == "true":
                self.fail("the openssl command is required under CI")
            raise self.skipTest("the openssl command is not installed")
        directory = self.mktemp()
        os.makedirs(directory)
        self.factory = TinySMTPFactory(serverCreator(directory, reactor))
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(self.port.stopListening)
        self.logs = LogCollector()
        globalLogPublisher.addObserver(self.logs)
        self.addCleanup(globalLogPublisher.removeObserver, self.logs)

    def spawn(self, version: str) -> SClient:
        client = SClient()
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            client,
            self.openssl,
            [
                "openssl", "s_client", "-crlf", f"-{version}", "-starttls", "smtp",
                "-connect", f"127.0.0.1:{self.port.getHost().port}",
                "-servername", "mx.test.example",
            ],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        self.transport = transport

        def cleanup() -> defer.Deferred[None]:
            if transport.pid is not None:
                transport.signalProcess("KILL")
            return client.ended

        self.addCleanup(cleanup)
        return client

    @defer.inlineCallbacks
    def test_renegotiationAborted(self) -> Any:
        """
        C{R} (renegotiate) on TLS 1.2: refused, the connection is aborted,
        the attempt is logged, and a command after it gets no answer.
        """
        client = self.spawn("tls1_2")
        # s_client prints the session summary once the handshake is done.
        yield client.waitFor(b"Verify return code")
        self.transport.write(b"NOOP\n")
        yield client.waitFor(b"250 2.0.0 Ok")
        self.transport.write(b"R\n")
        yield self.factory.whenLost()
        self.transport.write(b"NOOP\n")
        yield client.ended
        self.assertIn(b"RENEGOTIATING", client.output)
        self.assertEqual(client.output.count(b"250 2.0.0 Ok"), 1)
        self.assertEqual(
            self.logs.warnings(),
            ["warning: TLS renegotiation attempt from unknown[127.0.0.1]: aborting"],
        )

    @defer.inlineCallbacks
    def test_keyUpdateAllowed(self) -> Any:
        """
        C{k} (KeyUpdate) on TLS 1.3 is no renegotiation: the session goes
        on.
        """
        client = self.spawn("tls1_3")
        yield client.waitFor(b"Verify return code")
        self.transport.write(b"k\n")
        yield client.waitFor(b"KEYUPDATE")
        self.transport.write(b"NOOP\n")
        yield client.waitFor(b"250 2.0.0 Ok")
        # Not QUIT: s_client takes a line starting with Q as its own quit
        # command.  End of input makes it close the connection.
        self.transport.closeStdin()
        yield self.factory.whenLost()
        self.assertEqual(client.output.count(b"250 2.0.0 Ok"), 1)
        self.assertEqual(self.logs.warnings(), [])
