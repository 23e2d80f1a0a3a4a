# -*- test-case-name: tests.test_smtp_serverparser,tests.test_smuggling -*-
"""
A sans-I/O parser for the client side of an SMTP server conversation.

Bytes go in with L{ServerParser.receive}; events come out, one at a time,
from L{ServerParser.nextEvent}.  The parser never acts on its own: the
session pulls the next event only when it is ready for it, and switches the
parser into C{DATA} or C{BDAT} mode between two events.  Pipelined bytes
simply stay buffered meanwhile.

Bare newline handling follows Postfix's C{smtpd_forbid_bare_newline}
(3.7.10 and later, see postfix.md section 3):

  - C{"no"}: a bare LF ends lines everywhere, and a "." line ends C{DATA}
    whatever its neighbours' line endings are.  This is how SMTP smuggling
    works; it is kept only for compatibility.
  - C{"normalize"}: a line ending in a bare LF is taken as if it ended in
    CRLF, but a "." line ends C{DATA} only if it was terminated by CRLF and
    the line before it was too; a "." line next to a bare LF is silently
    dropped.  A message can therefore never be split in two.
  - C{"reject"}: as C{"normalize"}; the events carry C{bareLineFeed} so that
    the session can reject the message, or disconnect on a command.

Whatever the mode, content comes out with CRLF line endings only and no
stray CR or LF, so nothing smuggled can reach the next hop.
"""

from __future__ import annotations

from typing import Optional

from ._events import (
    ChunkContent,
    Command,
    DataContent,
    EndOfChunk,
    EndOfData,
    Event,
)

_CR = 0x0D
_LF = 0x0A
_DOT = 0x2E

_BARE_NEWLINE_MODES = ("no", "normalize", "reject")

_COMMAND = 0
_DATA = 1
_CHUNK = 2


def _normalize(data: bytes) -> tuple[bytes, bool]:
    """
    Make every line ending in C{data} a CRLF and replace stray CRs by spaces.

    The caller guarantees that C{data} does not end in a CR (that CR might be
    the first half of a CRLF split across two receives).  This works on the
    whole chunk with C{bytes.count} and C{bytes.replace}, which run at
    C speed; the common case (clean CRLF content) costs three counts and no
    copy.

    @param data: Raw content.
    @return: The normalised content, and whether it contained a bare LF.
    """
    lf = data.count(b"\n")
    crlf = data.count(b"\r\n")
    bare = lf != crlf
    if bare or data.count(b"\r") != crlf:
        # Collapse CRLF to LF first so that the only CRs left are stray ones,
        # then expand every LF, including the bare ones, back to CRLF.
        data = (
            data.replace(b"\r\n", b"\n").replace(b"\r", b" ").replace(b"\n", b"\r\n")
        )
    return data, bare


#: Translation tables that turn every CR (or every LF) into 1 and every
#: other byte into 0.
_CR_MASK = bytes(int(byte == _CR) for byte in range(256))
_LF_MASK = bytes(int(byte == _LF) for byte in range(256))


def _isClean(buf: bytearray, end: int) -> bool:
    """
    Whether C{buf[:end]} has CRLF line endings only: no bare LF and no CR
    that is not followed by a LF.

    Counting CR, LF and CRLF takes three scans, one of them for a two-byte
    pattern, which runs at about a byte per nanosecond.  Instead, the CR
    and LF positions become two masks (C{bytes.translate}, several times
    faster), and the data is clean when the CR mask is the LF mask moved
    back by one byte: one C{memcmp}.

    @param buf: The bytes.
    @param end: Where the check stops (at most C{len(buf)}).
    @return: C{True} if clean.
    """
    if end == 0:
        return True
    crs = buf.translate(_CR_MASK)
    lfs = buf.translate(_LF_MASK)
    if lfs[0] or crs[end - 1]:
        # A LF with nothing before it, or a CR with nothing after it.
        return False
    # For every i below end - 1: a CR at i exactly when a LF at i + 1.
    with memoryview(lfs) as view:
        return crs.startswith(view[1:end])


#: How many dots L{_findDotLine} looks at one by one before it searches for
#: the whole pattern instead.
_SPARSE_DOTS = 8


