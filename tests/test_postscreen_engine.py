"""
Tests for L{mtaguard.postscreen._engine}: postscreen's dummy SMTP engine
(every command, every limit, the three deep protocol tests with each
action, soft_bounce, STARTTLS, the end-of-session verdict), fed with
explicit times.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import attr
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config._view import ParameterView
from mtaguard.postscreen._cache import Verdicts
from mtaguard.postscreen._early import (
    BARE_NEWLINE,
    DEEP_TESTS,
    NON_SMTP_COMMAND,
    PIPELINING,
    CacheUpdate,
    EarlySettings,
    EnterDummyEngine,
    Log,
    WaitUntil,
)
from mtaguard.postscreen._engine import (
    Disconnect,
    DummyEngine,
    EngineSettings,
    Send,
    StartTLS,
)

T0 = 1_700_000_000.0
DAY = 86400
ADDRESS = "203.0.113.5"
PORT = 41234
WHO = f"[{ADDRESS}]:{PORT}"

EHLO_DEFAULT = (
    b"250-mx.example\r\n"
    b"250-SIZE 10240000\r\n"
    b"250-VRFY\r\n"
    b"250-ETRN\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250-8BITMIME\r\n"
    b"250-DSN\r\n"
    b"250-SMTPUTF8\r\n"
    b"250 CHUNKING\r\n"
)


def makeSettings(values: Optional[Mapping[str, str]] = None, *, tlsAvailable: bool = False) -> EngineSettings:
    """
    Engine settings read from a L{ParameterView} over C{values}, on top of
    a fixed host name, as postscreen's protocol reads them.
    """
    view = ParameterView(
        {
            "myhostname": "mx.example",
            "respectful_logging": "yes",
            "compatibility_level": "3.6",
            **(values or {}),
        }
    )
    return EngineSettings.fromView(view, EarlySettings.fromView(view), tlsAvailable=tlsAvailable)


DEFAULT = makeSettings()


def entry(
    deepTests: Sequence[str] = DEEP_TESTS,
    *,
    replies: Sequence[str] = (),
    pregreeted: bool = False,
    failed: bool = False,
    vetoed: bool = False,
    verdicts: Verdicts = Verdicts(pregreet=int(T0) + DAY, dnsbl=1),
) -> EnterDummyEngine:
    """
    How a before-220 phase could have ended; by default the pregreet test
    passed (its verdict lies in the future), DNSBL is disabled and all
    three deep tests are to run.
    """
    return EnterDummyEngine(
        replies=tuple(replies),
        teaserSent=True,
        pregreeted=pregreeted,
        deepTests=tuple(deepTests),
        verdicts=verdicts,
        failed=failed,
        vetoed=vetoed,
    )


def engine(
    settings: EngineSettings = DEFAULT, how: Optional[EnterDummyEngine] = None, **kw: Any
) -> DummyEngine:
    """
    A started engine (its greeting discarded).
    """
    e = DummyEngine(
        settings,
        how if how is not None else entry(),
        clientAddress=ADDRESS,
        clientPort=PORT,
        start=T0 - 6,
        **kw,
    )
    e.start(T0)
    return e


def feed(e: DummyEngine, *lines: bytes, now: float = T0) -> list[Any]:
    """
    Feed each line (CRLF added) in its own C{dataReceived}, so the
    pipelining test never fires.
    """
    actions: list[Any] = []
    for line in lines:
        actions.extend(e.dataReceived(now, line + b"\r\n"))
    return actions


def sent(actions: Sequence[Any]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send))


def texts(actions: Sequence[Any]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Log)]


def replyTo(line: bytes, settings: EngineSettings = DEFAULT, *before: bytes, **kw: Any) -> bytes:
    """
    What a fresh engine answers to C{line} after the C{before} lines.
    """
    e = engine(settings, **kw)
    feed(e, *before)
    return sent(feed(e, line))


def updates(actions: Sequence[Any]) -> list[Verdicts]:
    return [a.verdicts for a in actions if isinstance(a, CacheUpdate)]


class SettingsTests(SynchronousTestCase):
    """
    L{EngineSettings.fromView} reads Postfix's parameters.
    """

    def test_defaults(self) -> None:
        """
        The defaults are Postfix's: banner C{$smtpd_banner}, 20 commands,
        300 s per command, lines of 2048, no TLS, the forbidden commands of
        C{smtpd_forbidden_commands}.
        """
        s = DEFAULT
        self.assertEqual(s.banner, "mx.example ESMTP Postfix")
        self.assertEqual(
            (s.commandCountLimit, s.commandTimeLimit, s.lineLengthLimit, s.messageSizeLimit),
            (20, 300, 2048, 10240000),
        )
        self.assertEqual((s.tlsLevel, s.tlsAvailable, s.warnings), ("none", False, ()))
        self.assertEqual((s.disableVrfy, s.heloRequired, s.smtputf8), (False, False, True))
        self.assertTrue(s.forbidden.matches(b"GET"))
        self.assertTrue(s.forbidden.matches(b"Subject:"))
        self.assertFalse(s.forbidden.matches(b"FOO"))
        self.assertEqual(s.minTTL, 60)

    def test_stress(self) -> None:
        """
        Under stress the command time limit is 10 s.
        """
        view = ParameterView({"myhostname": "mx.example"})
        view.stress = True
        self.assertEqual(EngineSettings.fromView(view, EarlySettings.fromView(view)).commandTimeLimit, 10)

    def test_tlsLevel(self) -> None:
        """
        C{postscreen_tls_security_level} wins over the obsolete booleans;
        empty, it falls back on them (enforce implies offer); verify,
        secure and fingerprint become encrypt with Postfix's warning.
        """
        for values, level in [
            ({}, "none"),
            ({"postscreen_use_tls": "yes"}, "may"),
            ({"postscreen_enforce_tls": "yes"}, "encrypt"),
            ({"smtpd_tls_security_level": "may"}, "may"),
            ({"postscreen_tls_security_level": "none", "postscreen_use_tls": "yes"}, "none"),
            ({"postscreen_tls_security_level": "encrypt"}, "encrypt"),
        ]:
            self.assertEqual(makeSettings(values).tlsLevel, level, values)
        s = makeSettings({"postscreen_tls_security_level": "verify"})
        self.assertEqual(s.tlsLevel, "encrypt")
        self.assertEqual(
            s.warnings,
            ('warning: postscreen_tls_security_level: unsupported TLS level "verify", using "encrypt"',),
        )

    def test_others(self) -> None:
        """
        The EHLO keywords to discard are upper-cased; the rest is read as
        set.
        """
        s = makeSettings(
            {
                "postscreen_discard_ehlo_keywords": "vrfy, dsn",
                "postscreen_forbidden_commands": "FOO",
                "message_size_limit": "0",
                "postscreen_disable_vrfy_command": "yes",
                "postscreen_helo_required": "yes",
                "smtputf8_enable": "no",
                "postscreen_command_count_limit": "5",
                "line_length_limit": "600",
            }
        )
        self.assertEqual(s.discardEhloKeywords, frozenset({"VRFY", "DSN"}))
        self.assertTrue(s.forbidden.matches(b"foo"))
        self.assertFalse(s.forbidden.matches(b"GET"))
        self.assertEqual(
            (
                s.messageSizeLimit,
                s.disableVrfy,
                s.heloRequired,
                s.smtputf8,
                s.commandCountLimit,
                s.lineLengthLimit,
            ),
            (0, True, True, False, 5, 600),
        )


class GreetingTests(SynchronousTestCase):
    """
    The final C{220} and the first deadline.
    """

    def test_greeting(self) -> None:
        """
        The engine greets with C{220 <smtpd_banner>} and waits
        C{postscreen_command_time_limit} for a command.
        """
        e = DummyEngine(DEFAULT, entry(), clientAddress=ADDRESS, clientPort=PORT, start=T0)
        self.assertEqual(
            e.start(T0 + 6), [Send(b"220 mx.example ESMTP Postfix\r\n"), WaitUntil(T0 + 306)]
        )
        self.assertEqual(e.start(T0 + 7), [])

    def test_pregreetEnforced(self) -> None:
        """
        A client that failed the pregreet test with C{enforce} gets no
        C{220} (Postfix spares the C{NON-SMTP COMMAND} events).
        """
        s = makeSettings({"postscreen_greet_action": "enforce"})
        e = DummyEngine(
            s,
            entry(pregreeted=True, failed=True, replies=["550 5.5.1 Protocol error"]),
            clientAddress=ADDRESS,
            clientPort=PORT,
            start=T0,
        )
        self.assertEqual(e.start(T0 + 6), [WaitUntil(T0 + 306)])

    def test_pregreetIgnored(self) -> None:
        """
        C{ignore} un-fails the pregreet test, so Postfix sends the C{220}.
        """
        e = DummyEngine(DEFAULT, entry(pregreeted=True), clientAddress=ADDRESS, clientPort=PORT, start=T0)
        self.assertEqual(sent(e.start(T0 + 6)), b"220 mx.example ESMTP Postfix\r\n")


class CommandTests(SynchronousTestCase):
    """
    Every row of the command table, with Postfix's exact replies.
    """

    def test_helo(self) -> None:
        """
        HELO answers with the host name; without an argument it is a
        syntax error.
        """
        self.assertEqual(replyTo(b"HELO client.example"), b"250 mx.example\r\n")
        self.assertEqual(replyTo(b"helo"), b"501 Syntax: HELO hostname\r\n")
        self.assertEqual(replyTo(b"HELO   "), b"501 Syntax: HELO hostname\r\n")

    def test_ehlo(self) -> None:
        """
        EHLO lists Postfix's keywords, never PIPELINING, AUTH, XCLIENT or
        XFORWARD; without an argument it is a syntax error.
        """
        self.assertEqual(replyTo(b"EHLO client.example"), EHLO_DEFAULT)
        self.assertEqual(replyTo(b"EHLO"), b"501 Syntax: EHLO hostname\r\n")

    def test_ehloVariants(self) -> None:
        """
        C{message_size_limit = 0} gives a bare SIZE, a disabled VRFY and
        SMTPUTF8 are not announced, discarded keywords are left out, and
        with everything discarded the reply is one line.
        """
        s = makeSettings(
            {"message_size_limit": "0", "postscreen_disable_vrfy_command": "yes", "smtputf8_enable": "no"}
        )
        self.assertEqual(
            replyTo(b"EHLO c", s),
            b"250-mx.example\r\n250-SIZE\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n"
            b"250-8BITMIME\r\n250-DSN\r\n250 CHUNKING\r\n",
        )
        s = makeSettings({"postscreen_discard_ehlo_keywords": "chunking dsn size"})
        self.assertEqual(
            replyTo(b"EHLO c", s),
            b"250-mx.example\r\n250-VRFY\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n"
            b"250-8BITMIME\r\n250 SMTPUTF8\r\n",
        )
        s = makeSettings(
            {
                "postscreen_discard_ehlo_keywords": (
                    "size vrfy etrn enhancedstatuscodes 8bitmime dsn smtputf8 chunking"
                )
            }
        )
        self.assertEqual(replyTo(b"EHLO c", s), b"250 mx.example\r\n")

    def test_ehloDiscardLog(self) -> None:
        """
        A per-client keyword list that differs from the static one is
        logged (Postfix's text, with no colon before the port), unless it
        holds C{silent-discard}; the static list is never logged.
        """
        e = engine(discardEhloKeywords=frozenset({"vrfy", "etrn", "bogus"}))
        actions = feed(e, b"EHLO c")
        self.assertEqual(texts(actions), [f"[{ADDRESS}]{PORT}: discarding EHLO keywords: ETRN VRFY"])
        self.assertNotIn(b"VRFY", sent(actions))
        e = engine(discardEhloKeywords=frozenset({"vrfy", "silent-discard"}))
        actions = feed(e, b"EHLO c")
        self.assertEqual(texts(actions), [])
        self.assertNotIn(b"VRFY", sent(actions))
        s = makeSettings({"postscreen_discard_ehlo_keywords": "vrfy"})
        self.assertEqual(texts(feed(engine(s), b"EHLO c")), [])
        same = engine(s, discardEhloKeywords=frozenset({"VRFY", "unknown"}))
        self.assertEqual(texts(feed(same, b"EHLO c")), [])

    def test_mail(self) -> None:
        """
        MAIL never rejects the sender; it needs a colon, no sender yet and,
        with C{postscreen_helo_required}, a HELO first.
        """
        self.assertEqual(replyTo(b"MAIL FROM:<a@example.com>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(replyTo(b"MAIL FROM:<>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(replyTo(b"MAIL FROM<a@b>"), b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
        self.assertEqual(replyTo(b"MAIL"), b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
        self.assertEqual(
            replyTo(b"MAIL FROM:<b@c>", DEFAULT, b"MAIL FROM:<>"), b"503 5.5.1 Error: nested MAIL command\r\n"
        )
        required = makeSettings({"postscreen_helo_required": "yes"})
        self.assertEqual(replyTo(b"MAIL FROM:<a@b>", required), b"503 5.5.1 Error: send HELO/EHLO first\r\n")
        self.assertEqual(replyTo(b"MAIL FROM:<a@b>", required, b"HELO c"), b"250 2.1.0 Ok\r\n")

    def test_rcpt(self) -> None:
        """
        RCPT needs MAIL and a colon; then it is rejected with the RCPT reply
        and logged with sender, recipient, protocol and HELO.
        """
        self.assertEqual(replyTo(b"RCPT TO:<u@mx.example>"), b"503 5.5.1 Error: need MAIL command\r\n")
        self.assertEqual(
            replyTo(b"RCPT <u@mx.example>", DEFAULT, b"MAIL FROM:<a@b>"),
            b"501 5.5.4 Syntax: RCPT TO:<address>\r\n",
        )
        e = engine()
        feed(e, b"EHLO good.example", b"MAIL FROM:<a@good.example> SIZE=100")
        actions = feed(e, b"RCPT TO:<user@mx.test.example>")
        self.assertEqual(sent(actions), b"450 4.3.2 Service currently unavailable\r\n")
        self.assertEqual(
            texts(actions),
            [
                f"NOQUEUE: reject: RCPT from {WHO}: 450 4.3.2 Service currently unavailable;"
                " from=<a@good.example>, to=<user@mx.test.example>, proto=ESMTP, helo=<good.example>"
            ],
        )
        e = engine()
        feed(e, b"MAIL FROM:<>")
        self.assertEqual(
            texts(feed(e, b'RCPT TO:<@relay.example:"odd\\\\one"@x\x01>')),
            [
                f"NOQUEUE: reject: RCPT from {WHO}: 450 4.3.2 Service currently unavailable;"
                " from=<>, to=<odd\\\\one@x\\001>, proto=SMTP, helo=<>"
            ],
        )

    def test_rcptEnforced(self) -> None:
        """
        After a before-220 C{enforce} failure every RCPT (and VRFY) gets
        that test's 550 reply.
        """
        how = entry(replies=["550 5.5.1 Protocol error"], failed=True)
        e = engine(DEFAULT, how)
        feed(e, b"HELO c", b"MAIL FROM:<a@b>")
        actions = feed(e, b"RCPT TO:<u@x>", b"VRFY u")
        self.assertEqual(sent(actions), b"550 5.5.1 Protocol error\r\n" * 2)
        self.assertEqual(
            texts(actions),
            [
                f"NOQUEUE: reject: RCPT from {WHO}: 550 5.5.1 Protocol error;"
                " from=<a@b>, to=<u@x>, proto=SMTP, helo=<c>"
            ],
        )

    def test_data(self) -> None:
        """
        DATA is logged and answered, and the engine hangs up.
        """
        for before, line, reply in [
            ((), b"DATA", b"503 5.5.1 Error: need RCPT command\r\n"),
            ((b"MAIL FROM:<a@b>",), b"DATA", b"554 5.5.1 Error: no valid recipients\r\n"),
            ((b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>"), b"DATA", b"554 5.5.1 Error: no valid recipients\r\n"),
            ((b"MAIL FROM:<a@b>",), b"DATA now", b"501 5.5.4 Syntax: DATA\r\n"),
        ]:
            e = engine()
            feed(e, *before)
            actions = feed(e, line)
            # After RCPT the client also passed the deep tests (PASS NEW).
            self.assertEqual(texts(actions)[0], f"DATA without valid RCPT from {WHO}")
            self.assertEqual(sent(actions), reply)
            self.assertEqual(actions[-1], Disconnect())
            self.assertTrue(e.finished)

    def test_bdat(self) -> None:
        """
        BDAT is logged and answered, and the engine hangs up.
        """
        chunking = makeSettings({"postscreen_discard_ehlo_keywords": "chunking"})
        for settings_, before, line, reply in [
            (DEFAULT, (), b"BDAT 10 LAST", b"554 5.5.1 Error: need MAIL command\r\n"),
            (DEFAULT, (b"MAIL FROM:<a@b>",), b"BDAT 10", b"554 5.5.1 Error: no valid recipients\r\n"),
            (DEFAULT, (b"MAIL FROM:<a@b>",), b"BDAT", b"501 5.5.4 Syntax: BDAT count [LAST]\r\n"),
            (chunking, (b"MAIL FROM:<a@b>",), b"BDAT 10", b"502 5.5.1 Error: command not implemented\r\n"),
        ]:
            e = engine(settings_)
            feed(e, *before)
            actions = feed(e, line)
            self.assertEqual(texts(actions), [f"BDAT without valid RCPT from {WHO}"])
            self.assertEqual(sent(actions), reply)
            self.assertEqual(actions[-1], Disconnect())

    def test_rsetNoop(self) -> None:
        """
        RSET forgets the sender; NOOP does nothing; both say Ok.
        """
        e = engine()
        feed(e, b"MAIL FROM:<a@b>")
        self.assertEqual(sent(feed(e, b"RSET", b"NOOP")), b"250 2.0.0 Ok\r\n" * 2)
        self.assertEqual(sent(feed(e, b"RCPT TO:<c@d>")), b"503 5.5.1 Error: need MAIL command\r\n")
        self.assertEqual(sent(feed(e, b"MAIL FROM:<a@b>")), b"250 2.1.0 Ok\r\n")

    def test_vrfy(self) -> None:
        """
        VRFY gets the RCPT reply (unlogged), C{502} when disabled, and a
        syntax error without an argument.
        """
        self.assertEqual(replyTo(b"VRFY u"), b"450 4.3.2 Service currently unavailable\r\n")
        self.assertEqual(replyTo(b"VRFY"), b"501 5.5.4 Syntax: VRFY address\r\n")
        disabled = makeSettings({"postscreen_disable_vrfy_command": "yes"})
        self.assertEqual(replyTo(b"VRFY u", disabled), b"502 5.5.1 VRFY command is disabled\r\n")
        self.assertEqual(texts(feed(engine(), b"VRFY u")), [])

    def test_etrn(self) -> None:
        """
        ETRN is refused; without an argument it is a syntax error; with
        C{postscreen_helo_required} it needs HELO first.
        """
        self.assertEqual(replyTo(b"ETRN example.com"), b"458 Unable to queue messages\r\n")
        self.assertEqual(replyTo(b"ETRN"), b"500 Syntax: ETRN domain\r\n")
        required = makeSettings({"postscreen_helo_required": "yes"})
        self.assertEqual(replyTo(b"ETRN x", required), b"503 5.5.1 Error: send HELO/EHLO first\r\n")
        self.assertEqual(replyTo(b"ETRN x", required, b"EHLO c"), b"458 Unable to queue messages\r\n")

    def test_quit(self) -> None:
        """
        QUIT says Bye and hangs up; after that every event is ignored.
        """
        e = engine()
        actions = feed(e, b"QUIT")
        self.assertEqual(sent(actions), b"221 2.0.0 Bye\r\n")
        self.assertEqual(actions[-1], Disconnect())
        self.assertTrue(e.finished)
        self.assertEqual(e.dataReceived(T0, b"NOOP\r\n"), [])
        self.assertEqual(e.timerFired(T0 + 1000), [])
        self.assertEqual(e.connectionLost(T0 + 1), [])
        self.assertEqual(e.tlsStarted(T0 + 1), [])

    def test_notRecognized(self) -> None:
        """
        AUTH, XCLIENT, XFORWARD, unknown commands and empty lines are not
        recognized.
        """
        lines = [b"AUTH PLAIN AGFAYg==", b"XCLIENT NAME=x", b"XFORWARD ADDR=1.2.3.4", b"FOO bar", b"", b"  "]
        for line in lines:
            self.assertEqual(replyTo(line), b"502 5.5.2 Error: command not recognized\r\n", line)

    def test_caseInsensitive(self) -> None:
        """
        Command names are matched without regard to case.
        """
        self.assertEqual(replyTo(b"nOoP"), b"250 2.0.0 Ok\r\n")
        self.assertEqual(replyTo(b"mail from:<a@b>"), b"250 2.1.0 Ok\r\n")

    def test_nul(self) -> None:
        """
        Nothing after a NUL byte exists, as for Postfix's C strings.
        """
        self.assertEqual(replyTo(b"HELO\0 client"), b"501 Syntax: HELO hostname\r\n")

    def test_bareNewlineAccepted(self) -> None:
        """
        Without the bare newline test, lines ending in a bare LF are
        commands like any other.
        """
        e = engine(DEFAULT, entry(deepTests=()))
        actions = e.dataReceived(T0, b"NOOP\n")
        self.assertEqual(sent(actions), b"250 2.0.0 Ok\r\n")
        self.assertEqual(texts(actions), [])


class TLSTests(SynchronousTestCase):
    """
    STARTTLS in the engine, and TLS enforcement.
    """

    MAY = makeSettings({"postscreen_tls_security_level": "may"}, tlsAvailable=True)
    ENCRYPT = makeSettings({"postscreen_tls_security_level": "encrypt"}, tlsAvailable=True)

    def test_offered(self) -> None:
        """
        STARTTLS is announced when the level asks for it and the protocol
        can do TLS; not after TLS started.
        """
        self.assertIn(b"250-STARTTLS\r\n", replyTo(b"EHLO c", self.MAY))
        unavailable = makeSettings({"postscreen_tls_security_level": "may"})
        self.assertNotIn(b"STARTTLS", replyTo(b"EHLO c", unavailable))
        discarded = makeSettings(
            {"postscreen_tls_security_level": "may", "postscreen_discard_ehlo_keywords": "starttls"},
            tlsAvailable=True,
        )
        self.assertNotIn(b"STARTTLS", replyTo(b"EHLO c", discarded))
        self.assertEqual(
            replyTo(b"STARTTLS", discarded), b"502 5.5.1 Error: command not implemented\r\n"
        )

    def test_starttls(self) -> None:
        """
        STARTTLS says Ready and starts TLS; after the handshake HELO and
        MAIL are forgotten, STARTTLS is not offered again and a second
        STARTTLS is refused.
        """
        s = attr.evolve(self.MAY, heloRequired=True)
        e = engine(s)
        feed(e, b"EHLO c", b"MAIL FROM:<a@b>")
        actions = feed(e, b"STARTTLS", now=T0 + 1)
        self.assertEqual(
            actions, [Send(b"220 2.0.0 Ready to start TLS\r\n"), StartTLS(), WaitUntil(T0 + 301)]
        )
        self.assertEqual(e.tlsStarted(T0 + 2), [WaitUntil(T0 + 302)])
        self.assertEqual(sent(feed(e, b"MAIL FROM:<a@b>")), b"503 5.5.1 Error: send HELO/EHLO first\r\n")
        self.assertNotIn(b"STARTTLS", sent(feed(e, b"EHLO c")))
        self.assertEqual(sent(feed(e, b"RCPT TO:<x@y>")), b"503 5.5.1 Error: need MAIL command\r\n")
        self.assertEqual(sent(feed(e, b"STARTTLS")), b"554 5.5.1 Error: TLS already active\r\n")
        self.assertEqual(e.tlsStarted(T0 + 3), [])

    def test_refused(self) -> None:
        """
        STARTTLS with an argument gets Postfix 3.7's (odd) EHLO syntax
        reply; without TLS it is not implemented.
        """
        self.assertEqual(replyTo(b"STARTTLS now", self.MAY), b"501 Syntax: EHLO hostname\r\n")
        self.assertEqual(replyTo(b"STARTTLS"), b"502 5.5.1 Error: command not implemented\r\n")

    def test_injectionDiscarded(self) -> None:
        """
        Plaintext pipelined after STARTTLS is thrown away, never read as if
        it came over TLS (CVE-2011-0411); the pipelining test still sees
        it.
        """
        e = engine(self.MAY)
        feed(e, b"EHLO c")
        actions = e.dataReceived(T0, b"STARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\n")
        self.assertEqual(sent(actions), b"220 2.0.0 Ready to start TLS\r\n")
        self.assertIn(StartTLS(), actions)
        self.assertEqual(
            texts(actions),
            [f"COMMAND PIPELINING from {WHO} after STARTTLS: MAIL FROM:<evil@x>\\r\\nRCPT TO:<v@y>\\r\\n"],
        )
        self.assertEqual(e.buffered, 0)
        e.tlsStarted(T0 + 1)
        self.assertEqual(sent(feed(e, b"RCPT TO:<v@y>")), b"503 5.5.1 Error: need MAIL command\r\n")

    def test_beforeHandshakeReported(self) -> None:
        """
        Input the TLS layer delivers before the handshake is reported waits
        for L{DummyEngine.tlsStarted}; so much of it that no line fits is a
        length-limit violation.
        """
        e = engine(self.MAY)
        feed(e, b"STARTTLS")
        self.assertEqual(e.dataReceived(T0, b"EHLO c\r\n"), [])
        self.assertEqual(sent(e.tlsStarted(T0 + 1)), EHLO_DEFAULT)
        e = engine(self.MAY)
        feed(e, b"STARTTLS")
        actions = e.dataReceived(T0, b"x" * (4 * 2048 + 1))
        self.assertEqual(texts(actions), [f"COMMAND LENGTH LIMIT from {WHO} after STARTTLS"])
        self.assertTrue(e.finished)

    def test_handshakeTimeLimit(self) -> None:
        """
        The handshake must end within the command time limit.
        """
        e = engine(self.MAY)
        feed(e, b"STARTTLS", now=T0 + 1)
        actions = e.timerFired(T0 + 301)
        self.assertEqual(texts(actions), [f"COMMAND TIME LIMIT from {WHO} after STARTTLS"])

    def test_encrypt(self) -> None:
        """
        With level encrypt, only HELO, EHLO, STARTTLS, NOOP and QUIT work
        before TLS; the rest get 530; after TLS everything works.
        """
        for line in [b"MAIL FROM:<a@b>", b"RCPT TO:<a@b>", b"DATA", b"BDAT 1", b"RSET", b"VRFY u", b"ETRN x"]:
            e = engine(self.ENCRYPT)
            actions = feed(e, line)
            self.assertEqual(sent(actions), b"530 5.7.0 Must issue a STARTTLS command first\r\n", line)
            self.assertFalse(e.finished)
        self.assertEqual(replyTo(b"NOOP", self.ENCRYPT), b"250 2.0.0 Ok\r\n")
        self.assertEqual(replyTo(b"HELO c", self.ENCRYPT), b"250 mx.example\r\n")
        self.assertIn(b"250-STARTTLS", replyTo(b"EHLO c", self.ENCRYPT))
        self.assertEqual(replyTo(b"QUIT", self.ENCRYPT), b"221 2.0.0 Bye\r\n")
        self.assertEqual(replyTo(b"AUTH x", self.ENCRYPT), b"502 5.5.2 Error: command not recognized\r\n")
        e = engine(self.ENCRYPT)
        feed(e, b"STARTTLS")
        e.tlsStarted(T0)
        self.assertEqual(sent(feed(e, b"MAIL FROM:<a@b>")), b"250 2.1.0 Ok\r\n")


class LimitTests(SynchronousTestCase):
    """
    The command count, command time and line length limits.
    """

    def test_countLimit(self) -> None:
        """
        The command after C{postscreen_command_count_limit} commands ends
        the session with a 421 without enhanced status code, logged with
        the previous command; QUIT still works.
        """
        s = makeSettings({"postscreen_command_count_limit": "3"})
        e = engine(s)
        self.assertEqual(
            sent(feed(e, b"NOOP", b"HELO c", b"NOOP")),
            b"250 2.0.0 Ok\r\n250 mx.example\r\n250 2.0.0 Ok\r\n",
        )
        actions = feed(e, b"NOOP")
        self.assertEqual(texts(actions), [f"COMMAND COUNT LIMIT from {WHO} after NOOP"])
        self.assertEqual(sent(actions), b"421 mx.example Service unavailable - try again later\r\n")
        self.assertEqual(actions[-1], Disconnect())
        e = engine(s)
        feed(e, b"NOOP", b"FOO", b"NOOP")
        self.assertEqual(sent(feed(e, b"QUIT")), b"221 2.0.0 Bye\r\n")
        e = engine(s)
        feed(e, b"NOOP", b"NOOP", b"FOO")
        self.assertEqual(texts(feed(e, b"NOOP")), [f"COMMAND COUNT LIMIT from {WHO} after UNIMPLEMENTED"])

    def test_timeLimit(self) -> None:
        """
        A command must arrive whole within C{postscreen_command_time_limit}
        of the previous reply: partial input does not move the deadline, a
        complete command does, and a timer for an old deadline is ignored.
        """
        e = engine()
        self.assertEqual(e.dataReceived(T0 + 100, b"EHLO c\r\n")[-1], WaitUntil(T0 + 400))
        self.assertEqual(e.timerFired(T0 + 300), [])
        self.assertEqual(e.dataReceived(T0 + 200, b"NO"), [])
        self.assertEqual(e.timerFired(T0 + 399.9), [])
        actions = e.timerFired(T0 + 400)
        self.assertEqual(texts(actions), [f"COMMAND TIME LIMIT from {WHO} after EHLO"])
        self.assertEqual(
            actions[-2:], [Send(b"421 4.4.2 mx.example Error: timeout exceeded\r\n"), Disconnect()]
        )
        self.assertEqual(e.timerFired(T0 + 500), [])

    def test_timeLimitBeforeFirstCommand(self) -> None:
        """
        Before any command the time limit is logged after CONNECT.
        """
        e = engine()
        self.assertEqual(texts(e.timerFired(T0 + 300)), [f"COMMAND TIME LIMIT from {WHO} after CONNECT"])

    def test_lengthLimit(self) -> None:
        """
        A command line of C{line_length_limit} bytes or more (without its
        line end) ends the session with the generic 421, logged with the
        previous command; one byte shorter is fine.
        """
        s = makeSettings({"line_length_limit": "512"})
        ok = b"NOOP " + b"x" * (511 - 5)
        self.assertEqual(replyTo(ok, s), b"250 2.0.0 Ok\r\n")
        e = engine(s)
        feed(e, b"HELO c")
        actions = feed(e, ok + b"x")
        self.assertEqual(texts(actions), [f"COMMAND LENGTH LIMIT from {WHO} after HELO"])
        self.assertEqual(sent(actions), b"421 mx.example Service unavailable - try again later\r\n")
        self.assertEqual(actions[-1], Disconnect())

    def test_lengthLimitWithoutLineEnd(self) -> None:
        """
        Without a line end the buffer may reach the limit, not exceed it.
        """
        s = makeSettings({"line_length_limit": "512"})
        e = engine(s)
        self.assertEqual(e.dataReceived(T0, b"x" * 512), [])
        self.assertEqual(e.buffered, 512)
        actions = e.dataReceived(T0, b"x")
        self.assertEqual(texts(actions), [f"COMMAND LENGTH LIMIT from {WHO} after CONNECT"])


def deepSettings(test: str, action: str, **more: str) -> EngineSettings:
    """
    Settings with the deep test C{test} enabled and configured with
    C{action}.
    """
    return makeSettings({f"postscreen_{test}_enable": "yes", f"postscreen_{test}_action": action, **more})


class DeepTestTests(SynchronousTestCase):
    """
    The pipelining, non-SMTP command and bare newline tests, each with
    each action.
    """

    def session(self, test: str, action: str, violation: bytes, **more: str) -> tuple[DummyEngine, list[Any]]:
        e = engine(deepSettings(test, action, **more), entry(deepTests=(test,)))
        return e, e.dataReceived(T0 + 10, violation)

    def finish(self, e: DummyEngine) -> list[Any]:
        """
        Go on to RCPT and QUIT, as a good client would.
        """
        return feed(e, b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"QUIT", now=T0 + 20)

    # Bare newline --------------------------------------------------------

    def test_bareNewlineDrop(self) -> None:
        """
        C{drop}: the line is logged and the client gets 521 and is
        disconnected; nothing is cached.
        """
        e, actions = self.session("bare_newline", "drop", b"EHLO b.example\n")
        self.assertEqual(texts(actions), [f"BARE NEWLINE from {WHO} after EHLO b.example"])
        self.assertEqual(actions[1:], [Send(b"521 5.5.1 Protocol error\r\n"), Disconnect()])

    def test_bareNewlineEnforce(self) -> None:
        """
        C{enforce}: the command still works, RCPT gets 550, nothing is
        cached.
        """
        e, actions = self.session("bare_newline", "enforce", b"EHLO b.example\n")
        self.assertEqual(texts(actions), [f"BARE NEWLINE from {WHO} after EHLO b.example"])
        self.assertEqual(sent(actions), EHLO_DEFAULT)
        actions = self.finish(e)
        self.assertIn(b"550 5.5.1 Protocol error\r\n", sent(actions))
        self.assertEqual(updates(actions), [])
        self.assertNotIn(f"PASS NEW {WHO}", texts(actions))

    def test_bareNewlineIgnore(self) -> None:
        """
        C{ignore}: the test counts as passed until the shortest TTL of all
        tests runs out (here C{postscreen_dnsbl_min_ttl}, 60 s); the client
        is PASS NEW.
        """
        e, actions = self.session("bare_newline", "ignore", b"EHLO b.example\n")
        self.assertEqual(texts(actions), [f"BARE NEWLINE from {WHO} after EHLO b.example"])
        self.assertEqual(feed(e, b"HELO x")[0], Send(b"250 mx.example\r\n"))
        # Once decided, the test is skipped for the rest of the session.
        self.assertEqual(texts(e.dataReceived(T0 + 11, b"NOOP\n")), [])
        actions = self.finish(e)
        self.assertIn(b"450 4.3.2 Service currently unavailable\r\n", sent(actions))
        self.assertIn(f"PASS NEW {WHO}", texts(actions))
        [verdicts] = updates(actions)
        self.assertEqual(verdicts.bare_newline, int(T0) + 10 + 60)

    def test_bareNewlineEscaped(self) -> None:
        """
        The offending line is escaped and cut to 100 bytes.
        """
        e, actions = self.session("bare_newline", "ignore", b"\x01" + b"y" * 200 + b"\n")
        [line] = texts(actions)
        self.assertEqual(line, f"BARE NEWLINE from {WHO} after \\001" + "y" * 99)

    # Pipelining ----------------------------------------------------------

    def test_pipeliningDrop(self) -> None:
        """
        C{drop}: logged with the command and the unread input, 521, hang-up.
        """
        e, actions = self.session("pipelining", "drop", b"EHLO p.example\r\nMAIL FROM:<a@p.example>\r\n")
        self.assertEqual(
            texts(actions), [f"COMMAND PIPELINING from {WHO} after EHLO: MAIL FROM:<a@p.example>\\r\\n"]
        )
        self.assertEqual(actions[1:], [Send(b"521 5.5.1 Protocol error\r\n"), Disconnect()])

    def test_pipeliningEnforce(self) -> None:
        """
        C{enforce} (the default): the pipelined commands are answered, RCPT
        gets 550 (the live Postfix session of the reference).
        """
        e = engine(makeSettings({"postscreen_pipelining_enable": "yes"}), entry(deepTests=(PIPELINING,)))
        actions = e.dataReceived(
            T0, b"EHLO p.example\r\nMAIL FROM:<a@p.example>\r\nRCPT TO:<u@mx.test.example>\r\n"
        )
        self.assertEqual(
            texts(actions),
            [
                f"COMMAND PIPELINING from {WHO} after EHLO:"
                " MAIL FROM:<a@p.example>\\r\\nRCPT TO:<u@mx.test.example>\\r\\n",
                f"NOQUEUE: reject: RCPT from {WHO}: 550 5.5.1 Protocol error; from=<a@p.example>,"
                " to=<u@mx.test.example>, proto=ESMTP, helo=<p.example>",
            ],
        )
        self.assertEqual(sent(actions), EHLO_DEFAULT + b"250 2.1.0 Ok\r\n550 5.5.1 Protocol error\r\n")
        self.assertEqual(updates(feed(e, b"QUIT")), [])

    def test_pipeliningIgnore(self) -> None:
        """
        C{ignore}: temporarily passed; PASS NEW.
        """
        e, actions = self.session("pipelining", "ignore", b"EHLO p\r\nNOOP\r\n")
        self.assertEqual(len(texts(actions)), 1)
        actions = self.finish(e)
        self.assertIn(f"PASS NEW {WHO}", texts(actions))
        [verdicts] = updates(actions)
        self.assertEqual(verdicts.pipelining, int(T0) + 10 + 60)

    def test_pipeliningPartialLine(self) -> None:
        """
        Any unread byte counts, a partial command too.
        """
        e, actions = self.session("pipelining", "enforce", b"NOOP\r\nMA")
        self.assertEqual(texts(actions), [f"COMMAND PIPELINING from {WHO} after NOOP: MA"])

    def test_pipeliningBDAT(self) -> None:
        """
        BDAT carries a payload, so bytes after it are no pipelining.
        """
        e, actions = self.session("pipelining", "drop", b"BDAT 4 LAST\r\nabcd")
        self.assertEqual(texts(actions), [f"BDAT without valid RCPT from {WHO}"])

    def test_pipeliningSeparateChunks(self) -> None:
        """
        Commands that arrive one by one do not fail the test.
        """
        e = engine(deepSettings("pipelining", "drop"), entry(deepTests=(PIPELINING,)))
        actions = feed(e, b"EHLO c", b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"QUIT")
        self.assertIn(f"PASS NEW {WHO}", texts(actions))

    # Non-SMTP command ----------------------------------------------------

    def test_nonSmtpDrop(self) -> None:
        """
        C{drop} (the default): logged with the previous command, the word
        and the rest; Postfix's famous goodbye.
        """
        e, actions = self.session("non_smtp_command", "drop", b"GET / HTTP/1.1\r\n")
        self.assertEqual(texts(actions), [f"NON-SMTP COMMAND from {WHO} after CONNECT: GET / HTTP/1.1"])
        self.assertEqual(
            actions[1:], [Send(b"521 5.7.0 Error: I can break rules, too. Goodbye.\r\n"), Disconnect()]
        )

    def test_nonSmtpEnforce(self) -> None:
        """
        C{enforce}: the command is not recognized, RCPT gets 550.
        """
        e, actions = self.session("non_smtp_command", "enforce", b"Subject: hello\r\n")
        self.assertEqual(texts(actions), [f"NON-SMTP COMMAND from {WHO} after CONNECT: Subject: hello"])
        self.assertEqual(sent(actions), b"502 5.5.2 Error: command not recognized\r\n")
        actions = self.finish(e)
        self.assertIn(b"550 5.5.1 Protocol error\r\n", sent(actions))
        self.assertEqual(updates(actions), [])

    def test_nonSmtpIgnore(self) -> None:
        """
        C{ignore}: temporarily passed; PASS NEW.
        """
        e, actions = self.session("non_smtp_command", "ignore", b"POST /x\r\n")
        self.assertEqual(len(texts(actions)), 1)
        actions = self.finish(e)
        self.assertIn(f"PASS NEW {WHO}", texts(actions))
        [verdicts] = updates(actions)
        self.assertEqual(verdicts.non_smtp_command, int(T0) + 10 + 60)

    def test_nonSmtpWhat(self) -> None:
        """
        Header labels, forbidden words and patterns, and (with SMTPUTF8) a
        word that is not UTF-8 are non-SMTP; other unknown words and known
        commands such as AUTH are not.
        """
        for line, bad in [
            (b"X-Spam: yes", True),
            (b"connect host:443", True),
            (b"[garbage", True),
            (b"A\xff x", True),
            (b"FOO bar", False),
            (b"AUTH LOGIN", False),
            (b"", False),
        ]:
            e, actions = self.session("non_smtp_command", "drop", line + b"\r\n")
            self.assertEqual(e.finished, bad, line)
        s = deepSettings("non_smtp_command", "drop", smtputf8_enable="no")
        e = engine(s, entry(deepTests=(NON_SMTP_COMMAND,)))
        self.assertFalse(e.finished)
        self.assertEqual(
            sent(e.dataReceived(T0, b"A\xff x\r\n")), b"502 5.5.2 Error: command not recognized\r\n"
        )

    def test_nonSmtpLogged(self) -> None:
        """
        The log names the previous command, and escapes and cuts the rest.
        """
        e = engine(deepSettings("non_smtp_command", "enforce"), entry(deepTests=(NON_SMTP_COMMAND,)))
        feed(e, b"HELO c")
        [line] = texts(feed(e, b"Subject: " + b"\t" * 150))
        self.assertEqual(line, f"NON-SMTP COMMAND from {WHO} after HELO: Subject: " + "\\t" * 100)

    # Passing -------------------------------------------------------------

    def test_passNew(self) -> None:
        """
        A client that gets to RCPT without violating any deep test passes
        them all for their TTL: PASS NEW, and the cache keeps the before-220
        verdicts.
        """
        e = engine()
        actions = feed(e, b"EHLO good.example", b"MAIL FROM:<a@good.example>", b"RCPT TO:<u@x>", now=T0 + 5)
        actions += feed(e, b"QUIT", now=T0 + 6)
        self.assertEqual(
            texts(actions)[-1:], [f"PASS NEW {WHO}"]
        )
        stamp = int(T0) + 5 + 30 * DAY
        self.assertEqual(
            updates(actions), [Verdicts(int(T0) + DAY, 1, stamp, stamp, stamp)]
        )
        self.assertEqual(
            actions[-3:],
            [
                CacheUpdate(Verdicts(int(T0) + DAY, 1, stamp, stamp, stamp)),
                Send(b"221 2.0.0 Bye\r\n"),
                Disconnect(),
            ],
        )

    def test_failAfterPass(self) -> None:
        """
        A pass at RCPT is tentative: a later violation fails the test, and
        nothing is cached.
        """
        e = engine(deepSettings("bare_newline", "enforce"))
        feed(e, b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>")
        actions = e.dataReceived(T0, b"QUIT\n")
        self.assertEqual(texts(actions), [f"BARE NEWLINE from {WHO} after QUIT"])
        self.assertEqual(updates(actions), [])

    def test_hangupAfterRcpt(self) -> None:
        """
        Hanging up without QUIT is no failure (some MTAs never QUIT): the
        hang-up is logged with the time since the greeting, then PASS NEW.
        """
        e = engine()
        feed(e, b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>")
        actions = e.connectionLost(T0 + 1.5)
        self.assertEqual(
            texts(actions), [f"HANGUP after 1.5 from {WHO} in tests after SMTP handshake", f"PASS NEW {WHO}"]
        )
        self.assertEqual(len(updates(actions)), 1)
        self.assertNotIn(Disconnect(), actions)
        self.assertTrue(e.finished)
        self.assertEqual(e.connectionLost(T0 + 2), [])

    def test_hangupBeforeRcpt(self) -> None:
        """
        A client that hangs up before RCPT passed no deep test.  The
        pregreet pass of this session is still cached (Postfix allowlists
        over several sessions), but no PASS NEW; with no pass at all there
        is no update.
        """
        e = engine()
        feed(e, b"EHLO c")
        actions = e.connectionLost(T0 + 12)
        self.assertEqual(texts(actions), [f"HANGUP after 12 from {WHO} in tests after SMTP handshake"])
        self.assertEqual(updates(actions), [Verdicts(int(T0) + DAY, 1, 0, 0, 0)])
        e = engine(DEFAULT, entry(verdicts=Verdicts(1, 1, 0, 0, 0)))
        self.assertEqual(updates(e.connectionLost(T0 + 1)), [])

    def test_earlyNotPassed(self) -> None:
        """
        When a before-220 test is still to do (an ignored pregreet leaves
        it unpassed) the client is not PASS NEW, but its deep test passes
        are cached.
        """
        e = engine(DEFAULT, entry(pregreeted=True, verdicts=Verdicts(0, 1, 0, 0, 0)))
        actions = feed(e, b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"QUIT")
        self.assertNotIn(f"PASS NEW {WHO}", texts(actions))
        stamp = int(T0) + 30 * DAY
        self.assertEqual(updates(actions), [Verdicts(0, 1, stamp, stamp, stamp)])

    def test_failedOrVetoed(self) -> None:
        """
        A client that failed a before-220 test, or whose server address
        vetoed allowlisting, is never PASS NEW nor cached.
        """
        for how in [entry(failed=True, replies=["550 5.5.1 Protocol error"]), entry(vetoed=True)]:
            e = engine(DEFAULT, how)
            actions = feed(e, b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"QUIT")
            self.assertEqual(updates(actions), [])
            self.assertNotIn(f"PASS NEW {WHO}", texts(actions))

    def test_noDeepTests(self) -> None:
        """
        A vetoed client with nothing to test just gets the default replies.
        """
        e = engine(DEFAULT, entry(deepTests=(), vetoed=True))
        actions = e.dataReceived(T0, b"EHLO c\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nQUIT\r\n")
        self.assertEqual(
            sent(actions),
            EHLO_DEFAULT + b"250 2.1.0 Ok\r\n450 4.3.2 Service currently unavailable\r\n221 2.0.0 Bye\r\n",
        )

    def test_limitAfterPass(self) -> None:
        """
        The count limit after a pass still concludes the session: PASS NEW
        and the cache, then the 421.
        """
        e = engine(makeSettings({"postscreen_command_count_limit": "2"}))
        actions = feed(e, b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"NOOP")
        self.assertIn(f"PASS NEW {WHO}", texts(actions))
        self.assertEqual(
            actions[-2:], [Send(b"421 mx.example Service unavailable - try again later\r\n"), Disconnect()]
        )


class SoftBounceTests(SynchronousTestCase):
    """
    C{soft_bounce = yes} turns every 5xx the engine sends into a 4xx, in
    the log too.
    """

    def test_replies(self) -> None:
        """
        Rejections, drops and protocol errors become temporary.
        """
        s = deepSettings("pipelining", "enforce", soft_bounce="yes")
        e = engine(s, entry(deepTests=(PIPELINING,)))
        actions = e.dataReceived(T0, b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
        self.assertEqual(sent(actions), b"250 mx.example\r\n250 2.1.0 Ok\r\n450 4.5.1 Protocol error\r\n")
        self.assertIn(
            f"NOQUEUE: reject: RCPT from {WHO}: 450 4.5.1 Protocol error;"
            " from=<a@b>, to=<c@d>, proto=SMTP, helo=<c>",
            texts(actions),
        )
        self.assertEqual(sent(feed(e, b"FOO")), b"402 4.5.2 Error: command not recognized\r\n")
        self.assertEqual(sent(feed(e, b"DATA")), b"454 4.5.1 Error: no valid recipients\r\n")
        s = deepSettings("non_smtp_command", "drop", soft_bounce="yes")
        e = engine(s, entry(deepTests=(NON_SMTP_COMMAND,)))
        self.assertEqual(
            sent(e.dataReceived(T0, b"GET /\r\n")), b"421 4.7.0 Error: I can break rules, too. Goodbye.\r\n"
        )
        s = deepSettings("bare_newline", "drop", soft_bounce="yes")
        e = engine(s, entry(deepTests=(BARE_NEWLINE,)))
        self.assertEqual(sent(e.dataReceived(T0, b"NOOP\n")), b"421 4.5.1 Protocol error\r\n")


# Properties ----------------------------------------------------------------

_LINES = st.sampled_from(
    [
        b"HELO c.example",
        b"EHLO c.example",
        b"EHLO",
        b"MAIL FROM:<a@b>",
        b"MAIL FROM:<>",
        b"RCPT TO:<u@x>",
        b"RSET",
        b"NOOP",
        b"VRFY u",
        b"ETRN x",
        b"AUTH PLAIN",
        b"FOO",
        b"GET / HTTP/1.1",
        b"Subject: x",
        b"",
        b"QUIT",
        b"DATA",
        b"STARTTLS",
    ]
)


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


class TranscriptTests(SynchronousTestCase):
    """
    Sessions recorded from a live Postfix 3.7 postscreen (the project's
    reference, section 4), replayed byte for byte.
    """

    def test_goodClientFirstVisit(self) -> None:
        """
        All three deep tests on, a good client: 450 for its RCPT, PASS NEW
        at QUIT, every test cached.
        """
        s = makeSettings(
            {
                "postscreen_pipelining_enable": "yes",
                "postscreen_non_smtp_command_enable": "yes",
                "postscreen_bare_newline_enable": "yes",
            }
        )
        e = DummyEngine(s, entry(), clientAddress="127.0.0.20", clientPort=56679, start=T0)
        actions = e.start(T0 + 6)
        actions += feed(
            e,
            b"EHLO good.example",
            b"MAIL FROM:<a@good.example>",
            b"RCPT TO:<user@mx.test.example>",
            b"QUIT",
            now=T0 + 7,
        )
        self.assertEqual(
            sent(actions),
            b"220 mx.example ESMTP Postfix\r\n"
            + EHLO_DEFAULT
            + b"250 2.1.0 Ok\r\n450 4.3.2 Service currently unavailable\r\n221 2.0.0 Bye\r\n",
        )
        self.assertEqual(
            texts(actions),
            [
                "NOQUEUE: reject: RCPT from [127.0.0.20]:56679: 450 4.3.2 Service currently unavailable;"
                " from=<a@good.example>, to=<user@mx.test.example>, proto=ESMTP, helo=<good.example>",
                "PASS NEW [127.0.0.20]:56679",
            ],
        )
        stamp = int(T0) + 7 + 30 * DAY
        self.assertEqual(updates(actions), [Verdicts(int(T0) + DAY, 1, stamp, stamp, stamp)])
        self.assertEqual(actions[-1], Disconnect())

    def test_pregreetingBot(self) -> None:
        """
        A bot that answered the teaser (greet action enforce): no final 220,
        550 for RCPT, DATA ends the session; nothing cached.
        """
        s = makeSettings({"postscreen_greet_action": "enforce"})
        how = entry(
            pregreeted=True, failed=True, replies=["550 5.5.1 Protocol error"], verdicts=Verdicts(0, 1, 0, 0, 0)
        )
        e = DummyEngine(s, how, clientAddress="127.0.0.10", clientPort=40461, start=T0)
        actions = e.start(T0 + 6)
        actions += e.dataReceived(T0 + 6, b"EHLO bot.example\r\n")
        actions += feed(
            e, b"MAIL FROM:<spam@bot.example>", b"RCPT TO:<user@mx.test.example>", b"DATA", now=T0 + 7
        )
        self.assertEqual(
            sent(actions),
            EHLO_DEFAULT
            + b"250 2.1.0 Ok\r\n550 5.5.1 Protocol error\r\n554 5.5.1 Error: no valid recipients\r\n",
        )
        self.assertEqual(
            texts(actions),
            [
                "NOQUEUE: reject: RCPT from [127.0.0.10]:40461: 550 5.5.1 Protocol error;"
                " from=<spam@bot.example>, to=<user@mx.test.example>, proto=ESMTP, helo=<bot.example>",
                "DATA without valid RCPT from [127.0.0.10]:40461",
            ],
        )
        self.assertEqual(updates(actions), [])
        self.assertEqual(actions[-1], Disconnect())

    def test_countLimitLive(self) -> None:
        """
        Limit 5: the sixth NOOP gets the 421 without enhanced code.
        """
        s = makeSettings({"postscreen_command_count_limit": "5"})
        e = DummyEngine(s, entry(deepTests=()), clientAddress="127.0.0.24", clientPort=43969, start=T0)
        e.start(T0)
        actions = feed(e, *[b"NOOP"] * 6)
        self.assertEqual(
            sent(actions),
            b"250 2.0.0 Ok\r\n" * 5 + b"421 mx.example Service unavailable - try again later\r\n",
        )
        self.assertEqual(texts(actions)[:1], ["COMMAND COUNT LIMIT from [127.0.0.24]:43969 after NOOP"])


class EarlyInputTests(SynchronousTestCase):
    """
    Input before L{DummyEngine.start}.
    """

    def test_beforeStart(self) -> None:
        """
        Input that arrives before the engine starts is handled right after
        the greeting.
        """
        e = DummyEngine(DEFAULT, entry(deepTests=()), clientAddress=ADDRESS, clientPort=PORT, start=T0)
        self.assertEqual(e.dataReceived(T0, b"NOOP\r\n"), [])
        self.assertEqual(
            sent(e.start(T0 + 1)), b"220 mx.example ESMTP Postfix\r\n250 2.0.0 Ok\r\n"
        )

    def test_pregreetingPipeliner(self) -> None:
        """
        What a pregreeting client sent before the engine started is in the
        buffer together, so it fails the pipelining test (as in Postfix,
        where it sits in the read buffer).
        """
        s = makeSettings({"postscreen_greet_action": "enforce"})
        e = DummyEngine(
            s,
            entry(pregreeted=True, failed=True, replies=["550 5.5.1 Protocol error"]),
            clientAddress=ADDRESS,
            clientPort=PORT,
            start=T0,
        )
        e.dataReceived(T0 + 0.4, b"EHLO bot.example\r\nMAIL FROM:<spam@bot.example>\r\n")
        actions = e.start(T0 + 6)
        self.assertEqual(
            texts(actions), [f"COMMAND PIPELINING from {WHO} after EHLO: MAIL FROM:<spam@bot.example>\\r\\n"]
        )
        self.assertEqual(sent(actions), EHLO_DEFAULT + b"250 2.1.0 Ok\r\n")


class PropertyTests(SynchronousTestCase):
    """
    Properties over arbitrary input.
    """

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.one_of(st.binary(max_size=700), _LINES.map(lambda line: line + b"\r\n")), max_size=20
        ),
        st.booleans(),
    )
    def test_arbitraryChunks(self, chunks: list[bytes], tls: bool) -> None:
        """
        Arbitrary bytes in arbitrary chunks never raise, the buffer never
        holds more than C{line_length_limit} while commands are read, and
        once the session is over nothing else happens.
        """
        s = makeSettings(
            {
                "line_length_limit": "512",
                "postscreen_tls_security_level": "may",
                "postscreen_command_count_limit": "50",
            },
            tlsAvailable=True,
        )
        e = engine(s)
        for index, chunk in enumerate(chunks):
            actions = e.dataReceived(T0 + index, chunk)
            if tls and StartTLS() in actions:
                e.tlsStarted(T0 + index)
            self.assertLessEqual(e.buffered, 4 * 512)
            if e.finished:
                self.assertEqual(e.dataReceived(T0 + index, b"NOOP\r\n"), [])
        e.timerFired(T0 + 10_000)
        e.connectionLost(T0 + 10_001)
        self.assertTrue(e.finished)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=200), max_size=20))
    def test_boundedWhileReading(self, chunks: list[bytes]) -> None:
        """
        Without TLS, the buffer holds at most C{line_length_limit} bytes
        after every event.
        """
        s = makeSettings({"line_length_limit": "512", "postscreen_command_count_limit": "1000"})
        e = engine(s, entry())
        for chunk in chunks:
            e.dataReceived(T0, chunk)
            self.assertLessEqual(e.buffered, 512)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.tuples(_LINES, st.sampled_from([b"\r\n", b"\n"])), max_size=25),
        st.lists(st.integers(min_value=0, max_value=600), max_size=30),
    )
    def test_chunkingInvariant(self, lines: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
        """
        How the input is split into chunks changes no reply, log line or
        verdict, as long as the pipelining test is off: that test is the
        one thing that depends on chunking by design, since it fails a
        client exactly when a command arrives together with what follows
        it (Postfix looks at what its read buffer holds).  STARTTLS, which
        discards what arrived with it, is answered 502 here (no TLS).
        """
        data = b"".join(line + end for line, end in lines)
        s = makeSettings(
            {
                "postscreen_non_smtp_command_enable": "yes",
                "postscreen_non_smtp_command_action": "enforce",
                "postscreen_bare_newline_enable": "yes",
                "postscreen_bare_newline_action": "enforce",
                "postscreen_command_count_limit": "15",
            }
        )
        how = entry(deepTests=(NON_SMTP_COMMAND, BARE_NEWLINE))
        whole = engine(s, how)
        expected = whole.dataReceived(T0, data) + whole.connectionLost(T0 + 1)
        pieces = engine(s, how)
        got: list[Any] = []
        for chunk in _chunked(data, cuts):
            got.extend(pieces.dataReceived(T0, chunk))
        got.extend(pieces.connectionLost(T0 + 1))
        strip = lambda actions: [a for a in actions if not isinstance(a, WaitUntil)]  # noqa: E731
        self.assertEqual(strip(got), strip(expected))
