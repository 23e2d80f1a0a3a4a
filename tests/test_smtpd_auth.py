"""
Tests for L{mtaguard.smtpd._auth}: the sans-I/O AUTH exchange, its log
lines, the password file checker and C{mtaguard-passwd}.
"""

from __future__ import annotations

import io
import os
import random
import re
import stat
import sys
from base64 import b64encode
from typing import Callable, Sequence, Union

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import LogEvent, LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mtaguard.smtp._arguments import ArgumentSyntaxError, AuthenticationAborted
from mtaguard.smtp._replies import (
    AUTH_ABORTED,
    AUTH_FAILED,
    AUTH_RESPONSE_TOO_LONG,
    AUTH_TEMPORARY_FAILURE,
    REASON_BAD_CONTINUED_RESPONSE,
    REASON_BAD_INITIAL_RESPONSE,
)
from mtaguard.smtpd import _auth
from mtaguard.smtpd._auth import (
    AuthenticationFailed,
    AuthExchange,
    Challenge,
    Credentials,
    PasswordFileChecker,
    PasswordFileError,
    authenticate,
    failureReply,
    hashPassword,
    logExchangeError,
    main,
    passwordFilePortal,
    verifyPassword,
)

LIMIT = 12288
CLIENT = "unknown[1.2.3.4]"

# fail2ban 1.0.2 filter.d/postfix.conf, verbatim (shared/reference/postfix.md
# 5.3): the prefix regex for mode=auth and mdre-auth.
_PORT = r"(?::\d+)?"
MDPR_AUTH = "warning:"
MDRE_AUTH = (
    r"^[^[]*\[<HOST>\]%(_port)s: SASL ((?i)LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5) "
    r"authentication failed:(?! Connection lost to authentication server| Invalid "
    r"authentication mechanism)"
)


def _compileFail2ban() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """
    Compile fail2ban's auth filter for Python's C{re}: C{<HOST>} becomes a
    named group, C{%(_port)s} is substituted, and the inline C{(?i)}, which
    Python 3.11 only accepts at the very start, is scoped to its group as
    fail2ban means it.

    @return: The prefix regex (what precedes the content, after the syslog
        header) and the failure regex applied to the content.
    """
    failure = MDRE_AUTH.replace("%(_port)s", _PORT)
    failure = failure.replace("<HOST>", r"(?P<host>[0-9A-Fa-f:.]+)")
    failure = failure.replace("((?i)LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5)", "((?i:LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5))")
    prefix = re.compile(rf"^{MDPR_AUTH} (?P<content>.+)$")
    return prefix, re.compile(failure)


FAIL2BAN_PREFIX, FAIL2BAN_AUTH = _compileFail2ban()


def fail2banHost(line: str) -> Union[str, None]:
    """
    Apply fail2ban's C{postfix[mode=auth]} filter to one log message.

    @param line: The message (after the syslog header).
    @return: The host it would ban, or C{None}.
    """
    prefix = FAIL2BAN_PREFIX.match(line)
    if prefix is None:
        return None
    match = FAIL2BAN_AUTH.match(prefix["content"])
    return None if match is None else match["host"]


def b64(data: bytes) -> str:
    """
    @return: C{data} in base64.
    """
    return b64encode(data).decode("ascii")


def plain(authzid: str, user: str, password: str) -> str:
    """
    @return: A base64 C{AUTH PLAIN} response.
    """
    return b64(f"{authzid}\0{user}\0{password}".encode())


