"""
Tests for L{mtaguard.postscreen._early}: postscreen's before-220 decisions
(access list, cache, pregreet, DNSBL, actions, replies and log lines), fed
with explicit times.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import attr
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config._view import ParameterView
from mtaguard.postscreen._access import Access
from mtaguard.postscreen._cache import Verdicts
from mtaguard.postscreen._early import (
    CacheUpdate,
    Drop,
    EarlySession,
    EarlySettings,
    EnterDummyEngine,
    ExtraTest,
    HandOff,
    Log,
    SendTeaser,
    StartDNSBL,
    WaitUntil,
    formatDelay,
    softBounced,
)

T0 = 1_700_000_000.0
DAY = 86400
TEASER = SendTeaser(b"220-mx.example ESMTP mtaguard\r\n")

#: Pregreet on, DNSBL off, deep tests off: Postfix's defaults plus a banner.
BASE = EarlySettings(greetBanner="mx.example ESMTP mtaguard", greetWait=6.0)
#: Pregreet and DNSBL on.
WITH_DNSBL = attr.evolve(BASE, dnsblEnabled=True)


def session(settings: EarlySettings = BASE) -> EarlySession:
    return EarlySession(
        settings,
        clientAddress="203.0.113.5",
        clientPort=41234,
        serverAddress="192.0.2.2",
        serverPort=25,
    )


def connect(
    s: EarlySession,
    access: Access = Access.DUNNO,
    cached: Optional[Verdicts] = None,
    veto: bool = False,
    now: float = T0,
) -> list[Any]:
    return s.connected(now, access=access, cached=cached, allowlistVeto=veto)


def texts(actions: Sequence[Any]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Log)]


def others(actions: Sequence[Any]) -> list[Any]:
    return [a for a in actions if not isinstance(a, Log)]


class FormatTests(SynchronousTestCase):
    """
    Elapsed times and soft-bounced replies as Postfix writes them.
    """

    def test_delay(self) -> None:
        """
        Elapsed times keep 2 significant digits, without trailing zeros or
        a lone decimal point, as Postfix's C{format_tv}.
        """
        for seconds, want in [
            (0.4, "0.4"),
            (1.5, "1.5"),
            (12, "12"),
            (12.4, "12"),
            (0.43, "0.43"),
            (0.001, "0"),
            (9.96, "10"),
            (100.2, "100"),
            (0, "0"),
        ]:
            self.assertEqual(formatDelay(seconds), want, seconds)

    def test_softBounce(self) -> None:
        """
        soft_bounce turns the 5 of the code and of the enhanced status code
        into a 4, and leaves 4xx replies alone.
        """
        self.assertEqual(softBounced("521 5.5.1 Protocol error"), "421 4.5.1 Protocol error")
        self.assertEqual(
            softBounced("450 4.3.2 Service currently unavailable"),
            "450 4.3.2 Service currently unavailable",
        )


class AccessTests(SynchronousTestCase):
    """
    Steps 4 to 6: access list, cache and allowlist veto.
    """

    def test_allowlisted(self) -> None:
        """
        A permitted client is logged and handed off at once, without teaser,
        tests or cache; the legacy wording when respectful_logging is off.
        """
        for respectful, word in [(True, "ALLOWLISTED"), (False, "WHITELISTED")]:
            s = session(attr.evolve(WITH_DNSBL, respectfulLogging=respectful))
            actions = connect(s, Access.PERMIT, cached=Verdicts())
            self.assertEqual(texts(actions), [f"{word} [203.0.113.5]:41234"])
            self.assertEqual(others(actions), [HandOff(teaserSent=False)])
            self.assertEqual(s.waitEnded(T0 + 6), [])

    def test_denylisted(self) -> None:
        """
        A denied client is logged; C{drop} answers 521 5.3.2 and hangs up,
        C{enforce} runs the tests and then the dummy engine with 550 5.3.2,
        C{ignore} runs the tests and hands off but caches nothing new for
        the denylist (only for the tests passed).  A kept failure skips the
        cache; an ignored one does not (C{PASS OLD}).
        """
        table = [
            (
                "drop",
                True,
                [Drop(b"521 5.3.2 Service currently unavailable\r\n")],
                [],
            ),
            ("enforce", True, [TEASER, WaitUntil(T0 + 6)], ["550 5.3.2 Service currently unavailable"]),
            ("ignore", False, [TEASER, WaitUntil(T0 + 6)], None),
        ]
        for action, respectful, want, replies in table:
            s = session(attr.evolve(BASE, denylistAction=action, respectfulLogging=respectful))
            cached = None if action == "ignore" else Verdicts(pregreet=int(T0) + DAY)
            actions = connect(s, Access.REJECT, cached=cached)
            word = "DENYLISTED" if respectful else "BLACKLISTED"
            self.assertEqual(texts(actions), [f"{word} [203.0.113.5]:41234"], action)
            self.assertEqual(others(actions), want, action)
            if action == "drop":
                continue
            end = s.waitEnded(T0 + 6)
            final = end[-1]
            if replies is None:
                self.assertEqual(final, HandOff(teaserSent=True))
                self.assertIn("PASS NEW [203.0.113.5]:41234", texts(end))
            else:
                assert isinstance(final, EnterDummyEngine)
                self.assertEqual(final.replies, tuple(replies))
                self.assertEqual(final.rcptReply, replies[-1])
                self.assertTrue(final.failed)
                self.assertEqual(texts(end), [])
                self.assertFalse([a for a in end if isinstance(a, CacheUpdate)])

        s = session()
        actions = connect(s, Access.REJECT, cached=Verdicts(pregreet=int(T0) + DAY))
        self.assertEqual(
            texts(actions), ["DENYLISTED [203.0.113.5]:41234", "PASS OLD [203.0.113.5]:41234"]
        )
        self.assertEqual(others(actions), [HandOff(teaserSent=False)])

    def test_passOld(self) -> None:
        """
        A cache entry unexpired for every enabled test means C{PASS OLD} and
        an immediate hand-off; disabled tests (0 or 1) do not matter.
        """
        for cached in [
            Verdicts(pregreet=int(T0) + 10, dnsbl=1, pipelining=0, non_smtp_command=1, bare_newline=0),
            Verdicts(pregreet=int(T0) + DAY, dnsbl=0, pipelining=1, non_smtp_command=0, bare_newline=1),
        ]:
            s = session()
            actions = connect(s, cached=cached)
            self.assertEqual(texts(actions), ["PASS OLD [203.0.113.5]:41234"])
            self.assertEqual(others(actions), [HandOff(teaserSent=False)])

    def test_expiredRetests(self) -> None:
        """
        An expired (or never passed) entry for an enabled test runs that
        test; a test still within its TTL is not run again.
        """
        table = [
            # cached, want actions
            (Verdicts(pregreet=int(T0) - 1, dnsbl=int(T0) + 1), [TEASER, WaitUntil(T0 + 6)]),
            (Verdicts(pregreet=int(T0), dnsbl=int(T0) + 1), [TEASER, WaitUntil(T0 + 6)]),
            (Verdicts(pregreet=0, dnsbl=int(T0) + 1), [TEASER, WaitUntil(T0 + 6)]),
            (Verdicts(pregreet=1, dnsbl=1), [TEASER, StartDNSBL(), WaitUntil(T0 + 6)]),
            (Verdicts(pregreet=int(T0) + 100, dnsbl=int(T0) - 5), [StartDNSBL(), WaitUntil(T0 + 6)]),
            (
                Verdicts(pregreet=int(T0) - 100, dnsbl=int(T0) - 5),
                [TEASER, StartDNSBL(), WaitUntil(T0 + 6)],
            ),
        ]
        for cached, want in table:
            s = session(WITH_DNSBL)
            actions = connect(s, cached=cached)
            self.assertEqual(texts(actions), [], cached)
            self.assertEqual(others(actions), want, cached)

    def test_cacheKeepsOtherTests(self) -> None:
        """
        When only the DNSBL test runs (pregreet still cached), the wait ends
        as soon as its answer is in, the new entry keeps the cached pregreet
        time, and the client is C{PASS NEW}.
        """
        s = session(WITH_DNSBL)
        cached = Verdicts(pregreet=int(T0) + 100, dnsbl=int(T0) - 5)
        connect(s, cached=cached)
        actions = s.dnsblDone(T0 + 0.3, 0, 300, None)
        self.assertEqual(texts(actions), ["PASS NEW [203.0.113.5]:41234"])
        self.assertEqual(
            others(actions),
            [
                CacheUpdate(Verdicts(int(T0) + 100, int(T0) + 300, 1, 1, 1)),
                HandOff(teaserSent=False),
            ],
        )
        self.assertEqual(s.waitEnded(T0 + 6), [])

    def test_noTestsEnabled(self) -> None:
        """
        With every test disabled a new client is handed off at once,
        without teaser or log.
        """
        s = session(EarlySettings(greetBanner=""))
        self.assertEqual(connect(s), [HandOff(teaserSent=False)])

    def test_veto(self) -> None:
        """
        A server address outside postscreen_allowlist_interfaces is logged
        and the client is never handed off (not even from the cache):
        after the tests it goes to the dummy engine, uncached.
        """
        for respectful, word in [(True, "ALLOWLIST VETO"), (False, "WHITELIST VETO")]:
            s = session(attr.evolve(BASE, respectfulLogging=respectful))
            actions = connect(s, veto=True)
            self.assertEqual(texts(actions), [f"{word} [203.0.113.5]:41234"])
            self.assertEqual(others(actions), [TEASER, WaitUntil(T0 + 6)])
            end = s.waitEnded(T0 + 6)
            self.assertEqual(texts(end), [])
            [final] = end
            assert isinstance(final, EnterDummyEngine)
            self.assertTrue(final.vetoed)
            self.assertEqual(final.rcptReply, "450 4.3.2 Service currently unavailable")

        s = session()
        actions = connect(s, cached=Verdicts(pregreet=int(T0) + 100), veto=True)
        self.assertEqual(texts(actions), ["ALLOWLIST VETO [203.0.113.5]:41234"])
        [final] = others(actions)
        assert isinstance(final, EnterDummyEngine)
        self.assertEqual((final.vetoed, final.teaserSent, final.deepTests), (True, False, ()))

    def test_stressGreetWait(self) -> None:
        """
        Read through L{EarlySettings.fromView}, the greet wait is 6 s and 2 s
        under stress, and the default banner is C{$smtpd_banner}.
        """
        view = ParameterView({"myhostname": "mx.example", "respectful_logging": "yes"})
        settings = EarlySettings.fromView(view)
        self.assertEqual(settings.greetWait, 6)
        self.assertEqual(settings.greetBanner, "mx.example ESMTP Postfix")
        self.assertEqual(
            (settings.greetAction, settings.dnsblAction, settings.denylistAction),
            ("ignore", "ignore", "ignore"),
        )
        view.stress = True
        stressed = EarlySettings.fromView(view)
        self.assertEqual(stressed.greetWait, 2)
        actions = connect(session(stressed))
        self.assertEqual(
            others(actions), [SendTeaser(b"220-mx.example ESMTP Postfix\r\n"), WaitUntil(T0 + 2)]
        )

    def test_fromViewSettings(self) -> None:
        """
        fromView reads actions, thresholds, TTLs, deep test switches,
        soft_bounce and the legacy parameter names.
        """
        view = ParameterView(
            {
                "postscreen_greet_banner": "",
                "postscreen_dnsbl_sites": "zen.example*2",
                "postscreen_blacklist_action": "drop",
                "postscreen_dnsbl_whitelist_threshold": "-1",
                "postscreen_dnsbl_threshold": "3",
                "postscreen_pipelining_enable": "yes",
                "postscreen_greet_ttl": "2h",
                "soft_bounce": "yes",
            }
        )
        s = EarlySettings.fromView(view)
        self.assertEqual(s.greetBanner, "")
        self.assertTrue(s.dnsblEnabled)
        self.assertEqual(s.denylistAction, "drop")
        self.assertEqual((s.dnsblThreshold, s.dnsblAllowlistThreshold), (3, -1))
        self.assertTrue(s.pipeliningEnabled)
        self.assertEqual(s.greetTTL, 7200)
        self.assertEqual(s.dnsblMinTTL, 60)
        self.assertEqual(s.dnsblMaxTTL, 3600)
        self.assertTrue(s.softBounce)


class PregreetTests(SynchronousTestCase):
    """
    The pregreet test and its actions.
    """

    def test_goodClient(self) -> None:
        """
        A client that waits the full greet wait passes: C{PASS NEW}, the
        cache gets the greet TTL (disabled tests as 1), and the hand-off
        says the teaser went out.
        """
        s = session()
        self.assertEqual(connect(s), [TEASER, WaitUntil(T0 + 6)])
        actions = s.waitEnded(T0 + 6)
        self.assertEqual(texts(actions), ["PASS NEW [203.0.113.5]:41234"])
        self.assertEqual(
            others(actions),
            [CacheUpdate(Verdicts(int(T0) + 6 + DAY, 1, 1, 1, 1)), HandOff(teaserSent=True)],
        )
        self.assertEqual(s.waitEnded(T0 + 7), [])
        self.assertEqual(s.clientSpoke(T0 + 7, b"EHLO x\r\n"), [])

    def test_pregreetActions(self) -> None:
        """
        Bytes before the wait ends are logged with count, elapsed time and
        escaped text; C{drop} answers 521 5.5.1 at once, C{enforce} sends
        the client to the dummy engine with 550 5.5.1 (no final 220),
        C{ignore} hands it off silently and caches nothing.
        """
        line = "PREGREET 18 after 0.4 from [203.0.113.5]:41234: EHLO bot.example\\r\\n"
        for action in ["drop", "enforce", "ignore"]:
            s = session(attr.evolve(BASE, greetAction=action))
            connect(s)
            actions = s.clientSpoke(T0 + 0.4, b"EHLO bot.example\r\n")
            self.assertEqual(texts(actions), [line], action)
            if action == "drop":
                self.assertEqual(others(actions), [Drop(b"521 5.5.1 Protocol error\r\n")])
                self.assertEqual(s.waitEnded(T0 + 6), [])
                continue
            [final] = others(actions)
            if action == "enforce":
                assert isinstance(final, EnterDummyEngine)
                self.assertEqual(final.replies, ("550 5.5.1 Protocol error",))
                self.assertTrue(final.pregreeted)
                self.assertTrue(final.failed)
                self.assertEqual(final.deepTests, ("pipelining", "non_smtp_command", "bare_newline"))
            else:
                self.assertEqual(final, HandOff(teaserSent=True))

    def test_pregreetWaitsForDNSBL(self) -> None:
        """
        After a pregreet failure the session goes on as soon as the DNSBL
        answers are in, and only then decides.
        """
        s = session(attr.evolve(WITH_DNSBL, greetAction="enforce"))
        connect(s)
        actions = s.clientSpoke(T0 + 1.5, b"HELO x\r\n")
        self.assertEqual(texts(actions), ["PREGREET 8 after 1.5 from [203.0.113.5]:41234: HELO x\\r\\n"])
        self.assertEqual(others(actions), [])
        self.assertEqual(s.clientSpoke(T0 + 1.6, b"MAIL FROM:<a@b>\r\n"), [])
        actions = s.dnsblDone(T0 + 2, 0, 60, None)
        self.assertEqual(texts(actions), [])
        [final] = actions
        assert isinstance(final, EnterDummyEngine)
        self.assertEqual(final.replies, ("550 5.5.1 Protocol error",))

    def test_pregreetIgnoreCachesOthers(self) -> None:
        """
        With C{ignore}, a pregreeting client is handed off without C{PASS
        NEW}; the DNSBL pass is cached, the pregreet entry is not.
        """
        s = session(WITH_DNSBL)
        connect(s)
        s.clientSpoke(T0 + 0.2, b"x")
        actions = s.dnsblDone(T0 + 0.5, 0, 120, None)
        self.assertEqual(texts(actions), [])
        self.assertEqual(
            actions,
            [CacheUpdate(Verdicts(0, int(T0) + 120, 1, 1, 1)), HandOff(teaserSent=True)],
        )

    def test_escapedTruncated(self) -> None:
        """
        The logged text is escaped and cut to 100 characters; the count is
        the number of bytes received.
        """
        s = session()
        connect(s)
        data = b"\x16\x03\x01" + b"A" * 200
        [log, _] = s.clientSpoke(T0 + 12, data)
        assert isinstance(log, Log)
        self.assertEqual(log.fields["count"], 203)
        self.assertEqual(log.fields["delay"], "12")
        self.assertEqual(log.fields["escaped"], "\\026\\003\\001" + "A" * 88)

    def test_hangup(self) -> None:
        """
        A client that hangs up during the wait is logged, without penalty
        or cache update; later events do nothing.
        """
        s = session(WITH_DNSBL)
        connect(s)
        actions = s.hungUp(T0 + 0.4)
        self.assertEqual(
            actions,
            [
                Log(
                    "HANGUP after {delay} from [{address}]:{port} in {where}",
                    {
                        "address": "203.0.113.5",
                        "port": 41234,
                        "delay": "0.4",
                        "where": "tests before SMTP handshake",
                    },
                )
            ],
        )
        self.assertEqual(
            texts(actions),
            ["HANGUP after 0.4 from [203.0.113.5]:41234 in tests before SMTP handshake"],
        )
        self.assertEqual(s.dnsblDone(T0 + 1, 5, 60, "zen.example"), [])
        self.assertEqual(s.waitEnded(T0 + 6), [])


class DNSBLTests(SynchronousTestCase):
    """
    The DNSBL verdict, its actions and DNSWL allowlisting.
    """

    def test_fail(self) -> None:
        """
        A score at the threshold logs C{DNSBL rank}; C{drop} answers 521
        5.7.1 naming the list, C{enforce} sends to the engine with 550,
        C{ignore} hands off without PASS NEW; soft_bounce makes 4xx.
        """
        blocked = "5.7.1 Service unavailable; client [203.0.113.5] blocked using zen.example"
        table = [
            ("drop", False, Drop(f"521 {blocked}\r\n".encode())),
            ("drop", True, Drop(b"421 4.7.1" + blocked[5:].encode() + b"\r\n")),
            ("enforce", False, f"550 {blocked}"),
            ("enforce", True, f"450 4.7.1{blocked[5:]}"),
            ("ignore", False, HandOff(teaserSent=True)),
        ]
        for action, soft, want in table:
            s = session(
                attr.evolve(WITH_DNSBL, dnsblAction=action, dnsblThreshold=2, softBounce=soft)
            )
            connect(s)
            self.assertEqual(s.dnsblDone(T0 + 1, 3, 60, "zen.example"), [])
            actions = s.waitEnded(T0 + 6)
            self.assertEqual(texts(actions), ["DNSBL rank 3 for [203.0.113.5]:41234"], action)
            final = others(actions)[-1]
            if isinstance(want, str):
                assert isinstance(final, EnterDummyEngine)
                self.assertEqual(final.replies, (want,))
                self.assertFalse(final.pregreeted)
                self.assertFalse([a for a in actions if isinstance(a, CacheUpdate)])
            else:
                self.assertEqual(final, want)
            if action == "ignore":
                # The pregreet pass is cached, the DNSBL test repeats.
                self.assertEqual(
                    others(actions)[0], CacheUpdate(Verdicts(int(T0) + 6 + DAY, 0, 1, 1, 1))
                )

    def test_pass(self) -> None:
        """
        A score below the threshold passes with the DNS TTL; the pending
        pregreet test still waits the full greet wait.
        """
        s = session(WITH_DNSBL)
        connect(s)
        self.assertEqual(s.dnsblDone(T0 + 0.1, 0, 300, None), [])
        actions = s.waitEnded(T0 + 6)
        self.assertEqual(texts(actions), ["PASS NEW [203.0.113.5]:41234"])
        self.assertEqual(
            others(actions),
            [
                CacheUpdate(Verdicts(int(T0) + 6 + DAY, int(T0) + 6 + 300, 1, 1, 1)),
                HandOff(teaserSent=True),
            ],
        )

    def test_dnsblOnlyEndsEarly(self) -> None:
        """
        Without the pregreet test, the session decides as soon as the
        DNSBL answer is in.
        """
        s = session(attr.evolve(WITH_DNSBL, greetBanner=""))
        self.assertEqual(connect(s), [StartDNSBL(), WaitUntil(T0 + 6)])
        actions = s.dnsblDone(T0 + 0.2, 0, 60, None)
        self.assertEqual(
            others(actions), [CacheUpdate(Verdicts(1, int(T0) + 60, 1, 1, 1)), HandOff(teaserSent=False)]
        )

    def test_noAnswerInTime(self) -> None:
        """
        When the wait ends without a DNSBL answer, the test passes with the
        minimum TTL, so it repeats soon.
        """
        s = session(attr.evolve(WITH_DNSBL, greetBanner=""))
        connect(s)
        actions = s.waitEnded(T0 + 6)
        self.assertEqual(
            others(actions), [CacheUpdate(Verdicts(1, int(T0) + 66, 1, 1, 1)), HandOff(teaserSent=False)]
        )

    def test_allowlist(self) -> None:
        """
        A score at or below a negative allowlist threshold marks every other
        test (deep and disabled ones too) passed with the DNS TTL, so the
        client skips the deep tests and is handed off; not when another
        test failed, or when allowlisting is off.
        """
        deep = attr.evolve(
            WITH_DNSBL, dnsblAllowlistThreshold=-1, pipeliningEnabled=True, greetBanner=""
        )
        s = session(deep)
        connect(s)
        actions = s.dnsblDone(T0 + 1, -5, 600, None)
        until = int(T0) + 1 + 600
        self.assertEqual(texts(actions), ["PASS NEW [203.0.113.5]:41234"])
        self.assertEqual(
            others(actions),
            [CacheUpdate(Verdicts(until, until, until, until, until)), HandOff(teaserSent=False)],
        )

        # Allowlisting off: the deep test still runs.
        s = session(attr.evolve(deep, dnsblAllowlistThreshold=0))
        connect(s)
        [final] = s.dnsblDone(T0 + 1, -5, 600, None)
        assert isinstance(final, EnterDummyEngine)
        self.assertEqual(final.deepTests, ("pipelining",))
        self.assertFalse(final.failed)
        self.assertEqual(final.verdicts, Verdicts(1, int(T0) + 601, 0, 1, 1))

        # Another test failed: no allowlisting.
        s = session(attr.evolve(deep, greetBanner="mx", greetAction="enforce"))
        connect(s)
        s.clientSpoke(T0 + 0.5, b"EHLO\r\n")
        [final] = s.dnsblDone(T0 + 1, -5, 600, None)
        assert isinstance(final, EnterDummyEngine)
        self.assertTrue(final.failed)

    def test_allowlistKeepsLaterExpiry(self) -> None:
        """
        DNSWL allowlisting never shortens a pass that lasts longer.
        """
        s = session(
            attr.evolve(WITH_DNSBL, dnsblAllowlistThreshold=-1, greetBanner="")
        )
        later = int(T0) + 10 * DAY
        connect(s, cached=Verdicts(1, 0, later, 0, 0))
        actions = s.dnsblDone(T0, -1, 60, None)
        until = int(T0) + 60
        self.assertEqual(
            others(actions),
            [CacheUpdate(Verdicts(until, until, later, until, until)), HandOff(teaserSent=False)],
        )


class DeepTestTests(SynchronousTestCase):
    """
    Handing over to the dummy engine for after-220 tests.
    """

    def test_deepTestsPending(self) -> None:
        """
        A client with an after-220 test to do goes to the dummy engine after
        the wait, without PASS NEW or cache update; the passes so far ride
        along for the engine.
        """
        s = session(attr.evolve(BASE, pipeliningEnabled=True, bareNewlineEnabled=True))
        connect(s)
        actions = s.waitEnded(T0 + 6)
        self.assertEqual(texts(actions), [])
        [final] = actions
        assert isinstance(final, EnterDummyEngine)
        self.assertEqual(final.deepTests, ("pipelining", "bare_newline"))
        self.assertEqual(final.verdicts, Verdicts(int(T0) + 6 + DAY, 1, 0, 1, 0))
        self.assertEqual(final.rcptReply, "450 4.3.2 Service currently unavailable")
        self.assertTrue(final.teaserSent)
        self.assertFalse(final.failed)

    def test_onlyDeepTestsLeft(self) -> None:
        """
        When the before-220 tests are cached but a deep test is not, the
        client goes straight to the engine, without teaser or wait.
        """
        s = session(attr.evolve(BASE, nonSmtpCommandEnabled=True))
        [final] = connect(s, cached=Verdicts(int(T0) + 100, 1, 1, 0, 1))
        assert isinstance(final, EnterDummyEngine)
        self.assertEqual(final.deepTests, ("non_smtp_command",))
        self.assertFalse(final.teaserSent)


class SansIOTests(SynchronousTestCase):
    """
    The decision core stays free of I/O.
    """

    def test_noIO(self) -> None:
        """
        C{_early.py} names no Twisted module, transport, reactor or
        Deferred (style rule 1).
        """
        import inspect
        import re

        from mtaguard.postscreen import _early

        text = inspect.getsource(_early)
        for word in ("twisted", "transport", "reactor", "Deferred"):
            self.assertIsNone(
                re.search(word, text, re.IGNORECASE if word == "twisted" else 0), word
            )


class PassOldTests(SynchronousTestCase):
    """
    L{EarlySettings.passOld}, the decision the protocol takes without
    building the before-220 state, is the one L{EarlySession.connected}
    takes for a client the access list does not know.
    """

    @settings(max_examples=300, deadline=None)
    @given(
        flags=st.lists(st.booleans(), min_size=5, max_size=5),
        extras=st.lists(st.tuples(st.sampled_from(["alpha", "beta", "gamma"]), st.booleans()), max_size=3, unique_by=lambda e: e[0]),
        times=st.lists(st.sampled_from([0, 1, int(T0) - 1, int(T0), int(T0) + 1, int(T0) + DAY]), min_size=8, max_size=8),
        veto=st.booleans(),
        shared=st.booleans(),
    )
    def test_sameAsConnected(
        self, flags: list[bool], extras: list[tuple[str, bool]], times: list[int], veto: bool, shared: bool
    ) -> None:
        """
        Whatever tests are enabled and whatever the cache holds, C{passOld}
        answers yes exactly when C{connected} hands off at once.
        """
        greet, dnsbl, pipelining, nonSmtp, bare = flags
        early = EarlySettings(
            greetBanner="mx.example ESMTP" if greet else "",
            dnsblEnabled=dnsbl,
            pipeliningEnabled=pipelining,
            nonSmtpCommandEnabled=nonSmtp,
            bareNewlineEnabled=bare,
            extras=tuple(ExtraTest(name, "enforce", 3600.0, afterGreeting=after) for name, after in sorted(extras)),
        )
        cached = Verdicts(*times[:5], extra=tuple(sorted((name, times[5 + i]) for i, (name, _) in enumerate(extras))))
        actions = session(early).connected(T0, access=Access.DUNNO, cached=cached, allowlistVeto=veto, shared=shared)
        handedOff = others(actions) == [HandOff(teaserSent=False)]
        # Postfix's rule, stated independently: every enabled test's pass,
        # and every third-party test's, expires after now.
        allHeld = all(time > T0 for time, flag in zip(times, flags) if flag) and all(
            times[5 + i] > T0 for i in range(len(extras))
        )
        self.assertEqual(early.passOld(cached, T0), allHeld)
        self.assertEqual(handedOff, not veto and allHeld)
        if handedOff:
            self.assertEqual(texts(actions), [] if shared else ["PASS OLD [203.0.113.5]:41234"])

    def test_enabledTests(self) -> None:
        """
        The enabled tests come in Postfix's order.
        """
        self.assertEqual(BASE.enabledTests(), ["pregreet"])
        self.assertEqual(
            attr.evolve(WITH_DNSBL, bareNewlineEnabled=True).enabledTests(), ["pregreet", "dnsbl", "bare_newline"]
        )
        self.assertTrue(WITH_DNSBL.enabled("dnsbl"))
        self.assertFalse(BASE.enabled("dnsbl"))
