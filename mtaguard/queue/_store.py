# -*- test-case-name: tests.test_queue_store -*-
"""
The durable queue: messages are streamed into C{incoming/} by a worker
thread, and on commit fsync'ed and moved into C{active/} in group-committed
batches before the SMTP server may answer 250.

Every blocking file-system call runs in the worker, except the creation of
the queue file in L{QueueStore.newMessage}, which the L{IQueue} contract
makes synchronous so that the server can answer 452 at once.  A store with
its own thread pool keeps a few empty files created ahead by the worker
(L{SPARE_FILES}), so that C{newMessage} normally takes one of those and
creates a file itself only when none is left.

A batch has two stages, each one job in the worker:

 1. I{filing} (L{_fileBatch}): append content, write the sizes, fsync the
    committing files concurrently (a bounded set of fsync threads, so that
    the file system merges them into one journal commit instead of one per
    file) and link the synced files into C{active/};
 2. I{syncing} (L{_syncActive}): one fsync of C{active/} for the whole
    batch, then the C{incoming/} names are dropped (not fsync'ed: see
    C{docs/queue-format.md}).  Only then do the commits fire.

At most one batch is filing at a time, so content reaches each file in
order; but the next batch starts filing as soon as the previous one has
moved on to syncing, so the two overlap (and their fsyncs can share a
journal commit).  Whatever the server asks for while a batch is filing
(more content, commits, aborts) waits for the next one, which therefore
carries every commit that arrived meanwhile.  The slower the disk, the
larger the batches, so the number of directory fsyncs per message falls as
the load rises.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, TypeVar

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer, IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ..interfaces import IQueue, IQueuedMessage, IQueueWorker
from ._envelope import Envelope
from ..smtp._escape import escapeForLog
from ._format import SIZE_WIDTH, EncodedHeader, QueueFileHeader, encodeHeader, encodeSize
from ._headers import MessageIDScanner
from ._ids import QueueIDGenerator, isQueueID

T = TypeVar("T")

#: Content waiting for the worker beyond which the producer (the client's
#: transport) is paused: large enough that a message streams in a few
#: batches without pausing, small enough that thousands of sessions cannot
#: exhaust memory (1,000 sessions x 256 KiB = 256 MiB at worst).
MAX_PENDING_BYTES = 256 * 1024

#: Content is handed to the worker before the commit only once this much
#: has accumulated: a typical message (a few KiB) then costs one batch, the
#: commit's, rather than two thread hops.
WRITE_BEHIND_BYTES = 64 * 1024

#: A committed message up to this size is also kept in memory until its
#: commit callbacks have run, so that a delivery agent told about it then
#: sends it without opening the file in the reactor thread (an open() that
#: waits on the directory the worker is linking into and fsync'ing).  A
#: larger message is only on disk: what is held per message in flight stays
#: bounded.
INLINE_CONTENT_BYTES = 64 * 1024

#: The most files of one batch fsync'ed at the same time (one thread
#: each).  ext4 turns concurrent fsyncs into one journal commit, serial ones
#: into one commit each; 20 files took 45-152 ms serially and 10-17 ms from
#: 20 threads on this project's test machine.
MAX_FSYNC_THREADS = 32

#: Empty files kept created ahead in C{incoming/} by a store that runs its
#: own thread pool, so that L{QueueStore.newMessage} does not create one in
#: the reactor thread: an C{open(O_CREAT)} waits for the file system's
#: journal, and while fsyncs are frequent (a busy queue, deliveries marking
#: their recipients) that wait stalls every session.  Refilled in the
#: worker when half are used.
SPARE_FILES = 64

INCOMING = "incoming"
ACTIVE = "active"

_log = Logger()
#: Postfix logs these lines from its cleanup daemon.
_cleanupLog = Logger(namespace="mtaguard.cleanup")
#: The most bytes of a Message-ID value logged (a header line's length).
MESSAGE_ID_LOG_LIMIT = 998


@implementer(IQueueWorker)
class SynchronousWorker:
    """
    Run jobs at once, in the calling thread: for tests, and for tools that
    have no reactor running.
    """

    def run(self, job: Callable[[], T]) -> Deferred[T]:
        """
        Run C{job} now.

        @return: a fired L{Deferred}.
        """
        try:
            return succeed(job())
        except BaseException:
            return fail()


@implementer(IQueueWorker)
class ManualWorker:
    """
    Hold jobs until the test runs them, so that a test can look at the
    state between batches, group several commits into one batch, or
    abandon jobs to simulate a crash.

    @ivar pending: the jobs not yet run, oldest first.
    """

    def __init__(self) -> None:
        self.pending: deque[tuple[Callable[[], Any], Deferred[Any]]] = deque()

    def run(self, job: Callable[[], T]) -> Deferred[T]:
        """
        Hold C{job} until L{runNext} or L{runAll}.
        """
        deferred: Deferred[T] = Deferred()
        self.pending.append((job, deferred))
        return deferred

    def runNext(self, index: int = 0) -> None:
        """
        Run the oldest held job (or the one at C{index} in L{pending}, to
        run jobs out of order) and fire its L{Deferred}.

        @raise IndexError: if no such job is held.
        """
        job, deferred = self.pending[index]
        del self.pending[index]
        try:
            result = job()
        except BaseException:
            deferred.errback()
        else:
            deferred.callback(result)

    def runAll(self) -> None:
        """
        Run held jobs, including the ones they cause, until none is left.
        """
        while self.pending:
            self.runNext()


@implementer(IQueueWorker)
class ThreadPoolWorker:
    """
    Run jobs in a L{ThreadPool}; their L{Deferred}s fire in the reactor
    thread.
    """

    def __init__(self, reactor: IReactorThreads, pool: ThreadPool) -> None:
        self._reactor = reactor
        self._pool = pool

    def run(self, job: Callable[[], T]) -> Deferred[T]:
        """
        Run C{job} in a pool thread.
        """
        return deferToThreadPool(self._reactor, self._pool, job)


@define
class FileSystem:
    """
    The file-system calls of the store, so that tests can count fsyncs or
    make them fail (C{ENOSPC}, C{EIO}) without a full disk.
    """

    open: Callable[[str, int, int], int] = os.open
    write: Callable[[int, bytes], int] = os.write
    pwrite: Callable[[int, bytes, int], int] = os.pwrite
    fsync: Callable[[int], None] = os.fsync
    link: Callable[[str, str], None] = os.link
    unlink: Callable[[str], None] = os.unlink
    close: Callable[[int], None] = os.close
    #: When set (see L{linuxSyncfs}), a batch of several commits flushes
    #: the whole file system once instead of fsyncing each file: one
    #: journal commit for the batch.  Off by default: it also flushes other
    #: programs' dirty data on that file system.
    syncFileSystem: Callable[[int], None] | None = None


def linuxSyncfs() -> Callable[[int], None] | None:
    """
    @return: C{syncfs(2)} as a function of a descriptor, or C{None} where it
        is missing.  Linux reports write-back errors from it since 5.8.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]

    def call(descriptor: int) -> None:
        if syncfs(descriptor) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return call


