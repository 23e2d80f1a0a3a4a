# -*- test-case-name: tests.test_postscreen_dnsbl -*-
"""
The DNS side of the DNSBL check: every domain of C{postscreen_dnsbl_sites}
queried in parallel through twisted.names, the whole lookup bounded by
C{postscreen_dnsbl_timeout}, answers scored by
L{mtaguard.postscreen._dnsbl}.

This plays Postfix's dnsblog(8): it logs each listing as
C{addr %s listed by domain %s as %s}, and a lookup error as
C{dnsblog_query: lookup error for DNS query %s: %s}.  A domain that does
not answer in time, or answers with an error, counts as not listing the
client.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol, Sequence

import attr
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.names import dns
from twisted.names.error import DNSNameError
from twisted.python.failure import Failure

from mtaguard.postscreen._dnsbl import (
    DNSBLAnswer,
    DNSBLSite,
    evaluate,
    queryName,
    resultTTL,
    siteDomains,
)

_log = Logger()

#: twisted.names' own retry schedule, cut to fit the overall timeout.
_TWISTED_RETRIES = (1, 3, 11, 45)


class AddressResolver(Protocol):
    """
    The part of L{twisted.names.client.Resolver} used here (any
    C{IResolver} provides it).
    """

    def lookupAddress(self, name: str, timeout: Sequence[int]) -> Deferred[Any]:
        """
        Look up the A records of C{name}; fire with C{(answers, authority,
        additional)}, lists of L{dns.RRHeader}, or fail with
        L{DNSNameError} (NXDOMAIN) or another error.
        """


@attr.frozen
class DNSBLResult:
    """
    The outcome of one DNSBL lookup.

    @ivar score: the combined weight of the matching entries.
    @ivar ttl: how long the result may be cached, in seconds, already
        bounded by C{postscreen_dnsbl_min_ttl} and C{postscreen_dnsbl_max_ttl}.
    @ivar listedBy: the real domain of the matching entry with the highest
        weight, or L{None}; pass it through
        L{mtaguard.postscreen._dnsbl.rejectReply} to get the public name.
    @ivar answers: per domain that answered in time, its answer.
    @ivar unanswered: the domains that did not answer in time.
    """

    score: int
    ttl: int
    listedBy: Optional[str]
    answers: Mapping[str, DNSBLAnswer]
    unanswered: tuple[str, ...] = ()


def retrySchedule(timeout: int) -> tuple[int, ...]:
    """
    The per-query retry timeouts handed to twisted.names: its default
    schedule, cut so that all attempts fit in C{timeout} seconds (Twisted's
    default adds up to 60 s, far past C{postscreen_dnsbl_timeout}).

    >>> retrySchedule(10)
    (1, 3, 6)
    """
    schedule: list[int] = []
    spent = 0
    for step in _TWISTED_RETRIES:
        if spent + step >= timeout:
            break
        schedule.append(step)
        spent += step
    if timeout > spent:
        schedule.append(timeout - spent)
    return tuple(schedule)


def _negativeTTL(error: DNSNameError) -> Optional[int]:
    """
    The negative-caching TTL of an NXDOMAIN answer (RFC 2308: the smaller
    of the SOA record's TTL and its MINIMUM field), when twisted.names
    passed the message along.
    """
    message = error.args[0] if error.args else None
    if not isinstance(message, dns.Message):
        return None
    ttls: list[int] = []
    for record in message.authority:
        payload: object = record.payload
        if isinstance(payload, dns.Record_SOA):
            ttls.append(min(record.ttl, payload.minimum))
    return min(ttls) if ttls else None


def _answerFrom(result: Any) -> DNSBLAnswer:
    """
    The A records and their smallest TTL from a C{lookupAddress} result.
    """
    answers = result[0] if result else []
    records = [
        record
        for record in answers
        if record.type == dns.A and isinstance(record.payload, dns.Record_A)
    ]
    if not records:
        return DNSBLAnswer()
    return DNSBLAnswer(
        tuple(record.payload.dottedQuad() for record in records),
        min(record.ttl for record in records),
    )


class DNSBLLookup:
    """
    Look up clients in the DNSBL domains, all domains at once, the whole
    lookup bounded by a timeout.
    """

    def __init__(
        self,
        resolver: AddressResolver,
        *,
        clock: IReactorTime,
        timeout: int,
        minTTL: int = 60,
        maxTTL: int = 3600,
    ) -> None:
        """
        @param resolver: the DNS resolver (for production a bare
            C{twisted.names.client.Resolver}, without the hosts file).
        @param clock: the reactor's time.
        @param timeout: C{postscreen_dnsbl_timeout}, in seconds.
        @param minTTL: C{postscreen_dnsbl_min_ttl}, in seconds.
        @param maxTTL: C{postscreen_dnsbl_max_ttl}, in seconds (it defaults
            to the old C{postscreen_dnsbl_ttl} when that is set).
        """
        self._resolver = resolver
        self._clock = clock
        self._timeout = timeout
        self._retries = retrySchedule(timeout)
        self._minTTL = minTTL
        self._maxTTL = maxTTL

    def lookup(self, clientAddress: str, sites: Sequence[DNSBLSite]) -> Deferred[DNSBLResult]:
        """
        Query every domain of C{sites} for C{clientAddress} in parallel.

        The result fires when every domain answered, or at the timeout with
        what has answered by then (the others count as not listing the
        client, with one warning).  It never fails.  Cancelling it cancels
        the outstanding queries.
        """
        return _Lookup(self, clientAddress, sites).start()


class _Lookup:
    """
    One lookup in progress.
    """

    def __init__(self, owner: DNSBLLookup, clientAddress: str, sites: Sequence[DNSBLSite]) -> None:
        self._owner = owner
        self._client = clientAddress
        self._sites = sites
        self._answers: dict[str, DNSBLAnswer] = {}
        self._pending: dict[str, Deferred[Any]] = {}
        self._timer: Optional[IDelayedCall] = None
        self._done = False
        self._result: Deferred[DNSBLResult] = Deferred(self._cancel)

    def start(self) -> Deferred[DNSBLResult]:
        owner = self._owner
        domains = siteDomains(self._sites)
        names = {domain: queryName(self._client, domain) for domain in domains}
        # Every query is sent before any answer is handled: a resolver that
        # answers synchronously (a cache) must not serialize them.
        queries = {
            domain: maybeDeferred(owner._resolver.lookupAddress, names[domain], owner._retries)
            for domain in domains
        }
        self._pending = dict(queries)
        if domains:
            self._timer = owner._clock.callLater(owner._timeout, self._timedOut)
        for domain, query in queries.items():
            query.addCallbacks(
                self._answered,
                self._failed,
                callbackArgs=(domain,),
                errbackArgs=(domain, names[domain]),
            )
        # No domains, or every answer was already there.
        self._maybeFinish()
        return self._result

    def _answered(self, result: Any, domain: str) -> None:
        if self._done:
            return
        answer = _answerFrom(result)
        if answer.addresses:
            _log.info(
                "addr {client} listed by domain {domain} as {answer}",
                client=self._client,
                domain=domain,
                answer=" ".join(answer.addresses),
                addresses=answer.addresses,
                ttl=answer.ttl,
            )
        self._record(domain, answer)

    def _failed(self, failure: Failure, domain: str, name: str) -> None:
        if self._done:
            # Cancelled by the timeout or by our caller: already accounted.
            return
        error = failure.value
        if isinstance(error, DNSNameError):
            self._record(domain, DNSBLAnswer((), _negativeTTL(error)))
            return
        _log.warn(
            "dnsblog_query: lookup error for DNS query {name}: {reason}",
            name=name,
            domain=domain,
            reason=failure.getErrorMessage() or type(error).__name__,
            client=self._client,
        )
        self._pending.pop(domain, None)
        self._maybeFinish()

    def _record(self, domain: str, answer: DNSBLAnswer) -> None:
        self._answers[domain] = answer
        self._pending.pop(domain, None)
        self._maybeFinish()

    def _maybeFinish(self) -> None:
        if not self._pending and not self._done:
            self._finish()

    def _timedOut(self) -> None:
        self._timer = None
        slow = tuple(self._pending)
        _log.warn(
            "DNSBL lookup for {client}: no reply from {domains} within {timeout}s;"
            " counted as not listed",
            client=self._client,
            domains=", ".join(slow),
            timeout=self._owner._timeout,
            unanswered=slow,
        )
        self._finish(slow)

    def _finish(self, unanswered: tuple[str, ...] = ()) -> None:
        self._done = True
        self._stop()
        owner = self._owner
        scored = evaluate(self._answers, self._sites)
        self._result.callback(
            DNSBLResult(
                score=scored.score,
                ttl=resultTTL(scored, minTTL=owner._minTTL, maxTTL=owner._maxTTL),
                listedBy=scored.listedBy,
                answers=dict(self._answers),
                unanswered=unanswered,
            )
        )

    def _stop(self) -> None:
        """
        Cancel the timer and every outstanding query.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        for query in pending.values():
            query.addErrback(_ignoreCancel)
            query.cancel()

    def _cancel(self, result: Deferred[DNSBLResult]) -> None:
        # Our caller gave up (the client hung up): the Deferred fails with
        # CancelledError once this returns.
        self._done = True
        self._stop()


def _ignoreCancel(failure: Failure) -> None:
    failure.trap(CancelledError)
