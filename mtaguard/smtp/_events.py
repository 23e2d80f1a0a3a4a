# -*- test-case-name: tests.test_smtp_serverparser -*-
"""
The events that L{mtaguard.smtp.ServerParser} produces from the bytes an
SMTP client sends.

They are plain values: the parser never acts on them, the session decides
what each one means in its current state.
"""

from __future__ import annotations

from typing import Union

from attrs import frozen


@frozen
class Command:
    """
    One command line.

    @ivar verb: The first whitespace-delimited token, ASCII upper-cased
        (C{""} for an empty or blank line).
    @ivar argument: The rest of the line after the whitespace that follows
        the verb, trailing whitespace removed, decoded as UTF-8 with
        C{errors="surrogateescape"} so that invalid bytes survive for the
        C{500 5.5.2 Error: bad UTF-8 syntax} check and for logging.
    @ivar line: The raw line without its terminator, at most
        C{lineLengthLimit} bytes.
    @ivar bareLineFeed: The line was terminated by LF without a CR before it.
    @ivar truncated: The line was longer than C{lineLengthLimit}; the excess
        up to the end of the line was discarded, as Postfix does (it then
        processes the truncated command and logs C{request longer than N}).
    """

    verb: str
    argument: str
    line: bytes
    bareLineFeed: bool = False
    truncated: bool = False


@frozen
class DataContent:
    """
    Message content received after C{DATA}.

    @ivar data: Dot-unstuffed content in which every line ends in CRLF and
        every stray CR (one not followed by LF) has been replaced by a space,
        like Postfix's C{cleanup_replace_stray_cr_lf}.  Chunks are cut at
        arbitrary points, not at line ends.
    """

    data: bytes


@frozen
class EndOfData:
    """
    The end-of-data marker of a C{DATA} message.

    @ivar size: The total number of bytes delivered in L{DataContent} events
        for this message.
    @ivar bareLineFeed: A bare LF was seen anywhere in the content (the caller
        rejects the message when C{smtpd_forbid_bare_newline = reject}).
    """

    size: int
    bareLineFeed: bool


@frozen
class ChunkContent:
    """
    Content of a C{BDAT} chunk, line endings normalised exactly as for
    L{DataContent}; there is no dot handling in C{BDAT}.

    @ivar data: The normalised bytes.
    """

    data: bytes


@frozen
class EndOfChunk:
    """
    All the bytes of the current C{BDAT} chunk have been delivered.

    @ivar last: The chunk was announced with C{LAST}.
    @ivar size: The total number of bytes delivered in L{ChunkContent}
        events for this message so far (all chunks, not just this one).
    @ivar bareLineFeed: A bare LF was seen anywhere in this message's chunks
        so far.
    """

    last: bool
    size: int
    bareLineFeed: bool


Event = Union[Command, DataContent, EndOfData, ChunkContent, EndOfChunk]
