# -*- test-case-name: tests.test_client_content -*-
"""
Turn queued message content into what goes on the wire after C{DATA} or in
C{BDAT} chunks, one chunk at a time.

The content comes from our own queue, where it was stored with CRLF line
endings by L{mtaguard.smtp.ServerParser}; it is still normalised again here
because a bare CR or LF reaching the next hop is an SMTP smuggling vector
(CVE-2023-51764), and the queue file is not the place to stake that on.
The rules are exactly the server parser's, so that what the next hop
receives is what we received:

  - CRLF stays CRLF;
  - a bare LF is a line ending and becomes CRLF (Postfix's smtpd splits
    lines on LF too, so this is how Postfix would have stored it);
  - a stray CR (one not followed by LF) becomes a space, like Postfix's
    C{cleanup_replace_stray_cr_lf}: turning it into a line break would
    change the header structure, passing it through would let it smuggle;
  - content that does not end with a line ending gets a final CRLF, as
    Postfix's record-based queue files always produce one.

C{DATA} content is then dot-stuffed and ends with C{.CRLF}.  C{BDAT}
content is sent as is, in chunks each preceded by their C{BDAT n} command.

Each step is a handful of C{bytes.count}, C{bytes.replace} and
C{bytes.endswith} calls over the whole chunk, which run at C speed; clean
content costs three counts and one replace.  Only one byte (a CR that may be
the first half of a CRLF split between two chunks) is carried over between
chunks, so a producer can feed 64 KB at a time with constant memory.
"""

from __future__ import annotations

__all__ = ["ChunkEncoder", "DataEncoder", "normalize"]


def normalize(data: bytes) -> bytes:
    """
    Make every line ending in C{data} a CRLF and replace stray CRs by
    spaces.  A CR at the very end counts as stray: callers that work on
    chunks hold a final CR back until they see the next byte.

    @param data: Raw content.
    @return: The normalised content.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        # Collapse CRLF to LF first so that the only CRs left are stray
        # ones, then expand every LF, the bare ones included, to CRLF.
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b" ").replace(b"\n", b"\r\n")
    return data


class _Normalizer:
    """
    L{normalize} over a stream of chunks: holds back a final CR until the
    next chunk says whether it is half of a CRLF.

    @ivar contentBytes: Normalised content bytes returned so far.
    @ivar atLineStart: The content returned so far is empty or ends in CRLF.
    """

    def __init__(self) -> None:
        self._pendingCR = False
        self.contentBytes = 0
        self.atLineStart = True

    def push(self, chunk: bytes) -> bytes:
        if self._pendingCR:
            chunk = b"\r" + chunk
            self._pendingCR = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._pendingCR = True
        data = normalize(chunk)
        if data:
            self.contentBytes += len(data)
            self.atLineStart = data.endswith(b"\n")
        return data

    def close(self) -> bytes:
        # A CR at the very end of the content is stray.
        data = b" " if self._pendingCR else b""
        self._pendingCR = False
        if data or not self.atLineStart:
            data += b"\r\n"
        self.contentBytes += len(data)
        self.atLineStart = True
        return data


class DataEncoder:
    """
    Encode content for C{DATA}: normalised (see the module docstring),
    dot-stuffed (RFC 5321 section 4.5.2), ending in C{CRLF.CRLF}.

    Call L{encode} for each chunk in order, then L{finish} once; write
    everything they return, in order.

    @ivar contentBytes: The normalised content size so far, before
        dot-stuffing (what the next hop stores).
    @ivar wireBytes: The bytes returned so far.
    """

    def __init__(self) -> None:
        self._normalizer = _Normalizer()
        self.wireBytes = 0

    @property
    def contentBytes(self) -> int:
        return self._normalizer.contentBytes

    def encode(self, chunk: bytes) -> bytes:
        """
        Encode one chunk of queued content.

        @param chunk: Any number of bytes, cut anywhere.
        @return: Wire bytes (possibly empty: a lone CR is held back).
        """
        atLineStart = self._normalizer.atLineStart
        return self._stuff(self._normalizer.push(chunk), atLineStart)

    def finish(self) -> bytes:
        """
        End the content.

        @return: The last wire bytes: what was held back, a CRLF if the
            content did not end with one, and the C{.CRLF} end marker.
        """
        atLineStart = self._normalizer.atLineStart
        data = self._stuff(self._normalizer.close(), atLineStart) + b".\r\n"
        self.wireBytes += 3
        return data

    def _stuff(self, data: bytes, atLineStart: bool) -> bytes:
        if not data:
            return data
        if atLineStart and data.startswith(b"."):
            data = b"." + data
        # Normalised data has no bare LF, so every line start but the
        # first is right after a CRLF.
        data = data.replace(b"\r\n.", b"\r\n..")
        self.wireBytes += len(data)
        return data


class ChunkEncoder:
    """
    Encode content for C{BDAT} (RFC 3030): each non-empty normalised chunk
    is preceded by C{BDAT <size>}, and L{finish} sends the last one as
    C{BDAT <size> LAST} (possibly C{BDAT 0 LAST}).  There is no dot
    handling in C{BDAT}.

    Every call that returns bytes has issued exactly one C{BDAT} command,
    and the server answers each one: the session counts them.

    @ivar contentBytes: The normalised content size so far.
    @ivar wireBytes: The bytes returned so far, commands included.
    @ivar commands: How many C{BDAT} commands have been returned.
    """

    def __init__(self) -> None:
        self._normalizer = _Normalizer()
        self.wireBytes = 0
        self.commands = 0

    @property
    def contentBytes(self) -> int:
        return self._normalizer.contentBytes

    def encode(self, chunk: bytes) -> bytes:
        """
        Encode one chunk of queued content.

        @param chunk: Any number of bytes, cut anywhere.
        @return: C{BDAT n CRLF} and the n normalised bytes, or C{b""} if
            the chunk normalised to nothing yet (a lone CR held back).
        """
        data = self._normalizer.push(chunk)
        if not data:
            return b""
        return self._frame(data, b"")

    def finish(self) -> bytes:
        """
        End the content.

        @return: The C{BDAT n LAST} command and its chunk.
        """
        return self._frame(self._normalizer.close(), b" LAST")

    def _frame(self, data: bytes, last: bytes) -> bytes:
        self.commands += 1
        framed = b"BDAT %d%s\r\n" % (len(data), last) + data
        self.wireBytes += len(framed)
        return framed
