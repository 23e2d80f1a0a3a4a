"""
Tests for L{mtaguard.config._expand}: Postfix's C{$name} expansion.

The expected values in the tables were produced by Postfix 3.7.11's
C{postconf -x} on the same input (C{a = x}, C{e =}).
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config._expand import (
    ExpansionError,
    Expander,
    compileTemplate,
    references,
)

VALUES = {"a": "x", "e": "", "ref": "$a", "loop1": "$loop2", "loop2": "$loop1", "dollar": "$$a"}

CASES = [
    ("[${a}] [$(a)] [${a?{y}}] [${a?y}] [${e?y}] [${e:z}] [${a?{1}:{2}}] [${e?{1}:{2}}]",
     "[x] [x] [y] [y] [] [z] [1] [2]"),
    ("[${{$a} == {x} ? {eq} : {ne}}] [${{10} < {9} ? {lt} : {ge}}] "
     "[${{abc} < {abd} ? {lt} : {ge}}] [${{3.6} <level {3.10} ? {lt} : {ge}}]",
     "[eq] [ge] [lt] [lt]"),
    ("[${a?{ spaced }}] [${a ? {y}}] [${a?{$e}:{n}}] [${a?{{nested}}}]",
     "[ spaced ] [y] [] [{nested}]"),
    ("$a$a $$a ${a}b", "xx $a xb"),
    ("[${{3.6} <=level {3.6} ? {le} : {gt}}] [${{2} <level {3.6} ? {lt} : {ge}}] "
     "[${{ 5 } == {5} ? {eq} : {ne}}] [${{a} != {b}?{ne}:{eq}}] "
     "[${{10} > {9} ? {gt}:{le}}] [$(a?q)] [$(a:q)]",
     "[le] [lt] [ne] [ne] [gt] [q] []"),
    ("[${a?{y}:n}]", "[y]"),
    ("[${e?{y}:n}] [${e?{y}:n z}] [${e?{y} :  n z }]", "[n] [n z] [ n z ]"),
    ("[${e?{y}}z] [${{x} == {x} ? {y}}] [${{x} == {y} : {n}}]", "[z] [y] [n]"),
    ("${{1.2} == {01.2} ? {eq}:{ne}} ${{10} == {010} ? {eq}:{ne}} "
     "${{2} < {10} ? {lt}:{ge}} ${{-1} < {0} ? {lt}:{ge}}",
     "ne eq lt lt"),
    ("${{3.6} <level {3.10.1} ? {lt} : {ge}} ${{3} ==level {3.0} ? {eq} : {ne}} "
     "${{3.6.1} >level {3.6} ? {gt} : {le}} ${{3.6} !=level {3.6.0} ? {ne} : {eq}}",
     "lt eq gt eq"),
    ("${{0} <level {1} ? {lt} : {ge}} ${{2} <=level {2} ? {le} : {gt}} "
     "${{3.7} >=level {3.6} ? {ge} : {lt}}",
     "lt le ge"),
    ("${a?x}y}", "xy}"),
    ("${a?{y}}${a}$(a)$a.b", "yxxx.b"),
    ("${a?$a}", "x"),
    ("${e?$a:b}", ""),
    ("${e:{${a?{deep}}}}", "deep"),
    ("${e:${a?deep}}", "deep"),
    ("$(a?{y}:{n})", "y"),
    ("${  a  }", "x"),
    ("${{x}=={x}?{a}:{b}}", "a"),
    ("${a}_b", "x_b"),
    ("x\\$a", "x\\x"),
    ("$ref/$dollar", "x/$a"),
]

ERRORS = [
    "[$-]",
    "$",
    "${nope",
    "${a?{y}:{n}:{z}}",
    "${a:{q}x}",
    "${e:{y}:{n}}",
    "${{a} ~ {a} ? {eq}:{ne}}",
    "${{x} <level {3} ? {lt} : {ge}}",
    "${{3} <level {} ? {lt} : {ge}}",
]


def expand(text: str, values: dict[str, str] = VALUES) -> str:
    return Expander(values.get).template(compileTemplate(text))


class ExpansionTests(SynchronousTestCase):
    """
    Values expand exactly as Postfix's postconf -x expands them.
    """

    def test_postfixTable(self) -> None:
        """
        Every form in the table expands to what Postfix printed for it.
        """
        for text, expected in CASES:
            self.assertEqual(expand(text), expected, text)

    def test_malformed(self) -> None:
        """
        Malformed expressions raise L{ExpansionError}, as Postfix stops with
        "macro processing error".
        """
        for text in ERRORS:
            self.assertRaises(ExpansionError, expand, text)

    def test_undefined(self) -> None:
        """
        An undefined name expands to nothing and is recorded so the caller
        can warn about it.
        """
        expander = Expander(VALUES.get)
        self.assertEqual(expander.template(compileTemplate("[$ab] [$ab]")), "[] []")
        self.assertEqual(expander.undefined, ["ab"])

    def test_loop(self) -> None:
        """
        A value that refers to itself, directly or not, is an error rather
        than an endless recursion.
        """
        self.assertRaises(ExpansionError, expand, "$loop1")

    def test_conditionTestsRawValue(self) -> None:
        """
        C{${name?...}} tests whether the value is set, not whether its
        expansion is empty: C{ref = $e} counts as set.
        """
        values = dict(VALUES, ref="$e")
        self.assertEqual(expand("${ref?{set}:{unset}}", values), "set")

    def test_postfixDefaults(self) -> None:
        """
        The stress and compatibility-level forms used by Postfix's defaults
        select the documented values.
        """
        deadline = "${smtpd_per_record_deadline?{$smtpd_per_record_deadline}:{${stress?{yes}:{no}}}}"
        for stress, legacy, expected in [
            ("", "", "no"),
            ("yes", "", "yes"),
            ("yes", "no", "no"),
            ("", "yes", "yes"),
        ]:
            values = {"stress": stress, "smtpd_per_record_deadline": legacy}
            self.assertEqual(expand(deadline, values), expected)
        relay = (
            "${{$compatibility_level} <level {1} ? {} : "
            "{permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination}}"
        )
        self.assertEqual(expand(relay, {"compatibility_level": "0"}), "")
        self.assertEqual(
            expand(relay, {"compatibility_level": "3.6"}),
            "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
        )

    def test_references(self) -> None:
        """
        L{references} finds names in every branch, so that postconf can tell
        which user-defined names are in use.
        """
        template = compileTemplate("$a ${b?{$c}:{$d}} ${{$f} == {1} ? {$g}}")
        self.assertEqual(references(template), {"a", "b", "c", "d", "f", "g"})

    @given(st.text(alphabet="${}()?:ab =<>!level0123 ", max_size=40))
    def test_arbitraryInput(self, text: str) -> None:
        """
        Any input either expands or raises L{ExpansionError}; nothing else
        escapes.
        """
        try:
            expand(text)
        except ExpansionError:
            pass
