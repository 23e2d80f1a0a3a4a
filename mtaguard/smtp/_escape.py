# -*- test-case-name: tests.test_smtp_replies -*-
"""
Escape text received from a peer before it goes into a log line, the way
Postfix does (C{util/escape.c}): a log line can then never be split, forged
or fill a terminal with control characters.
"""

from __future__ import annotations

from typing import Union

# C's named escapes, which Postfix's escape() prefers over octal.
_NAMED = {
    0x07: "\\a",
    0x08: "\\b",
    0x0C: "\\f",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x0B: "\\v",
    0x5C: "\\\\",
}


def _escapeByte(byte: int) -> str:
    if byte in _NAMED:
        return _NAMED[byte]
    if 0x20 <= byte < 0x7F:
        return chr(byte)
    return f"\\{byte:03o}"


# One lookup per byte value, so escaping is a join over a table.
_TABLE = tuple(_escapeByte(byte) for byte in range(256))


def escapeForLog(data: Union[bytes, str], limit: int = 100) -> str:
    """
    Escape peer text for a log line: printable ASCII stays, a backslash is
    doubled, C{\\r}, C{\\n}, C{\\t} (and the other C escapes) are spelled
    out, every other byte (controls, DEL, anything non-ASCII) becomes a
    3-digit octal escape such as C{\\026}.

    Like Postfix, which escapes at most 100 bytes of pending input
    (C{improper command pipelining}, C{non-SMTP command}), this truncates
    the raw bytes to C{limit} before escaping.

    @param data: The text; C{str} is encoded as UTF-8 (surrogate escapes
        turned back into the bytes they stand for).
    @param limit: The most input bytes to escape.
    @return: The escaped text, plain ASCII.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return "".join([_TABLE[byte] for byte in data[:limit]])
