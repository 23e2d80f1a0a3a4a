"""
Tests for L{mtaguard.smtp.ServerParser}: command lines, DATA content and
BDAT chunks, whatever way the bytes are split by the network.
"""

from __future__ import annotations

import pathlib
import random
import re
from typing import Optional, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.smtp import (
    ChunkContent,
    Command,
    DataContent,
    EndOfChunk,
    EndOfData,
    Event,
    ServerParser,
)

MODES = ("no", "normalize", "reject")


def drain(parser: ServerParser) -> list[Event]:
    """
    Pull events until the parser needs more bytes, entering DATA mode after
    every C{DATA} command, as a session that accepts everything would.
    """
    events: list[Event] = []
    while True:
        event = parser.nextEvent()
        if event is None:
            return events
        events.append(event)
        if isinstance(event, Command) and event.verb == "DATA":
            parser.startData()


def feed(
    chunks: Sequence[bytes], mode: str = "normalize", limit: int = 2048, data: bool = False
) -> list[Event]:
    """
    Feed C{chunks} one receive at a time, draining after each, and return all
    the events with adjacent content events merged (how content is cut into
    events depends on the splits; what it adds up to must not).
    """
    parser = ServerParser(lineLengthLimit=limit, bareNewline=mode)
    if data:
        parser.startData()
    events: list[Event] = []
    for chunk in chunks:
        parser.receive(chunk)
        events.extend(drain(parser))
    return merge(events)


def merge(events: Sequence[Event]) -> list[Event]:
    """
    Merge runs of L{DataContent} (and of L{ChunkContent}) into one event.
    """
    merged: list[Event] = []
    for event in events:
        if merged and isinstance(event, (DataContent, ChunkContent)):
            previous = merged[-1]
            if type(previous) is type(event):
                merged[-1] = type(event)(previous.data + event.data)  # type: ignore[union-attr]
                continue
        merged.append(event)
    return merged


def splits(data: bytes, rng: random.Random) -> list[bytes]:
    """
    Cut C{data} at random points.
    """
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 8)))) if len(data) > 1 else []
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


