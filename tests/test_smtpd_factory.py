"""
Tests for L{mtaguard.smtpd.SMTPServerFactory}: per-client limits and stress
mode.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config import ParameterView
from mtaguard.smtpd import ServerContext, SMTPServerFactory
from mtaguard.testing import MemoryQueue

from .smtpdharness import BASE


class FakePort:
    reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


def makeFactory(processLimit: int = 100, **values: str) -> tuple[SMTPServerFactory, Clock]:
    clock = Clock()
    view = ParameterView(dict(BASE, **values))
    factory = SMTPServerFactory(
        ServerContext(view=view, queue=MemoryQueue(), clock=clock), processLimit=processLimit
    )
    return factory, clock


def connect(factory: SMTPServerFactory, host: str) -> tuple[Any, StringTransport]:
    address = IPv4Address("TCP", host, 5000)
    protocol = factory.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return protocol, transport


class ClientLimitTests(SynchronousTestCase):
    """
    Connections per client address are limited as with Postfix's anvil.
    """

    def test_countLimit(self) -> None:
        """
        Beyond smtpd_client_connection_count_limit a client gets Postfix's
        421 and is disconnected; other clients are not affected; a closed
        session frees its slot.
        """
        factory, _ = makeFactory(smtpd_client_connection_count_limit="2")
        first, _ = connect(factory, "198.51.100.1")
        connect(factory, "198.51.100.1")
        with capturedLogs() as events:
            _, refused = connect(factory, "198.51.100.1")
        self.assertEqual(
            refused.value(),
            b"421 4.7.0 mx.example.org Error: too many connections from 198.51.100.1\r\n",
        )
        self.assertTrue(refused.disconnecting)
        rendered = [e["log_format"].format(**e) for e in events]
        self.assertIn(
            "warning: Connection concurrency limit exceeded: 3 from unknown[198.51.100.1]"
            " for service smtp",
            rendered,
        )
        _, other = connect(factory, "198.51.100.2")
        self.assertTrue(other.value().startswith(b"220 "))
        first.connectionLost(Failure(ConnectionDone()))
        _, again = connect(factory, "198.51.100.1")
        self.assertTrue(again.value().startswith(b"220 "))

    def test_exceptions(self) -> None:
        """
        Clients in smtpd_client_event_limit_exceptions (mynetworks by
        default) are not limited.
        """
        factory, _ = makeFactory(smtpd_client_connection_count_limit="1")
        connect(factory, "127.0.0.1")
        _, second = connect(factory, "127.0.0.1")
        self.assertTrue(second.value().startswith(b"220 "))

    def test_rateLimit(self) -> None:
        """
        Beyond smtpd_client_connection_rate_limit connections per
        anvil_rate_time_unit, a client is refused until the window moves on.
        """
        factory, clock = makeFactory(smtpd_client_connection_rate_limit="2")
        for _ in range(2):
            protocol, _ = connect(factory, "198.51.100.7")
            protocol.connectionLost(Failure(ConnectionDone()))
        _, refused = connect(factory, "198.51.100.7")
        self.assertTrue(refused.value().startswith(b"421 4.7.0"))
        clock.advance(61)
        _, accepted = connect(factory, "198.51.100.7")
        self.assertTrue(accepted.value().startswith(b"220 "))


class StressTests(SynchronousTestCase):
    """
    At the process limit the service enters stress mode and stops
    accepting; it leaves stress after staying below the limit.
    """

    def test_enterAndLeave(self) -> None:
        """
        Reaching the limit turns stress on (shorter timeouts for every
        session) and stops reading the listening port; going below resumes
        accepting at once, and stress ends after 1000 s below the limit.
        """
        factory, clock = makeFactory(processLimit=2)
        port = FakePort()
        factory.ports.append(port)  # type: ignore[arg-type]
        view = factory.context.view
        first, _ = connect(factory, "198.51.100.1")
        self.assertFalse(view.stress)
        with capturedLogs() as events:
            second, _ = connect(factory, "198.51.100.2")
        self.assertTrue(view.stress)
        self.assertFalse(port.reading)
        self.assertTrue(any("entering stress mode" in e["log_format"] for e in events))
        second.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(port.reading)
        self.assertTrue(view.stress)
        clock.advance(999)
        self.assertTrue(view.stress)
        clock.advance(2)
        self.assertFalse(view.stress)