def _findDotLine(buf: bytearray, start: int, end: int) -> int:
    """
    C{buf.find(b"\\r\\n.", start, end)}, faster where dots are rare.

    A search for a three-byte pattern runs at one or two bytes per
    nanosecond; a search for one byte (C{memchr}) is ten times faster.
    Large content is mostly base64, which has no dots at all, and headers
    have a few: so the dots are looked at one at a time, each checked for
    the CRLF before it, and only content with many dots (prose) goes on
    with the pattern search from the last dot seen.

    @param buf: The bytes.
    @param start: Where the search starts.
    @param end: Where it stops.
    @return: The index of the CR, or -1.
    """
    dot = buf.find(b".", start + 2, end)
    for _ in range(_SPARSE_DOTS):
        if dot == -1:
            return -1
        if buf[dot - 1] == _LF and buf[dot - 2] == _CR:
            return dot - 2
        dot = buf.find(b".", dot + 1, end)
    if dot == -1:
        return -1
    # A match ends at this dot or later, so it starts at dot - 2 or later.
    return buf.find(b"\r\n.", dot - 2, end)


def _take(buf: bytearray, start: int, end: int) -> bytes:
    """
    C{bytes(buf[start:end])} with one copy instead of two: slicing a
    C{bytearray} makes a new C{bytearray} first, which costs more than the
    copy itself for content-sized pieces.

    @param buf: The buffer; not resized while the view exists.
    @param start: The first index.
    @param end: The index after the last.
    @return: The bytes.
    """
    with memoryview(buf) as view:
        return bytes(view[start:end])


def _parseCommand(line: bytes, bareLineFeed: bool, truncated: bool) -> Command:
    """
    Split a command line into its verb and argument.

    @param line: The line without terminator.
    @param bareLineFeed: See L{Command.bareLineFeed}.
    @param truncated: See L{Command.truncated}.
    @return: The command.
    """
    parts = line.split(None, 1)
    if not parts:
        return Command("", "", line, bareLineFeed, truncated)
    # bytes.upper() only changes ASCII letters, as Postfix's case-insensitive
    # command lookup does; non-ASCII bytes survive for the UTF-8 check.
    verb = parts[0].upper().decode("utf-8", "surrogateescape")
    argument = (
        parts[1].rstrip().decode("utf-8", "surrogateescape") if len(parts) > 1 else ""
    )
    return Command(verb, argument, line, bareLineFeed, truncated)


