# -*- test-case-name: tests.test_queue_local -*-
"""
The embedded local delivery agent: one Maildir per local recipient under
C{<data_directory>/maildir/}, written with Maildir's own protocol so that a
mail reader never sees half a message and a crash never loses one.

Everything here blocks; it runs in a worker thread.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import socket

from ._format import QueueFile

#: Longest mailbox directory name; longer (escaped) local parts are cut and
#: given a hash, so that the name stays below the 255-byte limit and
#: distinct recipients still get distinct mailboxes.
_MAX_MAILBOX_NAME = 200

# Local-part characters kept as they are; everything else is %-escaped, so
# that the mapping is one-to-one and no name can be ".", ".." or hold "/".
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789!#$&'*+-=?^_`{|}~")


def mailboxName(recipient: str) -> str:
    """
    The directory name of C{recipient}'s Maildir: its local part, lower-cased,
    with unsafe bytes %-escaped (dots are kept except in front).

    @param recipient: an address such as C{Joe.Bloggs@example.org}.
    """
    localPart = recipient.rpartition("@")[0] if "@" in recipient else recipient
    raw = localPart.lower().encode("utf-8", "surrogatepass")
    escaped = "".join(
        chr(byte) if byte in _SAFE or (byte == 0x2E and index > 0) else f"%{byte:02X}" for index, byte in enumerate(raw)
    )
    if not escaped:
        # The empty local part ("@example.org", or a bare "" recipient).
        escaped = "%"
    if len(escaped) > _MAX_MAILBOX_NAME:
        digest = hashlib.sha256(raw).hexdigest()[:16]
        escaped = escaped[: _MAX_MAILBOX_NAME - 18] + "%%" + digest
    return escaped


def _headerValue(text: str) -> bytes:
    # An address with CR or LF would inject header lines; SMTP never lets
    # one through, but the agent must not depend on that.
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "surrogatepass")


class MaildirAgent:
    """
    Deliver queued messages into Maildirs under
    C{<dataDirectory>/maildir/<mailbox name>/}.

    Messages are stored as Postfix's local(8) stores them: with
    C{Return-Path:} and C{Delivered-To:} prepended, and UNIX line endings.
    """

    def __init__(self, dataDirectory: str, *, hostname: str | None = None, fsync: "object | None" = None) -> None:
        """
        @param dataDirectory: the data directory (C{data_directory}).
        @param hostname: the host name in Maildir file names; by default
            this host's.
        @param fsync: replaces C{os.fsync} (tests count calls).
        """
        self.directory = os.path.join(dataDirectory, "maildir")
        host = hostname if hostname is not None else socket.gethostname()
        # Maildir's escapes for the two characters with a meaning in names.
        self._host = host.replace("/", "\\057").replace(":", "\\072")
        self._pid = os.getpid()
        self._counter = itertools.count(1)
        self._fsync = fsync if fsync is not None else os.fsync

    def mailbox(self, recipient: str) -> str:
        """
        @return: the Maildir directory of C{recipient}.
        """
        return os.path.join(self.directory, mailboxName(recipient))

    def _ensureMaildir(self, mailbox: str) -> None:
        if os.path.isdir(os.path.join(mailbox, "new")):
            return
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(mailbox, sub), mode=0o700, exist_ok=True)
        # A new mailbox must survive a crash as much as the message in it.
        for path in (mailbox, self.directory):
            self._syncDirectory(path)

    def _syncDirectory(self, path: str) -> None:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._fsync(descriptor)  # type: ignore[operator]
        finally:
            os.close(descriptor)

    def deliver(self, queued: QueueFile, recipient: str, now: float) -> str:
        """
        Deliver C{queued} to C{recipient}: write C{tmp/<unique>}, fsync it,
        move it into C{new/} (link, then unlink) and fsync C{new/}.

        @param now: the current time, for the unique file name.
        @return: the path of the delivered file in C{new/}.
        @raise OSError: if the delivery failed; nothing is left in C{new/}.
        """
        mailbox = self.mailbox(recipient)
        self._ensureMaildir(mailbox)
        data = (
            b"Return-Path: <"
            + _headerValue(queued.header.envelope.sender)
            + b">\nDelivered-To: "
            + _headerValue(recipient)
            + b"\n"
            + queued.content.replace(b"\r\n", b"\n")
        )
        while True:
            seconds = int(now)
            unique = f"{seconds}.M{int((now - seconds) * 1_000_000)}P{self._pid}Q{next(self._counter)}.{self._host}"
            temporary = os.path.join(mailbox, "tmp", unique)
            try:
                descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            break
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
                self._fsync(descriptor)  # type: ignore[operator]
            finally:
                os.close(descriptor)
            # link, not rename: rename would silently replace a message
            # already delivered under the same name (a clock stepped back,
            # a reused PID); link fails instead, and a new name is tried.
            while True:
                final = os.path.join(mailbox, "new", unique)
                try:
                    os.link(temporary, final)
                except FileExistsError:
                    unique += f"Q{next(self._counter)}"
                    continue
                break
        finally:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        self._syncDirectory(os.path.join(mailbox, "new"))
        return final
