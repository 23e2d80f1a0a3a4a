# -*- test-case-name: tests.test_control -*-
"""
C{mtaguard-postqueue}: Postfix's C{postqueue} for mtaguard's queue.

C{-p} (Postfix's C{mailq} format) and C{-j}/C{--json} read the queue
directly.  C{-f} (flush) and C{-i ID} (deliver one message now) are requests
to the running service, sent over its control socket
(L{mtaguard.control._protocol}); when no service answers they fail with a
message that says so instead of pretending to have done anything.  C{-s}
(Postfix's per-site fast flush, C{fast_flush_domains}) is not implemented:
C{-f} does what it would.
"""

from __future__ import annotations

import getopt
import os
import sys
from typing import Mapping, Optional, Sequence, TextIO

from mtaguard.config import ConfigurationError

from mtaguard.queue._ids import isQueueID

from ._client import DEFAULT_TIMEOUT, CommandFailed, ControlClient, ServiceUnreachable
from ._protocol import DeliverOne, Flush, InvalidQueueID, SocketPathTooLong, UnknownMessage, controlSocketPath
from ._queueview import formatJSON, formatMailq, listQueue, queueDirectoryOf

PROGRAM = "mtaguard-postqueue"

#: The configuration directory when neither C{-c} nor C{$MAIL_CONFIG}
#: names one (the same as C{mtaguard-postconf}'s).
DEFAULT_CONFIG_DIRECTORY = "/etc/mtaguard"

USAGE = (
    f"usage: {PROGRAM} -f | {PROGRAM} -i queueid | {PROGRAM} -j"
    f" | {PROGRAM} -p | {PROGRAM} -s site"
)



class _Fatal(Exception):
    pass


def _ask(queueDirectory: str, failed: str, timeout: float) -> ControlClient:
    """
    Connect to the service's control socket.

    @param failed: what could not be done, the start of the fatal message.
    @raise _Fatal: if no service answers.
    """
    try:
        return ControlClient(controlSocketPath(queueDirectory), timeout=timeout)
    except (ServiceUnreachable, SocketPathTooLong) as error:
        raise _Fatal(f"{failed} - {error}") from None


def run(
    argv: Sequence[str],
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """
    Run C{mtaguard-postqueue}.

    @param argv: the arguments, without the program name.
    @param out: standard output.
    @param err: standard error.
    @param environ: the environment (for C{$MAIL_CONFIG}).
    @param timeout: seconds to wait for the service, for C{-f} and C{-i}.
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
        if mode == "-s":
            raise _Fatal(
                f"Cannot flush mail queue for site {value} - per-site flush"
                " (fast_flush_domains) is not supported by mtaguard; use -f"
            )
        if mode == "-i" and not isQueueID(value):
            raise _Fatal(f"invalid mail queue id: {value}")
        try:
            queueDirectory = queueDirectoryOf(configDirectory)
        except ConfigurationError as error:
            raise _Fatal(str(error)) from None
        if mode in ("-f", "-i"):
            failed = "Cannot flush mail queue" if mode == "-f" else f"Cannot flush message {value}"
            with _ask(queueDirectory, failed, timeout) as client:
                try:
                    if mode == "-f":
                        client.call(Flush)
                    else:
                        client.call(DeliverOne, queueID=value)
                except UnknownMessage:
                    raise _Fatal(f"{failed} - no such message in the queue") from None
                except (InvalidQueueID, CommandFailed) as error:
                    raise _Fatal(f"{failed} - {error}") from None
                except ServiceUnreachable as error:
                    raise _Fatal(f"{failed} - {error}") from None
            return 0
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
