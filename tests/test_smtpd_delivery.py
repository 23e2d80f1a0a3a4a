"""
Tests for embedding: an application's IMessageDelivery behind mtaguard.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.mail.interfaces import IMessageDelivery, IMessageDeliveryFactory, IMessageSMTP
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from mtaguard.config import ParameterView
from mtaguard.smtpd import ServerContext, SMTPServerProtocol
from mtaguard.smtpd._delivery import DeliveryQueue

from .smtpdharness import BASE


@implementer(IMessageSMTP)
class Message:
    def __init__(self, store: list[list[bytes]]) -> None:
        self.lines: list[bytes] = []
        self.store = store
        self.lost = False

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Deferred[None]:
        self.store.append(self.lines)
        return succeed(None)

    def connectionLost(self) -> None:
        self.lost = True


class BadRecipient(Exception):
    code = 550
    resp = b"5.1.1 no such user here"


@implementer(IMessageDelivery)
class Delivery:
    def __init__(self) -> None:
        self.delivered: list[list[bytes]] = []
        self.pendingSender: Deferred[Any] | None = None
        self.holdSender = False

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: from " + helo[0] + b" by app"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        if self.holdSender:
            self.pendingSender = Deferred()
            return self.pendingSender
        return origin

    def validateTo(self, user: Any) -> Any:
        if user.dest.local == b"nobody":
            raise BadRecipient()
        return lambda: Message(self.delivered)


def session(delivery: Any = None, factory: Any = None) -> tuple[SMTPServerProtocol, StringTransport]:
    context = ServerContext(
        view=ParameterView(dict(BASE, mynetworks="203.0.113.0/24")),
        delivery=DeliveryQueue(delivery, factory),
        clock=Clock(),
    )
    protocol = SMTPServerProtocol(context)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "203.0.113.9", 4000))
    protocol.makeConnection(transport)
    transport.clear()
    return protocol, transport


class EmbeddingTests(SynchronousTestCase):
    """
    An IMessageDelivery gets validated envelopes and dot-unstuffed lines.
    """

    def test_delivery(self) -> None:
        """
        The message reaches the application line by line, after its own
        Received header, and the client gets 250 once eomReceived fires.
        """
        delivery = Delivery()
        protocol, transport = session(delivery)
        protocol.dataReceived(
            b"EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<u@remote.example>\r\n"
            b"DATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"
        )
        self.assertTrue(transport.value().endswith(b"250 2.0.0 Ok: queued as E00000001\r\n"))
        self.assertEqual(
            delivery.delivered,
            [[b"Received: from c.example by app", b"Subject: x", b"", b".dot"]],
        )

    def test_refusedRecipient(self) -> None:
        """
        An exception with an SMTP code from validateTo becomes that reply.
        """
        protocol, transport = session(Delivery())
        protocol.dataReceived(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<nobody@remote.example>\r\n")
        self.assertEqual(
            transport.value(), b"250 2.1.0 Ok\r\n550 5.1.1 no such user here\r\n"
        )

    def test_slowValidationKeepsOrder(self) -> None:
        """
        While validateFrom is pending, pipelined commands wait; replies come
        in order once it fires.
        """
        delivery = Delivery()
        delivery.holdSender = True
        protocol, transport = session(delivery)
        protocol.dataReceived(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<u@remote.example>\r\nNOOP\r\n")
        self.assertEqual(transport.value(), b"")
        assert delivery.pendingSender is not None
        delivery.pendingSender.callback(None)
        self.assertEqual(
            transport.value(), b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n"
        )

    def test_deliveryFactory(self) -> None:
        """
        An IMessageDeliveryFactory is asked for a delivery per transaction.
        """
        delivery = Delivery()

        @implementer(IMessageDeliveryFactory)
        class Factory:
            calls = 0

            def getMessageDelivery(self) -> Delivery:
                Factory.calls += 1
                return delivery

        protocol, transport = session(factory=Factory())
        protocol.dataReceived(b"MAIL FROM:<a@c.example>\r\nRSET\r\nMAIL FROM:<b@c.example>\r\n")
        self.assertEqual(Factory.calls, 2)

    def test_abortOnDisconnect(self) -> None:
        """
        A client that goes away mid-DATA makes the application's messages
        see connectionLost.
        """
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        delivery = Delivery()
        protocol, transport = session(delivery)
        protocol.dataReceived(
            b"MAIL FROM:<a@c.example>\r\nRCPT TO:<u@remote.example>\r\nDATA\r\nSubject: x\r\n"
        )
        message = protocol.session.transaction.message  # type: ignore[union-attr]
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(message._messages[0].lost)  # type: ignore[union-attr]
        self.assertEqual(delivery.delivered, [])
