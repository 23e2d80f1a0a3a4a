"""
Tests for the reply registry (C{mtaguard.smtp._replies}) and for
L{mtaguard.smtp.escapeForLog}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.smtp import Reply, escapeForLog, multiline
from mtaguard.smtp import _replies as replies


class ReplyTests(SynchronousTestCase):
    """
    Replies render to Postfix's exact bytes.
    """

    def test_toBytes(self) -> None:
        """
        A reply is one line: code, enhanced status code, text, CRLF.
        """
        self.assertEqual(replies.NEED_MAIL.toBytes(), b"503 5.5.1 Error: need MAIL command\r\n")

    def test_noEnhancedCode(self) -> None:
        """
        Replies without an enhanced status code, like C{354}, have none.
        """
        self.assertEqual(replies.START_DATA.toBytes(), b"354 End data with <CR><LF>.<CR><LF>\r\n")

    def test_format(self) -> None:
        """
        Fields are filled in and give a new reply; the constant is unchanged.
        """
        timeout = replies.TIMEOUT.format(myhostname="mx.test.example")
        self.assertEqual(timeout.toBytes(), b"421 4.4.2 mx.test.example Error: timeout exceeded\r\n")
        self.assertEqual(replies.TIMEOUT.text, "{myhostname} Error: timeout exceeded")
        self.assertRaises(KeyError, replies.TIMEOUT.format)

    def test_noInjectedLines(self) -> None:
        """
        A peer-supplied field containing CR or LF cannot add a reply line.
        """
        reply = replies.RELAY_DENIED.format(recipient="a\r\n250 ok\rx")
        self.assertEqual(reply.toBytes(), b"554 5.7.1 <a  250 ok x>: Relay access denied\r\n")
        self.assertEqual(multiline(250, ["a\nb", "c"]), b"250-a b\r\n250 c\r\n")

    def test_multiline(self) -> None:
        """
        The EHLO reply uses C{250-} on every line but the last.
        """
        self.assertEqual(
            multiline(250, ["mx.test.example", "PIPELINING", "SIZE 10240000", "CHUNKING"]),
            b"250-mx.test.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 CHUNKING\r\n",
        )
        self.assertEqual(multiline(250, ["only"]), b"250 only\r\n")
        self.assertRaises(ValueError, multiline, 250, [])

    def test_postfixTexts(self) -> None:
        """
        The replies pinned by postfix.md render exactly as Postfix sends them.
        """
        host = {"myhostname": "mx.test.example"}
        expected = {
            replies.TIMEOUT.format(**host): "421 4.4.2 mx.test.example Error: timeout exceeded",
            replies.TOO_MANY_ERRORS.format(**host): "421 4.7.0 mx.test.example Error: too many errors",
            replies.TOO_MANY_CONNECTIONS.format(address="192.0.2.1", **host): "421 4.7.0 mx.test.example Error: too many connections from 192.0.2.1",
            replies.NON_SMTP_COMMAND: "221 2.7.0 Error: I can break rules, too. Goodbye.",
            replies.BAD_UTF8: "500 5.5.2 Error: bad UTF-8 syntax",
            replies.BAD_SYNTAX: "500 5.5.2 Error: bad syntax",
            replies.COMMAND_NOT_RECOGNIZED: "500 5.5.2 Error: command not recognized",
            replies.SEND_HELO_FIRST: "503 5.5.1 Error: send HELO/EHLO first",
            replies.NESTED_MAIL: "503 5.5.1 Error: nested MAIL command",
            replies.MAIL_SYNTAX: "501 5.5.4 Syntax: MAIL FROM:<address>",
            replies.RCPT_SYNTAX: "501 5.5.4 Syntax: RCPT TO:<address>",
            replies.NEED_MAIL: "503 5.5.1 Error: need MAIL command",
            replies.NEED_RCPT: "503 5.5.1 Error: need RCPT command",
            replies.NO_VALID_RECIPIENTS: "554 5.5.1 Error: no valid recipients",
            replies.START_DATA: "354 End data with <CR><LF>.<CR><LF>",
            replies.MAIL_OK: "250 2.1.0 Ok",
            replies.RCPT_OK: "250 2.1.5 Ok",
            replies.QUEUED.format(queueID="SINK1"): "250 2.0.0 Ok: queued as SINK1",
            replies.BYE: "221 2.0.0 Bye",
            replies.GREETING.format(banner="mx.test.example ESMTP Postfix"): "220 mx.test.example ESMTP Postfix",
            replies.MESSAGE_SIZE_EXCEEDS_LIMIT: "552 5.3.4 Message size exceeds fixed limit",
            replies.MESSAGE_FILE_TOO_BIG: "552 5.3.4 Error: message file too big",
            replies.BAD_SIZE_SYNTAX: "501 5.5.4 Bad message size syntax",
            replies.TOO_MANY_RECIPIENTS: "452 4.5.3 Error: too many recipients",
            replies.RELAY_DENIED_TEMPORARY.format(recipient="victim@remote.example"): "454 4.7.1 <victim@remote.example>: Relay access denied",
            replies.RELAY_DENIED.format(recipient="victim@remote.example"): "554 5.7.1 <victim@remote.example>: Relay access denied",
            replies.INSUFFICIENT_STORAGE: "452 4.3.1 Insufficient system storage",
            replies.BARE_LF.format(**host): "550 5.5.2 mx.test.example Error: bare <LF> received",
            replies.PIPELINING_SYNC: "554 5.5.0 Error: SMTP protocol synchronization",
            replies.AUTH_NOT_ENABLED: "503 5.5.1 Error: authentication not enabled",
            replies.MUST_STARTTLS: "530 5.7.0 Must issue a STARTTLS command first",
            replies.TLS_NOT_AVAILABLE: "454 4.7.0 TLS not available due to local problem",
            replies.READY_TO_START_TLS: "220 2.0.0 Ready to start TLS",
            replies.AUTH_SUCCESSFUL: "235 2.7.0 Authentication successful",
            replies.VRFY_DISABLED: "502 5.5.1 VRFY command is disabled",
            replies.TOO_MUCH_MAIL.format(address="192.0.2.1"): "450 4.7.1 Error: too much mail from 192.0.2.1",
        }
        for reply, text in expected.items():
            self.assertEqual(reply.toBytes(), text.encode() + b"\r\n")

    def test_bareLineFeedCode(self) -> None:
        """
        The bare LF reply takes C{smtpd_forbid_bare_newline_reject_code}.
        """
        import attrs

        reply = attrs.evolve(replies.BARE_LF, code=521).format(myhostname="mx")
        self.assertEqual(reply.toBytes(), b"521 5.5.2 mx Error: bare <LF> received\r\n")

    def test_registry(self) -> None:
        """
        Every constant is in C{ALL_REPLIES}, with a 3-digit code and an
        enhanced code whose class matches the reply's.
        """
        self.assertIn("TIMEOUT", replies.ALL_REPLIES)
        for name, reply in replies.ALL_REPLIES.items():
            self.assertIsInstance(reply, Reply)
            self.assertTrue(200 <= reply.code < 600, name)
            if reply.enhanced:
                self.assertEqual(reply.enhanced[0], str(reply.code)[0], name)


class EscapeTests(SynchronousTestCase):
    """
    Peer text is escaped for logs as Postfix does.
    """

    def test_printable(self) -> None:
        """
        Printable ASCII is unchanged.
        """
        self.assertEqual(escapeForLog("GET / HTTP/1.1"), "GET / HTTP/1.1")

    def test_controls(self) -> None:
        """
        CR, LF and tab use C escapes, a backslash is doubled.
        """
        self.assertEqual(escapeForLog(b"a\r\n\tb\\"), "a\\r\\n\\tb\\\\")

    def test_octal(self) -> None:
        """
        Other bytes become 3-digit octal, as in Postfix's log of a TLS
        ClientHello sent in plaintext (postfix.md 2.1).
        """
        self.assertEqual(
            escapeForLog(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
            "\\026\\003\\001\\000\\245\\001\\000\\000\\241\\003\\003",
        )
        self.assertEqual(escapeForLog("é\x7f"), "\\303\\251\\177")

    def test_limit(self) -> None:
        """
        At most C{limit} input bytes are escaped.
        """
        self.assertEqual(escapeForLog(b"x" * 150), "x" * 100)
        self.assertEqual(escapeForLog(b"\r\n" * 10, limit=3), "\\r\\n\\r")

    def test_surrogates(self) -> None:
        """
        Undecodable bytes carried in a C{str} as surrogate escapes are logged
        as the bytes they were.
        """
        self.assertEqual(escapeForLog(b"\xff".decode("utf-8", "surrogateescape")), "\\377")
