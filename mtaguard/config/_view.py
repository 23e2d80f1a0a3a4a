# -*- test-case-name: tests.test_config_view -*-
"""
Typed, stress-aware parameter lookups.

A L{ParameterView} is what every component receives at construction: the
values of main.cf, overlaid with one service's C{-o} overrides from
master.cf, over the registry defaults.  Lookups expand C{$name} and convert
to the parameter's type once, then answer from a cache.  The cache is kept
separately for normal and stress mode, so a service switches between the
two by setting L{ParameterView.stress}, without reloading anything.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Mapping, TypeVar

from ._expand import ExpansionError, Expander
from ._registry import InvalidValue, Parameter, Registry, registry as _registry

T = TypeVar("T")

#: Where a value came from: (file, 1-based line); line 0 means "no line".
Origin = tuple[str, int]


class ParameterError(ValueError):
    """
    A parameter's value cannot be used.

    @ivar parameter: the parameter name.
    @ivar origin: the file and line that set the value, or L{None} when the
        value is the built-in default.
    @ivar reason: what is wrong with it.
    """

    def __init__(self, parameter: str, origin: Origin | None, reason: str) -> None:
        self.parameter = parameter
        self.origin = origin
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.origin is not None:
            path, line = self.origin
            where = f"{path}, line {line}: " if line else f"{path}: "
        return f"{where}invalid {self.parameter} parameter value: {self.reason}"


class ParameterView:
    """
    The parameter values one service sees.

    A service's view may be layered on the main.cf view (its C{parent}):
    names that the service's overrides cannot affect are answered from the
    parent's cache, so a hundred services do not expand and check the same
    values a hundred times.

    @ivar stress: whether C{$stress} expands to C{yes}.  Changing it takes
        effect at the next lookup.
    """

    def __init__(
        self,
        values: Mapping[str, str],
        *,
        origins: Mapping[str, Origin] | None = None,
        registry: Registry = _registry,
        parent: "ParameterView | None" = None,
        affected: AbstractSet[str] = frozenset(),
    ) -> None:
        """
        @param values: explicit settings (main.cf, then service overrides
            already applied on top).
        @param origins: the file and line of each explicit setting, for error
            messages.
        @param registry: where defaults come from.
        @param parent: a view whose values equal these for every name not in
            C{affected}.
        @param affected: the names whose values may differ from C{parent}'s.
        """
        self._values = dict(values)
        self._origins = dict(origins or {})
        self._registry = registry
        self._parent = parent
        self._affected = affected
        self.stress = False
        self._expanded: tuple[dict[str, str], dict[str, str]] = ({}, {})
        # Converted values for normal and stress mode.  Each cache maps a
        # Parameter[T] to a T, which a dict type cannot say: the values are
        # Any, and each read assigns its value to a variable of type T.
        self._typed: tuple[dict[Parameter[Any], Any], dict[Parameter[Any], Any]] = ({}, {})

    def _rawAt(self, name: str, stress: bool) -> str | None:
        if name == "stress":
            return "yes" if stress else ""
        value = self._values.get(name)
        if value is not None:
            return value
        dynamic = self._registry.dynamicDefaults.get(name)
        if dynamic is not None:
            return dynamic(lambda other: self._expandAt(other, stress))
        parameter = self._registry.get(name)
        if parameter is None:
            return None
        return parameter.defaultText()

    def raw(self, name: str) -> str | None:
        """
        The unexpanded value of C{name}: the explicit setting, else the
        registry default, else L{None}.
        """
        return self._rawAt(name, self.stress)

    def origin(self, name: str) -> Origin | None:
        """
        Where the explicit setting of C{name} came from, if it has one.
        """
        return self._origins.get(name)

    def isExplicit(self, name: str) -> bool:
        """
        Whether C{name} is set explicitly rather than by default.
        """
        return name in self._values

    def _expandAt(self, name: str, stress: bool) -> str:
        if self._parent is not None and name not in self._affected:
            return self._parent._expandAt(name, stress)
        cache = self._expanded[stress]
        value = cache.get(name)
        if value is not None:
            return value
        if name in self._registry.rawNames:
            return self._rawAt(name, stress) or ""
        try:
            return Expander(lambda other: self._rawAt(other, stress), cache).name(name)
        except ExpansionError as error:
            raise ParameterError(name, self.origin(name), str(error)) from None

    def expand(self, name: str) -> str:
        """
        The value of C{name} with every C{$} expression expanded.

        @raise ParameterError: if the value holds a malformed expression.
        """
        return self._expandAt(name, self.stress)

    def _typedAt(self, parameter: Parameter[T], stress: bool) -> T:
        if self._parent is not None and parameter.name not in self._affected:
            return self._parent._typedAt(parameter, stress)
        cache = self._typed[stress]
        try:
            cached: T = cache[parameter]
            return cached
        except KeyError:
            pass
        text = self._expandAt(parameter.name, stress)
        try:
            value = parameter.convert(text)
        except InvalidValue as error:
            raise ParameterError(parameter.name, self.origin(parameter.name), str(error)) from None
        cache[parameter] = value
        return value

    def __getitem__(self, parameter: Parameter[T]) -> T:
        """
        The typed value of C{parameter}.

        @raise ParameterError: if the value does not convert.
        """
        cache = self._typed[self.stress]
        try:
            # The hot path: services look parameters up per command.
            cached: T = cache[parameter]
            return cached
        except KeyError:
            value = self._typedAt(parameter, self.stress)
            # A value answered by the parent is the same for this view (the
            # name is unaffected by our overrides): keep it here too.
            cache[parameter] = value
            return value

    def check(self) -> None:
        """
        Look up every parameter mtaguard uses, in normal and in stress mode,
        so that a bad value is reported now rather than when a client
        connects.  A layered view checks only what its overrides affect.

        @raise ParameterError: for the first value that does not convert.
        """
        for stress in (False, True):
            for parameter in self._registry:
                if parameter.used and (
                    self._parent is None or parameter.name in self._affected
                ):
                    self._typedAt(parameter, stress)
