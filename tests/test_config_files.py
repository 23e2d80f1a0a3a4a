"""
Tests for L{mtaguard.config._files}: atomic, serialized rewrites.
"""

from __future__ import annotations

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config._files import editLock, writeAtomically


class WriteAtomicallyTests(SynchronousTestCase):
    """
    L{writeAtomically} replaces a file whole and keeps its mode.
    """

    def test_replaceKeepsMode(self) -> None:
        """
        The new text replaces the old, the mode survives, and no temporary
        file is left behind.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "main.cf")
        with open(path, "w") as handle:
            handle.write("old\n")
        os.chmod(path, 0o640)
        with editLock(directory):
            writeAtomically(path, "new\n")
        with open(path) as handle:
            self.assertEqual(handle.read(), "new\n")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
        self.assertEqual(
            sorted(os.listdir(directory)), [".mtaguard-postconf.lock", "main.cf"]
        )

    def test_bytesRoundTrip(self) -> None:
        """
        Bytes that are not UTF-8, read with C{surrogateescape}, are written
        back unchanged: an edit never alters lines it does not touch.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "main.cf")
        writeAtomically(path, b"# caf\xe9\n".decode("utf-8", "surrogateescape"))
        with open(path, "rb") as handle:
            self.assertEqual(handle.read(), b"# caf\xe9\n")

    def test_failureLeavesOldFile(self) -> None:
        """
        When the write fails, the old file is untouched and the temporary
        file is removed.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "main.cf")
        with open(path, "w") as handle:
            handle.write("old\n")
        self.assertRaises(TypeError, writeAtomically, path, 42)  # type: ignore[arg-type]
        with open(path) as handle:
            self.assertEqual(handle.read(), "old\n")
        self.assertEqual(os.listdir(directory), ["main.cf"])
