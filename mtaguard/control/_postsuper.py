# -*- test-case-name: tests.test_control -*-
"""
C{mtaguard-postsuper}: Postfix's C{postsuper} for mtaguard's queue.

C{-d ID}, C{-d ALL} and C{-d -} (IDs from standard input) delete messages
from C{active/} directly, by unlinking their files, which is safe while the
service runs: a delivery in progress finishes on the unlinked file, and a
file that is already gone is not an error.  C{-r} (requeue) needs the
running service, which this command cannot reach yet; it fails saying so.
"""

from __future__ import annotations

import getopt
import os
import sys
from typing import Mapping, Optional, Sequence, TextIO

from mtaguard.config import ConfigurationError

from ._queueview import ACTIVE, deleteMessages, queueDirectoryOf

PROGRAM = "mtaguard-postsuper"

#: The configuration directory when neither C{-c} nor C{$MAIL_CONFIG}
#: names one (the same as C{mtaguard-postconf}'s).
DEFAULT_CONFIG_DIRECTORY = "/etc/mtaguard"

USAGE = f"usage: {PROGRAM} [-c config_dir] [-d queue_id|ALL|-] [-r queue_id|ALL|-] [-v] [active]"


class _Fatal(Exception):
    pass


def _readIDs(stdin: TextIO) -> list[str]:
    return [line.strip() for line in stdin if line.strip()]


def run(
    argv: Sequence[str],
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
    stdin: TextIO,
) -> int:
    """
    Run C{mtaguard-postsuper}.

    @param argv: the arguments, without the program name.
    @param out: standard output.
    @param err: standard error, where Postfix's C{postsuper} writes its
        C{removed} and C{Deleted:} lines.
    @param environ: the environment (for C{$MAIL_CONFIG}).
    @param stdin: standard input, read for C{-d -}.
    @return: the exit status.
    """

    def warn(message: str) -> None:
        err.write(f"{PROGRAM}: warning: {message}\n")

    def removed(queueID: str) -> None:
        err.write(f"{PROGRAM}: {queueID}: removed\n")

    try:
        try:
            options, operands = getopt.getopt(list(argv), "c:d:r:v")
        except getopt.GetoptError as error:
            err.write(f"{PROGRAM}: {error}\n")
            raise _Fatal(USAGE) from None
        configDirectory = environ.get("MAIL_CONFIG", DEFAULT_CONFIG_DIRECTORY)
        deletions: list[str] = []
        requeues: list[str] = []
        for option, value in options:
            if option == "-c":
                configDirectory = value
            elif option == "-d":
                deletions.append(value)
            elif option == "-r":
                requeues.append(value)
        for operand in operands:
            if operand != ACTIVE:
                raise _Fatal(f"invalid directory name: {operand}")
        if requeues:
            raise _Fatal(
                "-r (requeue) is not available without a running service: the running"
                f" mtaguard service must be asked, and {PROGRAM} cannot reach it yet"
                " (no control socket)"
            )
        if not deletions:
            raise _Fatal(USAGE)
        try:
            queueDirectory = queueDirectoryOf(configDirectory)
        except ConfigurationError as error:
            raise _Fatal(str(error)) from None
        # ALL means every message only as an argument: a line "ALL" read
        # from standard input is just an invalid queue ID, so that piping a
        # list never empties the queue.
        everything = "ALL" in deletions
        queueIDs: list[str] = []
        for value in deletions:
            if value == "-":
                queueIDs.extend(_readIDs(stdin))
            else:
                queueIDs.append(value)
        count = deleteMessages(queueDirectory, None if everything else queueIDs, removed, warn)
        if count:
            err.write(f"{PROGRAM}: Deleted: {count} message{'' if count == 1 else 's'}\n")
        return 0
    except _Fatal as error:
        out.flush()
        err.write(f"{PROGRAM}: fatal: {error}\n")
        return 1


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
    environ: Optional[Mapping[str, str]] = None,
    stdin: Optional[TextIO] = None,
) -> int:
    """
    The C{mtaguard-postsuper} command.  The configuration directory is
    C{-c DIR}, else C{$MAIL_CONFIG}, else C{/etc/mtaguard}.

    @return: the exit status: 0, or 1 after a fatal error.
    """
    return run(
        sys.argv[1:] if argv is None else argv,
        sys.stdout if out is None else out,
        sys.stderr if err is None else err,
        os.environ if environ is None else environ,
        sys.stdin if stdin is None else stdin,
    )


__all__ = ["PROGRAM", "main", "run"]
