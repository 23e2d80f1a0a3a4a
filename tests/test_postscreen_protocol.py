"""
Tests for postscreen's Twisted adapter (L{mtaguard.postscreen._protocol})
and factory: CONNECT/DISCONNECT, hand-off to smtpd on the same transport,
limits, stress mode, the cache, and third-party checks, driven with a
Clock and StringTransports.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from mtaguard.config import ParameterView
from mtaguard.interfaces import IConfiguredCheck
from mtaguard.postscreen._cache import Verdicts
from mtaguard.postscreen._checks import (
    CheckFail,
    CheckPass,
    CheckResources,
    ConfiguredChecks,
    configureChecks,
    discoverChecks,
)
from mtaguard.postscreen._factory import PostscreenFactory
from mtaguard.smtpd import ServerContext, SMTPServerProtocol
from mtaguard.smtpd._factory import SMTPServerFactory
from mtaguard.smtpd._policy import matchNetworks, parseNetworks
from mtaguard.testing import MemoryQueue, MemoryVerdictCache

T0 = 1_700_000_000.0
BASE = {
    "compatibility_level": "3.6",
    "myhostname": "mx.example.org",
    "mydomain": "example.org",
    "mynetworks": "127.0.0.0/8",
}


@implementer(IConfiguredCheck)
class FakeCheck:
    """
    A third-party before-greeting check whose answer the test controls.
    """

    def __init__(self, action: str = "enforce", ttl: float = 3600.0) -> None:
        self.action = action
        self.ttl = ttl
        self.calls: list[Any] = []

    def check(self, client: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((client, d))
        return d

    def command(self, client: Any, verb: bytes, line: bytes) -> Any:
        return None


class Postscreen:
    """
    One postscreen service with a real smtpd behind it.
    """

    def __init__(self, case: SynchronousTestCase, *, cache: Any = None, extra: Optional[dict[str, Any]] = None, **values: str) -> None:
        settings = dict(BASE)
        settings.update(values)
        self.view = ParameterView(settings)
        self.clock = Clock()
        self.clock.advance(T0)
        self.cache = cache
        self.queue = MemoryQueue()
        networks = parseNetworks(self.view["mynetworks"] if False else ["127.0.0.0/8"])
        checks = configureChecks(
            discoverChecks(),
            self.view,
            CheckResources(reactor=self.clock, readFile=lambda path: "", isMyNetwork=lambda a: matchNetworks(networks, a)),
        )
        if extra:
            checks = ConfiguredChecks(checks.builtins, dict(extra), checks.after)
        self.smtpd = SMTPServerFactory(
            ServerContext(view=ParameterView(settings), queue=self.queue, clock=self.clock),
            processLimit=100,
        )
        self.factory = PostscreenFactory(
            view=self.view,
            clock=self.clock,
            checks=checks,
            passFactory=lambda: self.smtpd,
            cache=cache,
            isMyNetwork=lambda a: matchNetworks(networks, a),
        )
        self.logged: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "mtaguard.postscreen":
                self.logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        case.addCleanup(globalLogPublisher.removeObserver, observe)

    def connect(self, client: str = "203.0.113.5", port: int = 41234) -> "Connection":
        return Connection(self, client, port)


class Connection:
    def __init__(self, service: Postscreen, client: str, port: int) -> None:
        self.service = service
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "192.0.2.2", 25), peerAddress=IPv4Address("TCP", client, port)
        )
        self.protocol = service.factory.buildProtocol(self.transport.getPeer())
        assert self.protocol is not None
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def take(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


class HandOffTests(SynchronousTestCase):
    """
    A client that passes is served by smtpd on the same connection.
    """

    def test_passNew(self) -> None:
        """
        A new client gets the C{220-} teaser, waits out the greet wait, and
        is then greeted by smtpd, whose C{220 } line completes the teaser;
        postscreen logs C{CONNECT} and C{PASS NEW} and caches the pass.
        """
        cache = MemoryVerdictCache()
        ps = Postscreen(self, cache=cache)
        c = ps.connect()
        self.assertEqual(c.take(), b"220-mx.example.org ESMTP Postfix\r\n")
        ps.clock.advance(5.9)
        self.assertEqual(c.take(), b"")
        ps.clock.advance(0.1)
        self.assertEqual(c.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertIsInstance(c.protocol.handedOff, SMTPServerProtocol)
        c.send(b"EHLO client.example\r\n")
        self.assertIn(b"250-mx.example.org", c.take())
        self.assertEqual(
            ps.logged,
            [
                "CONNECT from [203.0.113.5]:41234 to [192.0.2.2]:25",
                "PASS NEW [203.0.113.5]:41234",
            ],
        )
        stored = cache.entries["203.0.113.5"]
        self.assertEqual(stored.pregreet, int(T0 + 6) + 86400)
        self.assertEqual(ps.factory.screening, 0)
        self.assertEqual(ps.smtpd.sessions, 1)
        c.lose()
        self.assertEqual(ps.smtpd.sessions, 0)
        # DISCONNECT is logged only for sessions that were not handed off.
        self.assertNotIn("DISCONNECT [203.0.113.5]:41234", ps.logged)

    def test_passOld(self) -> None:
        """
        A client whose tests are all unexpired in the cache is handed off at
        once, without a teaser.
        """
        cache = MemoryVerdictCache()
        cache.entries["203.0.113.5"] = Verdicts(int(T0) + 100, 1, 1, 1, 1)
        ps = Postscreen(self, cache=cache)
        c = ps.connect()
        self.assertEqual(c.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertIn("PASS OLD [203.0.113.5]:41234", ps.logged)

    def test_allowlisted(self) -> None:
        """
        A client in mynetworks (C{permit_mynetworks}) goes straight to smtpd.
        """
        ps = Postscreen(self)
        c = ps.connect("127.0.0.1")
        self.assertEqual(c.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertIn("ALLOWLISTED [127.0.0.1]:41234", ps.logged)

    def test_pregreetIgnoredBytesReachSmtpd(self) -> None:
        """
        With C{postscreen_greet_action = ignore}, a client that talks early
        is handed off after the wait, and smtpd reads what it sent.
        """
        ps = Postscreen(self)
        c = ps.connect()
        c.take()
        c.send(b"EHLO early.example\r\n")
        self.assertEqual(ps.logged[-1], "PREGREET 20 after 0 from [203.0.113.5]:41234: EHLO early.example\\r\\n")
        # Nothing else is pending: postscreen goes on at once.
        data = c.take()
        self.assertTrue(data.startswith(b"220 mx.example.org ESMTP Postfix\r\n250-mx.example.org"), data)

    def test_pregreetDrop(self) -> None:
        """
        C{postscreen_greet_action = drop}: 521 and hang up, C{DISCONNECT}.
        """
        ps = Postscreen(self, postscreen_greet_action="drop")
        c = ps.connect()
        c.take()
        ps.clock.advance(0.4)
        c.send(b"EHLO bot\r\n")
        self.assertEqual(c.take(), b"521 5.5.1 Protocol error\r\n")
        self.assertTrue(c.closed)
        c.lose()
        self.assertEqual(ps.logged[-1], "DISCONNECT [203.0.113.5]:41234")
        self.assertEqual(ps.factory.screening, 0)

    def test_hangupDuringWait(self) -> None:
        """
        A client that leaves during the greet wait is logged with Postfix's
        C{HANGUP} line, then C{DISCONNECT}; its timer is gone.
        """
        ps = Postscreen(self)
        c = ps.connect()
        ps.clock.advance(1.5)
        c.lose()
        self.assertEqual(
            ps.logged[-2:],
            [
                "HANGUP after 1.5 from [203.0.113.5]:41234 in tests before SMTP handshake",
                "DISCONNECT [203.0.113.5]:41234",
            ],
        )
        self.assertEqual(ps.clock.getDelayedCalls(), [])

    def test_pregreetBufferBounded(self) -> None:
        """
        A client that floods while a test is still running stops being
        read; reading resumes when smtpd takes over.
        """
        check = FakeCheck()
        ps = Postscreen(self, extra={"example": check})
        c = ps.connect()
        c.send(b"x" * 5000)
        self.assertEqual(c.transport.producerState, "paused")
        check.calls[0][1].callback(CheckPass())
        self.assertIsNotNone(c.protocol.handedOff)
        self.assertEqual(c.transport.producerState, "producing")


class LimitTests(SynchronousTestCase):
    """
    Per-client, pre-queue and stress limits, with Postfix's replies and logs.
    """

    def test_perClientLimit(self) -> None:
        """
        A client over C{postscreen_client_connection_count_limit} gets
        C{421 4.7.0 Error: too many connections}.
        """
        ps = Postscreen(self, postscreen_client_connection_count_limit="1")
        first = ps.connect(port=1)
        second = ps.connect(port=2)
        self.assertEqual(second.take(), b"421 4.7.0 Error: too many connections\r\n")
        self.assertTrue(second.closed)
        self.assertIn("NOQUEUE: reject: CONNECT from [203.0.113.5]:2: too many connections", ps.logged)
        self.assertFalse(first.closed)

    def test_preQueueLimitAndStress(self) -> None:
        """
        With C{postscreen_pre_queue_limit = 10}, stress mode starts at the
        9th screened connection, the 10th is refused with Postfix's log line
        and reply, and stress mode ends when 7 are left.
        """
        ps = Postscreen(self, postscreen_pre_queue_limit="10")
        connections = [ps.connect(f"203.0.113.{i}") for i in range(1, 9)]
        self.assertFalse(ps.view.stress)
        connections.append(ps.connect("203.0.113.9"))
        self.assertTrue(ps.view.stress)
        self.assertIn("entering STRESS mode with 9 connections", ps.logged)
        refused = ps.connect("203.0.113.10")
        self.assertEqual(refused.take(), b"421 4.3.2 All screening ports are busy\r\n")
        self.assertIn("reject: connect from [203.0.113.10]:41234: all screening ports busy", ps.logged)
        refused.lose()
        connections.pop().lose()
        self.assertTrue(ps.view.stress)
        connections.pop().lose()
        self.assertFalse(ps.view.stress)
        self.assertIn("leaving STRESS mode with 7 connections", ps.logged)

    def test_stressShortensGreetWait(self) -> None:
        """
        Under stress the greet wait is C{postscreen_greet_wait}'s stress
        value, 2 seconds.
        """
        ps = Postscreen(self, postscreen_pre_queue_limit="10")
        for i in range(1, 10):
            ps.connect(f"203.0.113.{i}")
        c = ps.connect("198.51.100.1")
        # The 10th is refused; free one slot first.
        self.assertTrue(c.closed)
        c.lose()
        ps.view.stress = True
        ps.factory.screening -= 1
        d = ps.connect("198.51.100.2")
        d.take()
        ps.clock.advance(2)
        self.assertEqual(d.take(), b"220 mx.example.org ESMTP Postfix\r\n")


class ThirdPartyCheckTests(SynchronousTestCase):
    """
    A before-greeting check from a plugin runs during the greet wait.
    """

    def test_failDrop(self) -> None:
        """
        A failing check with action C{drop} ends the session with its reply
        and logs its reason.
        """
        check = FakeCheck(action="drop")
        ps = Postscreen(self, extra={"example": check}, postscreen_greet_banner="")
        c = ps.connect()
        self.assertEqual(len(check.calls), 1)
        client, d = check.calls[0]
        self.assertEqual((client.address, client.port, client.serverPort), ("203.0.113.5", 41234, 25))
        d.callback(CheckFail("listed in example\n", "5.7.1 Go away"))
        self.assertEqual(c.take(), b"521 5.7.1 Go away\r\n")
        self.assertIn("EXAMPLE from [203.0.113.5]:41234: listed in example\\n", ps.logged)

    def test_passCachedAndShortensWait(self) -> None:
        """
        Without a pregreet test, the wait ends when every check answered; a
        pass is cached under the check's name with its TTL.
        """
        cache = MemoryVerdictCache()
        check = FakeCheck()
        ps = Postscreen(self, cache=cache, extra={"example": check}, postscreen_greet_banner="")
        c = ps.connect()
        self.assertEqual(c.take(), b"")
        ps.clock.advance(1)
        check.calls[0][1].callback(CheckPass(ttl=600))
        self.assertEqual(c.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertEqual(cache.entries["203.0.113.5"].extraTime("example"), int(T0) + 1 + 600)
        self.assertIn("PASS NEW [203.0.113.5]:41234", ps.logged)
        # The next connection needs no test.
        c.lose()
        again = ps.connect(port=5)
        self.assertEqual(again.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertEqual(len(check.calls), 1)

    def test_brokenCheckDecidesNothing(self) -> None:
        """
        A check that fails with an exception is logged and counts as no
        result: the client is handed off, nothing cached for it.
        """
        cache = MemoryVerdictCache()
        check = FakeCheck()
        ps = Postscreen(self, cache=cache, extra={"example": check}, postscreen_greet_banner="")
        c = ps.connect()
        check.calls[0][1].errback(RuntimeError("backend down"))
        self.assertEqual(c.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertTrue(any("backend down" in line for line in ps.logged))
        self.assertNotIn("203.0.113.5", cache.entries)
        self.flushLoggedErrors()

    def test_lateAnswerIgnored(self) -> None:
        """
        A check that answers after the greet wait is ignored.
        """
        check = FakeCheck()
        ps = Postscreen(self, extra={"example": check})
        c = ps.connect()
        c.take()
        ps.clock.advance(6)
        self.assertEqual(c.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertNotIn("PASS NEW [203.0.113.5]:41234", ps.logged)


class DummyEngineTests(SynchronousTestCase):
    """
    Clients that may not go to smtpd now meet the dummy SMTP engine on the
    same connection.
    """

    def test_pregreetEnforce(self) -> None:
        """
        A bot that talks first under C{postscreen_greet_action = enforce}
        gets no final 220, 550 for every RCPT and is hung up on at DATA,
        with Postfix's log lines.
        """
        ps = Postscreen(self, postscreen_greet_action="enforce")
        c = ps.connect()
        c.take()
        ps.clock.advance(0.4)
        c.send(b"EHLO bot.example\r\n")
        ps.clock.advance(5.6)
        self.assertTrue(c.take().startswith(b"250-mx.example.org\r\n"))
        c.send(b"MAIL FROM:<spam@bot.example>\r\n")
        self.assertEqual(c.take(), b"250 2.1.0 Ok\r\n")
        c.send(b"RCPT TO:<user@mx.example.org>\r\n")
        self.assertEqual(c.take(), b"550 5.5.1 Protocol error\r\n")
        c.send(b"DATA\r\n")
        self.assertEqual(c.take(), b"554 5.5.1 Error: no valid recipients\r\n")
        self.assertTrue(c.closed)
        c.lose()
        self.assertEqual(
            ps.logged,
            [
                "CONNECT from [203.0.113.5]:41234 to [192.0.2.2]:25",
                "PREGREET 18 after 0.4 from [203.0.113.5]:41234: EHLO bot.example\\r\\n",
                "NOQUEUE: reject: RCPT from [203.0.113.5]:41234: 550 5.5.1 Protocol error;"
                " from=<spam@bot.example>, to=<user@mx.example.org>, proto=ESMTP, helo=<bot.example>",
                "DATA without valid RCPT from [203.0.113.5]:41234",
                "DISCONNECT [203.0.113.5]:41234",
            ],
        )
        self.assertEqual(ps.factory.screening, 0)
        self.assertEqual(ps.smtpd.sessions, 0)

    def test_deepTestsThenPassOld(self) -> None:
        """
        With the deep tests on, a well-behaved new client talks to the
        engine, gets 450 for its RCPT, is logged C{PASS NEW} when it leaves;
        its next connection goes straight to smtpd as C{PASS OLD}.
        """
        cache = MemoryVerdictCache()
        ps = Postscreen(
            self,
            cache=cache,
            postscreen_pipelining_enable="yes",
            postscreen_non_smtp_command_enable="yes",
            postscreen_bare_newline_enable="yes",
        )
        c = ps.connect()
        self.assertEqual(c.take(), b"220-mx.example.org ESMTP Postfix\r\n")
        ps.clock.advance(6)
        self.assertEqual(c.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertIsNone(c.protocol.handedOff)
        c.send(b"EHLO good.example\r\n")
        self.assertNotIn(b"PIPELINING", c.take())
        c.send(b"MAIL FROM:<a@good.example>\r\n")
        c.take()
        c.send(b"RCPT TO:<user@mx.example.org>\r\n")
        self.assertEqual(c.take(), b"450 4.3.2 Service currently unavailable\r\n")
        c.send(b"QUIT\r\n")
        self.assertEqual(c.take(), b"221 2.0.0 Bye\r\n")
        c.lose()
        self.assertIn("PASS NEW [203.0.113.5]:41234", ps.logged)
        self.assertEqual(ps.logged[-1], "DISCONNECT [203.0.113.5]:41234")
        self.assertGreater(cache.entries["203.0.113.5"].pipelining, T0)
        again = ps.connect(port=41235)
        self.assertEqual(again.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertIsInstance(again.protocol.handedOff, SMTPServerProtocol)
        self.assertIn("PASS OLD [203.0.113.5]:41235", ps.logged)

    def test_nonSmtpCommandDrop(self) -> None:
        """
        An HTTP request to a screened port (deep non-SMTP test on, action
        drop) gets Postfix's goodbye.
        """
        ps = Postscreen(self, postscreen_non_smtp_command_enable="yes", postscreen_greet_banner="")
        c = ps.connect()
        self.assertEqual(c.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        c.send(b"GET / HTTP/1.1\r\n")
        self.assertEqual(c.take(), b"521 5.7.0 Error: I can break rules, too. Goodbye.\r\n")
        self.assertTrue(c.closed)
        self.assertIn("NON-SMTP COMMAND from [203.0.113.5]:41234 after CONNECT: GET / HTTP/1.1", ps.logged)

    def test_commandTimeLimit(self) -> None:
        """
        A client in the engine that does not complete a command within
        C{postscreen_command_time_limit} is disconnected with Postfix's
        reply; trickled bytes do not extend the limit.
        """
        ps = Postscreen(self, postscreen_pipelining_enable="yes", postscreen_greet_banner="")
        c = ps.connect()
        c.take()
        for _ in range(29):
            ps.clock.advance(10)
            c.send(b"N")
        ps.clock.advance(10)
        self.assertEqual(c.take(), b"421 4.4.2 mx.example.org Error: timeout exceeded\r\n")
        self.assertTrue(c.closed)
        self.assertIn("COMMAND TIME LIMIT from [203.0.113.5]:41234 after CONNECT", ps.logged)

    def test_hangupInEngine(self) -> None:
        """
        A client leaving the engine is logged as a hang-up after the SMTP
        handshake, then C{DISCONNECT}; no timer remains.
        """
        ps = Postscreen(self, postscreen_pipelining_enable="yes", postscreen_greet_banner="")
        c = ps.connect()
        ps.clock.advance(2.5)
        c.lose()
        self.assertIn("HANGUP after 2.5 from [203.0.113.5]:41234 in tests after SMTP handshake", ps.logged)
        self.assertEqual(ps.logged[-1], "DISCONNECT [203.0.113.5]:41234")
        self.assertEqual(ps.clock.getDelayedCalls(), [])


@implementer(IConfiguredCheck)
class FakeAfterCheck:
    """
    A third-party after-greeting check that fails on a HELO name it was
    told is bad.
    """

    def __init__(self, action: str = "enforce", ttl: float = 7200.0) -> None:
        self.action = action
        self.ttl = ttl
        self.seen: list[tuple[bytes, bytes]] = []

    def check(self, client: Any) -> Any:
        raise AssertionError("an after-greeting check is not run before the greeting")

    def command(self, client: Any, verb: bytes, line: bytes) -> Any:
        self.seen.append((verb, line))
        if verb == b"EHLO" and b"bad.example" in line:
            return CheckFail("bad HELO name", "5.7.1 Go away")
        if verb == b"NOOP":
            raise RuntimeError("backend down")
        return None


class AfterGreetingCheckTests(SynchronousTestCase):
    """
    A third-party after-greeting check runs on each command of the dummy
    engine.
    """

    def service(self, check: FakeAfterCheck, cache: Any = None) -> Postscreen:
        ps = Postscreen(self, cache=cache, postscreen_greet_banner="")
        ps.factory.checks = ConfiguredChecks(ps.factory.checks.builtins, {}, {"example": check})
        ps.factory._settings.clear()
        return ps

    def test_passCachedThenPassOld(self) -> None:
        """
        A client that reaches RCPT without failing passes the check; its
        pass is cached under the check's name, and the next connection goes
        to smtpd.
        """
        cache = MemoryVerdictCache()
        check = FakeAfterCheck()
        ps = self.service(check, cache)
        c = ps.connect()
        self.assertEqual(c.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertIsNone(c.protocol.handedOff)
        c.send(b"EHLO good.example\r\n")
        c.send(b"MAIL FROM:<a@good.example>\r\n")
        c.send(b"RCPT TO:<u@mx.example.org>\r\n")
        c.send(b"QUIT\r\n")
        self.assertEqual([verb for verb, line in check.seen], [b"EHLO", b"MAIL", b"RCPT", b"QUIT"])
        self.assertIn("PASS NEW [203.0.113.5]:41234", ps.logged)
        self.assertEqual(cache.entries["203.0.113.5"].extraTime("example"), int(T0) + 7200)
        c.lose()
        again = ps.connect(port=2)
        self.assertIsInstance(again.protocol.handedOff, SMTPServerProtocol)

    def test_failEnforce(self) -> None:
        """
        A failing check under C{enforce} logs its reason and turns every
        RCPT reply into its reply; nothing is cached.
        """
        cache = MemoryVerdictCache()
        ps = self.service(FakeAfterCheck(), cache)
        c = ps.connect()
        c.take()
        c.send(b"EHLO bad.example\r\n")
        c.send(b"MAIL FROM:<a@bad.example>\r\n")
        c.take()
        c.send(b"RCPT TO:<u@mx.example.org>\r\n")
        self.assertEqual(c.take(), b"550 5.7.1 Go away\r\n")
        self.assertIn("EXAMPLE from [203.0.113.5]:41234: bad HELO name", ps.logged)
        c.send(b"QUIT\r\n")
        c.lose()
        self.assertNotIn("203.0.113.5", cache.entries)

    def test_failDrop(self) -> None:
        """
        Under C{drop} the client gets 521 and the connection ends.
        """
        ps = self.service(FakeAfterCheck(action="drop"))
        c = ps.connect()
        c.take()
        c.send(b"EHLO bad.example\r\n")
        self.assertEqual(c.take(), b"521 5.7.1 Go away\r\n")
        self.assertTrue(c.closed)

    def test_brokenCheck(self) -> None:
        """
        A check that raises is logged and decides nothing.
        """
        ps = self.service(FakeAfterCheck())
        c = ps.connect()
        c.take()
        c.send(b"NOOP\r\n")
        self.assertEqual(c.take(), b"250 2.0.0 Ok\r\n")
        self.assertTrue(any("postscreen check example failed" in line and "backend down" in line for line in ps.logged))


class SlowCache(MemoryVerdictCache):
    """
    A cache whose lookups answer when the test says so.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[Deferred[Any]] = []

    def get(self, clientAddress: str) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.lookups.append(d)
        return d


