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
                merged[-1] = type(event)(previous.data + event.data)
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


# (input after 354, mode) -> (content, bareLineFeed, what follows as commands)
# None for the content means the data never ends.
DATA_TABLE: list[tuple[str, bytes, tuple[str, ...], Optional[bytes], bool, bytes]] = [
    ("plain", b"Subject: x\r\n\r\nbody\r\n.\r\n", MODES, b"Subject: x\r\n\r\nbody\r\n", False, b""),
    ("empty message", b".\r\n", MODES, b"", False, b""),
    ("dot-stuffed lines", b"..\r\n..x\r\n.y\r\n.\r\n", MODES, b".\r\n.x\r\ny\r\n", False, b""),
    ("dot inside a line", b"a.\r\n a\r\n.\r\n", MODES, b"a.\r\n a\r\n", False, b""),
    ("dot then CR then text", b".\rx\r\n.\r\n", MODES, b" x\r\n", False, b""),
    ("stray CR", b"a\rb\r\r\n.\r\n", MODES, b"a b \r\n", False, b""),
    ("pipelined after the end", b"x\r\n.\r\nQUIT\r\n", MODES, b"x\r\n", False, b"QUIT"),
    ("bare LF line", b"line with bare lf\nnext\r\n.\r\n", MODES, b"line with bare lf\r\nnext\r\n", True, b""),
    ("LF.LF ends only in mode no", b"a\n.\nb\r\n.\r\n", ("no",), b"a\r\n", True, b"B ."),
    ("LF.LF dropped", b"a\n.\nb\r\n.\r\n", ("normalize", "reject"), b"a\r\nb\r\n", True, b""),
    ("CRLF.LF", b"a\r\n.\nb\r\n.\r\n", ("normalize", "reject"), b"a\r\nb\r\n", True, b""),
    ("LF.CRLF", b"a\n.\r\nb\r\n.\r\n", ("normalize", "reject"), b"a\r\nb\r\n", True, b""),
    ("CRLF.LF ends in mode no", b"a\r\n.\nb\r\n", ("no",), b"a\r\n", True, b"B"),
    ("LF.CRLF ends in mode no", b"a\n.\r\nb\r\n", ("no",), b"a\r\n", True, b"B"),
    ("dot line after a dropped one", b"a\n.\n.\r\nb\r\n.\r\n", ("normalize", "reject"), b"a\r\nb\r\n", True, b""),
    ("bare LF first line dot", b".\nb\r\n.\r\n", ("normalize", "reject"), b"b\r\n", True, b""),
    ("CR.CR is no end", b"a\r.\r\n.\r\n", MODES, b"a .\r\n", False, b""),
    ("never ends", b"a\n.\n", ("normalize", "reject"), None, True, b""),
]


