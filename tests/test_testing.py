"""
Tests for L{mtaguard.testing}: the public fakes provide their interfaces.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mtaguard.interfaces import IQueue, IQueuedMessage
from mtaguard.testing import MemoryQueue


class MemoryQueueTests(SynchronousTestCase):
    """
    L{MemoryQueue} stands in for the durable queue.
    """

    def test_interfaces(self) -> None:
        """
        The queue provides L{IQueue} and its messages L{IQueuedMessage}.
        """
        queue = MemoryQueue()
        self.assertTrue(verifyObject(IQueue, queue))
        self.assertTrue(verifyObject(IQueuedMessage, queue.newMessage(object())))

    def test_heldCommits(self) -> None:
        """
        With C{holdCommits}, a commit fires only when released.
        """
        queue = MemoryQueue(holdCommits=True)
        message = queue.newMessage(object())
        message.write(b"x")
        committed = message.commit()
        self.assertNoResult(committed)
        queue.releaseCommits()
        self.assertEqual(self.successResultOf(committed), message.queueID)
        self.assertEqual(queue.committed, [message])