class ExchangeTests(SynchronousTestCase):
    """
    L{AuthExchange} runs the PLAIN and LOGIN dialogues and turns every
    client mistake into an L{ArgumentSyntaxError} carrying Postfix's reply.
    """

    def test_plainInitialResponse(self) -> None:
        """
        C{AUTH PLAIN <response>} finishes in one step.
        """
        exchange = AuthExchange("PLAIN", plain("", "alice", "secret"), responseLimit=LIMIT)
        self.assertEqual(exchange.start(), Credentials("", "alice", "secret"))

    def test_plainWithoutInitialResponse(self) -> None:
        """
        C{AUTH PLAIN} alone gets the empty challenge C{334 }; the next line
        holds the response, with or without its line ending.
        """
        for ending in (b"", b"\r\n", b"\n"):
            exchange = AuthExchange("PLAIN", None, responseLimit=LIMIT)
            step = exchange.start()
            assert isinstance(step, Challenge)
            self.assertEqual(step.reply.toBytes(), b"334 \r\n")
            line = plain("", "alice", "secret").encode() + ending
            self.assertEqual(exchange.respond(line), Credentials("", "alice", "secret"))

    def test_mechanismCaseInsensitive(self) -> None:
        """
        Mechanism names are case-insensitive (RFC 4954); the exchange keeps
        the upper-case name.
        """
        exchange = AuthExchange("pLaIn", plain("", "alice", "secret"), responseLimit=LIMIT)
        self.assertEqual(exchange.mechanism, "PLAIN")
        self.assertIsInstance(exchange.start(), Credentials)

    def test_plainEmptyInitialResponse(self) -> None:
        """
        C{=} is an empty initial response (RFC 4954 section 4), not a
        missing one: PLAIN cannot be satisfied by nothing, so it fails
        at once instead of sending a challenge.
        """
        exchange = AuthExchange("PLAIN", "=", responseLimit=LIMIT)
        error = self.assertRaises(AuthenticationFailed, exchange.start)
        self.assertEqual(error.reply, AUTH_FAILED.format(reason=REASON_BAD_INITIAL_RESPONSE))

    def test_loginEmptyInitialResponse(self) -> None:
        """
        C{AUTH LOGIN =} is an empty user name, which fails.
        """
        exchange = AuthExchange("LOGIN", "=", responseLimit=LIMIT)
        error = self.assertRaises(AuthenticationFailed, exchange.start)
        self.assertEqual(error.reply.code, 535)

    def test_plainEmptyContinuedResponse(self) -> None:
        """
        C{=} answering the PLAIN challenge fails with Postfix's "continued
        response" reason.
        """
        exchange = AuthExchange("PLAIN", None, responseLimit=LIMIT)
        exchange.start()
        error = self.assertRaises(AuthenticationFailed, exchange.respond, b"=")
        self.assertEqual(
            error.reply.toBytes(),
            b"535 5.7.8 Error: authentication failed: Invalid base64 data in continued response\r\n",
        )

    def test_loginTwoSteps(self) -> None:
        """
        C{AUTH LOGIN} asks C{Username:} then C{Password:}, base64-encoded,
        as every client expects.
        """
        exchange = AuthExchange("LOGIN", None, responseLimit=LIMIT)
        first = exchange.start()
        assert isinstance(first, Challenge)
        self.assertEqual(first.reply.toBytes(), b"334 VXNlcm5hbWU6\r\n")
        second = exchange.respond(b64(b"alice").encode() + b"\r\n")
        assert isinstance(second, Challenge)
        self.assertEqual(second.reply.toBytes(), b"334 UGFzc3dvcmQ6\r\n")
        self.assertEqual(
            exchange.respond(b64(b"secret").encode()), Credentials("", "alice", "secret")
        )

    def test_loginInitialResponse(self) -> None:
        """
        C{AUTH LOGIN <user>} skips the user name challenge.
        """
        exchange = AuthExchange("LOGIN", b64(b"alice"), responseLimit=LIMIT)
        step = exchange.start()
        assert isinstance(step, Challenge)
        self.assertEqual(step.reply.toBytes(), b"334 UGFzc3dvcmQ6\r\n")
        self.assertEqual(exchange.respond(b64(b"pw").encode()), Credentials("", "alice", "pw"))

    def test_loginEmptyPassword(self) -> None:
        """
        An empty LOGIN password fails without reaching a checker; the user
        name is kept for the log line.
        """
        exchange = AuthExchange("LOGIN", b64(b"alice"), responseLimit=LIMIT)
        exchange.start()
        error = self.assertRaises(AuthenticationFailed, exchange.respond, b"=")
        self.assertEqual(error.username, "alice")
        self.assertEqual(error.reply.code, 535)

    def test_utf8Credentials(self) -> None:
        """
        User names and passwords are UTF-8 (RFC 4616).
        """
        exchange = AuthExchange("PLAIN", plain("", "zoë", "pässwörd"), responseLimit=LIMIT)
        self.assertEqual(exchange.start(), Credentials("", "zoë", "pässwörd"))

    def test_abortAtChallenge(self) -> None:
        """
        C{*} in answer to any challenge aborts: C{501 5.7.0 Authentication
        aborted}.
        """
        for mechanism, steps in (("PLAIN", 0), ("LOGIN", 0), ("LOGIN", 1)):
            exchange = AuthExchange(mechanism, None, responseLimit=LIMIT)
            exchange.start()
            for _ in range(steps):
                exchange.respond(b64(b"alice").encode())
            error = self.assertRaises(AuthenticationAborted, exchange.respond, b"*\r\n")
            self.assertEqual(error.reply, AUTH_ABORTED)
            self.assertEqual(error.reply.toBytes(), b"501 5.7.0 Authentication aborted\r\n")

    def test_abortAsInitialResponse(self) -> None:
        """
        C{AUTH PLAIN *} is an abort too.
        """
        exchange = AuthExchange("PLAIN", "*", responseLimit=LIMIT)
        self.assertRaises(AuthenticationAborted, exchange.start)

    def test_malformedBase64(self) -> None:
        """
        Responses that are not strict base64 fail with C{535 5.7.8}, naming
        the initial or the continued response as Postfix does.
        """
        bad = ["!!!!", "dXNlcg", "dXNl cg==", "AAAA=AAA", "ü", "QUFB\x00", "====", "AAAAA"]
        for text in bad:
            exchange = AuthExchange("PLAIN", text, responseLimit=LIMIT)
            error = self.assertRaises(AuthenticationFailed, exchange.start)
            self.assertEqual(error.reply, AUTH_FAILED.format(reason=REASON_BAD_INITIAL_RESPONSE))
            exchange = AuthExchange("LOGIN", None, responseLimit=LIMIT)
            exchange.start()
            error = self.assertRaises(
                AuthenticationFailed, exchange.respond, text.encode("utf-8")
            )
            self.assertEqual(error.reply, AUTH_FAILED.format(reason=REASON_BAD_CONTINUED_RESPONSE))

    def test_malformedPlainContent(self) -> None:
        """
        Valid base64 that is not C{authzid NUL user NUL password}, or not
        UTF-8, fails with C{535}.
        """
        for data in (b"alice\0secret", b"\0alice\0", b"\0\0secret", b"a\0b\0c\0d", b"\0\xff\0pw", b""):
            exchange = AuthExchange("PLAIN", b64(data) if data else "=", responseLimit=LIMIT)
            error = self.assertRaises(AuthenticationFailed, exchange.start)
            self.assertEqual(error.reply.code, 535)

    def test_neverUnexpectedException(self) -> None:
        """
        Thousands of random lines, at every step of both mechanisms, end in
        a challenge, credentials or an L{ArgumentSyntaxError}: nothing else
        escapes (as C{IllegalClientResponse} does from C{twisted.mail}).
        """
        rng = random.Random(4954)
        alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=*\0\r\n \xff\x80"
        for _ in range(3000):
            length = rng.randrange(0, 40)
            line = bytes(rng.choice(alphabet) for _ in range(length))
            if rng.random() < 0.5:
                # Some valid base64 of random bytes, to reach the decoders.
                line = b64(bytes(rng.randrange(256) for _ in range(length))).encode()
            mechanism = rng.choice(["PLAIN", "LOGIN"])
            exchange = AuthExchange(mechanism, None, responseLimit=64)
            try:
                step: object = exchange.start()
                if mechanism == "LOGIN" and rng.random() < 0.5:
                    step = exchange.respond(b64(b"user").encode())
                step = exchange.respond(line)
            except ArgumentSyntaxError as e:
                self.assertIn(e.reply.code, (500, 501, 535))
            else:
                self.assertIsInstance(step, (Challenge, Credentials))

    def test_responseTooLong(self) -> None:
        """
        A response longer than C{smtpd_sasl_response_limit} gets C{500 5.5.6
        SASL response limit exceeded}; one of exactly the limit is decoded.
        """
        limit = 40
        exchange = AuthExchange("LOGIN", None, responseLimit=limit)
        exchange.start()
        error = self.assertRaises(ArgumentSyntaxError, exchange.respond, b"A" * (limit + 1) + b"\r\n")
        self.assertEqual(error.reply, AUTH_RESPONSE_TOO_LONG)
        self.assertEqual(error.reply.toBytes(), b"500 5.5.6 SASL response limit exceeded\r\n")

        exchange = AuthExchange("LOGIN", None, responseLimit=limit)
        exchange.start()
        self.assertIsInstance(exchange.respond(b"A" * limit + b"\r\n"), Challenge)

    def test_initialResponseTooLong(self) -> None:
        """
        The limit applies to an initial response as well.
        """
        exchange = AuthExchange("PLAIN", "A" * 41, responseLimit=40)
        error = self.assertRaises(ArgumentSyntaxError, exchange.start)
        self.assertEqual(error.reply, AUTH_RESPONSE_TOO_LONG)

    def test_unknownMechanism(self) -> None:
        """
        An unknown mechanism is refused when the exchange is created, with
        Postfix's reply (C{535 5.7.8 Error: authentication failed: Invalid
        authentication mechanism}, from its Dovecot client).
        """
        for name in ("CRAM-MD5", "GSSAPI", "XOAUTH2", "", "PLAIN\0"):
            error = self.assertRaises(AuthenticationFailed, AuthExchange, name, None, responseLimit=LIMIT)
            self.assertEqual(
                error.reply.toBytes(),
                b"535 5.7.8 Error: authentication failed: Invalid authentication mechanism\r\n",
            )

    def test_authzidEqualOrEmpty(self) -> None:
        """
        An authorization identity is accepted when empty or equal to the
        user name.
        """
        for authzid in ("", "alice"):
            exchange = AuthExchange("PLAIN", plain(authzid, "alice", "pw"), responseLimit=LIMIT)
            self.assertEqual(exchange.start(), Credentials(authzid, "alice", "pw"))

    def test_authzidOther(self) -> None:
        """
        Acting as another user is refused: C{535 5.7.8 Error: authentication
        failed: authorization failure}, and the password is never checked.
        """
        exchange = AuthExchange("PLAIN", plain("root", "alice", "pw"), responseLimit=LIMIT)
        error = self.assertRaises(AuthenticationFailed, exchange.start)
        self.assertEqual(
            error.reply.toBytes(),
            b"535 5.7.8 Error: authentication failed: authorization failure\r\n",
        )
        self.assertEqual(error.username, "alice")

    def test_finished(self) -> None:
        """
        Once the exchange produced credentials or failed, it takes no more
        lines: that would be a bug in the caller.
        """
        exchange = AuthExchange("PLAIN", plain("", "a", "b"), responseLimit=LIMIT)
        exchange.start()
        self.assertRaises(RuntimeError, exchange.respond, b"x")
        self.assertRaises(RuntimeError, exchange.start)
        exchange = AuthExchange("LOGIN", None, responseLimit=LIMIT)
        exchange.start()
        self.assertRaises(AuthenticationFailed, exchange.respond, b"!!")
        self.assertRaises(RuntimeError, exchange.respond, b64(b"alice").encode())

    def test_passwordNotInRepr(self) -> None:
        """
        L{Credentials} keeps the password out of its C{repr}, hence out of
        logs and tracebacks.
        """
        self.assertNotIn("hunter2", repr(Credentials("", "alice", "hunter2")))


