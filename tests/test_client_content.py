"""
Tests for L{mtaguard.client.DataEncoder} and L{mtaguard.client.ChunkEncoder}:
what the next hop receives is exactly the content we queued, with CRLF line
endings, and nothing in it can end the message early or smuggle a second
one.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.client import ChunkEncoder, DataEncoder, normalize
from mtaguard.smtp import ChunkContent, DataContent, EndOfChunk, EndOfData, ServerParser

# Content biased towards the bytes that matter: CR, LF and dots.
contents = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b"From ", b"\xc3\xa9", b"\x00"]),
    max_size=60,
).map(b"".join) | st.binary(max_size=300)


def expected(content: bytes) -> bytes:
    """
    What the next hop should store for queued C{content}: normalised line
    endings, a stray final CR as a space, and a final CRLF.
    """
    data = normalize(content)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def split(content: bytes, cuts: list[int]) -> list[bytes]:
    """
    Cut C{content} at the given offsets.
    """
    points = sorted({0, len(content), *cuts})
    return [content[a:b] for a, b in zip(points, points[1:])]


def encodeData(chunks: list[bytes]) -> bytes:
    """
    The DATA wire form of the content given in C{chunks}.
    """
    encoder = DataEncoder()
    wire = b"".join(encoder.encode(chunk) for chunk in chunks) + encoder.finish()
    assert encoder.wireBytes == len(wire)
    return wire


def receiveData(wire: bytes) -> tuple[bytes, bytes]:
    """
    What an mtaguard server receives from C{wire} after DATA: the content,
    and the bytes left after the end-of-data marker.
    """
    parser = ServerParser()
    parser.startData()
    parser.receive(wire)
    received = []
    while True:
        event = parser.nextEvent()
        assert event is not None, "no end of data"
        if isinstance(event, EndOfData):
            assert not event.bareLineFeed
            break
        assert isinstance(event, DataContent)
        received.append(event.data)
    rest = bytes(parser.peek(len(wire)))
    return b"".join(received), rest


def assertNoBareNewline(testCase: SynchronousTestCase, wire: bytes) -> None:
    """
    Every CR in C{wire} is followed by LF and every LF preceded by CR.
    """
    stripped = wire.replace(b"\r\n", b"")
    testCase.assertNotIn(b"\r", stripped)
    testCase.assertNotIn(b"\n", stripped)


class DataEncoderTests(SynchronousTestCase):
    """
    Content for C{DATA}: normalised, dot-stuffed, terminated.
    """

    def test_plain(self) -> None:
        """
        Clean CRLF content goes out unchanged, followed by C{.CRLF}.
        """
        self.assertEqual(encodeData([b"Subject: hi\r\n\r\nbody\r\n"]), b"Subject: hi\r\n\r\nbody\r\n.\r\n")

    def test_empty(self) -> None:
        """
        Empty content is just the end marker.
        """
        self.assertEqual(encodeData([]), b".\r\n")

    def test_finalLineEnding(self) -> None:
        """
        Content without a final line ending gets one, so that the end
        marker is on a line of its own.
        """
        self.assertEqual(encodeData([b"body"]), b"body\r\n.\r\n")

    def test_dotStuffing(self) -> None:
        """
        Lines that start with a dot get a second one, including the first
        line and a line whose CRLF was cut between two chunks.
        """
        self.assertEqual(
            encodeData([b".first\r\n.\r\nx\r", b"\n..y\r\n"]),
            b"..first\r\n..\r\nx\r\n...y\r\n.\r\n",
        )

    def test_dotAtChunkStart(self) -> None:
        """
        A dot at the start of a chunk that starts a line is stuffed; one
        that continues a line is not.
        """
        self.assertEqual(encodeData([b"a\r\n", b".b\r\n"]), b"a\r\n..b\r\n.\r\n")
        self.assertEqual(encodeData([b"a", b".b\r\n"]), b"a.b\r\n.\r\n")

    def test_bareLineFeed(self) -> None:
        """
        A bare LF is a line ending and goes out as CRLF.
        """
        self.assertEqual(encodeData([b"a\nb\n"]), b"a\r\nb\r\n.\r\n")

    def test_strayCarriageReturn(self) -> None:
        """
        A CR not followed by LF becomes a space, also at a chunk boundary
        and at the very end.
        """
        self.assertEqual(encodeData([b"a\rb\r", b"c\r"]), b"a b c \r\n.\r\n")

    def test_smuggling(self) -> None:
        """
        The SMTP smuggling payloads (LF.LF, CR.CR, LF.CRLF, CRLF.LF) never
        produce an end-of-data marker before the real one: the smuggled
        command stays inside the message.
        """
        for payload in [
            b"a\n.\nMAIL FROM:<evil@example.com>\n",
            b"a\r.\rMAIL FROM:<evil@example.com>\r",
            b"a\n.\r\nMAIL FROM:<evil@example.com>\r\n",
            b"a\r\n.\nMAIL FROM:<evil@example.com>\r\n",
            b"a\r\n.\r\nMAIL FROM:<evil@example.com>\r\n",
        ]:
            wire = encodeData([payload])
            self.assertEqual(wire.find(b"\r\n.\r\n"), len(wire) - 5, wire)
            assertNoBareNewline(self, wire)
            content, rest = receiveData(wire)
            self.assertIn(b"MAIL FROM:<evil@example.com>", content)
            self.assertEqual(rest, b"")

    def test_contentBytes(self) -> None:
        """
        L{DataEncoder.contentBytes} counts what the next hop stores, without
        the dot-stuffing.
        """
        encoder = DataEncoder()
        encoder.encode(b".a\r\n")
        encoder.finish()
        self.assertEqual(encoder.contentBytes, 4)
        self.assertEqual(encoder.wireBytes, 8)

    @settings(max_examples=300)
    @given(contents, st.lists(st.integers(0, 400), max_size=20))
    def test_roundTrip(self, content: bytes, cuts: list[int]) -> None:
        """
        Whatever the content and however the producer cuts it, an mtaguard
        server receiving the wire form gets the CRLF-normalised content
        back, the end marker exactly at the end, and no bare CR or LF on
        the wire.
        """
        wire = encodeData(split(content, cuts))
        assertNoBareNewline(self, wire)
        received, rest = receiveData(wire)
        self.assertEqual(received, expected(content))
        self.assertEqual(rest, b"")

    @settings(max_examples=100)
    @given(contents, st.lists(st.integers(0, 400), max_size=20))
    def test_chunkingIrrelevant(self, content: bytes, cuts: list[int]) -> None:
        """
        The wire form does not depend on where the chunks were cut.
        """
        self.assertEqual(encodeData(split(content, cuts)), encodeData([content]))

    def test_large(self) -> None:
        """
        A message fed in 64 KB chunks is encoded piecewise, each piece about
        the size of its chunk: nothing accumulates.
        """
        encoder = DataEncoder()
        chunk = (b"x" * 998 + b"\r\n") * 65 + b".\r\n"
        sizes = [len(encoder.encode(chunk)) for _ in range(100)]
        self.assertEqual(set(sizes), {len(chunk) + 1})
        self.assertEqual(encoder.finish(), b".\r\n")


class ChunkEncoderTests(SynchronousTestCase):
    """
    Content for C{BDAT}: normalised and framed, no dot handling.
    """

    def test_framing(self) -> None:
        """
        Each chunk gets its C{BDAT n} command; the end is C{BDAT n LAST}.
        """
        encoder = ChunkEncoder()
        self.assertEqual(encoder.encode(b".a\r\n"), b"BDAT 4\r\n.a\r\n")
        self.assertEqual(encoder.encode(b"b\r"), b"BDAT 1\r\nb")
        self.assertEqual(encoder.encode(b"\n"), b"BDAT 2\r\n\r\n")
        self.assertEqual(encoder.finish(), b"BDAT 0 LAST\r\n")
        self.assertEqual(encoder.commands, 4)

    def test_heldBackCR(self) -> None:
        """
        A chunk that is only a CR issues no command (the CR waits for the
        next byte); at the end it becomes a space and a final CRLF.
        """
        encoder = ChunkEncoder()
        self.assertEqual(encoder.encode(b"\r"), b"")
        self.assertEqual(encoder.commands, 0)
        self.assertEqual(encoder.finish(), b"BDAT 3 LAST\r\n \r\n")

    @settings(max_examples=300)
    @given(contents, st.lists(st.integers(0, 400), max_size=20))
    def test_roundTrip(self, content: bytes, cuts: list[int]) -> None:
        """
        An mtaguard server receiving the BDAT chunks gets the same content
        as over DATA, and the chunks contain no bare CR or LF.
        """
        encoder = ChunkEncoder()
        pieces = [encoder.encode(chunk) for chunk in split(content, cuts)]
        pieces = [piece for piece in pieces if piece] + [encoder.finish()]
        self.assertEqual(encoder.commands, len(pieces))
        parser = ServerParser()
        received = []
        for number, piece in enumerate(pieces):
            header, _, data = piece.partition(b"\r\n")
            words = header.split()
            last = number == len(pieces) - 1
            self.assertEqual(words, [b"BDAT", b"%d" % len(data)] + ([b"LAST"] if last else []))
            assertNoBareNewline(self, data)
            parser.startChunk(len(data), last)
            parser.receive(data)
            while True:
                event = parser.nextEvent()
                assert event is not None
                if isinstance(event, EndOfChunk):
                    break
                assert isinstance(event, ChunkContent)
                received.append(event.data)
        self.assertEqual(b"".join(received), expected(content))
        self.assertEqual(encoder.contentBytes, len(expected(content)))
