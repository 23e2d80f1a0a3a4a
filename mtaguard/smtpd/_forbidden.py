# -*- test-case-name: tests.test_alpaca -*-
"""
Recognising non-SMTP commands (ALPACA and friends), sans I/O.

A first token that is not an SMTP command, and either looks like a message
header label (C{Subject:}) or matches C{smtpd_forbidden_commands}, means the
peer is not speaking SMTP: an HTTP client tricked into talking to port 25,
or an attempt to have our replies parsed as another protocol.  Postfix ends
such sessions at once; so do we.
"""

from __future__ import annotations

import re
from typing import Iterable

import attr


class UnsupportedTable(ValueError):
    """
    A C{smtpd_forbidden_commands} entry names a lookup table type that
    mtaguard cannot read.
    """


_HEADER_LABEL = re.compile(rb"\A[\x21-\x39\x3b-\x7e]+:")
_INLINE_RULE = re.compile(r"\A\s*/(?P<pattern>(?:[^/\\]|\\.)*)/(?P<flags>[a-zA-Z]*)\s*(?P<result>.*?)\s*\Z", re.S)


def looksLikeHeader(token: bytes) -> bool:
    """
    Whether a command's first token is a message header label such as
    C{Subject:} or C{X-Foo:bar}: printable ASCII without blanks, then a
    colon.
    """
    return _HEADER_LABEL.match(token) is not None


def _inlineRules(body: str) -> list[str]:
    """
    Split the inside of an inline table C{{ {rule} {rule} }} into rules.
    """
    rules: list[str] = []
    depth = 0
    start = 0
    for index, char in enumerate(body):
        if char == "{":
            if depth == 0:
                start = index + 1
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                rules.append(body[start:index])
    return rules


def _compileRule(rule: str, entry: str) -> re.Pattern[str]:
    match = _INLINE_RULE.match(rule)
    if match is None:
        raise UnsupportedTable(f"cannot parse rule {rule!r} in {entry!r}")
    flags = match.group("flags")
    # regexp_table(5): case-insensitive unless the "i" flag toggles it off.
    ignoreCase = flags.count("i") % 2 == 0
    try:
        return re.compile(match.group("pattern"), re.IGNORECASE if ignoreCase else 0)
    except re.error as error:
        raise UnsupportedTable(f"bad regular expression in {entry!r}: {error}") from None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ForbiddenCommands:
    """
    The compiled C{smtpd_forbidden_commands} list.
    """

    words: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def fromList(cls, entries: Iterable[str]) -> "ForbiddenCommands":
        """
        Compile the parameter's items: literal command names, and inline
        C{regexp:{...}} or C{pcre:{...}} tables.

        @raise UnsupportedTable: for table types mtaguard cannot read.
        """
        words: set[str] = set()
        patterns: list[re.Pattern[str]] = []
        for entry in entries:
            kind, colon, rest = entry.partition(":")
            if not colon:
                words.add(entry.lower())
                continue
            if kind.lower() not in ("regexp", "pcre") or not rest.startswith("{"):
                raise UnsupportedTable(f"unsupported table {entry!r}: use an inline regexp:{{...}}")
            for rule in _inlineRules(rest[1:-1] if rest.endswith("}") else rest[1:]):
                patterns.append(_compileRule(rule, entry))
        return cls(frozenset(words), tuple(patterns))

    def matches(self, token: bytes) -> bool:
        """
        Whether a first token that is not an SMTP command is forbidden: a
        header label, a listed word, or a match of a listed table (all
        compared in lower case, as Postfix folds the token first).
        """
        if looksLikeHeader(token):
            return True
        folded = token.decode("utf-8", "surrogateescape").lower()
        if folded in self.words:
            return True
        return any(pattern.search(folded) for pattern in self.patterns)
