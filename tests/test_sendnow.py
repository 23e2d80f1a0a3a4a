"""
Tests for L{mtaguard.sendnow}: replies written straight to the socket keep
their order with whatever Twisted buffers, and only plain TCP qualifies.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mtaguard.sendnow import canSendNow, sendNow


class FakeConnection:
    """
    The attributes of a Twisted TCP connection that L{sendNow} looks at.
    """

    def __init__(self, accept: int | Exception) -> None:
        self.TLS = False
        self.dataBuffer = b""
        self._tempDataBuffer: list[bytes] = []
        self.connected = True
        self.disconnecting = False
        self.accept = accept
        self.direct: list[bytes] = []
        self.buffered: list[bytes] = []

    def writeSomeData(self, data: bytes) -> int | Exception:
        if isinstance(self.accept, Exception):
            return self.accept
        taken = data[: self.accept]
        self.direct.append(taken)
        return len(taken)

    def write(self, data: bytes) -> None:
        self.buffered.append(data)


class SendNowTests(SynchronousTestCase):
    """
    L{sendNow} writes directly only when nothing waits before the data.
    """

    def test_allTaken(self) -> None:
        """
        Data the socket takes whole does not touch Twisted's buffer.
        """
        connection = FakeConnection(accept=1000)
        sendNow(connection, b"250 2.0.0 Ok\r\n")
        self.assertEqual((connection.direct, connection.buffered), ([b"250 2.0.0 Ok\r\n"], []))

    def test_partial(self) -> None:
        """
        What the socket does not take goes through C{write}, after what it
        took.
        """
        connection = FakeConnection(accept=4)
        sendNow(connection, b"250 2.0.0 Ok\r\n")
        self.assertEqual((connection.direct, connection.buffered), ([b"250 "], [b"2.0.0 Ok\r\n"]))

    def test_error(self) -> None:
        """
        A socket error leaves the data to Twisted's write path, which meets
        the error again and closes the connection.
        """
        connection = FakeConnection(accept=ConnectionLost())
        sendNow(connection, b"221 Bye\r\n")
        self.assertEqual((connection.direct, connection.buffered), ([], [b"221 Bye\r\n"]))

    def test_somethingBuffered(self) -> None:
        """
        While Twisted holds unsent data, new data queues behind it.
        """
        for attribute, value in [("dataBuffer", b"x"), ("_tempDataBuffer", [b"x"])]:
            connection = FakeConnection(accept=1000)
            setattr(connection, attribute, value)
            sendNow(connection, b"250 Ok\r\n")
            self.assertEqual((connection.direct, connection.buffered), ([], [b"250 Ok\r\n"]), attribute)

    def test_tlsOrClosing(self) -> None:
        """
        Once TLS started, or while the connection closes, the data goes
        through C{write} (which encrypts, or drops it).
        """
        for attribute, value in [("TLS", True), ("connected", False), ("disconnecting", True)]:
            connection = FakeConnection(accept=1000)
            setattr(connection, attribute, value)
            sendNow(connection, b"250 Ok\r\n")
            self.assertEqual((connection.direct, connection.buffered), ([], [b"250 Ok\r\n"]), attribute)

    def test_onlyTCP(self) -> None:
        """
        Test transports and wrappers are written as usual.
        """
        self.assertFalse(canSendNow(StringTransport()))
        self.assertFalse(canSendNow(FakeConnection(accept=1)))


class Sender(Protocol):
    """
    Writes its factory's pieces with L{sendNow}, then closes.
    """

    def connectionMade(self) -> None:
        factory: Any = self.factory
        factory.qualified = canSendNow(self.transport)
        for piece in factory.pieces:
            sendNow(self.transport, piece)
        self.transport.loseConnection()  # type: ignore[union-attr]


class Reader(Protocol):
    def __init__(self, done: Deferred[bytes]) -> None:
        self.received: list[bytes] = []
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(b"".join(self.received))


class RealSocketTests(TestCase):
    """
    Over a real loopback connection, direct and buffered writes arrive in
    order.
    """

    def test_order(self) -> None:
        """
        Small pieces, then one the socket cannot take at once (so the rest
        is buffered), then small pieces behind it: all arrive, in order.
        """
        factory = Factory.forProtocol(Sender)
        pieces = [b"220 hello\r\n", b"250 ok\r\n", bytes(range(256)) * 40000, b"250 after\r\n", b"221 bye\r\n"]
        factory.pieces = pieces  # type: ignore[attr-defined]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        done: Deferred[bytes] = Deferred()
        client = ClientFactory()
        client.protocol = lambda: Reader(done)  # type: ignore[assignment]
        reactor.connectTCP("127.0.0.1", port.getHost().port, client)  # type: ignore[attr-defined]

        def check(received: bytes) -> None:
            self.assertTrue(factory.qualified)  # type: ignore[attr-defined]
            self.assertEqual(received, b"".join(pieces))

        return done.addCallback(check)
