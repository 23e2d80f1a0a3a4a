"""
Tests for the C{MAIL}, C{RCPT} and C{AUTH} argument parsers in
C{mtaguard.smtp._arguments}.
"""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.smtp import (
    ArgumentSyntaxError,
    AuthenticationAborted,
    decodeLogin,
    decodePlain,
    decodeResponse,
    parseMailFrom,
    parseRcptTo,
    validateBody,
    validateSize,
    validateSmtpUtf8,
)
from mtaguard.smtp import _replies as replies


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class MailFromTests(SynchronousTestCase):
    """
    C{MAIL FROM:} arguments, with Postfix's tolerance.
    """

    def test_accepted(self) -> None:
        """
        The usual forms, and the ones Postfix tolerates, give the address
        and parameters.
        """
        table = [
            ("FROM:<a@example.com>", ("a@example.com", {})),
            ("from:<a@example.com>", ("a@example.com", {})),
            ("FROM: <a@example.com>", ("a@example.com", {})),
            ("FROM:\t <a@example.com>", ("a@example.com", {})),
            ("FROM:<>", ("", {})),
            ("FROM:a@example.com", ("a@example.com", {})),
            ("FROM:<a@example.com> SIZE=100 body=8bitmime SMTPUTF8", ("a@example.com", {"SIZE": "100", "BODY": "8bitmime", "SMTPUTF8": None})),
            ("FROM:<a@example.com>  RET=HDRS   ENVID=x=y", ("a@example.com", {"RET": "HDRS", "ENVID": "x=y"})),
            ('FROM:<"a> b"@example.com>', ('"a> b"@example.com', {})),
            ("FROM:<@relay.example:a@example.com>", ("a@example.com", {})),
            ("FROM:<δ@例え.jp> SMTPUTF8", ("δ@例え.jp", {"SMTPUTF8": None})),
        ]
        for argument, expected in table:
            self.assertEqual(parseMailFrom(argument), expected, argument)

    def test_syntaxErrors(self) -> None:
        """
        A missing or misspelt C{FROM:} or a missing address get Postfix's
        C{501 5.5.4 Syntax: MAIL FROM:<address>}.
        """
        for argument in ["", "FROM", "FROM <a@b>", "FROM :<a@b>", "TO:<a@b>", "FROM:", "FROM:   ", "<a@b>"]:
            with self.assertRaises(ArgumentSyntaxError, msg=argument) as caught:
                parseMailFrom(argument)
            self.assertEqual(caught.exception.reply, replies.MAIL_SYNTAX)
            self.assertIsInstance(caught.exception, ValueError)

    def test_badAddress(self) -> None:
        """
        A malformed address gets C{501 5.1.7 Bad sender address syntax}.
        """
        for argument in ["FROM:<a@b", "FROM:<a@b>x", "FROM:a<b>", "FROM:<@relay>"]:
            with self.assertRaises(ArgumentSyntaxError, msg=argument) as caught:
                parseMailFrom(argument)
            self.assertEqual(caught.exception.reply, replies.BAD_SENDER_SYNTAX)

    def test_strict(self) -> None:
        """
        With C{smtpd_strict_rfc821_envelopes = yes}, brackets are required.
        """
        self.assertEqual(parseMailFrom("FROM:<a@b>", strict=True), ("a@b", {}))
        with self.assertRaises(ArgumentSyntaxError) as caught:
            parseMailFrom("FROM:a@b", strict=True)
        self.assertEqual(caught.exception.reply, replies.BAD_SENDER_SYNTAX)

    def test_badParameter(self) -> None:
        """
        A parameter that is not C{KEYWORD[=VALUE]} is an unsupported option.
        """
        with self.assertRaises(ArgumentSyntaxError) as caught:
            parseMailFrom("FROM:<a@b> =x")
        self.assertEqual(caught.exception.reply, replies.UNSUPPORTED_OPTION.format(option="=x"))


