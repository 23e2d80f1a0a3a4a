# -*- test-case-name: tests.test_deadline,tests.test_trickle -*-
"""
Postfix's per-request deadline and minimum data rate, for Twisted protocols.

Postfix enforces its I/O time limits inside its stream layer (C{vstream.c},
C{smtp_stream.c}): at each request boundary C{smtp_stream_setup(stream,
timeout, enable_deadline, min_data_rate)} either arms a classic per-I/O
timeout (every read or write may wait C{timeout} seconds, so a peer that
trickles one byte at a time stays connected forever), or recharges a budget of
C{timeout} seconds that every wait for the peer spends, and that each
transferred byte refills by C{1 / min_data_rate} seconds, never beyond
C{timeout}.  Time that the server spends on its own work is not charged.

L{Deadline} is that logic on top of one C{IDelayedCall}; the protocol tells it
where requests start, what was transferred and when the server is busy.
L{hangUp} ends a connection the way mtaguard must after a timeout: a best
effort reply, then C{loseConnection}, then C{abortConnection} for a peer that
does not read.

Nothing here imports the global reactor: the clock is always injected.
"""

from __future__ import annotations

import math
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport

__all__ = ["Deadline", "hangUp"]


class Deadline:
    """
    Postfix's per-request deadline and minimum data rate (vstream/smtp_stream
    semantics).

    States, in the terms of the methods below:

      - I{idle}: before the first L{startRequest}, after the budget ran out
        (until the next L{startRequest}) and after L{cancel} (for good).  No
        timer exists and L{transferred} does nothing.
      - I{waiting}: a request is running and nothing holds a L{pause}; time
        is charged, and the single C{DelayedCall} is scheduled for the moment
        the budget reaches zero.
      - I{paused}: a request is running and at least one L{pause} is
        outstanding; no time is charged and no timer exists.

    With C{perRequest} off, the budget is a classic per-I/O timeout: it
    restarts at the full C{timeout} on every transfer, and on L{resume},
    because Postfix gives every new read or write call the full timeout.

    Cost: at most one C{DelayedCall} per instance, ever.  A deadline that
    moves later is moved with C{reset()}, which the reactor applies lazily in
    constant time; one that moves sooner (only when L{startRequest} shortens
    the timeout) is cancelled and re-created, because C{reset()} to an
    earlier time makes the reactor search its heap linearly.
    """

    # Every connection holds one, idle ones included: no per-instance dict.
    __slots__ = (
        "_active",
        "_budget",
        "_call",
        "_cancelled",
        "_clock",
        "_expired",
        "_expiresAt",
        "_minDataRate",
        "_pauses",
        "_perRequest",
        "_scheduledAt",
        "_timeout",
    )

    def __init__(self, *, clock: IReactorTime, expired: Callable[[], None]) -> None:
        """
        @param clock: the source of time and of the C{DelayedCall}.
        @param expired: called with no arguments when the budget of the
            current request reaches zero while the deadline is waiting;
            at most once per L{startRequest}.  Typically it replies C{421}
            and calls L{hangUp}.
        """
        self._clock = clock
        self._expired = expired
        self._timeout = 0.0
        self._perRequest = False
        self._minDataRate = 0
        # A request is running (startRequest seen, not expired, not cancelled).
        self._active = False
        self._cancelled = False
        self._pauses = 0
        # While waiting the budget is kept as the absolute time it runs out
        # (_expiresAt), so that charging the waited time costs nothing; while
        # paused, as the seconds left (_budget).
        self._expiresAt = 0.0
        self._budget = math.inf
        self._call: IDelayedCall | None = None
        # When _call is due, as we asked for it: comparing with
        # _call.getTime() instead would see rounding differences as moves.
        self._scheduledAt = 0.0

    @property
    def remaining(self) -> float:
        """
        The budget left now, in seconds (for tests and logs): C{math.inf}
        before the first L{startRequest}, C{0.0} once it has expired, and
        the budget as it was when L{cancel} was called after that.
        """
        if not self._active:
            return self._budget
        if self._pauses:
            return self._budget
        # Clamped to the timeout because (now + timeout) - now may round up.
        return min(self._timeout, max(0.0, self._expiresAt - self._clock.seconds()))

    def startRequest(self, timeout: float, *, perRequest: bool, minDataRate: int = 0) -> None:
        """
        A request boundary (Postfix's C{smtp_stream_setup}): the top of each
        command (C{minDataRate=0}, so that a command line earns no time), the
        start of DATA content and of each BDAT chunk (C{minDataRate} set to
        C{smtpd_min_data_rate}).  Recharges the budget to C{timeout}, and
        re-arms a deadline that had expired.  Ignored after L{cancel}.

        @param timeout: the budget, or the per-I/O timeout, in seconds.
        @param perRequest: C{True} for Postfix's C{*_per_request_deadline =
            yes}; C{False} for the classic per-I/O timeout.
        @param minDataRate: bytes per second that earn one second of budget;
            C{0} earns nothing.  Only used with C{perRequest}.
        @raise ValueError: if C{timeout} is not positive and finite, or
            C{minDataRate} is negative.
        """
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be positive and finite, not {timeout!r}")
        if minDataRate < 0:
            raise ValueError(f"minDataRate must not be negative, not {minDataRate!r}")
        if self._cancelled:
            # A callback that finishes after the connection is gone must not
            # leave a timer behind.
            return
        self._timeout = float(timeout)
        self._perRequest = perRequest
        self._minDataRate = minDataRate
        self._active = True
        self._budget = self._timeout
        if not self._pauses:
            self._wait(self._clock.seconds() + self._timeout)

    def transferred(self, byteCount: int) -> None:
        """
        A read (or write) of C{byteCount} bytes completed.

        With C{perRequest}: the time waited since the last charge is spent
        (implicitly: the budget is held as an absolute expiry time), then
        C{byteCount / minDataRate} seconds are added if C{minDataRate > 0},
        capped at C{timeout}.  A budget already used up is not refilled:
        only L{startRequest} does that, so a byte that arrives in the same
        reactor turn as the expiry does not rescue the request.

        Without C{perRequest}: the per-I/O timer restarts at C{timeout}.

        Zero bytes transfer nothing and change nothing.  Ignored when no
        request is running.

        @raise ValueError: if C{byteCount} is negative.
        """
        if byteCount < 0:
            raise ValueError(f"byteCount must not be negative, not {byteCount!r}")
        if not self._active or byteCount == 0:
            return
        if not self._perRequest:
            self._budget = self._timeout
            if not self._pauses:
                self._wait(self._clock.seconds() + self._timeout)
            return
        if not self._minDataRate:
            # Charging alone leaves the expiry time where it is: no timer work,
            # which is what keeps a command line read byte by byte cheap.
            return
        credit = byteCount / self._minDataRate
        if self._pauses:
            if self._budget > 0:
                self._budget = min(self._timeout, self._budget + credit)
            return
        now = self._clock.seconds()
        if self._expiresAt <= now:
            return
        self._wait(min(self._expiresAt + credit, now + self._timeout))

    def pause(self) -> None:
        """
        The server itself is working (a pending lookup, a queue write): stop
        charging time until the matching L{resume}.  Pauses nest: time is
        charged again only when every L{pause} has had its L{resume}.
        """
        self._pauses += 1
        if self._pauses == 1 and self._active:
            self._budget = max(0.0, self._expiresAt - self._clock.seconds())
            self._dropCall()

    def resume(self) -> None:
        """
        Undo one L{pause}; after the last one the server waits for the peer
        again.  With C{perRequest} the budget left at L{pause} continues;
        without it, a new I/O wait starts with the full timeout, as each
        Postfix read or write call does.

        @raise RuntimeError: if there is no L{pause} to undo (a bug in the
            caller, which must not go unnoticed: it would otherwise stop
            charging time for good, or never again).
        """
        if not self._pauses:
            raise RuntimeError("Deadline.resume() without a matching pause()")
        self._pauses -= 1
        if self._pauses == 0 and self._active:
            if not self._perRequest:
                self._budget = self._timeout
            self._wait(self._clock.seconds() + self._budget)

    def cancel(self) -> None:
        """
        The connection is gone: remove the timer, and ignore every later call
        (a lookup that completes after the disconnect may still try to start
        the next request).  Idempotent.
        """
        if self._active:
            self._budget = self.remaining
        self._cancelled = True
        self._active = False
        self._dropCall()

    def _wait(self, expiresAt: float) -> None:
        """
        Charge time from now on, expiring at C{expiresAt}: schedule, move or
        replace the one C{DelayedCall}.
        """
        self._expiresAt = expiresAt
        call = self._call
        if call is None:
            delay = max(0.0, expiresAt - self._clock.seconds())
            self._call = self._clock.callLater(delay, self._timedOut)
            self._scheduledAt = expiresAt
        elif expiresAt < self._scheduledAt:
            # reset() to an earlier time is a linear search of the reactor's
            # heap; cancel() is constant and callLater() logarithmic.
            call.cancel()
            delay = max(0.0, expiresAt - self._clock.seconds())
            self._call = self._clock.callLater(delay, self._timedOut)
            self._scheduledAt = expiresAt
        # A later expiry leaves the call where it is: when it fires early,
        # _timedOut moves it on.  Every read extends the deadline, so this
        # keeps the per-read cost to two assignments.

    def _dropCall(self) -> None:
        """
        Cancel the C{DelayedCall}, if there is one.
        """
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _timedOut(self) -> None:
        """
        The C{DelayedCall} fired: the budget is used up.  The timer is the
        only authority on expiry (it is always moved when the expiry time
        moves), so no float comparison can make a deadline fire twice or not
        at all.
        """
        self._call = None
        now = self._clock.seconds()
        if self._expiresAt > now:
            # The deadline moved later since the call was scheduled.
            self._call = self._clock.callLater(self._expiresAt - now, self._timedOut)
            self._scheduledAt = self._expiresAt
            return
        self._active = False
        self._budget = 0.0
        self._expired()