class CommandModeTests(SynchronousTestCase):
    """
    Command lines are split into verb and argument, whatever their line
    endings, and never make the parser buffer without bound.
    """

    def test_simpleCommand(self) -> None:
        """
        A CRLF-terminated command gives its upper-cased verb, its argument and
        the raw line.
        """
        self.assertEqual(
            feed([b"mail FROM:<a@example.com> SIZE=10\r\n"]),
            [
                Command(
                    "MAIL",
                    "FROM:<a@example.com> SIZE=10",
                    b"mail FROM:<a@example.com> SIZE=10",
                    False,
                    False,
                )
            ],
        )

    def test_incompleteLine(self) -> None:
        """
        Nothing comes out until the line is complete.
        """
        parser = ServerParser()
        parser.receive(b"EHLO client.exa")
        self.assertIsNone(parser.nextEvent())
        self.assertEqual(parser.buffered(), 15)
        parser.receive(b"mple\r")
        self.assertIsNone(parser.nextEvent())
        parser.receive(b"\n")
        self.assertEqual(
            parser.nextEvent(),
            Command("EHLO", "client.example", b"EHLO client.example", False, False),
        )
        self.assertEqual(parser.buffered(), 0)

    def test_bareLineFeed(self) -> None:
        """
        A line ended by LF alone is a command too, flagged as such.
        """
        self.assertEqual(
            feed([b"EHLO c.example\n"], mode="reject"),
            [Command("EHLO", "c.example", b"EHLO c.example", True, False)],
        )

    def test_whitespace(self) -> None:
        """
        Leading blanks, several blanks after the verb and trailing blanks do
        not end up in the verb or the argument; blanks inside the argument
        stay.
        """
        self.assertEqual(
            feed([b"  rcpt \t TO:<b@example.com>  x \t \r\n"]),
            [
                Command(
                    "RCPT",
                    "TO:<b@example.com>  x",
                    b"  rcpt \t TO:<b@example.com>  x \t ",
                    False,
                    False,
                )
            ],
        )

    def test_emptyLines(self) -> None:
        """
        Empty and blank lines give a command with an empty verb, so that the
        session can answer C{500 5.5.2 Error: bad syntax}.
        """
        self.assertEqual(
            feed([b"\r\n \t\r\n\n"]),
            [
                Command("", "", b"", False, False),
                Command("", "", b" \t", False, False),
                Command("", "", b"", True, False),
            ],
        )

    def test_nonAsciiKept(self) -> None:
        """
        Invalid UTF-8 survives decoding (as surrogates) so that the session
        can detect it and log the raw bytes; only ASCII letters are
        upper-cased in the verb.
        """
        [event] = feed([b"\xe9hlo \xff\xfe\r\n"])
        assert isinstance(event, Command)
        self.assertEqual(event.verb, "\udce9HLO")
        self.assertEqual(event.argument.encode("utf-8", "surrogateescape"), b"\xff\xfe")
        self.assertEqual(event.line, b"\xe9hlo \xff\xfe")

    def test_strayCarriageReturnInLine(self) -> None:
        """
        Only the CR right before the LF belongs to the line ending.
        """
        self.assertEqual(
            feed([b"NOOP\r\r\n"]),
            [Command("NOOP", "", b"NOOP\r", False, False)],
        )

    def test_pipelined(self) -> None:
        """
        Several commands received at once come out one per call, and the
        rest stays buffered until asked for.
        """
        parser = ServerParser()
        parser.receive(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: x\r\n")
        self.assertEqual(parser.nextEvent(), Command("MAIL", "FROM:<a@x>", b"MAIL FROM:<a@x>"))
        self.assertEqual(parser.buffered(), 33)
        self.assertEqual(parser.nextEvent(), Command("RCPT", "TO:<b@y>", b"RCPT TO:<b@y>"))
        self.assertEqual(parser.nextEvent(), Command("DATA", "", b"DATA"))
        parser.startData()
        self.assertEqual(parser.nextEvent(), DataContent(b"Subject: x\r\n"))
        self.assertIsNone(parser.nextEvent())

    def test_longLineTruncated(self) -> None:
        """
        A line longer than the limit is cut at the limit and flagged; the
        rest of it is thrown away, and the next line is intact.
        """
        self.assertEqual(
            feed([b"EHLO " + b"a" * 20 + b"\r\nNOOP\r\n"], limit=10),
            [
                Command("EHLO", "aaaaa", b"EHLO aaaaa", False, True),
                Command("NOOP", "", b"NOOP", False, False),
            ],
        )

    def test_exactlyAtLimit(self) -> None:
        """
        A line exactly as long as the limit is not truncated, even when its
        CR and LF arrive separately.
        """
        for chunks in ([b"0123456789\r\n"], [b"0123456789", b"\r", b"\n"], [b"0123456789\r", b"\n"]):
            self.assertEqual(
                feed(chunks, limit=10),
                [Command("0123456789", "", b"0123456789", False, False)],
                chunks,
            )
        self.assertEqual(
            feed([b"0123456789x", b"\n"], limit=10),
            [Command("0123456789", "", b"0123456789", True, True)],
        )

    def test_endlessLineBounded(self) -> None:
        """
        A client sending an endless line without LF cannot make the parser
        keep more than the limit; the line eventually comes out truncated.
        """
        parser = ServerParser(lineLengthLimit=100)
        for _ in range(1000):
            parser.receive(b"x" * 1000)
            self.assertIsNone(parser.nextEvent())
            self.assertLessEqual(parser.buffered(), 100)
        parser.receive(b"\r\nQUIT\r\n")
        self.assertEqual(parser.nextEvent(), Command("X" * 100, "", b"x" * 100, False, True))
        self.assertEqual(parser.nextEvent(), Command("QUIT", "", b"QUIT"))

    def test_truncatedBareLineFeed(self) -> None:
        """
        Whether a truncated line ended in a bare LF is known even though its
        end was skipped.
        """
        self.assertEqual(
            feed([b"x" * 30, b"y" * 30, b"\n"], limit=10),
            [Command("X" * 10, "", b"x" * 10, True, True)],
        )
        self.assertEqual(
            feed([b"x" * 30, b"y" * 30 + b"\r", b"\n"], limit=10),
            [Command("X" * 10, "", b"x" * 10, False, True)],
        )

    def test_discardBuffered(self) -> None:
        """
        After C{STARTTLS}, everything the client pipelined in plaintext is
        thrown away and counted.
        """
        parser = ServerParser()
        parser.receive(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT")
        self.assertEqual(parser.nextEvent(), Command("STARTTLS", "", b"STARTTLS"))
        self.assertEqual(parser.discardBuffered(), len(b"MAIL FROM:<evil@x>\r\nRCPT"))
        self.assertEqual(parser.buffered(), 0)
        self.assertIsNone(parser.nextEvent())
        parser.receive(b"EHLO c\r\n")
        self.assertEqual(parser.nextEvent(), Command("EHLO", "c", b"EHLO c"))

    def test_discardBufferedWhileSkipping(self) -> None:
        """
        Discarding also forgets a half-read overlong line.
        """
        parser = ServerParser(lineLengthLimit=5)
        parser.receive(b"0123456789")
        self.assertIsNone(parser.nextEvent())
        self.assertEqual(parser.discardBuffered(), 5)
        parser.receive(b"NOOP\r\n")
        self.assertEqual(parser.nextEvent(), Command("NOOP", "", b"NOOP"))

    def test_badMode(self) -> None:
        """
        Only the three known bare newline modes are accepted.
        """
        self.assertRaises(ValueError, ServerParser, bareNewline="yes")
        self.assertRaises(ValueError, ServerParser, lineLengthLimit=0)
