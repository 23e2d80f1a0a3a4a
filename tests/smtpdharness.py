"""
A deterministic SMTP server under test: a StringTransport, a Clock and an
in-memory queue.  Shared by the smtpd test modules.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mtaguard.config import ParameterView
from mtaguard.smtpd import ServerContext, SMTPServerProtocol
from mtaguard.testing import MemoryQueue

BASE = {
    "compatibility_level": "3.6",
    "myhostname": "mx.example.org",
    "mydomain": "example.org",
    "mynetworks": "127.0.0.0/8 [::1]/128",
}


class Harness:
    """
    One server session: write client bytes with L{send}, read what the
    server wrote with L{take}.
    """

    def __init__(self, client: str = "203.0.113.9", **values: str) -> None:
        settings = dict(BASE)
        settings.update(values)
        self.view = ParameterView(settings)
        self.clock = Clock()
        self.queue = MemoryQueue()
        self.queuedIDs: list[str] = []
        self.context = ServerContext(
            view=self.view,
            queue=self.queue,
            clock=self.clock,
            queued=lambda queueID, recipients: self.queuedIDs.append(queueID),
        )
        self.protocol = SMTPServerProtocol(self.context)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", client, 40000))
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def take(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    def lines(self) -> list[bytes]:
        return self.take().splitlines()

    def lose(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def ehlo(self) -> None:
        self.take()
        self.send(b"EHLO client.example\r\n")
        self.take()

    def transaction(self, rcpt: bytes = b"postmaster@mx.example.org") -> None:
        self.send(b"MAIL FROM:<a@client.example>\r\nRCPT TO:<" + rcpt + b">\r\n")
        self.take()


