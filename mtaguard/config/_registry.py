# -*- test-case-name: tests.test_config_registry -*-
"""
The parameter registry: every main.cf parameter mtaguard knows is declared
here once, with its default expression, its type, its bounds and a one-line
description.  The same declarations feed the main.cf loader, typed lookups at
run time, C{mtaguard-postconf -d} and the generated parameter documentation.
"""

from __future__ import annotations

import enum
import re
from typing import Callable, Generic, Iterable, Iterator, TypedDict, TypeVar, Union, Unpack, cast

import attr

T = TypeVar("T")
#: A parameter of a more specific type may stand where a wider one is
#: expected (a tuple-valued list parameter where an iterable is wanted).
T_co = TypeVar("T_co", covariant=True)


class Kind(enum.Enum):
    """
    The value type of a parameter, as Postfix's configuration tables know it.
    """

    TIME = "time"
    INT = "int"
    BOOL = "bool"
    STRING = "string"
    LIST = "list"
    MAP = "map"


class InvalidValue(ValueError):
    """
    A parameter value does not convert to its declared type or lies outside
    its bounds.  The message is the part after "parameter value": the caller
    names file, line and parameter.
    """


_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME_RE = re.compile(r"\A\s*(-?\d+)([smhdw]?)\s*\Z")
_INT_RE = re.compile(r"\A\s*([-+]?\d+)\s*\Z")


def _convertTime(parameter: "Parameter[int]", text: str) -> int:
    match = _TIME_RE.match(text)
    if match is None:
        raise InvalidValue(
            f"{text.strip()!r} is not a time: expected a number with an"
            f" optional unit s, m, h, d or w (default unit: {parameter.unit})"
        )
    unit = match.group(2) or parameter.unit
    return int(match.group(1)) * _TIME_UNITS[unit]


def _convertInt(parameter: "Parameter[int]", text: str) -> int:
    match = _INT_RE.match(text)
    if match is None:
        raise InvalidValue(f"{text.strip()!r} is not an integer")
    return int(match.group(1))


def _convertBool(parameter: "Parameter[bool]", text: str) -> bool:
    folded = text.strip().lower()
    if folded == "yes":
        return True
    if folded == "no":
        return False
    raise InvalidValue(f"{text.strip()!r} is not yes or no")


def _convertString(parameter: "Parameter[str]", text: str) -> str:
    value = text.strip()
    if parameter.choices is not None and value.lower() not in parameter.choices:
        raise InvalidValue(
            f"{value!r} is not one of {', '.join(choice or '(empty)' for choice in parameter.choices)}"
        )
    return value.lower() if parameter.choices is not None else value


def splitList(text: str) -> tuple[str, ...]:
    """
    Split a list value as Postfix does: items are separated by whitespace
    or commas, except inside C{{...}}, which keeps an inline table such as
    C{regexp:{{/^[^A-Z]/ Bogus}}} in one piece.
    """
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if depth == 0 and (char.isspace() or char == ","):
            if current:
                items.append("".join(current))
                current = []
            continue
        if char == "{":
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
        current.append(char)
    if current:
        items.append("".join(current))
    return tuple(items)


def _convertList(parameter: "Parameter[tuple[str, ...]]", text: str) -> tuple[str, ...]:
    return splitList(text)


_CONVERTERS: dict[Kind, Callable[..., object]] = {
    Kind.TIME: _convertTime,
    Kind.INT: _convertInt,
    Kind.BOOL: _convertBool,
    Kind.STRING: _convertString,
    Kind.LIST: _convertList,
    Kind.MAP: _convertList,
}

#: A default is either Postfix's literal default expression or, for the few
#: host-dependent parameters (C{myhostname}, C{mynetworks}, ...), a function
#: that computes it when first asked.
Default = Union[str, Callable[[], str]]


@attr.s(frozen=True, slots=True, auto_attribs=True, eq=False, repr=False)
class Parameter(Generic[T_co]):
    """
    One main.cf parameter.

    @ivar name: the parameter name, exactly as in main.cf.
    @ivar default: the default expression, exactly as C{postconf -d} prints
        it, or a function computing a host-dependent default.
    @ivar kind: the value type.
    @ivar doc: a one-line description.
    @ivar minimum: the smallest allowed value (numbers and times).
    @ivar maximum: the largest allowed value (numbers and times).
    @ivar unit: the default time unit of a C{TIME} parameter.
    @ivar choices: the allowed values of an enumerated C{STRING} parameter,
        lower case.
    @ivar postfix: whether Postfix has this parameter (else the name starts
        with C{mtaguard_}).
    @ivar used: whether mtaguard acts on the value; Postfix parameters that
        mtaguard accepts for compatibility only have C{used=False}.
    @ivar note: how mtaguard deliberately differs from Postfix, if it does.
    """

    name: str
    default: Default
    kind: Kind
    doc: str
    minimum: int | None = None
    maximum: int | None = None
    unit: str = "s"
    choices: tuple[str, ...] | None = None
    postfix: bool = True
    used: bool = True
    note: str = ""

    def __repr__(self) -> str:
        return f"<Parameter {self.name}>"

    def defaultText(self) -> str:
        """
        The default expression as C{postconf -d} prints it.
        """
        if callable(self.default):
            return self.default()
        return self.default

    def convert(self, text: str) -> T_co:
        """
        Convert an expanded value to this parameter's type and check its
        bounds.

        @raise InvalidValue: if the text is not a valid value.
        """
        value = _CONVERTERS[self.kind](self, text)
        if self.kind in (Kind.TIME, Kind.INT):
            number = cast(int, value)
            if self.minimum is not None and number < self.minimum:
                raise InvalidValue(
                    f"{text.strip()!r} is below the minimum {self.minimum}"
                )
            if self.maximum is not None and number > self.maximum:
                raise InvalidValue(
                    f"{text.strip()!r} is above the maximum {self.maximum}"
                )
        return cast(T_co, value)


