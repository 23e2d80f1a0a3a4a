"""
Tests for L{mtaguard.deadline}: Postfix's per-request deadline and minimum
data rate on one C{DelayedCall}, and L{hangUp}.

The attack scenarios (trickling peers) are in L{tests.test_trickle}; these
tests pin the API that the SMTP server and client are written against.
"""

from __future__ import annotations

import inspect
import math
from fractions import Fraction
from typing import Any, Callable

from hypothesis import given, settings, strategies as st
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from mtaguard import deadline as deadlineModule
from mtaguard.deadline import Deadline, hangUp

TIMEOUT_REPLY = b"421 4.4.2 mx.test.example Error: timeout exceeded\r\n"


def advance(clock: Clock, amount: float) -> None:
    """
    Advance C{clock} by C{amount} seconds, stopping at each due call so that
    C{clock.seconds()} inside a callback is the time it was due
    (C{Clock.advance} alone moves to the end first, then runs what is due).
    """
    end = clock.seconds() + amount
    while True:
        due = [call.getTime() for call in clock.getDelayedCalls() if call.getTime() <= end]
        if not due:
            break
        # Set the time rather than add the difference, which may round to
        # just short of the call.
        clock.rightNow = max(clock.rightNow, min(due))
        clock.advance(0)
    clock.rightNow = max(clock.rightNow, end)


