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
from mtaguard.queue._store import WRITE_BEHIND_BYTES

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


class CountingFileSystem(FileSystem):
    """
    The real file-system calls, counting fsyncs of files and of directories,
    and failing the calls named in C{failures} with the given errno.
    """

    def __init__(self, failures: dict[str, int] | None = None) -> None:
        super().__init__()
        self.fileSyncs = 0
        self.directorySyncs: list[str] = []
        self.failures = dict(failures or {})
        realOpen, realWrite, realFsync, realLink = os.open, os.write, os.fsync, os.link

        def failing(name: str, call: Callable[..., object]) -> Callable[..., object]:
            def wrapper(*args: object) -> object:
                if name in self.failures:
                    raise OSError(self.failures[name], os.strerror(self.failures[name]))
                return call(*args)

            return wrapper

        def fsync(descriptor: int) -> None:
            if os.path.isdir(f"/proc/self/fd/{descriptor}"):
                self.directorySyncs.append(os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")))
                failing("fsyncDirectory", realFsync)(descriptor)
            else:
                self.fileSyncs += 1
                failing("fsync", realFsync)(descriptor)

        self.open = failing("open", realOpen)  # type: ignore[assignment]
        self.write = failing("write", realWrite)  # type: ignore[assignment]
        self.link = failing("link", realLink)  # type: ignore[assignment]
        self.fsync = fsync


class GroupCommitTests(StoreTestsMixin, SynchronousTestCase):
    """
    Commits that arrive while a batch is running are committed together in
    the next one, with one fsync of each directory.
    """

    def test_concurrentCommitsShareDirectorySyncs(self) -> None:
        """
        Twenty messages committed while the worker is busy are written in
        one batch: twenty file fsyncs, but one fsync of C{active/} and one
        of C{incoming/}; every commit fires after that batch.
        """
        worker = ManualWorker()
        fileSystem = CountingFileSystem()
        store = self.makeStore(worker, fileSystem)
        first = store.newMessage(anEnvelope())
        first.write(b"first\r\n")
        first.commit()
        # The worker is now busy with the first message's commit.
        results = []
        for i in range(20):
            message = store.newMessage(anEnvelope())
            message.write(b"message %d\r\n" % (i,))
            message.commit().addCallback(results.append)
        worker.runNext()
        self.assertEqual(results, [])
        self.assertEqual(len(worker.pending), 1)
        worker.runNext()
        self.assertEqual(len(results), 20)
        self.assertEqual(fileSystem.fileSyncs, 21)
        self.assertEqual(sorted(fileSystem.directorySyncs), ["active", "active", "incoming", "incoming"])
        self.assertEqual(store.batches, 2)
        self.assertEqual(sorted(os.listdir(store.activeDirectory)), sorted(results + [first.queueID]))

    def test_commitWaitsForDirectorySync(self) -> None:
        """
        The commit does not fire before the batch that fsyncs the
        directories has finished.
        """
        worker = ManualWorker()
        store = self.makeStore(worker)
        message = store.newMessage(anEnvelope())
        committed = message.commit()
        self.assertNoResult(committed)
        worker.runAll()
        self.assertEqual(self.successResultOf(committed), message.queueID)

    def test_batchesInOrder(self) -> None:
        """
        Content written while a batch runs is appended by the next batch,
        after the content of the running one.
        """
        worker = ManualWorker()
        store = self.makeStore(worker)
        message = store.newMessage(anEnvelope())
        big = b"x" * (WRITE_BEHIND_BYTES - 2) + b"\r\n"
        message.write(b"one\r\n")
        message.write(big)
        self.assertEqual(len(worker.pending), 1)
        message.write(b"three\r\n")
        worker.runNext()
        committed = message.commit()
        worker.runAll()
        queueID = self.successResultOf(committed)
        with open(os.path.join(store.activeDirectory, queueID), "rb") as f:
            self.assertEqual(parseQueueFile(f.read()).content, b"one\r\n" + big + b"three\r\n")

    def test_smallMessageOneBatch(self) -> None:
        """
        A message smaller than L{WRITE_BEHIND_BYTES} is written by its
        commit's batch alone: one trip to the worker.
        """
        worker = ManualWorker()
        store = self.makeStore(worker)
        message = store.newMessage(anEnvelope())
        message.write(b"small\r\n")
        self.assertEqual(len(worker.pending), 0)
        committed = message.commit()
        worker.runAll()
        self.successResultOf(committed)
        self.assertEqual(store.batches, 1)


class BackpressureTests(StoreTestsMixin, SynchronousTestCase):
    """
    The client's transport is paused while too much content awaits the disk.
    """

    def test_pausedAboveBoundResumedWhenDrained(self) -> None:
        """
        The producer is paused once more than L{MAX_PENDING_BYTES} are
        pending, and resumed when the worker has written them.
        """
        worker = ManualWorker()
        store = self.makeStore(worker)
        message = store.newMessage(anEnvelope())
        transport = StringTransport()
        message.registerProducer(transport, True)
        chunk = b"x" * 998 + b"\r\n"
        written = 0
        while written + len(chunk) <= MAX_PENDING_BYTES:
            message.write(chunk)
            written += len(chunk)
        self.assertEqual(transport.producerState, "producing")
        message.write(chunk)
        self.assertEqual(transport.producerState, "paused")
        worker.runAll()
        self.assertEqual(transport.producerState, "producing")
        message.unregisterProducer()
        committed = message.commit()
        worker.runAll()
        self.successResultOf(committed)

    def test_resumedWhenWriteFails(self) -> None:
        """
        A paused producer is resumed when the write fails, so the server
        can read the rest and answer with the error at the end of data.
        """
        worker = ManualWorker()
        fileSystem = CountingFileSystem()
        store = self.makeStore(worker, fileSystem)
        message = store.newMessage(anEnvelope())
        transport = StringTransport()
        message.registerProducer(transport, True)
        message.write(b"x" * (MAX_PENDING_BYTES + 1))
        self.assertEqual(transport.producerState, "paused")
        fileSystem.failures["write"] = errno.ENOSPC
        worker.runAll()
        self.assertEqual(transport.producerState, "producing")
        message.write(b"more, discarded\r\n")
        failure = self.failureResultOf(message.commit(), OSError)
        self.assertEqual(failure.value.errno, errno.ENOSPC)


class FailureTests(StoreTestsMixin, SynchronousTestCase):
    """
    A message that cannot be made durable fails its commit and leaves no
    file behind.
    """

    def assertQueueEmpty(self, store: QueueStore) -> None:
        """
        Neither C{incoming/} nor C{active/} holds a file.
        """
        self.assertEqual(os.listdir(store.incomingDirectory), [])
        self.assertEqual(os.listdir(store.activeDirectory), [])

    def commitFailing(self, call: str, code: int) -> None:
        """
        Commit a message while C{call} fails with C{code}: the commit fails
        with that error and the queue is empty.
        """
        fileSystem = CountingFileSystem({call: code})
        store = self.makeStore(SynchronousWorker(), fileSystem)
        message = store.newMessage(anEnvelope())
        message.write(b"Subject: x\r\n\r\nbody\r\n")
        failure = self.failureResultOf(message.commit(), OSError)
        self.assertEqual(failure.value.errno, code)
        self.assertQueueEmpty(store)

    def test_writeDiskFull(self) -> None:
        """
        C{ENOSPC} from a write fails the commit.
        """
        self.commitFailing("write", errno.ENOSPC)

    def test_fsyncDiskFull(self) -> None:
        """
        C{ENOSPC} from the file's fsync fails the commit.
        """
        self.commitFailing("fsync", errno.ENOSPC)

    def test_fsyncIOError(self) -> None:
        """
        C{EIO} from the file's fsync fails the commit.
        """
        self.commitFailing("fsync", errno.EIO)

    def test_linkPermission(self) -> None:
        """
        C{EACCES} when moving into C{active/} fails the commit.
        """
        self.commitFailing("link", errno.EACCES)

    def test_directorySyncFails(self) -> None:
        """
        A failed fsync of C{active/} fails the commit and takes the file out
        of C{active/} again: it was never acknowledged.
        """
        self.commitFailing("fsyncDirectory", errno.EIO)

    def test_newMessageFails(self) -> None:
        """
        L{QueueStore.newMessage} raises L{OSError} when the file cannot be
        created.
        """
        store = self.makeStore(SynchronousWorker(), CountingFileSystem({"open": errno.EACCES}))
        error = self.assertRaises(OSError, store.newMessage, anEnvelope())
        self.assertEqual(error.errno, errno.EACCES)

    def test_newMessageNotRunning(self) -> None:
        """
        A store that is not started refuses new messages with L{OSError}.
        """
        store = QueueStore(self.mktemp(), reactor=Clock(), worker=SynchronousWorker())
        self.assertRaises(OSError, store.newMessage, anEnvelope())

    def test_oneFailureDoesNotFailOthers(self) -> None:
        """
        A message whose write fails does not fail another message committed
        in the same batch.
        """
        worker = ManualWorker()
        fileSystem = CountingFileSystem()
        store = self.makeStore(worker, fileSystem)
        good = store.newMessage(anEnvelope())
        bad = store.newMessage(anEnvelope())
        goodCommit = good.commit()
        worker.runNext()
        realWrite = os.write
        failingDescriptor = bad._descriptor

        def write(descriptor: int, data: bytes) -> int:
            if descriptor == failingDescriptor:
                raise OSError(errno.ENOSPC, "full")
            return realWrite(descriptor, data)

        fileSystem.write = write
        bad.write(b"x\r\n")
        badCommit = bad.commit()
        worker.runAll()
        self.successResultOf(goodCommit)
        self.failureResultOf(badCommit, OSError)
        self.assertEqual(os.listdir(store.activeDirectory), [good.queueID])
        self.assertEqual(os.listdir(store.incomingDirectory), [])


class AbortTests(StoreTestsMixin, SynchronousTestCase):
    """
    L{IQueuedMessage.abort} discards a message.
    """

    def test_abortRemovesFile(self) -> None:
        """
        An aborted message's file is removed; abort is idempotent.
        """
        store = self.makeStore(SynchronousWorker())
        message = store.newMessage(anEnvelope())
        message.write(b"partial")
        self.assertEqual(os.listdir(store.incomingDirectory), [message.queueID])
        message.abort()
        message.abort()
        self.assertEqual(os.listdir(store.incomingDirectory), [])

    def test_abortAfterCommitKeepsMessage(self) -> None:
        """
        Abort after commit does nothing: the message may be acknowledged.
        """
        store = self.makeStore(SynchronousWorker())
        message = store.newMessage(anEnvelope())
        queueID = self.successResultOf(message.commit())
        message.abort()
        self.assertEqual(os.listdir(store.activeDirectory), [queueID])

    def test_writeAfterAbort(self) -> None:
        """
        Writing to an aborted message is a programming error.
        """
        store = self.makeStore(SynchronousWorker())
        message = store.newMessage(anEnvelope())
        message.abort()
        self.assertRaises(RuntimeError, message.write, b"x")


class RestartTests(StoreTestsMixin, SynchronousTestCase):
    """
    A crash leaves only complete, acknowledged messages for the next start.
    """

    def test_crashMidBatch(self) -> None:
        """
        When the process dies with a batch unfinished (the worker abandoned),
        the next start removes the unacknowledged files from C{incoming/}
        and keeps what was committed before in C{active/}.
        """
        worker = ManualWorker()
        store = self.makeStore(worker)
        committed = store.newMessage(anEnvelope())
        committedID = committed.commit()
        worker.runAll()
        queueID = self.successResultOf(committedID)
        unfinished = store.newMessage(anEnvelope())
        unfinished.write(b"half a message")
        pending = unfinished.commit()
        # Crash: the worker never runs the batch, the commit never fires.
        self.assertNoResult(pending)
        restarted = QueueStore(store.directory, reactor=Clock(), worker=SynchronousWorker())
        restarted.start()
        self.addCleanup(restarted.stop)
        self.assertEqual(os.listdir(restarted.incomingDirectory), [])
        self.assertEqual(os.listdir(restarted.activeDirectory), [queueID])

    def test_stopWaitsForBatch(self) -> None:
        """
        L{QueueStore.stop} fires once the running batch has finished.
        """
        worker = ManualWorker()
        clock = Clock()
        store = QueueStore(self.mktemp(), reactor=clock, worker=worker)
        store.start()
        message = store.newMessage(anEnvelope())
        committed = message.commit()
        stopped = store.stop()
        self.assertNoResult(stopped)
        worker.runAll()
        self.successResultOf(committed)
        self.successResultOf(stopped)


class SyncFileSystemTests(StoreTestsMixin, SynchronousTestCase):
    """
    With C{FileSystem.syncFileSystem}, a batch of several commits is
    flushed by one call instead of one fsync per file.
    """

    def test_oneFlushPerBatch(self) -> None:
        """
        Three commits in one batch cause one file-system flush and no file
        fsync; a failing flush fails all three and leaves C{active/} empty.
        """
        flushes: list[int] = []
        fileSystem = CountingFileSystem()
        fileSystem.syncFileSystem = flushes.append
        worker = ManualWorker()
        store = self.makeStore(worker, fileSystem)
        commits = [store.newMessage(anEnvelope()).commit() for _ in range(3)]
        worker.runAll()
        for committed in commits:
            self.successResultOf(committed)
        # The first commit ran alone (one fsync), the other two together.
        self.assertEqual((len(flushes), fileSystem.fileSyncs), (1, 1))

        def failing(descriptor: int) -> None:
            raise OSError(errno.EIO, "flush failed")

        fileSystem.syncFileSystem = failing
        before = set(os.listdir(store.activeDirectory))
        busy = store.newMessage(anEnvelope()).commit()
        commits = [store.newMessage(anEnvelope()).commit() for _ in range(2)]
        worker.runAll()
        self.successResultOf(busy)
        for committed in commits:
            self.assertEqual(self.failureResultOf(committed, OSError).value.errno, errno.EIO)
        self.assertEqual(len(set(os.listdir(store.activeDirectory)) - before), 1)
        self.assertEqual(os.listdir(store.incomingDirectory), [])
