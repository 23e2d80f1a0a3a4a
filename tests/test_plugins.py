"""
Tests for L{mtaguard.plugins}: the plugin package third parties extend.
"""

from __future__ import annotations

import os
import sys

from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import SynchronousTestCase

import mtaguard.plugins


class PluginPackageTests(SynchronousTestCase):
    """
    C{mtaguard.plugins} finds plugin modules on every C{sys.path} entry.
    """

    def test_thirdPartyDirectoryDiscovered(self) -> None:
        """
        A module in another sys.path entry's C{mtaguard/plugins/} directory
        (no C{__init__.py}) is found by C{getPlugins}, as a third-party
        package's would be.
        """
        root = os.path.abspath(self.mktemp())
        directory = os.path.join(root, "mtaguard", "plugins")
        os.makedirs(directory)
        with open(os.path.join(directory, "thirdparty_example.py"), "w") as handle:
            handle.write(
                "from zope.interface import provider\n"
                "from twisted.plugin import IPlugin\n"
                "@provider(IPlugin)\n"
                "class Example:\n"
                "    name = 'thirdparty-example'\n"
            )
        sys.path.insert(0, root)
        self.addCleanup(sys.path.remove, root)
        from twisted.plugin import pluginPackagePaths

        original = list(mtaguard.plugins.__path__)
        self.addCleanup(setattr, mtaguard.plugins, "__path__", original)
        mtaguard.plugins.__path__.extend(
            p for p in pluginPackagePaths("mtaguard.plugins") if p not in original
        )
        names = [getattr(p, "name", None) for p in getPlugins(IPlugin, mtaguard.plugins)]
        self.assertIn("thirdparty-example", names)
        self.addCleanup(sys.modules.pop, "mtaguard.plugins.thirdparty_example", None)
