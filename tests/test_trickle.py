"""
Trickle (slowloris) regression tests: a peer that keeps a connection open by
sending a little data at a time must be cut off exactly where Postfix 3.7
cuts it off, and an honest slow peer must not be.

The scenarios mirror C{shared/reference/postfix.md} section 1.2: its
arithmetic and its live transcripts against Postfix 3.7.11 with
C{smtpd_timeout = 4s}.  Time is a L{Clock}; nothing sleeps.
"""

from __future__ import annotations

from typing import NamedTuple

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.deadline import Deadline
from tests.test_deadline import advance

#: What the client trickles in the live command transcripts.
EHLO = b"EHLO c.example\r\n"


class Trickle(NamedTuple):
    """
    One scenario: after C{startRequest(timeout, perRequest=..., minDataRate=
    rate)} the peer sends C{chunk} bytes every C{interval} seconds, C{chunks}
    times.
    """

    name: str
    timeout: float
    perRequest: bool
    rate: int
    chunk: int
    interval: float
    chunks: int
    #: Seconds after the request start at which the deadline expires, or
    #: C{None} if the peer gets all C{chunks} chunks through.
    expiresAt: float | None


def runTrickle(case: Trickle) -> tuple[float | None, int, float]:
    """
    Play C{case} against a L{Deadline}.

    @return: the time of expiry (or C{None}), the number of chunks that
        arrived before it, and the largest budget seen after a chunk.
    """
    clock = Clock()
    expiries: list[float] = []
    deadline = Deadline(clock=clock, expired=lambda: expiries.append(clock.seconds()))
    deadline.startRequest(case.timeout, perRequest=case.perRequest, minDataRate=case.rate)
    delivered = 0
    highest = deadline.remaining
    for _ in range(case.chunks):
        advance(clock, case.interval)
        if expiries:
            break
        deadline.transferred(case.chunk)
        delivered += 1
        highest = max(highest, deadline.remaining)
    deadline.cancel()
    return (expiries[0] if expiries else None), delivered, highest


def discreteExpiry(case: Trickle) -> float | None:
    """
    Where the deadline of C{case} must expire, worked out by hand rather than
    simulated: each wait costs C{interval}, each chunk then earns C{chunk /
    rate} (capped at C{timeout}), and the request dies in the first wait that
    is longer than the budget left.
    """
    credit = case.chunk / case.rate if case.rate else 0.0
    budget = case.timeout
    for k in range(case.chunks):
        if budget <= case.interval:
            return k * case.interval + budget
        budget = min(case.timeout, budget - case.interval + credit)
    return None


SCENARIOS = [
    # Live: "EHLO c.example\r\n" at 1 byte/s, smtpd_timeout=4s, deadline on:
    # 421 4.4.2 ... timeout exceeded at 4 s after the greeting.
    Trickle("command at 1 B/s, deadline on", 4, True, 0, 1, 1.0, len(EHLO), 4.0),
    # Live, deadline off: the EHLO reply came after 16 s; every byte restarts
    # the per-I/O timeout.
    Trickle("command at 1 B/s, deadline off", 4, False, 0, 1, 1.0, len(EHLO), None),
    # style.md rule 5 / twisted.md section 3: one byte every (timeout - 1) s;
    # 24 bytes keep an idle timer busy for 216 s.
    Trickle("command at 1 B/9 s, deadline on", 10, True, 0, 1, 9.0, 24, 10.0),
    Trickle("command at 1 B/9 s, deadline off", 10, False, 0, 1, 9.0, 24, None),
    # A command never earns time, even in big chunks: minDataRate is 0 there.
    Trickle("command in chunks, deadline on", 4, True, 0, 100, 1.0, 10, 4.0),
    # Live: DATA content at 1 byte/0.5 s, min_data_rate=500: each byte costs
    # 0.5 s and earns 0.002 s, so 8 bytes leave 0.016 s (live: 421 at 4.0 s).
    Trickle("DATA at 1 B/0.5 s, rate 500", 4, True, 500, 1, 0.5, 1000, 4.016),
    # Live: the same with min_data_rate=1: each byte earns 1 s, capped at 4 s;
    # 39 bytes in ~19 s were accepted.  Here 10,000 bytes in 5,000 s.
    Trickle("DATA at 1 B/0.5 s, rate 1", 4, True, 1, 1, 0.5, 10_000, None),
    # Exactly the minimum rate: the budget stays full.
    Trickle("DATA at exactly the rate", 4, True, 500, 250, 0.5, 10_000, None),
    Trickle("DATA at 1 B per 1/R s", 4, True, 8, 1, 0.125, 10_000, None),
    # Far above the rate: capped at the timeout, no matter how fast.
    Trickle("DATA at 64 KiB/s, rate 500", 4, True, 500, 65536, 1.0, 10_000, None),
    # Just below the rate (499 B/s against 500): 0.002 s lost per second, so
    # the budget falls below one interval after 1,500 s and runs out within
    # the next wait.
    Trickle("DATA at 499 B/s, rate 500", 4, True, 500, 499, 1.0, 10_000, 1501.998),
    # Deadline off during DATA: a classic per-I/O timeout, the rate is moot.
    Trickle("DATA at 1 B/3.9 s, deadline off", 4, False, 500, 1, 3.9, 1000, None),
    Trickle("DATA with a 4 s gap, deadline off", 4, False, 500, 1, 4.0, 1000, 4.0),
]


