"""
Tests for L{mtaguard.proxyprotocol}: the sans-I/O PROXY header parser
(tables plus hypothesis properties) and L{ProxyHeaderFactory}, driven with a
L{StringTransport} and a L{Clock}; one test does a real STARTTLS handshake
over loopback through the wrapper.
"""

from __future__ import annotations

import ipaddress
import os
import smtplib
import socket
import ssl
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor, threads
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, ITCPTransport, ITLSTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mtaguard import _certificate, tls
from mtaguard.config import ParameterView, parseConfiguration
from mtaguard.proxyprotocol import (
    HEADER_MAX_LENGTH,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    InvalidProxyHeader,
    ProxiedTransport,
    ProxyHeader,
    ProxyHeaderFactory,
    ProxyHeaderParser,
)
from mtaguard.smtpd import ServerContext, SMTPServerFactory
from mtaguard.testing import MemoryQueue

V1 = b"PROXY TCP4 198.51.100.7 192.0.2.2 4711 25\r\n"
V1_HEADER = ProxyHeader(
    version=1, clientAddress="198.51.100.7", clientPort=4711,
    serverAddress="192.0.2.2", serverPort=25,
)


def v2(
    command: int = 0x21,
    family: int = 0x11,
    body: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """
    A version 2 header; by default PROXY, TCP4, 198.51.100.7:4711 to
    192.0.2.2:25.
    """
    if body is None:
        body = (
            ipaddress.IPv4Address("198.51.100.7").packed
            + ipaddress.IPv4Address("192.0.2.2").packed
            + struct.pack("!HH", 4711, 25)
        )
    if length is None:
        length = len(body)
    return V2_SIGNATURE + struct.pack("!BBH", command, family, length) + body


def v2TCP6(client: str, server: str, cport: int, sport: int, tlvs: bytes = b"") -> bytes:
    body = (
        ipaddress.IPv6Address(client).packed
        + ipaddress.IPv6Address(server).packed
        + struct.pack("!HH", cport, sport)
        + tlvs
    )
    return v2(family=0x21, body=body)


def parse(data: bytes) -> Any:
    """
    Feed C{data} in one piece: the result, or the raised error's reason.
    """
    try:
        return ProxyHeaderParser().feed(data)
    except InvalidProxyHeader as error:
        return error.reason


class V1ParserTests(SynchronousTestCase):
    """
    Version 1 (text) headers.
    """

    def test_tcp4(self) -> None:
        """
        A TCP4 line gives the client and server addresses and ports; the
        bytes after the CRLF are left over for the protocol inside.
        """
        self.assertEqual(parse(V1 + b"EHLO x\r\n"), (V1_HEADER, b"EHLO x\r\n"))

    def test_tcp6Canonical(self) -> None:
        """
        TCP6 addresses come out in canonical (compressed, lower-case) form,
        and an IPv4-mapped address as plain IPv4, as Postfix logs them.
        """
        header, rest = parse(
            b"PROXY TCP6 FC:00:00:00:1:2:3:4 ::ffff:192.0.2.2 123 321\r\n"
        )
        self.assertEqual(
            header,
            ProxyHeader(version=1, clientAddress="fc::1:2:3:4", clientPort=123,
                        serverAddress="192.0.2.2", serverPort=321),
        )
        self.assertEqual(rest, b"")
        self.assertEqual(header.clientPeer(), IPv6Address("TCP", "fc::1:2:3:4", 123))
        self.assertEqual(header.serverHost(), IPv4Address("TCP", "192.0.2.2", 321))

    def test_longestHeader(self) -> None:
        """
        The longest line mtaguard accepts (TCP6 with the longest addresses
        and ports: 104 bytes, within the specification's 107) is accepted.
        """
        address = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
        line = f"PROXY TCP6 {address} {address} 65535 65535\r\n".encode()
        self.assertLessEqual(len(line), V1_MAX_LENGTH)
        header, _ = parse(line)
        self.assertEqual((header.clientAddress, header.serverPort), (address, 65535))

    def test_portBounds(self) -> None:
        """
        Ports 0 and 65535 are valid.
        """
        header, _ = parse(b"PROXY TCP4 1.2.3.4 4.3.2.1 0 65535\r\n")
        self.assertEqual((header.clientPort, header.serverPort), (0, 65535))

    def test_errors(self) -> None:
        """
        Each malformed line is refused with Postfix's reason.
        """
        cases = [
            (b"PROXY UNKNOWN\r\n", "bad or missing protocol type"),
            (b"PROXY UNKNOWN 1.2.3.4 4.3.2.1 1 2\r\n", "bad or missing protocol type"),
            (b"PROXY tcp4 1.2.3.4 4.3.2.1 1 2\r\n", "bad or missing protocol type"),
            (b"PROXY BLAH\r\n", "bad or missing protocol type"),
            (b"PROXY \r\n", "bad or missing protocol type"),
            (b"PROXY TCP4\r\n", "bad or missing client address"),
            (b"PROXY TCP4 1.2.3.4\r\n", "bad or missing server address"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1\r\n", "bad or missing client port"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1 123\r\n", "bad or missing server port"),
            (b"PROXY TCP4 01.02.03.04 4.3.2.1 1 2\r\n", "bad or missing client address"),
            (b"PROXY TCP4 1.2.3.256 4.3.2.1 1 2\r\n", "bad or missing client address"),
            (b"PROXY TCP4 1.2.3 4.3.2.1 1 2\r\n", "bad or missing client address"),
            (b"PROXY TCP4 ::ffff:1.2.3.4 4.3.2.1 1 2\r\n", "bad or missing client address"),
            (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "bad or missing server address"),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad or missing client address"),
            (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad or missing client address"),
            (b"PROXY TCP6 ::1 fc::1::2 1 2\r\n", "bad or missing server address"),
            (b"PROXY TCP4  1.2.3.4 4.3.2.1 1 2\r\n", "bad or missing client address"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1 123456 321\r\n", "bad or missing client port"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1 65536 321\r\n", "bad or missing client port"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1 0123 321\r\n", "bad or missing client port"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1 +1 321\r\n", "bad or missing client port"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1 123 0321\r\n", "bad or missing server port"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1 123 321 extra\r\n", "bad or missing server port"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1 123 321 \r\n", "bad or missing server port"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1 123 321\n", "missing protocol header terminator"),
            (b"PROXY TCP4 1.2.3.4 4.3.2.1 123 3\r21\r\n", "bad or missing server port"),
            (b"PROXY TCP4 1.2.3.\xff 4.3.2.1 1 2\r\n", "bad or missing client address"),
            (b"PROXY " + b"x" * 200, "missing protocol header terminator"),
            (b"PROXY " + b"x" * 100 + b"\r\n", "missing protocol header terminator"),
        ]
        for data, reason in cases:
            self.assertEqual((data, parse(data)), (data, reason))

    def test_needMore(self) -> None:
        """
        A beginning of a header waits for more.
        """
        for data in [b"", b"P", b"PROX", b"PROXY ", b"PROXY TCP4 1.2.3.4 4.3.2.1 1 2\r",
                     b"PROXY " + b"x" * (V1_MAX_LENGTH - 7)]:
            self.assertIsNone(ProxyHeaderParser().feed(data), data)

    def test_errorCarriesInput(self) -> None:
        """
        The error holds the bytes received, for the log line.
        """
        with self.assertRaises(InvalidProxyHeader) as raised:
            ProxyHeaderParser().feed(b"EHLO nope\r\n")
        self.assertEqual(
            (raised.exception.reason, raised.exception.data),
            ("short protocol header", b"EHLO nope\r\n"),
        )

    def test_junk(self) -> None:
        """
        Text that is not a header: C{short protocol header} under 16
        bytes, C{unrecognized protocol header} from 16 on, as Postfix
        reports one read.
        """
        self.assertEqual(parse(b"EHLO nope\r\n"), "short protocol header")
        self.assertEqual(parse(b"PROXY\r\n"), "short protocol header")
        self.assertEqual(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), "unrecognized protocol header")

    def test_feedAfterHeader(self) -> None:
        """
        Once the header is out, the parser takes no more bytes: they belong
        to the protocol inside.
        """
        parser = ProxyHeaderParser()
        parser.feed(V1)
        self.assertRaises(RuntimeError, parser.feed, b"x")

    def test_errorIsSticky(self) -> None:
        """
        After an error, more bytes raise again.
        """
        parser = ProxyHeaderParser()
        self.assertRaises(InvalidProxyHeader, parser.feed, b"HELO")
        self.assertRaises(InvalidProxyHeader, parser.feed, V1)


class V2ParserTests(SynchronousTestCase):
    """
    Version 2 (binary) headers.
    """

    def test_tcp4(self) -> None:
        """
        A PROXY command over TCP4.
        """
        header, rest = parse(v2() + b"EHLO x\r\n")
        self.assertEqual(header, ProxyHeader(
            version=2, clientAddress="198.51.100.7", clientPort=4711,
            serverAddress="192.0.2.2", serverPort=25,
        ))
        self.assertEqual(rest, b"EHLO x\r\n")

    def test_tcp6WithTLVs(self) -> None:
        """
        TCP6, with TLVs after the addresses: they are skipped, and what
        follows the announced length is left over.
        """
        tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00"
        header, rest = parse(v2TCP6("2001:db8::7", "2001:db8::2", 4711, 25, tlvs) + b"rest")
        self.assertEqual(header, ProxyHeader(
            version=2, clientAddress="2001:db8::7", clientPort=4711,
            serverAddress="2001:db8::2", serverPort=25,
        ))
        self.assertEqual(rest, b"rest")

    def test_tcp6Mapped(self) -> None:
        """
        An IPv4-mapped IPv6 address becomes plain IPv4.
        """
        header, _ = parse(v2TCP6("::ffff:198.51.100.7", "::1", 1, 2))
        self.assertEqual((header.clientAddress, header.serverAddress), ("198.51.100.7", "::1"))

    def test_local(self) -> None:
        """
        A LOCAL command (a health check by the proxy) says: use the
        connection's own addresses.  Its address block, if any, is skipped.
        """
        self.assertEqual(parse(v2(command=0x20, family=0x00, body=b"")),
                         (ProxyHeader(version=2, local=True), b""))
        self.assertEqual(parse(v2(command=0x20) + b"x"),
                         (ProxyHeader(version=2, local=True), b"x"))

    def test_largestHeader(self) -> None:
        """
        A header of exactly 536 bytes (Postfix's limit) is accepted.
        """
        body = v2()[16:]
        body += b"\xee" + struct.pack("!H", HEADER_MAX_LENGTH - 16 - len(body) - 3)
        body += b"\x00" * (HEADER_MAX_LENGTH - 16 - len(body))
        data = v2(body=body)
        self.assertEqual(len(data), HEADER_MAX_LENGTH)
        header, rest = parse(data)
        self.assertEqual((header.clientAddress, rest), ("198.51.100.7", b""))

    def test_errors(self) -> None:
        """
        Each malformed header is refused with Postfix's reason.
        """
        cases = [
            (v2(command=0x11), "unrecognized protocol version"),
            (v2(command=0x31), "unrecognized protocol version"),
            (v2(command=0x22), "bad command in proxy header"),
            (v2(command=0x2F), "bad command in proxy header"),
            (v2(family=0x12), "unsupported network protocol"),
            (v2(family=0x00, body=b""), "unsupported network protocol"),
            (v2(family=0x31, body=b"\x00" * 216), "unsupported network protocol"),
            (v2(family=0x11, body=b"\x00" * 11), "short address field"),
            (v2(family=0x21, body=b"\x00" * 35), "short address field"),
            (v2(length=HEADER_MAX_LENGTH - 15, body=b""), "short version 2 protocol header"),
            (b"\r\n\r\n\x00\r\nQUIT!" + b"\x00" * 10, "unrecognized protocol header"),
            (b"\r\n\r\nX", "short protocol header"),
        ]
        for data, reason in cases:
            self.assertEqual((data, parse(data)), (data, reason))

    def test_needMore(self) -> None:
        """
        A beginning of a v2 header waits for more, and never holds more
        than Postfix's 536 bytes while it does.
        """
        for data in [b"\r", V2_SIGNATURE[:11], V2_SIGNATURE, v2()[:15], v2()[:-1],
                     v2(length=HEADER_MAX_LENGTH - 16, body=b"\x00" * 519)]:
            self.assertIsNone(ProxyHeaderParser().feed(data), data)


# -- properties ---------------------------------------------------------------

ports = st.integers(min_value=0, max_value=65535)
ipv4 = st.integers(min_value=0, max_value=2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(min_value=0, max_value=2**128 - 1).map(
    lambda n: str(ipaddress.IPv6Address(n))
).filter(lambda a: ipaddress.IPv6Address(a).ipv4_mapped is None)


@st.composite
def validHeaders(draw: Any) -> tuple[bytes, ProxyHeader]:
    """
    A valid header (v1 or v2, IPv4 or IPv6) and what it means.
    """
    six = draw(st.booleans())
    client, server = draw(ipv6 if six else ipv4), draw(ipv6 if six else ipv4)
    cport, sport = draw(ports), draw(ports)
    if draw(st.booleans()):
        proto = "TCP6" if six else "TCP4"
        data = f"PROXY {proto} {client} {server} {cport} {sport}\r\n".encode()
        version = 1
    else:
        tlvs = draw(st.binary(max_size=40))
        body = (
            ipaddress.ip_address(client).packed + ipaddress.ip_address(server).packed
            + struct.pack("!HH", cport, sport) + tlvs
        )
        data = v2(family=0x21 if six else 0x11, body=body)
        version = 2
    return data, ProxyHeader(version=version, clientAddress=client, clientPort=cport,
                             serverAddress=server, serverPort=sport)


def outcome(*pieces: bytes) -> Any:
    """
    Feed C{pieces} one after another: C{("header", header, leftover)},
    C{("more",)} or C{("error", reason, data, piecesUsed)}.  After a
    header, later pieces count as leftover, as the wrapper passes them on.
    """
    parser = ProxyHeaderParser()
    for index, piece in enumerate(pieces):
        try:
            result = parser.feed(piece)
        except InvalidProxyHeader as error:
            return ("error", error.reason, error.data, index)
        if result is not None:
            header, leftover = result
            return ("header", header, leftover + b"".join(pieces[index + 1:]))
        assert len(parser._buffer) < HEADER_MAX_LENGTH
    return ("more",)


def mutated(data: bytes, position: int, byte: int) -> bytes:
    position %= len(data)
    return data[:position] + bytes([byte]) + data[position + 1:]


class ParserPropertyTests(SynchronousTestCase):
    """
    Properties over generated input.
    """

    @given(validHeaders(), st.binary(max_size=30))
    @settings(max_examples=200, deadline=None)
    def test_everySplit(self, case: tuple[bytes, ProxyHeader], trailing: bytes) -> None:
        """
        A valid header split at any byte position, or fed a byte at a time,
        gives the same header and the same leftover as in one piece.
        """
        data, expected = case
        whole = outcome(data + trailing)
        self.assertEqual(whole, ("header", expected, trailing))
        stream = data + trailing
        for split in range(len(stream) + 1):
            self.assertEqual(outcome(stream[:split], stream[split:]), whole)
        self.assertEqual(outcome(*[bytes([b]) for b in stream]), whole)

    @given(st.one_of(
        st.binary(max_size=600),
        st.builds(lambda t: b"PROXY " + t, st.binary(max_size=120)),
        st.builds(lambda t: V2_SIGNATURE + t, st.binary(max_size=120)),
        st.builds(lambda c, p, b: mutated(c[0], p, b), validHeaders(),
                  st.integers(min_value=0), st.integers(0, 255)),
    ), st.integers(min_value=0))
    @settings(max_examples=500, deadline=None)
    def test_junk(self, data: bytes, split: int) -> None:
        """
        Arbitrary bytes raise nothing but L{InvalidProxyHeader}, and a
        split changes nothing unless the first piece alone was already
        refused (then the bytes so far decided, as in Postfix's one read).
        """
        whole = outcome(data)
        split %= len(data) + 1
        pieces = outcome(data[:split], data[split:])
        if pieces[0] == "error" and pieces[3] == 0:
            self.assertEqual(whole[0], "error")
        else:
            self.assertEqual(pieces[:3], whole[:3])


# -- the wrapper ------------------------------------------------------------------


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """
    An inner protocol that records what happens to it.
    """

    def __init__(self, addr: Any) -> None:
        self.addr = addr
        self.events: list[Any] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.events.append(("made", self.transport.getPeer(), self.transport.getHost()))

    def dataReceived(self, data: bytes) -> None:
        self.events.append(("data", data))

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.events.append(("lost", reason.type))

    def handshakeCompleted(self) -> None:
        self.events.append(("handshake",))


class RecordingFactory(Factory):
    def __init__(self, refuse: bool = False) -> None:
        self.built: list[Recorder] = []
        self.refuse = refuse
        self.started = 0
        self.stopped = 0

    def buildProtocol(self, addr: Any) -> Recorder | None:  # type: ignore[override]
        if self.refuse:
            return None
        protocol = Recorder(addr)
        self.built.append(protocol)
        return protocol

    def startFactory(self) -> None:
        self.started += 1

    def stopFactory(self) -> None:
        self.stopped += 1


PROXY_PEER = IPv4Address("TCP", "127.0.0.1", 50000)
PROXY_HOST = IPv4Address("TCP", "127.0.0.1", 2525)


class Connection:
    """
    One wrapped connection on a StringTransport, with a Clock.
    """

    def __init__(self, inner: Factory | None = None, timeout: float = 5.0) -> None:
        self.clock = Clock()
        self.inner = inner if inner is not None else RecordingFactory()
        self.factory = ProxyHeaderFactory(self.inner, clock=self.clock, timeout=timeout, grace=3.0)
        self.protocol = self.factory.buildProtocol(PROXY_PEER)
        self.transport = StringTransport(hostAddress=PROXY_HOST, peerAddress=PROXY_PEER)
        self.protocol.makeConnection(self.transport)

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))


