"""
Tests for L{mtaguard.client._routing}: choosing the next hop for a
recipient, resolving it to servers through a fake DNS, and grouping
recipients per next hop.  No network, no clock.
"""

from __future__ import annotations

import random
from typing import Any, Optional, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.names import dns, error as dnserror
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.client._routing import (
    AddressPolicy,
    AttemptBudget,
    Destination,
    Discard,
    Nexthop,
    ResolutionError,
    Router,
    RoutingError,
    Undeliverable,
    groupByNexthop,
    parseNexthop,
    resolve,
    resolveAll,
)
from mtaguard.client._tables import TableError, TableList, UnsupportedTable
from mtaguard.config._view import ParameterView

_TYPES = {"MX": dns.MX, "A": dns.A, "AAAA": dns.AAAA, "CNAME": dns.CNAME}


class FakeResolver:
    """
    A resolver answering from dicts: C{records[(name, type)]} is a list of
    payloads, C{errors[(name, type)]} an exception to fail with.  A name
    with no entry of any type does not exist (NXDOMAIN); a name with other
    types only has no data for this one (NODATA).
    """

    def __init__(
        self,
        records: dict[tuple[str, str], list[Any]],
        errors: Optional[dict[tuple[str, str], Exception]] = None,
    ) -> None:
        self.records = records
        self.errors = errors or {}
        self.queries: list[tuple[str, str]] = []

    def _answer(self, name: str, qtype: str) -> "Deferred[Any]":
        self.queries.append((name, qtype))
        if (name, qtype) in self.errors:
            return fail(self.errors[(name, qtype)])
        if not any(key[0] == name for key in list(self.records) + list(self.errors)):
            return fail(dnserror.DNSNameError(name))
        answers = [
            dns.RRHeader(name.encode(), payload.TYPE, dns.IN, 300, payload)
            for payload in self.records.get((name, qtype), [])
        ]
        return succeed((answers, [], []))

    def lookupMailExchange(self, name: str, timeout: Any = None) -> "Deferred[Any]":
        return self._answer(name, "MX")

    def lookupAddress(self, name: str, timeout: Any = None) -> "Deferred[Any]":
        return self._answer(name, "A")

    def lookupIPV6Address(self, name: str, timeout: Any = None) -> "Deferred[Any]":
        return self._answer(name, "AAAA")


def mx(preference: int, name: str) -> dns.Record_MX:
    return dns.Record_MX(preference, name.encode())


def a(address: str) -> dns.Record_A:
    return dns.Record_A(address)


def aaaa(address: str) -> dns.Record_AAAA:
    return dns.Record_AAAA(address)


NOSHUFFLE = AddressPolicy(randomize=False)


class NexthopSyntaxTests(SynchronousTestCase):
    """
    L{parseNexthop}: Postfix's next-hop forms.
    """

    def test_forms(self) -> None:
        """
        Brackets suppress the MX lookup; a port is a number or a service.
        """
        cases = {
            "[relay.example]:587": Nexthop("smtp", "relay.example", 587, False),
            "[Relay.Example]": Nexthop("smtp", "relay.example", 25, False),
            "relay.example": Nexthop("smtp", "relay.example", 25, True),
            "relay.example:submission": Nexthop("smtp", "relay.example", 587, True),
            "[192.0.2.1]:2525": Nexthop("smtp", "192.0.2.1", 2525, False),
            "[ipv6:2001:DB8::1]": Nexthop("smtp", "2001:db8::1", 25, False),
            "[2001:db8::1]:465": Nexthop("smtp", "2001:db8::1", 465, False),
        }
        for text, expected in cases.items():
            self.assertEqual(parseNexthop(text, "smtp", 25), expected, text)

    def test_str(self) -> None:
        """
        A next hop prints as Postfix writes it.
        """
        self.assertEqual(str(Nexthop("smtp", "r.example", 587, False)), "[r.example]:587")
        self.assertEqual(str(Nexthop("smtp", "r.example", 25, True)), "r.example:25")

    def test_bad(self) -> None:
        """
        Malformed next hops are refused.
        """
        for text in ("[relay", "[x]junk", "2001:db8::1", "bad host", "h:99999", "h:nosuchservice", ""):
            self.assertRaises(RoutingError, parseNexthop, text, "smtp", 25)


