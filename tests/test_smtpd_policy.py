"""
Tests for L{mtaguard.smtpd._policy}: relay control.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config import ParameterView
from mtaguard.smtpd._policy import (
    ClientFacts,
    RelayPolicy,
    UnsupportedPattern,
    matchNetworks,
    parseNetworks,
)


def policy(**values: str) -> RelayPolicy:
    base = {
        "compatibility_level": "3.6",
        "myhostname": "mx.example.org",
        "mydomain": "example.org",
        "mynetworks": "127.0.0.0/8 [::1]/128 !192.0.2.66 192.0.2.0/24",
    }
    base.update(values)
    return RelayPolicy(ParameterView(base))


OUTSIDE = ClientFacts("203.0.113.9", authenticated=False)
INSIDE = ClientFacts("192.0.2.10", authenticated=False)


class NetworkTests(SynchronousTestCase):
    """
    Network lists match as Postfix's mynetworks does.
    """

    def test_matching(self) -> None:
        """
        CIDR blocks, bracketed IPv6, bare addresses and exclusions; the first
        match decides; IPv4-mapped IPv6 addresses count as IPv4.
        """
        networks = parseNetworks(["!10.1.2.3", "10.0.0.0/8", "[2001:db8::]/32", "198.51.100.7"])
        self.assertTrue(matchNetworks(networks, "10.9.9.9"))
        self.assertFalse(matchNetworks(networks, "10.1.2.3"))
        self.assertTrue(matchNetworks(networks, "2001:db8::1"))
        self.assertTrue(matchNetworks(networks, "198.51.100.7"))
        self.assertTrue(matchNetworks(networks, "::ffff:10.0.0.1"))
        self.assertFalse(matchNetworks(networks, "192.0.2.1"))
        self.assertFalse(matchNetworks(networks, "not an address"))

    def test_tables(self) -> None:
        """
        Lookup tables and files are reported, not silently ignored.
        """
        self.assertRaises(UnsupportedPattern, parseNetworks, ["hash:/etc/postfix/network"])
        self.assertRaises(UnsupportedPattern, parseNetworks, ["/etc/postfix/networks"])


class RelayTests(SynchronousTestCase):
    """
    The default restrictions never make an open relay.
    """

    def test_defaultsAreNoOpenRelay(self) -> None:
        """
        At compatibility level 3.6 an outside client may send to local
        domains only; remote recipients get Postfix's 454 4.7.1 (defer).
        """
        p = policy()
        self.assertIsNone(p.checkRecipient(OUTSIDE, "postmaster@mx.example.org"))
        self.assertIsNone(p.checkRecipient(OUTSIDE, "postmaster@localhost"))
        self.assertIsNone(p.checkRecipient(OUTSIDE, "postmaster"))
        reply = p.checkRecipient(OUTSIDE, "victim@remote.example")
        assert reply is not None
        self.assertEqual(
            reply.toBytes(), b"454 4.7.1 <victim@remote.example>: Relay access denied\r\n"
        )

    def test_mynetworksRelay(self) -> None:
        """
        Clients in mynetworks may relay; an excluded address may not.
        """
        p = policy()
        self.assertIsNone(p.checkRecipient(INSIDE, "someone@remote.example"))
        self.assertIsNotNone(
            p.checkRecipient(ClientFacts("192.0.2.66", False), "someone@remote.example")
        )

    def test_authenticatedRelay(self) -> None:
        """
        An authenticated client may relay.
        """
        self.assertIsNone(
            policy().checkRecipient(ClientFacts("203.0.113.9", True), "a@remote.example")
        )

    def test_rejectUnauthDestination(self) -> None:
        """
        reject_unauth_destination answers relay_domains_reject_code with 5.7.1.
        """
        p = policy(smtpd_relay_restrictions="permit_mynetworks reject_unauth_destination")
        reply = p.checkRecipient(OUTSIDE, "victim@remote.example")
        assert reply is not None
        self.assertEqual(
            reply.toBytes(), b"554 5.7.1 <victim@remote.example>: Relay access denied\r\n"
        )

    def test_relayDomains(self) -> None:
        """
        relay_domains and their subdomains are authorized destinations.
        """
        p = policy(relay_domains="example.net")
        self.assertIsNone(p.checkRecipient(OUTSIDE, "a@example.net"))
        self.assertIsNone(p.checkRecipient(OUTSIDE, "a@sub.example.net"))
        self.assertIsNotNone(p.checkRecipient(OUTSIDE, "a@example.com"))

    def test_compatibilityZeroEmptyRestrictions(self) -> None:
        """
        With both restriction lists empty (compatibility level 0), remote
        recipients are still refused.
        """
        p = policy(compatibility_level="0", relay_domains="")
        self.assertIsNotNone(p.checkRecipient(OUTSIDE, "victim@remote.example"))

    def test_isLocal(self) -> None:
        """
        mydestination decides which recipients are local.
        """
        p = policy()
        self.assertTrue(p.isLocal("user@MX.example.org"))
        self.assertTrue(p.isLocal("user@localhost.example.org"))
        self.assertFalse(p.isLocal("user@example.org"))
