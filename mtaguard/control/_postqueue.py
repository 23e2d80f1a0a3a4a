# -*- test-case-name: tests.test_control -*-
"""
C{mtaguard-postqueue}: Postfix's C{postqueue} for mtaguard's queue.

C{-p} (Postfix's C{mailq} format) and C{-j}/C{--json} read the queue
directly.  C{-f}, C{-i} and C{-s} need the running service, which this
command cannot reach yet (there is no control socket); they fail with a
message that says so instead of pretending to have done anything.
"""

from __future__ import annotations

import getopt
import os
import sys
from typing import Mapping, Optional, Sequence, TextIO

from mtaguard.config import ConfigurationError

from ._queueview import formatJSON, formatMailq, listQueue, queueDirectoryOf

PROGRAM = "mtaguard-postqueue"

#: The configuration directory when neither C{-c} nor C{$MAIL_CONFIG}
#: names one (the same as C{mtaguard-postconf}'s).
DEFAULT_CONFIG_DIRECTORY = "/etc/mtaguard"

USAGE = (
    f"usage: {PROGRAM} -f | {PROGRAM} -i queueid | {PROGRAM} -j"
    f" | {PROGRAM} -p | {PROGRAM} -s site"
)

#: Why -f, -i and -s fail: they are requests to the running service.
UNREACHABLE = (
    "the running mtaguard service must be asked, and {program} cannot reach it yet"
    " (no control socket)"
)


class _Fatal(Exception):
    pass


def run(
    argv: Sequence[str],
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
) -> int:
    """
    Run C{mtaguard-postqueue}.

    @param argv: the arguments, without the program name.
    @param out: standard output.
    @param err: standard error.
    @param environ: the environment (for C{$MAIL_CONFIG}).
    @return: the exit status.
    """

    def warn(message: str) -> None:
        err.write(f"{PROGRAM}: warning: {message}\n")

    try:
        try:
            options, operands = getopt.getopt(list(argv), "c:fi:jps:v", ["json"])
        except getopt.GetoptError as error:
            err.write(f"{PROGRAM}: {error}\n")
            raise _Fatal(USAGE) from None
        configDirectory = environ.get("MAIL_CONFIG", DEFAULT_CONFIG_DIRECTORY)
        modes: list[tuple[str, str]] = []
        for option, value in options:
            if option == "-c":
                configDirectory = value
            elif option == "-v":
                pass
            else:
                modes.append(("-j" if option == "--json" else option, value))
        if operands or not modes:
            raise _Fatal(USAGE)
        if len({mode for mode, value in modes}) > 1:
            raise _Fatal("specify only one of -f, -i, -j, -p or -s")
        mode, value = modes[-1]
        unreachable = UNREACHABLE.format(program=PROGRAM)
        if mode == "-f":
            raise _Fatal(f"Cannot flush mail queue - {unreachable}")
        if mode == "-i":
            raise _Fatal(f"Cannot flush message {value} - {unreachable}")
        if mode == "-s":
            raise _Fatal(f"Cannot flush mail queue for site {value} - {unreachable}")
        try:
            queueDirectory = queueDirectoryOf(configDirectory)
        except ConfigurationError as error:
            raise _Fatal(str(error)) from None
        entries = listQueue(queueDirectory, warn)
        if mode == "-p":
            for text in formatMailq(entries):
                out.write(text)
        else:
            for entry in entries:
                out.write(formatJSON(entry))
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
) -> int:
    """
    The C{mtaguard-postqueue} command.  The configuration directory is
    C{-c DIR}, else C{$MAIL_CONFIG}, else C{/etc/mtaguard}.

    @return: the exit status: 0, or 1 after a fatal error.
    """
    return run(
        sys.argv[1:] if argv is None else argv,
        sys.stdout if out is None else out,
        sys.stderr if err is None else err,
        os.environ if environ is None else environ,
    )


__all__ = ["PROGRAM", "main", "run"]
