# -*- test-case-name: tests.test_control_socket -*-
"""
The running service's end of the control socket: an AMP server on a UNIX
socket in C{<queue_directory>/mtaguard/private/}, answering
L{mtaguard.control._protocol}'s commands with the queue manager.

Only the owner may connect: the directory is made (or made again) mode
0700 and must belong to the service's user, and the socket is mode 0600.
The service runs as the user that owns the queue, and so does
C{mtaguard-postsuper}, as Postfix's needs root; anyone else is refused by
the file system before a byte is read.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any, Optional, Protocol, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from ._protocol import (
    DeliverOne,
    Delete,
    Flush,
    InvalidQueueID,
    Requeue,
    UnknownMessage,
)


class ControlError(Exception):
    """
    The control socket cannot be set up (its directory is not safe, or
    another service answers on it).
    """


class IQueueControl(Protocol):
    """
    What the control socket asks of the queue manager
    (L{mtaguard.queue.QueueManager} provides it).
    """

    def flush(self) -> None: ...

    def deliverNow(self, queueID: str) -> Deferred[bool]: ...

    def requeue(self, queueIDs: Optional[Sequence[str]]) -> Deferred[list[str]]: ...

    def delete(self, queueIDs: Sequence[str]) -> Deferred[list[str]]: ...


def _invalid(failure: Failure) -> Failure:
    # The manager refuses anything that is not a queue ID before it touches
    # the file system; the client hears it as an AMP error.
    if failure.check(ValueError):
        raise InvalidQueueID(str(failure.value))
    return failure


class ControlLocator(amp.CommandLocator):
    """
    The responders of the control commands.
    """

    def __init__(self, manager: IQueueControl, log: Logger) -> None:
        self._manager = manager
        self._log = log

    def flush(self) -> dict[str, Any]:
        self._log.info("flush requested over the control socket")
        self._manager.flush()
        return {}

    def deliverOne(self, queueID: str) -> Deferred[dict[str, Any]]:
        def checked(present: bool) -> dict[str, Any]:
            if not present:
                raise UnknownMessage(f"no message {queueID} in the queue")
            return {}

        return maybeDeferred(self._manager.deliverNow, queueID).addErrback(_invalid).addCallback(checked)

    def requeue(self, queueIDs: list[str], all: bool) -> Deferred[dict[str, Any]]:
        return (
            maybeDeferred(self._manager.requeue, None if all else queueIDs)
            .addErrback(_invalid)
            .addCallback(lambda existing: {"count": len(existing)})
        )

    def delete(self, queueIDs: list[str]) -> Deferred[dict[str, Any]]:
        return (
            maybeDeferred(self._manager.delete, queueIDs)
            .addErrback(_invalid)
            .addCallback(lambda removed: {"removed": removed})
        )

    # The responders are registered by hand rather than with the
    # Command.responder decorator, which mypy cannot see through.
    _responders = {
        Flush: flush,
        DeliverOne: deliverOne,
        Requeue: requeue,
        Delete: delete,
    }

    def locateResponder(self, name: bytes) -> Any:
        for command, method in self._responders.items():
            if command.commandName == name:
                # CommandLocator's own serialization wrapper (untyped).
                wrap: Any = getattr(self, "_wrapWithSerialization")
                return wrap(method.__get__(self), command)
        return None


class ControlFactory(Factory):
    """
    One L{amp.AMP} per control connection, answering with a
    L{ControlLocator}.
    """

    def __init__(self, manager: IQueueControl, log: Logger) -> None:
        self._manager = manager
        self._log = log

    def buildProtocol(self, addr: Any) -> amp.AMP:
        return amp.AMP(locator=ControlLocator(self._manager, self._log))


def prepareDirectory(directory: str) -> None:
    """
    Make C{directory} (the socket's parent) exist, owned by this process's
    user and mode 0700.

    @raise ControlError: if it is a symbolic link, not a directory, or
        belongs to another user.
    """
    try:
        os.makedirs(directory, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise ControlError(f"{directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise ControlError(f"{directory} is owned by uid {info.st_uid}, not by uid {os.geteuid()}")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(directory, 0o700)


def serviceAnswers(path: str) -> bool:
    """
    Whether a service listens on the control socket C{path} now (another
    mtaguard on the same queue directory).
    """
    if not os.path.exists(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def removeStaleSocket(path: str) -> None:
    """
    Remove a socket left behind by a service that did not stop cleanly.

    @raise ControlError: if a service answers on it, or the path is not a
        socket (nothing that is not a socket is ever removed).
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(path)
    except OSError as error:
        if error.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ControlError(f"cannot check {path}: {error.strerror}") from None
    else:
        raise ControlError(f"another mtaguard service answers on {path}")
    finally:
        probe.close()
    os.unlink(path)


class ControlService(Service):
    """
    Listen on the control socket while the service runs.
    """

    def __init__(self, path: str, manager: IQueueControl, *, reactor: Any, log: Logger) -> None:
        """
        @param path: the socket's path (L{controlSocketPath}).
        @param manager: answers the commands.
        @param reactor: an C{IReactorUNIX}.
        @param log: where the requests are noted.
        """
        self.path = path
        self._manager = manager
        self._reactor = reactor
        self._log = log
        self._port: Any = None

    def startService(self) -> None:
        """
        Make the directory safe, remove a stale socket and listen.

        @raise ControlError: if the socket cannot be set up safely.
        """
        prepareDirectory(os.path.dirname(self.path))
        removeStaleSocket(self.path)
        # Mode 0600 is applied right after bind; the 0700 directory keeps
        # everyone else out in between.
        self._port = self._reactor.listenUNIX(
            self.path, ControlFactory(self._manager, self._log), mode=0o600, wantPID=False
        )
        Service.startService(self)

    def stopService(self) -> Deferred[None] | None:
        """
        Stop listening; the socket file is removed.
        """
        Service.stopService(self)
        port, self._port = self._port, None
        if port is None:
            return None
        stopping: Deferred[None] | None = port.stopListening()
        return stopping


__all__ = [
    "ControlError",
    "ControlFactory",
    "ControlLocator",
    "ControlService",
    "IQueueControl",
    "prepareDirectory",
    "removeStaleSocket",
    "serviceAnswers",
]