def warnings(events: list[LogEvent]) -> list[str]:
    return [formatEvent(event) for event in events if event["log_level"].name == "warn"]


class WrapperTests(SynchronousTestCase):
    """
    L{ProxyHeaderFactory} with a StringTransport and a Clock.
    """

    def test_innerWaitsForHeader(self) -> None:
        """
        The inner protocol is built and connected only once the header is
        complete, with the proxied client as its address; getPeer and
        getHost answer the proxied addresses; the bytes behind the header
        follow.
        """
        c = Connection()
        c.protocol.dataReceived(V1[:5])
        c.protocol.dataReceived(V1[5:20])
        self.assertEqual(c.inner.built, [])
        c.protocol.dataReceived(V1[20:] + b"EHLO early\r\n")
        [inner] = c.inner.built
        client = IPv4Address("TCP", "198.51.100.7", 4711)
        server = IPv4Address("TCP", "192.0.2.2", 25)
        self.assertEqual(inner.addr, client)
        self.assertEqual(inner.events, [("made", client, server), ("data", b"EHLO early\r\n")])
        c.protocol.dataReceived(b"more")
        self.assertEqual(inner.events[-1], ("data", b"more"))
        self.assertEqual(c.transport.value(), b"")
        self.assertEqual(c.clock.getDelayedCalls(), [])

    def test_byteAtATime(self) -> None:
        """
        A v2 header that arrives one byte per read works.
        """
        c = Connection()
        for byte in v2TCP6("2001:db8::7", "2001:db8::2", 1, 25):
            c.protocol.dataReceived(bytes([byte]))
        [inner] = c.inner.built
        self.assertEqual(inner.addr, IPv6Address("TCP", "2001:db8::7", 1))

    def test_everySplit(self) -> None:
        """
        Split anywhere between two reads, a v1 or v2 header followed by
        client bytes gives the inner protocol the same address, the same
        events and the same bytes, and leaves no timer behind.
        """
        for stream in (V1 + b"EHLO a\r\n", v2TCP6("2001:db8::7", "::1", 9, 25, b"\x04\0\0") + b"Q"):
            expected = None
            for split in range(len(stream) + 1):
                c = Connection()
                c.protocol.dataReceived(stream[:split])
                c.protocol.dataReceived(stream[split:])
                [inner] = c.inner.built
                made = inner.events[0]
                received = b"".join(event[1] for event in inner.events[1:])
                if expected is None:
                    expected = (inner.addr, made, received)
                self.assertEqual((inner.addr, made, received), expected, split)
                self.assertEqual(c.clock.getDelayedCalls(), [])
            assert expected is not None
            self.assertEqual(expected[2], stream[-8:] if stream.startswith(b"PROXY") else b"Q")

    def test_local(self) -> None:
        """
        A v2 LOCAL header keeps the connection's own addresses.
        """
        c = Connection()
        c.protocol.dataReceived(v2(command=0x20, family=0, body=b""))
        [inner] = c.inner.built
        self.assertEqual(inner.events, [("made", PROXY_PEER, PROXY_HOST)])

    def test_transportView(self) -> None:
        """
        The inner protocol's transport passes writes, producers and
        closing to the real one.
        """
        c = Connection()
        c.protocol.dataReceived(V1)
        view = c.inner.built[0].transport
        assert isinstance(view, ProxiedTransport)
        self.assertTrue(verifyObject(ITCPTransport, view))
        self.assertTrue(ITLSTransport.providedBy(view))
        view.write(b"220 hi\r\n")
        view.writeSequence([b"a", b"b"])
        self.assertEqual(c.transport.value(), b"220 hi\r\nab")
        producer = object()
        view.registerProducer(producer, True)
        self.assertIs(c.transport.producer, producer)
        view.unregisterProducer()
        self.assertIsNone(c.transport.producer)
        view.pauseProducing()
        self.assertEqual(c.transport.producerState, "paused")
        view.resumeProducing()
        self.assertEqual(c.transport.producerState, "producing")
        self.assertFalse(view.disconnecting)
        view.loseConnection()
        self.assertTrue(c.transport.disconnecting)
        view.abortConnection()
        self.assertTrue(c.transport.disconnected)
        started: list[Any] = []
        c.transport.startTLS = started.append  # type: ignore[attr-defined]
        view.startTLS("creator")
        self.assertEqual(started, ["creator"])

    def test_connectionLostForwarded(self) -> None:
        """
        connectionLost reaches the inner protocol, and no timer is left.
        """
        c = Connection()
        c.protocol.dataReceived(V1)
        c.lose()
        self.assertEqual(c.inner.built[0].events[-1], ("lost", ConnectionDone))
        self.assertEqual(c.clock.getDelayedCalls(), [])

    def test_handshakeForwarded(self) -> None:
        """
        handshakeCompleted (from TLS started under the wrapper) reaches an
        inner IHandshakeListener.
        """
        c = Connection()
        c.protocol.dataReceived(V1)
        c.protocol.handshakeCompleted()
        self.assertEqual(c.inner.built[0].events[-1], ("handshake",))

    def test_invalidHeader(self) -> None:
        """
        An invalid header: Postfix's warning with the escaped input, 421,
        close, abort after the grace period; the inner factory never hears
        of it, and later bytes are ignored.
        """
        c = Connection()
        with capturedLogs() as events:
            c.protocol.dataReceived(b"EHLO nope\r\n")
        self.assertEqual(
            warnings(events), ["warning: haproxy read: short protocol header: EHLO nope\\r\\n"]
        )
        self.assertEqual(c.transport.value(), b"421 4.3.2 No system resources\r\n")
        self.assertTrue(c.transport.disconnecting)
        self.assertFalse(c.transport.disconnected)
        c.protocol.dataReceived(V1)
        c.clock.advance(3)
        self.assertTrue(c.transport.disconnected)
        self.assertEqual(c.inner.built, [])
        with capturedLogs() as events:
            c.lose()
        self.assertEqual(warnings(events), [])

    def test_escapedInput(self) -> None:
        """
        Peer bytes in the warning are escaped as Postfix does.
        """
        c = Connection()
        with capturedLogs() as events:
            c.protocol.dataReceived(b"PROXY TCP4 1.2.3.\xff 4.3.2.1 1 2\r\n")
        self.assertEqual(warnings(events), [
            "warning: haproxy read: bad or missing client address:"
            " PROXY TCP4 1.2.3.\\377 4.3.2.1 1 2\\r\\n"
        ])
        self.assertEqual(events[0]["reason"], "bad or missing client address")

    def test_timeout(self) -> None:
        """
        No complete header within the timeout: C{time limit exceeded},
        421, close; the abort follows after the grace period and a late
        connectionLost cancels nothing twice.
        """
        c = Connection(timeout=5)
        c.protocol.dataReceived(b"PROXY TCP4")
        c.clock.advance(4.9)
        self.assertEqual(c.transport.value(), b"")
        with capturedLogs() as events:
            c.clock.advance(0.1)
        self.assertEqual(warnings(events), ["warning: haproxy read: time limit exceeded"])
        self.assertEqual(c.transport.value(), b"421 4.3.2 No system resources\r\n")
        self.assertTrue(c.transport.disconnecting)
        c.lose()
        self.assertEqual(c.clock.getDelayedCalls(), [])
        self.assertEqual(c.inner.built, [])

    def test_eof(self) -> None:
        """
        The peer hangs up before a complete header: C{EOF}.
        """
        c = Connection()
        c.protocol.dataReceived(b"PROXY TCP4")
        with capturedLogs() as events:
            c.lose()
        self.assertEqual(warnings(events), ["warning: haproxy read: EOF"])
        self.assertEqual(c.clock.getDelayedCalls(), [])

    def test_innerRefuses(self) -> None:
        """
        An inner factory that returns None closes the connection.
        """
        c = Connection(RecordingFactory(refuse=True))
        c.protocol.dataReceived(V1)
        self.assertTrue(c.transport.disconnecting)
        c.lose()

    def test_factoryLifecycle(self) -> None:
        """
        Starting and stopping the wrapper starts and stops the inner
        factory.
        """
        inner = RecordingFactory()
        factory = ProxyHeaderFactory(inner, clock=Clock(), timeout=1)
        factory.doStart()
        factory.doStop()
        self.assertEqual((inner.started, inner.stopped), (1, 1))

    def test_badTimeout(self) -> None:
        """
        The timeout must be positive.
        """
        self.assertRaises(ValueError, ProxyHeaderFactory, RecordingFactory(), clock=Clock(),
                          timeout=0)

    def test_logNamespace(self) -> None:
        """
        Warnings go to the logger the caller passes (the service's own).
        """
        from twisted.logger import Logger

        clock = Clock()
        factory = ProxyHeaderFactory(RecordingFactory(), clock=clock, timeout=1,
                                     log=Logger(namespace="mtaguard.postscreen"))
        protocol = factory.buildProtocol(PROXY_PEER)
        protocol.makeConnection(StringTransport())
        with capturedLogs() as events:
            clock.advance(1)
        self.assertEqual(events[0]["log_namespace"], "mtaguard.postscreen")