def router(**kw: Any) -> Router:
    kw.setdefault("transportMaps", TableList([]))
    return Router(**kw)


def inline(text: str) -> TableList:
    return TableList.fromParameter([f"inline:{{{text}}}"], parameter="transport_maps")


class RouteTests(SynchronousTestCase):
    """
    L{Router.route}: relayhost, transport_maps and the address classes.
    """

    def test_direct(self) -> None:
        """
        Without relayhost, mail goes to the recipient domain's MX hosts.
        """
        self.assertEqual(
            router().route("User@Example.COM"), (Nexthop("smtp", "example.com", 25, True),)
        )

    def test_domainLiteral(self) -> None:
        """
        A domain literal is delivered to that address, without MX lookup.
        """
        self.assertEqual(
            router().route("u@[192.0.2.7]"), (Nexthop("smtp", "192.0.2.7", 25, False),)
        )

    def test_relayhostForms(self) -> None:
        """
        C{[host]:port} suppresses MX lookups; C{host} and C{host:port} use
        them; a list gives several next hops.
        """
        self.assertEqual(
            router(relayhost=("[smart.example]:587",)).route("u@example.com"),
            (Nexthop("smtp", "smart.example", 587, False),),
        )
        self.assertEqual(
            router(relayhost=("smart.example",)).route("u@example.com"),
            (Nexthop("smtp", "smart.example", 25, True),),
        )
        self.assertEqual(
            router(relayhost=("smart.example:2525",)).route("u@example.com"),
            (Nexthop("smtp", "smart.example", 2525, True),),
        )
        self.assertEqual(
            router(relayhost=("[a.example]", "[b.example]")).route("u@example.com"),
            (Nexthop("smtp", "a.example", 25, False), Nexthop("smtp", "b.example", 25, False)),
        )

    def test_badRelayhostAtStartup(self) -> None:
        """
        A malformed relayhost stops the router at construction.
        """
        self.assertRaises(RoutingError, router, relayhost=("[broken",))

    def test_lookupOrder(self) -> None:
        """
        transport(5) order: the full address, the domain, C{.parent}
        entries (a bare parent does not match subdomains by default), then
        C{*}.
        """
        maps = inline(
            "u@sub.example.com=smtp:[full], sub.example.com=smtp:[domain],"
            " .example.com=smtp:[parent], example.com=smtp:[bare], *=smtp:[wild]"
        )
        r = router(transportMaps=maps)
        self.assertEqual(r.route("u@sub.example.com")[0].host, "full")
        self.assertEqual(r.route("v@sub.example.com")[0].host, "domain")
        self.assertEqual(r.route("v@deep.sub.example.com")[0].host, "parent")
        self.assertEqual(r.route("v@example.com")[0].host, "bare")
        self.assertEqual(r.route("v@other.org")[0].host, "wild")

    def test_parentStyle(self) -> None:
        """
        With transport_maps in parent_domain_matches_subdomains, a bare
        domain matches its subdomains.
        """
        r = router(transportMaps=inline("example.com=smtp:[bare]"), parentStyle=True)
        self.assertEqual(r.route("v@a.b.example.com"), (Nexthop("smtp", "bare", 25, False),))
        r = router(transportMaps=inline("example.com=smtp:[bare]"))
        self.assertEqual(r.route("v@a.b.example.com"), (Nexthop("smtp", "a.b.example.com", 25, True),))

    def test_extension(self) -> None:
        """
        With a recipient_delimiter, the address without its extension is
        looked up after the full address.
        """
        r = router(transportMaps=inline("u@example.com=smtp:[plain]"), recipientDelimiter="+")
        self.assertEqual(r.route("u+tag@example.com")[0].host, "plain")

    def test_emptyFields(self) -> None:
        """
        C{:} changes nothing (relayhost stays); C{smtp:} resets the next
        hop to the recipient domain; C{:[host]} changes only the next hop;
        C{relay:host} changes both.
        """
        maps = inline("a.example=:, b.example=smtp:, c.example=:[c-relay], d.example=relay:d-mx")
        r = router(transportMaps=maps, relayhost=("[smart]",))
        self.assertEqual(r.route("u@a.example"), (Nexthop("smtp", "smart", 25, False),))
        self.assertEqual(r.route("u@b.example"), (Nexthop("smtp", "b.example", 25, True),))
        self.assertEqual(r.route("u@c.example"), (Nexthop("smtp", "c-relay", 25, False),))
        self.assertEqual(r.route("u@d.example"), (Nexthop("relay", "d-mx", 25, True),))

    def test_specialTransports(self) -> None:
        """
        C{error:} bounces with its text and code, C{retry:} defers,
        C{discard:} discards, an unknown transport is unavailable.
        """
        maps = inline(
            "{a.example=error:5.1.2 no such domain}, b.example=error:,"
            " {c.example=retry:4.4.1 later}, d.example=discard:quiet, e.example=lmtp:[x]"
        )
        r = router(transportMaps=maps)
        self.assertEqual(r.route("u@a.example"), Undeliverable("error", "5.1.2", "no such domain"))
        self.assertTrue(r.route("u@a.example").permanent)
        self.assertEqual(r.route("u@b.example"), Undeliverable("error", "5.0.0", "b.example"))
        retry = r.route("u@c.example")
        self.assertEqual(retry, Undeliverable("retry", "4.4.1", "later"))
        self.assertFalse(retry.permanent)
        self.assertEqual(r.route("u@d.example"), Discard("quiet"))
        self.assertEqual(
            r.route("u@e.example"), Undeliverable("lmtp", "4.3.0", "mail transport unavailable")
        )

    def test_badTableNexthop(self) -> None:
        """
        A malformed next hop in a table defers that recipient.
        """
        r = router(transportMaps=inline("a.example=smtp:[broken"))
        route = r.route("u@a.example")
        self.assertIsInstance(route, Undeliverable)
        self.assertEqual(route.status, "4.3.5")

    def test_tableFailureDefers(self) -> None:
        """
        A table that cannot be read defers the recipient.
        """

        class Broken:
            name = "texthash:/gone"

            def lookup(self, key: str) -> Optional[str]:
                raise TableError("transport_maps", self.name, "No such file or directory")

        r = router(transportMaps=TableList([Broken()]))
        route = r.route("u@a.example")
        self.assertEqual(route.status, "4.3.0")
        self.assertIn("transport_maps lookup failure", route.reason)

    def test_defaultTransportNexthop(self) -> None:
        """
        C{default_transport = smtp:[host]} overrides relayhost, as
        trivial-rewrite does.
        """
        r = router(defaultTransport="smtp:[dt.example]", relayhost=("[smart]",))
        self.assertEqual(r.route("u@x.example"), (Nexthop("smtp", "dt.example", 25, False),))

    def test_noDomain(self) -> None:
        """
        An address without a domain is a programming error upstream.
        """
        self.assertRaises(RoutingError, router().route, "user")

    def test_fromView(self) -> None:
        """
        The router reads its parameters from a ParameterView: relay_domains
        choose relay_transport, relayhost the next hop, transport_maps
        overrides.
        """
        view = ParameterView(
            {
                "relayhost": "[smart.example]:587",
                "relay_domains": "relayed.example",
                "mydestination": "",
                "transport_maps": "inline:{ special.example=smtp:[special]:2525 }",
            }
        )
        r = Router.fromView(view)
        self.assertEqual(r.route("u@other.example"), (Nexthop("smtp", "smart.example", 587, False),))
        self.assertEqual(r.route("u@relayed.example"), (Nexthop("relay", "smart.example", 587, False),))
        # relay_domains is in parent_domain_matches_subdomains by default.
        self.assertEqual(r.route("u@a.relayed.example")[0].transport, "relay")
        self.assertEqual(r.route("u@special.example"), (Nexthop("smtp", "special", 2525, False),))

    def test_fromViewUnsupportedTable(self) -> None:
        """
        A hash: transport table stops the router with an error naming
        transport_maps.
        """
        view = ParameterView({"transport_maps": "hash:/etc/postfix/transport"})
        error = self.assertRaises(UnsupportedTable, Router.fromView, view)
        self.assertEqual(error.parameter, "transport_maps")