class DataModeTests(SynchronousTestCase):
    """
    Message content after C{354}: dot-unstuffed, normalised to CRLF, ended
    only where the bare newline mode says.
    """

    def check(self, name: str, data: bytes, mode: str, content: Optional[bytes], bare: bool, after: bytes) -> None:
        """
        Feed C{data} whole, byte by byte and in random splits, and compare.
        """
        rng = random.Random(name)
        ways = [[data], [data[i : i + 1] for i in range(len(data))]]
        ways += [splits(data, rng) for _ in range(20)]
        for chunks in ways:
            events = feed(chunks, mode=mode, data=True)
            label = f"{name} ({mode}) split as {chunks!r}"
            if content is None:
                self.assertFalse(any(isinstance(e, EndOfData) for e in events), label)
                continue
            expected: list[Event] = [DataContent(content)] if content else []
            expected.append(EndOfData(len(content), bare))
            self.assertEqual(events[: len(expected)], expected, label)
            verbs = b" ".join(e.verb.encode() for e in events[len(expected) :] if isinstance(e, Command))
            self.assertEqual(verbs, after, label)

    def test_table(self) -> None:
        """
        Every row of the table gives the same content, bare LF flag and
        following commands in each of its modes, however the bytes are split.
        """
        for name, data, modes, content, bare, after in DATA_TABLE:
            for mode in modes:
                self.check(name, data, mode, content, bare, after)

    def test_contentWithoutWholeLines(self) -> None:
        """
        Content is handed out as soon as it arrives, without waiting for the
        end of a line; only a possible line ending is held back.
        """
        parser = ServerParser()
        parser.startData()
        parser.receive(b"Subject: a long li")
        self.assertEqual(parser.nextEvent(), DataContent(b"Subject: a long li"))
        parser.receive(b"ne\r")
        self.assertEqual(parser.nextEvent(), DataContent(b"ne"))
        self.assertEqual(parser.buffered(), 1)
        parser.receive(b"\n.")
        self.assertEqual(parser.nextEvent(), DataContent(b"\r\n"))
        self.assertIsNone(parser.nextEvent())
        self.assertEqual(parser.buffered(), 1)
        self.assertEqual(parser.contentBytes, 22)
        parser.receive(b"\r\n")
        self.assertEqual(parser.nextEvent(), EndOfData(22, False))

    def test_longLinesNotTruncated(self) -> None:
        """
        The line length limit applies to commands, not to content.
        """
        body = b"x" * 10000 + b"\r\n"
        self.assertEqual(
            feed([body + b".\r\n"], limit=100, data=True),
            [DataContent(body), EndOfData(len(body), False)],
        )

    def test_bufferStaysSmall(self) -> None:
        """
        However content arrives, at most three bytes stay buffered after the
        parser has been drained.
        """
        parser = ServerParser()
        parser.startData()
        rng = random.Random(1)
        for _ in range(2000):
            parser.receive(rng.choice([b"a", b"\r", b"\n", b".", b"\r\n", b"..", b"\n."]) * rng.randint(1, 3))
            while True:
                event = parser.nextEvent()
                if event is None:
                    break
                if isinstance(event, EndOfData):
                    # Keep the parser in DATA mode: only content is measured.
                    parser.startData()
            self.assertLessEqual(parser.buffered(), 3)

    def test_contentBytesResetPerMessage(self) -> None:
        """
        C{contentBytes} counts the current message only.
        """
        parser = ServerParser()
        parser.startData()
        parser.receive(b"abc\r\n.\r\n")
        self.assertEqual(drain(parser), [DataContent(b"abc\r\n"), EndOfData(5, False)])
        parser.startData()
        self.assertEqual(parser.contentBytes, 0)

    def test_bareLineFeedFlagPerMessage(self) -> None:
        """
        A bare LF in one message does not flag the next one.
        """
        parser = ServerParser(bareNewline="reject")
        parser.startData()
        parser.receive(b"a\nb\r\n.\r\nDATA\r\nc\r\n.\r\n")
        self.assertEqual(
            drain(parser),
            [
                DataContent(b"a\r\nb\r\n"),
                EndOfData(6, True),
                Command("DATA", "", b"DATA"),
                DataContent(b"c\r\n"),
                EndOfData(3, False),
            ],
        )


class ChunkModeTests(SynchronousTestCase):
    """
    C{BDAT} chunks: exactly the announced number of bytes, normalised to
    CRLF, without dot handling.
    """

    def chunks(self, mode: str, stream: bytes, step: int, *chunks: tuple[bytes, bool]) -> list[Event]:
        """
        Announce each chunk, deliver C{stream} (the chunks and anything
        after them) C{step} bytes at a time, and collect the events.
        """
        parser = ServerParser(bareNewline=mode)
        events: list[Event] = []
        queue = list(chunks)
        offset = 0
        while queue:
            data, last = queue.pop(0)
            parser.startChunk(len(data), last)
            while True:
                event = parser.nextEvent()
                if event is None:
                    self.assertLess(offset, len(stream), "the parser wants more than was sent")
                    parser.receive(stream[offset : offset + step])
                    offset += step
                    continue
                events.append(event)
                if isinstance(event, EndOfChunk):
                    break
        parser.receive(stream[offset:])
        events.extend(drain(parser))
        return merge(events)

    def test_chunks(self) -> None:
        """
        Chunk content comes out normalised, with an end event per chunk
        carrying the running size; dots are content; the following command
        is parsed as usual; a CRLF split between chunks stays a CRLF.
        """
        first, second = b"Subject: a\r", b"\n.\r\nbare\nstray\rend\r"
        for step in (1, 3, 100):
            stream = first + second + b"QUIT\r\n"
            events = self.chunks("normalize", stream, step, (first, False), (second, True))
            self.assertEqual(
                events,
                [
                    ChunkContent(b"Subject: a"),
                    EndOfChunk(False, 10, False),
                    ChunkContent(b"\r\n.\r\nbare\r\nstray end "),
                    EndOfChunk(True, 31, True),
                    Command("QUIT", "", b"QUIT"),
                ],
            )

    def test_emptyLastChunk(self) -> None:
        """
        C{BDAT 0 LAST} ends the message at once; a CR held back from the
        previous chunk then turns out to be stray.
        """
        events = self.chunks("reject", b"x\r", 1, (b"x\r", False), (b"", True))
        self.assertEqual(
            events,
            [
                ChunkContent(b"x"),
                EndOfChunk(False, 1, False),
                ChunkContent(b" "),
                EndOfChunk(True, 2, False),
            ],
        )

    def test_sizeCountsMessage(self) -> None:
        """
        Sizes and the bare LF flag start again with the next message.
        """
        parser = ServerParser()
        parser.startChunk(2, True)
        parser.receive(b"a\n")
        self.assertEqual(drain(parser), [ChunkContent(b"a\r\n"), EndOfChunk(True, 3, True)])
        parser.startChunk(3, True)
        parser.receive(b"b\r\n")
        self.assertEqual(drain(parser), [ChunkContent(b"b\r\n"), EndOfChunk(True, 3, False)])

    def test_negativeSize(self) -> None:
        """
        A negative chunk size is a programming error.
        """
        self.assertRaises(ValueError, ServerParser().startChunk, -1, True)


