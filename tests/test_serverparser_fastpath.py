"""
Tests for the clean-content fast path of L{mtaguard.smtp.ServerParser}'s
DATA mode: for any input, split in any way, it gives exactly the events of
the general path.
"""

from __future__ import annotations

import itertools
from typing import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.smtp import Command, DataContent, EndOfData, Event, ServerParser
from mtaguard.smtp._serverparser import _findDotLine, _isClean

MODES = ("no", "normalize", "reject")

splitPoints = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)

#: Lines that make dot handling and line endings interesting: dot-stuffed
#: lines, "." lines, lines with stray CRs, and ordinary text.
lines = st.one_of(
    st.sampled_from([b"", b".", b"..", b".x", b"..x", b"x.", b"\r", b".\r", b"MAIL FROM:<a@b>"]),
    st.binary(max_size=12),
)

#: Mostly clean CRLF content, sometimes with a bare LF or a stray CR where a
#: line ending should be, and sometimes followed by the end-of-data marker
#: and pipelined commands.
messages = st.lists(
    st.tuples(lines, st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r", b""])), max_size=25
).map(lambda pairs: b"".join(line + ending for line, ending in pairs))


def cut(data: bytes, points: Sequence[int]) -> list[bytes]:
    """
    Cut C{data} at C{points} (modulo its length).
    """
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def events(chunks: Sequence[bytes], mode: str, fast: bool) -> list[Event]:
    """
    Feed C{chunks} in DATA mode, draining after each receive, entering DATA
    mode again after every C{DATA} command, with the fast path on or off.
    The events are not merged: both paths must cut content alike.
    """
    parser = ServerParser(bareNewline=mode)
    parser._cleanFastPath = fast
    parser.startData()
    found: list[Event] = []
    for chunk in chunks:
        parser.receive(chunk)
        while True:
            event = parser.nextEvent()
            if event is None:
                break
            found.append(event)
            if isinstance(event, Command) and event.verb == "DATA":
                parser.startData()
    return found


class FastPathTests(SynchronousTestCase):
    """
    The fast path is an optimisation only.
    """

    @given(messages, splitPoints, st.sampled_from(MODES))
    @settings(max_examples=500, deadline=None)
    def test_sameEventsAsGeneralPath(self, data: bytes, points: list[int], mode: str) -> None:
        """
        Mostly clean content with dot lines, stray CRs and bare LFs gives
        the same events on both paths, however it is split.
        """
        chunks = cut(data, points)
        self.assertEqual(events(chunks, mode, True), events(chunks, mode, False))

    @given(st.binary(max_size=400), splitPoints, st.sampled_from(MODES))
    @settings(max_examples=300, deadline=None)
    def test_sameEventsForAnyBytes(self, data: bytes, points: list[int], mode: str) -> None:
        """
        Arbitrary bytes give the same events on both paths.
        """
        chunks = cut(data, points)
        self.assertEqual(events(chunks, mode, True), events(chunks, mode, False))

    def test_cleanContentAndMarker(self) -> None:
        """
        Clean content with a dot-stuffed line, then the end-of-data marker
        and a pipelined command, arriving whole.
        """
        data = b"a\r\n..b\r\nc\r\n.\r\nQUIT\r\n"
        for mode in MODES:
            self.assertEqual(
                events([data], mode, True),
                [
                    DataContent(b"a\r\n.b\r\nc\r\n"),
                    EndOfData(10, False),
                    Command("QUIT", "", b"QUIT"),
                ],
            )

    def test_finalCarriageReturnKeptBack(self) -> None:
        """
        A chunk that ends in CR is clean up to that CR; the CR waits for the
        next byte.
        """
        self.assertEqual(
            events([b"a\r\nb\r", b"\n.\r\n"], "normalize", True),
            [DataContent(b"a\r\nb"), DataContent(b"\r\n"), EndOfData(6, False)],
        )


class IsCleanTests(SynchronousTestCase):
    """
    L{_isClean}, the mask comparison that decides whether content may take
    the fast path, against the three counts it replaces.
    """

    @staticmethod
    def counted(data: bytes, end: int) -> bool:
        region = data[:end]
        crlf = region.count(b"\r\n")
        return region.count(b"\n") == crlf and region.count(b"\r") == crlf

    def test_everySmallInput(self) -> None:
        """
        Every string of up to seven CRs, LFs and other bytes, checked up to
        its end and up to the byte before (where a final CR is kept back).
        """
        for length in range(8):
            for letters in itertools.product(b"\r\na", repeat=length):
                data = bytes(letters)
                for end in {max(0, length - 1), length}:
                    self.assertEqual(
                        _isClean(bytearray(data), end), self.counted(data, end), (data, end)
                    )

    @given(st.binary(max_size=300), st.integers(min_value=0, max_value=1))
    @settings(max_examples=300, deadline=None)
    def test_anyBytes(self, data: bytes, shorter: int) -> None:
        """
        Arbitrary bytes, mostly not clean.
        """
        end = max(0, len(data) - shorter)
        self.assertEqual(_isClean(bytearray(data), end), self.counted(data, end))

    @given(messages, st.integers(min_value=0, max_value=1))
    @settings(max_examples=300, deadline=None)
    def test_mostlyClean(self, data: bytes, shorter: int) -> None:
        """
        Mostly clean content, where the two answers differ most subtly.
        """
        end = max(0, len(data) - shorter)
        self.assertEqual(_isClean(bytearray(data), end), self.counted(data, end))


class FindDotLineTests(SynchronousTestCase):
    """
    L{_findDotLine} finds what C{bytearray.find(b"\\r\\n.")} finds.
    """

    def test_everySmallInput(self) -> None:
        """
        Every string of up to seven CRs, LFs, dots and other bytes, for
        every start and end.
        """
        for length in range(8):
            for letters in itertools.product(b"\r\n.a", repeat=length):
                data = bytearray(letters)
                for start in range(length + 1):
                    for end in range(start, length + 1):
                        self.assertEqual(
                            _findDotLine(data, start, end),
                            data.find(b"\r\n.", start, end),
                            (data, start, end),
                        )

    @given(
        st.lists(st.sampled_from([b"\r\n", b".", b"\r\n.", b"a", b"ab.", b"\n", b"\r"]), max_size=80),
        st.integers(min_value=0, max_value=400),
        st.integers(min_value=0, max_value=400),
    )
    @settings(max_examples=500, deadline=None)
    def test_manyDots(self, pieces: list[bytes], start: int, end: int) -> None:
        """
        Inputs with more dots than are looked at one by one, so that the
        search goes on with the whole pattern.
        """
        data = bytearray(b"".join(pieces))
        start = min(start, len(data))
        end = min(max(start, end), len(data))
        self.assertEqual(_findDotLine(data, start, end), data.find(b"\r\n.", start, end))