class DuplicateParameter(Exception):
    """
    Two declarations used the same parameter name.
    """


class Registry:
    """
    All declared parameters, by name.
    """

    def __init__(self) -> None:
        self._parameters: dict[str, Parameter[object]] = {}
        #: Names whose values Postfix uses without C{$} expansion.
        self.rawNames: set[str] = set()
        #: Defaults that depend on other parameters' values at run time
        #: (C{mynetworks} on C{mynetworks_style}); the function receives a
        #: lookup of expanded values.  C{postconf -d} still prints
        #: L{Parameter.defaultText}.
        self.dynamicDefaults: dict[str, Callable[[Callable[[str], str]], str]] = {}
        #: The names each dynamic default reads.
        self.dynamicDependencies: dict[str, tuple[str, ...]] = {}

    def add(self, parameter: Parameter[T]) -> Parameter[T]:
        """
        Declare a parameter.

        @raise DuplicateParameter: if the name is already declared.
        """
        if parameter.name in self._parameters:
            raise DuplicateParameter(parameter.name)
        self._parameters[parameter.name] = cast(Parameter[object], parameter)
        return parameter

    def declare(self, parameter: Parameter[T]) -> Parameter[T]:
        """
        Declare a plugin's parameter, once: a module imported again (plugin
        discovery may import it more than once) gets the parameter declared
        the first time.

        @raise DuplicateParameter: if the name is taken by a different
            declaration (another kind or default).
        @raise ValueError: if a non-Postfix name does not start with
            C{mtaguard_}.
        """
        if not parameter.postfix and not parameter.name.startswith("mtaguard_"):
            raise ValueError(f"parameter {parameter.name}: names Postfix lacks start with mtaguard_")
        existing = self._parameters.get(parameter.name)
        if existing is None:
            return self.add(parameter)
        if (existing.kind, existing.default, existing.postfix) != (parameter.kind, parameter.default, parameter.postfix):
            raise DuplicateParameter(parameter.name)
        return cast(Parameter[T], existing)

    def get(self, name: str) -> Parameter[object] | None:
        """
        The parameter called C{name}, or L{None}.
        """
        return self._parameters.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._parameters

    def __iter__(self) -> Iterator[Parameter[object]]:
        return iter(self._parameters.values())

    def __len__(self) -> int:
        return len(self._parameters)

    def names(self) -> Iterable[str]:
        """
        Every declared name, in declaration order.
        """
        return self._parameters.keys()


class ParameterOptions(TypedDict, total=False):
    """
    The optional attributes of a L{Parameter}, as the declaration helpers
    below take them.
    """

    minimum: int | None
    maximum: int | None
    unit: str
    choices: tuple[str, ...] | None
    postfix: bool
    used: bool
    note: str


#: The one registry.  Declarations live in L{mtaguard.config.params} and
#: L{mtaguard.config._compat}.
registry = Registry()


def timeParameter(name: str, default: Default, doc: str, **kw: Unpack[ParameterOptions]) -> Parameter[int]:
    """
    Declare a time parameter (value in seconds).
    """
    return registry.add(Parameter(name, default, Kind.TIME, doc, **kw))


def intParameter(name: str, default: Default, doc: str, **kw: Unpack[ParameterOptions]) -> Parameter[int]:
    """
    Declare an integer parameter.
    """
    return registry.add(Parameter(name, default, Kind.INT, doc, **kw))


def boolParameter(name: str, default: Default, doc: str, **kw: Unpack[ParameterOptions]) -> Parameter[bool]:
    """
    Declare a yes/no parameter.
    """
    return registry.add(Parameter(name, default, Kind.BOOL, doc, **kw))


def stringParameter(name: str, default: Default, doc: str, **kw: Unpack[ParameterOptions]) -> Parameter[str]:
    """
    Declare a string parameter (optionally an enumeration, with C{choices}).
    """
    return registry.add(Parameter(name, default, Kind.STRING, doc, **kw))


def listParameter(
    name: str, default: Default, doc: str, **kw: Unpack[ParameterOptions]
) -> Parameter[tuple[str, ...]]:
    """
    Declare a list parameter (items separated by whitespace or commas).
    """
    return registry.add(Parameter(name, default, Kind.LIST, doc, **kw))


def mapParameter(
    name: str, default: Default, doc: str, **kw: Unpack[ParameterOptions]
) -> Parameter[tuple[str, ...]]:
    """
    Declare a parameter whose value is a list of lookup tables
    (C{type:name}).
    """
    return registry.add(Parameter(name, default, Kind.MAP, doc, **kw))