class RcptToTests(SynchronousTestCase):
    """
    C{RCPT TO:} arguments.
    """

    def test_accepted(self) -> None:
        """
        The usual and tolerated forms are accepted.
        """
        self.assertEqual(parseRcptTo("to:<b@example.com> NOTIFY=NEVER"), ("b@example.com", {"NOTIFY": "NEVER"}))
        self.assertEqual(parseRcptTo("TO: postmaster"), ("postmaster", {}))

    def test_errors(self) -> None:
        """
        Syntax errors get C{501 5.5.4 Syntax: RCPT TO:<address>}; an empty or
        malformed address gets C{501 5.1.3 Bad recipient address syntax}.
        """
        for argument, reply in [
            ("", replies.RCPT_SYNTAX),
            ("FROM:<a@b>", replies.RCPT_SYNTAX),
            ("TO:", replies.RCPT_SYNTAX),
            ("TO:<>", replies.BAD_RECIPIENT_SYNTAX),
            ("TO:<a@b", replies.BAD_RECIPIENT_SYNTAX),
        ]:
            with self.assertRaises(ArgumentSyntaxError, msg=argument) as caught:
                parseRcptTo(argument)
            self.assertEqual(caught.exception.reply, reply)

    @given(st.text(max_size=80))
    @settings(max_examples=300, deadline=None)
    def test_neverCrashes(self, argument: str) -> None:
        """
        Arbitrary arguments either parse or raise L{ArgumentSyntaxError}.
        """
        for parse in (parseMailFrom, parseRcptTo):
            try:
                address, parameters = parse(argument)
            except ArgumentSyntaxError:
                continue
            self.assertIsInstance(address, str)
            for keyword in parameters:
                self.assertEqual(keyword, keyword.upper())


class ParameterTests(SynchronousTestCase):
    """
    C{SIZE}, C{BODY} and C{SMTPUTF8}.
    """

    def test_size(self) -> None:
        """
        C{SIZE} takes ASCII digits only.
        """
        self.assertEqual(validateSize("10240000"), 10240000)
        self.assertEqual(validateSize("0"), 0)
        for value in [None, "", "-1", "1e3", " 1", "١٢", "x", str(2**63)]:
            with self.assertRaises(ArgumentSyntaxError, msg=value) as caught:
                validateSize(value)
            self.assertEqual(caught.exception.reply, replies.BAD_SIZE_SYNTAX)

    def test_body(self) -> None:
        """
        C{BODY} is C{7BIT} or C{8BITMIME} (case-insensitive); C{BINARYMIME}
        only when allowed.
        """
        self.assertEqual(validateBody("7bit"), "7BIT")
        self.assertEqual(validateBody("8BITMIME"), "8BITMIME")
        self.assertEqual(validateBody("binarymime", allowBinary=True), "BINARYMIME")
        for value in ["BINARYMIME", "8BIT", None]:
            with self.assertRaises(ArgumentSyntaxError) as caught:
                validateBody(value)
            option = "BODY" if value is None else f"BODY={value}"
            self.assertEqual(caught.exception.reply, replies.UNSUPPORTED_OPTION.format(option=option))

    def test_smtputf8(self) -> None:
        """
        C{SMTPUTF8} is a flag; a value makes it an unsupported option.
        """
        self.assertTrue(validateSmtpUtf8(None))
        self.assertRaises(ArgumentSyntaxError, validateSmtpUtf8, "yes")


class AuthTests(SynchronousTestCase):
    """
    SASL PLAIN and LOGIN responses.
    """

    def test_plain(self) -> None:
        """
        A PLAIN response gives authorization identity, user and password.
        """
        self.assertEqual(decodePlain(b64(b"\0user\0secret")), ("", "user", "secret"))
        self.assertEqual(decodePlain(b64(b"admin\0user\0p\xc3\xa4ss")), ("admin", "user", "päss"))

    def test_plainMalformed(self) -> None:
        """
        Malformed PLAIN responses raise L{ArgumentSyntaxError} with the
        C{535 5.7.8} reply, never anything else.
        """
        for response in [
            "not base64!",
            "dXNlcg",  # missing padding
            b64(b"user\0secret"),
            b64(b"\0\0secret"),
            b64(b"\0user\0"),
            b64(b"a\0b\0c\0d"),
            b64(b"\0us\xffer\0pw"),
            "é",
            "",
        ]:
            with self.assertRaises(ArgumentSyntaxError, msg=response) as caught:
                decodePlain(response)
            self.assertEqual(caught.exception.reply.code, 535)

    def test_cancel(self) -> None:
        """
        C{*} cancels the exchange: C{501 5.7.0 Authentication aborted}.
        """
        with self.assertRaises(AuthenticationAborted) as caught:
            decodePlain("*")
        self.assertEqual(caught.exception.reply, replies.AUTH_ABORTED)

    def test_emptyResponse(self) -> None:
        """
        C{=} is an empty response.
        """
        self.assertEqual(decodeResponse("="), b"")

    def test_login(self) -> None:
        """
        A LOGIN response is one base64 string.
        """
        self.assertEqual(decodeLogin(b64(b"user")), "user")
        self.assertRaises(ArgumentSyntaxError, decodeLogin, "!!")

    @given(st.text(max_size=60))
    @settings(max_examples=300, deadline=None)
    def test_neverCrashes(self, response: str) -> None:
        """
        Arbitrary responses either decode or raise L{ArgumentSyntaxError}.
        """
        try:
            decodePlain(response)
        except ArgumentSyntaxError:
            pass
