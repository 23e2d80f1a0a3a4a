# -*- test-case-name: tests.test_config_expand -*-
"""
Postfix's C{$name} expansion, sans I/O.

A parameter value is compiled once into a L{Template}, a tuple of nodes, and
evaluated against a lookup function as often as needed.  The syntax is the
one Postfix documents in postconf(5) and implements in mac_expand.c:

  - C{$name}, C{${name}}, C{$(name)}: the value of C{name}, itself expanded;
  - C{$$}: a literal C{$};
  - C{${name?value}}, C{${name?{value}}}: C{value} if C{name} is not empty;
  - C{${name:value}}, C{${name:{value}}}: C{value} if C{name} is empty;
  - C{${name?{value1}:{value2}}}: one or the other;
  - C{${{a} op {b} ? {value1} : {value2}}} with op one of C{==}, C{!=},
    C{<}, C{<=}, C{>=}, C{>} (numeric when both sides are all digits, else
    lexical) or the same followed by C{level}, which compares compatibility
    levels such as C{3.6} and C{3.10}.
"""

from __future__ import annotations

import re
from typing import Callable, Optional, TypeVar, Union

import attr


class ExpansionError(ValueError):
    """
    A value holds a malformed C{$} expression, or its expansion does not
    terminate.
    """


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Reference:
    """
    C{$name}: substitute the named value, expanded.
    """

    name: str


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Conditional:
    """
    C{${name?{then}:{else}}} and its shorter forms.  C{ifSet} is used when the
    named value is not empty, C{ifEmpty} otherwise; either may be L{None}.
    """

    name: str
    ifSet: Optional["Template"]
    ifEmpty: Optional["Template"]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Relation:
    """
    C{${{left} op {right} ? {then} : {else}}}.
    """

    left: "Template"
    operator: str
    level: bool
    right: "Template"
    ifTrue: Optional["Template"]
    ifFalse: Optional["Template"]


Node = Union[str, Reference, Conditional, Relation]
Template = tuple[Node, ...]

#: Looks up the unexpanded value of a name; L{None} when it is undefined.
Lookup = Callable[[str], Optional[str]]

_NAME = re.compile(r"[A-Za-z0-9_]+")
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
_MAX_DEPTH = 100


def _matchingClose(text: str, start: int, opener: str, closer: str) -> int:
    """
    The index of the C{closer} that balances the C{opener} just before
    C{start}.
    """
    depth = 1
    for index in range(start, len(text)):
        char = text[index]
        if char == opener:
            depth += 1
        elif char == closer:
            depth -= 1
            if depth == 0:
                return index
    raise ExpansionError(f"truncated macro reference: {text!r}")


