# -*- test-case-name: tests.test_resolver -*-
"""
The DNS resolver MX, address and DNSBL lookups use: C{twisted.names}, asking
the servers of C{mtaguard_dns_servers} or of C{/etc/resolv.conf}, never the
hosts file (Postfix's C{smtp_host_lookup = dns} and its DNSBL client do not
read it either).

The C{twisted.names} resolver is created on first use, on the reactor the
service runs on, so that building a service tree (in a test, or to check a
configuration) schedules nothing; L{SystemResolver.close} cancels the
periodic re-read of C{/etc/resolv.conf}.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional, Sequence

from twisted.internet.defer import Deferred

from .config import ConfigurationError, ParameterView, params

#: Where the system's DNS servers are listed.
RESOLV_CONF = "/etc/resolv.conf"


def parseServers(items: Sequence[str]) -> list[tuple[str, int]]:
    """
    Parse C{mtaguard_dns_servers}: C{address} or C{[address]:port} items.

    @raise ConfigurationError: for a malformed item.
    """
    servers: list[tuple[str, int]] = []
    for item in items:
        host, port = item, "53"
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else "53"
        try:
            ipaddress.ip_address(host)
            number = int(port)
            if not 0 < number < 65536:
                raise ValueError(port)
        except ValueError:
            raise ConfigurationError(
                f"mtaguard_dns_servers: expected address or [address]:port, got {item!r}"
            ) from None
        servers.append((host, number))
    return servers


class SystemResolver:
    """
    A C{twisted.names} client resolver, made on first use.
    """

    def __init__(self, reactor: Any, servers: Sequence[tuple[str, int]] = (), resolvConf: str = RESOLV_CONF) -> None:
        self._reactor = reactor
        self._servers = list(servers)
        self._resolvConf = resolvConf
        self._resolver: Optional[Any] = None

    @classmethod
    def fromView(cls, view: ParameterView, reactor: Any) -> "SystemResolver":
        """
        The resolver C{mtaguard_dns_servers} asks for.

        @raise ConfigurationError: for a malformed server.
        """
        return cls(reactor, parseServers(view[params.mtaguard_dns_servers]))

    def _get(self) -> Any:
        if self._resolver is None:
            from twisted.names.client import Resolver

            if self._servers:
                self._resolver = Resolver(servers=self._servers, reactor=self._reactor)
            else:
                self._resolver = Resolver(resolv=self._resolvConf, reactor=self._reactor)
        return self._resolver

    def lookupMailExchange(self, name: str, timeout: Any = None) -> Deferred[Any]:
        result: Deferred[Any] = self._get().lookupMailExchange(name, timeout)
        return result

    def lookupAddress(self, name: str, timeout: Any = None) -> Deferred[Any]:
        result: Deferred[Any] = self._get().lookupAddress(name, timeout)
        return result

    def lookupIPV6Address(self, name: str, timeout: Any = None) -> Deferred[Any]:
        result: Deferred[Any] = self._get().lookupIPV6Address(name, timeout)
        return result

    def close(self) -> None:
        """
        Stop re-reading C{/etc/resolv.conf}; a later lookup starts again.
        """
        resolver, self._resolver = self._resolver, None
        call = getattr(resolver, "_parseCall", None)
        if call is not None and call.active():
            call.cancel()