class LogTests(SynchronousTestCase):
    """
    Failures are logged with Postfix's text, which fail2ban's
    C{postfix[mode=auth]} filter recognises.
    """

    def messages(self, events: Sequence[LogEvent]) -> list[str]:
        """
        @return: The formatted warning-level messages.
        """
        return [formatEvent(event) for event in events if event["log_level"] >= LogLevel.warn]

    def test_failureLine(self) -> None:
        """
        A wrong password logs Postfix 3.7's line (with C{sasl_username}),
        which fail2ban's C{mdre-auth} matches, banning the client address;
        the reply is C{535 5.7.8 Error: authentication failed:
        authentication failure}.
        """
        with capturedLogs() as events:
            reply = failureReply(CLIENT, "PLAIN", "alice", Failure(UnauthorizedLogin()))
        self.assertEqual(
            reply.toBytes(), b"535 5.7.8 Error: authentication failed: authentication failure\r\n"
        )
        [line] = self.messages(events)
        self.assertEqual(
            line,
            "warning: unknown[1.2.3.4]: SASL PLAIN authentication failed: "
            "authentication failure, sasl_username=alice",
        )
        self.assertEqual(fail2banHost(line), "1.2.3.4")

    def test_fail2banShapes(self) -> None:
        """
        The compiled fail2ban filter behaves as fail2ban's own: it matches
        the shape from the brief (no C{sasl_username}), IPv6 clients and
        lower-case mechanisms, and skips the unknown-mechanism case.
        """
        self.assertEqual(
            fail2banHost("warning: unknown[1.2.3.4]: SASL PLAIN authentication failed: authentication failure"),
            "1.2.3.4",
        )
        self.assertEqual(
            fail2banHost("warning: host.example[2001:db8::1]: SASL login authentication failed: x"),
            "2001:db8::1",
        )
        self.assertIsNone(
            fail2banHost(
                "warning: unknown[1.2.3.4]: SASL PLAIN authentication failed: "
                "Invalid authentication mechanism, sasl_username=(unavailable)"
            )
        )

    def test_exchangeFailureLine(self) -> None:
        """
        A malformed response is logged as a failure with C{sasl_username=
        (unavailable)} when no user name was decoded.
        """
        exchange = AuthExchange("PLAIN", "!!!!", responseLimit=LIMIT)
        error = self.assertRaises(AuthenticationFailed, exchange.start)
        with capturedLogs() as events:
            logExchangeError(CLIENT, "PLAIN", error)
        [line] = self.messages(events)
        self.assertEqual(
            line,
            "warning: unknown[1.2.3.4]: SASL PLAIN authentication failed: Invalid base64 "
            "data in initial response, sasl_username=(unavailable)",
        )
        self.assertEqual(fail2banHost(line), "1.2.3.4")

    def test_unknownMechanismLine(self) -> None:
        """
        An unknown mechanism is logged, but not in a form fail2ban counts
        (a client probing mechanisms is not guessing passwords); peer text
        in the line is escaped.
        """
        error = self.assertRaises(
            AuthenticationFailed, AuthExchange, "CRAM-MD5\n", None, responseLimit=LIMIT
        )
        with capturedLogs() as events:
            logExchangeError(CLIENT, "CRAM-MD5\n", error)
        [line] = self.messages(events)
        self.assertEqual(
            line,
            "warning: unknown[1.2.3.4]: SASL CRAM-MD5\\n authentication failed: "
            "Invalid authentication mechanism, sasl_username=(unavailable)",
        )
        self.assertIsNone(fail2banHost(line))

    def test_usernameEscaped(self) -> None:
        """
        A user name with a line break cannot forge a second log line.
        """
        with capturedLogs() as events:
            failureReply(CLIENT, "LOGIN", "a\nwarning: x[9.9.9.9]: SASL", Failure(UnauthorizedLogin()))
        [line] = self.messages(events)
        self.assertNotIn("\n", line)
        self.assertTrue(line.endswith("sasl_username=a\\nwarning: x[9.9.9.9]: SASL"))

    def test_abortLine(self) -> None:
        """
        An abort logs Postfix's C{SASL <mech> authentication aborted}, which
        fail2ban does not count.
        """
        with capturedLogs() as events:
            logExchangeError(CLIENT, "LOGIN", AuthenticationAborted())
        [line] = self.messages(events)
        self.assertEqual(line, "warning: unknown[1.2.3.4]: SASL LOGIN authentication aborted")
        self.assertIsNone(fail2banHost(line))

    def test_tooLongNotLogged(self) -> None:
        """
        Postfix logs nothing for an over-long response; neither do we.
        """
        with capturedLogs() as events:
            logExchangeError(CLIENT, "PLAIN", ArgumentSyntaxError(AUTH_RESPONSE_TOO_LONG))
        self.assertEqual(self.messages(events), [])

    def test_backendError(self) -> None:
        """
        A password file that cannot be read is a temporary failure, C{454
        4.7.0}, logged so that fail2ban does not ban the client.
        """
        with capturedLogs() as events:
            reply = failureReply(CLIENT, "PLAIN", "alice", Failure(PasswordFileError("gone")))
        self.assertEqual(reply, AUTH_TEMPORARY_FAILURE.format(reason="Authentication backend error"))
        [line] = self.messages(events)
        self.assertEqual(line, "warning: SASL authentication problem: gone")
        self.assertIsNone(fail2banHost(line))