def _skipSpace(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


def _braced(text: str, index: int) -> tuple[Template, int]:
    """
    Parse C{{value}} at C{index} (which must hold C{{}); return the compiled
    value and the index after the closing brace.
    """
    if index >= len(text) or text[index] != "{":
        raise ExpansionError(f"'{{' expected at: {text[index:]!r}")
    close = _matchingClose(text, index + 1, "{", "}")
    return compileTemplate(text[index + 1 : close]), close + 1


def _unexpected(text: str, index: int) -> ExpansionError:
    return ExpansionError(f'unexpected input at: "...{text[:index]}>>>{text[index:]}"')


def _parseRelation(inner: str) -> Relation:
    left, index = _braced(inner, 0)
    index = _skipSpace(inner, index)
    for operator in _OPERATORS:
        if inner.startswith(operator, index):
            index += len(operator)
            break
    else:
        raise ExpansionError(
            f'"==" or "!=" or "<" or "<=" or ">=" or ">" expected at: {inner[index:]!r}'
        )
    level = inner.startswith("level", index)
    if level:
        index += len("level")
    index = _skipSpace(inner, index)
    right, index = _braced(inner, index)
    index = _skipSpace(inner, index)
    ifTrue: Template | None = None
    ifFalse: Template | None = None
    if inner.startswith("?", index):
        ifTrue, index = _braced(inner, _skipSpace(inner, index + 1))
        index = _skipSpace(inner, index)
    if inner.startswith(":", index):
        ifFalse, index = _braced(inner, _skipSpace(inner, index + 1))
        index = _skipSpace(inner, index)
    if ifTrue is None and ifFalse is None:
        raise ExpansionError(f"'?' or ':' expected at: {inner[index:]!r}")
    if index != len(inner):
        raise _unexpected(inner, index)
    return Relation(left, operator, level, right, ifTrue, ifFalse)


def _parseInner(inner: str) -> Node:
    """
    Parse what stands between the brackets of C{${...}} or C{$(...)}.
    """
    start = _skipSpace(inner, 0)
    if inner.startswith("{", start):
        return _parseRelation(inner[start:])
    match = _NAME.match(inner, start)
    if match is None:
        raise ExpansionError(f"empty macro name: {inner!r}")
    name = match.group()
    index = _skipSpace(inner, match.end())
    if index == len(inner):
        return Reference(name)
    which = inner[index]
    if which not in "?:":
        raise _unexpected(inner, index)
    rest = inner[index + 1 :]
    restStart = _skipSpace(rest, 0)
    if not rest.startswith("{", restStart):
        # The legacy form: everything up to the closing bracket.
        body = compileTemplate(rest)
        return Conditional(name, body, None) if which == "?" else Conditional(name, None, body)
    first, position = _braced(rest, restStart)
    position = _skipSpace(rest, position)
    second: Template | None = None
    if which == "?" and rest.startswith(":", position):
        elseStart = _skipSpace(rest, position + 1)
        if rest.startswith("{", elseStart):
            second, position = _braced(rest, elseStart)
            position = _skipSpace(rest, position)
        else:
            # Postfix takes an unbraced else-part literally, up to the
            # closing bracket, less one separating blank.
            elseText = rest[position + 1 :]
            if elseText[:1].isspace():
                elseText = elseText[1:]
            second, position = compileTemplate(elseText), len(rest)
    if position != len(rest):
        raise _unexpected(rest, position)
    if which == "?":
        return Conditional(name, first, second)
    return Conditional(name, None, first)


_cache: dict[str, Template] = {}


def compileTemplate(text: str) -> Template:
    """
    Compile a value into a template.

    @raise ExpansionError: if the value holds a malformed expression.
    """
    cached = _cache.get(text)
    if cached is not None:
        return cached
    nodes: list[Node] = []
    literal: list[str] = []
    index = 0
    length = len(text)
    while index < length:
        dollar = text.find("$", index)
        if dollar < 0:
            literal.append(text[index:])
            break
        literal.append(text[index:dollar])
        index = dollar + 1
        if index >= length:
            raise ExpansionError(f'empty macro name: "{text}"')
        char = text[index]
        if char == "$":
            literal.append("$")
            index += 1
            continue
        if char in "{(":
            closer = "}" if char == "{" else ")"
            close = _matchingClose(text, index + 1, char, closer)
            node = _parseInner(text[index + 1 : close])
            index = close + 1
        else:
            match = _NAME.match(text, index)
            if match is None:
                raise ExpansionError(f'empty macro name: "{text}"')
            node = Reference(match.group())
            index = match.end()
        if literal:
            joined = "".join(literal)
            if joined:
                nodes.append(joined)
            literal = []
        nodes.append(node)
    joined = "".join(literal)
    if joined:
        nodes.append(joined)
    template = tuple(nodes)
    if len(_cache) < 65536:
        _cache[text] = template
    return template


def references(template: Template) -> set[str]:
    """
    Every name a template mentions, in any branch.
    """
    found: set[str] = set()
    stack: list[Template] = [template]
    while stack:
        for node in stack.pop():
            if isinstance(node, Reference):
                found.add(node.name)
            elif isinstance(node, Conditional):
                found.add(node.name)
                stack.extend(t for t in (node.ifSet, node.ifEmpty) if t is not None)
            elif isinstance(node, Relation):
                stack.append(node.left)
                stack.append(node.right)
                stack.extend(t for t in (node.ifTrue, node.ifFalse) if t is not None)
    return found


_LEVEL = re.compile(r"\A(\d+)(?:\.(\d+))?(?:\.(\d+))?\Z")


def _levelKey(text: str) -> tuple[int, int, int]:
    match = _LEVEL.match(text)
    if match is None:
        raise ExpansionError(f'malformed compatibility level syntax: "{text}"')
    return (int(match.group(1)), int(match.group(2) or 0), int(match.group(3) or 0))


#: What a comparison compares: compatibility levels, numbers or strings.
_Ordered = TypeVar("_Ordered", tuple[int, int, int], int, str)


def _compare(left: str, operator: str, right: str, level: bool) -> bool:
    if level:
        return _compareValues(_levelKey(left), operator, _levelKey(right))
    if left.isdigit() and right.isdigit():
        return _compareValues(int(left), operator, int(right))
    return _compareValues(left, operator, right)


def _compareValues(a: _Ordered, operator: str, b: _Ordered) -> bool:
    if operator == "==":
        return a == b
    if operator == "!=":
        return a != b
    if operator == "<":
        return a < b
    if operator == "<=":
        return a <= b
    if operator == ">=":
        return a >= b
    return a > b


class Expander:
    """
    Expands templates against one set of values.

    @ivar undefined: the names that were referenced but had no value, in the
        order they were met; callers warn about them as Postfix does.
    """

    def __init__(self, lookup: Lookup, expandedCache: dict[str, str] | None = None) -> None:
        self._lookup = lookup
        self._done: dict[str, str] = {} if expandedCache is None else expandedCache
        self._active: list[str] = []
        self.undefined: list[str] = []

    def name(self, name: str) -> str:
        """
        The fully expanded value of C{name} (empty if undefined).
        """
        done = self._done.get(name)
        if done is not None:
            return done
        raw = self._lookup(name)
        if raw is None:
            if name not in self.undefined:
                self.undefined.append(name)
            return ""
        if name in self._active or len(self._active) >= _MAX_DEPTH:
            raise ExpansionError(f"unreasonable macro call nesting: {name!r}")
        self._active.append(name)
        try:
            value = self.template(compileTemplate(raw))
        finally:
            self._active.pop()
        self._done[name] = value
        return value

    def template(self, template: Template) -> str:
        """
        Expand a compiled template.
        """
        parts: list[str] = []
        for node in template:
            if isinstance(node, str):
                parts.append(node)
            elif isinstance(node, Reference):
                parts.append(self.name(node.name))
            elif isinstance(node, Conditional):
                raw = self._lookup(node.name)
                chosen = node.ifSet if raw else node.ifEmpty
                if chosen is not None:
                    parts.append(self.template(chosen))
            else:
                outcome = _compare(
                    self.template(node.left),
                    node.operator,
                    self.template(node.right),
                    node.level,
                )
                chosen = node.ifTrue if outcome else node.ifFalse
                if chosen is not None:
                    parts.append(self.template(chosen))
        return "".join(parts)
