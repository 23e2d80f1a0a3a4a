"""
Tests for L{mtaguard.queue._ids}: Postfix-style long queue IDs.
"""

from __future__ import annotations

import re

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.queue import QueueIDGenerator
from mtaguard.queue._ids import isQueueID


class QueueIDTests(SynchronousTestCase):
    """
    Queue IDs are unique, sort by time and are safe file names.
    """

    def test_uniqueInSameMicrosecond(self) -> None:
        """
        IDs made without the clock moving differ.
        """
        clock = Clock()
        clock.advance(1_764_000_000.123456)
        generator = QueueIDGenerator(clock)
        ids = [generator.next() for _ in range(10_000)]
        self.assertEqual(len(set(ids)), len(ids))

    def test_sortByTime(self) -> None:
        """
        IDs made later sort after IDs made earlier, as strings.
        """
        clock = Clock()
        generator = QueueIDGenerator(clock)
        ids = []
        for step in (1_000_000_000, 0.000001, 0.5, 1, 86400 * 365 * 100):
            clock.advance(step)
            ids.append(generator.next())
        self.assertEqual(sorted(ids), ids)

    def test_shape(self) -> None:
        """
        IDs hold only Postfix's alphabet and are recognised by L{isQueueID};
        other names are not.
        """
        clock = Clock()
        clock.advance(1_764_000_000.5)
        queueID = QueueIDGenerator(clock).next()
        self.assertRegex(queueID, re.compile(r"\A[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]+\Z"))
        self.assertTrue(isQueueID(queueID))
        for name in ("", ".nfs123", queueID + "a", "abc", queueID.replace("z", "a")):
            self.assertFalse(isQueueID(name), name)