class ResolveTests(SynchronousTestCase):
    """
    L{resolve}: MX records, addresses and failures.
    """

    def resolved(self, nexthop: Nexthop, resolver: FakeResolver, policy: AddressPolicy = NOSHUFFLE, **kw: Any) -> list[Destination]:
        return self.successResultOf(resolve(nexthop, resolver, policy, **kw))

    def failed(self, nexthop: Nexthop, resolver: FakeResolver, policy: AddressPolicy = NOSHUFFLE) -> ResolutionError:
        failure = self.failureResultOf(resolve(nexthop, resolver, policy), ResolutionError)
        error = failure.value
        assert isinstance(error, ResolutionError)
        return error

    def test_mxPreferenceOrder(self) -> None:
        """
        Exchangers are tried in preference order, each with its addresses.
        """
        resolver = FakeResolver(
            {
                ("example.com", "MX"): [mx(20, "backup.example.com"), mx(10, "primary.example.com")],
                ("primary.example.com", "A"): [a("192.0.2.10")],
                ("backup.example.com", "A"): [a("192.0.2.20")],
            }
        )
        result = self.resolved(Nexthop("smtp", "example.com", 25, True), resolver)
        self.assertEqual(
            result,
            [
                Destination("primary.example.com", "192.0.2.10", 25, 10),
                Destination("backup.example.com", "192.0.2.20", 25, 20),
            ],
        )

    def equalPreferences(self) -> FakeResolver:
        records: dict[tuple[str, str], list[Any]] = {
            ("example.com", "MX"): [mx(10, f"mx{i}.example.com") for i in range(4)]
            + [mx(20, "last.example.com")],
            ("last.example.com", "A"): [a("192.0.2.99")],
        }
        for i in range(4):
            records[(f"mx{i}.example.com", "A")] = [a(f"192.0.2.{i}")]
        return FakeResolver(records)

    def test_equalPreferenceShuffle(self) -> None:
        """
        Equal preferences come in random order (from the injected random),
        worse preferences always after better ones.
        """
        policy = AddressPolicy(addressLimit=0)
        orders = set()
        for seed in range(10):
            result = self.resolved(
                Nexthop("smtp", "example.com", 25, True),
                self.equalPreferences(),
                policy,
                random=random.Random(seed),
            )
            self.assertEqual(result[-1].hostname, "last.example.com")
            self.assertEqual(sorted(d.hostname for d in result[:4]), [f"mx{i}.example.com" for i in range(4)])
            orders.add(tuple(d.hostname for d in result))
        self.assertGreater(len(orders), 1)
        # The same seed gives the same order.
        again = [
            self.resolved(Nexthop("smtp", "example.com", 25, True), self.equalPreferences(), policy, random=random.Random(3))
            for _ in range(2)
        ]
        self.assertEqual(again[0], again[1])

    def test_noRandomize(self) -> None:
        """
        With smtp_randomize_addresses off, equal preferences keep DNS order.
        """
        result = self.resolved(
            Nexthop("smtp", "example.com", 25, True), self.equalPreferences(), AddressPolicy(randomize=False, addressLimit=0)
        )
        self.assertEqual([d.hostname for d in result[:4]], [f"mx{i}.example.com" for i in range(4)])

    def test_implicitMX(self) -> None:
        """
        A domain without MX records is its own mail exchanger.
        """
        resolver = FakeResolver({("example.com", "A"): [a("192.0.2.1")]})
        self.assertEqual(
            self.resolved(Nexthop("smtp", "example.com", 25, True), resolver),
            [Destination("example.com", "192.0.2.1", 25, 0)],
        )

    def test_nullMX(self) -> None:
        """
        A null MX (RFC 7505) is a permanent failure, in Postfix's words.
        """
        resolver = FakeResolver({("example.com", "MX"): [mx(0, "")], ("example.com", "A"): [a("192.0.2.1")]})
        error = self.failed(Nexthop("smtp", "example.com", 25, True), resolver)
        self.assertEqual(error.status, "5.1.0")
        self.assertEqual(error.reason, "Domain example.com does not accept mail (nullMX)")
        self.assertTrue(error.permanent)

    def test_nxdomain(self) -> None:
        """
        A domain that does not exist bounces with Postfix's text.
        """
        error = self.failed(Nexthop("smtp", "nowhere.example", 25, True), FakeResolver({}))
        self.assertTrue(error.permanent)
        self.assertEqual(error.status, "5.4.4")
        self.assertEqual(
            error.reason,
            "Host or domain name not found. Name service error for name=nowhere.example type=MX: Host not found",
        )

    def test_timeoutDefersWithoutFallback(self) -> None:
        """
        A timed-out MX lookup defers, and the domain's own addresses are not
        used in its place (there may be MX records we did not see).
        """
        resolver = FakeResolver(
            {("example.com", "A"): [a("192.0.2.1")]},
            {("example.com", "MX"): dnserror.DNSQueryTimeoutError("example.com")},
        )
        error = self.failed(Nexthop("smtp", "example.com", 25, True), resolver)
        self.assertFalse(error.permanent)
        self.assertEqual(error.status, "4.4.3")
        self.assertIn("type=MX: Host not found, try again", error.reason)
        self.assertEqual(resolver.queries, [("example.com", "MX")])

    def test_servfailAndRefusedDefer(self) -> None:
        """
        SERVFAIL and REFUSED defer.
        """
        for exception in (dnserror.DNSServerError("x"), dnserror.DNSQueryRefusedError("x"), RuntimeError("x")):
            resolver = FakeResolver({}, {("example.com", "MX"): exception})
            self.assertFalse(self.failed(Nexthop("smtp", "example.com", 25, True), resolver).permanent)

    def test_someExchangersFail(self) -> None:
        """
        Exchangers whose addresses cannot be found are skipped while others
        work.
        """
        resolver = FakeResolver(
            {
                ("example.com", "MX"): [mx(10, "gone.example.com"), mx(20, "ok.example.com")],
                ("ok.example.com", "A"): [a("192.0.2.2")],
            }
        )
        result = self.resolved(Nexthop("smtp", "example.com", 25, True), resolver)
        self.assertEqual([d.address for d in result], ["192.0.2.2"])

    def test_noExchangerAddress(self) -> None:
        """
        When no exchanger has an address, the failure is permanent if all
        lookups failed permanently, and temporary if any failed temporarily.
        """
        records = {("example.com", "MX"): [mx(10, "a.example.com"), mx(20, "b.example.com")]}
        error = self.failed(Nexthop("smtp", "example.com", 25, True), FakeResolver(dict(records)))
        self.assertTrue(error.permanent)
        self.assertIn("Host not found", error.reason)
        resolver = FakeResolver(dict(records), {("b.example.com", "A"): dnserror.DNSServerError("b")})
        self.assertFalse(self.failed(Nexthop("smtp", "example.com", 25, True), resolver).permanent)

    def test_loopsBackByAddress(self) -> None:
        """
        An MX host with one of our addresses, as the best exchanger, is a
        mail loop: a permanent failure with Postfix's text.
        """
        resolver = FakeResolver({("example.com", "MX"): [mx(10, "mx.example.com")], ("mx.example.com", "A"): [a("192.0.2.5")]})
        policy = AddressPolicy(randomize=False, localAddresses=frozenset({"192.0.2.5"}))
        error = self.failed(Nexthop("smtp", "example.com", 25, True), resolver, policy)
        self.assertEqual((error.status, error.reason), ("5.4.6", "mail for example.com loops back to myself"))

    def test_loopsBackByName(self) -> None:
        """
        An MX record naming myhostname is a loop too.
        """
        resolver = FakeResolver({("example.com", "MX"): [mx(10, "me.example.net")], ("me.example.net", "A"): [a("198.51.100.1")]})
        policy = AddressPolicy(randomize=False, myhostname="me.example.net")
        self.assertEqual(self.failed(Nexthop("smtp", "example.com", 25, True), resolver, policy).status, "5.4.6")

    def test_backupMX(self) -> None:
        """
        When we are a backup MX, only better exchangers are tried; when
        none of those has an address, delivery defers.
        """
        records: dict[tuple[str, str], list[Any]] = {
            ("example.com", "MX"): [mx(10, "primary.example.com"), mx(20, "me.example.net"), mx(30, "worse.example.com")],
            ("primary.example.com", "A"): [a("192.0.2.1")],
            ("me.example.net", "A"): [a("198.51.100.1")],
            ("worse.example.com", "A"): [a("192.0.2.3")],
        }
        policy = AddressPolicy(randomize=False, myhostname="me.example.net")
        result = self.resolved(Nexthop("smtp", "example.com", 25, True), FakeResolver(dict(records)), policy)
        self.assertEqual([d.hostname for d in result], ["primary.example.com"])
        del records[("primary.example.com", "A")]
        error = self.failed(Nexthop("smtp", "example.com", 25, True), FakeResolver(records), policy)
        self.assertEqual((error.status, error.reason), ("4.4.4", "unable to find primary relay for example.com"))

    def test_noLoopCheckOffPort25(self) -> None:
        """
        As in Postfix, loops are only detected on port 25: a filter at
        [127.0.0.1]:10025 is fine.
        """
        policy = AddressPolicy(localAddresses=frozenset({"127.0.0.1"}))
        self.assertEqual(
            self.resolved(Nexthop("smtp", "127.0.0.1", 10025, False), FakeResolver({}), policy),
            [Destination("127.0.0.1", "127.0.0.1", 10025, 0)],
        )
        error = self.failed(Nexthop("smtp", "127.0.0.1", 25, False), FakeResolver({}), policy)
        self.assertEqual(error.reason, "mail for 127.0.0.1 loops back to myself")

    def test_bracketedHostNoMX(self) -> None:
        """
        C{[host]} looks up the host's addresses, never MX records.
        """
        resolver = FakeResolver({("relay.example", "A"): [a("192.0.2.8")], ("relay.example", "MX"): [mx(1, "other.example")]})
        result = self.resolved(Nexthop("smtp", "relay.example", 587, False), resolver)
        self.assertEqual(result, [Destination("relay.example", "192.0.2.8", 587, 0)])
        self.assertNotIn(("relay.example", "MX"), resolver.queries)

    def test_hostWithoutAddress(self) -> None:
        """
        A host with neither A nor AAAA records bounces with Postfix's
        no-data text.
        """
        resolver = FakeResolver({("relay.example", "MX"): [mx(1, "x.example")]})
        error = self.failed(Nexthop("smtp", "relay.example", 25, False), resolver)
        self.assertTrue(error.permanent)
        self.assertIn("Host found but no data record of requested type", error.reason)

    def dualStack(self) -> FakeResolver:
        return FakeResolver(
            {
                ("example.com", "MX"): [mx(10, "mx.example.com")],
                ("mx.example.com", "A"): [a("192.0.2.1")],
                ("mx.example.com", "AAAA"): [aaaa("2001:db8::1")],
                ("mx.example.com", "CNAME"): [],
            }
        )

    def test_inetProtocols(self) -> None:
        """
        Only the families in inet_protocols are looked up and used.
        """
        nexthop = Nexthop("smtp", "example.com", 25, True)
        resolver = self.dualStack()
        result = self.resolved(nexthop, resolver, AddressPolicy(randomize=False, families=frozenset({4})))
        self.assertEqual([d.address for d in result], ["192.0.2.1"])
        self.assertNotIn(("mx.example.com", "AAAA"), resolver.queries)
        result = self.resolved(nexthop, self.dualStack(), AddressPolicy(randomize=False, families=frozenset({6})))
        self.assertEqual([d.address for d in result], ["2001:db8::1"])

    def test_addressPreference(self) -> None:
        """
        smtp_address_preference puts one family first within a preference.
        """
        nexthop = Nexthop("smtp", "example.com", 25, True)
        for preference, first in (("ipv6", "2001:db8::1"), ("ipv4", "192.0.2.1")):
            for seed in range(5):
                result = self.resolved(
                    nexthop, self.dualStack(), AddressPolicy(preference=preference), random=random.Random(seed)
                )
                self.assertEqual(result[0].address, first)
        result = self.resolved(nexthop, self.dualStack(), AddressPolicy(randomize=False))
        self.assertEqual({d.family for d in result}, {4, 6})

    def test_addressLimit(self) -> None:
        """
        At most smtp_mx_address_limit addresses are returned.
        """
        resolver = FakeResolver(
            {("example.com", "MX"): [mx(10, "mx.example.com")], ("mx.example.com", "A"): [a(f"192.0.2.{i}") for i in range(10)]}
        )
        result = self.resolved(Nexthop("smtp", "example.com", 25, True), resolver, AddressPolicy(randomize=False, addressLimit=3))
        self.assertEqual([d.address for d in result], ["192.0.2.0", "192.0.2.1", "192.0.2.2"])

    def test_balanceFamilies(self) -> None:
        """
        When the limit would cut out one family entirely, some addresses of
        each are kept (smtp_balance_inet_protocols).
        """
        resolver = FakeResolver(
            {
                ("example.com", "MX"): [mx(10, "mx.example.com")],
                ("mx.example.com", "A"): [a("192.0.2.1")],
                ("mx.example.com", "AAAA"): [aaaa(f"2001:db8::{i}") for i in range(1, 9)],
            }
        )
        policy = AddressPolicy(randomize=False, preference="ipv6", addressLimit=4)
        result = self.resolved(Nexthop("smtp", "example.com", 25, True), resolver, policy)
        self.assertEqual(len(result), 4)
        self.assertEqual([d.family for d in result], [6, 6, 6, 4])

    def test_cnameIgnored(self) -> None:
        """
        Only records of the asked type are used from an answer.
        """
        resolver = FakeResolver({("h.example", "A"): [dns.Record_CNAME(b"x.example"), a("192.0.2.4")]})
        result = self.resolved(Nexthop("smtp", "h.example", 25, False), resolver)
        self.assertEqual([d.address for d in result], ["192.0.2.4"])

    def test_malformedMXName(self) -> None:
        """
        An MX record naming something that is not a host name fails.
        """
        resolver = FakeResolver({("example.com", "MX"): [mx(10, "bad name!")]})
        self.assertIn("Malformed", self.failed(Nexthop("smtp", "example.com", 25, True), resolver).reason)

    def test_resolveAll(self) -> None:
        """
        A list of next hops yields each next hop's servers in order; a
        failing one is skipped.
        """
        resolver = FakeResolver({("a.example", "A"): [a("192.0.2.1")], ("b.example", "A"): [a("192.0.2.2")]})
        hops = [Nexthop("smtp", "gone.example", 25, False), Nexthop("smtp", "a.example", 25, False), Nexthop("smtp", "b.example", 25, False)]
        result = self.successResultOf(resolveAll(hops, resolver, NOSHUFFLE))
        self.assertEqual([d.address for d in result], ["192.0.2.1", "192.0.2.2"])
        failure = self.failureResultOf(resolveAll(hops[:1], resolver, NOSHUFFLE), ResolutionError)
        self.assertTrue(failure.value.permanent)


