# -*- test-case-name: tests.test_config_files -*-
"""
Safe rewriting of configuration files: one writer at a time, and a crash
at any moment leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator


@contextlib.contextmanager
def editLock(directory: str) -> Iterator[None]:
    """
    Serialize edits of the configuration files in C{directory}.

    The lock is an exclusive C{flock} on a hidden lock file beside the
    configuration, held for the duration of the C{with} block, so that two
    concurrent C{mtaguard-postconf} edits never lose each other's change.
    """
    path = os.path.join(directory, ".mtaguard-postconf.lock")
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def writeAtomically(path: str, text: str) -> None:
    """
    Replace the file at C{path} with C{text}: write a temporary file beside
    it, fsync it, rename it into place and fsync the directory.  The new
    file keeps the mode of the old one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary = f"{path}.tmp"
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directoryDescriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directoryDescriptor)
    finally:
        os.close(directoryDescriptor)
