"""
Tests for postscreen's checks as plugins (L{mtaguard.postscreen._checks}
and the built-in plugin modules in L{mtaguard.plugins}): interfaces,
discovery, configuration, and a third-party check dropped into a
C{twisted/plugins/} directory, run by a real postscreen service.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from typing import Any

import twisted.plugins
from twisted.internet import reactor as globalReactor
from twisted.internet.defer import inlineCallbacks
from twisted.plugin import IPlugin, pluginPackagePaths
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

import mtaguard.plugins
from mtaguard.config import ConfigurationError, ParameterView, registry
from mtaguard.interfaces import IConfiguredCheck, IPostscreenCheck
from mtaguard.postscreen._checks import (
    AFTER_GREETING,
    BEFORE_GREETING,
    BuiltinCheck,
    CheckResources,
    configureChecks,
    discoverChecks,
)

from .test_postscreen_service import ServiceHarness

EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "docs",
    "example",
    "plugins",
    "mtaguard_example_check.py",
)

PHASES = {
    "access": BEFORE_GREETING,
    "pregreet": BEFORE_GREETING,
    "dnsbl": BEFORE_GREETING,
    "pipelining": AFTER_GREETING,
    "non_smtp_command": AFTER_GREETING,
    "bare_newline": AFTER_GREETING,
}


def resources() -> CheckResources:
    return CheckResources(reactor=None, resolver=object(), readFile=lambda path: "")


class BuiltinPluginTests(SynchronousTestCase):
    """
    Postfix's tests are plugins in C{mtaguard.plugins}, one module each.
    """

    def test_discovered(self) -> None:
        """
        Every built-in test is found by C{getPlugins} and provides
        L{IPostscreenCheck} and L{IPlugin}.
        """
        checks = {c.name: c for c in discoverChecks([mtaguard.plugins])}
        self.assertEqual(set(checks), set(PHASES))
        for name, check in checks.items():
            self.assertTrue(verifyObject(IPostscreenCheck, check))
            self.assertTrue(IPlugin.providedBy(check))
            self.assertEqual(check.phase, PHASES[name])
            module = importlib.import_module(f"mtaguard.plugins.postscreen_{name}")
            self.assertIs(module.check, check)

    def test_defaults(self) -> None:
        """
        With Postfix's defaults only the access list and the pregreet test
        are on.
        """
        view = ParameterView({"compatibility_level": "3.6", "myhostname": "mx.example.org"})
        configured = configureChecks(discoverChecks([mtaguard.plugins]), view, resources())
        self.assertEqual(sorted(configured.builtins), ["access", "pregreet"])
        self.assertEqual((configured.before, configured.after), ({}, {}))
        for check in configured.builtins.values():
            self.assertTrue(verifyObject(IConfiguredCheck, check))
        pregreet = configured.builtins["pregreet"]
        self.assertEqual((pregreet.action, pregreet.ttl), ("ignore", 86400.0))

    def test_everythingOn(self) -> None:
        """
        Each test's C{_enable}/sites parameter switches it on, with its
        action and TTL.
        """
        view = ParameterView(
            {
                "compatibility_level": "3.6",
                "postscreen_dnsbl_sites": "zen.example*2",
                "postscreen_dnsbl_action": "enforce",
                "postscreen_pipelining_enable": "yes",
                "postscreen_non_smtp_command_enable": "yes",
                "postscreen_bare_newline_enable": "yes",
                "postscreen_bare_newline_action": "drop",
                "postscreen_bare_newline_ttl": "2d",
            }
        )
        configured = configureChecks(discoverChecks([mtaguard.plugins]), view, resources())
        self.assertEqual(set(configured.builtins), set(PHASES))
        self.assertEqual(configured.builtins["dnsbl"].action, "enforce")
        self.assertEqual(configured.builtins["dnsbl"].detail.sites[0].weight, 2)
        bare = configured.builtins["bare_newline"]
        self.assertEqual((bare.action, bare.ttl), ("drop", 2 * 86400.0))

    def test_badSettings(self) -> None:
        """
        A malformed DNSBL site or access list is a configuration error.
        """
        for settings in [
            {"postscreen_dnsbl_sites": "bad..name"},
            {"postscreen_access_list": "hash:/etc/nope"},
        ]:
            view = ParameterView({"compatibility_level": "3.6", **settings})
            self.assertRaises(
                ConfigurationError, configureChecks, discoverChecks([mtaguard.plugins]), view, resources()
            )

    def test_builtinRunByCore(self) -> None:
        """
        A built-in check is run by postscreen's core, not through
        L{IConfiguredCheck.check}.
        """
        check = BuiltinCheck("pregreet", "ignore", 1.0)
        self.assertRaises(NotImplementedError, check.check, None)
        self.assertRaises(NotImplementedError, check.command, None, b"", b"")

    def test_impostorRefused(self) -> None:
        """
        A plugin that takes a built-in test's name without being one is
        refused.
        """

        class Impostor:
            name = "dnsbl"
            phase = BEFORE_GREETING

            def configure(self, view: Any, resources: Any) -> Any:
                return object()

        view = ParameterView({"compatibility_level": "3.6"})
        self.assertRaises(ConfigurationError, configureChecks, [Impostor()], view, resources())


class ThirdPartyPluginTests(ServiceHarness, TestCase):
    """
    A third-party check copied into a C{twisted/plugins/} directory on
    C{sys.path} is discovered, configured from main.cf and run by a real
    postscreen service.
    """

    timeout = 30

    def setUp(self) -> None:
        root = os.path.abspath(self.mktemp())
        directory = os.path.join(root, "twisted", "plugins")
        os.makedirs(directory)
        shutil.copy(EXAMPLE, directory)
        sys.path.insert(0, root)
        self.addCleanup(sys.path.remove, root)
        original = list(twisted.plugins.__path__)
        self.addCleanup(setattr, twisted.plugins, "__path__", original)
        twisted.plugins.__path__.extend(p for p in pluginPackagePaths("twisted.plugins") if p not in original)

        def forget() -> None:
            sys.modules.pop("twisted.plugins.mtaguard_example_check", None)
            # The example's parameters must not leak into later tests that
            # list the registry (postconf -d, docs/parameters.md).
            for name in ("mtaguard_example_check_file", "mtaguard_example_check_action", "mtaguard_example_check_ttl"):
                registry._parameters.pop(name, None)

        self.addCleanup(forget)
        self.badClients = os.path.join(root, "bad-clients")
        with open(self.badClients, "w") as handle:
            handle.write("127.0.0.2\n")
        self.startLogging()

    def test_discovered(self) -> None:
        """
        The example is found beside the built-ins.
        """
        names = [c.name for c in discoverChecks()]
        self.assertIn("example", names)
        self.assertEqual(names[-1], "example")

    @inlineCallbacks
    def test_runWithOwnParameters(self) -> Any:
        """
        The check reads its own main.cf parameters: a listed client is
        dropped with the check's reply and log line; another passes, and its
        pass is cached under the check's name.
        """
        port = self.startInstance(
            {
                "mtaguard_example_check_file": self.badClients,
                "mtaguard_example_check_action": "drop",
                "postscreen_greet_banner": "",
            }
        )
        listed = yield self.connect(port, "127.0.0.2")
        yield listed.closed
        self.assertEqual(listed.received, b"521 5.7.1 Service unavailable; listed locally\r\n")
        self.assertTrue(
            any(
                line.startswith("EXAMPLE from [127.0.0.2]:") and ": listed in /" in line
                for line in self.logged
            ),
            self.logged,
        )
        clean = yield self.connect(port, "127.0.0.3")
        yield clean.waitFor(b"220 ")
        self.assertTrue(any(line.startswith("PASS NEW [127.0.0.3]:") for line in self.logged))
        verdicts = yield self.cached(port, "127.0.0.3")
        self.assertGreater(verdicts.extraTime("example"), 0)

    def configDirectory(self) -> str:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "main.cf"), "w") as handle:
            handle.write(f"mtaguard_example_check_file = {self.badClients}\nmtaguard_no_such_thing = 1\n")
        with open(os.path.join(directory, "master.cf"), "w") as handle:
            handle.write("127.0.0.1:2599 inet n - n - - smtpd\n")
        return directory

    def test_parametersKnownToTwistd(self) -> None:
        """
        Starting the service, a plugin's parameter set in main.cf is not an
        "unused parameter"; a misspelt one still is.
        """
        import io

        from mtaguard import _tap

        options = _tap.Options()
        options.parseOptions(["-c", self.configDirectory()])
        stderr = io.StringIO()
        _tap.loadFromOptions(options, stderr)
        self.assertNotIn("mtaguard_example_check_file", stderr.getvalue())
        self.assertIn("unused parameter: mtaguard_no_such_thing=1", stderr.getvalue())

    def test_parametersKnownToPostconf(self) -> None:
        """
        mtaguard-postconf knows an installed plugin's parameters: no
        "unused parameter" warning, and C{-d} prints its default.
        """
        import io

        from mtaguard.postconf._cli import run

        directory = self.configDirectory()
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(run(["-c", directory, "-n"], out, err, {}), 0)
        self.assertIn(f"mtaguard_example_check_file = {self.badClients}", out.getvalue())
        self.assertNotIn("mtaguard_example_check_file", err.getvalue())
        self.assertIn("unused parameter: mtaguard_no_such_thing=1", err.getvalue())
        out = io.StringIO()
        self.assertEqual(run(["-c", directory, "-d", "mtaguard_example_check_action"], out, io.StringIO(), {}), 0)
        self.assertEqual(out.getvalue(), "mtaguard_example_check_action = enforce\n")
