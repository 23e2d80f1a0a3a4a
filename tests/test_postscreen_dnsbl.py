"""
Tests for L{mtaguard.postscreen._dnsbl} (C{postscreen_dnsbl_sites}
parsing, query names, scoring, verdict, TTL, reject reply) and
L{mtaguard.postscreen._dnsbllookup} (parallel lookups through a resolver,
the overall timeout, errors, dnsblog's log lines).
"""

from __future__ import annotations

from typing import Any, Sequence, Union

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.names import dns
from twisted.names.error import DNSNameError, DNSQueryTimeoutError, DNSServerError
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.client._tables import TableList
from mtaguard.config import params
from mtaguard.config._view import ParameterView
from mtaguard.postscreen._dnsbl import (
    DNSBLAnswer,
    DNSBLSyntaxError,
    evaluate,
    parseFilter,
    parseSite,
    parseSites,
    queryName,
    rejectReply,
    replyDomain,
    resultTTL,
    score,
    siteDomains,
    verdict,
)
from mtaguard.postscreen._dnsbllookup import DNSBLLookup, DNSBLResult, retrySchedule

CLIENT = "203.0.113.5"
REVERSED = "5.113.0.203"


class ParseSiteTests(SynchronousTestCase):
    """
    C{domain[=filter][*weight]} entries, parsed as Postfix parses them.
    """

    def test_table(self) -> None:
        """
        Domain, filter and weight of each entry; no weight means 1, no
        filter means any A record, weights may be negative or signed.
        """
        cases = [
            ("plain domain", "zen.spamhaus.org", "zen.spamhaus.org", None, 1),
            ("filter and weight", "zen.spamhaus.org=127.0.0.10*3", "zen.spamhaus.org", "127.0.0.10", 3),
            ("range filter", "zen.spamhaus.org=127.0.0.[2..11]", "zen.spamhaus.org", "127.0.0.[2..11]", 1),
            ("list filter", "bl.example=127.0.0.[2;4;9..11]", "bl.example", "127.0.0.[2;4;9..11]", 1),
            ("allowlist", "list.dnswl.org=127.0.[0..255].[1..3]*-5", "list.dnswl.org", "127.0.[0..255].[1..3]", -5),
            ("weight only", "b.barracudacentral.org*2", "b.barracudacentral.org", None, 2),
            ("plus sign", "bl.example*+2", "bl.example", None, 2),
        ]
        for label, text, domain, filterText, weight in cases:
            site = parseSite(text)
            self.assertEqual(
                (site.domain, site.filter.text if site.filter else None, site.weight, site.text),
                (domain, filterText, weight, text),
                label,
            )

    def test_filterMatches(self) -> None:
        """
        A filter accepts an address when every octet is among the octet's
        numbers, lists or ranges.
        """
        cases = [
            ("127.0.0.2", "127.0.0.2", True),
            ("127.0.0.2", "127.0.0.3", False),
            ("127.0.0.[2;3;4]", "127.0.0.3", True),
            ("127.0.0.[2;3;4]", "127.0.0.5", False),
            ("127.0.0.[2..11]", "127.0.0.2", True),
            ("127.0.0.[2..11]", "127.0.0.11", True),
            ("127.0.0.[2..11]", "127.0.0.12", False),
            ("127.0.0.[2..11]", "127.0.0.1", False),
            ("127.0.[0..255].[2;4]", "127.0.200.4", True),
            ("127.0.[0..255].[2;4]", "127.0.200.3", False),
            ("127.0.0.[2;4;9..11]", "127.0.0.10", True),
            ("127.0.0.[2;4;9..11]", "127.0.0.5", False),
            ("127.0.0.2", "::1", False),
            ("127.0.0.2", "127.0.0.2.1", False),
        ]
        for filterText, address, expected in cases:
            self.assertEqual(
                parseFilter(filterText).matches(address), expected, f"{filterText} ~ {address}"
            )

    def test_errors(self) -> None:
        """
        Malformed entries are refused with Postfix's message: bad weight,
        bad filter, bad domain name.
        """
        cases = [
            ("zen.example*x", "bad DNSBL weight factor"),
            ("zen.example*", "bad DNSBL weight factor"),
            ("zen.example*1.5", "bad DNSBL weight factor"),
            ("zen.example=", "bad DNSBL filter syntax"),
            ("zen.example=127.0.0", "bad DNSBL filter syntax"),
            ("zen.example=127.0.0.2.1", "bad DNSBL filter syntax"),
            ("zen.example=127.0.0.256", "bad DNSBL filter syntax"),
            ("zen.example=127.0.0.[2", "bad DNSBL filter syntax"),
            ("zen.example=127.0.0.[5..2]", "bad DNSBL filter syntax"),
            ("zen.example=127.0.0.[]", "bad DNSBL filter syntax"),
            ("zen.example=127.0.0.[2..x]", "bad DNSBL filter syntax"),
            ("zen.example=127.0.[0.0]", "bad DNSBL filter syntax"),
            ("=127.0.0.2", "bad DNSBL domain name"),
            ("zen..example", "bad DNSBL domain name"),
            ("-zen.example", "bad DNSBL domain name"),
            ("1.2.3.4", "bad DNSBL domain name"),
        ]
        for text, message in cases:
            error = self.assertRaises(DNSBLSyntaxError, parseSite, text)
            self.assertIn(message, str(error), text)

    def test_siteList(self) -> None:
        """
        The parameter's items are split again at commas and white space; a
        domain may appear several times, each entry kept; it is queried
        once.
        """
        sites = parseSites(["zen.example=127.0.0.2*2, zen.example=127.0.0.4", "bl.example zen.example"])
        self.assertEqual(
            [site.text for site in sites],
            ["zen.example=127.0.0.2*2", "zen.example=127.0.0.4", "bl.example", "zen.example"],
        )
        self.assertEqual(siteDomains(sites), ("zen.example", "bl.example"))

    def test_parameterDefaults(self) -> None:
        """
        The parameters read through the view: the old
        C{postscreen_dnsbl_whitelist_threshold} and C{postscreen_dnsbl_ttl}
        names feed their new names' defaults.
        """
        view = ParameterView({})
        self.assertEqual(view[params.postscreen_dnsbl_sites], ())
        self.assertEqual(view[params.postscreen_dnsbl_threshold], 1)
        self.assertEqual(view[params.postscreen_dnsbl_allowlist_threshold], 0)
        self.assertEqual(view[params.postscreen_dnsbl_min_ttl], 60)
        self.assertEqual(view[params.postscreen_dnsbl_max_ttl], 3600)
        self.assertEqual(view[params.postscreen_dnsbl_timeout], 10)
        old = ParameterView(
            {"postscreen_dnsbl_whitelist_threshold": "-2", "postscreen_dnsbl_ttl": "2"}
        )
        self.assertEqual(old[params.postscreen_dnsbl_allowlist_threshold], -2)
        self.assertEqual(old[params.postscreen_dnsbl_max_ttl], 7200)