class Harness:
    """
    A L{Deadline} on a L{Clock} that records when it expired.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.expiries: list[float] = []
        self.deadline = Deadline(clock=self.clock, expired=self._expired)

    def _expired(self) -> None:
        self.expiries.append(self.clock.seconds())

    def advance(self, amount: float) -> None:
        advance(self.clock, amount)


class DeadlineTests(SynchronousTestCase):
    """
    Tests for L{Deadline}.
    """

    def setUp(self) -> None:
        self.h = Harness()
        self.clock = self.h.clock
        self.deadline = self.h.deadline

    def test_idleUntilFirstRequest(self) -> None:
        """
        Before the first request there is no deadline: no timer, infinite
        budget, transfers and pauses do nothing.
        """
        self.assertEqual(self.deadline.remaining, math.inf)
        self.deadline.transferred(100)
        self.deadline.pause()
        self.deadline.resume()
        self.h.advance(10_000)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.h.expiries, [])

    def test_startRequestArms(self) -> None:
        """
        L{Deadline.startRequest} arms one timer for C{timeout} seconds, and
        the budget runs down while waiting.
        """
        self.deadline.startRequest(300, perRequest=True)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(self.deadline.remaining, 300)
        self.h.advance(100)
        self.assertEqual(self.deadline.remaining, 200)
        self.h.advance(200)
        self.assertEqual(self.h.expiries, [300])
        self.assertEqual(self.deadline.remaining, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_recharge(self) -> None:
        """
        Each L{Deadline.startRequest} recharges the budget to the full
        timeout (the top of each command, the start of DATA or BDAT).
        """
        self.deadline.startRequest(4, perRequest=True)
        self.h.advance(3)
        self.deadline.startRequest(4, perRequest=True)
        self.assertEqual(self.deadline.remaining, 4)
        self.h.advance(3.5)
        self.assertEqual(self.h.expiries, [])
        self.h.advance(0.5)
        self.assertEqual(self.h.expiries, [7])

    def test_commandEarnsNothing(self) -> None:
        """
        With C{minDataRate=0} (commands) transfers only charge the time
        waited: they add nothing.
        """
        self.deadline.startRequest(4, perRequest=True)
        self.h.advance(1)
        self.deadline.transferred(10_000)
        self.assertEqual(self.deadline.remaining, 3)

    def test_credit(self) -> None:
        """
        With a minimum rate each transfer of N bytes adds N / rate seconds
        after the time waited is charged.
        """
        self.deadline.startRequest(4, perRequest=True, minDataRate=500)
        self.h.advance(2)
        self.deadline.transferred(500)
        self.assertEqual(self.deadline.remaining, 3)
        self.h.advance(2.5)
        self.deadline.transferred(250)
        self.assertEqual(self.deadline.remaining, 1)
        self.h.advance(1)
        self.assertEqual(self.h.expiries, [5.5])

    def test_capAtTimeout(self) -> None:
        """
        The credit never takes the budget beyond the timeout.
        """
        self.deadline.startRequest(4, perRequest=True, minDataRate=1)
        self.h.advance(1)
        self.deadline.transferred(1_000_000)
        self.assertEqual(self.deadline.remaining, 4)
        self.h.advance(4)
        self.assertEqual(self.h.expiries, [5])

    def test_exhaustedBudgetNotRefilled(self) -> None:
        """
        Data handled in the same reactor turn as the expiry, before the timer
        ran, does not rescue the request: only L{Deadline.startRequest} does.
        """
        self.deadline.startRequest(4, perRequest=True, minDataRate=1)
        # The reactor noticed I/O before timers: time has passed the
        # deadline, the timer has not run yet.
        self.clock.rightNow = 5
        self.deadline.transferred(1000)
        self.deadline.pause()
        self.deadline.transferred(1000)
        self.deadline.resume()
        self.clock.advance(0)
        self.assertEqual(self.h.expiries, [5])

    def test_perIOTimeout(self) -> None:
        """
        With C{perRequest} off, the timeout applies to each wait: every
        transfer restarts it at the full value, whatever the rate.
        """
        self.deadline.startRequest(4, perRequest=False, minDataRate=500)
        for _ in range(100):
            self.h.advance(3.9)
            self.deadline.transferred(1)
            self.assertAlmostEqual(self.deadline.remaining, 4, places=9)
        self.h.advance(4)
        [expiredAt] = self.h.expiries
        self.assertAlmostEqual(expiredAt, 394, places=9)

    def test_perIOZeroBytes(self) -> None:
        """
        A transfer of zero bytes is no activity: it does not restart the
        per-I/O timeout.
        """
        self.deadline.startRequest(4, perRequest=False)
        self.h.advance(3)
        self.deadline.transferred(0)
        self.h.advance(1)
        self.assertEqual(self.h.expiries, [4])

    def test_pauseStopsCharging(self) -> None:
        """
        Time while paused is not charged, and no timer exists meanwhile.
        """
        self.deadline.startRequest(4, perRequest=True)
        self.h.advance(1)
        self.deadline.pause()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.h.advance(1000)
        self.assertEqual(self.deadline.remaining, 3)
        self.deadline.resume()
        self.h.advance(2.5)
        self.assertEqual(self.deadline.remaining, 0.5)
        self.h.advance(1)
        self.assertEqual(self.h.expiries, [1004])

    def test_nestedPauses(self) -> None:
        """
        Pauses nest: charging resumes only with the last L{Deadline.resume}.
        """
        self.deadline.startRequest(4, perRequest=True)
        self.deadline.pause()
        self.deadline.pause()
        self.deadline.resume()
        self.h.advance(100)
        self.assertEqual(self.deadline.remaining, 4)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.deadline.resume()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.h.advance(4)
        self.assertEqual(self.h.expiries, [104])

    def test_unbalancedResume(self) -> None:
        """
        A L{Deadline.resume} without a L{Deadline.pause} is a bug in the
        caller and raises L{RuntimeError}.
        """
        self.deadline.startRequest(4, perRequest=True)
        self.assertRaises(RuntimeError, self.deadline.resume)
        self.deadline.pause()
        self.deadline.resume()
        self.assertRaises(RuntimeError, self.deadline.resume)

    def test_creditWhilePaused(self) -> None:
        """
        Data that arrives while paused (already buffered) still earns its
        credit, capped at the timeout.
        """
        self.deadline.startRequest(4, perRequest=True, minDataRate=100)
        self.h.advance(3)
        self.deadline.pause()
        self.deadline.transferred(150)
        self.assertEqual(self.deadline.remaining, 2.5)
        self.deadline.transferred(1000)
        self.assertEqual(self.deadline.remaining, 4)

    def test_perIOResumeRestarts(self) -> None:
        """
        With C{perRequest} off, the wait after a pause is a new I/O call and
        gets the full timeout, as each Postfix read does.
        """
        self.deadline.startRequest(4, perRequest=False)
        self.h.advance(3)
        self.deadline.pause()
        self.deadline.resume()
        self.assertEqual(self.deadline.remaining, 4)

    def test_startRequestWhilePaused(self) -> None:
        """
        A request started while paused is charged from the last
        L{Deadline.resume}.
        """
        self.deadline.startRequest(4, perRequest=True)
        self.h.advance(3)
        self.deadline.pause()
        self.deadline.startRequest(10, perRequest=True)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.h.advance(50)
        self.deadline.resume()
        self.h.advance(10)
        self.assertEqual(self.h.expiries, [63])

    def test_expiresOnce(self) -> None:
        """
        C{expired} is called exactly once per request, whatever happens
        after it, and again after a new L{Deadline.startRequest}.
        """
        self.deadline.startRequest(4, perRequest=True, minDataRate=1)
        self.h.advance(5)
        self.assertEqual(self.h.expiries, [4])
        self.deadline.transferred(100)
        self.deadline.pause()
        self.deadline.resume()
        self.h.advance(100)
        self.assertEqual(self.h.expiries, [4])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.deadline.startRequest(4, perRequest=False)
        self.h.advance(10)
        self.assertEqual(self.h.expiries, [4, 109])

    def test_expiredMayStartRequest(self) -> None:
        """
        The C{expired} callback may start a new request at once (a protocol
        that replies and goes on): the new timer is armed.
        """
        clock = Clock()
        expiries: list[float] = []

        def expired() -> None:
            expiries.append(clock.seconds())
            if len(expiries) < 3:
                deadline.startRequest(2, perRequest=True)

        deadline = Deadline(clock=clock, expired=expired)
        deadline.startRequest(2, perRequest=True)
        advance(clock, 100)
        self.assertEqual(expiries, [2, 4, 6])

    def test_cancel(self) -> None:
        """
        L{Deadline.cancel} leaves no timer behind, and every later call is
        ignored, so a callback that completes after the disconnect cannot
        re-arm it.
        """
        self.deadline.startRequest(4, perRequest=True, minDataRate=500)
        self.h.advance(1)
        self.deadline.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.deadline.remaining, 3)
        self.deadline.startRequest(4, perRequest=True)
        self.deadline.transferred(10)
        self.deadline.pause()
        self.deadline.resume()
        self.deadline.cancel()
        self.h.advance(100)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.h.expiries, [])

    def test_cancelWhilePaused(self) -> None:
        """
        A deadline cancelled while paused stays without a timer on resume.
        """
        self.deadline.startRequest(4, perRequest=True)
        self.deadline.pause()
        self.deadline.cancel()
        self.deadline.resume()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_oneDelayedCall(self) -> None:
        """
        Across 10,000 transfers, in each mode, there is one C{DelayedCall},
        the same object moved rather than one per byte.
        """
        for perRequest, rate in [(False, 0), (True, 0), (True, 500), (True, 1)]:
            with self.subTest(perRequest=perRequest, rate=rate):
                h = Harness()
                h.deadline.startRequest(300, perRequest=perRequest, minDataRate=rate)
                [call] = h.clock.getDelayedCalls()
                for _ in range(10_000):
                    h.clock.advance(0.001)
                    h.deadline.transferred(1)
                    self.assertEqual(h.clock.getDelayedCalls(), [call])
                self.assertTrue(call.active())

    def test_oneDelayedCallPerDeadline(self) -> None:
        """
        Many deadlines on one clock cost one C{DelayedCall} each.
        """
        clock = Clock()
        deadlines = [Deadline(clock=clock, expired=lambda: None) for _ in range(100)]
        for d in deadlines:
            d.startRequest(10, perRequest=True, minDataRate=500)
        for _ in range(100):
            clock.advance(0.01)
            for d in deadlines:
                d.transferred(5)
        self.assertEqual(len(clock.getDelayedCalls()), 100)

    def test_neverResetSooner(self) -> None:
        """
        A deadline that moves sooner (a shorter timeout for the next request)
        replaces its C{DelayedCall} instead of C{reset()}ting it, because the
        reactor finds a call moved sooner by a linear search of its heap.
        Moving later uses C{reset()}, which the reactor applies lazily.
        """
        resets: list[tuple[float, float]] = []
        realCallLater = self.clock.callLater

        def callLater(
            delay: float, callable: Callable[..., object], *args: object, **kw: object
        ) -> IDelayedCall:
            call = realCallLater(delay, callable, *args, **kw)
            realReset = call.reset

            def reset(secondsFromNow: float) -> None:
                resets.append((call.getTime(), self.clock.seconds() + secondsFromNow))
                realReset(secondsFromNow)

            call.reset = reset  # type: ignore[method-assign]
            return call

        self.clock.callLater = callLater  # type: ignore[method-assign]
        self.deadline.startRequest(300, perRequest=True)
        [first] = self.clock.getDelayedCalls()
        self.deadline.startRequest(10, perRequest=True)
        [second] = self.clock.getDelayedCalls()
        self.assertIsNot(first, second)
        self.assertFalse(first.active())
        self.assertEqual(second.getTime(), 10)
        self.h.advance(5)
        self.deadline.startRequest(300, perRequest=False)
        # A later expiry does not touch the timer (per-read cost is two
        # assignments); the call moves on when it fires early.
        self.assertEqual(self.clock.getDelayedCalls(), [second])
        self.assertEqual(second.getTime(), 10)
        self.h.advance(5)
        [third] = self.clock.getDelayedCalls()
        self.assertEqual(third.getTime(), 305)
        self.assertEqual(self.h.expiries, [])
        for old, new in resets:
            self.assertGreater(new, old)

    def test_invalidArguments(self) -> None:
        """
        Timeouts must be positive and finite, rates and byte counts not
        negative.
        """
        for timeout in [0, -1, math.inf, math.nan]:
            self.assertRaises(ValueError, self.deadline.startRequest, timeout, perRequest=True)
        self.assertRaises(ValueError, self.deadline.startRequest, 4, perRequest=True, minDataRate=-1)
        self.deadline.startRequest(4, perRequest=True)
        self.assertRaises(ValueError, self.deadline.transferred, -1)

    def test_noGlobalReactor(self) -> None:
        """
        The module never touches the global reactor; time is injected.
        """
        source = inspect.getsource(deadlineModule)
        self.assertNotIn("import reactor", source)
        self.assertNotIn("internet.reactor", source)


class HangUpTests(SynchronousTestCase):
    """
    Tests for L{hangUp}.
    """

    def test_replyLoseAbort(self) -> None:
        """
        L{hangUp} writes the reply, calls C{loseConnection}, and aborts the
        connection after the grace period if it is still there.
        """
        clock = Clock()
        transport = StringTransport()
        call = hangUp(transport, clock, TIMEOUT_REPLY, grace=10)
        self.assertEqual(transport.value(), TIMEOUT_REPLY)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        assert call is not None
        self.assertEqual(clock.getDelayedCalls(), [call])
        clock.advance(9.9)
        self.assertFalse(transport.disconnected)
        clock.advance(0.1)
        self.assertTrue(transport.disconnected)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_defaultGrace(self) -> None:
        """
        The grace period is 10 seconds unless given.
        """
        clock = Clock()
        transport = StringTransport()
        call = hangUp(transport, clock, TIMEOUT_REPLY)
        assert call is not None
        self.assertEqual(call.getTime(), 10)

    def test_cancelledInConnectionLost(self) -> None:
        """
        Cancelling the returned call (as C{connectionLost} must) prevents
        the abort and leaves no timer behind.
        """
        clock = Clock()
        transport = StringTransport()
        call = hangUp(transport, clock, None)
        self.assertEqual(transport.value(), b"")
        assert call is not None
        call.cancel()
        clock.advance(100)
        self.assertFalse(transport.disconnected)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_noAbortConnection(self) -> None:
        """
        A transport without C{abortConnection} is closed with
        C{loseConnection} alone, and no timer is scheduled.
        """

        class Minimal:
            def __init__(self) -> None:
                self.written: list[bytes] = []
                self.lost = False

            def write(self, data: bytes) -> None:
                self.written.append(data)

            def loseConnection(self) -> None:
                self.lost = True

        clock = Clock()
        transport = Minimal()
        self.assertIsNone(hangUp(transport, clock, TIMEOUT_REPLY))  # type: ignore[arg-type]
        self.assertEqual(transport.written, [TIMEOUT_REPLY])
        self.assertTrue(transport.lost)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_invalidGrace(self) -> None:
        """
        The grace period must be non-negative and finite.
        """
        for grace in [-1, math.inf, math.nan]:
            self.assertRaises(ValueError, hangUp, StringTransport(), Clock(), None, grace=grace)


#: A step of the property test: ("advance", seconds), ("transfer", bytes),
#: ("pause",), ("resume",), ("start", timeout, perRequest, rate), ("cancel",).
Step = tuple[Any, ...]

advanceSteps = st.tuples(st.just("advance"), st.floats(min_value=0, max_value=6, allow_nan=False))
transferSteps = st.tuples(st.just("transfer"), st.integers(min_value=0, max_value=3000))
startSteps = st.tuples(
    st.just("start"),
    st.floats(min_value=0.5, max_value=10, allow_nan=False),
    st.booleans(),
    st.one_of(st.just(0), st.sampled_from([1, 7, 500, 1000]), st.integers(0, 5000)),
)
# Weighted towards waiting and transfers, so that many sequences expire;
# cancel is terminal, so it is rare.
steps = st.one_of(
    advanceSteps,
    advanceSteps,
    advanceSteps,
    transferSteps,
    transferSteps,
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
    startSteps,
    st.sampled_from([("cancel",), ("advance", 1.0)]),
)
# Most sequences start a request first; some begin idle.
sequences = st.one_of(
    st.builds(lambda first, rest: [first, *rest], startSteps, st.lists(steps, min_size=10, max_size=60)),
    st.lists(steps, min_size=10, max_size=60),
)


class Model:
    """
    The reference model: Postfix's budget written plainly, in exact
    fractions, integrating charged time step by step.
    """

    def __init__(self) -> None:
        self.now = Fraction(0)
        self.active = False
        self.cancelled = False
        self.pauses = 0
        self.timeout = Fraction(0)
        self.perRequest = False
        self.rate = 0
        self.budget: Fraction | None = None  # None: no request yet
        self.expiries: list[Fraction] = []

    def charging(self) -> bool:
        return self.active and not self.pauses

    def advance(self, dt: Fraction) -> None:
        if self.charging():
            assert self.budget is not None
            if self.budget <= dt:
                self.expiries.append(self.now + self.budget)
                self.active = False
                self.budget = Fraction(0)
            else:
                self.budget -= dt
        self.now += dt

    def transfer(self, n: int) -> None:
        if not self.active or n == 0:
            return
        assert self.budget is not None
        if not self.perRequest:
            self.budget = self.timeout
        elif self.rate and self.budget > 0:
            self.budget = min(self.timeout, self.budget + Fraction(n, self.rate))

    def resume(self) -> None:
        self.pauses -= 1
        if not self.pauses and self.active and not self.perRequest:
            self.budget = self.timeout

    def start(self, timeout: Fraction, perRequest: bool, rate: int) -> None:
        if self.cancelled:
            return
        self.active = True
        self.timeout, self.perRequest, self.rate = timeout, perRequest, rate
        self.budget = timeout


TOLERANCE = 1e-9


class DeadlinePropertyTests(SynchronousTestCase):
    """
    L{Deadline} against the reference model, for arbitrary step sequences.
    """

    @settings(max_examples=400, deadline=None)
    @given(sequences)
    def test_matchesModel(self, sequence: list[Step]) -> None:
        """
        The deadline expires iff (and when) the model's charged time says
        so, its budget matches the model's after every step, and there is
        a C{DelayedCall} exactly while the model is charging.

        Floats cannot decide an expiry that the exact model puts within
        L{TOLERANCE} of the end of an advance, so the comparison stops at
        the first such step.
        """
        h = Harness()
        model = Model()
        for step in sequence:
            kind = step[0]
            if kind == "advance":
                dt = Fraction(step[1])
                if model.charging():
                    assert model.budget is not None
                    if abs(float(model.budget - dt)) < TOLERANCE:
                        break
                model.advance(dt)
                h.advance(float(step[1]))
            elif kind == "transfer":
                model.transfer(int(step[1]))
                h.deadline.transferred(int(step[1]))
            elif kind == "pause":
                model.pauses += 1
                h.deadline.pause()
            elif kind == "resume":
                if model.pauses:
                    model.resume()
                    h.deadline.resume()
                else:
                    self.assertRaises(RuntimeError, h.deadline.resume)
            elif kind == "start":
                _, timeout, perRequest, rate = step
                model.start(Fraction(timeout), bool(perRequest), int(rate))
                h.deadline.startRequest(timeout, perRequest=bool(perRequest), minDataRate=int(rate))
            else:
                model.cancelled, model.active = True, False
                h.deadline.cancel()

            self.assertEqual(len(h.expiries), len(model.expiries))
            for got, want in zip(h.expiries, model.expiries):
                self.assertAlmostEqual(got, float(want), delta=1e-6)
            self.assertEqual(len(h.clock.getDelayedCalls()), 1 if model.charging() else 0)
            if model.active:
                assert model.budget is not None
                self.assertAlmostEqual(h.deadline.remaining, float(model.budget), delta=1e-6)
            elif model.budget is None:
                self.assertEqual(h.deadline.remaining, math.inf)
            elif model.expiries and not model.cancelled:
                self.assertEqual(h.deadline.remaining, 0)