#: Runs calls (each without arguments), waits for all of them, and returns
#: for each C{None} or the exception it raised, in order.
ConcurrentRunner = Callable[[list[Callable[[], None]]], "list[BaseException | None]"]


def serialCalls(calls: list[Callable[[], None]]) -> list[BaseException | None]:
    """
    A L{ConcurrentRunner} that runs the calls one after another in the
    calling thread: for tests that must not start threads.
    """
    results: list[BaseException | None] = []
    for call in calls:
        try:
            call()
        except BaseException as e:
            results.append(e)
        else:
            results.append(None)
    return results


class ConcurrentCalls:
    """
    A L{ConcurrentRunner} over a bounded, lazily grown set of threads: the
    fsyncs of one batch's files run at the same time, so that the file
    system can merge them into one journal commit.

    A single call runs in the calling thread (no hand-off).
    """

    def __init__(self, maxThreads: int = MAX_FSYNC_THREADS) -> None:
        self._maxThreads = maxThreads
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __call__(self, calls: list[Callable[[], None]]) -> list[BaseException | None]:
        if len(calls) <= 1:
            return serialCalls(calls)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._maxThreads, thread_name_prefix="mtaguard-fsync")
            executor = self._executor
        futures = [executor.submit(call) for call in calls]
        # Wait for every call, even after a failure: the batch must not go
        # on (link, directory fsync) while a file fsync is still running.
        return [future.exception() for future in futures]

    def shutdown(self) -> None:
        """
        Stop the threads (after the calls they are running); a later call
        starts new ones.
        """
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


