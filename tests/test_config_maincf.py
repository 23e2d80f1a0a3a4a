"""
Tests for L{mtaguard.config._maincf}: main.cf syntax as Postfix reads it.
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config._maincf import (
    MainCfSyntaxError,
    logicalLines,
    parseMainCf,
)


class MainCfTests(SynchronousTestCase):
    """
    main.cf parses into the settings Postfix sees.
    """

    def test_continuationAndComments(self) -> None:
        """
        Indented lines continue a value, joined with single spaces; blank and
        comment lines, indented or not, are skipped without ending it; the
        value is trimmed and C{#} inside a value is not a comment.
        """
        text = (
            "mydestination = a\n\n  b\n# c\n  c\n\t#d\n  d\n"
            "myorigin=  x  \n   \nmail_name = n # not comment\n"
        )
        parsed = parseMainCf(text)
        self.assertEqual(
            parsed.values(),
            {"mydestination": "a b c d", "myorigin": "x", "mail_name": "n # not comment"},
        )
        self.assertEqual(parsed.lines(), {"mydestination": 1, "myorigin": 8, "mail_name": 10})

    def test_lastDefinitionWins(self) -> None:
        """
        A name defined twice takes the later value, with Postfix's warning.
        """
        parsed = parseMainCf("mydomain = first.example\nmydomain = second.example\n")
        self.assertEqual(parsed.values(), {"mydomain": "second.example"})
        self.assertEqual(
            parsed.warnings,
            ("line 2: overriding earlier entry: mydomain=first.example",),
        )

    def test_missingEquals(self) -> None:
        """
        A line without C{=} or with a blank in the name is refused with
        Postfix's message and its line number.
        """
        for text, message in [
            ("# c\nfoo\n", "missing '=' after attribute name: \"foo\""),
            ("a b = 1\n", "missing '=' after attribute name: \"a b = 1\""),
            ("= 1\n", 'missing attribute name: "= 1"'),
        ]:
            error = self.assertRaises(MainCfSyntaxError, parseMainCf, text)
            self.assertEqual(str(error), message)
        error = self.assertRaises(MainCfSyntaxError, parseMainCf, "# c\nfoo\n")
        self.assertEqual(error.line, 2)

    def test_leadingContinuation(self) -> None:
        """
        A continuation line with nothing to continue is skipped with a
        warning, as Postfix does.
        """
        parsed = parseMainCf("  indented = 1\nmyorigin = x\n")
        self.assertEqual(parsed.values(), {"myorigin": "x"})
        self.assertEqual(
            parsed.warnings,
            ('logical line must not start with whitespace: "  indented = 1"',),
        )

    def test_logicalLineSpans(self) -> None:
        """
        Each logical line knows the physical lines it covers, so that an edit
        can replace exactly them.
        """
        lines = ["a = 1", "  2", "# x", "  3", "b = 4"]
        spans = [(l.first, l.end, l.text) for l in logicalLines(lines)]
        self.assertEqual(spans, [(0, 4, "a = 1 2 3"), (4, 5, "b = 4")])

    @given(st.text(alphabet="ab =#\t\n$", max_size=60))
    def test_arbitraryText(self, text: str) -> None:
        """
        Any text either parses or raises L{MainCfSyntaxError}.
        """
        try:
            parseMainCf(text)
        except MainCfSyntaxError:
            pass