def hangUp(
    transport: ITransport,
    clock: IReactorTime,
    reply: bytes | None,
    *,
    grace: float = 10.0,
) -> IDelayedCall | None:
    """
    End a connection after a timeout (or any other reason to drop the peer)
    so that its file descriptor cannot outlive us.

    Writes C{reply} (for example C{b"421 4.4.2 host Error: timeout
    exceeded\\r\\n"}) on a best-effort basis, calls C{loseConnection()}, and
    schedules C{abortConnection()} after C{grace} seconds:
    C{loseConnection()} waits for the write buffer to drain, which a peer that
    does not read never lets happen, and TLS shutdown may never complete.

    The caller must cancel the returned C{DelayedCall} in its
    C{connectionLost} (if it is still C{active()}), so that a connection that
    closed cleanly leaves no timer behind.

    @param transport: the connection to end.
    @param clock: schedules the abort.
    @param reply: bytes to write first, or C{None} to write nothing.
    @param grace: seconds to wait for a clean close before aborting.
    @return: the C{DelayedCall} that aborts the connection, or C{None} if
        the transport has no C{abortConnection} (then nothing more can be
        done than C{loseConnection}).
    @raise ValueError: if C{grace} is negative or not finite.
    """
    if not (grace >= 0 and math.isfinite(grace)):
        raise ValueError(f"grace must be non-negative and finite, not {grace!r}")
    if reply is not None:
        transport.write(reply)
    transport.loseConnection()
    # abortConnection belongs to ITCPTransport (TCP, TLS, the test
    # transports), not to ITransport.
    abort: Callable[[], None] | None = getattr(transport, "abortConnection", None)
    if abort is None:
        return None
    return clock.callLater(grace, abort)
