# -*- test-case-name: tests.test_client_replyparser -*-
"""
A sans-I/O parser for the replies an SMTP server sends to our client.

Bytes go in with L{ReplyParser.receive}; complete replies come out, one at a
time, from L{ReplyParser.nextReply}.  Pulling one reply at a time (rather
than returning every reply a segment contained) is what lets the session
stop at the C{220} to C{STARTTLS} and throw away, unread, whatever a man in
the middle appended to it (L{ReplyParser.discardBuffered}).

Memory is bounded three ways, because the next hop may be hostile: a reply
line longer than C{lineLengthLimit} (Postfix's C{line_length_limit}, 2048)
is an error, not a growing buffer; so is a reply of more than C{maxLines}
lines; and bytes that pile up unparsed (a server that talks while we are
not listening) beyond C{maxBuffered} are an error too.  After an error the
parser is finished: the connection cannot be trusted to be in step any more,
so the session defers what it was doing and drops it.

Reply text is made printable before anyone sees it, as Postfix's
C{smtp_chat_resp} does with C{printable(..., '?')}: ASCII control
characters, DEL and undecodable bytes become C{?}, so that reply text can go
into logs and bounce messages without escaping surprises.
"""

from __future__ import annotations

import re
from typing import Optional, Union

from attrs import frozen

__all__ = [
    "MalformedReply",
    "ReplyEvent",
    "ReplyParser",
    "ServerReply",
    "parseEhlo",
]

# RFC 3463 status code at the start of a reply line: class.subject.detail.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?= |$)")
# RFC 5321 ehlo-keyword.
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
# Controls and DEL to "?"; U+FFFD stands for the bytes that were not UTF-8.
_PRINTABLE = {c: "?" for c in [*range(0x20), 0x7F, 0xFFFD]}


@frozen
class ServerReply:
    """
    One complete reply from the server.

    @ivar code: The three-digit reply code, the same on every line.
    @ivar enhanced: The RFC 3463 enhanced status code from the first line
        (C{"5.1.1"}), or C{None} if the server gave none or gave one whose
        class does not match the reply code.
    @ivar lines: The text of each line after the code and separator, with
        the enhanced status code removed where it repeats it.  Never empty.
    """

    code: int
    enhanced: Optional[str]
    lines: tuple[str, ...]

    @property
    def dsn(self) -> str:
        """
        The enhanced status code to report for this reply: the server's, or
        C{X.0.0} for reply class X, as Postfix does when a server gives none.
        """
        return self.enhanced or f"{self.code // 100}.0.0"

    def __str__(self) -> str:
        """
        The reply on one line, as Postfix quotes it in logs and bounces:
        C{550 5.1.1 text}, the lines of a multi-line reply joined by spaces.
        """
        text = " ".join(line for line in self.lines if line)
        parts = [str(self.code)]
        if self.enhanced:
            parts.append(self.enhanced)
        if text:
            parts.append(text)
        return " ".join(parts)


@frozen
class MalformedReply:
    """
    The server sent something that is not a well-formed reply, or too much
    of it.  The parser stops here; the session defers and disconnects.

    @ivar reason: What was wrong, for the log and the deferral reason.
    @ivar line: Up to 100 bytes of the offending line, raw (escape it with
        L{mtaguard.smtp.escapeForLog} before logging).
    """

    reason: str
    line: bytes


ReplyEvent = Union[ServerReply, MalformedReply]