class QueryNameTests(SynchronousTestCase):
    """
    The DNS name queried for a client.
    """

    def test_ipv4(self) -> None:
        """
        IPv4: the octets reversed, then the domain.
        """
        self.assertEqual(queryName(CLIENT, "zen.example"), f"{REVERSED}.zen.example")

    def test_ipv6(self) -> None:
        """
        IPv6: the 32 nibbles of the full address reversed.
        """
        self.assertEqual(
            queryName("2001:db8::1", "zen.example"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.example",
        )
        self.assertEqual(
            queryName("2001:DB8:1:2:3:4:5:6", "bl.example"),
            "6.0.0.0.5.0.0.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example",
        )

    def test_ipv4Mapped(self) -> None:
        """
        An IPv4-mapped IPv6 address is queried as its IPv4 address.
        """
        self.assertEqual(queryName(f"::ffff:{CLIENT}", "zen.example"), f"{REVERSED}.zen.example")

    def test_notAnAddress(self) -> None:
        """
        Anything else is refused.
        """
        self.assertRaises(ValueError, queryName, "mail.example", "zen.example")


class ScoreTests(SynchronousTestCase):
    """
    Scoring, table-driven: each entry whose filter matches any answer adds
    its weight once.
    """

    def test_table(self) -> None:
        """
        The score of each combination of sites and answers.
        """
        cases: list[tuple[str, str, dict[str, list[str]], int]] = [
            (
                "site with filter+weight last",
                "bl.example zen.example=127.0.0.10*3",
                {"zen.example": ["127.0.0.10"], "bl.example": ["127.0.0.2"]},
                4,
            ),
            (
                "filter does not match",
                "zen.example=127.0.0.10*3",
                {"zen.example": ["127.0.0.2"]},
                0,
            ),
            (
                "one entry counts once with several matching answers",
                "zen.example=127.0.0.[2..11]*2",
                {"zen.example": ["127.0.0.2", "127.0.0.4", "127.0.0.10"]},
                2,
            ),
            (
                "duplicate domain, each entry counts",
                "zen.example=127.0.0.2*2 zen.example=127.0.0.4*3 zen.example",
                {"zen.example": ["127.0.0.2", "127.0.0.4"]},
                6,
            ),
            (
                "duplicate domain, only matching entries count",
                "zen.example=127.0.0.2*2 zen.example=127.0.0.4*3",
                {"zen.example": ["127.0.0.4"]},
                3,
            ),
            (
                "negative weight allowlist",
                "list.dnswl.org=127.0.[0..255].[1..3]*-5 zen.example",
                {"list.dnswl.org": ["127.0.10.2"], "zen.example": ["127.0.0.2"]},
                -4,
            ),
            (
                "allowlist filter does not match",
                "list.dnswl.org=127.0.[0..255].[1..3]*-5",
                {"list.dnswl.org": ["127.0.10.255"]},
                0,
            ),
            (
                "no filter: any A record",
                "bl.example",
                {"bl.example": ["192.0.2.1"]},
                1,
            ),
            (
                "not listed",
                "bl.example zen.example*2",
                {"bl.example": [], "zen.example": []},
                0,
            ),
            (
                "no answer (timeout, error)",
                "bl.example zen.example*2",
                {},
                0,
            ),
            (
                "README example, spamcop only",
                "zen.spamhaus.org*2 bl.spamcop.net*1 b.barracudacentral.org*1",
                {"bl.spamcop.net": ["127.0.0.2"]},
                1,
            ),
            (
                "README example, all",
                "zen.spamhaus.org*2 bl.spamcop.net*1 b.barracudacentral.org*1",
                {
                    "zen.spamhaus.org": ["127.0.0.4"],
                    "bl.spamcop.net": ["127.0.0.2"],
                    "b.barracudacentral.org": ["127.0.0.2"],
                },
                4,
            ),
        ]
        for label, sites, answers, expected in cases:
            self.assertEqual(score(answers, parseSites([sites])), expected, label)

    def test_listedBy(self) -> None:
        """
        The domain reported is that of the matching entry with the highest
        weight; with equal weights, the first in the configuration.
        """
        sites = parseSites(["bl.example zen.example=127.0.0.[2..11]*3 other.example"])
        answers = {
            "bl.example": DNSBLAnswer(("127.0.0.2",)),
            "zen.example": DNSBLAnswer(("127.0.0.4",)),
            "other.example": DNSBLAnswer(("127.0.0.2",)),
        }
        self.assertEqual(evaluate(answers, sites).listedBy, "zen.example")
        answers["zen.example"] = DNSBLAnswer()
        self.assertEqual(evaluate(answers, sites).listedBy, "bl.example")
        self.assertIsNone(evaluate({}, sites).listedBy)


class VerdictTests(SynchronousTestCase):
    """
    Threshold and allowlist threshold.
    """

    def test_table(self) -> None:
        """
        Fail at or above the threshold; allowlist only when the allowlist
        threshold is negative and the score is at or below it; else pass.
        """
        cases = [
            (1, 1, 0, "fail"),
            (5, 1, 0, "fail"),
            (0, 1, 0, "pass"),
            (1, 2, 0, "pass"),
            (2, 2, 0, "fail"),
            (-5, 1, 0, "pass"),
            (0, 1, -1, "pass"),
            (-1, 1, -1, "allowlist"),
            (-5, 1, -1, "allowlist"),
            (-4, 1, -5, "pass"),
            (-2, -3, -1, "fail"),
        ]
        for value, threshold, allowlistThreshold, expected in cases:
            self.assertEqual(
                verdict(value, threshold, allowlistThreshold),
                expected,
                (value, threshold, allowlistThreshold),
            )


class TTLTests(SynchronousTestCase):
    """
    The cache TTL of a result.
    """

    def ttl(self, sites: str, answers: dict[str, DNSBLAnswer], minTTL: int = 60, maxTTL: int = 3600) -> int:
        return resultTTL(evaluate(answers, parseSites([sites])), minTTL=minTTL, maxTTL=maxTTL)

    def test_table(self) -> None:
        """
        A listed client keeps the smallest TTL of the answers against it,
        an unlisted one that of the answers for it; bounded by min and max
        TTL; with no TTL known, the max TTL.
        """
        listed = lambda ttl: DNSBLAnswer(("127.0.0.2",), ttl)  # noqa: E731
        clean = lambda ttl: DNSBLAnswer((), ttl)  # noqa: E731
        cases: list[tuple[str, str, dict[str, DNSBLAnswer], int]] = [
            ("listed", "zen.example", {"zen.example": listed(300)}, 300),
            ("listed, short TTL raised to min", "zen.example", {"zen.example": listed(10)}, 60),
            ("listed, long TTL cut to max", "zen.example", {"zen.example": listed(86400)}, 3600),
            (
                "listed: the smallest listing TTL, unlisted answers ignored",
                "zen.example bl.example other.example",
                {"zen.example": listed(900), "bl.example": listed(600), "other.example": clean(120)},
                600,
            ),
            (
                "unlisted: the smallest clean TTL",
                "zen.example bl.example",
                {"zen.example": clean(900), "bl.example": clean(300)},
                300,
            ),
            ("unlisted, no TTL (NXDOMAIN without SOA)", "zen.example", {"zen.example": clean(None)}, 3600),
            ("nothing answered", "zen.example", {}, 3600),
            (
                "listed on an allowlist counts for the client",
                "wl.example*-5",
                {"wl.example": listed(200)},
                200,
            ),
            (
                "filter mismatch is a clean answer",
                "zen.example=127.0.0.10",
                {"zen.example": listed(400)},
                400,
            ),
            (
                "not on the allowlist counts against, but the score is 0",
                "wl.example*-5 zen.example",
                {"wl.example": clean(100), "zen.example": clean(500)},
                500,
            ),
            (
                "listed, and not on the allowlist",
                "wl.example*-5 zen.example",
                {"wl.example": clean(100), "zen.example": listed(500)},
                100,
            ),
        ]
        for label, sites, answers, expected in cases:
            self.assertEqual(self.ttl(sites, answers), expected, label)

    def test_bounds(self) -> None:
        """
        C{postscreen_dnsbl_min_ttl} and C{postscreen_dnsbl_max_ttl} are the
        bounds; with nothing known the max TTL (C{postscreen_dnsbl_ttl}'s
        value when set, through the max TTL's default) applies.
        """
        answers = {"zen.example": DNSBLAnswer(("127.0.0.2",), 30)}
        self.assertEqual(self.ttl("zen.example", answers, minTTL=1, maxTTL=7200), 30)
        self.assertEqual(self.ttl("zen.example", answers, minTTL=120, maxTTL=7200), 120)
        self.assertEqual(self.ttl("zen.example", {}, minTTL=1, maxTTL=7200), 7200)


class ReplyTests(SynchronousTestCase):
    """
    The reject reply, and C{postscreen_dnsbl_reply_map} hiding the real
    domain.
    """

    def test_reply(self) -> None:
        """
        Without a map the real domain is shown; 521 for drop, 550 for
        enforce.
        """
        self.assertEqual(
            rejectReply(521, CLIENT, "zen.spamhaus.org", None),
            f"521 5.7.1 Service unavailable; client [{CLIENT}] blocked using zen.spamhaus.org",
        )
        self.assertEqual(
            rejectReply(550, CLIENT, "zen.spamhaus.org", None),
            f"550 5.7.1 Service unavailable; client [{CLIENT}] blocked using zen.spamhaus.org",
        )

    def test_replyMapHides(self) -> None:
        """
        A domain with a secret key is shown by its public name; a domain
        the map does not know is shown as is.
        """
        replyMap = TableList.fromParameter(
            ["inline:{ secretkey.zen.dq.spamhaus.net=zen.spamhaus.org }"],
            parameter="postscreen_dnsbl_reply_map",
        )
        reply = rejectReply(550, CLIENT, "secretkey.zen.dq.spamhaus.net", replyMap)
        self.assertNotIn("secretkey", reply)
        self.assertTrue(reply.endswith("blocked using zen.spamhaus.org"))
        self.assertEqual(replyDomain("bl.example", replyMap), "bl.example")

    def test_texthashAndStatic(self) -> None:
        """
        C{texthash:} and C{static:} maps work too (keyed by the bare
        domain, without filter or weight).
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("secret.bl.example   bl.example\n")
        site = parseSite("secret.bl.example=127.0.0.[2..11]*3")
        textMap = TableList.fromParameter([f"texthash:{path}"], parameter="postscreen_dnsbl_reply_map")
        self.assertEqual(replyDomain(site.domain, textMap), "bl.example")
        staticMap = TableList.fromParameter(["static:a-dnsbl"], parameter="postscreen_dnsbl_reply_map")
        self.assertEqual(replyDomain(site.domain, staticMap), "a-dnsbl")


Entry = Union[tuple[Sequence[str], int], Exception, None]


class FakeResolver:
    """
    A resolver answering C{lookupAddress} from a dict: name to
    C{(addresses, ttl)}, an exception to fail with, or L{None} for a
    query that never answers (cancellable).  Unknown names are NXDOMAIN.

    @ivar queries: the names and retry schedules asked, in order.
    @ivar deferreds: per name, the Deferred returned.
    @ivar cancelled: names whose query was cancelled.
    """

    def __init__(self, entries: dict[str, Entry]) -> None:
        self.entries = entries
        self.queries: list[tuple[str, Sequence[int]]] = []
        self.deferreds: dict[str, Deferred[Any]] = {}
        self.cancelled: list[str] = []

    def lookupAddress(self, name: str, timeout: Sequence[int]) -> Deferred[Any]:
        self.queries.append((name, timeout))
        entry = self.entries.get(name, DNSNameError(name))
        if entry is None:
            d: Deferred[Any] = Deferred(lambda _: self.cancelled.append(name))
        elif isinstance(entry, Exception):
            d = fail(entry)
        else:
            addresses, ttl = entry
            records = [
                dns.RRHeader(name, dns.A, dns.IN, ttl, dns.Record_A(address, ttl))
                for address in addresses
            ]
            d = succeed((records, [], []))
        self.deferreds[name] = d
        return d


class ManualResolver:
    """
    A resolver whose answers the test fires by hand.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Deferred[Any]] = {}

    def lookupAddress(self, name: str, timeout: Sequence[int]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending[name] = d
        return d


def aRecords(name: str, *addresses: str, ttl: int = 300) -> tuple[list[dns.RRHeader], list[dns.RRHeader], list[dns.RRHeader]]:
    return (
        [dns.RRHeader(name, dns.A, dns.IN, ttl, dns.Record_A(a, ttl)) for a in addresses],
        [],
        [],
    )


class LookupTests(SynchronousTestCase):
    """
    L{DNSBLLookup}: parallel queries, timeout, errors, logs.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def lookup(self, resolver: Any, sites: str, *, timeout: int = 10) -> Deferred[DNSBLResult]:
        return DNSBLLookup(resolver, clock=self.clock, timeout=timeout).lookup(
            CLIENT, parseSites([sites])
        )

    def test_parallel(self) -> None:
        """
        Every domain is queried, once, before any answer arrives; the
        result fires when the last answer is in.
        """
        resolver = ManualResolver()
        d = self.lookup(resolver, "zen.example=127.0.0.[2..11]*3 bl.example zen.example*1 wl.example*-2")
        self.assertEqual(
            sorted(resolver.pending),
            sorted(f"{REVERSED}.{domain}" for domain in ("zen.example", "bl.example", "wl.example")),
        )
        self.assertNoResult(d)
        resolver.pending[f"{REVERSED}.bl.example"].callback(aRecords(f"{REVERSED}.bl.example", "127.0.0.2"))
        resolver.pending[f"{REVERSED}.wl.example"].errback(DNSNameError("nx"))
        self.assertNoResult(d)
        resolver.pending[f"{REVERSED}.zen.example"].callback(
            aRecords(f"{REVERSED}.zen.example", "127.0.0.4", "127.0.0.10", ttl=900)
        )
        result = self.successResultOf(d)
        self.assertEqual(result.score, 5)
        self.assertEqual(result.listedBy, "zen.example")
        self.assertEqual(result.ttl, 300)
        self.assertEqual(result.unanswered, ())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_retrySchedule(self) -> None:
        """
        Each query gets twisted.names' retry schedule cut to fit the
        overall timeout.
        """
        resolver = FakeResolver({})
        self.successResultOf(self.lookup(resolver, "zen.example", timeout=10))
        self.assertEqual(resolver.queries, [(f"{REVERSED}.zen.example", (1, 3, 6))])
        self.assertEqual(retrySchedule(10), (1, 3, 6))
        self.assertEqual(retrySchedule(1), (1,))
        self.assertEqual(retrySchedule(4), (1, 3))
        self.assertEqual(retrySchedule(100), (1, 3, 11, 45, 40))

    def test_listedLogged(self) -> None:
        """
        Each listing is logged in dnsblog's form, with every A record.
        """
        name = f"{REVERSED}.zen.example"
        resolver = FakeResolver({name: (["127.0.0.2", "127.0.0.4"], 300)})
        with capturedLogs() as events:
            result = self.successResultOf(self.lookup(resolver, "zen.example"))
        self.assertEqual(result.score, 1)
        self.assertEqual(
            [formatEvent(e) for e in events],
            [f"addr {CLIENT} listed by domain zen.example as 127.0.0.2 127.0.0.4"],
        )
        self.assertEqual(events[0]["log_level"], LogLevel.info)

    def test_nxdomain(self) -> None:
        """
        NXDOMAIN means not listed, silently; the SOA in the answer gives
        the negative TTL.
        """
        name = f"{REVERSED}.zen.example"
        message = dns.Message(rCode=dns.ENAME)
        message.authority = [
            dns.RRHeader("zen.example", dns.SOA, dns.IN, 900, dns.Record_SOA(minimum=120, ttl=900))
        ]
        resolver = FakeResolver({name: DNSNameError(message)})
        with capturedLogs() as events:
            result = self.successResultOf(self.lookup(resolver, "zen.example"))
        self.assertEqual((result.score, result.ttl, result.listedBy), (0, 120, None))
        self.assertEqual(result.answers["zen.example"], DNSBLAnswer((), 120))
        self.assertEqual(list(events), [])

    def test_errors(self) -> None:
        """
        A per-query timeout or another DNS error counts as not listed, with
        a warning each; the other domains still count.
        """
        resolver = FakeResolver(
            {
                f"{REVERSED}.slow.example": DNSQueryTimeoutError(f"{REVERSED}.slow.example"),
                f"{REVERSED}.broken.example": DNSServerError("SERVFAIL"),
                f"{REVERSED}.zen.example": (["127.0.0.2"], 600),
            }
        )
        with capturedLogs() as events:
            result = self.successResultOf(
                self.lookup(resolver, "slow.example*5 broken.example*5 zen.example")
            )
        self.assertEqual((result.score, result.ttl), (1, 600))
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(
            sorted(e["name"] for e in warnings),
            [f"{REVERSED}.broken.example", f"{REVERSED}.slow.example"],
        )
        self.assertTrue(all("lookup error for DNS query" in e["log_format"] for e in warnings))

    def test_resolverRaises(self) -> None:
        """
        A resolver that raises instead of returning a Deferred counts as an
        error, not as a crash.
        """

        class Raising:
            def lookupAddress(self, name: str, timeout: Sequence[int]) -> Deferred[Any]:
                raise RuntimeError("boom")

        with capturedLogs() as events:
            result = self.successResultOf(self.lookup(Raising(), "zen.example"))
        self.assertEqual(result.score, 0)
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.warn]), 1)

    def test_timeout(self) -> None:
        """
        A DNSBL that never answers: the result fires at exactly the
        timeout, scored from the answers that came, the slow one counted
        as not listed with one warning and its query cancelled.
        """
        resolver = FakeResolver(
            {
                f"{REVERSED}.zen.example": (["127.0.0.2"], 600),
                f"{REVERSED}.hang.example": None,
                f"{REVERSED}.hang2.example": None,
            }
        )
        with capturedLogs() as events:
            d = self.lookup(resolver, "zen.example*2 hang.example*5 hang2.example", timeout=10)
            self.clock.advance(9.999)
            self.assertNoResult(d)
            self.clock.advance(0.001)
            result = self.successResultOf(d)
        self.assertEqual(result.score, 2)
        self.assertEqual(result.ttl, 600)
        self.assertEqual(result.unanswered, ("hang.example", "hang2.example"))
        self.assertEqual(
            sorted(resolver.cancelled), [f"{REVERSED}.hang.example", f"{REVERSED}.hang2.example"]
        )
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["unanswered"], ("hang.example", "hang2.example"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """
        Cancelling the lookup (the client hung up) cancels the queries and
        the timer.
        """
        resolver = FakeResolver({f"{REVERSED}.hang.example": None})
        d = self.lookup(resolver, "hang.example")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(resolver.cancelled, [f"{REVERSED}.hang.example"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noSites(self) -> None:
        """
        With no sites there is nothing to ask: score 0 at once.
        """
        resolver = FakeResolver({})
        result = self.successResultOf(self.lookup(resolver, ""))
        self.assertEqual((result.score, result.listedBy), (0, None))
        self.assertEqual(resolver.queries, [])

    def test_ipv6Client(self) -> None:
        """
        An IPv6 client is queried by its reversed nibbles.
        """
        resolver = FakeResolver({})
        DNSBLLookup(resolver, clock=self.clock, timeout=10).lookup("2001:db8::1", parseSites(["bl.example"]))
        self.assertEqual(
            resolver.queries[0][0],
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example",
        )

    def test_minMaxTTL(self) -> None:
        """
        The lookup bounds the TTL with its min and max TTL.
        """
        name = f"{REVERSED}.zen.example"
        resolver = FakeResolver({name: (["127.0.0.2"], 5)})
        lookup = DNSBLLookup(resolver, clock=self.clock, timeout=10, minTTL=30, maxTTL=100)
        self.assertEqual(self.successResultOf(lookup.lookup(CLIENT, parseSites(["zen.example"]))).ttl, 30)