class HashTests(SynchronousTestCase):
    """
    L{hashPassword} and L{verifyPassword}.
    """

    def test_roundTrip(self) -> None:
        """
        A hash verifies its password and no other; two hashes of one
        password differ by their salt.
        """
        stored = hashPassword("correct horse", logN=4, r=8, p=1)
        self.assertTrue(verifyPassword("correct horse", stored))
        self.assertFalse(verifyPassword("correct horsE", stored))
        self.assertFalse(verifyPassword("", stored))
        self.assertNotEqual(stored, hashPassword("correct horse", logN=4, r=8, p=1))

    def test_defaultFormat(self) -> None:
        """
        The default hash records its parameters, OWASP's scrypt (N=2**14,
        r=8, p=5), a 16-byte salt and a 32-byte key.
        """
        stored = hashPassword("pässword")
        self.assertRegex(stored, r"^\$scrypt\$ln=14,r=8,p=5\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$")
        self.assertTrue(verifyPassword("pässword", stored))

    def test_plain(self) -> None:
        """
        C{{PLAIN}} entries compare the clear text.
        """
        self.assertTrue(verifyPassword("s:e:c", "{PLAIN}s:e:c"))
        self.assertFalse(verifyPassword("s:e", "{PLAIN}s:e:c"))

    def test_unknownFormats(self) -> None:
        """
        Anything else never matches, even the literal text: a password
        without C{{PLAIN}} is not taken as clear text.
        """
        good = hashPassword("pw", logN=4, r=8, p=1)
        for stored in (
            "pw",
            "$scrypt$pw",
            good.replace("ln=4", "ln=40"),
            good.replace("p=1", "p=999"),
            good.replace("ln=4,r=8", "ln=20,r=999"),
            good[:-3] + "!!!",
            good.rsplit("$", 1)[0] + "$",
            "$2b$12$abcdefghijklmnopqrstuu",
        ):
            self.assertFalse(verifyPassword("pw", stored), stored)
            self.assertFalse(verifyPassword(stored, stored), stored)

    def test_constantTimeCompare(self) -> None:
        """
        Both kinds of entry are compared with L{hmac.compare_digest}.
        """
        calls: list[tuple[bytes, bytes]] = []

        def spy(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return a == b

        self.patch(_auth, "compare_digest", spy)
        verifyPassword("pw", "{PLAIN}pw")
        verifyPassword("pw", hashPassword("pw", logN=4, r=8, p=1))
        self.assertEqual(len(calls), 2)
        # The clear-text case compares digests, so lengths do not leak.
        self.assertEqual([len(a) for a, _ in calls], [32, 32])


class CheckerTests(SynchronousTestCase):
    """
    L{PasswordFileChecker} checks L{IUsernamePassword} against a file it
    re-reads when it changes.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.alice = hashPassword("alice-pw", logN=4, r=8, p=1)
        self.write(
            "# accounts\n"
            "\n"
            f"alice:{self.alice}\n"
            "bob:{PLAIN}bob:pw\n"
            "carol:carol-pw\n"
            "alice:{PLAIN}second-entry-ignored\n"
            "no-colon-line\n"
        )
        self.runs: list[Callable[[], bool]] = []

        def runner(function: Callable[[], bool]) -> "Deferred[bool]":
            self.runs.append(function)
            return maybeDeferred(function)

        self.checker = PasswordFileChecker(self.path, runner=runner)

    def write(self, text: str, bump: int = 0) -> None:
        """
        Write the password file.

        @param bump: Seconds to move its mtime forward, to change it in a
            way the checker notices even within one timestamp tick.
        """
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write(text)
        if bump:
            info = os.stat(self.path)
            os.utime(self.path, ns=(info.st_atime_ns, info.st_mtime_ns + bump * 10**9))

    def check(
        self, user: Union[bytes, str], password: Union[bytes, str]
    ) -> "Deferred[bytes | tuple[()]]":
        """
        @return: The checker's answer for C{user} and C{password} (C{str}
            is accepted too, as some cred code passes it).
        """
        return self.checker.requestAvatarId(UsernamePassword(user, password))  # type: ignore[arg-type]

    def test_interface(self) -> None:
        """
        The checker provides L{ICredentialsChecker} for
        L{IUsernamePassword}.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))

    def test_goodPassword(self) -> None:
        """
        The right password, hashed or clear text, yields the user name.
        """
        self.assertEqual(self.successResultOf(self.check(b"alice", b"alice-pw")), b"alice")
        self.assertEqual(self.successResultOf(self.check("bob", "bob:pw")), b"bob")

    def test_badPassword(self) -> None:
        """
        A wrong password fails with L{UnauthorizedLogin}.
        """
        self.failureResultOf(self.check(b"alice", b"wrong"), UnauthorizedLogin)
        self.failureResultOf(self.check(b"bob", b"bob"), UnauthorizedLogin)

    def test_notClearTextWithoutPrefix(self) -> None:
        """
        An entry in no known format never matches, even its own text.
        """
        self.failureResultOf(self.check(b"carol", b"carol-pw"), UnauthorizedLogin)

    def test_duplicateFirstWins(self) -> None:
        """
        The first of two entries for one user is used.
        """
        self.failureResultOf(self.check(b"alice", b"second-entry-ignored"), UnauthorizedLogin)

    def test_unknownUser(self) -> None:
        """
        An unknown user fails like a wrong password, after the same
        (dummy) password check, so timing does not reveal which users
        exist.
        """
        self.failureResultOf(self.check(b"mallory", b"alice-pw"), UnauthorizedLogin)
        self.failureResultOf(self.check(b"no-colon-line", b""), UnauthorizedLogin)
        self.assertEqual(len(self.runs), 2)

    def test_reloadOnChange(self) -> None:
        """
        A changed file is re-read: new passwords work and removed ones stop
        working, without a restart.
        """
        self.successResultOf(self.check(b"alice", b"alice-pw"))
        self.write("alice:{PLAIN}new-pw\ndave:{PLAIN}dave-pw\n", bump=5)
        self.failureResultOf(self.check(b"alice", b"alice-pw"), UnauthorizedLogin)
        self.successResultOf(self.check(b"alice", b"new-pw"))
        self.successResultOf(self.check(b"dave", b"dave-pw"))

    def test_notReReadWhenUnchanged(self) -> None:
        """
        An unchanged file is not read again.
        """
        self.successResultOf(self.check(b"bob", b"bob:pw"))
        parsed: list[bytes] = []
        realParse = self.checker._parse

        def spyParse(data: bytes) -> dict[bytes, str]:
            parsed.append(data)
            return realParse(data)

        self.patch(self.checker, "_parse", spyParse)
        self.successResultOf(self.check(b"bob", b"bob:pw"))
        self.assertEqual(parsed, [])
        self.write("bob:{PLAIN}bob:pw\n", bump=5)
        self.successResultOf(self.check(b"bob", b"bob:pw"))
        self.assertEqual(len(parsed), 1)

    def test_missingFile(self) -> None:
        """
        A missing file fails with L{PasswordFileError} (a temporary failure),
        also after a successful load: the old accounts do not outlive it.
        """
        self.successResultOf(self.check(b"bob", b"bob:pw"))
        os.remove(self.path)
        self.failureResultOf(self.check(b"bob", b"bob:pw"), PasswordFileError)
        self.write("bob:{PLAIN}back\n")
        self.successResultOf(self.check(b"bob", b"back"))

    def test_constantTimeCompare(self) -> None:
        """
        Every check, for a known user or not, goes through
        L{hmac.compare_digest}.
        """
        calls: list[object] = []

        def spy(a: bytes, b: bytes) -> bool:
            calls.append(a)
            return a == b

        self.patch(_auth, "compare_digest", spy)
        self.successResultOf(self.check(b"bob", b"bob:pw"))
        self.failureResultOf(self.check(b"alice", b"x"), UnauthorizedLogin)
        self.failureResultOf(self.check(b"nobody", b"x"), UnauthorizedLogin)
        self.assertEqual(len(calls), 3)

    def test_malformedEntryWarns(self) -> None:
        """
        Lines that cannot be used are reported when the file is loaded.
        """
        with capturedLogs() as events:
            self.check(b"bob", b"bob:pw")
        text = "\n".join(formatEvent(event) for event in events)
        self.assertIn("line 5: password for carol is neither", text)
        self.assertIn("line 6: ignoring duplicate entry for alice", text)
        self.assertIn("line 7: ignoring malformed entry", text)