def _printable(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").translate(_PRINTABLE)


class ReplyParser:
    """
    Turn the bytes an SMTP server sends into L{ServerReply} events.

    A line ends in LF, with or without a CR before it (Postfix's client is
    as tolerant; a bare LF cannot smuggle anything into our own decisions).
    Each line is C{NNN-text} (more lines follow), C{NNN text} or C{NNN} (the
    last line); the code's first digit is 2 to 5; every line of one reply
    has the same code.  Anything else is a L{MalformedReply}.
    """

    def __init__(
        self,
        *,
        lineLengthLimit: int = 2048,
        maxLines: int = 100,
        maxBuffered: Optional[int] = None,
    ) -> None:
        """
        @param lineLengthLimit: The longest reply line accepted, in bytes,
            without its terminator (Postfix's C{line_length_limit}).
        @param maxLines: The most lines one reply may have.  An EHLO reply
            has about 15; 100 leaves room for chatty greetings.
        @param maxBuffered: The most bytes kept unparsed; by default
            C{lineLengthLimit * maxLines}, enough for every reply a
            pipelined group can legitimately produce in one read.
        @raise ValueError: If a limit is below 1.
        """
        if lineLengthLimit < 1 or maxLines < 1:
            raise ValueError("limits must be at least 1")
        self._limit = lineLengthLimit
        self._maxLines = maxLines
        self._maxBuffered = (
            maxBuffered if maxBuffered is not None else lineLengthLimit * maxLines
        )
        if self._maxBuffered < 1:
            raise ValueError("maxBuffered must be at least 1")
        self._buffer = bytearray()
        # Texts of the lines of the reply being assembled.
        self._lines: list[bytes] = []
        # How many raw bytes those lines took on the wire.
        self._linesBytes = 0
        self._code = b""
        self._error: Optional[MalformedReply] = None
        self._reported = False

    @property
    def failed(self) -> bool:
        """
        Whether the parser has met malformed or excessive input; it then
        returns nothing further.
        """
        return self._error is not None

    def receive(self, data: bytes) -> None:
        """
        Append bytes received from the server.  Nothing is parsed until
        L{nextReply} is called.

        @param data: The bytes.
        """
        if self._error is not None:
            return
        self._buffer += data
        if len(self._buffer) > self._maxBuffered:
            self._fail(
                f"more than {self._maxBuffered} bytes of unread server output",
                bytes(self._buffer[:100]),
            )

    def buffered(self) -> int:
        """
        @return: How many received bytes are not part of a returned reply
            yet, including the lines of an incomplete multi-line reply.
        """
        return len(self._buffer) + self._linesBytes

    def discardBuffered(self) -> int:
        """
        Drop everything received but not yet returned as a reply, including
        a partial multi-line reply.  Called after the server's C{220} to
        C{STARTTLS}: anything it sent beyond that reply came in plaintext
        before the handshake and must never be acted on (the NO STARTTLS
        response-injection class; Postfix purges its stream the same way).

        @return: How many bytes were dropped, for the warning.
        """
        count = self.buffered()
        self._buffer.clear()
        self._lines.clear()
        self._linesBytes = 0
        self._code = b""
        return count

    def feed(self, data: bytes) -> list[ReplyEvent]:
        """
        Receive C{data} and return every reply now complete.  Convenient
        where nothing can be injected; the session uses L{receive} and
        L{nextReply} instead so that it can stop after any reply.

        @param data: The bytes.
        @return: The complete replies in order, ending with a
            L{MalformedReply} if the input went wrong.
        """
        self.receive(data)
        events: list[ReplyEvent] = []
        while (event := self.nextReply()) is not None:
            events.append(event)
        return events

    def nextReply(self) -> Optional[ReplyEvent]:
        """
        Parse one reply from the buffered bytes.

        @return: The reply; a L{MalformedReply} once (after which C{None}
            forever); or C{None} if more bytes are needed.
        """
        if self._error is not None:
            return self._report()
        buf = self._buffer
        start = 0
        try:
            while True:
                end = buf.find(b"\n", start)
                if end == -1:
                    if len(buf) - start > self._limit + 1:
                        # +1: the CR of a CRLF whose LF has not come yet.
                        self._fail(
                            f"reply line longer than {self._limit} bytes",
                            bytes(buf[start : start + 100]),
                        )
                        return self._report()
                    return None
                lineEnd = end - 1 if end > start and buf[end - 1] == 0x0D else end
                line = bytes(buf[start:lineEnd])
                lineBytes = end + 1 - start
                start = end + 1
                if len(line) > self._limit:
                    self._fail(f"reply line longer than {self._limit} bytes", line[:100])
                    return self._report()
                code = line[:3]
                separator = line[3:4]
                if not (
                    len(code) == 3
                    and code.isdigit()
                    and code[0] in b"2345"
                    and separator in (b"", b" ", b"-")
                ):
                    self._fail("not an SMTP reply line", line[:100])
                    return self._report()
                if self._lines and code != self._code:
                    self._fail("reply code changed within a multi-line reply", line[:100])
                    return self._report()
                if len(self._lines) >= self._maxLines:
                    self._fail(f"reply longer than {self._maxLines} lines", line[:100])
                    return self._report()
                self._code = code
                self._lines.append(line[4:])
                self._linesBytes += lineBytes
                if separator != b"-":
                    return self._complete()
        finally:
            del buf[:start]

    def _complete(self) -> ServerReply:
        code = int(self._code)
        texts = [_printable(raw) for raw in self._lines]
        self._lines.clear()
        self._linesBytes = 0
        self._code = b""
        enhanced: Optional[str] = None
        match = _ENHANCED.match(texts[0])
        if match is not None and int(match.group(1)) == code // 100:
            enhanced = match.group(0)
            # Servers repeat the code on every line (RFC 2034); drop it
            # wherever they do so that the text reads as one sentence.
            prefix = enhanced + " "
            texts = [
                text[len(prefix) :]
                if text.startswith(prefix)
                else ("" if text == enhanced else text)
                for text in texts
            ]
        return ServerReply(code, enhanced, tuple(texts))

    def _fail(self, reason: str, line: bytes) -> None:
        self._error = MalformedReply(reason, line)
        self._buffer.clear()
        self._lines.clear()
        self._linesBytes = 0

    def _report(self) -> Optional[MalformedReply]:
        if self._reported:
            return None
        self._reported = True
        return self._error


def parseEhlo(reply: ServerReply) -> dict[str, str]:
    """
    The service extensions a 2xx EHLO reply announces.

    The first line is the server's name and greeting, not an extension.
    Each further line is a keyword and optional parameters: the keyword is
    upper-cased, the parameters are kept as one space-separated string
    (C{"PLAIN LOGIN"} for C{AUTH PLAIN LOGIN}, C{"10240000"} for C{SIZE
    10240000}, C{""} for C{PIPELINING}).  Lines that are not an RFC 5321
    ehlo-line are ignored, as is a repeated keyword.  The pre-RFC
    C{AUTH=PLAIN LOGIN} form counts as C{AUTH} when no proper C{AUTH} line
    is present (Postfix accepts it too).

    @param reply: The EHLO reply.
    @return: The extensions by keyword.
    """
    extensions: dict[str, str] = {}
    legacyAuth: Optional[str] = None
    for text in reply.lines[1:]:
        words = text.split()
        if not words:
            continue
        keyword = words[0].upper()
        value = " ".join(words[1:])
        if keyword.startswith("AUTH="):
            if legacyAuth is None:
                legacyAuth = " ".join([keyword[5:], value]).strip()
            continue
        if _KEYWORD.match(keyword) is None or keyword in extensions:
            continue
        extensions[keyword] = value
    if legacyAuth is not None and "AUTH" not in extensions:
        extensions["AUTH"] = legacyAuth
    return extensions
