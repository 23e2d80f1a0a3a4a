# -*- test-case-name: tests.test_control -*-
"""
Reading the queue directly, without a running service: the entries of
C{active/} as C{mtaguard-postqueue} lists them, and their deletion as
C{mtaguard-postsuper -d} does it.

Everything here works on the queue directory (C{<queue_directory>/mtaguard},
see C{docs/queue-format.md}) and returns plain values, so that a control
command answered by the running service can call the same functions.

A running service may deliver and remove any file while it is read here:
a file that vanishes is skipped silently, and deletion only unlinks (a
delivery agent that still has the file open finishes on the unlinked
inode; a name already gone is not an error).  Files in C{incoming/} are
never shown or touched: they belong to messages that were never
acknowledged and that a running server may still be receiving.
"""

from __future__ import annotations

import errno
import json
import os
import time
from typing import Callable, Iterable, Iterator, Optional, Sequence

from attrs import frozen

from mtaguard.queue._format import QueueFormatError, parseHeader
from mtaguard.queue._ids import isQueueID

#: The subdirectory of the queue directory that holds committed messages.
ACTIVE = "active"

#: How Postfix's showq writes the null sender (its C{empty_address_recipient}
#: default), in both the C{mailq} and the JSON output.
EMPTY_ADDRESS = "MAILER-DAEMON"

#: A header larger than this is not read further: the file is reported as
#: corrupt rather than read into memory whole.
MAX_HEADER_BYTES = 16 * 1024 * 1024

_READ_SIZE = 64 * 1024


@frozen
class QueueEntry:
    """
    One message in the queue, as C{mailq} shows it.

    @ivar queueName: the queue subdirectory it is in (C{"active"}).
    @ivar queueID: the queue ID.
    @ivar size: the content size in bytes (the C{size} field).
    @ivar arrival: the arrival time, seconds since the epoch.
    @ivar sender: the envelope sender, C{""} for the null sender.
    @ivar recipients: the recipients still pending, in RCPT order.
    """

    queueName: str
    queueID: str
    size: int
    arrival: float
    sender: str
    recipients: tuple[str, ...]


Warn = Callable[[str], None]


def _ignore(message: str) -> None:
    pass