# --- the worker side: plain functions over plain data -----------------------


@define
class _Job:
    """
    What one batch does for one message, taken from the message in the
    reactor thread and handed to the worker.
    """

    descriptor: int
    queueID: str
    chunks: list[bytes]
    contentBytes: int = 0
    commit: bool = False
    abort: bool = False
    sizeOffset: int = 0
    contentSize: int = 0
    # Filled in by the worker:
    error: OSError | None = None
    closed: bool = False
    linked: bool = False


def _writeAll(fileSystem: FileSystem, descriptor: int, data: bytes) -> None:
    # A regular file takes a whole write unless the disk fills up, in which
    # case the next write raises ENOSPC; loop for the short write between.
    while data:
        written = fileSystem.write(descriptor, data)
        data = data[written:]


def _discard(fileSystem: FileSystem, job: _Job, path: str) -> None:
    # Best effort: the file is worthless now, and a failure to remove it
    # is cleaned up at the next start (incoming/ is emptied then).
    if not job.closed:
        job.closed = True
        try:
            fileSystem.close(job.descriptor)
        except OSError:
            pass
    try:
        fileSystem.unlink(path)
    except OSError:
        pass


def _fileBatch(
    fileSystem: FileSystem,
    directory: str,
    activeDescriptor: int,
    runConcurrently: ConcurrentRunner,
    jobs: list[_Job],
) -> list[_Job]:
    """
    Stage one of a batch, in the worker: append content, then for the
    committing messages write the size, fsync their files B{concurrently}
    (so that the file system can merge them into one journal commit) and,
    once every file fsync has returned, link each synced file into
    C{active/}.  The linked jobs are marked C{linked}; L{_syncActive} makes
    their names durable.

    A file is linked into C{active/} only after its own fsync succeeded, so
    a name in C{active/} never points at content that may not be on disk.

    Errors are recorded in each job, never raised: one message's failure
    must not fail another's commit.
    """
    incoming = os.path.join(directory, INCOMING)
    active = os.path.join(directory, ACTIVE)
    committing: list[_Job] = []
    for job in jobs:
        path = os.path.join(incoming, job.queueID)
        if job.abort:
            _discard(fileSystem, job, path)
            continue
        try:
            for chunk in job.chunks:
                _writeAll(fileSystem, job.descriptor, chunk)
            if job.commit:
                fileSystem.pwrite(job.descriptor, encodeSize(job.contentSize), job.sizeOffset)
                committing.append(job)
        except OSError as e:
            job.error = e
            _discard(fileSystem, job, path)

    synced: list[_Job] = []
    if fileSystem.syncFileSystem is not None and len(committing) > 1:
        try:
            fileSystem.syncFileSystem(activeDescriptor)
        except OSError as e:
            for job in committing:
                job.error = e
                _discard(fileSystem, job, os.path.join(incoming, job.queueID))
        else:
            synced = committing
    elif committing:
        fsync = fileSystem.fsync
        errors = runConcurrently([_bind(fsync, job.descriptor) for job in committing])
        for job, error in zip(committing, errors):
            if error is None:
                synced.append(job)
            elif isinstance(error, OSError):
                # After a failed fsync the page cache no longer tells what
                # is on disk: the message is failed, never retried.
                job.error = error
                _discard(fileSystem, job, os.path.join(incoming, job.queueID))
            else:
                job.error = OSError(errno.EIO, f"fsync failed: {error!r}")
                _discard(fileSystem, job, os.path.join(incoming, job.queueID))

    for job in synced:
        # link, not rename: it refuses to replace an existing file, so a
        # queue ID reused by another process can never overwrite a message
        # that was already acknowledged.
        try:
            fileSystem.link(os.path.join(incoming, job.queueID), os.path.join(active, job.queueID))
        except OSError as e:
            job.error = e
            _discard(fileSystem, job, os.path.join(incoming, job.queueID))
        else:
            job.linked = True
            job.closed = True
            try:
                fileSystem.close(job.descriptor)
            except OSError:
                pass
    return jobs


