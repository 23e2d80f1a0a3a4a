# -*- test-case-name: tests.test_postscreen_access -*-
"""
C{postscreen_access_list}, sans I/O: the permanent allow and deny list that
postscreen consults before any test.

The list is read left to right; the first element that decides wins:

  - C{permit_mynetworks}: allow a client in C{mynetworks};
  - C{permit}, C{reject}: decide for every client;
  - C{dunno}: stop and run the tests (also what an exhausted list means);
  - C{cidr:/path}: a table of C{network result} lines whose result is itself
    one of C{permit}, C{reject}, C{dunno} (inside a table, C{dunno} goes on
    with the next list element, as Postfix does).
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Callable, Iterable, Sequence, Union

import attr

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class Access(enum.Enum):
    """
    The access list's decision.
    """

    PERMIT = "permit"
    REJECT = "reject"
    DUNNO = "dunno"


class AccessListError(ValueError):
    """
    C{postscreen_access_list} or one of its tables cannot be used; the
    message names the element (and file and line for a table).
    """


_RESULTS = {access.value: access for access in Access}


def _network(text: str) -> Network:
    # cidr_table(5) writes IPv6 networks with or without brackets.
    address, slash, prefix = text.partition("/")
    address = address.strip("[]")
    return ipaddress.ip_network(f"{address}/{prefix}" if slash else address, strict=True)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class CIDRTable:
    """
    A C{cidr:} table: the first matching network gives the result.

    @ivar name: C{cidr:/path}, for messages.
    @ivar rules: (network, result) pairs in file order.
    """

    name: str
    rules: tuple[tuple[Network, Access], ...]

    @classmethod
    def parse(cls, name: str, text: str) -> "CIDRTable":
        """
        Parse the text of a cidr_table(5) file: C{network/prefix result} or a
        bare address, C{#} comments, blank lines, indented continuation
        lines.  Postfix's C{if}/C{endif} blocks are refused rather than
        silently misread.

        @raise AccessListError: naming the line of the first bad rule.
        """
        rules: list[tuple[Network, Access]] = []
        logical: list[tuple[int, str]] = []
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if line[0].isspace() and logical:
                first, previous = logical[-1]
                logical[-1] = (first, f"{previous} {stripped}")
            else:
                logical.append((number, stripped))
        for number, line in logical:
            fields = line.split(None, 1)
            if fields[0].lower() in ("if", "endif"):
                raise AccessListError(f"{name}, line {number}: if/endif blocks are not supported")
            if len(fields) != 2:
                raise AccessListError(f"{name}, line {number}: expected \"network result\": {line!r}")
            try:
                network = _network(fields[0])
            except ValueError as error:
                raise AccessListError(f"{name}, line {number}: bad network {fields[0]!r}: {error}") from None
            result = _RESULTS.get(fields[1].strip().lower())
            if result is None:
                raise AccessListError(
                    f"{name}, line {number}: result must be permit, reject or dunno, not {fields[1]!r}"
                )
            rules.append((network, result))
        return cls(name, tuple(rules))

    def lookup(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Access | None:
        """
        The result of the first rule whose network holds C{address}.
        """
        for network, result in self.rules:
            if address.version == network.version and address in network:
                return result
        return None


Element = Union[Access, str, CIDRTable]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AccessList:
    """
    A parsed C{postscreen_access_list}.
    """

    elements: tuple[Element, ...]

    @classmethod
    def parse(cls, items: Iterable[str], *, readFile: Callable[[str], str]) -> "AccessList":
        """
        Parse the parameter's items.

        @param readFile: reads a table file (injected, so tests need no disk).
        @raise AccessListError: for an unknown element or a bad table.
        """
        elements: list[Element] = []
        for item in items:
            lowered = item.lower()
            if lowered == "permit_mynetworks":
                elements.append("permit_mynetworks")
            elif lowered in _RESULTS:
                elements.append(_RESULTS[lowered])
            elif lowered.startswith("cidr:"):
                path = item[len("cidr:") :]
                try:
                    text = readFile(path)
                except OSError as error:
                    raise AccessListError(f"{item}: cannot read: {error.strerror}") from None
                elements.append(CIDRTable.parse(item, text))
            else:
                raise AccessListError(
                    f"postscreen_access_list: unsupported element {item!r}"
                    " (use permit_mynetworks, permit, reject, dunno or cidr:/path)"
                )
        return cls(tuple(elements))

    def decide(self, address: str, isMyNetwork: Callable[[str], bool]) -> Access:
        """
        The decision for a client address.

        @param isMyNetwork: whether an address is in C{mynetworks}.
        """
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return Access.DUNNO
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for element in self.elements:
            if element == "permit_mynetworks":
                if isMyNetwork(address):
                    return Access.PERMIT
            elif isinstance(element, Access):
                return element
            elif isinstance(element, CIDRTable):
                result = element.lookup(ip)
                if result is not None and result is not Access.DUNNO:
                    return result
        return Access.DUNNO


__all__: Sequence[str] = ["Access", "AccessList", "AccessListError", "CIDRTable"]