class AttemptBudgetTests(SynchronousTestCase):
    """
    L{AttemptBudget}: smtp_mx_session_limit and smtp_mx_address_limit.
    """

    def test_sessionLimit(self) -> None:
        """
        After smtp_mx_session_limit established sessions, no more
        destinations are offered; failed connections do not count.
        """
        destinations = [Destination(f"h{i}", f"192.0.2.{i}", 25, 0) for i in range(5)]
        budget = AttemptBudget(destinations, AddressPolicy(sessionLimit=2, addressLimit=0))
        tried = []
        for connected in (False, True, False, True, True):
            destination = budget.nextDestination()
            if destination is None:
                break
            tried.append(destination.hostname)
            if connected:
                budget.sessionEstablished()
        self.assertEqual(tried, ["h0", "h1", "h2", "h3"])
        self.assertIsNone(budget.nextDestination())

    def test_addressLimit(self) -> None:
        """
        No more than smtp_mx_address_limit destinations are offered.
        """
        destinations = [Destination(f"h{i}", f"192.0.2.{i}", 25, 0) for i in range(5)]
        budget = AttemptBudget(destinations, AddressPolicy(sessionLimit=0, addressLimit=2))
        self.assertEqual([budget.nextDestination(), budget.nextDestination(), budget.nextDestination()], destinations[:2] + [None])

    def test_hasMore(self) -> None:
        """
        L{AttemptBudget.hasMore} says whether the server just tried was the
        final one: none left, or the session limit reached.
        """
        destinations = [Destination(f"h{i}", f"192.0.2.{i}", 25, 0) for i in range(3)]
        budget = AttemptBudget(destinations, AddressPolicy(sessionLimit=1, addressLimit=0))
        budget.nextDestination()
        self.assertTrue(budget.hasMore())
        budget.sessionEstablished()
        self.assertFalse(budget.hasMore())
        budget = AttemptBudget(destinations[:1], AddressPolicy(sessionLimit=0, addressLimit=0))
        budget.nextDestination()
        self.assertFalse(budget.hasMore())


