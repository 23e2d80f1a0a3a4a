# -*- test-case-name: tests.test_config_configuration -*-
"""
A configuration directory (main.cf + master.cf), loaded and checked.
"""

from __future__ import annotations

import functools
import os
from typing import Iterable

import attr

from ._expand import ExpansionError, compileTemplate, references
from ._known import unusedParameters
from ._registry import registry
from ._maincf import MainCfSyntaxError, ParsedMainCf, parseMainCf
from ._mastercf import MasterCfSyntaxError, ParsedMasterCf, ServiceEntry, parseMasterCf
from ._view import Origin, ParameterError, ParameterView


class ConfigurationError(Exception):
    """
    The configuration cannot be used.  C{str()} is one line naming the file,
    the line and, where there is one, the parameter.
    """


@attr.s(frozen=True, slots=False, auto_attribs=True)
class Configuration:
    """
    The parsed contents of one configuration directory.

    @ivar directory: the configuration directory.
    @ivar main: main.cf.
    @ivar master: master.cf.
    @ivar fixed: values that the loader sets and main.cf cannot change
        (C{config_directory}, and for the built-in configuration its data
        directories).
    @ivar warnings: what was wrong but not fatal, one line each.
    """

    directory: str
    main: ParsedMainCf
    master: ParsedMasterCf
    fixed: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def mainCfPath(self) -> str:
        """
        The path of main.cf.
        """
        return os.path.join(self.directory, "main.cf")

    @property
    def masterCfPath(self) -> str:
        """
        The path of master.cf.
        """
        return os.path.join(self.directory, "master.cf")

    def services(self) -> list[ServiceEntry]:
        """
        The master.cf services; where a name and type appear twice, the later
        entry wins, as with Postfix's master(8).
        """
        byKey: dict[tuple[str, str], ServiceEntry] = {}
        for entry in self.master.entries:
            byKey.pop(entry.key(), None)
            byKey[entry.key()] = entry
        return list(byKey.values())

    def _settings(self) -> tuple[dict[str, str], dict[str, Origin]]:
        values: dict[str, str] = {}
        origins: dict[str, Origin] = {}
        for setting in self.main.settings:
            values[setting.name] = setting.value
            origins[setting.name] = (self.mainCfPath, setting.line)
        return values, origins

    @functools.cached_property
    def _mainView(self) -> ParameterView:
        values, origins = self._settings()
        for name, value in self.fixed:
            values[name] = value
            origins.pop(name, None)
        return ParameterView(values, origins=origins)

    @functools.cached_property
    def _dependents(self) -> dict[str, set[str]]:
        """
        For each name, the names whose values refer to it, directly.
        """
        values, _ = self._settings()
        graph: dict[str, set[str]] = {}
        names = set(values) | set(registry.names())
        for name in names:
            raw = values.get(name)
            if raw is None:
                parameter = registry.get(name)
                raw = parameter.defaultText() if parameter is not None else ""
            try:
                referenced = references(compileTemplate(raw))
            except ExpansionError:
                # Reported when the value is looked up; here it only means
                # the name is affected by everything, to be safe.
                referenced = {"*"}
            referenced |= set(registry.dynamicDependencies.get(name, ()))
            for other in referenced:
                graph.setdefault(other, set()).add(name)
        return graph

    def _affectedBy(self, names: set[str]) -> set[str]:
        graph = self._dependents
        affected = set(names) | graph.get("*", set())
        pending = list(affected)
        while pending:
            for dependent in graph.get(pending.pop(), ()):
                if dependent not in affected:
                    affected.add(dependent)
                    pending.append(dependent)
        return affected

    def view(self, service: ServiceEntry | None = None) -> ParameterView:
        """
        The parameters as C{service} sees them: main.cf with the service's
        C{-o} overrides on top, or main.cf alone.  Views of services share
        the main.cf view's work for every value their overrides do not
        affect.
        """
        if service is None:
            return self._mainView
        values, origins = self._settings()
        values["service_name"] = service.name
        values["process_name"] = service.command
        for name, value in service.overrides:
            values[name] = value
            origins[name] = (self.masterCfPath, service.firstLine)
        for name, value in self.fixed:
            values[name] = value
            origins.pop(name, None)
        changed = {"service_name", "process_name"} | {name for name, _ in service.overrides}
        changed -= {name for name, _ in self.fixed}
        return ParameterView(
            values,
            origins=origins,
            parent=self._mainView,
            affected=self._affectedBy(changed),
        )

    def check(self) -> None:
        """
        Check every parameter mtaguard uses, globally and for each service.

        @raise ConfigurationError: naming the first bad value.
        """
        try:
            self.view().check()
            for service in self.services():
                self.view(service).check()
        except ParameterError as error:
            raise ConfigurationError(str(error)) from None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError as error:
        raise ConfigurationError(f"open {path}: {error.strerror}") from None


def parseConfiguration(
    directory: str,
    mainText: str,
    masterText: str,
    *,
    fixed: Iterable[tuple[str, str]] = (),
) -> Configuration:
    """
    Parse configuration text that claims to live in C{directory}.

    @raise ConfigurationError: on a syntax error in either file.
    """
    mainPath = os.path.join(directory, "main.cf")
    masterPath = os.path.join(directory, "master.cf")
    try:
        main = parseMainCf(mainText)
    except MainCfSyntaxError as error:
        raise ConfigurationError(f"{mainPath}, line {error.line}: {error}") from None
    try:
        master = parseMasterCf(masterText)
    except MasterCfSyntaxError as error:
        raise ConfigurationError(f"{masterPath}, line {error.line}: {error}") from None
    warnings = [f"{mainPath}, {w}" if w.startswith("line ") else f"{mainPath}: {w}" for w in main.warnings]
    warnings += [f"{masterPath}: {w}" for w in master.warnings]
    warnings += [
        f"{mainPath}: unused parameter: {setting.name}={setting.value}"
        for setting in unusedParameters(main.settings, master.entries)
    ]
    fixedValues = (("config_directory", directory),) + tuple(fixed)
    return Configuration(directory, main, master, fixedValues, tuple(warnings))


def loadConfiguration(directory: str) -> Configuration:
    """
    Read and check main.cf and master.cf in C{directory}.

    @raise ConfigurationError: if a file cannot be read, does not parse, or
        sets a value mtaguard cannot use.
    """
    directory = os.path.abspath(directory)
    configuration = parseConfiguration(
        directory,
        _read(os.path.join(directory, "main.cf")),
        _read(os.path.join(directory, "master.cf")),
    )
    configuration.check()
    return configuration
