"""
Tests for C{twistd mtaguard}: the plugin, its options, and how it refuses a
bad configuration.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

from twisted.application.service import IServiceMaker, MultiService
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mtaguard import _tap
from mtaguard.postscreen._service import PostscreenService

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MASTER_CF = """\
127.0.0.1:2525 inet n - n - 1 postscreen
smtpd     pass  -       -       n       -       -       smtpd
  -o smtpd_timeout=60s
smtp      unix  -       -       n       -       -       smtp
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
local     unix  -       n       n       -       -       local
"""


def configDirectory(testCase: SynchronousTestCase, main: str, master: str = MASTER_CF) -> str:
    directory = testCase.mktemp()
    os.makedirs(directory)
    with open(os.path.join(directory, "main.cf"), "w") as handle:
        handle.write(main)
    with open(os.path.join(directory, "master.cf"), "w") as handle:
        handle.write(master)
    return directory


class PluginTests(SynchronousTestCase):
    """
    twistd finds the mtaguard service maker through Twisted's plugin system.
    """

    def test_discovered(self) -> None:
        """
        An L{IServiceMaker} plugin with tapname C{mtaguard} is found, and it
        provides the interface.
        """
        makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "mtaguard"]
        self.assertTrue(makers)
        for maker in makers:
            self.assertTrue(verifyObject(IServiceMaker, maker))


class MakeServiceTests(SynchronousTestCase):
    """
    The service tree has one child per master.cf service mtaguard runs.
    """

    def test_childrenPerService(self) -> None:
        """
        postscreen, smtpd and smtp become children; Postfix's internal
        services and unsupported programs do not.
        """
        options = _tap.Options()
        options.parseOptions(["-c", configDirectory(self, "myhostname = mx.example.org\n")])
        service = _tap.makeService(options)
        self.assertIsInstance(service, MultiService)
        names = sorted(child.name for child in service)  # type: ignore[attr-defined]
        self.assertEqual(
            names,
            ["127.0.0.1:2525/inet", "control", "local", "qmgr", "queue", "resolver", "smtp/unix", "smtpd/pass"],
        )
        screen = service.getServiceNamed("127.0.0.1:2525/inet")  # type: ignore[attr-defined]
        self.assertIsInstance(screen, PostscreenService)
        self.assertEqual(screen.endpoints, ("tcp:2525:interface=127.0.0.1:backlog=1024",))

    def test_builtin(self) -> None:
        """
        Without C{-c} the built-in configuration runs an smtpd on loopback
        port 2525, and says where its data lives.
        """
        self.patch(os, "environ", dict(os.environ, XDG_DATA_HOME="/tmp/xdg-test"))
        stderr = io.StringIO()
        options = _tap.Options()
        options.parseOptions([])
        configuration = _tap.loadFromOptions(options, stderr)
        self.assertIn("/tmp/xdg-test/mtaguard", stderr.getvalue())
        self.assertEqual(
            configuration.view().expand("queue_directory"), "/tmp/xdg-test/mtaguard/queue"
        )
        self.assertEqual(configuration.view().expand("compatibility_level"), "3.6")


class BadConfigurationTests(SynchronousTestCase):
    """
    A bad configuration stops start-up with one line naming file, line and
    parameter, and exit status 1.
    """

    def assertRefused(self, directory: str, *fragments: str) -> str:
        stderr = io.StringIO()
        options = _tap.Options()
        options.parseOptions(["-c", directory])
        error = self.assertRaises(SystemExit, _tap.loadFromOptions, options, stderr)
        self.assertEqual(error.code, 1)
        lines = stderr.getvalue().splitlines()
        fatal = [line for line in lines if "fatal" in line]
        self.assertEqual(len(fatal), 1, lines)
        for fragment in fragments:
            self.assertIn(fragment, fatal[0])
        return fatal[0]

    def test_badTime(self) -> None:
        """
        C{smtpd_timeout = abc} names main.cf, its line and the parameter.
        """
        directory = configDirectory(self, "# x\nsmtpd_timeout = abc\n")
        self.assertRefused(directory, "main.cf, line 2:", "smtpd_timeout", "abc")

    def test_outOfBounds(self) -> None:
        """
        An integer below its bound is refused.
        """
        directory = configDirectory(self, "line_length_limit = 10\n")
        self.assertRefused(directory, "main.cf, line 1:", "line_length_limit")

    def test_badOverride(self) -> None:
        """
        A bad C{-o} value in master.cf names master.cf and the service's
        line.
        """
        master = MASTER_CF.replace("-o smtpd_timeout=60s", "-o smtpd_timeout=soon")
        directory = configDirectory(self, "", master)
        self.assertRefused(directory, "master.cf, line 2:", "smtpd_timeout", "soon")

    def test_malformedMasterCf(self) -> None:
        """
        A master.cf line with too few fields is refused with its line.
        """
        directory = configDirectory(self, "", MASTER_CF + "broken inet n -\n")
        self.assertRefused(directory, "master.cf, line 9")

    def test_missingDirectory(self) -> None:
        """
        A configuration directory without main.cf is refused.
        """
        self.assertRefused(os.path.join(self.mktemp(), "nothing"), "main.cf")

    def test_unknownParameterWarns(self) -> None:
        """
        An unknown main.cf name is a warning, not an error, as with Postfix.
        """
        directory = configDirectory(self, "my_own_thing = 1\n")
        stderr = io.StringIO()
        options = _tap.Options()
        options.parseOptions(["-c", directory])
        _tap.loadFromOptions(options, stderr)
        self.assertIn("unused parameter: my_own_thing=1", stderr.getvalue())

    def test_twistdProcess(self) -> None:
        """
        The real C{twistd mtaguard} process exits non-zero with one clear
        line and no traceback, before binding anything.
        """
        directory = configDirectory(self, "smtpd_timeout = abc\n")
        result = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "mtaguard", "-c", os.path.abspath(directory)],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertNotIn("Traceback", result.stderr + result.stdout)
        self.assertIn("main.cf, line 1: invalid smtpd_timeout parameter value", result.stderr)
