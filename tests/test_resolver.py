"""
Tests for L{mtaguard.resolver}: C{mtaguard_dns_servers} and the lazily made
C{twisted.names} resolver.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config import ConfigurationError, ParameterView
from mtaguard.resolver import SystemResolver, parseServers


class ParseServersTests(SynchronousTestCase):
    """
    C{mtaguard_dns_servers} items.
    """

    def test_forms(self) -> None:
        """
        Bare addresses use port 53; C{[address]:port} names a port; IPv6
        needs the brackets for a port.
        """
        self.assertEqual(
            parseServers(["192.0.2.53", "[127.0.0.1]:5353", "[::1]:53", "2001:db8::53"]),
            [("192.0.2.53", 53), ("127.0.0.1", 5353), ("::1", 53), ("2001:db8::53", 53)],
        )

    def test_bad(self) -> None:
        """
        Host names, bad ports and junk are configuration errors.
        """
        for item in ["dns.example", "[127.0.0.1]:0", "[127.0.0.1]:http", "[127.0.0.1]:70000", "[nope]"]:
            self.assertRaises(ConfigurationError, parseServers, [item])


class SystemResolverTests(SynchronousTestCase):
    """
    The resolver is made on first use and stops re-reading resolv.conf
    when closed.
    """

    def test_lazy(self) -> None:
        """
        Building the resolver schedules nothing; the first use reads
        resolv.conf and schedules its periodic re-read, which C{close}
        cancels.
        """
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write("nameserver 192.0.2.53\n")
        clock = Clock()
        resolver = SystemResolver(clock, resolvConf=path)
        self.assertEqual(clock.getDelayedCalls(), [])
        names = resolver._get()
        self.assertEqual(names.dynServers, [("192.0.2.53", 53)])
        self.assertNotEqual(clock.getDelayedCalls(), [])
        resolver.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_fromView(self) -> None:
        """
        C{mtaguard_dns_servers} servers are asked; no resolv.conf timer.
        """
        clock = Clock()
        view = ParameterView({"mtaguard_dns_servers": "[127.0.0.1]:5353"})
        resolver = SystemResolver.fromView(view, clock)
        self.assertEqual(resolver._get().servers, [("127.0.0.1", 5353)])
        self.assertEqual(clock.getDelayedCalls(), [])
