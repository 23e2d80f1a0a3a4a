# -*- test-case-name: tests.test_control -*-
"""
C{mtaguard-postsuper}: Postfix's C{postsuper} for mtaguard's queue.

C{-d ID}, C{-d ALL} and C{-d -} (IDs from standard input) delete messages
from C{active/}.  While the service runs they are deleted by the service,
asked over its control socket, so that it forgets their backoff and does
not attempt them again; without a running service the files are unlinked
directly.  (Unlinking is safe either way: a delivery in progress finishes
on the unlinked file, and a file that is already gone is not an error.)

C{-r ID|ALL|-} (requeue) asks the running service to attempt the messages
again from scratch (see L{mtaguard.queue.QueueManager}); without a running
service it fails saying so: the next start attempts every message anyway.
"""

from __future__ import annotations

import getopt
import os
import sys
from typing import Mapping, Optional, Sequence, TextIO

from mtaguard.config import ConfigurationError

from mtaguard.queue._ids import isQueueID

from ._client import DEFAULT_TIMEOUT, CommandFailed, ControlClient, ServiceUnreachable
from ._protocol import BATCH, Delete, InvalidQueueID, Requeue, SocketPathTooLong, controlSocketPath
from ._queueview import ACTIVE, deleteMessages, listQueueIDs, queueDirectoryOf

PROGRAM = "mtaguard-postsuper"

#: The configuration directory when neither C{-c} nor C{$MAIL_CONFIG}
#: names one (the same as C{mtaguard-postconf}'s).
DEFAULT_CONFIG_DIRECTORY = "/etc/mtaguard"

USAGE = f"usage: {PROGRAM} [-c config_dir] [-d queue_id|ALL|-] [-r queue_id|ALL|-] [-v] [active]"


class _Fatal(Exception):
    pass


def _readIDs(stdin: TextIO) -> list[str]:
    return [line.strip() for line in stdin if line.strip()]


def _batches(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def _plural(count: int) -> str:
    return f"{count} message{'' if count == 1 else 's'}"


def run(
    argv: Sequence[str],
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
    stdin: TextIO,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """
    Run C{mtaguard-postsuper}.

    @param argv: the arguments, without the program name.
    @param out: standard output.
    @param err: standard error, where Postfix's C{postsuper} writes its
        C{removed} and C{Deleted:} lines.
    @param environ: the environment (for C{$MAIL_CONFIG}).
    @param stdin: standard input, read for C{-d -} and C{-r -}.
    @param timeout: seconds to wait for the running service.
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
        if not deletions and not requeues:
            raise _Fatal(USAGE)
        try:
            queueDirectory = queueDirectoryOf(configDirectory)
        except ConfigurationError as error:
            raise _Fatal(str(error)) from None

        def queueIDsOf(values: list[str]) -> Optional[list[str]]:
            # ALL means every message only as an argument: a line "ALL"
            # read from standard input is just an invalid queue ID, so that
            # piping a list never empties the queue.
            if "ALL" in values:
                return None
            queueIDs: list[str] = []
            for value in values:
                if value == "-":
                    queueIDs.extend(_readIDs(stdin))
                else:
                    queueIDs.append(value)
            valid = []
            for queueID in dict.fromkeys(queueIDs):
                if isQueueID(queueID):
                    valid.append(queueID)
                else:
                    warn(f"invalid mail queue id: {queueID}")
            return valid

        toDelete = queueIDsOf(deletions) if deletions else []
        toRequeue = queueIDsOf(requeues) if requeues else []
        client: Optional[ControlClient] = None
        try:
            client = ControlClient(controlSocketPath(queueDirectory), timeout=timeout)
        except (ServiceUnreachable, SocketPathTooLong) as error:
            if requeues:
                raise _Fatal(f"Cannot requeue - {error}") from None
        if client is None:
            count = deleteMessages(queueDirectory, toDelete, removed, warn)
            if count:
                err.write(f"{PROGRAM}: Deleted: {_plural(count)}\n")
            return 0
        with client:
            try:
                if deletions:
                    deleted = 0
                    everything = listQueueIDs(queueDirectory) if toDelete is None else toDelete
                    for batch in _batches(everything):
                        answer = client.call(Delete, queueIDs=list(batch))
                        for queueID in answer["removed"]:
                            removed(queueID)
                        deleted += len(answer["removed"])
                    if deleted:
                        err.write(f"{PROGRAM}: Deleted: {_plural(deleted)}\n")
                if requeues:
                    if toRequeue is None:
                        requeued = client.call(Requeue, queueIDs=[], all=True)["count"]
                    else:
                        requeued = 0
                        for batch in _batches(toRequeue):
                            requeued += client.call(Requeue, queueIDs=list(batch), all=False)["count"]
                    if requeued:
                        err.write(f"{PROGRAM}: Requeued: {_plural(requeued)}\n")
            except (ServiceUnreachable, InvalidQueueID, CommandFailed) as error:
                raise _Fatal(str(error)) from None
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