def dotStuff(message: bytes) -> bytes:
    """
    Dot-stuff a CRLF message the way an SMTP client does.
    """
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)


crlfMessages = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    max_size=20,
).map(lambda lines: b"".join(line + b"\r\n" for line in lines))

splitPoints = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """
    Cut C{data} at C{points} (modulo its length).
    """
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


class PropertyTests(SynchronousTestCase):
    """
    Properties that hold for any input.
    """

    @given(st.binary(max_size=600), splitPoints, st.sampled_from(MODES), st.booleans())
    @settings(max_examples=300, deadline=None)
    def test_splitsDoNotMatter(self, data: bytes, points: list[int], mode: str, inData: bool) -> None:
        """
        The same bytes give the same events whether they arrive whole, byte
        by byte, or in any other split.
        """
        whole = feed([data], mode=mode, limit=16, data=inData)
        self.assertEqual(feed(cut(data, points), mode=mode, limit=16, data=inData), whole)
        self.assertEqual(feed([data[i : i + 1] for i in range(len(data))], mode=mode, limit=16, data=inData), whole)

    @given(st.binary(max_size=2000), splitPoints, st.sampled_from(MODES))
    @settings(max_examples=200, deadline=None)
    def test_neverCrashesCleanContent(self, data: bytes, points: list[int], mode: str) -> None:
        """
        Arbitrary bytes never crash the parser, in any mode, and content
        always comes out with CRLF line endings only.
        """
        for event in feed(cut(data, points), mode=mode, limit=32, data=True):
            if isinstance(event, DataContent):
                stripped = event.data.replace(b"\r\n", b"")
                self.assertNotIn(b"\r", stripped)
                self.assertNotIn(b"\n", stripped)
            elif isinstance(event, Command):
                self.assertLessEqual(len(event.line), 32)

    @given(st.lists(st.binary(max_size=300), max_size=30), st.sampled_from(MODES))
    @settings(max_examples=200, deadline=None)
    def test_commandBufferBounded(self, chunks: list[bytes], mode: str) -> None:
        """
        In command mode, once drained, the parser never holds more than the
        line length limit plus the last receive.
        """
        parser = ServerParser(lineLengthLimit=64, bareNewline=mode)
        for chunk in chunks:
            parser.receive(chunk)
            self.assertLessEqual(parser.buffered(), 64 + len(chunk))
            while isinstance(parser.nextEvent(), Command):
                pass
            self.assertLessEqual(parser.buffered(), 64)

    @given(crlfMessages, splitPoints, st.sampled_from(MODES))
    @settings(max_examples=300, deadline=None)
    def test_roundTrip(self, message: bytes, points: list[int], mode: str) -> None:
        """
        Any CRLF message, dot-stuffed and followed by C{.CRLF}, comes out of
        DATA exactly as it went in.
        """
        events = feed(cut(dotStuff(message) + b".\r\n", points), mode=mode, data=True)
        expected: list[Event] = [DataContent(message)] if message else []
        self.assertEqual(events, [*expected, EndOfData(len(message), False)])


class SansIOTests(SynchronousTestCase):
    """
    The SMTP core stays free of I/O.
    """

    def test_noIO(self) -> None:
        """
        No module of C{mtaguard.smtp} mentions Twisted, a transport, a
        reactor or a Deferred.
        """
        import mtaguard.smtp

        package = pathlib.Path(mtaguard.smtp.__file__).parent
        sources = sorted(package.glob("*.py"))
        self.assertTrue(sources)
        for source in sources:
            text = source.read_text()
            for word in ("twisted", "transport", "reactor", "Deferred"):
                self.assertIsNone(
                    re.search(word, text, re.IGNORECASE if word == "twisted" else 0),
                    f"{word} in {source.name}",
                )
