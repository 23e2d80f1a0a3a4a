"""
ALPACA / non-SMTP command regression tests: an HTTP request or anything that
looks like a message header sent as a command ends the session at once.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.smtpd._forbidden import ForbiddenCommands, UnsupportedTable, looksLikeHeader

DEFAULT = ["CONNECT", "GET", "POST", "regexp:{{/^[^A-Z]/ Bogus}}"]


class ForbiddenCommandTests(SynchronousTestCase):
    """
    The default smtpd_forbidden_commands matches what Postfix 3.7 matches.
    """

    def test_postfixTable(self) -> None:
        """
        Tokens verified against Postfix (postmap on the same regexp table):
        HTTP verbs in any case, non-letters first, header labels.
        """
        forbidden = ForbiddenCommands.fromList(DEFAULT)
        for token in [b"GET", b"post", b"CONNECT", b"1abc", b".", b"\x16\x03",
                      "\u00e9".encode(), b'{"json":', b"Subject:", b"X-Foo:bar", b"MAIL:"]:
            self.assertTrue(forbidden.matches(token), token)
        for token in [b"mail", b"MAIL", b"x", b"XYZZY", b"Subject"]:
            self.assertFalse(forbidden.matches(token), token)

    def test_headerLabel(self) -> None:
        """
        A header label is printable ASCII without blanks, then a colon.
        """
        self.assertTrue(looksLikeHeader(b"Received:"))
        self.assertFalse(looksLikeHeader(b":"))
        self.assertFalse(looksLikeHeader(b"Sub ject:"))

    def test_flags(self) -> None:
        """
        regexp tables are case-insensitive unless the i flag is given.
        """
        self.assertTrue(ForbiddenCommands.fromList(["regexp:{{/^ab/ x}}"]).matches(b"ABC"))
        self.assertFalse(ForbiddenCommands.fromList(["regexp:{{/^AB/i x}}"]).matches(b"ABC"))

    def test_unsupportedTable(self) -> None:
        """
        A table file mtaguard cannot read is an error at start-up, not a
        silently disabled defense.
        """
        self.assertRaises(
            UnsupportedTable, ForbiddenCommands.fromList, ["hash:/etc/postfix/forbidden"]
        )


class ServerAlpacaTests(SynchronousTestCase):
    """
    The SMTP server drops a non-SMTP peer at once, whenever the line comes.
    """

    def assertDropped(self, data: bytes, expectedLog: str) -> None:
        from twisted.logger import capturedLogs

        from .smtpdharness import Harness

        h = Harness()
        h.take()
        with capturedLogs() as events:
            h.send(data)
        self.assertTrue(
            h.take().endswith(b"221 2.7.0 Error: I can break rules, too. Goodbye.\r\n")
        )
        self.assertTrue(h.closed)
        rendered = [e["log_format"].format(**e) for e in events]
        self.assertIn(expectedLog, rendered)

    def test_httpRequest(self) -> None:
        """
        An HTTP request line ends the session with Postfix's 221 and
        warning.
        """
        self.assertDropped(
            b"GET / HTTP/1.1\r\nHost: mx\r\n\r\n",
            "warning: non-SMTP command from unknown[203.0.113.9]: GET / HTTP/1.1",
        )

    def test_headerAfterEhlo(self) -> None:
        """
        A header line after EHLO, pipelined in the same segment, is caught;
        nothing after it is executed.
        """
        self.assertDropped(
            b"EHLO c.example\r\nSubject: hello\r\nNOOP\r\n",
            "warning: non-SMTP command from unknown[203.0.113.9]: Subject: hello",
        )

    def test_json(self) -> None:
        """
        A line starting with a non-letter is forbidden by the default regexp.
        """
        self.assertDropped(
            b'{"json": 1}\r\n',
            'warning: non-SMTP command from unknown[203.0.113.9]: {"json": 1}',
        )

    def test_unknownIsNotForbidden(self) -> None:
        """
        An unknown word is only an error; a blank before the colon keeps a
        header-like line from matching, as in Postfix.
        """
        from .smtpdharness import Harness

        h = Harness()
        h.take()
        h.send(b"XYZZY foo\r\nSubject : hello\r\n")
        self.assertEqual(h.lines(), [b"500 5.5.2 Error: command not recognized"] * 2)
        self.assertFalse(h.closed)

    def test_tlsClientHelloGetsBadUtf8(self) -> None:
        """
        With smtputf8_enable (the default) a TLS ClientHello sent in clear
        gets "bad UTF-8 syntax" first, as in Postfix.
        """
        from .smtpdharness import Harness

        h = Harness()
        h.take()
        h.send(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n")
        self.assertEqual(h.take(), b"500 5.5.2 Error: bad UTF-8 syntax\r\n")
