# -*- test-case-name: tests.test_control_socket -*-
"""
The command-line end of the control socket: a small blocking AMP client,
enough for C{mtaguard-postqueue} and C{mtaguard-postsuper}, which send a
few commands and exit, and run no reactor.

The boxes are made and read with the commands' own schemas
(L{amp.Command.makeArguments}, L{amp.Command.parseResponse}), so the bytes
on the socket are exactly those of an L{amp.AMP} peer.  Every connect, read
and write is bounded by a timeout, so a hung service cannot hang the
command.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from twisted.protocols import amp

#: Seconds to wait for the service to accept, and for each answer.
DEFAULT_TIMEOUT = 30.0


class ServiceUnreachable(Exception):
    """
    No service answers on the control socket: none runs, or it hung.
    """


class CommandFailed(Exception):
    """
    The service answered with an error it did not declare for the command.
    """


class ControlClient:
    """
    One connection to the control socket.
    """

    def __init__(self, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """
        Connect.

        @raise ServiceUnreachable: if nothing listens on C{path} (no socket,
            connection refused) or it does not accept in time.
        """
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(timeout)
        self._buffer = b""
        self._tag = 0
        try:
            self._socket.connect(path)
        except socket.timeout:
            self._socket.close()
            raise ServiceUnreachable(f"the mtaguard service did not answer on {path} within {timeout:g}s") from None
        except OSError as error:
            self._socket.close()
            if error.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
                raise ServiceUnreachable(f"the mtaguard service is not running (nothing answers on {path})") from None
            raise ServiceUnreachable(f"connect to {path}: {error.strerror}") from None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """
        Hang up.
        """
        self._socket.close()

    @classmethod
    def fromSocket(cls, connected: socket.socket) -> ControlClient:
        """
        A client over an already connected socket (for tests).
        """
        client = cls.__new__(cls)
        client._socket = connected
        client._buffer = b""
        client._tag = 0
        return client

    def call(self, command: type[amp.Command], **arguments: Any) -> dict[str, Any]:
        """
        Send one command and wait for its answer.

        @return: the answer's values, by Python name.
        @raise ServiceUnreachable: if the connection is lost or times out.
        @raise Exception: the exception declared in C{command.errors} that the
            service answered with, or L{CommandFailed}.
        """
        self._tag += 1
        tag = str(self._tag).encode("ascii")
        box = command.makeArguments(arguments, None)
        box[b"_command"] = command.commandName
        box[b"_ask"] = tag
        try:
            self._socket.sendall(box.serialize())
            answer = self._readBox()
        except socket.timeout:
            raise ServiceUnreachable("the mtaguard service did not answer in time") from None
        except OSError as error:
            raise ServiceUnreachable(f"lost connection with the mtaguard service: {error.strerror}") from None
        if answer.get(b"_answer") == tag:
            parsed: dict[str, Any] = command.parseResponse(answer, None)
            return parsed
        if answer.get(b"_error") == tag:
            code = answer.get(b"_error_code", b"")
            description = answer.get(b"_error_description", b"").decode("utf-8", "replace")
            for exception, errorCode in command.errors.items():
                if errorCode == code:
                    raise exception(description)
            raise CommandFailed(description or code.decode("ascii", "replace"))
        raise CommandFailed("unexpected answer from the mtaguard service")

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise ServiceUnreachable("the mtaguard service closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def _readBox(self) -> dict[bytes, bytes]:
        box: dict[bytes, bytes] = {}
        while True:
            (keyLength,) = struct.unpack("!H", self._read(2))
            if keyLength == 0:
                return box
            key = self._read(keyLength)
            (valueLength,) = struct.unpack("!H", self._read(2))
            box[key] = self._read(valueLength)


__all__ = ["CommandFailed", "ControlClient", "DEFAULT_TIMEOUT", "ServiceUnreachable"]
