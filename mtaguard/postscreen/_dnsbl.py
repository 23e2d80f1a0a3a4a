# -*- test-case-name: tests.test_postscreen_dnsbl -*-
"""
The DNSBL check's arithmetic, without I/O: C{postscreen_dnsbl_sites}
parsing, query names, scoring, the verdict, the cache TTL and the reject
reply, as Postfix's C{postscreen_dnsbl.c} computes them.

The DNS side (queries in parallel, timeouts, errors) is
L{mtaguard.postscreen._dnsbllookup}.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, Literal, Mapping, Optional, Protocol, Sequence

import attr


class DNSBLSyntaxError(ValueError):
    """
    A C{postscreen_dnsbl_sites} entry is malformed.  Postfix treats each of
    these as fatal at start-up; the message is Postfix's.
    """


class ReplyMap(Protocol):
    """
    What L{replyDomain} needs of C{postscreen_dnsbl_reply_map}: a lookup
    table (L{mtaguard.client._tables.TableList} is one).
    """

    def lookup(self, key: str) -> Optional[str]:
        """
        The value stored under C{key}, or L{None}.
        """


#: One octet of a filter: the set of values it accepts.
_Octet = frozenset[int]

_NUMBER = re.compile(r"[0-9]+")
_WEIGHT = re.compile(r"[+-]?[0-9]+")
#: Postfix's valid_hostname(): labels of letters, digits, C{-} and C{_}
#: (not starting or ending with C{-}), up to 63 octets each, 255 in all,
#: not all numeric.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


@attr.frozen
class AddressFilter:
    """
    A DNSBL reply filter such as C{127.0.0.[2..11]} or C{127.0.[0..255].[2;4]}.

    @ivar text: the filter as written.
    @ivar octets: per octet, the values accepted.
    """

    text: str
    octets: tuple[_Octet, _Octet, _Octet, _Octet]

    def matches(self, address: str) -> bool:
        """
        Whether the IPv4 address C{address} (dotted quad) passes the filter.
        Anything that is not a dotted quad does not.
        """
        parts = address.split(".")
        if len(parts) != 4:
            return False
        for part, accepted in zip(parts, self.octets):
            if not _NUMBER.fullmatch(part) or int(part) not in accepted:
                return False
        return True


def _filterError(text: str, reason: str) -> DNSBLSyntaxError:
    return DNSBLSyntaxError(f"bad DNSBL filter syntax: {text}: {reason}")


def _parseNumber(text: str, whole: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise _filterError(whole, f"need a number in 0..255, found {text!r}")
    value = int(text)
    if value > 255:
        raise _filterError(whole, f"numeric range error: {text}")
    return value


def _parseOctet(text: str, whole: str) -> _Octet:
    if not text.startswith("["):
        if "]" in text or ";" in text or ".." in text:
            raise _filterError(whole, f"need \"[\" before {text!r}")
        return frozenset({_parseNumber(text, whole)})
    if not text.endswith("]"):
        raise _filterError(whole, 'need ";" or "]"')
    body = text[1:-1]
    if not body:
        raise _filterError(whole, "empty \"[]\"")
    values: set[int] = set()
    for item in body.split(";"):
        low, dots, high = item.partition("..")
        if dots:
            first = _parseNumber(low, whole)
            last = _parseNumber(high, whole)
            if first > last:
                raise _filterError(whole, f"numeric range error: {item}")
            values.update(range(first, last + 1))
        else:
            values.add(_parseNumber(item, whole))
    return frozenset(values)


def parseFilter(text: str) -> AddressFilter:
    """
    Parse a reply filter: four dot-separated fields, each a number 0..255
    or C{[} C{;}-separated numbers and C{n..m} ranges C{]}.

    @raise DNSBLSyntaxError: the filter is malformed.
    """
    # Split at the dots that separate fields, not the ones in "n..m".
    fields: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "[":
            depth += 1
            if depth > 1:
                raise _filterError(text, 'need ";" or "]"')
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise _filterError(text, 'unexpected "]"')
        if char == "." and depth == 0:
            fields.append("".join(current))
            current = []
            continue
        current.append(char)
    if depth:
        raise _filterError(text, 'need ";" or "]"')
    fields.append("".join(current))
    if len(fields) != 4:
        raise _filterError(text, "need four address fields")
    a, b, c, d = (_parseOctet(field, text) for field in fields)
    return AddressFilter(text, (a, b, c, d))


def _validHostname(name: str) -> bool:
    if not name or len(name) > 255 or name.endswith("."):
        return False
    labels = name.split(".")
    if all(label.isdigit() for label in labels):
        return False
    return all(_LABEL.fullmatch(label) for label in labels)


@attr.frozen
class DNSBLSite:
    """
    One entry of C{postscreen_dnsbl_sites}: C{domain[=filter][*weight]}.

    @ivar domain: the DNS zone queried.
    @ivar filter: the reply filter, or L{None} for "any A record".
    @ivar weight: added to the score when the entry matches (negative for
        allowlists).
    @ivar text: the entry as written.
    """

    domain: str
    filter: Optional[AddressFilter]
    weight: int
    text: str

    def matches(self, addresses: Iterable[str]) -> bool:
        """
        Whether any of the A records C{addresses} matches this entry.
        """
        if self.filter is None:
            return any(True for _ in addresses)
        return any(self.filter.matches(address) for address in addresses)


def parseSite(text: str) -> DNSBLSite:
    """
    Parse one C{domain[=filter][*weight]} entry, in Postfix's order: the
    weight is split off at C{*} first, then the filter at C{=}.

    @raise DNSBLSyntaxError: with Postfix's message.
    """
    rest, star, weightText = text.partition("*")
    weight = 1
    if star:
        if not _WEIGHT.fullmatch(weightText):
            raise DNSBLSyntaxError(f'bad DNSBL weight factor "{weightText}" in "{text}"')
        weight = int(weightText)
    domain, equals, filterText = rest.partition("=")
    siteFilter = parseFilter(filterText) if equals else None
    if not _validHostname(domain):
        raise DNSBLSyntaxError(f'bad DNSBL domain name "{domain}" in "{text}"')
    return DNSBLSite(domain, siteFilter, weight, text)


def parseSites(items: Iterable[str]) -> tuple[DNSBLSite, ...]:
    """
    Parse C{postscreen_dnsbl_sites} as the parameter view returns it (one
    item per entry; items are split again at commas and white space, so a
    raw value works too).  A domain may appear several times, each entry
    with its own filter and weight; each counts on its own.

    @raise DNSBLSyntaxError: an entry is malformed.
    """
    return tuple(
        parseSite(entry) for item in items for entry in re.split(r"[\s,]+", item) if entry
    )


def siteDomains(sites: Iterable[DNSBLSite]) -> tuple[str, ...]:
    """
    The distinct domains to query, in configuration order: one query per
    domain however many entries name it, as Postfix sends one request per
    domain to dnsblog.
    """
    return tuple(dict.fromkeys(site.domain for site in sites))


def queryName(clientAddress: str, domain: str) -> str:
    """
    The name to look up: the client's IPv4 octets or IPv6 nibbles
    reversed, then the domain (C{5.113.0.203.zen.example},
    C{1.0.0.0....8.b.d.0.1.0.0.2.zen.example}).  An IPv4-mapped IPv6
    address is queried as its IPv4 address.

    @raise ValueError: C{clientAddress} is not an IP address.
    """
    address = ipaddress.ip_address(clientAddress.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        reversed_ = ".".join(reversed(str(address).split(".")))
    else:
        reversed_ = ".".join(reversed(address.exploded.replace(":", "")))
    return f"{reversed_}.{domain}"


@attr.frozen
class DNSBLAnswer:
    """
    What one DNSBL domain said about the client.

    @ivar addresses: the A records (empty: not listed).
    @ivar ttl: the answer's TTL in seconds (smallest over its records; for
        "not listed", the negative-caching TTL when known), or L{None} when
        unknown (timeout, error, or no SOA in an NXDOMAIN).
    """

    addresses: tuple[str, ...] = ()
    ttl: Optional[int] = None


@attr.frozen
class DNSBLScore:
    """
    The combined result of the answers, before TTL clamping.

    @ivar score: the sum of the weights of the matching entries.
    @ivar failTTL: smallest TTL of answers that count against the client
        (listed by a positive-weight entry, or not listed by a
        negative-weight one), or L{None}.
    @ivar passTTL: smallest TTL of the opposite answers, or L{None}.
    @ivar listedBy: the domain of the matching entry with the highest
        weight (the first such in configuration order), or L{None}: the
        name shown, after C{postscreen_dnsbl_reply_map}, in rejections.
    @ivar matched: the matching entries, in configuration order.
    """

    score: int
    failTTL: Optional[int]
    passTTL: Optional[int]
    listedBy: Optional[str]
    matched: tuple[DNSBLSite, ...]


def _minimum(current: Optional[int], ttl: Optional[int]) -> Optional[int]:
    if ttl is None:
        return current
    return ttl if current is None else min(current, ttl)


def evaluate(answers: Mapping[str, DNSBLAnswer], sites: Sequence[DNSBLSite]) -> DNSBLScore:
    """
    Score the answers as Postfix does: every entry whose filter matches
    I{any} address its domain returned adds its weight I{once}; the
    reported domain is that of the highest matching weight.  Domains
    without an answer (timed out, failed) count as not listed and
    contribute no TTL.

    @param answers: per domain queried, its answer.
    @param sites: the parsed C{postscreen_dnsbl_sites}.
    """
    total = 0
    failTTL: Optional[int] = None
    passTTL: Optional[int] = None
    listedBy: Optional[str] = None
    bestWeight = 0
    matched: list[DNSBLSite] = []
    for site in sites:
        answer = answers.get(site.domain)
        if answer is None:
            continue
        hit = site.matches(answer.addresses)
        if hit:
            total += site.weight
            matched.append(site)
            if listedBy is None or bestWeight < site.weight:
                listedBy, bestWeight = site.domain, site.weight
        # A hit on a blocklist or a miss on an allowlist speaks against the
        # client; the opposite speaks for it.
        if hit == (site.weight > 0):
            failTTL = _minimum(failTTL, answer.ttl)
        else:
            passTTL = _minimum(passTTL, answer.ttl)
    return DNSBLScore(total, failTTL, passTTL, listedBy, tuple(matched))


def score(answers: Mapping[str, Sequence[str]], sites: Sequence[DNSBLSite]) -> int:
    """
    The DNSBL score for the A records each domain returned (see
    L{evaluate}).
    """
    return evaluate(
        {domain: DNSBLAnswer(tuple(addresses)) for domain, addresses in answers.items()},
        sites,
    ).score


def resultTTL(result: DNSBLScore, *, minTTL: int, maxTTL: int) -> int:
    """
    How long the DNSBL result may be cached: C{failTTL} when the score is
    positive, else C{passTTL}, bounded by C{postscreen_dnsbl_min_ttl} and
    C{postscreen_dnsbl_max_ttl}.  With no TTL known (nothing answered) the
    result is C{maxTTL}; C{postscreen_dnsbl_max_ttl}'s default is the old
    C{postscreen_dnsbl_ttl} when that is set, so the parameter view already
    gives the right value.
    """
    ttl = result.failTTL if result.score > 0 else result.passTTL
    if ttl is None:
        ttl = maxTTL
    return max(minTTL, min(ttl, maxTTL))


Verdict = Literal["fail", "allowlist", "pass"]


def verdict(score: int, threshold: int, allowlistThreshold: int) -> Verdict:
    """
    The DNSBL verdict: C{"fail"} when C{score >= threshold}; otherwise
    C{"allowlist"} when allowlisting is on (C{allowlistThreshold < 0}) and
    C{score <= allowlistThreshold} (the session then marks every other test
    passed, unless another test failed); otherwise C{"pass"}.
    """
    if score >= threshold:
        return "fail"
    if allowlistThreshold < 0 and score <= allowlistThreshold:
        return "allowlist"
    return "pass"


def replyDomain(domain: str, replyMap: Optional[ReplyMap]) -> str:
    """
    The name shown for C{domain} in replies: its value in
    C{postscreen_dnsbl_reply_map} (keyed by the bare domain, as written in
    C{postscreen_dnsbl_sites} without filter and weight), else the domain
    itself.
    """
    if replyMap is not None:
        public = replyMap.lookup(domain)
        if public is not None:
            return public
    return domain


def rejectReply(code: int, clientAddress: str, domain: str, replyMap: Optional[ReplyMap]) -> str:
    """
    The reply for a DNSBL failure, without CRLF: C{521} for C{drop},
    C{550} for C{enforce} (the session turns 5 into 4 under
    C{soft_bounce}).

    >>> rejectReply(550, "203.0.113.5", "zen.example", None)
    '550 5.7.1 Service unavailable; client [203.0.113.5] blocked using zen.example'
    """
    return (
        f"{code} 5.7.1 Service unavailable; client [{clientAddress}] blocked using "
        f"{replyDomain(domain, replyMap)}"
    )


#: The session's log line for a failure, rendered to Postfix's text.
RANK_LOG_FORMAT = "DNSBL rank {rank} for [{address}]:{port}"
