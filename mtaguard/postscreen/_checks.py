# -*- test-case-name: tests.test_postscreen_checks -*-
"""
postscreen's tests as plugins: the values checks exchange with postscreen,
plugin discovery, and the configured built-in tests.

Every test, Postfix's own and third parties', is an
L{IPostscreenCheck} provider found with
C{getPlugins(IPostscreenCheck, mtaguard.plugins)}.  Postfix's tests keep
Postfix's exact semantics (processing order, actions, cache format), so
postscreen's core knows them by name and takes from their plugins only
whether they are enabled and what they need to run (L{BuiltinCheck});
removing a built-in plugin module disables that test.  Any other check is
run generically through L{IConfiguredCheck}.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence

import attr
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.plugin import IPlugin, getPlugins
from twisted.python.failure import Failure
from zope.interface import implementer

from ..config import ConfigurationError, Parameter, ParameterView
from ..interfaces import IConfiguredCheck, IPostscreenCheck
from ._early import TESTS

#: L{IPostscreenCheck.phase} values.
BEFORE_GREETING = "before-greeting"
AFTER_GREETING = "after-greeting"

#: The names of Postfix's tests, which postscreen's core runs itself.
BUILTIN_NAMES = frozenset({"access", *TESTS})

#: The actions a test may be configured with.
ACTIONS = ("ignore", "enforce", "drop")

#: The reply text (after the code) of a third-party check that gives none.
DEFAULT_FAIL_TEXT = "5.7.1 Service unavailable"


@attr.frozen
class ClientInfo:
    """
    The connection a check judges.

    @ivar address: the client's IP address (the real client's, behind a
        PROXY-protocol load balancer).
    @ivar port: the client's port.
    @ivar serverAddress: the address the client connected to.
    @ivar serverPort: the port the client connected to.
    """

    address: str
    port: int
    serverAddress: str
    serverPort: int


@attr.frozen
class CheckPass:
    """
    The client passed.

    @ivar ttl: how long to cache the pass, in seconds; L{None} means the
        check's configured C{ttl}.
    """

    ttl: Optional[float] = None


@attr.frozen
class CheckFail:
    """
    The client failed.

    @ivar reason: logged as C{<NAME> from [addr]:port: <reason>}; escaped
        and truncated by postscreen.
    @ivar reply: the reply text after the code (postscreen chooses 521 for
        C{drop}, 550 for C{enforce}, 4xx with C{soft_bounce}); it should
        start with an enhanced status code.
    """

    reason: str
    reply: str = DEFAULT_FAIL_TEXT


@attr.frozen
class DNSBLSetup:
    """
    The built-in C{dnsbl} test's parsed sites and lookup.
    """

    sites: tuple[Any, ...]
    lookup: Any


@attr.frozen
class CheckResources:
    """
    What checks may use to run: given to L{IPostscreenCheck.configure}.

    @ivar reactor: the reactor (time, DNS, network).
    @ivar resolver: a DNS resolver (C{twisted.names} style), or L{None}
        when the service has none.
    @ivar readFile: reads a table file's text (injected, so tests need no
        disk).
    @ivar isMyNetwork: whether an address is in C{mynetworks}.
    """

    reactor: Any
    resolver: Any = None
    readFile: Callable[[str], str] = attr.field(default=None)
    isMyNetwork: Callable[[str], bool] = attr.field(default=lambda address: False)


@implementer(IConfiguredCheck)
@attr.frozen
class BuiltinCheck:
    """
    One of Postfix's tests, configured and enabled.  postscreen's core runs
    it; C{detail} is what the core needs (the access list, the DNSBL sites
    and lookup), else L{None}.
    """

    name: str
    action: str
    ttl: float
    detail: Any = None

    def check(self, client: ClientInfo) -> Any:
        raise NotImplementedError(f"postscreen runs the built-in {self.name} test itself")

    def command(self, client: ClientInfo, verb: bytes, line: bytes) -> Any:
        raise NotImplementedError(f"postscreen runs the built-in {self.name} test itself")


@implementer(IPlugin, IPostscreenCheck)
@attr.frozen
class ToggledTest:
    """
    A built-in test switched on by a yes/no parameter, with an action and
    a TTL parameter (the deep protocol tests).
    """

    name: str
    phase: str
    enable: Parameter[bool]
    action: Parameter[str]
    ttl: Parameter[int]

    def configure(self, view: ParameterView, resources: CheckResources) -> Optional[BuiltinCheck]:
        if not view[self.enable]:
            return None
        return BuiltinCheck(self.name, view[self.action], float(view[self.ttl]))


def discoverChecks(packages: Optional[Sequence[Any]] = None) -> list[IPostscreenCheck]:
    """
    Every L{IPostscreenCheck} plugin, in a stable order (built-ins first,
    then by name).

    @param packages: the plugin packages to scan; by default
        C{mtaguard.plugins} (the built-ins, and third-party packages'
        C{mtaguard/plugins/} directories) and C{twisted.plugins} (where a
        third party may also drop a module, as for any Twisted plugin).
    @raise ConfigurationError: when two plugins use one name or a plugin
        names an unknown phase.
    """
    if packages is None:
        import twisted.plugins

        import mtaguard.plugins

        packages = (mtaguard.plugins, twisted.plugins)
    found: dict[str, IPostscreenCheck] = {}
    for package in packages:
        for check in getPlugins(IPostscreenCheck, package):
            if not IPlugin.providedBy(check):
                continue
            name = str(check.name)
            if name in found and found[name] is not check:
                raise ConfigurationError(f"postscreen: two check plugins are named {name!r}")
            if check.phase not in (BEFORE_GREETING, AFTER_GREETING):
                raise ConfigurationError(
                    f"postscreen: check plugin {name!r} has unknown phase {check.phase!r}"
                )
            found[name] = check
    return sorted(found.values(), key=lambda c: (str(c.name) not in BUILTIN_NAMES, str(c.name)))


def declarePluginParameters(names: Iterable[str]) -> None:
    """
    Make sure the parameters of installed check plugins are declared when
    C{names} mention an undeclared C{mtaguard_} name: plugins declare
    theirs when their module is imported, which discovery does.  A broken
    plugin is left for the service to report.
    """
    from ..config import registry

    if not any(name.startswith("mtaguard_") and name not in registry for name in names):
        return
    try:
        discoverChecks()
    except ConfigurationError:
        pass


@attr.frozen
class ConfiguredChecks:
    """
    The enabled tests of one postscreen service.

    @ivar builtins: Postfix's enabled tests, by name.
    @ivar before: third-party before-greeting checks, by name.
    @ivar after: third-party after-greeting checks, by name.
    """

    builtins: dict[str, BuiltinCheck]
    before: dict[str, IConfiguredCheck]
    after: dict[str, IConfiguredCheck]

    @property
    def extraNames(self) -> tuple[str, ...]:
        """
        The third-party tests' names, as they appear in the cache.
        """
        return tuple(sorted([*self.before, *self.after]))

    def ttl(self, name: str) -> float:
        """
        The configured pass TTL of the third-party test C{name}.
        """
        check = self.before.get(name) or self.after[name]
        return float(check.ttl)


def configureChecks(
    checks: Iterable[IPostscreenCheck], view: ParameterView, resources: CheckResources
) -> ConfiguredChecks:
    """
    Configure every check for one service.

    @raise ConfigurationError: for a bad setting of any check.
    """
    builtins: dict[str, BuiltinCheck] = {}
    before: dict[str, IConfiguredCheck] = {}
    after: dict[str, IConfiguredCheck] = {}
    for check in checks:
        name = str(check.name)
        configured = check.configure(view, resources)
        if configured is None:
            continue
        if name in BUILTIN_NAMES:
            if not isinstance(configured, BuiltinCheck):
                raise ConfigurationError(
                    f"postscreen: plugin {name!r} takes the name of a built-in test"
                )
            builtins[name] = configured
            continue
        if not IConfiguredCheck.providedBy(configured):
            raise ConfigurationError(f"postscreen: check {name!r}: configure() returned {configured!r}")
        if configured.action not in ACTIONS:
            raise ConfigurationError(
                f"postscreen: check {name!r}: bad action {configured.action!r}"
                f" (use {', '.join(ACTIONS)})"
            )
        (before if check.phase == BEFORE_GREETING else after)[name] = configured
    return ConfiguredChecks(builtins, before, after)


def runCheck(check: IConfiguredCheck, client: ClientInfo) -> Deferred[Any]:
    """
    Run a before-greeting check; the result fires with its outcome, or with
    L{None} when it raised or failed (logged by the caller's errback-free
    path: a failing check never decides about a client).
    """

    def checked(result: object) -> object:
        if isinstance(result, (CheckPass, CheckFail)):
            return result
        raise TypeError(f"check returned {result!r}, not CheckPass or CheckFail")

    return maybeDeferred(check.check, client).addCallback(checked)


def describeFailure(failure: Failure) -> str:
    """
    One line for the log about a check that broke.
    """
    kind = failure.type.__name__ if failure.type is not None else "Error"
    return f"{kind}: {failure.getErrorMessage()}"


__all__: Sequence[str] = [
    "AFTER_GREETING",
    "BEFORE_GREETING",
    "BUILTIN_NAMES",
    "BuiltinCheck",
    "CheckFail",
    "CheckPass",
    "CheckResources",
    "DNSBLSetup",
    "ClientInfo",
    "ConfiguredChecks",
    "ToggledTest",
    "configureChecks",
    "declarePluginParameters",
    "discoverChecks",
    "runCheck",
]
