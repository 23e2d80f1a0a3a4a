# -*- test-case-name: tests.test_config_maincf -*-
"""
main.cf, sans I/O: logical lines, C{name = value} pairs with the file line
they came from.  Editing (C{postconf -e}, C{-X}, C{-#}) reuses the same
logical-line scanner so that it sees exactly what the parser sees.
"""

from __future__ import annotations

import re
from typing import Iterator

import attr


class MainCfSyntaxError(ValueError):
    """
    A logical line of main.cf is not C{name = value}.  C{str()} is Postfix's
    message, e.g. C{missing '=' after attribute name: "foo"}.
    """

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


@attr.s(frozen=True, slots=True, auto_attribs=True)
class LogicalLine:
    """
    One logical line: its first physical line (0-based index), the index
    after its last continuation line, and its text joined with single
    spaces.
    """

    first: int
    end: int
    text: str


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Setting:
    """
    C{name = value} from line C{line} (1-based) of a main.cf file.
    """

    name: str
    value: str
    line: int


def _isSkipped(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def logicalLines(lines: list[str]) -> Iterator[LogicalLine]:
    """
    Group physical lines (without line terminators) into logical lines.

    A line that starts with whitespace continues the logical line before it;
    blank lines and comment lines, indented or not, are skipped and do not
    end a logical line.  A continuation line with nothing to continue is
    yielded on its own, as Postfix warns about it and otherwise ignores it.
    """
    current: list[str] = []
    first = 0
    end = 0
    for index, line in enumerate(lines):
        if _isSkipped(line):
            continue
        if line[0].isspace() and current:
            current.append(line.strip())
            end = index + 1
            continue
        if current:
            yield LogicalLine(first, end, " ".join(current))
        current = [line.strip()] if not line[0].isspace() else []
        first = index
        end = index + 1
        if not current:
            yield LogicalLine(index, index + 1, line)
    if current:
        yield LogicalLine(first, end, " ".join(current))


_NAME_CHARS = re.compile(r"\A[^\s=]+\Z")


def splitSetting(text: str, line: int) -> tuple[str, str]:
    """
    Split C{name = value}.

    @raise MainCfSyntaxError: with Postfix's text when there is no C{=} or
        no name.
    """
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not _NAME_CHARS.match(name or "x"):
        raise MainCfSyntaxError(f"missing '=' after attribute name: \"{text}\"", line)
    if not name:
        raise MainCfSyntaxError(f'missing attribute name: "{text}"', line)
    return name, value.strip()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ParsedMainCf:
    """
    The settings of one main.cf, in file order, and the warnings met while
    reading it (Postfix's wording, without the file name).
    """

    settings: tuple[Setting, ...]
    warnings: tuple[str, ...]

    def values(self) -> dict[str, str]:
        """
        The effective value of each name: the last definition wins.
        """
        return {setting.name: setting.value for setting in self.settings}

    def lines(self) -> dict[str, int]:
        """
        The line of each name's effective definition.
        """
        return {setting.name: setting.line for setting in self.settings}


def parseMainCf(text: str) -> ParsedMainCf:
    """
    Parse the text of a main.cf file.

    @raise MainCfSyntaxError: on the first malformed logical line.
    """
    settings: list[Setting] = []
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for logical in logicalLines(text.splitlines()):
        if logical.text[:1].isspace():
            warnings.append(
                f'logical line must not start with whitespace: "{logical.text}"'
            )
            continue
        name, value = splitSetting(logical.text, logical.first + 1)
        if name in seen:
            warnings.append(
                f"line {logical.first + 1}: overriding earlier entry: {name}={seen[name]}"
            )
        seen[name] = value
        settings.append(Setting(name, value, logical.first + 1))
    return ParsedMainCf(tuple(settings), tuple(warnings))


def formatSetting(name: str, value: str) -> str:
    """
    A setting as C{postconf} writes and prints it.
    """
    return f"{name} = {value}"


__all__ = [
    "LogicalLine",
    "MainCfSyntaxError",
    "ParsedMainCf",
    "Setting",
    "formatSetting",
    "logicalLines",
    "parseMainCf",
    "splitSetting",
]