class GroupTests(SynchronousTestCase):
    """
    L{groupByNexthop}.
    """

    def test_grouping(self) -> None:
        """
        Recipients with the same route share one group, in order of first
        appearance; duplicates are delivered once.
        """
        r = router(transportMaps=inline("{b.example=error:5.1.1 gone}"))
        groups = groupByNexthop(
            ["x@a.example", "y@b.example", "z@A.example", "x@a.example", "w@c.example", "v@b.example"], r.route
        )
        self.assertEqual(
            groups,
            [
                ((Nexthop("smtp", "a.example", 25, True),), ["x@a.example", "z@A.example"]),
                (Undeliverable("error", "5.1.1", "gone"), ["y@b.example", "v@b.example"]),
                ((Nexthop("smtp", "c.example", 25, True),), ["w@c.example"]),
            ],
        )

    def test_relayhostOneGroup(self) -> None:
        """
        With a relayhost, every domain shares one connection.
        """
        r = router(relayhost=("[smart]",))
        groups = groupByNexthop(["a@one.example", "b@two.example"], r.route)
        self.assertEqual(len(groups), 1)

    def test_recipientLimit(self) -> None:
        """
        A group holds at most recipientLimit recipients.
        """
        groups = groupByNexthop([f"u{i}@a.example" for i in range(5)], router().route, recipientLimit=2)
        self.assertEqual([len(batch) for _, batch in groups], [2, 2, 1])