class OverlappingSessionTests(SynchronousTestCase):
    """
    Overlapping sessions of one client share what is known of it, as
    Postfix's per-client state does.
    """

    def test_oneLookupOnePassNew(self) -> None:
        """
        Sessions that arrive while the first one's cache lookup is pending
        wait for that lookup; of those that then pass, only the first logs
        C{PASS NEW}.
        """
        cache = SlowCache()
        ps = Postscreen(self, cache=cache)
        first = ps.connect(port=1)
        second = ps.connect(port=2)
        self.assertEqual(len(cache.lookups), 1)
        self.assertEqual((first.take(), second.take()), (b"", b""))
        cache.lookups[0].callback(None)
        self.assertEqual(first.take(), b"220-mx.example.org ESMTP Postfix\r\n")
        self.assertEqual(second.take(), b"220-mx.example.org ESMTP Postfix\r\n")
        ps.clock.advance(6)
        self.assertIn("PASS NEW [203.0.113.5]:1", ps.logged)
        self.assertIn("PASS OLD [203.0.113.5]:2", ps.logged)
        self.assertNotIn("PASS NEW [203.0.113.5]:2", ps.logged)

    def test_recentVerdictWithoutLookup(self) -> None:
        """
        A client that passed here a moment ago is judged from memory, even
        if the cache has not answered its write yet.
        """
        cache = SlowCache()
        ps = Postscreen(self, cache=cache)
        first = ps.connect(port=1)
        cache.lookups[0].callback(None)
        ps.clock.advance(6)
        first.lose()
        again = ps.connect(port=2)
        self.assertEqual(len(cache.lookups), 1)
        self.assertEqual(again.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertIn("PASS OLD [203.0.113.5]:2", ps.logged)

    def test_recentVerdictExpired(self) -> None:
        """
        A verdict held in memory whose pass has expired since is not a
        pass: the client gets the teaser and is tested again.
        """
        ps = Postscreen(self, cache=MemoryVerdictCache(), postscreen_greet_ttl="10s")
        first = ps.connect(port=1)
        ps.clock.advance(6)
        self.assertIsNotNone(first.protocol.handedOff)
        first.lose()
        ps.clock.advance(20)
        again = ps.connect(port=2)
        self.assertEqual(again.take(), b"220-mx.example.org ESMTP Postfix\r\n")
        self.assertIsNone(again.protocol.handedOff)
        self.assertNotIn("PASS OLD [203.0.113.5]:2", ps.logged)
        ps.clock.advance(6)
        self.assertIn("PASS NEW [203.0.113.5]:2", ps.logged)

    def test_recentVerdictVetoed(self) -> None:
        """
        On a server address outside C{postscreen_allowlist_interfaces} a
        remembered pass does not hand the client off at once.
        """
        cache = MemoryVerdictCache()
        cache.entries["203.0.113.5"] = Verdicts(int(T0) + 100, 1, 1, 1, 1)
        ps = Postscreen(self, cache=cache, postscreen_allowlist_interfaces="198.51.100.1")
        first = ps.connect(port=1)
        self.assertIsNone(first.protocol.handedOff)
        first.lose()
        self.assertIsNotNone(ps.factory.recentVerdicts("203.0.113.5"))
        again = ps.connect(port=2)
        self.assertNotIn("PASS OLD [203.0.113.5]:2", ps.logged)
        self.assertIsNone(again.protocol.handedOff)

    def test_hangupWhileLookingUp(self) -> None:
        """
        A client that leaves before the cache answered is logged once and
        the late answer changes nothing.
        """
        cache = SlowCache()
        ps = Postscreen(self, cache=cache)
        c = ps.connect()
        c.lose()
        cache.lookups[0].callback(None)
        self.assertEqual(c.take(), b"")
        self.assertEqual(ps.logged[-1], "DISCONNECT [203.0.113.5]:41234")
        self.assertEqual(ps.clock.getDelayedCalls(), [])
        self.assertEqual(ps.factory.screening, 0)

    def test_sharedStateHandsOffSilently(self) -> None:
        """
        A client that connects while another of its sessions is still being
        screened, after a third one passed, is handed off on that shared
        state without a C{PASS OLD} line (Postfix logs C{PASS OLD} only
        after a cache lookup); the cache is not asked again.
        """
        cache = MemoryVerdictCache()
        ps = Postscreen(self, cache=cache)
        first = ps.connect(port=1)
        ps.clock.advance(3)
        ps.connect(port=2)
        ps.clock.advance(3)
        self.assertIsNotNone(first.protocol.handedOff)
        self.assertIn("PASS NEW [203.0.113.5]:1", ps.logged)
        fourth = ps.connect(port=4)
        self.assertIsInstance(fourth.protocol.handedOff, SMTPServerProtocol)
        self.assertEqual(fourth.take(), b"220 mx.example.org ESMTP Postfix\r\n")
        self.assertNotIn("PASS OLD [203.0.113.5]:4", ps.logged)

    def test_sameVerdictsNotWrittenAgain(self) -> None:
        """
        Verdicts equal to those just stored are not written to the cache
        again.
        """
        writes: list[str] = []
        cache = MemoryVerdictCache()
        original = cache.put

        def put(address: str, verdicts: Any) -> Deferred[None]:
            writes.append(address)
            return original(address, verdicts)

        cache.put = put  # type: ignore[method-assign]
        ps = Postscreen(self, cache=cache)
        verdicts = Verdicts(int(T0) + 100, 1, 1, 1, 1)
        ps.factory.storeVerdicts("203.0.113.5", verdicts)
        ps.factory.storeVerdicts("203.0.113.5", verdicts)
        self.assertEqual(writes, ["203.0.113.5"])
        ps.factory.storeVerdicts("203.0.113.5", Verdicts(int(T0) + 200, 1, 1, 1, 1))
        self.assertEqual(writes, ["203.0.113.5", "203.0.113.5"])
