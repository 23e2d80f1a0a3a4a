# -*- test-case-name: tests.test_queue_format -*-
"""
The queue file format, version 1 (see C{docs/queue-format.md}): a text
header, a blank line, then the message content as received.

This module is sans I/O: it turns envelopes into header bytes and bytes back
into envelopes.  The store and the delivery agents do the reading and
writing.
"""

from __future__ import annotations

import enum
import re

from attrs import frozen

from ._envelope import Envelope

#: The first line of every queue file: the magic and the format version.
MAGIC = b"MTAGUARD-QUEUE"
VERSION = 1

#: Width of the C{size} field, written as a placeholder when the file is
#: created and rewritten in place when the message is committed.
SIZE_WIDTH = 20

#: The placeholder of the C{size} field: a file that still holds it was
#: never committed.
SIZE_PLACEHOLDER = b"-" * SIZE_WIDTH


class QueueFormatError(ValueError):
    """
    The bytes are not a complete queue file of a version this code reads.
    """


class RecipientStatus(enum.Enum):
    """
    The one-byte status field of a recipient line.  It is rewritten in place
    (one byte cannot be torn by a crash) and fsync'ed once the recipient is
    done, so that a restart does not deliver to it again.
    """

    PENDING = b"P"
    DELIVERED = b"D"
    BOUNCED = b"B"

    @property
    def done(self) -> bool:
        """
        Whether nothing more is to be done for a recipient in this state.
        """
        return self is not RecipientStatus.PENDING


@frozen
class QueuedRecipient:
    """
    One recipient line of a queue file.

    @ivar address: the recipient address.
    @ivar status: its delivery status.
    @ivar statusOffset: the byte offset of the status field in the file,
        where L{RecipientStatus} values are written in place.
    """

    address: str
    status: RecipientStatus
    statusOffset: int


@frozen
class QueueFileHeader:
    """
    A parsed queue file header.

    @ivar queueID: the queue ID the file was written under.
    @ivar envelope: the envelope (all recipients, done or not).
    @ivar recipients: the recipient lines with status and offsets, in the
        order of C{envelope.recipients}.
    @ivar size: the length of the content in bytes.
    @ivar contentOffset: the offset of the first byte of content.
    """

    queueID: str
    envelope: Envelope
    recipients: tuple[QueuedRecipient, ...]
    size: int
    contentOffset: int

    @property
    def pending(self) -> tuple[QueuedRecipient, ...]:
        """
        The recipients not yet done.
        """
        return tuple(r for r in self.recipients if not r.status.done)


@frozen
class EncodedHeader:
    """
    A header ready to be written at the start of a new queue file.

    @ivar data: the header bytes, blank line included.
    @ivar sizeOffset: the offset of the C{size} field, rewritten at commit
        with L{encodeSize}.
    """

    data: bytes
    sizeOffset: int
    #: The offsets of the recipients' status fields, in the order of the
    #: envelope's recipients.
    recipientOffsets: tuple[int, ...] = ()

    def committedHeader(self, queueID: str, envelope: Envelope, size: int) -> QueueFileHeader:
        """
        The header as L{parseHeader} reads it back once the message is
        committed with C{size} bytes of content, every recipient pending.
        """
        return QueueFileHeader(
            queueID=queueID,
            envelope=envelope,
            recipients=tuple(
                QueuedRecipient(address, RecipientStatus.PENDING, offset)
                for address, offset in zip(envelope.recipients, self.recipientOffsets)
            ),
            size=size,
            contentOffset=len(self.data),
        )


# Bytes that would break the line structure (controls, space, DEL) or the
# escaping itself; everything else, UTF-8 included, is written as it is so
# that SMTPUTF8 addresses stay readable with less(1).
_ESCAPED = frozenset(range(0x21)) | {0x25, 0x7F}
_ESCAPED_IN_NAMES = _ESCAPED | {0x3D}


