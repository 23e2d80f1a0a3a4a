"""
A tiny authoritative DNS server for real-peer tests, run as a child process:

    python -m tests.dnsstub PORT NAME=ADDRESS [NAME=ADDRESS ...]

It answers A queries for the listed names on 127.0.0.1:PORT (UDP and TCP),
NODATA for other types of a listed name and NXDOMAIN for every other name,
then prints C{ready} on standard output.  mtaguard resolves next-hop names
through DNS only (C{mtaguard_dns_servers}), never the hosts file, as
Postfix's C{smtp_host_lookup = dns} does; this stands in for the zone of a
test next hop such as C{mx.next.example}.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer
from twisted.names import dns, error
from twisted.names.common import ResolverBase
from twisted.names.server import DNSServerFactory


class StaticAuthority(ResolverBase):
    """
    Answers from a fixed table of names and IPv4 addresses.
    """

    def __init__(self, table: dict[str, str]) -> None:
        ResolverBase.__init__(self)
        self._table = {name.lower().rstrip("."): address for name, address in table.items()}

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any) -> "defer.Deferred[Any]":
        key = name.decode("ascii", "replace").lower().rstrip(".")
        address = self._table.get(key)
        if address is None:
            return defer.fail(error.DomainError(name))
        answers = []
        if type in (dns.A, dns.ALL_RECORDS):
            answers.append(
                dns.RRHeader(name, dns.A, dns.IN, 60, dns.Record_A(address, 60), auth=True)
            )
        return defer.succeed((answers, [], []))


def main(argv: list[str]) -> None:
    from twisted.internet import reactor

    port = int(argv[0])
    table = dict(item.split("=", 1) for item in argv[1:])
    factory = DNSServerFactory(authorities=[StaticAuthority(table)])
    reactor.listenUDP(port, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    reactor.callWhenRunning(lambda: print("ready", flush=True))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