class ServerParser:
    """
    Turn the bytes an SMTP client sends into L{Command}, L{DataContent},
    L{EndOfData}, L{ChunkContent} and L{EndOfChunk} events.

    Memory is bounded: in command mode, at most C{lineLengthLimit} bytes of
    an incomplete line are kept once L{nextEvent} has been called; in
    C{DATA} and C{BDAT} mode content is handed out as soon as it arrives,
    keeping back only the two or three bytes needed to recognise a line
    ending or an end-of-data marker split across receives.

    @ivar contentBytes: The number of content bytes returned so far for the
        current C{DATA} or C{BDAT} message, for C{timeout after DATA (N
        bytes)}.
    """

    contentBytes: int

    def __init__(
        self, *, lineLengthLimit: int = 2048, bareNewline: str = "normalize"
    ) -> None:
        """
        @param lineLengthLimit: Postfix's C{line_length_limit}: the longest
            command line kept; longer ones are truncated.
        @param bareNewline: One of C{"no"}, C{"normalize"} and C{"reject"}
            (the caller maps Postfix's C{"yes"} to C{"normalize"}).
        @raise ValueError: For any other C{bareNewline} or a limit below 1.
        """
        if bareNewline not in _BARE_NEWLINE_MODES:
            raise ValueError(f"bareNewline must be one of {_BARE_NEWLINE_MODES}")
        if lineLengthLimit < 1:
            raise ValueError("lineLengthLimit must be at least 1")
        self._limit = lineLengthLimit
        self._strictEnd = bareNewline != "no"
        self._buffer = bytearray()
        self._mode = _COMMAND
        self.contentBytes = 0

        # Command mode: the kept start of an overlong line while the rest of
        # it is being skipped.
        self._skipping = False
        self._kept = b""
        self._skippedBytes = 0
        self._lastSkippedCR = False

        # DATA mode.
        self._atLineStart = True
        self._previousBareLineFeed = False
        self._sawBareLineFeed = False

        # BDAT mode.
        self._chunkRemaining = 0
        self._chunkLast = False
        self._chunkPendingCR = False
        self._inChunkedMessage = False

    def receive(self, data: bytes) -> None:
        """
        Append bytes received from the client.  Nothing is parsed until
        L{nextEvent} is called.

        @param data: The bytes.
        """
        self._buffer += data

    def buffered(self) -> int:
        """
        @return: How many received bytes have not been returned as events yet
            (including the kept start of an overlong command line).
        """
        return len(self._buffer) + len(self._kept)

    def peek(self, limit: int) -> bytes:
        """
        Up to C{limit} of the bytes received but not yet parsed, without
        consuming them (for Postfix's "improper command pipelining" log).

        @param limit: How many bytes at most.
        @return: The bytes.
        """
        return bytes(self._buffer[:limit])

    def discardBuffered(self) -> int:
        """
        Drop every byte received but not yet returned as an event.  After
        C{STARTTLS} this is what defeats plaintext command injection
        (CVE-2011-0411), as Postfix does.

        @return: How many bytes were dropped.
        """
        count = self.buffered()
        self._buffer.clear()
        self._kept = b""
        self._skipping = False
        self._skippedBytes = 0
        self._lastSkippedCR = False
        return count

    def startData(self) -> None:
        """
        The server has sent its C{354}: the following bytes are message
        content, up to the end-of-data marker.  Call this before the next
        L{nextEvent}.
        """
        self._mode = _DATA
        self._atLineStart = True
        self._previousBareLineFeed = False
        self._sawBareLineFeed = False
        self._inChunkedMessage = False
        self.contentBytes = 0

    def startChunk(self, size: int, last: bool) -> None:
        """
        A C{BDAT} command was accepted: the next C{size} bytes are a chunk of
        message content.  Call this before the next L{nextEvent}.

        @param size: The chunk size from the C{BDAT} command.
        @param last: Whether the command said C{LAST}.
        @raise ValueError: If C{size} is negative.
        """
        if size < 0:
            raise ValueError("chunk size must not be negative")
        if not self._inChunkedMessage:
            # The first chunk of a message.
            self._inChunkedMessage = True
            self._chunkPendingCR = False
            self._sawBareLineFeed = False
            self.contentBytes = 0
        self._mode = _CHUNK
        self._chunkRemaining = size
        self._chunkLast = last

    def nextEvent(self) -> Optional[Event]:
        """
        Parse one event from the buffered bytes.

        @return: The event, or C{None} if more bytes are needed.
        """
        if self._mode == _COMMAND:
            return self._nextCommand()
        if self._mode == _DATA:
            return self._nextData()
        return self._nextChunk()

    # Command mode.

    def _nextCommand(self) -> Optional[Command]:
        buf = self._buffer
        end = buf.find(b"\n")
        if self._skipping:
            if end == -1:
                if buf:
                    self._skippedBytes += len(buf)
                    self._lastSkippedCR = buf[-1] == _CR
                    buf.clear()
                return None
            if end > 0:
                self._skippedBytes += end
                self._lastSkippedCR = buf[end - 1] == _CR
            line = self._kept
            bare = not self._lastSkippedCR
            # A lone CR in the skipped part is just the terminator's first
            # half: the line itself was not too long.
            truncated = self._skippedBytes > (0 if bare else 1)
            del buf[: end + 1]
            self._kept = b""
            self._skipping = False
            self._skippedBytes = 0
            self._lastSkippedCR = False
            return _parseCommand(line, bare, truncated)
        if end == -1:
            if len(buf) > self._limit:
                # Keep the start for the truncated command, drop the rest
                # now so that a client cannot make us buffer an endless line.
                self._kept = bytes(buf[: self._limit])
                self._skipping = True
                self._skippedBytes = len(buf) - self._limit
                self._lastSkippedCR = buf[-1] == _CR
                buf.clear()
            return None
        bare = end == 0 or buf[end - 1] != _CR
        lineEnd = end if bare else end - 1
        truncated = lineEnd > self._limit
        line = bytes(buf[: min(lineEnd, self._limit)])
        del buf[: end + 1]
        return _parseCommand(line, bare, truncated)

    # DATA mode.

    #: Whether L{_nextData} may take the fast path for clean input (the
    #: tests turn it off to compare both paths).
    _cleanFastPath = True

    def _nextData(self) -> Optional[Event]:
        buf = self._buffer
        n = len(buf)
        pos = 0
        parts: list[bytes] = []
        # The usual content is clean: CRLF line endings only, no stray CR.
        # Then every "\n." is the tail of a "\r\n.", which the search
        # finds faster (a longer pattern skips further), and the content
        # needs no normalisation.  A final CR is left out of the check: it
        # is kept back below, and only the next byte tells what it is.  The
        # check waits for the first search: an end-of-data marker alone
        # needs none.
        scanEnd = n - 1 if n and buf[n - 1] == _CR else n
        clean: Optional[bool] = None
        while True:
            if self._atLineStart and pos < n and buf[pos] == _DOT:
                if pos + 1 >= n:
                    break
                second = buf[pos + 1]
                if second == _LF:
                    length = 2
                    bareDotLine = True
                elif second == _CR:
                    if pos + 2 >= n:
                        break
                    if buf[pos + 2] != _LF:
                        # ".\rX": an ordinary line, unstuffed.
                        pos += 1
                        self._atLineStart = False
                        continue
                    length = 3
                    bareDotLine = False
                else:
                    # Dot-stuffed line: drop the first dot (RFC 5321 4.5.2).
                    pos += 1
                    self._atLineStart = False
                    continue
                # A "." line.
                if bareDotLine:
                    self._sawBareLineFeed = True
                isEnd = not self._strictEnd or not (
                    bareDotLine or self._previousBareLineFeed
                )
                if isEnd:
                    if parts:
                        # Deliver the content first; the marker stays
                        # buffered for the next call.
                        break
                    del buf[: pos + length]
                    self._mode = _COMMAND
                    return EndOfData(self.contentBytes, self._sawBareLineFeed)
                # A "." line next to a bare LF: silently dropped, as Postfix
                # does, so that neither this server nor the next hop can
                # take it as the end of the message.
                pos += length
                self._previousBareLineFeed = bareDotLine
                continue
            if pos >= n:
                break
            if clean is None:
                # A message that had a bare LF is likely to have more: it
                # goes on by the general path without checking again.
                clean = (
                    self._cleanFastPath
                    and not self._sawBareLineFeed
                    and _isClean(buf, scanEnd)
                )
            if clean:
                # No "\n" at pos itself: bytes before pos are never a CR,
                # so that LF would have been bare.
                lf = _findDotLine(buf, pos, scanEnd)
                if lf != -1:
                    lf += 1
            else:
                lf = buf.find(b"\n.", pos)
            if lf == -1:
                end = n
                # Keep back a final CR: whether it is a line ending or a
                # stray CR depends on the next byte.
                if buf[end - 1] == _CR:
                    end -= 1
                if end > pos:
                    parts.append(_take(buf, pos, end))
                    self._atLineStart = buf[end - 1] == _LF
                    if self._atLineStart:
                        self._previousBareLineFeed = end < 2 or buf[end - 2] != _CR
                    pos = end
                break
            parts.append(_take(buf, pos, lf + 1))
            # Bytes consumed before pos are never a CR (a kept-back CR is
            # always still in the buffer), so a LF at pos is bare.
            self._previousBareLineFeed = lf == pos or buf[lf - 1] != _CR
            self._atLineStart = True
            pos = lf + 1
        del buf[:pos]
        if not parts:
            return None
        if clean:
            # Pieces of clean bytes, cut at line starts or after a dot
            # between a LF and an ordinary byte: still clean once joined.
            data, bare = b"".join(parts), False
        else:
            data, bare = _normalize(b"".join(parts))
        if bare:
            self._sawBareLineFeed = True
        if not data:
            return None
        self.contentBytes += len(data)
        return DataContent(data)

    # BDAT mode.

    def _nextChunk(self) -> Optional[Event]:
        buf = self._buffer
        take = min(self._chunkRemaining, len(buf))
        finishing = take == self._chunkRemaining
        if take:
            raw = _take(buf, 0, take)
            del buf[:take]
            self._chunkRemaining -= take
            if self._chunkPendingCR:
                raw = b"\r" + raw
                self._chunkPendingCR = False
            # Keep back a final CR: the next chunk may start with its LF.  At
            # the very end of the message it is a stray CR.
            if raw.endswith(b"\r") and not (finishing and self._chunkLast):
                raw = raw[:-1]
                self._chunkPendingCR = True
            data, bare = _normalize(raw)
            if bare:
                self._sawBareLineFeed = True
            if data:
                self.contentBytes += len(data)
                return ChunkContent(data)
        if not finishing:
            return None
        if self._chunkLast and self._chunkPendingCR:
            # A zero-length LAST chunk after a chunk that ended in CR.
            self._chunkPendingCR = False
            self.contentBytes += 1
            return ChunkContent(b" ")
        last = self._chunkLast
        self._mode = _COMMAND
        if last:
            self._inChunkedMessage = False
        return EndOfChunk(last, self.contentBytes, self._sawBareLineFeed)