def _escape(text: str, escaped: frozenset[int] = _ESCAPED) -> bytes:
    # surrogatepass: an address decoded with surrogateescape (8-bit bytes
    # that are not UTF-8) must survive the round trip too.
    raw = text.encode("utf-8", "surrogatepass")
    if not any(byte in escaped for byte in raw):
        return raw
    return b"".join(b"%%%02X" % byte if byte in escaped else bytes((byte,)) for byte in raw)


_PERCENT = re.compile(rb"%([0-9A-F]{2})")


def _unescape(raw: bytes) -> str:
    if any(byte in _ESCAPED and byte != 0x25 for byte in raw):
        raise QueueFormatError(f"unescaped byte in field value {raw!r}")
    if b"%" in raw:
        if raw.count(b"%") != len(_PERCENT.findall(raw)):
            raise QueueFormatError(f"bad escape in {raw!r}")
        raw = _PERCENT.sub(lambda match: bytes((int(match.group(1), 16),)), raw)
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as e:
        raise QueueFormatError(f"field is not UTF-8: {raw!r}") from e


def encodeSize(size: int) -> bytes:
    """
    @return: the C{size} field's value for C{size} bytes of content, to be
        written at L{EncodedHeader.sizeOffset}.
    """
    if not 0 <= size < 10**SIZE_WIDTH:
        raise ValueError(f"size out of range: {size}")
    return b"%0*d" % (SIZE_WIDTH, size)


def encodeHeader(queueID: str, envelope: Envelope) -> EncodedHeader:
    """
    Encode the header of a new queue file, every recipient pending and the
    size a placeholder.
    """
    lines = [b"%s %d" % (MAGIC, VERSION), b"queue_id " + _escape(queueID)]
    sizeOffset = sum(len(line) + 1 for line in lines) + len(b"size ")
    lines.append(b"size " + SIZE_PLACEHOLDER)
    lines.append(b"arrival " + repr(float(envelope.arrival)).encode("ascii"))
    lines.append(b"sender " + _escape(envelope.sender))
    for name, value in envelope.parameters:
        line = b"parameter " + _escape(name, _ESCAPED_IN_NAMES)
        if value is not None:
            line += b"=" + _escape(value)
        lines.append(line)
    lines.append(b"client_address " + _escape(envelope.clientAddress))
    lines.append(b"client_port %d" % (envelope.clientPort,))
    lines.append(b"client_name " + _escape(envelope.clientName))
    lines.append(b"helo " + _escape(envelope.helo))
    lines.append(b"protocol " + _escape(envelope.protocol))
    lines.append(b"tls " + (b"yes" if envelope.tls else b"no"))
    if envelope.authUser is not None:
        lines.append(b"auth_user " + _escape(envelope.authUser))
    offset = sum(len(line) + 1 for line in lines)
    recipientOffsets = []
    for recipient in envelope.recipients:
        line = b"recipient " + RecipientStatus.PENDING.value + b" " + _escape(recipient)
        recipientOffsets.append(offset + len(b"recipient "))
        offset += len(line) + 1
        lines.append(line)
    return EncodedHeader(b"\n".join(lines) + b"\n\n", sizeOffset, tuple(recipientOffsets))


# Fields that appear exactly once, and their parsers.
_SINGLE_FIELDS = (
    b"queue_id",
    b"size",
    b"arrival",
    b"sender",
    b"client_address",
    b"client_port",
    b"client_name",
    b"helo",
    b"protocol",
    b"tls",
    b"auth_user",
)
_REQUIRED_FIELDS = frozenset(_SINGLE_FIELDS) - {b"auth_user"}
_INTEGER = re.compile(rb"-?[0-9]+\Z")


