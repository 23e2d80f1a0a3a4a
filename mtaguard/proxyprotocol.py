# -*- test-case-name: tests.test_proxyprotocol -*-
"""
The PROXY protocol (versions 1 and 2) spoken by an upstream load balancer
such as haproxy, read the way Postfix's C{smtpd_upstream_proxy_protocol =
haproxy} and C{postscreen_upstream_proxy_protocol = haproxy} read it
(C{global/haproxy_srvr.c}).

Two layers:

  - L{ProxyHeaderParser}, sans-I/O: fed bytes, it answers "need more"
    (C{None}), a L{ProxyHeader} with the bytes that follow it, or raises
    L{InvalidProxyHeader} carrying Postfix's reason text.

  - L{ProxyHeaderFactory}, a Twisted wrapping factory: its protocol reads
    the header under a deadline and only then builds the wrapped protocol
    (with the I{proxied} client address) and connects it to a transport
    view whose C{getPeer()}/C{getHost()} are the proxied addresses.  So the
    wrapped protocol's C{connectionMade}, its greeting and every policy
    decision see the real client, never the proxy.

Twisted's own C{twisted.protocols.haproxy} is not used: it connects the
wrapped protocol before the header arrives (twisted#12501), drops a header
split across reads (twisted#8287) and has no header timeout.

Reuse (postscreen)::

    factory = ProxyHeaderFactory(
        innerFactory,
        clock=reactor,
        timeout=view[params.postscreen_upstream_proxy_timeout],
        log=Logger(namespace="mtaguard.postscreen"),
    )
    endpoint.listen(factory)
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, Optional, Union, cast

import attr
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
    ITLSTransport,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .deadline import hangUp
from .smtp._escape import escapeForLog

__all__ = [
    "HEADER_MAX_LENGTH",
    "InvalidProxyHeader",
    "NO_RESOURCES_REPLY",
    "ProxiedTransport",
    "ProxyHeader",
    "ProxyHeaderFactory",
    "ProxyHeaderParser",
    "ProxyHeaderProtocol",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
]

#: The longest version 1 header, CRLF included (the PROXY protocol
#: specification's 107 bytes).
V1_MAX_LENGTH = 107

#: Postfix's C{HAPROXY_HEADER_MAX_LEN}: it never reads more than this for a
#: header, so a version 2 header announcing more is refused (as "short
#: version 2 protocol header", which is what Postfix then reports).
HEADER_MAX_LENGTH = 536

#: The 12 bytes that open every version 2 header.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

_V1_PREFIX = b"PROXY "
_V2_FIXED = 16
_V2_TCP4 = 0x11
_V2_TCP6 = 0x21
_V2_TCP4_LENGTH = 12
_V2_TCP6_LENGTH = 36

#: What Postfix replies when the header cannot be read.
NO_RESOURCES_REPLY = b"421 4.3.2 No system resources\r\n"


class InvalidProxyHeader(Exception):
    """
    The peer sent something that is not an acceptable PROXY header.

    @ivar reason: Postfix's text for the problem, e.g. C{"bad or missing
        client address"}.
    @ivar data: the bytes received so far (at most L{HEADER_MAX_LENGTH}),
        for the log line; escape them before logging.
    """

    def __init__(self, reason: str, data: bytes) -> None:
        Exception.__init__(self, reason, data)
        self.reason = reason
        self.data = data


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ProxyHeader:
    """
    A parsed PROXY header.

    @ivar version: 1 (text) or 2 (binary).
    @ivar local: a version 2 C{LOCAL} command (a health check by the proxy
        itself): use the connection's own addresses; the address fields are
        then empty.
    @ivar clientAddress: the client's address as text, canonical (IPv6
        compressed and lower case; an IPv4-mapped IPv6 address as plain
        IPv4, as Postfix does).
    @ivar clientPort: the client's port.
    @ivar serverAddress: the address the client connected to, canonical.
    @ivar serverPort: the port the client connected to.
    """

    version: int
    local: bool = False
    clientAddress: str = ""
    clientPort: int = 0
    serverAddress: str = ""
    serverPort: int = 0

    def clientPeer(self) -> Union[IPv4Address, IPv6Address]:
        """
        The client as a Twisted TCP address.

        @raise ValueError: for a C{LOCAL} header, which names no client.
        """
        return _twistedAddress(self.clientAddress, self.clientPort)

    def serverHost(self) -> Union[IPv4Address, IPv6Address]:
        """
        The server side as a Twisted TCP address.

        @raise ValueError: for a C{LOCAL} header, which names no server.
        """
        return _twistedAddress(self.serverAddress, self.serverPort)


def _twistedAddress(address: str, port: int) -> Union[IPv4Address, IPv6Address]:
    if not address:
        raise ValueError("a LOCAL PROXY header names no addresses")
    if ":" in address:
        return IPv6Address("TCP", address, port)
    return IPv4Address("TCP", address, port)


def _canonical(address: Union[ipaddress.IPv4Address, ipaddress.IPv6Address]) -> str:
    # Postfix turns ::ffff:1.2.3.4 into 1.2.3.4, so that mynetworks and
    # per-client limits see one client under one name.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _textAddress(token: bytes, family: str) -> Optional[str]:
    """
    A version 1 address token in canonical form, or C{None} if it is not
    strictly an address of C{family}.
    """
    if not token or len(token) > 45 or not token.isascii():
        return None
    text = token.decode("ascii")
    try:
        if family == "TCP4":
            # ipaddress refuses leading zeros, octal, hex and short forms.
            return _canonical(ipaddress.IPv4Address(text))
        if "%" in text:
            # A scope zone means nothing on the proxy's far side.
            return None
        return _canonical(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def _textPort(token: bytes) -> Optional[int]:
    """
    A version 1 port token: 0 to 65535 in ASCII digits, no sign, no
    leading zero (Postfix's C{valid_hostport}).
    """
    if not token or len(token) > 5 or not all(0x30 <= byte <= 0x39 for byte in token):
        return None
    if len(token) > 1 and token[0] == 0x30:
        return None
    port = int(token)
    return port if port <= 65535 else None


class ProxyHeaderParser:
    """
    Reads one PROXY header, version 1 or 2, from bytes fed in pieces.

    The outcome depends only on the bytes fed so far, not on how they were
    split: the parser waits while they are a possible beginning of a header
    and decides as soon as they are not.  While it waits it holds fewer
    than L{HEADER_MAX_LENGTH} bytes.

    Like Postfix, version 1 C{UNKNOWN} is refused (it would sidestep every
    address-based control), version 2 TLVs are skipped, and a version 2
    header for anything but TCP over IPv4 or IPv6 is refused.  Text that is
    no header at all is reported as Postfix does for one read: C{short
    protocol header} when fewer than 16 bytes have arrived, C{unrecognized
    protocol header} otherwise.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._done = False
        self._error: Optional[InvalidProxyHeader] = None

    def feed(self, data: bytes) -> Optional[tuple[ProxyHeader, bytes]]:
        """
        Add bytes received from the peer.

        @return: C{None} while more bytes are needed, then the header and
            the bytes that followed it (which belong to the protocol
            inside).
        @raise InvalidProxyHeader: when the bytes cannot begin a valid
            header; feeding more raises again.
        @raise RuntimeError: if called again after a header was returned.
        """
        if self._done:
            raise RuntimeError("the PROXY header was already parsed")
        if self._error is not None:
            raise self._error
        # Never keep more than could be needed: the excess is either junk
        # (the header is decided within HEADER_MAX_LENGTH bytes) or the
        # inner protocol's, returned as leftover.
        buffer = self._buffer + data
        try:
            result = _parse(buffer)
        except InvalidProxyHeader as error:
            self._buffer = b""
            self._error = error
            raise
        if result is None:
            self._buffer = buffer
            return None
        self._done = True
        self._buffer = b""
        header, length = result
        return header, buffer[length:]


def _parse(buffer: bytes) -> Optional[tuple[ProxyHeader, int]]:
    """
    Decide on C{buffer}: C{None} if it may still become a header, else the
    header and its length.

    @raise InvalidProxyHeader: if it cannot.
    """
    if buffer.startswith(_V1_PREFIX):
        return _parseV1(buffer)
    if len(buffer) < len(_V1_PREFIX) and _V1_PREFIX.startswith(buffer):
        return None
    if len(buffer) < len(V2_SIGNATURE) and V2_SIGNATURE.startswith(buffer):
        return None
    return _parseV2(buffer)


def _fail(reason: str, buffer: bytes) -> InvalidProxyHeader:
    return InvalidProxyHeader(reason, buffer[:HEADER_MAX_LENGTH])


def _parseV1(buffer: bytes) -> Optional[tuple[ProxyHeader, int]]:
    end = buffer.find(b"\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(buffer) < V1_MAX_LENGTH:
            return None
        raise _fail("missing protocol header terminator", buffer)
    if buffer[end - 1 : end] != b"\r":
        # The specification ends the line with CRLF; a bare LF is a client
        # that is not a PROXY implementation.
        raise _fail("missing protocol header terminator", buffer)
    # maxsplit keeps anything after the server port inside the last token,
    # which then fails as a port: trailing fields are refused.
    tokens = buffer[: end - 1].split(b" ", 5)
    tokens += [b""] * (6 - len(tokens))
    _, proto, client, server, clientPort, serverPort = tokens
    if proto not in (b"TCP4", b"TCP6"):
        raise _fail("bad or missing protocol type", buffer)
    family = proto.decode("ascii")
    clientAddress = _textAddress(client, family)
    if clientAddress is None:
        raise _fail("bad or missing client address", buffer)
    serverAddress = _textAddress(server, family)
    if serverAddress is None:
        raise _fail("bad or missing server address", buffer)
    cport = _textPort(clientPort)
    if cport is None:
        raise _fail("bad or missing client port", buffer)
    sport = _textPort(serverPort)
    if sport is None:
        raise _fail("bad or missing server port", buffer)
    header = ProxyHeader(
        version=1,
        clientAddress=clientAddress,
        clientPort=cport,
        serverAddress=serverAddress,
        serverPort=sport,
    )
    return header, end + 1


def _parseV2(buffer: bytes) -> Optional[tuple[ProxyHeader, int]]:
    if not buffer.startswith(V2_SIGNATURE):
        if len(buffer) < _V2_FIXED:
            raise _fail("short protocol header", buffer)
        raise _fail("unrecognized protocol header", buffer)
    if len(buffer) < _V2_FIXED:
        return None
    versionCommand, family, length = struct.unpack_from("!BBH", buffer, len(V2_SIGNATURE))
    if versionCommand & 0xF0 != 0x20:
        raise _fail("unrecognized protocol version", buffer)
    total = _V2_FIXED + length
    if total > HEADER_MAX_LENGTH:
        # Postfix reads at most HEADER_MAX_LENGTH bytes, so for it such a
        # header never arrives in full.
        raise _fail("short version 2 protocol header", buffer)
    if len(buffer) < total:
        return None
    command = versionCommand & 0x0F
    if command == 0x0:
        return ProxyHeader(version=2, local=True), total
    if command != 0x1:
        raise _fail("bad command in proxy header", buffer)
    body = buffer[_V2_FIXED:total]
    if family == _V2_TCP4:
        if length < _V2_TCP4_LENGTH:
            raise _fail("short address field", buffer)
        source: Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
        source = ipaddress.IPv4Address(body[0:4])
        destination: Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
        destination = ipaddress.IPv4Address(body[4:8])
        ports = body[8:12]
    elif family == _V2_TCP6:
        if length < _V2_TCP6_LENGTH:
            raise _fail("short address field", buffer)
        source = ipaddress.IPv6Address(body[0:16])
        destination = ipaddress.IPv6Address(body[16:32])
        ports = body[32:36]
    else:
        # UNSPEC, UDP and UNIX sockets: nothing an SMTP server can use.
        raise _fail("unsupported network protocol", buffer)
    clientPort, serverPort = struct.unpack("!HH", ports)
    header = ProxyHeader(
        version=2,
        clientAddress=_canonical(source),
        clientPort=clientPort,
        serverAddress=_canonical(destination),
        serverPort=serverPort,
    )
    # TLVs after the addresses are skipped, as Postfix does.
    return header, total


# -- the Twisted wrapper ------------------------------------------------------


@implementer(ITCPTransport, ITLSTransport, IPushProducer)
class ProxiedTransport:
    """
    The transport the wrapped protocol sees: the real connection, except
    that C{getPeer()} and C{getHost()} answer the addresses from the PROXY
    header.

    Everything else is the real transport's: writes, producers, closing,
    C{startTLS} (Twisted then layers TLS under the L{ProxyHeaderProtocol},
    which passes the decrypted bytes and C{handshakeCompleted} on), and
    after TLS has started C{getHandle()} and C{getPeerCertificate()}.

    @ivar transport: the real transport.
    """

    def __init__(
        self,
        transport: ITransport,
        peer: Union[IPv4Address, IPv6Address],
        host: Union[IPv4Address, IPv6Address],
    ) -> None:
        self.transport = transport
        self._peer = peer
        self._host = host

    def getPeer(self) -> Union[IPv4Address, IPv6Address]:
        return self._peer

    def getHost(self) -> Union[IPv4Address, IPv6Address]:
        return self._host

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        self.transport.writeSequence(data)

    def loseConnection(self) -> None:
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        # ITransport lacks abortConnection; every TCP and TLS transport
        # (and the test transports) has it.
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)  # type: ignore[attr-defined]

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()  # type: ignore[attr-defined]

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        self.transport.stopProducing()  # type: ignore[attr-defined]

    def startTLS(self, contextFactory: Any) -> None:
        self.transport.startTLS(contextFactory)  # type: ignore[attr-defined]

    def loseWriteConnection(self) -> None:
        self.transport.loseWriteConnection()  # type: ignore[attr-defined]

    def getTcpNoDelay(self) -> bool:
        return bool(self.transport.getTcpNoDelay())  # type: ignore[attr-defined]

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.transport.setTcpNoDelay(enabled)  # type: ignore[attr-defined]

    def getTcpKeepAlive(self) -> bool:
        return bool(self.transport.getTcpKeepAlive())  # type: ignore[attr-defined]

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.transport.setTcpKeepAlive(enabled)  # type: ignore[attr-defined]

    def getHandle(self) -> Any:
        # Looked up at call time: startTLS replaces the real transport's
        # getHandle with the TLS layer's, whose handle is the SSL.Connection.
        return self.transport.getHandle()  # type: ignore[attr-defined]

    def getPeerCertificate(self) -> Any:
        return self.transport.getPeerCertificate()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        # State attributes of the real transport (disconnecting, connected,
        # TLS, ...) that callers read directly.
        return getattr(self.transport, name)


@implementer(IHandshakeListener)
class ProxyHeaderProtocol(Protocol):
    """
    Reads the PROXY header, then becomes a pass-through to the protocol the
    wrapped factory builds for the proxied client.

    Built by L{ProxyHeaderFactory}; see there for the contract.

    @ivar wrappedProtocol: the inner protocol, once the header is read.
    @ivar header: the parsed header, once read.
    """

    wrappedProtocol: Optional[IProtocol] = None
    header: Optional[ProxyHeader] = None

    def __init__(self, factory: "ProxyHeaderFactory") -> None:
        self._owner = factory
        self._parser = ProxyHeaderParser()
        self._timer: Optional[IDelayedCall] = None
        self._abortCall: Optional[IDelayedCall] = None
        self._failed = False

    # -- before the header ---------------------------------------------------

    def connectionMade(self) -> None:
        self._timer = self._owner.clock.callLater(self._owner.timeout, self._timedOut)

    def dataReceived(self, data: bytes) -> None:
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._failed:
            return
        try:
            result = self._parser.feed(data)
        except InvalidProxyHeader as error:
            self._owner.log.warn(
                "warning: haproxy read: {reason}: {escaped}",
                reason=error.reason,
                escaped=escapeForLog(error.data, HEADER_MAX_LENGTH),
                peer=self._realPeer(),
            )
            self._fail()
            return
        if result is None:
            return
        header, leftover = result
        self._cancelTimer()
        self._connectInner(header, leftover)

    def _connectInner(self, header: ProxyHeader, leftover: bytes) -> None:
        self.header = header
        transport = self.transport
        assert transport is not None
        peer: Union[IPv4Address, IPv6Address]
        host: Union[IPv4Address, IPv6Address]
        if header.local:
            # A TCP listener's addresses are IPv4Address/IPv6Address.
            peer = cast(Union[IPv4Address, IPv6Address], transport.getPeer())
            host = cast(Union[IPv4Address, IPv6Address], transport.getHost())
        else:
            peer, host = header.clientPeer(), header.serverHost()
        inner = self._owner.wrappedFactory.buildProtocol(peer)
        if inner is None:
            # The inner factory refused the client without a protocol.
            transport.loseConnection()
            return
        self.wrappedProtocol = inner
        inner.makeConnection(ProxiedTransport(transport, peer, host))
        if leftover:
            # Bytes the client sent right behind the header (an early
            # EHLO, a TLS ClientHello) belong to the inner protocol, which
            # judges them itself (pre-greet, pipelining).
            inner.dataReceived(leftover)

    def _timedOut(self) -> None:
        self._timer = None
        self._owner.log.warn(
            "warning: haproxy read: time limit exceeded", peer=self._realPeer()
        )
        self._fail()

    def _fail(self) -> None:
        self._failed = True
        self._cancelTimer()
        assert self.transport is not None
        self._abortCall = hangUp(
            self.transport, self._owner.clock, NO_RESOURCES_REPLY, grace=self._owner.grace
        )

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _realPeer(self) -> str:
        peer = self.transport.getPeer() if self.transport is not None else None
        host = getattr(peer, "host", None)
        return f"[{host}]:{getattr(peer, 'port', '?')}" if host is not None else str(peer)

    # -- after the header ----------------------------------------------------

    def handshakeCompleted(self) -> None:
        """
        TLS (started by the inner protocol through L{ProxiedTransport}) is
        up: tell the inner protocol, if it listens.
        """
        # Any: IProtocol and IHandshakeListener are unrelated interfaces,
        # so mypy would call the narrowed branch unreachable.
        inner: Any = self.wrappedProtocol
        if IHandshakeListener.providedBy(inner):
            inner.handshakeCompleted()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self._cancelTimer()
        if self._abortCall is not None and self._abortCall.active():
            self._abortCall.cancel()
        self._abortCall = None
        if self.wrappedProtocol is not None:
            inner, self.wrappedProtocol = self.wrappedProtocol, None
            inner.connectionLost(reason)
        elif not self._failed and self.header is None:
            self._owner.log.warn("warning: haproxy read: EOF", peer=self._realPeer())


class ProxyHeaderFactory(Factory[ProxyHeaderProtocol]):
    """
    Wraps a protocol factory so that each connection first sends a PROXY
    header (v1 or v2), as from haproxy with C{send-proxy} /
    C{send-proxy-v2}.

    For each connection, only once the header has been read:

      1. C{wrappedFactory.buildProtocol(peer)} is called with the proxied
         client address (an L{IPv4Address} or L{IPv6Address}, C{'TCP'}),
         so per-client counting in the wrapped factory sees the real
         client; a v2 C{LOCAL} header keeps the connection's own addresses;
      2. the protocol is connected to a L{ProxiedTransport} whose
         C{getPeer()}/C{getHost()} are the proxied addresses;
      3. the bytes that followed the header are passed to its
         C{dataReceived}.

    If the header is invalid, or has not arrived C{timeout} seconds after
    the connection was accepted, or the peer hangs up first, one of
    Postfix's warnings is logged (C{warning: haproxy read: <reason>:
    <escaped input>}, C{... time limit exceeded}, C{... EOF}), C{421 4.3.2
    No system resources} is written and the connection is closed, aborted
    after C{grace} seconds if the peer does not read.  The wrapped factory
    never hears of such connections.

    For TLS wrapper mode (smtps) put this factory outermost, around the
    C{TLSMemoryBIOFactory}: the proxy sends its header before the TLS
    handshake.

    @ivar wrappedFactory: the factory for the real protocol.
    @ivar clock: schedules the header deadline and the abort.
    @ivar timeout: seconds allowed for the header.
    @ivar log: where the warnings go; pass the service's own logger (e.g.
        C{Logger(namespace="mtaguard.smtpd")}) so they appear under it.
    @ivar grace: seconds between the 421 and aborting a peer that does not
        read.
    """

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        *,
        clock: IReactorTime,
        timeout: float,
        log: Optional[Logger] = None,
        grace: float = 10.0,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.wrappedFactory = wrappedFactory
        self.clock = clock
        self.timeout = timeout
        self.log = log if log is not None else Logger(namespace="mtaguard.proxyprotocol")
        self.grace = grace

    def logPrefix(self) -> str:
        prefix = getattr(self.wrappedFactory, "logPrefix", None)
        inner = prefix() if callable(prefix) else self.wrappedFactory.__class__.__name__
        return f"{inner} (PROXY)"

    def startFactory(self) -> None:
        # Called once, when the first port starts listening with us.
        self.wrappedFactory.doStart()

    def stopFactory(self) -> None:
        self.wrappedFactory.doStop()

    def buildProtocol(self, addr: Optional[IAddress]) -> ProxyHeaderProtocol:
        protocol = ProxyHeaderProtocol(self)
        protocol.factory = self
        return protocol