# -- with the SMTP server ----------------------------------------------------------

SETTINGS = {
    "compatibility_level": "3.6",
    "myhostname": "mx.example.org",
    "mydomain": "example.org",
    "mynetworks": "127.0.0.0/8",
}


def smtpFactory(**extra: str) -> tuple[SMTPServerFactory, MemoryQueue, Clock]:
    settings = dict(SETTINGS)
    settings.update(extra)
    clock = Clock()
    queue = MemoryQueue()
    context = ServerContext(view=ParameterView(settings), queue=queue, clock=clock)
    return SMTPServerFactory(context, processLimit=0), queue, clock


class SMTPServerTests(SynchronousTestCase):
    """
    The smtpd behind the wrapper sees the proxied client everywhere.
    """

    def connect(
        self, factory: SMTPServerFactory, clock: Clock, header: bytes
    ) -> tuple[Protocol, StringTransport]:
        wrapper = ProxyHeaderFactory(factory, clock=clock, timeout=5)
        protocol = wrapper.buildProtocol(PROXY_PEER)
        transport = StringTransport(hostAddress=PROXY_HOST, peerAddress=PROXY_PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(header)
        return protocol, transport

    def test_greetingAfterHeader(self) -> None:
        """
        The 220 greeting is sent only after the header, and smtpd logs the
        proxied client.
        """
        factory, _, clock = smtpFactory()
        wrapper = ProxyHeaderFactory(factory, clock=clock, timeout=5)
        protocol = wrapper.buildProtocol(PROXY_PEER)
        transport = StringTransport(hostAddress=PROXY_HOST, peerAddress=PROXY_PEER)
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"")
        with capturedLogs() as events:
            protocol.dataReceived(V1)
        self.assertTrue(transport.value().startswith(b"220 mx.example.org"))
        self.assertIn("connect from unknown[198.51.100.7]", [formatEvent(e) for e in events])

    def test_mynetworksUsesProxiedClient(self) -> None:
        """
        The proxy itself is in mynetworks, the client is not: relaying is
        refused for the client, and the reject line names it.
        """
        factory, _, clock = smtpFactory()
        protocol, transport = self.connect(factory, clock, V1)
        with capturedLogs() as events:
            protocol.dataReceived(
                b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\n"
                b"RCPT TO:<victim@remote.example>\r\n"
            )
        self.assertIn(b"454 4.7.1 <victim@remote.example>: Relay access denied", transport.value())
        lines = [formatEvent(e) for e in events]
        self.assertTrue(
            any(line.startswith("NOQUEUE: reject: RCPT from unknown[198.51.100.7]: 454")
                for line in lines), lines)

    def test_perClientLimitUsesProxiedClient(self) -> None:
        """
        smtpd_client_connection_count_limit counts proxied clients, not
        the proxy: a second session from one client is refused while
        another client through the same proxy is served.
        """
        factory, _, clock = smtpFactory(smtpd_client_connection_count_limit="1")
        _, first = self.connect(factory, clock, V1)
        self.assertTrue(first.value().startswith(b"220 "))
        with capturedLogs() as events:
            _, second = self.connect(factory, clock, V1)
        self.assertEqual(
            second.value(),
            b"421 4.7.0 mx.example.org Error: too many connections from 198.51.100.7\r\n",
        )
        self.assertIn(
            "warning: Connection concurrency limit exceeded: 2 from unknown[198.51.100.7]"
            " for service smtp",
            [formatEvent(e) for e in events],
        )
        _, other = self.connect(
            factory, clock, b"PROXY TCP4 198.51.100.8 192.0.2.2 4712 25\r\n"
        )
        self.assertTrue(other.value().startswith(b"220 "))