def parseHeader(data: bytes) -> QueueFileHeader:
    """
    Parse the header at the start of C{data}, which may continue with any
    amount of the content.

    @raise QueueFormatError: if C{data} does not start with a complete,
        committed version-1 header.
    """
    end = data.find(b"\n\n")
    if end < 0:
        raise QueueFormatError("no end of header")
    lines = data[:end].split(b"\n")
    if lines[0] != b"%s %d" % (MAGIC, VERSION):
        if lines[0].startswith(MAGIC + b" "):
            raise QueueFormatError(f"unsupported queue file version: {lines[0]!r}")
        raise QueueFormatError("not a queue file")
    single: dict[bytes, bytes] = {}
    parameters: list[tuple[str, str | None]] = []
    recipients: list[QueuedRecipient] = []
    offset = len(lines[0]) + 1
    for line in lines[1:]:
        key, space, value = line.partition(b" ")
        if not space:
            raise QueueFormatError(f"malformed header line {line!r}")
        if key == b"recipient":
            statusByte, space, address = value.partition(b" ")
            if not space:
                raise QueueFormatError(f"malformed recipient line {line!r}")
            try:
                status = RecipientStatus(statusByte)
            except ValueError:
                raise QueueFormatError(f"unknown recipient status {statusByte!r}") from None
            recipients.append(QueuedRecipient(_unescape(address), status, offset + len(b"recipient ")))
        elif key == b"parameter":
            name, equals, parameterValue = value.partition(b"=")
            parameters.append((_unescape(name), _unescape(parameterValue) if equals else None))
        elif key in _SINGLE_FIELDS:
            if key in single:
                raise QueueFormatError(f"repeated field {key!r}")
            single[key] = value
        else:
            raise QueueFormatError(f"unknown field {key!r}")
        offset += len(line) + 1
    missing = _REQUIRED_FIELDS - single.keys()
    if missing:
        raise QueueFormatError(f"missing fields: {sorted(missing)!r}")
    if single[b"size"] == SIZE_PLACEHOLDER:
        raise QueueFormatError("queue file was never committed")
    if len(single[b"size"]) != SIZE_WIDTH or not single[b"size"].isdigit():
        raise QueueFormatError(f"bad size {single[b'size']!r}")
    if not _INTEGER.match(single[b"client_port"]):
        raise QueueFormatError(f"bad client_port {single[b'client_port']!r}")
    if single[b"tls"] not in (b"yes", b"no"):
        raise QueueFormatError(f"bad tls {single[b'tls']!r}")
    try:
        arrival = float(single[b"arrival"].decode("ascii"))
    except ValueError:
        raise QueueFormatError(f"bad arrival {single[b'arrival']!r}") from None
    authUser = single.get(b"auth_user")
    envelope = Envelope(
        sender=_unescape(single[b"sender"]),
        recipients=tuple(r.address for r in recipients),
        parameters=tuple(parameters),
        clientAddress=_unescape(single[b"client_address"]),
        clientPort=int(single[b"client_port"]),
        clientName=_unescape(single[b"client_name"]),
        helo=_unescape(single[b"helo"]),
        protocol=_unescape(single[b"protocol"]),
        tls=single[b"tls"] == b"yes",
        authUser=None if authUser is None else _unescape(authUser),
        arrival=arrival,
    )
    return QueueFileHeader(
        queueID=_unescape(single[b"queue_id"]),
        envelope=envelope,
        recipients=tuple(recipients),
        size=int(single[b"size"]),
        contentOffset=end + 2,
    )


@frozen
class QueueFile:
    """
    A whole queue file, parsed.

    @ivar header: the header.
    @ivar content: the message content.
    """

    header: QueueFileHeader
    content: bytes


def encodeQueueFile(queueID: str, envelope: Envelope, content: bytes) -> bytes:
    """
    Encode a complete, committed queue file with every recipient pending:
    what the store leaves in C{active/} for this message.
    """
    header = encodeHeader(queueID, envelope)
    data = bytearray(header.data)
    data[header.sizeOffset : header.sizeOffset + SIZE_WIDTH] = encodeSize(len(content))
    return bytes(data) + content


def parseQueueFile(data: bytes) -> QueueFile:
    """
    Parse a complete queue file.

    @raise QueueFormatError: if it is not a committed version-1 queue file or
        its content is shorter or longer than its C{size} field says.
    """
    header = parseHeader(data)
    content = data[header.contentOffset :]
    if len(content) != header.size:
        raise QueueFormatError(f"content is {len(content)} bytes, header says {header.size}")
    return QueueFile(header, content)
