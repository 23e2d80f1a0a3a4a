"""
Tests for L{mtaguard.queue._store}: the durable, group-committed queue.
"""

from __future__ import annotations

import errno
import os
from typing import Callable

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mtaguard.interfaces import IQueue, IQueuedMessage, IQueueWorker
from mtaguard.queue import (
    MAX_PENDING_BYTES,
    Envelope,
    FileSystem,
    ManualWorker,
    QueueStore,
    SynchronousWorker,
    parseQueueFile,
)

ARRIVAL = 1_764_000_000.5


def anEnvelope(*recipients: str) -> Envelope:
    """
    @return: an envelope for C{recipients} (a default one if none).
    """
    return Envelope(
        sender="sender@client.example",
        recipients=recipients or ("rcpt@mx.example",),
        parameters=(("SIZE", "100"), ("BODY", "8BITMIME")),
        clientAddress="192.0.2.7",
        clientPort=40123,
        clientName="unknown",
        helo="client.example",
        protocol="ESMTP",
        tls=False,
        authUser=None,
        arrival=ARRIVAL,
    )


class StoreTestsMixin:
    """
    Build a started store over a temporary directory.
    """

    def makeStore(self, worker: object, fileSystem: FileSystem | None = None) -> QueueStore:
        """
        @return: a started L{QueueStore} in a new temporary directory, stopped
            at the end of the test.
        """
        test: SynchronousTestCase = self  # type: ignore[assignment]
        clock = Clock()
        clock.advance(ARRIVAL)
        directory = test.mktemp()
        store = QueueStore(directory, reactor=clock, worker=worker, fileSystem=fileSystem)  # type: ignore[arg-type]
        store.start()
        test.addCleanup(store.stop)
        return store


class QueueStoreTests(StoreTestsMixin, SynchronousTestCase):
    """
    L{QueueStore} commits messages durably.
    """

    def test_interfaces(self) -> None:
        """
        The store provides L{IQueue}, its messages L{IQueuedMessage}, and the
        workers L{IQueueWorker}.
        """
        store = self.makeStore(SynchronousWorker())
        self.assertTrue(verifyObject(IQueue, store))
        self.assertTrue(verifyObject(IQueuedMessage, store.newMessage(anEnvelope())))
        self.assertTrue(verifyObject(IQueueWorker, SynchronousWorker()))
        self.assertTrue(verifyObject(IQueueWorker, ManualWorker()))

    def test_commitMovesToActive(self) -> None:
        """
        A committed message is in C{active/} with its envelope and content,
        and C{incoming/} is empty; the commit fires with the queue ID.
        """
        store = self.makeStore(SynchronousWorker())
        message = store.newMessage(anEnvelope())
        message.write(b"Subject: x\r\n\r\n")
        message.write(b"body\r\n")
        queueID = self.successResultOf(message.commit())
        self.assertEqual(queueID, message.queueID)
        self.assertEqual(os.listdir(store.incomingDirectory), [])
        with open(os.path.join(store.activeDirectory, queueID), "rb") as f:
            queued = parseQueueFile(f.read())
        self.assertEqual(queued.header.envelope, anEnvelope())
        self.assertEqual(queued.content, b"Subject: x\r\n\r\nbody\r\n")
