"""
Tests for mtaguard's static typing: mypy, configured by setup.cfg's
C{[mypy]} section (strict, with the mypy-zope plugin), finds no errors.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: What is checked: the package and the twistd plugin (the tests are not
#: type-checked; setup.cfg says why).
TARGETS = ("mtaguard", "twisted/plugins")


class MypyTests(SynchronousTestCase):
    """
    mypy run over mtaguard as a separate process.
    """

    def test_noErrors(self) -> None:
        """
        C{python -m mypy mtaguard twisted/plugins}, run from the project
        root with this interpreter, reports no errors.  Without mypy (or
        the mypy-zope plugin that setup.cfg names) the test is skipped,
        except under CI, where it fails.
        """
        missing = [
            name for name in ("mypy", "mypy_zope") if importlib.util.find_spec(name) is None
        ]
        if missing:
            problem = f"{' and '.join(missing)} not installed (pip install -e .[test])"
            if os.environ.get("CI") == "true":
                self.fail(f"{problem}, but CI requires the type check")
            raise SkipTest(problem)
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", "setup.cfg", *TARGETS],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            self.fail(f"mypy exited with status {result.returncode}:\n{result.stdout}")
