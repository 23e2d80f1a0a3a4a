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
