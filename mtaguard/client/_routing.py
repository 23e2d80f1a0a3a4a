# -*- test-case-name: tests.test_client_routing -*-
"""
Where a recipient's mail goes next, and which servers to try there.

Two steps, as in Postfix:

  1. L{Router.route} picks a transport and next hop for a recipient, as
     C{trivial-rewrite(8)} does: C{relay_transport} for C{relay_domains},
     otherwise C{default_transport}; C{relayhost} (or the recipient domain)
     as the next hop; then C{transport_maps} may override either, searched
     in C{transport(5)}'s order.  The result is a tuple of L{Nexthop}s for
     the SMTP client, or an L{Undeliverable} (C{error:}, C{retry:}, an
     unknown transport), or a L{Discard}.

  2. L{resolve} turns one L{Nexthop} into the ordered L{Destination}s
     (host, address, port) to connect to, as C{smtp_addr.c} does: MX
     records sorted by preference, equal preferences shuffled, the
     addresses of each exchanger in the families that C{inet_protocols}
     allows and in C{smtp_address_preference} order, the domain's own
     addresses when it has no MX (RFC 5321 section 5.1, implicit MX), a
     permanent failure for a null MX (RFC 7505) and for mail that loops
     back to this host, and at most C{smtp_mx_address_limit} addresses.
     L{AttemptBudget} enforces C{smtp_mx_session_limit} while connecting.

Failures carry Postfix's enhanced status code and text (a
L{ResolutionError}): C{5.x.x} bounces the recipients, C{4.x.x} defers them.
Only a DNS answer that proves the name does not exist, a null MX, a
malformed answer or a mail loop is permanent; anything that might be a
passing problem (timeouts, SERVFAIL, REFUSED, an unexpected exception) is
temporary, because a deferral can be undone by the next queue run and a
bounce cannot.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterable,
    Optional,
    Protocol,
    Sequence,
    Union,
)

from attrs import frozen
from twisted.internet.defer import Deferred, TimeoutError as DeferTimeoutError, gatherResults
from twisted.names import dns, error as dnserror

from mtaguard.config import params

from ._tables import LookupTable, TableError, TableList, openTable

if TYPE_CHECKING:
    from mtaguard.config import ParameterView

#: Transports that the SMTP client serves (master.cf services running
#: C{smtp}); any other name in a transport table is not available here.
CLIENT_TRANSPORTS = frozenset({"smtp", "relay"})

#: Postfix's well-known ports for the services a next hop may name; other
#: names are looked up in the services database.
_SERVICES = {"smtp": 25, "submission": 587, "smtps": 465, "submissions": 465, "lmtp": 24}

#: How many MX hosts of one domain get address lookups at most: a hostile
#: zone could list thousands and have us query them all.  Postfix's
#: C{dns_rr_list_limit} default.
MX_HOST_LIMIT = 100

_HOSTNAME = re.compile(
    r"\A(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\Z"
)
_DSN = re.compile(r"\A([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|\Z)")


class RoutingError(ValueError):
    """
    A routing parameter cannot be used (a malformed next hop, an unknown
    service); raised at start-up for main.cf values.
    """


# --- Next hops -----------------------------------------------------------------


@frozen
class Nexthop:
    """
    One next-hop destination of the SMTP client.

    @ivar transport: the master.cf service (C{smtp}, C{relay}).
    @ivar host: a domain (with C{mxLookup}) or a host name or address.
    @ivar port: the TCP port.
    @ivar mxLookup: whether C{host} is a domain whose MX records are used
        (C{host}, C{host:port}) or the server itself (C{[host]:port}).
    """

    transport: str
    host: str
    port: int
    mxLookup: bool

    def __str__(self) -> str:
        """
        The next hop as Postfix writes it: C{host:port} or C{[host]:port}.
        """
        host = self.host if self.mxLookup else f"[{self.host}]"
        return f"{host}:{self.port}"


@frozen
class Undeliverable:
    """
    The route says not to deliver now: C{error:} (bounce), C{retry:}
    (defer), a transport mtaguard does not have, or a table that cannot be
    read.

    @ivar transport: the transport that was chosen.
    @ivar status: the enhanced status code; C{5.x.x} bounces.
    @ivar reason: the text for the log and the DSN.
    """

    transport: str
    status: str
    reason: str

    @property
    def permanent(self) -> bool:
        """
        Whether the recipient bounces (else it is deferred).
        """
        return self.status.startswith("5")


@frozen
class Discard:
    """
    The route is C{discard:}: the recipient is dropped, reported as sent.

    @ivar reason: the text for the log.
    """

    reason: str


#: What L{Router.route} returns: next hops for the SMTP client, or why not.
Route = Union[tuple[Nexthop, ...], Undeliverable, Discard]


def servicePort(service: str) -> int:
    """
    The TCP port for a next hop's service: a number, or a service name.

    @raise RoutingError: the name is unknown or the number out of range.
    """
    if service.isdigit():
        port = int(service)
        if 0 < port < 65536:
            return port
        raise RoutingError(f"bad port number: {service}")
    name = service.lower()
    if name in _SERVICES:
        return _SERVICES[name]
    try:
        return socket.getservbyname(name, "tcp")
    except OSError:
        raise RoutingError(f"unknown service: {service}/tcp") from None


def _literalAddress(text: str) -> Optional[str]:
    """
    The IP address in a bracketed host (C{192.0.2.1}, C{ipv6:2001:db8::1},
    C{2001:db8::1}), normalized, or L{None} for a host name.
    """
    candidate = text[5:] if text.lower().startswith("ipv6:") else text
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def parseNexthop(text: str, transport: str, defaultPort: int) -> Nexthop:
    """
    Parse one next-hop destination of the SMTP client, as C{smtp(8)} does:
    C{[host]} and C{[host]:port} connect to that host (no MX lookup; the
    form an IP address needs), C{host} and C{host:port} use the MX records
    of C{host}.  Ports may be numbers or service names.

    @param text: the destination.
    @param transport: the transport it belongs to.
    @param defaultPort: the port when none is given (C{smtp_tcp_port}).

    @raise RoutingError: the syntax is wrong.
    """
    text = text.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise RoutingError(f"missing ']' in next hop: {text}")
        inner, rest = text[1:close].strip(), text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise RoutingError(f"garbage after ']' in next hop: {text}")
        port = servicePort(rest[1:]) if rest else defaultPort
        address = _literalAddress(inner)
        host = address if address is not None else inner.lower().rstrip(".")
        if not host or (address is None and not _HOSTNAME.match(host)):
            raise RoutingError(f"bad host name in next hop: {text}")
        return Nexthop(transport, host, port, False)
    host, colon, service = text.partition(":")
    if colon and ":" in service:
        # An IPv6 address is ambiguous without brackets: is the last group
        # a port?  Postfix requires brackets here, and so do we.
        raise RoutingError(f"an IPv6 address next hop needs [brackets]: {text}")
    host = host.lower().rstrip(".")
    if not host or not _HOSTNAME.match(host):
        raise RoutingError(f"bad host name in next hop: {text}")
    port = servicePort(service) if colon else defaultPort
    return Nexthop(transport, host, port, True)


def parseNexthops(text: str, transport: str, defaultPort: int) -> tuple[Nexthop, ...]:
    """
    Parse a list of next hops separated by commas or white space (Postfix
    3.5 and later accept a list in C{relayhost} and C{transport_maps}).

    @raise RoutingError: an item is malformed, or the list is empty.
    """
    items = [item for item in re.split(r"[\s,]+", text) if item]
    if not items:
        raise RoutingError("empty next hop")
    return tuple(parseNexthop(item, transport, defaultPort) for item in items)


def _splitDsn(text: str, default: str, cls: str) -> tuple[str, str]:
    """
    Split an C{error:}/C{retry:} next hop into status and text: C{5.1.1
    User unknown} carries its own code, whose class is forced to C{cls}.
    """
    match = _DSN.match(text)
    if match is None:
        return default, text
    return f"{cls}.{match.group(2)}.{match.group(3)}", text[match.end() :]


def _domainKeys(domain: str, parentStyle: bool) -> list[str]:
    """
    The keys under which a domain and its parents are looked up: the domain,
    then each parent as C{.parent} (or as C{parent} when the parameter is
    listed in C{parent_domain_matches_subdomains}).
    """
    keys = [domain]
    if domain.startswith("["):
        # A domain literal has no parent domains.
        return keys
    labels = domain.split(".")
    for index in range(1, len(labels)):
        parent = ".".join(labels[index:])
        keys.append(parent if parentStyle else f".{parent}")
    return keys


class DomainList:
    """
    A list of domains such as C{relay_domains}: literal names (matching
    their subdomains too in the parent style), C{.domain} entries for
    subdomains, and lookup tables.
    """

    def __init__(self, items: Iterable[str], *, parameter: str, parentStyle: bool) -> None:
        """
        @param items: the parameter's items.
        @param parameter: its name, for errors.
        @param parentStyle: whether C{parameter} is listed in
            C{parent_domain_matches_subdomains}.

        @raise TableError: an item names a table that cannot be read.
        """
        self._names: set[str] = set()
        self._tables: list[LookupTable] = []
        self._parentStyle = parentStyle
        for item in items:
            if ":" in item:
                self._tables.append(openTable(item, parameter=parameter))
            elif item.startswith(("/", "!")):
                raise RoutingError(
                    f"{parameter}: {item}: file names and negation are not supported"
                )
            else:
                self._names.add(item.lower().rstrip("."))

    def __contains__(self, domain: object) -> bool:
        if not isinstance(domain, str):
            return False
        for key in _domainKeys(domain.lower(), self._parentStyle):
            if key in self._names:
                return True
            for table in self._tables:
                if table.lookup(key) is not None:
                    return True
        return False


#: How many parsed next hops a L{Router} keeps.
_PARSED_LIMIT = 1024


class Router:
    """
    Chooses transport and next hop for each recipient, as Postfix's
    C{trivial-rewrite} does for mail that leaves this host.

    Local delivery (C{mydestination}, virtual domains) is decided before the
    router is asked: every recipient it sees goes to the SMTP client unless
    C{transport_maps} says otherwise.
    """

    def __init__(
        self,
        *,
        transportMaps: TableList,
        relayhost: Sequence[str] = (),
        defaultTransport: str = "smtp",
        relayTransport: str = "relay",
        relayDomains: Optional[DomainList] = None,
        parentStyle: bool = False,
        defaultPort: int = 25,
        recipientDelimiter: str = "",
        clientTransports: frozenset[str] = CLIENT_TRANSPORTS,
    ) -> None:
        """
        @param transportMaps: the C{transport_maps} tables.
        @param relayhost: the C{relayhost} items; empty for direct delivery.
        @param defaultTransport: C{default_transport} (C{transport} or
            C{transport:nexthop}).
        @param relayTransport: C{relay_transport}, for C{relayDomains}.
        @param relayDomains: C{relay_domains}.
        @param parentStyle: whether C{transport_maps} is listed in
            C{parent_domain_matches_subdomains}.
        @param defaultPort: C{smtp_tcp_port} as a number.
        @param recipientDelimiter: C{recipient_delimiter}: its characters
            separate an address extension, looked up without it as well.
        @param clientTransports: the transports the SMTP client serves.

        @raise RoutingError: C{relayhost} or a transport's next hop is
            malformed.
        """
        self._maps = transportMaps
        self._relayhost = " ".join(relayhost)
        self._defaultTransport = defaultTransport
        self._relayTransport = relayTransport
        self._relayDomains = relayDomains
        self._parentStyle = parentStyle
        self._port = defaultPort
        self._delimiter = recipientDelimiter
        self._clients = clientTransports
        #: (next hop text, transport) -> its parsed next hops.
        self._parsed: dict[tuple[str, str], tuple[Nexthop, ...]] = {}
        # Check main.cf's next hops now, so that a typo stops the service at
        # start-up instead of deferring every message.
        for transport in (defaultTransport, relayTransport):
            channel, _, nexthop = transport.partition(":")
            if channel in clientTransports:
                parseNexthops(nexthop or self._relayhost or "example.com", channel, self._port)

    @classmethod
    def fromView(cls, view: "ParameterView", *, recipientDelimiter: str = "") -> "Router":
        """
        Build a router from a L{mtaguard.config.ParameterView}.

        @param recipientDelimiter: Postfix's C{recipient_delimiter}, which
            mtaguard does not declare yet.

        @raise TableError: a table cannot be opened (it names the parameter).
        @raise RoutingError: a next hop is malformed.
        """
        parentNames = {name.lower() for name in view[params.parent_domain_matches_subdomains]}
        return cls(
            transportMaps=TableList.fromParameter(
                view[params.transport_maps], parameter="transport_maps"
            ),
            relayhost=view[params.relayhost],
            defaultTransport=view[params.default_transport],
            relayTransport=view[params.relay_transport],
            relayDomains=DomainList(
                view[params.relay_domains],
                parameter="relay_domains",
                parentStyle="relay_domains" in parentNames,
            ),
            parentStyle="transport_maps" in parentNames,
            defaultPort=servicePort(view[params.smtp_tcp_port]),
            recipientDelimiter=recipientDelimiter,
        )

    def _transportKeys(self, recipient: str, domain: str) -> list[str]:
        """
        C{transport(5)}'s search order: the address, the address without
        its extension, the domain, its parents, then C{*}.
        """
        keys = [recipient]
        local = recipient[: -len(domain) - 1]
        if self._delimiter:
            positions = [local.find(c) for c in self._delimiter if c in local]
            if positions:
                keys.append(f"{local[: min(positions)]}@{domain}")
        keys.extend(_domainKeys(domain, self._parentStyle))
        keys.append("*")
        return keys

    def _lookup(self, recipient: str, domain: str) -> Optional[str]:
        """
        The first C{transport_maps} entry for the recipient, or L{None}.

        @raise TableError: a table cannot be read now.
        """
        if not self._maps:
            return None
        for key in self._transportKeys(recipient, domain):
            found = self._maps.lookup(key)
            if found is not None:
                return found
        return None

    def route(self, recipient: str) -> Route:
        """
        Where mail for C{recipient} goes next.

        @param recipient: C{local@domain}; a domain literal
            (C{user@[192.0.2.1]}) is delivered to that address.
        @return: the next hops for the SMTP client (several only when a list
            was configured), or L{Undeliverable}, or L{Discard}.
        @raise RoutingError: the address has no domain.
        """
        local, at, domain = recipient.rpartition("@")
        if not at or not domain:
            raise RoutingError(f"recipient without a domain: {recipient!r}")
        domain = domain.lower().rstrip(".")
        recipient = f"{local}@{domain}"
        # The recipient domain as a next hop: a domain literal is already
        # bracketed, which suppresses MX lookups as it should.
        domainHop = domain
        if self._relayDomains is not None and domain in self._relayDomains:
            transport = self._relayTransport
        else:
            transport = self._defaultTransport
        nexthop = self._relayhost or domainHop
        channel, _, configured = transport.partition(":")
        if configured:
            nexthop = configured
        try:
            found = self._lookup(recipient, domain)
        except TableError as failure:
            return Undeliverable(channel, "4.3.0", f"transport_maps lookup failure: {failure}")
        if found is not None:
            # transport(5): an empty transport keeps the transport; a
            # non-empty transport without next hop resets the next hop to
            # the recipient domain.
            newChannel, _, newNexthop = found.strip().partition(":")
            newChannel, newNexthop = newChannel.strip(), newNexthop.strip()
            if newChannel:
                channel = newChannel
                nexthop = newNexthop or domainHop
            elif newNexthop:
                nexthop = newNexthop
        return self._finish(channel, nexthop)

    def _finish(self, channel: str, nexthop: str) -> Route:
        """
        Turn the chosen transport and next hop into a route.
        """
        if channel == "error":
            status, text = _splitDsn(nexthop, "5.0.0", "5")
            return Undeliverable(channel, status, text)
        if channel == "retry":
            status, text = _splitDsn(nexthop, "4.0.0", "4")
            return Undeliverable(channel, status, text)
        if channel == "discard":
            return Discard(nexthop)
        if channel not in self._clients:
            # qmgr's wording for a transport with no master.cf service.
            return Undeliverable(channel, "4.3.0", "mail transport unavailable")
        # Every recipient of a relayhost or transport shares a handful of
        # next hops: parse each once, not once per recipient.
        key = (nexthop, channel)
        route = self._parsed.get(key)
        if route is None:
            try:
                route = parseNexthops(nexthop, channel, self._port)
            except RoutingError as problem:
                return Undeliverable(channel, "4.3.5", f"bad next hop {nexthop!r}: {problem}")
            if len(self._parsed) >= _PARSED_LIMIT:
                # transport_maps may name many next hops: bounded memory.
                self._parsed.clear()
            self._parsed[key] = route
        return route


def groupByNexthop(
    recipients: Iterable[str],
    route: Callable[[str], Route],
    recipientLimit: int = 0,
) -> list[tuple[Route, list[str]]]:
    """
    Group a message's recipients so that each group is one delivery: the
    same route (one SMTP connection for the same next hops; or one
    C{error:}, C{retry:} or C{discard:} outcome).

    @param recipients: the pending recipients, in queue order.
    @param route: L{Router.route}, or anything with its signature.
    @param recipientLimit: most recipients per group
        (C{default_destination_recipient_limit}); 0 means no limit.
    @return: C{(route, recipients)} pairs, in order of first appearance;
        recipients keep their order within a group, and an address listed
        twice is delivered once.
    """
    groups: dict[Route, list[list[str]]] = {}
    seen: set[str] = set()
    for recipient in recipients:
        if recipient in seen:
            continue
        seen.add(recipient)
        batches = groups.setdefault(route(recipient), [[]])
        if recipientLimit > 0 and len(batches[-1]) >= recipientLimit:
            batches.append([])
        batches[-1].append(recipient)
    return [(key, batch) for key, batches in groups.items() for batch in batches]


# --- Resolution ----------------------------------------------------------------


class IResolverLike(Protocol):
    """
    The part of C{twisted.internet.interfaces.IResolver} that resolution
    uses; C{twisted.names.client.Resolver} provides it.
    """

    def lookupMailExchange(self, name: str, timeout: Any = None) -> "Deferred[Any]":
        """
        MX records: a Deferred firing C{(answers, authority, additional)}.
        """

    def lookupAddress(self, name: str, timeout: Any = None) -> "Deferred[Any]":
        """
        A records, as L{lookupMailExchange}.
        """

    def lookupIPV6Address(self, name: str, timeout: Any = None) -> "Deferred[Any]":
        """
        AAAA records, as L{lookupMailExchange}.
        """


class RandomLike(Protocol):
    """
    What resolution needs from C{random.Random}.
    """

    def shuffle(self, x: list[Any]) -> None:
        """
        Shuffle C{x} in place.
        """


@frozen
class Destination:
    """
    One server address to try.

    @ivar hostname: the server's name (the MX host, or the next hop), or
        its address when it was given as one.
    @ivar address: the IP address to connect to.
    @ivar port: the TCP port.
    @ivar preference: the MX preference (0 without MX records).
    """

    hostname: str
    address: str
    port: int
    preference: int

    @property
    def family(self) -> int:
        """
        4 or 6.
        """
        return ipaddress.ip_address(self.address).version


class ResolutionError(Exception):
    """
    A next hop yields no server to try.

    @ivar status: the enhanced status code (C{5.4.4}, C{4.4.3}, ...).
    @ivar reason: Postfix's text for the log and the DSN.
    """

    def __init__(self, status: str, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}")

    @property
    def permanent(self) -> bool:
        """
        Whether the recipients bounce; otherwise they are deferred.
        """
        return self.status.startswith("5")


@frozen
class AddressPolicy:
    """
    The parameters that shape resolution.

    @ivar families: the IP versions C{inet_protocols} allows (4, 6).
    @ivar preference: C{smtp_address_preference}: C{any}, C{ipv4}, C{ipv6}.
    @ivar addressLimit: C{smtp_mx_address_limit}; 0 is no limit.
    @ivar sessionLimit: C{smtp_mx_session_limit}; 0 is no limit.
    @ivar randomize: C{smtp_randomize_addresses}.
    @ivar balance: C{smtp_balance_inet_protocols}.
    @ivar myhostname: C{myhostname}, to recognize MX records naming us.
    @ivar localAddresses: the addresses this host receives mail on
        (C{inet_interfaces} and C{proxy_interfaces}, resolved), to
        recognize MX hosts that are us.
    """

    families: frozenset[int] = frozenset({4, 6})
    preference: str = "any"
    addressLimit: int = 5
    sessionLimit: int = 2
    randomize: bool = True
    balance: bool = True
    myhostname: str = ""
    localAddresses: frozenset[str] = frozenset()

    @classmethod
    def fromView(
        cls, view: "ParameterView", *, localAddresses: Iterable[str] = (), balance: bool = True
    ) -> "AddressPolicy":
        """
        Read the policy from a L{mtaguard.config.ParameterView}.

        @param localAddresses: this host's own addresses (the expansion of
            C{inet_interfaces = all} needs the host's interfaces, which the
            caller knows).
        @param balance: Postfix's C{smtp_balance_inet_protocols}, which
            mtaguard does not declare yet.

        @raise RoutingError: C{inet_protocols} names an unknown protocol.
        """
        families: set[int] = set()
        for item in view[params.inet_protocols]:
            name = item.lower()
            if name == "all":
                families |= {4, 6}
            elif name in ("ipv4", "ipv6"):
                families.add(int(name[-1]))
            else:
                raise RoutingError(f"inet_protocols: unknown protocol {item!r}")
        return cls(
            families=frozenset(families),
            preference=view[params.smtp_address_preference],
            addressLimit=view[params.smtp_mx_address_limit],
            sessionLimit=view[params.smtp_mx_session_limit],
            randomize=view[params.smtp_randomize_addresses],
            balance=balance,
            myhostname=view[params.myhostname].lower().rstrip("."),
            localAddresses=frozenset(str(ipaddress.ip_address(a)) for a in localAddresses),
        )

    def isSelf(self, destination: Destination) -> bool:
        """
        Whether a destination is this host: one of its addresses, or an MX
        host named like it (RFC 5321 section 5.1 asks for both; Postfix
        checks addresses only, which misses a host behind NAT).
        """
        return destination.address in self.localAddresses or (
            bool(self.myhostname) and destination.hostname == self.myhostname
        )


#: Postfix's C{dns_strerror()} texts for the resolver outcomes.
_HOST_NOT_FOUND = "Host not found"
_TRY_AGAIN = "Host not found, try again"
_NO_RECOVERY = "Non-recoverable error"
_NO_DATA = "Host found but no data record of requested type"


def _nameError(name: str, qtype: str, why: str) -> str:
    """
    Postfix's C{dns_query()} text for a failed lookup.
    """
    return f"Host or domain name not found. Name service error for name={name} type={qtype}: {why}"


@frozen
class _Answer:
    """
    The outcome of one query: records, or a status and text (C{status}
    C{None} with no records is NODATA, C{"5.4.4"} is NXDOMAIN).
    """

    records: tuple[Any, ...]
    status: Optional[str] = None
    reason: str = ""


async def _query(
    resolver: IResolverLike, name: str, qtype: str, timeout: Optional[Sequence[int]]
) -> _Answer:
    """
    Run one query, turning every failure into an L{_Answer}: a lookup that
    raises must not take its siblings down with it.
    """
    method, rrtype = {
        "MX": (resolver.lookupMailExchange, dns.MX),
        "A": (resolver.lookupAddress, dns.A),
        "AAAA": (resolver.lookupIPV6Address, dns.AAAA),
    }[qtype]
    try:
        result = await (method(name, timeout) if timeout is not None else method(name))
    except (dnserror.DNSNameError, dnserror.AuthoritativeDomainError):
        return _Answer((), "5.4.4", _nameError(name, qtype, _HOST_NOT_FOUND))
    except (dnserror.DNSServerError, dnserror.DNSQueryTimeoutError, DeferTimeoutError):
        return _Answer((), "4.4.3", _nameError(name, qtype, _TRY_AGAIN))
    except (dnserror.DomainError, dnserror.ResolverError):
        # REFUSED, FORMERR, NOTIMP: Postfix bounces these (5.4.3); we defer,
        # because through a local resolver they mostly mean a broken
        # resolver, and a bounce cannot be taken back.
        return _Answer((), "4.4.3", _nameError(name, qtype, _NO_RECOVERY))
    except Exception as unexpected:
        return _Answer(
            (), "4.4.3", f"Name service error for name={name} type={qtype}: {unexpected}"
        )
    answers = result[0]
    # Only records of the asked type count: a CNAME chain comes back in the
    # same answer section, and the resolver has followed it for us.
    return _Answer(tuple(rr.payload for rr in answers if rr.type == rrtype))


def _malformed(name: str, qtype: str) -> ResolutionError:
    return ResolutionError(
        "5.4.4",
        f"Name service error for name={name} type={qtype}:"
        " Malformed or unexpected name server reply",
    )


def _combine(failures: Sequence[_Answer]) -> ResolutionError:
    """
    One error for several failed lookups: a temporary failure dominates
    permanent ones (Postfix: "a soft error dominates past and future hard
    errors"), because the missing answer might have worked.
    """
    for answer in failures:
        if answer.status is not None and answer.status.startswith("4"):
            return ResolutionError(answer.status, answer.reason)
    last = failures[-1]
    return ResolutionError(last.status or "5.4.4", last.reason)


def _literalAnswer(
    literal: str, host: str, port: int, preference: int, policy: AddressPolicy
) -> tuple[list[Destination], list[_Answer]]:
    """
    L{_hostAddresses} for a host that is an IP address: its own answer.
    """
    family = ipaddress.ip_address(literal).version
    if family in policy.families:
        return [Destination(literal, literal, port, preference)], []
    return [], [_Answer((), "4.4.4", f"{host}: address family disabled by inet_protocols")]


async def _hostAddresses(
    resolver: IResolverLike,
    host: str,
    port: int,
    preference: int,
    policy: AddressPolicy,
    timeout: Optional[Sequence[int]],
) -> tuple[list[Destination], list[_Answer]]:
    """
    The addresses of one host in the allowed families, and the failed
    lookups; an IP address is its own answer.
    """
    literal = _literalAddress(host)
    if literal is not None:
        return _literalAnswer(literal, host, port, preference, policy)
    qtypes = [qtype for family, qtype in ((4, "A"), (6, "AAAA")) if family in policy.families]
    answers = await gatherResults(
        [Deferred.fromCoroutine(_query(resolver, host, qtype, timeout)) for qtype in qtypes]
    )
    found: list[Destination] = []
    failures: list[_Answer] = []
    for qtype, answer in zip(qtypes, answers):
        if answer.status is not None:
            failures.append(answer)
        elif not answer.records:
            failures.append(_Answer((), "5.4.4", _nameError(host, qtype, _NO_DATA)))
        for record in answer.records:
            if qtype == "A":
                address = record.dottedQuad()
            else:
                address = str(ipaddress.IPv6Address(record.address))
            found.append(Destination(host, address, port, preference))
    return found, failures


def _balance(destinations: list[Destination], limit: int) -> list[Destination]:
    """
    Postfix's C{smtp_balance_inet_proto()}: when both families are present
    and the address limit would cut one of them out, keep some of each, so
    that a destination with many IPv6 addresses stays reachable from a
    host whose IPv6 does not work.
    """
    v4 = sum(1 for d in destinations if d.family == 4)
    v6 = len(destinations) - v4
    if not (v4 and v6 and v4 + v6 > limit):
        return destinations
    if v6 <= limit // 2:
        targets = {6: v6, 4: limit - v6}
    elif v4 <= limit // 2:
        targets = {4: v4, 6: limit - v4}
    else:
        first4 = 1 if destinations[0].family == 4 else 0
        targets = {4: (limit + first4) // 2}
        targets[6] = limit - targets[4]
    kept: list[Destination] = []
    for destination in destinations:
        if targets[destination.family] > 0:
            kept.append(destination)
            targets[destination.family] -= 1
    return kept


def _order(
    destinations: list[Destination], policy: AddressPolicy, random: RandomLike
) -> list[Destination]:
    """
    Shuffle (when C{smtp_randomize_addresses}), sort by preference and
    family preference, balance the families, and apply the address limit.

    Shuffling everything then sorting stably leaves a random order only
    among equal preferences: RFC 5321 section 5.1 asks for that among MX
    hosts, and it spreads load across a host's addresses as well.
    """
    ordered = list(destinations)
    if policy.randomize and len(ordered) > 1:
        random.shuffle(ordered)
    if policy.preference == "ipv4":
        ordered.sort(key=lambda d: (d.preference, d.family != 4))
    elif policy.preference == "ipv6":
        ordered.sort(key=lambda d: (d.preference, d.family != 6))
    else:
        ordered.sort(key=lambda d: d.preference)
    if policy.addressLimit > 0:
        if policy.balance:
            ordered = _balance(ordered, policy.addressLimit)
        ordered = ordered[: policy.addressLimit]
    return ordered


async def _resolveHost(
    nexthop: Nexthop,
    resolver: IResolverLike,
    policy: AddressPolicy,
    random: RandomLike,
    timeout: Optional[Sequence[int]],
) -> list[Destination]:
    """
    C{smtp_host_addr()}: the addresses of the next hop itself.
    """
    found, failures = await _hostAddresses(resolver, nexthop.host, nexthop.port, 0, policy, timeout)
    return _hostDestinations(nexthop, found, failures, policy, random)


def _hostDestinations(
    nexthop: Nexthop,
    found: list[Destination],
    failures: list[_Answer],
    policy: AddressPolicy,
    random: RandomLike,
) -> list[Destination]:
    """
    The end of L{_resolveHost}, once the host's addresses are known.
    """
    if not found:
        raise _combine(failures)
    # Postfix looks for loops on port 25 only: a content filter on
    # [127.0.0.1]:10025 is not a loop.
    if nexthop.port == 25 and any(policy.isSelf(d) for d in found):
        raise ResolutionError("5.4.6", f"mail for {nexthop.host} loops back to myself")
    return _order(found, policy, random)


async def _resolveDomain(
    nexthop: Nexthop,
    resolver: IResolverLike,
    policy: AddressPolicy,
    random: RandomLike,
    timeout: Optional[Sequence[int]],
) -> list[Destination]:
    """
    C{smtp_domain_addr()}: the addresses of the domain's mail exchangers.
    """
    domain = nexthop.host
    mx = await _query(resolver, domain, "MX", timeout)
    if mx.status is not None:
        # No fallback to the domain's addresses: a temporary failure is not
        # proof that there are no MX records (RFC 5321 section 5.1), and a
        # name that does not exist has no addresses either.
        raise ResolutionError(mx.status, mx.reason)
    if not mx.records:
        # The implicit MX: the domain is its own mail exchanger.
        return await _resolveHost(nexthop, resolver, policy, random, timeout)
    exchangers: list[tuple[int, str]] = []
    for record in mx.records:
        name = str(record.name).lower().rstrip(".")
        if not name:
            # RFC 7505; Postfix treats any null MX record this way.
            raise ResolutionError("5.1.0", f"Domain {domain} does not accept mail (nullMX)")
        if not _HOSTNAME.match(name):
            raise _malformed(domain, "MX")
        exchangers.append((record.preference, name))
    exchangers.sort(key=lambda item: item[0])
    exchangers = exchangers[:MX_HOST_LIMIT]
    results = await gatherResults(
        [
            Deferred.fromCoroutine(
                _hostAddresses(resolver, name, nexthop.port, preference, policy, timeout)
            )
            for preference, name in exchangers
        ]
    )
    found: list[Destination] = []
    failures: list[_Answer] = []
    for addresses, failed in results:
        found.extend(addresses)
        failures.extend(failed)
    if not found:
        # Postfix: "no MX host for %s has a valid address record"; the
        # reason is that of the lookups, temporary if any was.
        raise _combine(failures)
    if nexthop.port == 25:
        selves = [d.preference for d in found if policy.isSelf(d)]
        if selves:
            # We are an MX host: only better exchangers may be tried, or
            # the mail comes straight back.
            cutoff = min(selves)
            better = [d for d in found if d.preference < cutoff]
            if not better:
                if exchangers[0][0] != min(d.preference for d in found):
                    # Better exchangers exist but none has an address now.
                    raise ResolutionError("4.4.4", f"unable to find primary relay for {domain}")
                raise ResolutionError("5.4.6", f"mail for {domain} loops back to myself")
            found = better
    return _order(found, policy, random)


def resolve(
    nexthop: Nexthop,
    resolver: IResolverLike,
    policy: AddressPolicy = AddressPolicy(),
    *,
    random: Optional[RandomLike] = None,
    timeout: Optional[Sequence[int]] = None,
) -> "Deferred[list[Destination]]":
    """
    The servers to try for one next hop, best first.

    @param nexthop: where to go (L{Router.route}).
    @param resolver: a C{twisted.names} resolver.
    @param policy: the address parameters.
    @param random: source of the equal-preference shuffle; a seeded
        C{random.Random} in tests, C{random.SystemRandom()} by default.
    @param timeout: the per-query retry timeouts given to the resolver
        (C{twisted.names} defaults add up to 60 seconds).
    @return: a Deferred firing with the destinations (never empty), or
        failing with L{ResolutionError}.
    """
    if random is None:
        import random as _random

        random = _random.SystemRandom()
    if nexthop.mxLookup:
        work = _resolveDomain(nexthop, resolver, policy, random, timeout)
    else:
        work = _resolveHost(nexthop, resolver, policy, random, timeout)
    return Deferred.fromCoroutine(work)


def resolveAll(
    nexthops: Sequence[Nexthop],
    resolver: IResolverLike,
    policy: AddressPolicy = AddressPolicy(),
    *,
    random: Optional[RandomLike] = None,
    timeout: Optional[Sequence[int]] = None,
) -> "Deferred[list[Destination]]":
    """
    The servers to try for a list of next hops: each next hop's servers in
    list order, within C{smtp_mx_address_limit} overall.  A next hop that
    fails is skipped as long as another yields servers; if none does, the
    failure is temporary if any was.

    @return: a Deferred firing with the destinations, or failing with
        L{ResolutionError}.
    """

    async def work() -> list[Destination]:
        found: list[Destination] = []
        errors: list[ResolutionError] = []
        for nexthop in nexthops:
            try:
                found.extend(
                    await resolve(nexthop, resolver, policy, random=random, timeout=timeout)
                )
            except ResolutionError as problem:
                errors.append(problem)
            if policy.addressLimit > 0 and len(found) >= policy.addressLimit:
                break
        return _collect(found, errors, policy)

    return Deferred.fromCoroutine(work())


def _collect(found: list[Destination], errors: list[ResolutionError], policy: AddressPolicy) -> list[Destination]:
    """
    The end of L{resolveAll}: the destinations within the address limit,
    or the error that stands for all the next hops' failures.
    """
    if found:
        return found[: policy.addressLimit] if policy.addressLimit > 0 else found
    if not errors:
        raise ResolutionError("4.3.5", "no next hop")
    soft = [e for e in errors if not e.permanent]
    raise soft[0] if soft else errors[-1]


def resolveNow(nexthops: Sequence[Nexthop], policy: AddressPolicy = AddressPolicy()) -> Optional[list[Destination]]:
    """
    L{resolveAll} without a resolver or a L{Deferred}, when every next hop
    is an IP address in brackets (C{relayhost = [192.0.2.1]:587}): such a
    next hop is its own answer, so nothing needs to wait, and a delivery
    to it can start in the call that asked for it.

    @return: what L{resolveAll} would fire with, or L{None} when a next hop
        needs a DNS lookup (a name, or MX lookups).
    @raise ResolutionError: what L{resolveAll} would fail with.
    """
    literals = []
    for nexthop in nexthops:
        literal = None if nexthop.mxLookup else _literalAddress(nexthop.host)
        if literal is None:
            return None
        literals.append(literal)
    found: list[Destination] = []
    errors: list[ResolutionError] = []
    for nexthop, literal in zip(nexthops, literals):
        addresses, failures = _literalAnswer(literal, nexthop.host, nexthop.port, 0, policy)
        try:
            # One address: the shuffle (the only use of random) never runs.
            found.extend(_hostDestinations(nexthop, addresses, failures, policy, _NO_SHUFFLE))
        except ResolutionError as problem:
            errors.append(problem)
        if policy.addressLimit > 0 and len(found) >= policy.addressLimit:
            break
    return _collect(found, errors, policy)


class _NoShuffle:
    """
    The random source for a list of one address, which L{_order} never
    shuffles.
    """

    def shuffle(self, x: list[Any]) -> None:
        pass


_NO_SHUFFLE = _NoShuffle()


class AttemptBudget:
    """
    Which destination to try next, within C{smtp_mx_session_limit}: Postfix
    stops after that many sessions were established (a server that
    completed the EHLO and TLS handshake, then failed the delivery, counts;
    a refused connection or a failed greeting, EHLO or TLS handshake does
    not, as since Postfix 2.3), and after C{smtp_mx_address_limit}
    addresses.
    """

    def __init__(self, destinations: Sequence[Destination], policy: AddressPolicy) -> None:
        """
        @param destinations: from L{resolve}, best first.
        @param policy: the limits.
        """
        limit = policy.addressLimit
        self._pending = list(destinations[:limit] if limit > 0 else destinations)
        self._sessionLimit = policy.sessionLimit
        self._sessions = 0

    def nextDestination(self) -> Optional[Destination]:
        """
        The next destination to connect to, or L{None} when the budget is
        spent.
        """
        if self._sessionLimit > 0 and self._sessions >= self._sessionLimit:
            return None
        if not self._pending:
            return None
        return self._pending.pop(0)

    def hasMore(self) -> bool:
        """
        Whether L{nextDestination} would give another destination: if not,
        the server just tried was the final one, whose soft failures defer
        the recipients (Postfix's C{SMTP_MISC_FLAG_FINAL_SERVER}).
        """
        if self._sessionLimit > 0 and self._sessions >= self._sessionLimit:
            return False
        return bool(self._pending)

    def sessionEstablished(self) -> None:
        """
        Record that a connection to the last destination was established.
        """
        self._sessions += 1