class AuthenticateTests(SynchronousTestCase):
    """
    L{authenticate} checks L{Credentials} through a portal.
    """

    def setUp(self) -> None:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("alice:{PLAIN}secret\nzoë:{PLAIN}pässwörd\n")
        self.portal = passwordFilePortal(path, runner=maybeDeferred)

    def test_success(self) -> None:
        """
        Good credentials fire with the user name, and nothing is logged at
        warning level.
        """
        with capturedLogs() as events:
            result = self.successResultOf(authenticate(self.portal, Credentials("", "alice", "secret")))
        self.assertEqual(result, "alice")
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.warn], [])

    def test_unicode(self) -> None:
        """
        Non-ASCII user names and passwords work (as UTF-8).
        """
        self.assertEqual(
            self.successResultOf(authenticate(self.portal, Credentials("zoë", "zoë", "pässwörd"))),
            "zoë",
        )

    def test_failure(self) -> None:
        """
        Wrong credentials fail with L{UnauthorizedLogin}.
        """
        self.failureResultOf(
            authenticate(self.portal, Credentials("", "alice", "nope")), UnauthorizedLogin
        )

    def test_endToEnd(self) -> None:
        """
        A LOGIN exchange's credentials authenticate.
        """
        exchange = AuthExchange("LOGIN", None, responseLimit=LIMIT)
        exchange.start()
        exchange.respond(b64(b"alice").encode())
        credentials = exchange.respond(b64(b"secret").encode())
        assert isinstance(credentials, Credentials)
        self.assertEqual(self.successResultOf(authenticate(self.portal, credentials)), "alice")