def _createSpares(fileSystem: FileSystem, incoming: str, queueIDs: list[str]) -> list[tuple[str, int]]:
    """
    In the worker: create an empty file in C{incoming/} for each queue ID
    (skipping a name that exists), stopping at the first other error (the
    next L{QueueStore.newMessage} then creates its file itself and reports
    the error to the client).

    @return: (queue ID, open descriptor) of each file created.
    """
    created: list[tuple[str, int]] = []
    for queueID in queueIDs:
        try:
            descriptor = fileSystem.open(
                os.path.join(incoming, queueID), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
        except FileExistsError:
            continue
        except OSError:
            break
        created.append((queueID, descriptor))
    return created


def _bind(call: Callable[[int], None], descriptor: int) -> Callable[[], None]:
    return lambda: call(descriptor)


def _syncActive(fileSystem: FileSystem, directory: str, activeDescriptor: int, jobs: list[_Job]) -> list[_Job]:
    """
    Stage two of a batch, in the worker: one fsync of C{active/} for every
    job L{_fileBatch} linked, then drop their C{incoming/} names.  After
    this returns without an error in a job, its message is durable and may
    be acknowledged.

    C{incoming/} is not fsync'ed: a name there that survives a crash is a
    second link to a file that is durable in C{active/}, and start-up
    removes it without touching the C{active/} name.
    """
    incoming = os.path.join(directory, INCOMING)
    active = os.path.join(directory, ACTIVE)
    try:
        fileSystem.fsync(activeDescriptor)
    except OSError as e:
        # The names in active/ may not survive a crash: fail these commits
        # (the client retries) and take the names back, so that an
        # unacknowledged message is not delivered later.
        for job in jobs:
            job.error = e
            _discard(fileSystem, job, os.path.join(active, job.queueID))
            _discard(fileSystem, job, os.path.join(incoming, job.queueID))
        return jobs
    for job in jobs:
        try:
            fileSystem.unlink(os.path.join(incoming, job.queueID))
        except OSError:
            # Harmless: the message is safe in active/, and start-up
            # removes whatever is left in incoming/.
            pass
    return jobs


# --- the reactor side --------------------------------------------------------


@implementer(IQueuedMessage)
class QueuedMessage:
    """
    A message being received into a L{QueueStore}; see L{IQueuedMessage}.

    @ivar queueID: the queue ID.
    """

    def __init__(
        self,
        store: QueueStore,
        queueID: str,
        descriptor: int,
        header: bytes,
        sizeOffset: int,
        envelope: Envelope | None = None,
        encoded: EncodedHeader | None = None,
    ) -> None:
        self.queueID = queueID
        self._envelope = envelope
        self._encoded = encoded
        self._store = store
        self._descriptor = descriptor
        self._sizeOffset = sizeOffset
        self._header: bytes | None = header
        self._chunks: list[bytes] = []
        #: Every content chunk while the content is at most
        #: INLINE_CONTENT_BYTES, for committedContent; None beyond.
        self._inline: list[bytes] | None = []
        self._pendingBytes = 0
        self._contentSize = 0
        self._producer: IPushProducer | None = None
        self._streaming = True
        self._paused = False
        self._committing: Deferred[str] | None = None
        self._aborted = False
        self._error: OSError | None = None
        self._finished = False
        #: Looks for the Message-ID lines cleanup logs; None once logged.
        self._ids: MessageIDScanner | None = MessageIDScanner()

    # IConsumer

    def registerProducer(self, producer: object, streaming: bool) -> None:
        """
        See L{IQueuedMessage.registerProducer}.
        """
        if self._producer is not None:
            raise RuntimeError("a producer is already registered")
        self._producer = producer  # type: ignore[assignment]
        self._streaming = streaming
        self._paused = False
        if self._pendingBytes > MAX_PENDING_BYTES:
            self._pause()

    def unregisterProducer(self) -> None:
        """
        See L{IQueuedMessage.unregisterProducer}.
        """
        self._producer = None
        self._paused = False

    def write(self, data: bytes) -> None:
        """
        See L{IQueuedMessage.write}.
        """
        if self._committing is not None or self._aborted:
            raise RuntimeError(f"{self.queueID}: write after commit or abort")
        if not data:
            return
        self._contentSize += len(data)
        chunk = bytes(data)
        if self._ids is not None:
            self._logIDs(self._ids.feed(chunk))
        if self._error is not None:
            # The file is already gone; commit reports the error.
            return
        self._chunks.append(chunk)
        if self._inline is not None:
            if self._contentSize <= INLINE_CONTENT_BYTES:
                self._inline.append(chunk)
            else:
                self._inline = None
        self._pendingBytes += len(data)
        if self._pendingBytes > MAX_PENDING_BYTES:
            self._pause()
        if self._pendingBytes >= WRITE_BEHIND_BYTES:
            self._store._workAdded(self)

    def commit(self) -> Deferred[str]:
        """
        See L{IQueuedMessage.commit}.
        """
        if self._committing is not None or self._aborted:
            raise RuntimeError(f"{self.queueID}: commit after commit or abort")
        if self._ids is not None:
            self._logIDs(self._ids.end())
        self._committing = Deferred()
        if self._error is not None:
            self._finished = True
            self._committing.errback(self._error)
        else:
            self._store._workAdded(self)
        return self._committing

    def abort(self) -> None:
        """
        See L{IQueuedMessage.abort}.  After L{commit} this does nothing: the
        message may already be acknowledged.
        """
        if self._aborted or self._committing is not None:
            return
        self._aborted = True
        self._chunks = []
        self._inline = None
        if self._error is None:
            self._store._workAdded(self)

    def _logIDs(self, found: list[tuple[str, bytes]] | None) -> None:
        if found is None:
            return
        self._ids = None
        for name, value in found:
            _cleanupLog.info(
                "{queueID}: {name}={value}",
                queueID=self.queueID,
                name=name,
                value=escapeForLog(value, limit=MESSAGE_ID_LOG_LIMIT),
            )

    def committedHeader(self) -> QueueFileHeader | None:
        """
        The header of the committed file as L{parseHeader} would read it
        back (every recipient pending), or C{None} if not known here.
        """
        if self._envelope is None or self._encoded is None or not self._finished or self._error is not None:
            return None
        return self._encoded.committedHeader(self.queueID, self._envelope, self._contentSize)

    def committedContent(self) -> bytes | None:
        """
        The content of the committed file, if it was small enough to be
        kept in memory (L{INLINE_CONTENT_BYTES}), else C{None}.
        """
        if self._inline is None or not self._finished or self._error is not None:
            return None
        content = b"".join(self._inline)
        # Once: whoever asks keeps it; the message object keeps no copy.
        self._inline = [content]
        return content

    # With the store

    def _pause(self) -> None:
        if self._producer is not None and self._streaming and not self._paused:
            self._paused = True
            self._producer.pauseProducing()

    def _takeJob(self) -> _Job | None:
        """
        Hand everything pending to a job, or return C{None} if there is
        nothing to do.
        """
        if self._finished or self._error is not None:
            return None
        if self._aborted:
            self._finished = True
            return _Job(self._descriptor, self.queueID, [], abort=True)
        commit = self._committing is not None
        if not self._chunks and not commit:
            return None
        contentBytes = sum(len(chunk) for chunk in self._chunks)
        chunks = self._chunks
        if self._header is not None:
            chunks.insert(0, self._header)
            self._header = None
        job = _Job(self._descriptor, self.queueID, chunks, contentBytes, commit=commit)
        self._chunks = []
        if commit:
            self._finished = True
            job.sizeOffset = self._sizeOffset
            job.contentSize = self._contentSize
        return job

    def _jobDone(self, job: _Job) -> Callable[[], None] | None:
        """
        Account for a finished job.

        @return: what must happen next in user code (firing the commit
            L{Deferred}, resuming the producer), to be called once the
            store's own state is consistent.
        """
        self._pendingBytes -= job.contentBytes
        if job.error is not None and self._error is None:
            self._error = job.error
            self._chunks = []
            self._inline = None
            self._pendingBytes = 0
        actions: list[Callable[[], None]] = []
        if self._paused and self._pendingBytes <= MAX_PENDING_BYTES:
            self._paused = False
            producer = self._producer
            if producer is not None:
                actions.append(producer.resumeProducing)
        elif self._producer is not None and not self._streaming and self._committing is None:
            actions.append(self._producer.resumeProducing)
        if job.commit or (job.error is not None and self._committing is not None):
            committing = self._committing
            assert committing is not None
            self._finished = True
            if job.error is None:
                actions.append(lambda: self._store._announce(self, committing))
            else:
                error = job.error
                actions.append(lambda: committing.errback(error))
        if not actions:
            return None

        def act() -> None:
            for action in actions:
                action()

        return act


@implementer(IQueue)
class QueueStore(Service):
    """
    The durable queue in C{queue_directory}; see L{IQueue} and the module
    docstring.

    Layout: C{incoming/<queue ID>} while a message is received,
    C{active/<queue ID>} once it is committed, until every recipient is
    done.  The file format is in C{docs/queue-format.md}.
    """

    def __init__(
        self,
        directory: str,
        *,
        reactor: Any,
        worker: IQueueWorker | None = None,
        fileSystem: FileSystem | None = None,
        threads: int = 6,
        runConcurrently: ConcurrentRunner | None = None,
        spareFiles: int | None = None,
    ) -> None:
        """
        @param directory: the queue directory (C{queue_directory}).
        @param reactor: provides L{IReactorTime} (queue IDs) and, without a
            C{worker}, L{IReactorThreads}.
        @param worker: runs the blocking file-system work; by default a
            thread pool started and stopped with this service.
        @param fileSystem: the file-system calls, replaced in tests.
        @param threads: the size of the default thread pool: up to two
            threads run the stages of overlapping batches, the others serve
            delivery agents sharing this worker.
        @param runConcurrently: runs the fsyncs of one batch's files; by
            default a L{ConcurrentCalls} (up to L{MAX_FSYNC_THREADS} threads)
            shut down with this store.  Tests pass L{serialCalls} or their
            own.
        @param spareFiles: how many empty files to keep created ahead for
            L{newMessage} (L{SPARE_FILES} by default with the store's own
            thread pool, none with a C{worker} given).  Spares are created
            once messages arrive, and removed when the store stops (a crash
            leaves them to the next start, which empties C{incoming/}).
        """
        self.directory = directory
        self._reactor = reactor
        self._ids = QueueIDGenerator(reactor)
        self._fileSystem = fileSystem if fileSystem is not None else FileSystem()
        self._pool: ThreadPool | None = None
        if worker is None:
            self._pool = ThreadPool(minthreads=1, maxthreads=threads, name="mtaguard-queue")
            worker = ThreadPoolWorker(reactor, self._pool)
        self.worker: IQueueWorker = worker
        if spareFiles is None:
            spareFiles = SPARE_FILES if self._pool is not None else 0
        self._spareTarget = spareFiles
        #: Empty files created ahead in incoming/: (queue ID, descriptor).
        self._spares: deque[tuple[str, int]] = deque()
        self._creatingSpares = False
        self._concurrentCalls: ConcurrentCalls | None = None
        #: Committed messages whose commit callbacks are running.
        self._announcing: dict[str, QueuedMessage] = {}
        if runConcurrently is None:
            self._concurrentCalls = runConcurrently = ConcurrentCalls()
        self._runConcurrently: ConcurrentRunner = runConcurrently
        self._directoryDescriptors: tuple[int, int] | None = None
        self._dirty: dict[QueuedMessage, None] = {}
        # A batch is filing (stage one); how many are syncing (stage two);
        # whether finished jobs' callbacks are running (so that commits
        # they cause join one batch rather than each start their own).
        self._filing = False
        self._syncing = 0
        self._completing = False
        self._idle: list[Deferred[None]] = []
        self.batches = 0

    @property
    def incomingDirectory(self) -> str:
        """
        Where messages are while they are received.
        """
        return os.path.join(self.directory, INCOMING)

    @property
    def activeDirectory(self) -> str:
        """
        Where committed messages wait for delivery.
        """
        return os.path.join(self.directory, ACTIVE)

    def start(self) -> None:
        """
        Create the queue directories, remove what a crash left in
        C{incoming/} (never acknowledged), open the directories for fsync
        and start the thread pool.  Runs before the server listens, so it
        may block.
        """
        for path in (self.incomingDirectory, self.activeDirectory):
            os.makedirs(path, mode=0o700, exist_ok=True)
        for name in os.listdir(self.incomingDirectory):
            if isQueueID(name):
                # A name also in active/ is the second link of a committed
                # message whose incoming/ unlink was not reached or not
                # durable (incoming/ is not fsync'ed): dropping it leaves
                # the active/ name and the content alone.
                path = os.path.join(self.incomingDirectory, name)
                # An empty file is a spare never used for a message (see
                # SPARE_FILES): nothing was received into it.
                if not os.path.lexists(os.path.join(self.activeDirectory, name)) and os.path.getsize(path):
                    _log.info("{queueID}: removing unfinished queue file after restart", queueID=name)
                os.unlink(os.path.join(self.incomingDirectory, name))
        self._directoryDescriptors = (
            os.open(self.incomingDirectory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC),
            os.open(self.activeDirectory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC),
        )
        if self._pool is not None:
            self._pool.start()

    def stop(self) -> Deferred[None]:
        """
        Wait for the batch in progress, then close the directories and stop
        the thread pool.  Messages not yet committed stay in C{incoming/},
        and are removed at the next start.
        """
        waiting = self._whenIdle()

        def finish(result: None) -> None:
            self._dropSpares(list(self._spares))
            self._spares.clear()
            if self._directoryDescriptors is not None:
                for descriptor in self._directoryDescriptors:
                    os.close(descriptor)
                self._directoryDescriptors = None
            if self._pool is not None:
                self._pool.stop()
            if self._concurrentCalls is not None:
                self._concurrentCalls.shutdown()

        return waiting.addCallback(finish)

    def startService(self) -> None:
        """
        Start the store with the application; see L{start}.
        """
        self.start()
        Service.startService(self)

    def stopService(self) -> Deferred[None]:
        """
        Stop the store with the application; see L{stop}.
        """
        Service.stopService(self)
        return self.stop()

    def _busy(self) -> bool:
        return self._filing or self._syncing > 0 or self._creatingSpares

    def _whenIdle(self) -> Deferred[None]:
        if not self._busy():
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._idle.append(waiting)
        return waiting

    # IQueue

    def newMessage(self, envelope: object) -> QueuedMessage:
        """
        See L{IQueue.newMessage}.
        """
        if not isinstance(envelope, Envelope):
            raise TypeError(f"not an Envelope: {envelope!r}")
        if self._directoryDescriptors is None:
            raise OSError(errno.ESHUTDOWN, "the queue is not running")
        if self._spares:
            queueID, descriptor = self._spares.popleft()
        else:
            while True:
                queueID = self._ids.next()
                try:
                    # Synchronous because the contract asks for an
                    # immediate OSError; only when no spare is left.
                    descriptor = self._fileSystem.open(
                        os.path.join(self.incomingDirectory, queueID),
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                        0o600,
                    )
                except FileExistsError:
                    continue
                break
        self._refillSpares()
        header = encodeHeader(queueID, envelope)
        return QueuedMessage(self, queueID, descriptor, header.data, header.sizeOffset, envelope, header)

    def committedHeader(self, queueID: str) -> QueueFileHeader | None:
        """
        While the callbacks of a commit run: the header of the file just
        committed, as reading it back would give (every recipient pending),
        so that a delivery agent told about it at that moment need not read
        it.  C{None} at any other time.
        """
        message = self._announcing.get(queueID)
        return None if message is None else message.committedHeader()

    def committedContent(self, queueID: str) -> bytes | None:
        """
        While the callbacks of a commit run: the content of the file just
        committed if it is at most L{INLINE_CONTENT_BYTES}, so that a
        delivery agent told about it at that moment need not open the file.
        C{None} at any other time, or for a larger message.
        """
        message = self._announcing.get(queueID)
        return None if message is None else message.committedContent()

    def _announce(self, message: QueuedMessage, committing: Deferred[str]) -> None:
        self._announcing[message.queueID] = message
        try:
            committing.callback(message.queueID)
        finally:
            del self._announcing[message.queueID]
            # Nobody can ask for it any more.
            message._inline = None

    # Spare files

    def _refillSpares(self) -> None:
        """
        Create spare files in the worker once half of them are used.
        """
        if self._creatingSpares or self._directoryDescriptors is None:
            return
        missing = self._spareTarget - len(self._spares)
        if missing <= 0 or missing < (self._spareTarget + 1) // 2:
            return
        # IDs come from the reactor thread: the generator is not shared.
        queueIDs = [self._ids.next() for _ in range(missing)]
        fileSystem = self._fileSystem
        incoming = self.incomingDirectory
        self._creatingSpares = True
        creating: Deferred[list[tuple[str, int]]] = self.worker.run(
            lambda: _createSpares(fileSystem, incoming, queueIDs)
        )
        creating.addBoth(self._sparesCreated)

    def _sparesCreated(self, result: list[tuple[str, int]] | Failure) -> None:
        self._creatingSpares = False
        if isinstance(result, Failure):
            _log.failure("creating spare queue files failed", result)
        elif self._directoryDescriptors is None:
            # Stopped meanwhile.
            self._dropSpares(result)
        else:
            self._spares.extend(result)
        if not self._busy():
            idle, self._idle = self._idle, []
            for waiting in idle:
                waiting.callback(None)

    def _dropSpares(self, spares: list[tuple[str, int]]) -> None:
        # Best effort: a spare left behind is removed at the next start.
        for queueID, descriptor in spares:
            try:
                self._fileSystem.close(descriptor)
            except OSError:
                pass
            try:
                self._fileSystem.unlink(os.path.join(self.incomingDirectory, queueID))
            except OSError:
                pass

    # Batches

    def _workAdded(self, message: QueuedMessage) -> None:
        self._dirty[message] = None
        self._startBatch()

    def _startBatch(self) -> None:
        if self._filing or self._completing or not self._dirty:
            return
        directoryDescriptors = self._directoryDescriptors
        if directoryDescriptors is None:
            return
        messages = list(self._dirty)
        self._dirty.clear()
        taken: list[tuple[QueuedMessage, _Job]] = []
        for message in messages:
            job = message._takeJob()
            if job is not None:
                taken.append((message, job))
        if not taken:
            return
        self._filing = True
        self.batches += 1
        jobs = [job for message, job in taken]
        fileSystem = self._fileSystem
        directory = self.directory
        runConcurrently = self._runConcurrently
        activeDescriptor = directoryDescriptors[1]
        filing: Deferred[list[_Job]] = self.worker.run(
            lambda: _fileBatch(fileSystem, directory, activeDescriptor, runConcurrently, jobs)
        )
        filing.addBoth(self._filed, taken, activeDescriptor)

    def _filed(self, result: object, taken: list[tuple[QueuedMessage, _Job]], activeDescriptor: int) -> None:
        """
        Stage one of a batch is done: start stage two for the linked
        commits, finish the other jobs, and let the next batch start
        filing.
        """
        self._filing = False
        if isinstance(result, Failure):
            self._failed(result, taken)
        linked = [(message, job) for message, job in taken if job.linked and job.error is None]
        rest = [(message, job) for message, job in taken if not (job.linked and job.error is None)]
        if linked:
            self._syncing += 1
            fileSystem = self._fileSystem
            directory = self.directory
            jobs = [job for message, job in linked]
            syncing: Deferred[list[_Job]] = self.worker.run(
                lambda: _syncActive(fileSystem, directory, activeDescriptor, jobs)
            )
            syncing.addBoth(self._synced, linked)
        self._finish(rest)

    def _synced(self, result: object, linked: list[tuple[QueuedMessage, _Job]]) -> None:
        """
        Stage two of a batch is done: its commits are durable (or failed).
        """
        self._syncing -= 1
        if isinstance(result, Failure):
            self._failed(result, linked)
        self._finish(linked)

    def _failed(self, result: Failure, taken: list[tuple[QueuedMessage, _Job]]) -> None:
        # The stages record OSErrors per job; anything else is a bug, and
        # failing every commit of the batch is the safe answer.
        _log.failure("queue batch failed", result)
        error = OSError(errno.EIO, f"queue batch failed: {result.getErrorMessage()}")
        for message, job in taken:
            job.error = error

    def _finish(self, taken: list[tuple[QueuedMessage, _Job]]) -> None:
        actions = []
        for message, job in taken:
            action = message._jobDone(job)
            if action is not None:
                actions.append(action)
        # Commits that these callbacks cause (a writer committing its next
        # message at once) are gathered into one batch, started below.
        self._completing = True
        try:
            for action in actions:
                action()
        finally:
            self._completing = False
        self._startBatch()
        if not self._busy():
            idle, self._idle = self._idle, []
            for waiting in idle:
                waiting.callback(None)