# -- STARTTLS through the wrapper, for real -------------------------------------------


def serverCreator(directory: str) -> Any:
    key, cert = _certificate.makeSelfSigned("mx.example.org", 1, ecdsa=True)
    path = os.path.join(directory, "chain.pem")
    with open(path, "wb") as handle:
        handle.write(key + cert)
    mainCf = f"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {path}\n"
    result = tls.serverTLS(parseConfiguration(directory, mainCf, "").view(), reactor=Clock())
    assert result.creator is not None, result.warnings
    return result.creator


class _HeaderFirst(smtplib.SMTP):
    """
    smtplib that sends a PROXY header as soon as the socket is connected,
    before the greeting (and, for SMTP_SSL below, before the handshake).
    """

    proxyHeader = V1

    def _get_socket(self, host: Any, port: Any, timeout: Any) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        sock.sendall(self.proxyHeader)
        return sock


class _HeaderFirstSSL(smtplib.SMTP_SSL, _HeaderFirst):
    pass


def _clientContext() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class LoopbackTLSTests(TestCase):
    """
    A real TLS handshake over loopback through the wrapper: STARTTLS (the
    smtpd calls startTLS on the transport view) and TLS wrapper mode (the
    header comes before the handshake).
    """

    timeout = 30

    def listen(self, wrapperMode: bool) -> tuple[int, MemoryQueue]:
        directory = self.mktemp()
        os.makedirs(directory)
        creator = serverCreator(directory)
        settings = dict(SETTINGS, smtpd_tls_loglevel="1")
        queue = MemoryQueue()
        context = ServerContext(view=ParameterView(settings), queue=queue, clock=reactor,
                                tlsCreator=creator, wrapperMode=wrapperMode)
        inner: Any = SMTPServerFactory(context, processLimit=0)
        if wrapperMode:
            inner = TLSMemoryBIOFactory(creator, False, inner)
        factory = ProxyHeaderFactory(inner, clock=reactor, timeout=5)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        return port.getHost().port, queue

    def logged(self) -> list[str]:
        lines: list[str] = []

        def observe(event: LogEvent) -> None:
            lines.append(formatEvent(event))

        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return lines

    def test_startTLS(self) -> None:
        """
        PROXY header, EHLO, STARTTLS, a real handshake, EHLO again and a
        message: the message is queued from the proxied client over TLS.
        """
        port, queue = self.listen(wrapperMode=False)
        lines = self.logged()

        def client() -> None:
            with _HeaderFirst("127.0.0.1", port, local_hostname="client.example",
                              timeout=10) as smtp:
                smtp.ehlo()
                smtp.starttls(context=_clientContext())
                smtp.ehlo()
                smtp.sendmail("a@client.example", ["postmaster@mx.example.org"],
                              b"Subject: tls\r\n\r\nhi\r\n")

        def check(_: object) -> None:
            [message] = queue.committed
            self.assertEqual(message.envelope.clientAddress, "198.51.100.7")
            self.assertTrue(any(
                line.startswith("Anonymous TLS connection established from unknown[198.51.100.7]")
                for line in lines), lines)

        return threads.deferToThread(client).addCallback(check)

    def test_wrapperMode(self) -> None:
        """
        With TLS wrapper mode (smtps) the header comes first, then the
        handshake.
        """
        port, queue = self.listen(wrapperMode=True)

        def client() -> None:
            with _HeaderFirstSSL("127.0.0.1", port, local_hostname="client.example",
                                 timeout=10, context=_clientContext()) as smtp:
                smtp.ehlo()
                smtp.sendmail("a@client.example", ["postmaster@mx.example.org"],
                              b"Subject: smtps\r\n\r\nhi\r\n")

        def check(_: object) -> None:
            [message] = queue.committed
            self.assertEqual(message.envelope.clientAddress, "198.51.100.7")

        return threads.deferToThread(client).addCallback(check)