class PasswdCommandTests(SynchronousTestCase):
    """
    C{mtaguard-passwd}.
    """

    def test_printLine(self) -> None:
        """
        Without C{-f} the entry is printed.
        """
        out = io.StringIO()
        self.assertEqual(main(["alice"], stdin=io.StringIO("pw\n"), stdout=out), 0)
        user, stored = out.getvalue().rstrip("\n").split(":", 1)
        self.assertEqual(user, "alice")
        self.assertTrue(verifyPassword("pw", stored))

    def test_updateFile(self) -> None:
        """
        C{-f} creates the file with mode 0600, then replaces the user's line
        and keeps the others.
        """
        path = self.mktemp()
        main(["-f", path, "alice"], stdin=io.StringIO("one\n"))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        main(["-f", path, "bob"], stdin=io.StringIO("two\n"))
        main(["-f", path, "alice"], stdin=io.StringIO("three\n"))
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        self.assertEqual([line.split(":", 1)[0] for line in lines], ["alice", "bob"])
        checker = PasswordFileChecker(path, runner=maybeDeferred)
        self.successResultOf(checker.requestAvatarId(UsernamePassword(b"alice", b"three")))
        self.successResultOf(checker.requestAvatarId(UsernamePassword(b"bob", b"two")))

    def test_badUser(self) -> None:
        """
        User names that would corrupt the file are refused.
        """
        self.patch(sys, "stderr", io.StringIO())
        for user in ("a:b", "#x", "", "a\nb"):
            self.assertRaises(
                SystemExit, main, ["-f", self.mktemp(), user], stdin=io.StringIO("pw\n"),
                stdout=io.StringIO(),
            )
