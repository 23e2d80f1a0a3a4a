# -*- test-case-name: tests.test_queue_headers -*-
"""
The Message-ID lines Postfix's cleanup logs for each message it queues
(C{ID: message-id=<...>}), found in the content as it streams into the
queue.

What Postfix 3.7 logs, checked against a private instance: the value of
every C{Message-ID:} and C{Resent-Message-ID:} header of the primary header
section, unfolded, with leading white space removed and trailing white
space kept, the name in lower case; and C{message-id=<>} when the header
section has no Message-ID.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["HEADER_LIMIT", "MessageIDScanner"]

#: Postfix's C{header_size_limit} default: nothing beyond it is taken for
#: header, which also bounds what is buffered here.
HEADER_LIMIT = 102400

_NAMES = {b"message-id": "message-id", b"resent-message-id": "resent-message-id"}


class MessageIDScanner:
    """
    Fed the message content in pieces; reports the Message-ID headers once
    the header section is complete.

    L{feed} and L{end} return L{None} while the header section is still
    open, then, once, the list of C{(name, value)} to log (with
    C{("message-id", "<>")} when there is no Message-ID).
    """

    __slots__ = ("_buffer", "_done")

    def __init__(self) -> None:
        self._buffer = b""
        self._done = False

    def feed(self, data: bytes) -> Optional[list[tuple[str, bytes]]]:
        """
        More content.
        """
        if self._done:
            return None
        buffered = self._buffer + data if self._buffer else data
        end = _headerEnd(buffered)
        if end < 0:
            if len(buffered) < HEADER_LIMIT:
                self._buffer = bytes(buffered)
                return None
            end = HEADER_LIMIT
        end = min(end, HEADER_LIMIT)
        self._buffer = b""
        self._done = True
        return _messageIDs(buffered[:end])

    def end(self) -> Optional[list[tuple[str, bytes]]]:
        """
        The content ended (the message is committed): a header section
        still open ends here.
        """
        if self._done:
            return None
        buffered, self._buffer = self._buffer, b""
        self._done = True
        return _messageIDs(buffered[:HEADER_LIMIT])


def _headerEnd(data: bytes) -> int:
    """
    Where the header section of C{data} ends (the offset of its empty
    line's CRLF, or of the first line that is neither a header nor its
    continuation), or -1 if C{data} does not show it yet.
    """
    if data.startswith(b"\r\n"):
        return 0
    blank = data.find(b"\r\n\r\n")
    limit = len(data) if blank < 0 else blank + 2
    start = 0
    while start < limit:
        stop = data.find(b"\r\n", start, limit)
        if stop < 0:
            # A line not complete yet.
            return -1 if blank < 0 else blank + 2
        line = data[start:stop]
        if line[:1] not in (b" ", b"\t") and not _isHeader(line):
            return start
        start = stop + 2
    return -1 if blank < 0 else blank + 2


def _isHeader(line: bytes) -> bool:
    colon = line.find(b":")
    if colon <= 0:
        return False
    name = line[:colon].rstrip(b" \t")
    # RFC 5322 field names: printable ASCII but the colon.
    return bool(name) and all(33 <= byte <= 126 for byte in name)


def _messageIDs(header: bytes) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    current: Optional[str] = None
    value = b""
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                # Unfolding: the line break goes, the white space stays.
                value += line
            continue
        if current is not None:
            found.append((current, value.lstrip(b" \t")))
            current = None
        colon = line.find(b":")
        if colon <= 0:
            continue
        current = _NAMES.get(line[:colon].rstrip(b" \t").lower())
        value = line[colon + 1 :]
    if current is not None:
        found.append((current, value.lstrip(b" \t")))
    if not any(name == "message-id" for name, _ in found):
        found.append(("message-id", b"<>"))
    return found
