"""
STARTTLS plaintext injection (CVE-2011-0411 class): commands a client (or a
man in the middle) pipelines after STARTTLS in clear must never be executed,
and the SMTP state must start afresh inside TLS.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from .smtpdharness import Harness


class TLSStringTransport:
    """
    Records C{startTLS} on a L{StringTransport}.
    """

    @staticmethod
    def install(h: Harness) -> list[Any]:
        started: list[Any] = []
        h.transport.startTLS = started.append  # type: ignore[attr-defined]
        return started


def tlsHarness() -> tuple[Harness, list[Any]]:
    h = Harness()
    h.context.tlsCreator = object()
    return h, TLSStringTransport.install(h)


class StartTLSInjectionTests(SynchronousTestCase):
    """
    Plaintext after STARTTLS is discarded and the session is reset.
    """

    def test_advertised(self) -> None:
        """
        STARTTLS is offered when TLS is configured, and not again inside TLS.
        """
        h, started = tlsHarness()
        h.take()
        h.send(b"EHLO c.example\r\n")
        self.assertIn(b"250-STARTTLS\r\n", h.take())
        h.send(b"STARTTLS\r\n")
        h.protocol.handshakeCompleted()
        h.take()
        h.send(b"EHLO c.example\r\n")
        self.assertNotIn(b"STARTTLS", h.take())

    def test_injectedCommandsDiscarded(self) -> None:
        """
        Commands in the same segment as STARTTLS get no reply, now or after
        the handshake, and the discarded bytes are logged.
        """
        h, started = tlsHarness()
        h.ehlo()
        with capturedLogs() as events:
            h.send(b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<x@remote.example>\r\n")
        self.assertEqual(h.take(), b"220 2.0.0 Ready to start TLS\r\n")
        self.assertEqual(len(started), 1)
        h.protocol.handshakeCompleted()
        self.assertEqual(h.take(), b"")
        self.assertIsNone(h.protocol.session.transaction)
        rendered = [e["log_format"].format(**e) for e in events]
        self.assertTrue(any("discarding 63 bytes of plaintext" in line for line in rendered), rendered)

    def test_stateReset(self) -> None:
        """
        HELO and the envelope from before STARTTLS are forgotten: RCPT after
        the handshake needs a new MAIL.
        """
        h, started = tlsHarness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@c.example>\r\n")
        h.take()
        h.send(b"STARTTLS\r\n")
        h.protocol.handshakeCompleted()
        h.take()
        self.assertIsNone(h.protocol.session.helo)
        h.send(b"RCPT TO:<postmaster@mx.example.org>\r\n")
        self.assertEqual(h.take(), b"503 5.5.1 Error: need MAIL command\r\n")

    def test_notConfigured(self) -> None:
        """
        Without TLS, STARTTLS is not offered and is refused.
        """
        h = Harness()
        h.take()
        h.send(b"STARTTLS\r\n")
        self.assertEqual(h.take(), b"502 5.5.1 Error: command not implemented\r\n")


class RequiredTLSTests(SynchronousTestCase):
    """
    With smtpd_tls_security_level = encrypt, no mail moves in clear.
    """

    def test_mailBeforeStartTLS(self) -> None:
        """
        MAIL before STARTTLS gets Postfix's 530 5.7.0.
        """
        h, started = tlsHarness()
        h.context.tlsRequired = True
        h.ehlo()
        h.send(b"MAIL FROM:<a@c.example>\r\n")
        self.assertEqual(h.take(), b"530 5.7.0 Must issue a STARTTLS command first\r\n")
        h.send(b"STARTTLS\r\n")
        h.protocol.handshakeCompleted()
        h.take()
        h.send(b"EHLO c.example\r\nMAIL FROM:<a@c.example>\r\n")
        self.assertTrue(h.take().endswith(b"250 2.1.0 Ok\r\n"))