class DeadlineTrickleTests(SynchronousTestCase):
    """
    L{Deadline} against trickling peers, as Postfix's C{smtpd} behaves with
    C{smtpd_per_request_deadline} and C{smtpd_min_data_rate}.
    """

    def test_scenarios(self) -> None:
        """
        Each scenario expires exactly when (and only if) Postfix's arithmetic
        says so.
        """
        for case in SCENARIOS:
            with self.subTest(case.name):
                expiredAt, delivered, _ = runTrickle(case)
                if case.expiresAt is None:
                    self.assertIsNone(expiredAt)
                    self.assertEqual(delivered, case.chunks)
                else:
                    assert expiredAt is not None, case.name
                    self.assertAlmostEqual(expiredAt, case.expiresAt, places=9)

    def test_scenariosMatchTheArithmetic(self) -> None:
        """
        The table's expected times are the budget arithmetic of postfix.md
        section 1.2 (cost C{interval} per chunk, credit C{chunk / rate},
        cap at C{timeout}), for the per-request scenarios.
        """
        for case in SCENARIOS:
            if case.perRequest:
                with self.subTest(case.name):
                    expected = discreteExpiry(case)
                    if case.expiresAt is None:
                        self.assertIsNone(expected)
                    else:
                        assert expected is not None, case.name
                        self.assertAlmostEqual(expected, case.expiresAt, places=9)

    def test_commandLineStaysOpenForeverWithoutDeadline(self) -> None:
        """
        With the deadline off, one byte every C{timeout - epsilon} seconds
        keeps a command open indefinitely (the trickle attack that
        C{TimeoutMixin} allows, and that Postfix allows too with
        C{smtpd_per_request_deadline = no}); with it on, the same command
        dies at C{timeout}.
        """
        for perRequest, expected in [(False, None), (True, 300.0)]:
            with self.subTest(perRequest=perRequest):
                case = Trickle("", 300, perRequest, 0, 1, 299.0, 10_000, expected)
                expiredAt, delivered, _ = runTrickle(case)
                self.assertEqual(expiredAt, expected)
                if expected is None:
                    self.assertEqual(delivered, 10_000)

    def test_rateGrid(self) -> None:
        """
        Over a grid of rates and byte intervals: a peer at or above the
        minimum rate (C{1/R >= d}) survives indefinitely; a slower one dies
        where the arithmetic says, which is within one interval of the
        continuous estimate C{timeout * d / (d - 1/R)} seconds (postfix.md
        writes C{timeout / (d - 1/R)}: that is the number of bytes).
        """
        timeout = 4.0
        for rate in [1, 2, 10, 100, 500, 1000]:
            for interval in [0.001, 0.01, 0.1, 0.5, 1.0, 2.0]:
                case = Trickle("", timeout, True, rate, 1, interval, 20_000, None)
                expiredAt, _, highest = runTrickle(case)
                with self.subTest(rate=rate, interval=interval):
                    self.assertLessEqual(highest, timeout + 1e-9)
                    if 1 / rate >= interval:
                        self.assertIsNone(expiredAt)
                    else:
                        assert expiredAt is not None
                        expected = discreteExpiry(case)
                        assert expected is not None
                        self.assertAlmostEqual(expiredAt, expected, delta=1e-6)
                        estimate = timeout * interval / (interval - 1 / rate)
                        self.assertLessEqual(abs(expiredAt - estimate), interval)

    def test_budgetCappedAtTimeout(self) -> None:
        """
        However much a fast or generous-rate peer sends, the budget never
        exceeds C{timeout}: a stall right after a burst still dies within
        C{timeout}.
        """
        clock = Clock()
        expiries: list[float] = []
        deadline = Deadline(clock=clock, expired=lambda: expiries.append(clock.seconds()))
        deadline.startRequest(4, perRequest=True, minDataRate=1)
        for _ in range(39):
            advance(clock, 0.5)
            deadline.transferred(1)
            self.assertLessEqual(deadline.remaining, 4.0)
        self.assertEqual(deadline.remaining, 4.0)
        stalledAt = clock.seconds()
        advance(clock, 10)
        self.assertEqual(expiries, [stalledAt + 4.0])

    def test_serverWorkIsNotCharged(self) -> None:
        """
        A trickling peer gains nothing from the server's own work, and an
        honest peer loses nothing to it: time while paused (a DNS lookup, a
        queue write) is not charged.
        """
        clock = Clock()
        expiries: list[float] = []
        deadline = Deadline(clock=clock, expired=lambda: expiries.append(clock.seconds()))
        deadline.startRequest(4, perRequest=True, minDataRate=500)
        for _ in range(100):
            advance(clock, 0.002)
            deadline.transferred(1)
            deadline.pause()
            advance(clock, 60)
            deadline.resume()
        self.assertEqual(expiries, [])
        self.assertAlmostEqual(deadline.remaining, 4.0, places=9)


