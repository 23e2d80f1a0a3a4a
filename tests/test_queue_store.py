"""
Tests for L{mtaguard.queue._store}: the durable, group-committed queue.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Callable

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mtaguard.interfaces import IQueue, IQueuedMessage, IQueueWorker
from mtaguard.queue import (
    MAX_PENDING_BYTES,
    ConcurrentCalls,
    Envelope,
    FileSystem,
    ManualWorker,
    QueueStore,
    SynchronousWorker,
    parseQueueFile,
    serialCalls,
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
        lock = threading.Lock()
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
                with lock:  # file fsyncs run in several threads
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
        one batch: twenty file fsyncs, but one fsync of C{active/} (and none
        of C{incoming/}); every commit fires after that batch.
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
        # The first batch's active/ fsync, and the second batch's filing.
        self.assertEqual(len(worker.pending), 2)
        worker.runAll()
        self.assertEqual(len(results), 20)
        self.assertEqual(fileSystem.fileSyncs, 21)
        self.assertEqual(sorted(fileSystem.directorySyncs), ["active", "active"])
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


class RestartTests(SynchronousTestCase):
    """
    Start-up empties C{incoming/}, naming only what a client was sending.
    """

    def test_unfinishedLoggedSparesSilent(self) -> None:
        """
        A file with content is logged as an unfinished message; an empty
        spare goes silently; both are removed.
        """
        from twisted.logger import formatEvent, globalLogPublisher

        directory = self.mktemp()
        incoming = os.path.join(directory, "incoming")
        os.makedirs(incoming)
        with open(os.path.join(incoming, "4dFVry0000z1"), "wb") as handle:
            handle.write(b"partial")
        open(os.path.join(incoming, "4dFVry0000z2"), "wb").close()
        logged: list[str] = []

        def observe(event: dict[str, object]) -> None:
            logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        clock = Clock()
        store = QueueStore(directory, reactor=clock, worker=SynchronousWorker())
        store.start()
        self.addCleanup(store.stop)
        self.assertEqual(os.listdir(store.incomingDirectory), [])
        self.assertIn("4dFVry0000z1: removing unfinished queue file after restart", logged)
        self.assertFalse(any("4dFVry0000z2" in line for line in logged))


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


class SpareFileTests(SynchronousTestCase):
    """
    A store keeps empty files created ahead in the worker, so that
    L{QueueStore.newMessage} need not create one in the reactor thread.
    """

    def makeStore(self, worker: object, spareFiles: int = 4) -> tuple[QueueStore, CountingFileSystem]:
        clock = Clock()
        clock.advance(ARRIVAL)
        fileSystem = CountingFileSystem()
        self.opens = 0
        realOpen = fileSystem.open

        def counting(path: str, flags: int, mode: int) -> int:
            self.opens += 1
            return realOpen(path, flags, mode)

        fileSystem.open = counting  # type: ignore[method-assign]
        store = QueueStore(
            self.mktemp(), reactor=clock, worker=worker, fileSystem=fileSystem, spareFiles=spareFiles  # type: ignore[arg-type]
        )
        store.start()
        return store, fileSystem

    def test_defaults(self) -> None:
        """
        With a worker given (tests, tools) the store keeps no spares; with
        its own thread pool it keeps L{SPARE_FILES}.
        """
        from mtaguard.queue._store import SPARE_FILES

        self.assertEqual(QueueStore(self.mktemp(), reactor=Clock(), worker=SynchronousWorker())._spareTarget, 0)
        self.assertEqual(QueueStore(self.mktemp(), reactor=Clock())._spareTarget, SPARE_FILES)

    def test_sparesUsed(self) -> None:
        """
        The first message creates its file itself and has spares created
        in the worker; the next messages take spares, with no file created
        in the calling thread, until half are used and more are made.
        """
        worker = ManualWorker()
        store, fileSystem = self.makeStore(worker)
        first = store.newMessage(anEnvelope())
        self.assertEqual(self.opens, 1)
        self.assertEqual(len(worker.pending), 1)
        worker.runAll()
        self.assertEqual(self.opens, 5)
        spares = sorted(set(os.listdir(store.incomingDirectory)) - {first.queueID})
        self.assertEqual(len(spares), 4)
        second = store.newMessage(anEnvelope())
        third = store.newMessage(anEnvelope())
        self.assertEqual(self.opens, 5)
        self.assertEqual([second.queueID, third.queueID], spares[:2])
        # Half used: two more are being made.
        worker.runAll()
        self.assertEqual(self.opens, 7)
        for message in (first, second, third):
            message.write(b"Subject: x\r\n\r\nbody\r\n")
            committed = message.commit()
            worker.runAll()
            self.assertEqual(self.successResultOf(committed), message.queueID)
        self.assertEqual(sorted(os.listdir(store.activeDirectory)), sorted([first.queueID, second.queueID, third.queueID]))
        self.assertEqual(len(os.listdir(store.incomingDirectory)), 4)
        stopped = store.stop()
        worker.runAll()
        self.successResultOf(stopped)
        self.assertEqual(os.listdir(store.incomingDirectory), [])

    def test_stopWaitsForSpares(self) -> None:
        """
        Spares still being created when the store stops are removed once
        they are.
        """
        worker = ManualWorker()
        store, fileSystem = self.makeStore(worker)
        message = store.newMessage(anEnvelope())
        message.abort()
        stopped = store.stop()
        self.assertNoResult(stopped)
        worker.runAll()
        self.successResultOf(stopped)
        self.assertEqual(os.listdir(store.incomingDirectory), [])

    def test_creationFails(self) -> None:
        """
        When spares cannot be created, the next message creates its file
        itself and gets the error at once, as without spares.
        """
        store, fileSystem = self.makeStore(SynchronousWorker())
        store.newMessage(anEnvelope())
        for _ in range(4):
            store.newMessage(anEnvelope())
        fileSystem.failures["open"] = errno.ENOSPC
        # The refill made when half were used took two more: use them.
        while store._spares:
            store.newMessage(anEnvelope())
        error = self.assertRaises(OSError, store.newMessage, anEnvelope())
        self.assertEqual(error.errno, errno.ENOSPC)
        store.stop()


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


class RecordingFileSystem(FileSystem):
    """
    The real file-system calls, logging (in call order, from any thread)
    the ones that matter for durability, each with the queue ID or the
    directory it concerns: C{("write", id)}, C{("fsync", id)},
    C{("fsyncEnd", id)}, C{("fsyncDirectory", name)}, C{("link", id)},
    C{("unlink", directory, id)}.  The test appends C{("ack", id)} when a
    commit fires.

    @ivar fileSync: called (outside the log lock) for every file fsync
        before the real one; a test replaces it to block or fail.
    """

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, ...]] = []
        self.lock = threading.Lock()
        self.names: dict[int, str] = {}
        self.fileSync: Callable[[int], None] = lambda descriptor: None

        def record(*entry: str) -> None:
            with self.lock:
                self.log.append(entry)

        def open_(path: str, flags: int, mode: int) -> int:
            descriptor = os.open(path, flags, mode)
            self.names[descriptor] = os.path.basename(path)
            return descriptor

        def write(descriptor: int, data: bytes) -> int:
            record("write", self.names[descriptor])
            return os.write(descriptor, data)

        def pwrite(descriptor: int, data: bytes, offset: int) -> int:
            record("write", self.names[descriptor])
            return os.pwrite(descriptor, data, offset)

        def fsync(descriptor: int) -> None:
            if descriptor not in self.names:
                record("fsyncDirectory", os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")))
                os.fsync(descriptor)
                return
            name = self.names[descriptor]
            record("fsync", name)
            self.fileSync(descriptor)
            os.fsync(descriptor)
            record("fsyncEnd", name)

        def link(source: str, target: str) -> None:
            os.link(source, target)
            record("link", os.path.basename(target))

        def unlink(path: str) -> None:
            os.unlink(path)
            record("unlink", os.path.basename(os.path.dirname(path)), os.path.basename(path))

        def close(descriptor: int) -> None:
            del self.names[descriptor]
            os.close(descriptor)

        self.open = open_  # type: ignore[assignment]
        self.write = write  # type: ignore[assignment]
        self.pwrite = pwrite  # type: ignore[assignment]
        self.fsync = fsync
        self.link = link
        self.unlink = unlink
        self.close = close

    def ack(self, queueID: str) -> str:
        """
        Log that C{queueID}'s commit fired (the server would answer 250).
        """
        with self.lock:
            self.log.append(("ack", queueID))
        return queueID


def assertDurableBeforeAck(test: SynchronousTestCase, log: list[tuple[str, ...]]) -> int:
    """
    Check, for every acknowledged message in C{log}, the order that makes
    the acknowledgement safe: its last write, then its file fsync returned,
    then its link into C{active/}, then an fsync of C{active/} begun after
    that link, then the acknowledgement.  Also: nothing is ever linked into
    C{active/} before its own fsync returned, and C{incoming/} is never
    fsync'ed.

    @return: the number of acknowledged messages.
    """
    acked = 0
    for index, entry in enumerate(log):
        if entry[0] == "link":
            queueID = entry[1]
            before = log[:index]
            test.assertIn(("fsyncEnd", queueID), before, f"{queueID} linked before its fsync returned")
            lastWrite = max(i for i, e in enumerate(before) if e == ("write", queueID))
            test.assertLess(lastWrite, before.index(("fsyncEnd", queueID)), f"{queueID} written after its fsync")
        if entry[0] == "ack":
            acked += 1
            queueID = entry[1]
            before = log[:index]
            test.assertIn(("link", queueID), before)
            linked = before.index(("link", queueID))
            test.assertIn(
                ("fsyncDirectory", "active"), before[linked + 1 :], f"{queueID} acknowledged before active/ was fsync'ed"
            )
        test.assertNotEqual(entry, ("fsyncDirectory", "incoming"))
    return acked


class ConcurrentFsyncTests(StoreTestsMixin, SynchronousTestCase):
    """
    The files of one batch are fsync'ed at the same time, in several
    threads, and only then linked and their directory fsync'ed.
    """

    def busyStore(self) -> tuple[ManualWorker, RecordingFileSystem, QueueStore]:
        """
        @return: a store whose first batch (one message) is held by the
            worker, so that the next commits form one batch together.
        """
        worker = ManualWorker()
        fileSystem = RecordingFileSystem()
        store = self.makeStore(worker, fileSystem)
        store.newMessage(anEnvelope()).commit().addCallback(fileSystem.ack)
        return worker, fileSystem, store

    def test_filesSyncedConcurrently(self) -> None:
        """
        Three files of one batch are fsync'ed from three threads at once:
        each fsync waits on a barrier that only three concurrent callers
        pass (fsyncs one after another would break it and fail the
        commits).
        """
        worker, fileSystem, store = self.busyStore()
        barrier = threading.Barrier(3, timeout=30)
        threads: set[str] = set()
        messages = [store.newMessage(anEnvelope()) for _ in range(3)]
        descriptors = {message._descriptor for message in messages}

        def fileSync(descriptor: int) -> None:
            if descriptor in descriptors:
                threads.add(threading.current_thread().name)
                barrier.wait()

        fileSystem.fileSync = fileSync
        commits = [message.commit().addCallback(fileSystem.ack) for message in messages]
        worker.runAll()
        for committed in commits:
            self.successResultOf(committed)
        self.assertEqual(len(threads), 3)
        self.assertNotIn(threading.current_thread().name, threads)
        self.assertEqual(assertDurableBeforeAck(self, fileSystem.log), 4)
        self.assertEqual(store.batches, 2)

    def test_linkAfterEveryFileSync(self) -> None:
        """
        No file of the batch is linked into C{active/} and C{active/} is not
        fsync'ed until every file fsync of the batch has returned; then
        C{active/} is fsync'ed once, and C{incoming/} never.
        """
        worker, fileSystem, store = self.busyStore()
        commits = [store.newMessage(anEnvelope()).commit().addCallback(fileSystem.ack) for _ in range(5)]
        worker.runNext()  # the first batch files
        worker.runNext()  # the first batch syncs
        self.assertEqual(len(worker.pending), 1)  # the five file
        del fileSystem.log[:]
        worker.runAll()
        queueIDs = [self.successResultOf(committed) for committed in commits]
        kinds = [entry[0] for entry in fileSystem.log if entry[0] != "write"]
        # The five fsyncs start and end in any order (they are concurrent),
        # but all of them end before the first link.
        self.assertEqual(sorted(kinds[:10]), ["fsync"] * 5 + ["fsyncEnd"] * 5)
        self.assertEqual(kinds[10:], ["link"] * 5 + ["fsyncDirectory"] + ["unlink"] * 5 + ["ack"] * 5)
        self.assertIn(("fsyncDirectory", "active"), fileSystem.log)
        self.assertEqual(assertDurableBeforeAck(self, fileSystem.log), 5)
        self.assertEqual(sorted(os.listdir(store.activeDirectory))[-5:], sorted(queueIDs))

    def test_oneFsyncFailsOthersCommit(self) -> None:
        """
        When one of the batch's concurrent file fsyncs fails, only that
        commit fails; the others are linked and acknowledged, and the
        failed file is removed.
        """
        worker, fileSystem, store = self.busyStore()
        messages = [store.newMessage(anEnvelope()) for _ in range(3)]
        failing = messages[1]._descriptor

        def fileSync(descriptor: int) -> None:
            if descriptor == failing:
                raise OSError(errno.EIO, "I/O error")

        fileSystem.fileSync = fileSync
        commits = [message.commit() for message in messages]
        worker.runAll()
        self.successResultOf(commits[0])
        self.assertEqual(self.failureResultOf(commits[1], OSError).value.errno, errno.EIO)
        self.successResultOf(commits[2])
        self.assertNotIn(messages[1].queueID, os.listdir(store.activeDirectory))
        self.assertEqual(os.listdir(store.incomingDirectory), [])

    def test_serialRunner(self) -> None:
        """
        L{serialCalls} runs the calls in order and reports each one's
        exception; L{ConcurrentCalls} reports the same.
        """
        calls: list[int] = []
        error = OSError(errno.EIO, "x")

        def fails() -> None:
            raise error

        self.assertEqual(serialCalls([lambda: calls.append(1), fails, lambda: calls.append(3)]), [None, error, None])
        self.assertEqual(calls, [1, 3])
        runner = ConcurrentCalls(maxThreads=2)
        self.addCleanup(runner.shutdown)
        self.assertEqual(runner([lambda: calls.append(4), fails, lambda: calls.append(4)]), [None, error, None])
        self.assertEqual(calls, [1, 3, 4, 4])

    def test_injectedRunner(self) -> None:
        """
        The store hands each batch's file fsyncs to its C{runConcurrently}
        in one call, and to nothing else.
        """
        batches: list[int] = []

        def runner(calls: list[Callable[[], None]]) -> list[BaseException | None]:
            batches.append(len(calls))
            return serialCalls(calls)

        worker = ManualWorker()
        clock = Clock()
        store = QueueStore(self.mktemp(), reactor=clock, worker=worker, runConcurrently=runner)
        store.start()
        self.addCleanup(store.stop)
        store.newMessage(anEnvelope()).commit()
        commits = [store.newMessage(anEnvelope()).commit() for _ in range(4)]
        worker.runAll()
        for committed in commits:
            self.successResultOf(committed)
        self.assertEqual(batches, [1, 4])


class OverlapTests(StoreTestsMixin, SynchronousTestCase):
    """
    The next batch starts filing as soon as the previous one moves on to
    its C{active/} fsync; each batch's commits still wait for their own.
    """

    def test_nextBatchFilesDuringSync(self) -> None:
        """
        While batch 1 waits for its C{active/} fsync, batch 2 is already
        filing; a third batch does not start filing before batch 2 has
        finished filing.  Running batch 2 entirely before batch 1's sync
        fires batch 2's commits only, after its own C{active/} fsync.
        """
        worker = ManualWorker()
        fileSystem = RecordingFileSystem()
        store = self.makeStore(worker, fileSystem)
        first = store.newMessage(anEnvelope()).commit().addCallback(fileSystem.ack)
        second = [store.newMessage(anEnvelope()).commit().addCallback(fileSystem.ack) for _ in range(2)]
        worker.runNext()  # batch 1 files
        self.assertEqual(len(worker.pending), 2)  # batch 1 syncs, batch 2 files
        third = store.newMessage(anEnvelope()).commit().addCallback(fileSystem.ack)
        self.assertEqual(len(worker.pending), 2)  # batch 3 waits for batch 2's filing
        worker.runNext(1)  # batch 2 files, before batch 1 has synced
        self.assertEqual(len(worker.pending), 3)  # batch 1 syncs, batch 2 syncs, batch 3 files
        worker.runNext(1)  # batch 2 syncs
        for committed in second:
            self.successResultOf(committed)
        self.assertNoResult(first)
        self.assertNoResult(third)
        worker.runAll()
        self.successResultOf(first)
        self.successResultOf(third)
        self.assertEqual(store.batches, 3)
        self.assertEqual(assertDurableBeforeAck(self, fileSystem.log), 4)

    def test_callbacksGatherIntoOneBatch(self) -> None:
        """
        Writers that commit their next message from the previous commit's
        callback all land in one batch, rather than the first one starting
        a batch of its own.
        """
        worker = ManualWorker()
        store = self.makeStore(worker)
        store.newMessage(anEnvelope()).commit()
        next: list[object] = []

        def again(queueID: str) -> None:
            next.append(store.newMessage(anEnvelope()).commit())

        for _ in range(5):
            store.newMessage(anEnvelope()).commit().addCallback(again)
        worker.runAll()
        self.assertEqual(len(next), 5)
        # 1: the first message; 2: the five; 3: the five committed from the
        # callbacks, together (not a first one alone, then four).
        self.assertEqual(store.batches, 3)

    def test_stopWaitsForBothStages(self) -> None:
        """
        L{QueueStore.stop} waits for every batch, filing and syncing.
        """
        worker = ManualWorker()
        store = QueueStore(self.mktemp(), reactor=Clock(), worker=worker)
        store.start()
        store.newMessage(anEnvelope()).commit()
        committed = store.newMessage(anEnvelope()).commit()
        worker.runNext()
        stopped = store.stop()
        worker.runNext()
        self.assertNoResult(stopped)
        worker.runAll()
        self.successResultOf(committed)
        self.successResultOf(stopped)


class CrashSafetyTests(StoreTestsMixin, SynchronousTestCase):
    """
    A crash at any step of overlapping batches loses no acknowledged
    message, and leaves nothing but complete messages after the restart.
    """

    def scenario(self, steps: int, order: Callable[[ManualWorker], int]) -> bool:
        """
        Commit messages in three overlapping batches, run C{steps} worker
        jobs (choosing each with C{order}), crash (abandon the rest), and
        restart the store over the same directory.  Every acknowledged
        message must be in C{active/} with its content; every file in
        C{active/} must parse; C{incoming/} must be empty.

        @return: whether every job had run before the crash.
        """
        worker = ManualWorker()
        fileSystem = RecordingFileSystem()
        store = self.makeStore(worker, fileSystem)
        contents: dict[str, bytes] = {}

        def commit(i: int) -> None:
            message = store.newMessage(anEnvelope())
            content = b"message %d\r\n" % (i,)
            message.write(content)
            contents[message.queueID] = content
            message.commit().addCallback(fileSystem.ack)

        commit(0)
        for i in range(1, 4):
            commit(i)
        for _ in range(steps):
            if not worker.pending:
                break
            if len(worker.pending) == 2 and len(contents) < 7:
                for i in range(4, 7):  # arrive while two stages are pending
                    commit(i)
            worker.runNext(order(worker))
        finished = not worker.pending
        worker.pending.clear()  # the crash
        acked = [entry[1] for entry in fileSystem.log if entry[0] == "ack"]
        assertDurableBeforeAck(self, fileSystem.log)
        for descriptor in list(fileSystem.names):
            os.close(descriptor)
        restarted = QueueStore(store.directory, reactor=Clock(), worker=SynchronousWorker())
        restarted.start()
        restarted.stop()
        self.assertEqual(os.listdir(restarted.incomingDirectory), [])
        active = os.listdir(restarted.activeDirectory)
        for queueID in acked:
            self.assertIn(queueID, active)
        for queueID in active:
            with open(os.path.join(restarted.activeDirectory, queueID), "rb") as f:
                self.assertEqual(parseQueueFile(f.read()).content, contents[queueID])
        return finished

    def test_crashAtEveryStepInOrder(self) -> None:
        """
        Running the jobs oldest first, a crash after any number of them is
        safe.
        """
        steps = 0
        while not self.scenario(steps, lambda worker: 0):
            steps += 1
        self.assertGreaterEqual(steps, 5)

    def test_crashAtEveryStepNewestFirst(self) -> None:
        """
        Running the newest job first (a later batch overtaking an earlier
        one's sync), a crash after any number of them is safe.
        """
        steps = 0
        while not self.scenario(steps, lambda worker: len(worker.pending) - 1):
            steps += 1
        self.assertGreaterEqual(steps, 5)

    def test_leftoverIncomingLinkRemovedQuietly(self) -> None:
        """
        A crash after the C{active/} fsync but before (or with a lost)
        unlink of the C{incoming/} name leaves two links; the restart
        removes the C{incoming/} one, without the "unfinished" log line, and
        the message stays in C{active/} intact.
        """
        store = self.makeStore(SynchronousWorker())
        message = store.newMessage(anEnvelope())
        message.write(b"kept\r\n")
        queueID = self.successResultOf(message.commit())
        os.link(os.path.join(store.activeDirectory, queueID), os.path.join(store.incomingDirectory, queueID))
        events: list[dict[str, object]] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        restarted = QueueStore(store.directory, reactor=Clock(), worker=SynchronousWorker())
        restarted.start()
        self.addCleanup(restarted.stop)
        self.assertEqual(os.listdir(restarted.incomingDirectory), [])
        self.assertEqual(os.listdir(restarted.activeDirectory), [queueID])
        with open(os.path.join(restarted.activeDirectory, queueID), "rb") as f:
            self.assertEqual(parseQueueFile(f.read()).content, b"kept\r\n")
        self.assertFalse([e for e in events if "unfinished" in str(e.get("log_format", ""))])