def _readHeader(path: str) -> tuple[bytes, int] | None:
    """
    Read a queue file's header (and whatever content comes with it).

    @return: the bytes read and the file's size, or L{None} if the file no
        longer exists.
    @raise QueueFormatError: if the header is not complete within
        L{MAX_HEADER_BYTES}.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        fileSize = os.fstat(descriptor).st_size
        chunks: list[bytes] = []
        total = 0
        previous = b""
        while total < MAX_HEADER_BYTES:
            chunk = os.read(descriptor, _READ_SIZE)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if b"\n\n" in previous[-1:] + chunk:
                break
            previous = chunk
        return b"".join(chunks), fileSize
    finally:
        os.close(descriptor)


def readEntry(queueDirectory: str, queueID: str, queueName: str = ACTIVE) -> QueueEntry | None:
    """
    Read one queue file's envelope.

    @param queueDirectory: the queue directory (C{<queue_directory>/mtaguard}).
    @param queueID: the queue ID; it must pass L{isQueueID}.
    @param queueName: the subdirectory.
    @return: the entry, or L{None} if the file does not exist (any more).
    @raise QueueFormatError: if the file is not a committed queue file of
        the expected size and name.
    @raise OSError: if it cannot be read for another reason.
    """
    if not isQueueID(queueID):
        raise ValueError(f"not a queue ID: {queueID!r}")
    result = _readHeader(os.path.join(queueDirectory, queueName, queueID))
    if result is None:
        return None
    data, fileSize = result
    header = parseHeader(data)
    if header.queueID != queueID:
        raise QueueFormatError(f"file holds queue ID {header.queueID!r}")
    if fileSize - header.contentOffset != header.size:
        raise QueueFormatError(
            f"content is {fileSize - header.contentOffset} bytes, header says {header.size}"
        )
    envelope = header.envelope
    return QueueEntry(
        queueName=queueName,
        queueID=queueID,
        size=header.size,
        arrival=envelope.arrival,
        sender=envelope.sender,
        recipients=tuple(recipient.address for recipient in header.pending),
    )


def listQueueIDs(queueDirectory: str, queueName: str = ACTIVE) -> list[str]:
    """
    @return: the queue IDs in a queue subdirectory, oldest first; names that
        are not queue IDs are ignored, and a missing directory is empty.
    """
    try:
        names = os.listdir(os.path.join(queueDirectory, queueName))
    except FileNotFoundError:
        return []
    return sorted(name for name in names if isQueueID(name))


def listQueue(queueDirectory: str, warn: Warn = _ignore) -> Iterator[QueueEntry]:
    """
    The messages waiting in the queue, oldest first, read one at a time (so
    that a large queue is not held in memory).  Messages that have no
    pending recipient left (done, about to be removed) are not listed.

    @param queueDirectory: the queue directory (C{<queue_directory>/mtaguard}).
    @param warn: called with a message for every file that cannot be read
        or parsed; such files are skipped.
    """
    for queueID in listQueueIDs(queueDirectory):
        try:
            entry = readEntry(queueDirectory, queueID)
        except QueueFormatError as error:
            warn(f"{ACTIVE}/{queueID}: skipping corrupt queue file: {error}")
            continue
        except OSError as error:
            warn(f"{ACTIVE}/{queueID}: cannot read queue file: {error.strerror}")
            continue
        if entry is not None and entry.recipients:
            yield entry


# RFC 5322 atext, and "." between atoms: a local part made of these needs
# no quoting (Postfix's quote_822_local).
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")


def _quoteLocal(address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    atoms = local.split(".")
    if all(atom and all(c in _ATEXT or ord(c) > 0x7F for c in atom) for atom in atoms):
        return address
    quoted = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return quoted + at + domain


def _printable(text: str) -> str:
    # Postfix's printable(..., '?'): control characters (and here the lone
    # surrogates of undecodable bytes) become '?'.
    return "".join(
        "?" if ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF else c for c in text
    )


def externalAddress(address: str, nullSender: str = EMPTY_ADDRESS) -> str:
    """
    An address as Postfix's showq reports it: the null address as
    C{nullSender}, the local part quoted where RFC 5322 needs it, and
    control characters replaced by C{?}.
    """
    if not address:
        address = nullSender
    return _printable(_quoteLocal(address))


#: Postfix's C{postqueue -p} columns with C{enable_long_queue_ids = yes},
#: the only queue ID shape mtaguard has (showq_compat.c C{L_*_FORMAT}).
_HEADINGS = ("----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------")

#: The marker Postfix appends to the queue ID of a message in C{active/}.
_MARKERS = {ACTIVE: "*", "hold": "!"}


def _columns(queueID: str, size: str, arrival: str, address: str) -> str:
    return f"{queueID:<17} {size:>8} {arrival:<19} {address}\n"


def formatMailq(
    entries: Iterable[QueueEntry],
    localtime: Optional[Callable[[float], time.struct_time]] = None,
) -> Iterator[str]:
    """
    Postfix's C{mailq} (C{postqueue -p}) output, with long queue IDs, a
    piece at a time.

    @param entries: the messages.
    @param localtime: converts the arrival time for display; by default
        C{time.localtime}, as Postfix's C{asctime(localtime())}.
    @return: the output text, ending with a newline.
    """
    if localtime is None:
        localtime = time.localtime
    count = 0
    totalSize = 0
    for entry in entries:
        if count:
            yield "\n"
        else:
            yield _columns(*_HEADINGS)
        arrival = time.asctime(localtime(int(entry.arrival)))[:19]
        queueID = entry.queueID + _MARKERS.get(entry.queueName, "")
        yield f"{queueID:<17} {entry.size:>8} {arrival:>19} {externalAddress(entry.sender)}\n"
        for recipient in entry.recipients:
            yield _columns("", "", "", externalAddress(recipient))
        count += 1
        totalSize += entry.size
    if count == 0:
        yield "Mail queue is empty\n"
    else:
        plural = "" if count == 1 else "s"
        yield f"\n-- {totalSize // 1024} Kbytes in {count} Request{plural}.\n"


def _jsonString(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def formatJSON(entry: QueueEntry) -> str:
    """
    One message as a line of Postfix's C{postqueue -j} output, with its
    field names and layout (showq_json.c); mtaguard stores no delay
    reasons, so recipients have no C{delay_reason}.
    """
    recipients = ", ".join(
        "{" + f'"address": {_jsonString(externalAddress(r))}' + "}" for r in entry.recipients
    )
    return (
        "{"
        f'"queue_name": {_jsonString(entry.queueName)}, '
        f'"queue_id": {_jsonString(entry.queueID)}, '
        f'"arrival_time": {int(entry.arrival)}, '
        f'"message_size": {entry.size}, '
        '"forced_expire": false, '
        f'"sender": {_jsonString(externalAddress(entry.sender))}, '
        f'"recipients": [{recipients}]'
        "}\n"
    )


def queueDirectoryOf(configDirectory: str) -> str:
    """
    The queue directory of the configuration in C{configDirectory}:
    C{<queue_directory>/mtaguard}, as the service uses it.

    @raise mtaguard.config.ConfigurationError: if the configuration cannot
        be loaded.
    """
    from mtaguard.config import loadConfiguration, params
    from mtaguard.service import QUEUE_SUBDIRECTORY

    view = loadConfiguration(configDirectory).view()
    return os.path.join(view[params.queue_directory], QUEUE_SUBDIRECTORY)


def deleteMessage(queueDirectory: str, queueID: str) -> bool:
    """
    Delete one message from C{active/} by unlinking its file.  A running
    delivery that has the file open finishes on the unlinked file; nothing
    else is changed.

    @param queueDirectory: the queue directory.
    @param queueID: the queue ID.
    @return: whether a file was removed (C{False} if there was none).
    @raise ValueError: if C{queueID} is not a queue ID (so that no name
        such as C{../x} ever reaches the file system).
    @raise OSError: if the unlink fails for a reason other than the file
        being gone.
    """
    if not isQueueID(queueID):
        raise ValueError(f"invalid mail queue id: {queueID}")
    try:
        os.unlink(os.path.join(queueDirectory, ACTIVE, queueID))
    except OSError as error:
        if error.errno == errno.ENOENT:
            return False
        raise
    return True


def deleteMessages(
    queueDirectory: str,
    queueIDs: Optional[Sequence[str]],
    removed: Callable[[str], None] = _ignore,
    warn: Warn = _ignore,
) -> int:
    """
    Delete messages from C{active/}.

    @param queueIDs: the queue IDs, or L{None} for every message.
    @param removed: called with each queue ID whose file was removed.
    @param warn: called with a message for each invalid queue ID or failed
        unlink; those are skipped.
    @return: the number of messages removed.
    """
    if queueIDs is None:
        queueIDs = listQueueIDs(queueDirectory)
    count = 0
    for queueID in dict.fromkeys(queueIDs):
        try:
            gone = deleteMessage(queueDirectory, queueID)
        except ValueError as error:
            warn(str(error))
            continue
        except OSError as error:
            warn(f"remove file {ACTIVE}/{queueID}: {error.strerror}")
            continue
        if gone:
            removed(queueID)
            count += 1
    return count


__all__ = [
    "ACTIVE",
    "EMPTY_ADDRESS",
    "QueueEntry",
    "deleteMessage",
    "deleteMessages",
    "externalAddress",
    "formatJSON",
    "formatMailq",
    "listQueue",
    "listQueueIDs",
    "queueDirectoryOf",
    "readEntry",
]
