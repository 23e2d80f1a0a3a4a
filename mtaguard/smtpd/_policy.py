# -*- test-case-name: tests.test_smtpd_policy -*-
"""
Relay control, sans I/O: who may send mail where.

The decision follows Postfix's C{smtpd_relay_restrictions} and
C{smtpd_recipient_restrictions}: each is a list of restrictions tried in
order; the first that decides wins.  A recipient is an "authorized
destination" when its domain is local (C{mydestination}) or one we relay for
(C{relay_domains}); anything else needs C{permit_mynetworks} or
C{permit_sasl_authenticated}, so mtaguard is never an open relay by default.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Final, Iterable, Sequence, Union

import attr

from ..config import ParameterView, params
from ..smtp import _replies as replies
from ..smtp._replies import Reply

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class UnsupportedPattern(ValueError):
    """
    A network pattern mtaguard cannot evaluate (a lookup table or a file).
    """


def parseNetworks(patterns: Iterable[str]) -> tuple[tuple[Network, bool], ...]:
    """
    Parse a Postfix network list (C{mynetworks} syntax): C{a.b.c.d/n},
    C{[v6::]/n}, bare addresses, and C{!pattern} for exclusions.

    @return: (network, negated) pairs in order; the first match decides.
    @raise UnsupportedPattern: for C{/file} or C{type:table} entries.
    """
    parsed: list[tuple[Network, bool]] = []
    for pattern in patterns:
        negated = pattern.startswith("!")
        text = pattern[1:] if negated else pattern
        if text.startswith("/") or (":" in text and not text.startswith("[") and "." not in text.split(":")[0] and not _looksIPv6(text)):
            raise UnsupportedPattern(pattern)
        address, slash, prefix = text.partition("/")
        address = address.strip("[]")
        try:
            network = ipaddress.ip_network(
                f"{address}/{prefix}" if slash else address, strict=False
            )
        except ValueError:
            raise UnsupportedPattern(pattern) from None
        parsed.append((network, negated))
    return tuple(parsed)


def _looksIPv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("/")[0])
    except ValueError:
        return False
    return True


def matchNetworks(networks: Sequence[tuple[Network, bool]], address: str) -> bool:
    """
    Whether C{address} matches the list: the first matching pattern decides,
    a negated one with "no".
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for network, negated in networks:
        if ip.version == network.version and ip in network:
            return not negated
    return False


def _domains(items: Iterable[str]) -> frozenset[str]:
    return frozenset(item.lower().rstrip(".") for item in items if ":" not in item and not item.startswith("/"))


def domainOf(address: str) -> str:
    """
    The domain of an address, lower case; empty for a bare local part.
    """
    _, at, domain = address.rpartition("@")
    return domain.lower().rstrip(".") if at else ""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ClientFacts:
    """
    What the restrictions need to know about the client.
    """

    address: str
    authenticated: bool


