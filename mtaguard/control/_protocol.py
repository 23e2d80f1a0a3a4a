# -*- test-case-name: tests.test_control_socket -*-
"""
The control socket's commands: C{twisted.protocols.amp} commands that
C{mtaguard-postqueue} and C{mtaguard-postsuper} send to the running
service.

Every value in an AMP box is at most 65,535 bytes, so commands carry
bounded batches of queue IDs (L{BATCH}); a client with more IDs sends
several commands over one connection.
"""

from __future__ import annotations

import os

from twisted.protocols import amp

#: The name of the control socket, in L{CONTROL_SUBDIRECTORY} of the queue
#: directory (C{<queue_directory>/mtaguard}).
CONTROL_SOCKET = "control"

#: The owner-only directory that holds the control socket, as Postfix's
#: C{private/} holds its internal sockets.
CONTROL_SUBDIRECTORY = "private"

#: At most this many queue IDs in one command (a queue ID is under 20
#: bytes, so a batch stays far below AMP's 65,535-byte value limit).
BATCH = 1000

#: The longest path a UNIX socket address holds on Linux (C{sun_path} is
#: 108 bytes, one of them the terminating NUL).
MAX_SOCKET_PATH = 107


class SocketPathTooLong(Exception):
    """
    The control socket's path does not fit in a UNIX socket address.
    """


def controlSocketPath(queueDirectory: str) -> str:
    """
    The control socket of the service whose queue directory is
    C{queueDirectory}.

    @raise SocketPathTooLong: if the path is longer than a UNIX socket
        address can hold, with a message that says what to do.
    """
    path = os.path.join(queueDirectory, CONTROL_SUBDIRECTORY, CONTROL_SOCKET)
    length = len(os.fsencode(path))
    if length > MAX_SOCKET_PATH:
        raise SocketPathTooLong(
            f"control socket path {path} is {length} bytes, longer than the"
            f" {MAX_SOCKET_PATH} a UNIX-domain socket address can hold;"
            " use a shorter queue_directory"
        )
    return path


class UnknownMessage(Exception):
    """
    No message with that queue ID is in the queue.
    """


class InvalidQueueID(Exception):
    """
    The text given is not a queue ID.
    """


class Flush(amp.Command):
    """
    C{postqueue -f}: every deferred message becomes due now; a queue run
    starts.  The answer comes once the run has started, not finished.
    """

    arguments = []
    response = []


class DeliverOne(amp.Command):
    """
    C{postqueue -i ID}: attempt one message now.
    """

    arguments = [(b"queueID", amp.Unicode())]
    response = []
    errors = {UnknownMessage: b"UNKNOWN_MESSAGE", InvalidQueueID: b"INVALID_QUEUE_ID"}


class Requeue(amp.Command):
    """
    C{postsuper -r}: attempt messages again from scratch; C{all} for every
    message (then C{queueIDs} is empty).  The answer lists the queue IDs
    that were in the queue (all of them, for C{all}, may exceed one box:
    so only their number is returned).
    """

    arguments = [
        (b"queueIDs", amp.ListOf(amp.Unicode())),
        (b"all", amp.Boolean()),
    ]
    response = [(b"count", amp.Integer())]
    errors = {InvalidQueueID: b"INVALID_QUEUE_ID"}


class Delete(amp.Command):
    """
    C{postsuper -d}: remove messages; the answer lists those removed.
    """

    arguments = [(b"queueIDs", amp.ListOf(amp.Unicode()))]
    response = [(b"removed", amp.ListOf(amp.Unicode()))]
    errors = {InvalidQueueID: b"INVALID_QUEUE_ID"}


__all__ = [
    "BATCH",
    "CONTROL_SOCKET",
    "CONTROL_SUBDIRECTORY",
    "DeliverOne",
    "Delete",
    "Flush",
    "InvalidQueueID",
    "MAX_SOCKET_PATH",
    "Requeue",
    "SocketPathTooLong",
    "UnknownMessage",
    "controlSocketPath",
]
