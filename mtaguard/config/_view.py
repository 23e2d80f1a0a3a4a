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

from typing import Mapping, TypeVar

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

    @ivar stress: whether C{$stress} expands to C{yes}.  Changing it takes
        effect at the next lookup.
    """

    def __init__(
        self,
        values: Mapping[str, str],
        *,
        origins: Mapping[str, Origin] | None = None,
        registry: Registry = _registry,
    ) -> None:
        """
        @param values: explicit settings (main.cf, then service overrides
            already applied on top).
        @param origins: the file and line of each explicit setting, for error
            messages.
        @param registry: where defaults come from.
        """
        self._values = dict(values)
        self._origins = dict(origins or {})
        self._registry = registry
        self.stress = False
        self._expanded: tuple[dict[str, str], dict[str, str]] = ({}, {})
        self._typed: tuple[dict[Parameter[object], object], dict[Parameter[object], object]] = (
            {},
            {},
        )

    def raw(self, name: str) -> str | None:
        """
        The unexpanded value of C{name}: the explicit setting, else the
        registry default, else L{None}.
        """
        if name == "stress":
            return "yes" if self.stress else ""
        value = self._values.get(name)
        if value is not None:
            return value
        dynamic = self._registry.dynamicDefaults.get(name)
        if dynamic is not None:
            return dynamic(self.expand)
        parameter = self._registry.get(name)
        if parameter is None:
            return None
        return parameter.defaultText()

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

    def expand(self, name: str) -> str:
        """
        The value of C{name} with every C{$} expression expanded.

        @raise ParameterError: if the value holds a malformed expression.
        """
        cache = self._expanded[self.stress]
        value = cache.get(name)
        if value is None and name in self._registry.rawNames:
            value = self.raw(name) or ""
        if value is None:
            try:
                value = Expander(self.raw, cache).name(name)
            except ExpansionError as error:
                raise ParameterError(name, self.origin(name), str(error)) from None
        return value

    def __getitem__(self, parameter: Parameter[T]) -> T:
        """
        The typed value of C{parameter}.

        @raise ParameterError: if the value does not convert.
        """
        cache = self._typed[self.stress]
        try:
            return cache[parameter]  # type: ignore[index,return-value]
        except KeyError:
            pass
        text = self.expand(parameter.name)
        try:
            value = parameter.convert(text)
        except InvalidValue as error:
            raise ParameterError(parameter.name, self.origin(parameter.name), str(error)) from None
        cache[parameter] = value  # type: ignore[index]
        return value

    def check(self) -> None:
        """
        Look up every parameter mtaguard uses, in normal and in stress mode,
        so that a bad value is reported now rather than when a client
        connects.

        @raise ParameterError: for the first value that does not convert.
        """
        saved = self.stress
        try:
            for stress in (False, True):
                self.stress = stress
                for parameter in self._registry:
                    if parameter.used:
                        self[parameter]
        finally:
            self.stress = saved
