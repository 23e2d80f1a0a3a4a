# -*- test-case-name: tests.test_queue_ids -*-
"""
Queue IDs in the style of Postfix's long queue IDs
(C{enable_long_queue_ids = yes}): the arrival time in a base-52 alphabet of
digits and consonants, the letter C{z} as a separator, then a counter.

They are unique within one process, sort by creation time (to the
microsecond), contain only C{[0-9A-Za-z]} and so are safe as file names and
in log lines.  Uniqueness across processes sharing a queue directory is
checked where the name is claimed (C{O_EXCL} creation and a hard link into
C{active/} that refuses to replace a file).
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

#: Postfix's alphabet for long queue IDs: digits and consonants, so that
#: no ID spells a word.  It is in ASCII order, so IDs sort as strings.
ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"

#: The alphabet of the parts after the seconds: without the C{z} that
#: separates the counter from the microseconds.
_ALPHABET51 = ALPHABET[:-1]

#: Fixed widths so that IDs sort by time: 52**6 seconds reach the year 2595,
#: 51**4 exceeds one million microseconds.
_SECONDS_WIDTH = 6
_MICROSECONDS_WIDTH = 4


def _encode(number: int, alphabet: str, width: int = 1) -> str:
    base = len(alphabet)
    digits: list[str] = []
    while number or len(digits) < width:
        number, digit = divmod(number, base)
        digits.append(alphabet[digit])
    return "".join(reversed(digits))


class QueueIDGenerator:
    """
    Produce queue IDs from a clock.

    @ivar _clock: the reactor time the IDs are derived from.
    @ivar _counter: incremented for every ID, so that two IDs made in the
        same microsecond (or after the clock stepped back) still differ.
    """

    def __init__(self, clock: IReactorTime) -> None:
        """
        @param clock: the time source, normally the reactor.
        """
        self._clock = clock
        self._counter = 0

    def next(self) -> str:
        """
        @return: a new queue ID such as C{4wPd2Q0B1kz1}.
        """
        now = max(0.0, self._clock.seconds())
        seconds = int(now)
        microseconds = min(int((now - seconds) * 1_000_000), 999_999)
        self._counter += 1
        return (
            _encode(seconds, ALPHABET, _SECONDS_WIDTH)
            + _encode(microseconds, _ALPHABET51, _MICROSECONDS_WIDTH)
            + "z"
            + _encode(self._counter, _ALPHABET51)
        )


def isQueueID(text: str) -> bool:
    """
    @return: whether C{text} has the shape of a queue ID made by
        L{QueueIDGenerator}; used to ignore foreign files in queue
        directories.
    """
    width = _SECONDS_WIDTH + _MICROSECONDS_WIDTH
    counter = text[width + 1 :]
    return (
        len(text) > width + 1
        and text[width] == "z"
        and all(character in ALPHABET for character in text[:_SECONDS_WIDTH])
        and all(character in _ALPHABET51 for character in text[_SECONDS_WIDTH:width])
        and all(character in _ALPHABET51 for character in counter)
    )