class ServerTrickleTests(SynchronousTestCase):
    """
    The SMTP server applies the deadline to whole commands and to DATA, as
    Postfix does with smtpd_per_request_deadline.
    """

    def test_commandTrickleDeadlineOn(self) -> None:
        """
        A command sent one byte a second, with smtpd_timeout 4s and the
        deadline on, gets Postfix's 421 after 4 seconds and the session is
        closed, with "timeout after CONNECT" logged.
        """
        from twisted.logger import capturedLogs

        from .smtpdharness import Harness

        h = Harness(smtpd_timeout="4s", smtpd_per_request_deadline="yes")
        h.take()
        with capturedLogs() as events:
            for byte in b"EHLO c.example\r\n":
                h.clock.advance(1)
                if h.closed:
                    break
                h.send(bytes([byte]))
        self.assertEqual(h.take(), b"421 4.4.2 mx.example.org Error: timeout exceeded\r\n")
        self.assertTrue(h.closed)
        self.assertEqual(h.clock.seconds(), 4)
        rendered = [e["log_format"].format(**e) for e in events]
        self.assertIn("timeout after CONNECT from unknown[203.0.113.9]", rendered)

    def test_commandTrickleDeadlineOff(self) -> None:
        """
        With the deadline off (Postfix's normal default) each read restarts
        the timer, so the same trickle gets its EHLO answered.
        """
        from .smtpdharness import Harness

        h = Harness(smtpd_timeout="4s", smtpd_per_request_deadline="no")
        h.take()
        for byte in b"EHLO c.example\r\n":
            h.clock.advance(1)
            h.send(bytes([byte]))
        self.assertTrue(h.take().startswith(b"250-mx.example.org"))
        self.assertFalse(h.closed)

    def test_stressTurnsDeadlineOn(self) -> None:
        """
        Under stress the defaults switch to a 10 s per-request deadline.
        """
        from .smtpdharness import Harness

        h = Harness()
        h.view.stress = True
        h.take()
        h.send(b"NOOP\r\n")
        h.take()
        for _ in range(20):
            h.clock.advance(1)
            if h.closed:
                break
            h.send(b"N")
        self.assertTrue(h.closed)
        self.assertEqual(h.clock.seconds(), 10)

    def test_dataTrickle(self) -> None:
        """
        DATA at one byte per 0.5 s with smtpd_min_data_rate 500 is cut off
        after about the timeout; the log counts the content bytes received.
        """
        from twisted.logger import capturedLogs

        from .smtpdharness import Harness

        h = Harness(smtpd_timeout="4s", smtpd_per_request_deadline="yes")
        h.ehlo()
        h.transaction()
        h.send(b"DATA\r\n")
        h.take()
        with capturedLogs() as events:
            for byte in b"Subject: x\r\n" * 10:
                h.clock.advance(0.5)
                if h.closed:
                    break
                h.send(bytes([byte]))
        self.assertTrue(h.closed)
        self.assertLess(h.clock.seconds(), 5)
        self.assertEqual(h.take(), b"421 4.4.2 mx.example.org Error: timeout exceeded\r\n")
        rendered = [e["log_format"].format(**e) for e in events]
        self.assertTrue(
            any(line.startswith("timeout after DATA (") for line in rendered), rendered
        )
        self.assertEqual(h.queue.committed, [])
        self.assertTrue(h.queue.messages[0].aborted)

    def test_dataAtRateSurvives(self) -> None:
        """
        A client sending DATA faster than the minimum rate is never cut off,
        however long the message.
        """
        from .smtpdharness import Harness

        h = Harness(smtpd_timeout="4s", smtpd_per_request_deadline="yes",
                    message_size_limit="0")
        h.ehlo()
        h.transaction()
        h.send(b"DATA\r\n")
        h.take()
        for _ in range(100):
            h.clock.advance(1)
            h.send(b"x" * 998 + b"\r\n")
        h.send(b".\r\n")
        self.assertEqual(h.take(), b"250 2.0.0 Ok: queued as MEM000001\r\n")

    def test_serverWorkNotCharged(self) -> None:
        """
        Time the server spends committing the message is not charged to the
        client.
        """
        from .smtpdharness import Harness

        h = Harness(smtpd_timeout="4s", smtpd_per_request_deadline="yes")
        h.ehlo()
        h.transaction()
        h.queue.holdCommits = True
        h.send(b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
        h.take()
        h.clock.advance(60)
        self.assertFalse(h.closed)
        h.queue.releaseCommits()
        self.assertEqual(h.take(), b"250 2.0.0 Ok: queued as MEM000001\r\n")