class RelayPolicy:
    """
    The relay-control decision for one service's parameters.
    """

    def __init__(self, view: ParameterView) -> None:
        self._view = view
        self.mynetworks = parseNetworks(view[params.mynetworks])
        self._myNetworkCache: dict[str, bool] = {}
        self.localDomains = _domains(view[params.mydestination])
        self.relayDomains = _domains(view[params.relay_domains])
        self._relaySubdomains = "relay_domains" in view[params.parent_domain_matches_subdomains]
        self.relayRestrictions = view[params.smtpd_relay_restrictions]
        self.recipientRestrictions = view[params.smtpd_recipient_restrictions]
        self._relayCode = view[params.relay_domains_reject_code]
        self._rejectCode = view[params.reject_code]
        self._deferCode = view[params.defer_code]

    def isMyNetwork(self, address: str) -> bool:
        """
        Whether a client address is in C{mynetworks}.
        """
        known = self._myNetworkCache.get(address)
        if known is None:
            known = matchNetworks(self.mynetworks, address)
            if len(self._myNetworkCache) >= 4096:
                # Bounded: a flood of distinct clients cannot grow it.
                self._myNetworkCache.clear()
            self._myNetworkCache[address] = known
        return known

    def isLocal(self, recipient: str) -> bool:
        """
        Whether a recipient is delivered locally: its domain is in
        C{mydestination}, or it has no domain (C{postmaster}).
        """
        domain = domainOf(recipient)
        return not domain or domain in self.localDomains

    def isAuthorizedDestination(self, recipient: str) -> bool:
        """
        Whether mail for C{recipient} may come from anyone: a local domain,
        or a domain in C{relay_domains} (and, as Postfix's
        C{parent_domain_matches_subdomains} default says, its subdomains).
        """
        if self.isLocal(recipient):
            return True
        domain = domainOf(recipient)
        if domain in self.relayDomains:
            return True
        if self._relaySubdomains:
            parts = domain.split(".")
            return any(".".join(parts[i:]) in self.relayDomains for i in range(1, len(parts)))
        return False

    def checkRecipient(self, client: ClientFacts, recipient: str) -> Reply | None:
        """
        Apply C{smtpd_relay_restrictions} then C{smtpd_recipient_restrictions}
        to a recipient.

        @return: L{None} to accept, or the reply that refuses it.
        """
        for restrictions in (self.relayRestrictions, self.recipientRestrictions):
            verdict = self._evaluate(restrictions, client, recipient)
            if verdict is not None and verdict is not _PERMIT:
                return verdict
        if not self.relayRestrictions and not self.recipientRestrictions:
            # Postfix refuses to run like this; never relay by accident.
            return self._unauthDestination(client, recipient, self._relayCode)
        return None

    def _unauthDestination(
        self, client: ClientFacts, recipient: str, code: int
    ) -> Reply | None:
        if self.isAuthorizedDestination(recipient):
            return None
        return withCode(replies.RELAY_DENIED, code).format(recipient=recipient)

    def _evaluate(
        self, restrictions: Sequence[str], client: ClientFacts, recipient: str
    ) -> Reply | _Permit | None:
        for restriction in restrictions:
            name = restriction.lower()
            if name == "permit_mynetworks":
                if self.isMyNetwork(client.address):
                    return _PERMIT
            elif name == "permit_sasl_authenticated":
                if client.authenticated:
                    return _PERMIT
            elif name == "permit_auth_destination":
                if self.isAuthorizedDestination(recipient):
                    return _PERMIT
            elif name == "reject_unauth_destination":
                verdict = self._unauthDestination(client, recipient, self._relayCode)
                if verdict is not None:
                    return verdict
            elif name == "defer_unauth_destination":
                verdict = self._unauthDestination(client, recipient, self._relayCode - 100)
                if verdict is not None:
                    return verdict
            elif name == "permit":
                return _PERMIT
            elif name == "reject":
                return withCode(ACCESS_DENIED, self._rejectCode).format(recipient=recipient)
            elif name in ("defer", "defer_if_permit"):
                return withCode(ACCESS_DENIED, self._deferCode).format(recipient=recipient)
            else:
                return SERVER_CONFIGURATION_ERROR
        return None


class _Permit(enum.Enum):
    """
    The verdict of a restriction that accepts: later restrictions of the
    same list are not evaluated.
    """

    PERMIT = "permit"


_PERMIT: Final = _Permit.PERMIT

#: The reply of the C{reject} and C{defer} restrictions (code replaced).
ACCESS_DENIED = Reply(554, "5.7.1", "<{recipient}>: Recipient address rejected: Access denied")
#: An unknown restriction: Postfix defers rather than guess.
SERVER_CONFIGURATION_ERROR = Reply(451, "4.3.5", "Server configuration error")


def withCode(reply: Reply, code: int) -> Reply:
    """
    A reply with another code; the enhanced status code's class follows
    (C{5.7.1} becomes C{4.7.1} for a 4xx code), as Postfix does.
    """
    enhanced = reply.enhanced
    if enhanced:
        enhanced = f"{code // 100}{enhanced[1:]}"
    return attr.evolve(reply, code=code, enhanced=enhanced)


def softened(reply: Reply) -> Reply:
    """
    C{soft_bounce = yes}: a 5xx reply becomes 4xx, enhanced code included.
    """
    if reply.code // 100 != 5:
        return reply
    return withCode(reply, reply.code - 100)
