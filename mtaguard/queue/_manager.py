# -*- test-case-name: tests.test_queue_manager -*-
"""
The queue manager: delivers the non-local recipients of the messages in
C{active/} with the SMTP client, as Postfix's qmgr(8) and smtp(8) do
together.

A queue run (at start and every C{queue_run_delay}) looks at each file in
C{active/} whose backoff time has come.  Its pending recipients that are not
local are grouped per next hop (L{Router}), the next hop is resolved and its
destinations tried in order (L{AttemptBudget}): as in Postfix, a refused
connection or a soft failure on a server that is not the last to try (a
4xx, or with C{smtp_skip_5xx_greeting} 5xx, greeting, a failed EHLO/HELO,
a lost connection or timeout, a 4xx to MAIL, RCPT or DATA) moves the
recipients concerned on to the next server, and only the last server's
outcome is recorded; a 5xx is final where it is received.  Every
recipient's final outcome is written to the queue file (one status byte
rewritten in place, then fsync) before it is logged:

  - C{sent} marks the recipient C{D}, C{bounced} (a 5xx) marks it C{B};
  - C{deferred} (a 4xx, a connection that failed or timed out) leaves it
    C{P}; the file is tried again after its time in the queue, bounded by
    C{minimal_backoff_time} and C{maximal_backoff_time} (so the wait
    roughly doubles, as with Postfix).  As Postfix does, the time of the
    next attempt is the file's modification time, moved into the future:
    nothing per deferred message stays in memory, and a restart keeps the
    backoffs;
  - a recipient deferred when the message is older than
    C{maximal_queue_lifetime} (C{bounce_queue_lifetime} for a null-sender
    message) is bounced with C{message expired}.

A file with no recipient left pending is removed.  Since a recipient's
marker is durable before anything else happens, a restart delivers again at
most the recipients whose outcome had not yet been written (the crash
window), and never one that was marked done.

At most C{default_destination_concurrency_limit} deliveries run at once to
one next hop, each carrying one message at a time.  A connection whose
message is done is kept for the next message to the same next hop when one
waits for a connection or other deliveries to that next hop are in progress
(Postfix's C{smtp_connection_cache_on_demand}), or its destination is in
C{smtp_connection_cache_destinations}: idle for at
most C{smtp_connection_cache_time_limit}, reused within
C{smtp_connection_reuse_time_limit} and C{smtp_connection_reuse_count_limit},
each new message starting with RSET.  It is reused only for the same route,
next-hop domain and TLS policy, and never after the session gave it up (a
protocol error, a timeout, input nobody asked for).  At TLS level C{may} a
failed handshake is retried at once in clear on the same server, over a
connection that is never cached.

Recipients that bounce get one RFC 3464 non-delivery notification per
attempt, queued with the null sender before the original's file can be
removed; a message with the null sender is never bounced.

The control socket (L{mtaguard.control}) asks for L{flush} (C{postqueue
-f}), L{deliverNow} (C{postqueue -i}), L{requeue} (C{postsuper -r}) and
L{delete} (C{postsuper -d} while the service runs).  Requeueing differs from
Postfix's: Postfix copies the message into a new queue file (a new queue ID)
through cleanup(8), which drops the recipients already marked done and
rewrites the others afresh.  Here the per-recipient markers live in the
queue file itself, so the file and its queue ID are kept: the backoff is
forgotten, and every recipient still pending is routed afresh (relayhost,
transport_maps) and attempted now, or right after the attempt in progress
ends.  Recipients marked delivered or bounced are never sent again, as
Postfix's cleanup drops its done recipients: a requeue must not turn a
partial success into duplicates.
"""

from __future__ import annotations

import os
from typing import IO, Any, Callable, Iterable, Optional, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, gatherResults, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionRefusedError, TimeoutError as ConnectTimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint, ITransport
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..client._routing import (
    AttemptBudget,
    Discard,
    ResolutionError,
    RoutingError,
    Undeliverable,
    groupByNexthop,
    resolveAll,
    resolveNow,
)
from ..client._sasl import SASLClientSettings
from ..config import ParameterView, params
from ._dsn import FailedRecipient, buildBounce
from ._envelope import Envelope
from ._format import QueueFile, QueueFileHeader, QueueFormatError, QueuedRecipient, RecipientStatus, parseQueueFile
from ._ids import isQueueID
from ._local import formatDelay, logActive
from ._markers import markRecipient, markTogether
from ._store import QueueStore

__all__ = ["QueueManager", "markRecipient"]

#: Connects to one destination: returns the endpoint for it.
Connector = Callable[[Any], IStreamClientEndpoint]

#: How many routes' L{resolveNow} answers a manager keeps.
_LITERAL_ROUTES_LIMIT = 1024


def _readQueueFile(path: str) -> QueueFile:
    with open(path, "rb") as f:
        return parseQueueFile(f.read())


def _listDue(directory: str, now: float) -> list[str]:
    """
    The queue files in C{directory} whose next attempt is due: those whose
    modification time (the next attempt of a deferred file, the commit
    time of a new one) is not in the future.
    """
    due = []
    for name in os.listdir(directory):
        if not isQueueID(name):
            continue
        try:
            when = os.stat(os.path.join(directory, name)).st_mtime
        except FileNotFoundError:
            continue
        if when <= now:
            due.append(name)
    return sorted(due)


def _deferUntil(path: str, when: float) -> None:
    """
    Move the file's modification time to C{when}, its next attempt (the
    file may be gone: another attempt removed it).
    """
    try:
        os.utime(path, (when, when))
    except FileNotFoundError:
        pass


def _makeDue(directory: str, names: Optional[Iterable[str]], now: float) -> list[str]:
    """
    Make files due now (postqueue -f, postsuper -r): every file in
    C{directory}, or those of C{names} that exist.

    @return: the queue IDs found.
    """
    found = []
    for name in sorted(os.listdir(directory)) if names is None else names:
        if not isQueueID(name):
            continue
        path = os.path.join(directory, name)
        try:
            if os.stat(path).st_mtime > now:
                os.utime(path, (now, now))
        except FileNotFoundError:
            continue
        found.append(name)
    return found


def _removeIfDone(path: str) -> bool:
    """
    Remove the queue file if no recipient is pending (local ones included).

    @return: whether it was removed.
    """
    try:
        queued = _readQueueFile(path)
    except FileNotFoundError:
        return False
    if queued.header.pending:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _connectError(failure: Failure) -> str:
    error = failure.value
    if isinstance(error, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(error, ConnectTimeoutError):
        return "Connection timed out"
    text = str(error).strip()
    return text or type(error).__name__


def _hangUp(protocol: Any) -> None:
    """
    Close a connection that will carry nothing: QUIT if the session allows
    it now, else drop it.
    """
    try:
        protocol.quit().addErrback(lambda failure: None)
    except RuntimeError:
        if protocol.transport is not None:
            protocol.transport.loseConnection()


class _Attempt:
    """
    One delivery attempt of one queue file: what is known about it.
    """

    def __init__(
        self, queueID: str, path: str, header: QueueFileHeader, content: Optional[bytes], started: float
    ) -> None:
        self.queueID = queueID
        self.path = path
        self.header = header
        #: The message content if the file was read, or kept by the store
        #: at commit (a small message), else C{None}: read when needed.
        #: Sent from memory when present; dropped while the delivery waits
        #: for a connection slot, so that a backlog holds no content.
        self.content = content
        self.started = started
        #: The recipients pending when the file was read (local ones
        #: included).
        self.pending = pending = header.pending
        self.byAddress: dict[str, list[QueuedRecipient]] = {}
        for recipient in pending:
            self.byAddress.setdefault(recipient.address, []).append(recipient)
        #: The status offsets of the recipients pending when the file was
        #: read (local ones included) whose done marker is not yet
        #: durable: while one is left, only a fresh read of the file can
        #: tell whether it may go.
        self.remaining = {recipient.statusOffset for recipient in pending}
        #: Marker jobs of this attempt in the worker now.
        self.marking = 0
        #: The file was removed by the job that wrote its last done marker.
        self.removed = False
        self.deferred = False
        self.bounced = False
        #: The recipients bounced in this attempt, for the notification.
        self.failures: list[FailedRecipient] = []
        #: Outcomes being recorded after their connection was released.
        self.recording: list[Deferred[Any]] = []


class _MarkRequest:
    """
    Durable done markers for some entries of one queue file, then maybe
    its removal.

    @ivar status: the marker; C{None} marks nothing (a deferral).
    @ivar remove: unlink the file once the markers are durable (they are
        its last pending recipients).
    """

    def __init__(
        self, path: str, entries: Sequence[QueuedRecipient], status: Optional[RecipientStatus], remove: bool
    ) -> None:
        self.path = path
        self.entries = entries
        self.status = status
        self.remove = remove


def _markAll(requests: Sequence[_MarkRequest], fsync: Callable[[int], None]) -> list[bool | Exception]:
    """
    In the worker: every request's markers written and fsync'ed together
    (L{markTogether}), then the files whose last pending recipients these
    were removed, each only once its own markers are durable.

    @return: for each request, whether its file was removed, or the
        exception it raised (one request's failure is not another's).
    """
    marks = []
    for request in requests:
        if request.status is not None:
            marks.append((request.path, request.entries, request.status))
    durable = iter(markTogether(marks, fsync))
    outcomes: list[bool | Exception] = []
    for request in requests:
        if request.status is None:
            outcomes.append(False)
            continue
        marked = next(durable)
        if marked is not True:
            # Gone (deleted meanwhile, postsuper -d: nothing to remove), or
            # the marker failed.
            outcomes.append(marked)
        elif not request.remove:
            outcomes.append(False)
        else:
            try:
                os.unlink(request.path)
            except FileNotFoundError:
                outcomes.append(False)
            except OSError as error:
                outcomes.append(error)
            else:
                outcomes.append(True)
    return outcomes


class _Connection:
    """
    One connection to a next hop, as the connection cache sees it.

    @ivar key: what a message must share to go over it: the route, the
        next-hop domain and the TLS policy it was made under.
    @ivar made: when it was connected (for
        C{smtp_connection_reuse_time_limit}).
    @ivar uses: how many messages it carried.
    @ivar cacheable: C{False} for a plaintext retry after a failed TLS
        handshake at level C{may}: made under a weaker policy than the
        key's, it carries only the message it was made for.
    @ivar expiry: the idle timer while it is cached.
    """

    def __init__(self, key: tuple[Any, ...], protocol: Any, relay: str, made: float, *, cacheable: bool = True) -> None:
        self.key = key
        self.protocol = protocol
        self.relay = relay
        self.made = made
        self.cacheable = cacheable
        self.uses = 0
        self.expiry: Optional[IDelayedCall] = None
        #: Its closing takes it out of the cache (registered once, at the
        #: first caching, however often it is cached again).
        self.watched = False


class QueueManager(Service):
    """
    Deliver the non-local recipients of the messages in C{active/}.
    """

    def __init__(
        self,
        store: QueueStore,
        *,
        view: ParameterView,
        router: Any,
        resolver: Any,
        isLocal: Callable[[str], bool],
        clock: IReactorTime,
        log: Logger,
        connector: Optional[Connector] = None,
        addressPolicy: Any = None,
        worker: Any = None,
        fsync: Callable[[int], None] = os.fsync,
        random: Any = None,
        tlsPolicyFor: Optional[Callable[[str], Any]] = None,
        bounceQueued: Optional[Callable[[str, tuple[str, ...]], None]] = None,
    ) -> None:
        """
        @param store: the queue whose C{active/} files are delivered.
        @param view: the parameters of the C{smtp} service.
        @param router: a L{mtaguard.client.Router}.
        @param resolver: a C{twisted.names} resolver.
        @param isLocal: whether a recipient is delivered locally (left
            alone here).
        @param clock: schedules queue runs; timestamps log lines.
        @param log: receives the Postfix-form delivery lines.
        @param connector: makes the endpoint for a
            L{mtaguard.client.Destination}; by default TCP, bound to
            C{smtp_bind_address} / C{smtp_bind_address6} if set.
        @param addressPolicy: a L{mtaguard.client.AddressPolicy}; by
            default from C{view}.
        @param worker: runs the blocking file work; by default the store's.
        @param fsync: replaces C{os.fsync} for the status markers.
        @param random: the equal-preference MX shuffle source.
        @param tlsPolicyFor: the client TLS policy for a next-hop domain;
            by default L{mtaguard.tls.clientTLSPolicy} from C{view}.
        @param bounceQueued: told about each queued non-delivery
            notification (queue ID, recipients), so that local delivery sees
            it too; by default only this manager's L{queued}.
        """
        from ..client import AddressPolicy

        self._store = store
        self._view = view
        self._router = router
        self._resolver = resolver
        self._isLocal = isLocal
        self._clock = clock
        self._log = log
        self._connector: Connector = connector if connector is not None else self._tcpEndpoint
        self._policy = addressPolicy if addressPolicy is not None else AddressPolicy.fromView(view)
        self._worker = worker if worker is not None else store.worker
        self._fsync = fsync
        self._random = random
        self._tlsPolicies: dict[str, Any] = {}
        self._sasl = SASLClientSettings.fromView(view)
        self._tlsPolicyFor = tlsPolicyFor if tlsPolicyFor is not None else self._defaultTLSPolicy
        self._limit = view[params.default_destination_concurrency_limit]
        self._recipientLimit = view[params.default_destination_recipient_limit]
        self._semaphores: dict[object, DeferredSemaphore] = {}
        #: Files being delivered now.
        self._busy: set[str] = set()
        #: queue ID -> (backoff in seconds, time of the next attempt).
        self._bounceQueued = bounceQueued if bounceQueued is not None else self.queued
        self._loop: Optional[LoopingCall] = None
        #: Idle connections kept for reuse, by L{_Connection.key}.
        self._cache: dict[tuple[Any, ...], list[_Connection]] = {}
        #: Files requeued while an attempt was in progress: attempted again
        #: as soon as it ends, so that the requeue sees the routing of now.
        self._again: set[str] = set()
        #: Marker requests waiting for the next marker job, and whether one
        #: is in the worker now (see _mark).
        self._markQueue: list[tuple[_MarkRequest, Deferred[bool]]] = []
        self._markRunning = False
        #: Route -> what resolveNow said: destinations, the error, or None
        #: (the route needs the resolver).
        self._literalRoutes: dict[tuple[Any, ...], tuple[Any, ...] | ResolutionError | None] = {}

    # -- service -----------------------------------------------------------

    def startService(self) -> None:
        """
        Run the queue now and every C{queue_run_delay}.
        """
        Service.startService(self)
        self._loop = LoopingCall(self._queueRun)
        self._loop.clock = self._clock
        self._loop.start(self._view[params.queue_run_delay], now=True).addErrback(
            lambda failure: self._log.failure("queue run failed", failure)
        )

    def stopService(self) -> Any:
        """
        Stop the queue runs (deliveries in progress finish on their own).
        """
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for connections in list(self._cache.values()):
            for connection in list(connections):
                self._uncache(connection)
                _hangUp(connection.protocol)
        return Service.stopService(self)

    # -- scheduling --------------------------------------------------------

    def runQueue(self) -> Deferred[None]:
        """
        Look at every file in C{active/} now; attempt those whose backoff
        time has come.

        @return: fires when every attempt started by this run is over.
        """
        directory = self._store.activeDirectory
        now = self._clock.seconds()
        listing: Deferred[list[str]] = self._worker.run(lambda: _listDue(directory, now))

        def listed(names: list[str]) -> Deferred[Any]:
            attempts = []
            for name in names:
                if name in self._busy:
                    continue
                attempts.append(self.attempt(name))
            return gatherResults(attempts, consumeErrors=True)

        def ignore(result: object) -> None:
            return None

        return listing.addCallback(listed).addCallback(ignore)

    def _queueRun(self) -> Deferred[None]:
        running = self.runQueue()
        running.addErrback(lambda failure: self._log.failure("queue run failed", failure))
        # The loop does not wait for slow deliveries: a file in progress is
        # skipped by the next run.
        return succeed(None)

    def queued(self, queueID: str, recipients: Iterable[str] | None = None) -> None:
        """
        A message was just committed: deliver its non-local recipients now
        rather than at the next queue run.
        """
        if recipients is not None and all(self._isLocal(r) for r in recipients):
            return
        if queueID in self._busy:
            return
        # Just committed: the store knows what the file says; it is not
        # read back, and a small message's content is not even opened.
        header = self._store.committedHeader(queueID)
        content = None if header is None else self._store.committedContent(queueID)
        # The content only when there is some: attempt(queueID, header) is
        # the call every other caller (and replacement) knows.
        attempting = self.attempt(queueID, header) if content is None else self.attempt(queueID, header, content)
        attempting.addErrback(
            lambda failure: self._log.failure("{queueID}: delivery failed", failure, queueID=queueID)
        )

    def attempt(
        self, queueID: str, header: Optional[QueueFileHeader] = None, content: Optional[bytes] = None
    ) -> Deferred[None]:
        """
        One delivery attempt of one queue file, now.

        @param header: the file's header as just committed, if known: the
            file is then not read.
        @param content: with C{header}, the content as just committed, if
            known: it is then sent from memory.
        """
        if queueID in self._busy:
            return succeed(None)
        self._busy.add(queueID)
        path = os.path.join(self._store.activeDirectory, queueID)
        reading: Deferred[QueueFile]
        if header is not None:
            reading = succeed(QueueFile(header, b""))
        else:
            reading = self._worker.run(lambda: _readQueueFile(path))

        def read(queued: QueueFile) -> Deferred[None] | None:
            if any(not self._isLocal(r.address) for r in queued.header.pending):
                # All-local messages are the local delivery manager's to log.
                logActive(self._log, queued.header)
            known = content if header is not None else queued.content
            return self._deliverFile(_Attempt(queueID, path, queued.header, known, self._clock.seconds()))

        def unreadable(failure: Failure) -> None:
            if failure.check(FileNotFoundError):
                return None
            if failure.check(QueueFormatError):
                # The local delivery manager moves it to corrupt/.
                self._log.warn("warning: {queueID}: corrupt queue file: {error}", queueID=queueID, error=failure.value)
                return None
            failure.raiseException()

        def finished(result: object) -> object:
            self._busy.discard(queueID)
            if queueID in self._again:
                self._again.discard(queueID)
                self.queued(queueID)
            return result

        return reading.addCallbacks(read, unreadable).addBoth(finished)

    # -- control (postqueue -f/-i, postsuper -r/-d) -------------------------

    def flush(self) -> None:
        """
        C{postqueue -f}: every deferred message becomes due now, and a queue
        run starts (this returns without waiting for it).
        """
        directory = self._store.activeDirectory
        now = self._clock.seconds()
        making = self._worker.run(lambda: _makeDue(directory, None, now))
        making.addCallback(lambda _: self.runQueue())
        making.addErrback(lambda failure: self._log.failure("queue run failed", failure))

    def deliverNow(self, queueID: str) -> Deferred[bool]:
        """
        C{postqueue -i}: attempt one message now, whatever its backoff (a
        message being delivered right now is left to that attempt).

        @return: fires with whether the message is in the queue.
        @raise ValueError: if C{queueID} is not a queue ID.
        """
        path = self._activePath(queueID)
        exists: Deferred[bool] = self._worker.run(lambda: os.path.isfile(path))

        def checked(present: bool) -> bool:
            if present:
                self.queued(queueID)
            return present

        return exists.addCallback(checked)

    def requeue(self, queueIDs: Optional[Sequence[str]]) -> Deferred[list[str]]:
        """
        C{postsuper -r}: attempt the messages again from scratch (see the
        module docstring for what that keeps).

        @param queueIDs: the messages, or L{None} for all of them.
        @return: fires with the queue IDs that were in the queue.
        @raise ValueError: if one of C{queueIDs} is not a queue ID.
        """
        names = None if queueIDs is None else [queueID for queueID in queueIDs if self._activePath(queueID)]
        directory = self._store.activeDirectory
        now = self._clock.seconds()
        listing: Deferred[list[str]] = self._worker.run(lambda: _makeDue(directory, names, now))

        def found(existing: list[str]) -> list[str]:
            for queueID in dict.fromkeys(existing):
                if queueID in self._busy:
                    self._again.add(queueID)
                else:
                    self.queued(queueID)
            self._log.info(
                "Requeued: {count} message{plural}", count=len(existing), plural="" if len(existing) == 1 else "s"
            )
            return existing

        return listing.addCallback(found)

    def delete(self, queueIDs: Sequence[str]) -> Deferred[list[str]]:
        """
        C{postsuper -d} while the service runs: remove the messages' files
        and forget them.  A delivery in progress finishes on the unlinked
        file (nothing more is marked in it) and is not attempted again.

        @return: fires with the queue IDs whose file was removed.
        @raise ValueError: if one of C{queueIDs} is not a queue ID.
        """
        paths = [(queueID, self._activePath(queueID)) for queueID in dict.fromkeys(queueIDs)]

        def unlink() -> list[str]:
            removed = []
            for queueID, path in paths:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed.append(queueID)
            return removed

        unlinking: Deferred[list[str]] = self._worker.run(unlink)

        def unlinked(removed: list[str]) -> list[str]:
            for queueID in removed:
                self._again.discard(queueID)
                # Postfix's postsuper logs this line too.
                self._log.info("{queueID}: removed", queueID=queueID)
            return removed

        return unlinking.addCallback(unlinked)

    def _activePath(self, queueID: str) -> str:
        # Only names of the queue ID shape reach the file system (no "..").
        if not isQueueID(queueID):
            raise ValueError(f"invalid mail queue id: {queueID}")
        return os.path.join(self._store.activeDirectory, queueID)

    # -- one file ----------------------------------------------------------

    def _deliverFile(self, attempt: _Attempt) -> Deferred[None]:

        remote = [r.address for r in attempt.pending if not self._isLocal(r.address)]
        work: list[Deferred[None]] = []
        if remote:
            routes: dict[str, Any] = {}
            routable = []
            for address in remote:
                try:
                    routes[address] = self._router.route(address)
                    routable.append(address)
                except RoutingError as problem:
                    work.append(self._record(attempt, [address], "none", None, "bounced", "5.1.3", str(problem)))
            for route, group in groupByNexthop(routable, routes.__getitem__, self._recipientLimit):
                work.append(self._deliverGroup(attempt, route, group))
        def groupsDone(result: object) -> Deferred[list[object]]:
            # The outcomes recorded after their connection was released.
            return gatherResults(attempt.recording, consumeErrors=True)

        done = gatherResults(work, consumeErrors=True).addCallback(groupsDone)

        def allDone(result: object) -> Deferred[None]:
            return self._finishFile(attempt)

        def failed(failure: Failure) -> Deferred[None]:
            # A failure to record an outcome (the file system): retry later,
            # once the markers still being written are done.
            self._log.failure("{queueID}: delivery failed", failure, queueID=attempt.queueID)
            attempt.deferred = True
            settling = DeferredList(list(attempt.recording), consumeErrors=True)
            return settling.addCallback(lambda ignored: self._finishFile(attempt))

        return done.addCallbacks(allDone, failed)

    def _finishFile(self, attempt: _Attempt) -> Deferred[None]:
        queueID = attempt.queueID
        notifying: Deferred[None] = succeed(None)
        if attempt.failures:
            notifying = self._notifySender(attempt)
        path = attempt.path
        retry: Optional[float] = None
        if attempt.deferred:
            # Postfix's qmgr: the wait is the time in the queue so far,
            # bounded, so it roughly doubles from one attempt to the next.
            now = self._clock.seconds()
            inQueue = now - attempt.header.envelope.arrival
            minimum = float(self._view[params.minimal_backoff_time])
            maximum = float(self._view[params.maximal_backoff_time])
            retry = now + min(max(inQueue, minimum), maximum)

        if attempt.removed:
            # Gone with its last done marker (see _record).
            self._log.info("{queueID}: removed", queueID=queueID)
            return notifying
        # Every recipient pending at the start of the attempt, local ones
        # included, is durably marked done: no need to read the file again.
        allDone = not attempt.remaining

        def finish() -> bool:
            if allDone:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    return False
                return True
            if _removeIfDone(path):
                return True
            if retry is not None:
                _deferUntil(path, retry)
            return False

        def remove(_: object) -> Deferred[bool]:
            # The notification is on stable storage before the bounced
            # recipients' queue file can go.
            return self._worker.run(finish)

        def removed(gone: bool) -> None:
            if gone:
                self._log.info("{queueID}: removed", queueID=queueID)

        return notifying.addCallback(remove).addCallback(removed)

    def _notifySender(self, attempt: _Attempt) -> Deferred[None]:
        """
        Queue an RFC 3464 non-delivery notification for the recipients that
        bounced in this attempt.  Nothing is sent for a message that is
        itself a notification (null sender), as Postfix does not bounce
        bounces to their sender.
        """
        if attempt.header.envelope.sender and attempt.content is None:
            # The header came from the store: read the content now.
            path = attempt.path
            offset = attempt.header.contentOffset

            def readContent() -> bytes:
                with open(path, "rb") as f:
                    f.seek(offset)
                    return f.read()

            def gotContent(content: bytes) -> Deferred[None]:
                attempt.content = content
                return self._notifySender(attempt)

            def unreadable(failure: Failure) -> None:
                failure.trap(OSError)
                # As when the notification cannot be queued (below).
                self._log.warn(
                    "warning: {queueID}: cannot queue non-delivery notification: {error}",
                    queueID=attempt.queueID,
                    error=failure.getErrorMessage(),
                )

            reading: Deferred[bytes] = self._worker.run(readContent)
            return reading.addCallbacks(gotContent, unreadable)
        header = attempt.header
        sender = header.envelope.sender
        failures, attempt.failures = attempt.failures, []
        if not sender:
            self._log.info(
                "{queueID}: not bouncing a message with the null sender", queueID=attempt.queueID
            )
            return succeed(None)
        now = self._clock.seconds()
        myhostname = self._view[params.myhostname]
        notification = buildBounce(
            myhostname=myhostname,
            queueID=attempt.queueID,
            sender=sender,
            arrival=header.envelope.arrival,
            now=now,
            failures=failures,
            original=attempt.content or b"",
            sizeLimit=self._view[params.bounce_size_limit],
            boundary=f"{attempt.queueID}.{int(now)}/{myhostname}",
        )
        try:
            message = self._store.newMessage(
                Envelope(
                    sender="",
                    recipients=(sender,),
                    parameters=(),
                    clientAddress="127.0.0.1",
                    clientPort=0,
                    clientName="localhost",
                    helo=myhostname,
                    protocol="local",
                    tls=False,
                    authUser=None,
                    arrival=now,
                )
            )
        except OSError as error:
            # The bounced recipients stay marked; the file stays until the
            # notification can be written (next queue run).
            self._log.warn(
                "warning: {queueID}: cannot queue non-delivery notification: {error}",
                queueID=attempt.queueID,
                error=str(error),
            )
            attempt.failures = failures
            return succeed(None)
        message.write(notification)
        committed = message.commit()

        def done(bounceID: str) -> None:
            self._log.info(
                "{queueID}: sender non-delivery notification: {bounceID}",
                queueID=attempt.queueID,
                bounceID=bounceID,
            )
            self._bounceQueued(bounceID, (sender,))

        def failed(failure: Failure) -> None:
            self._log.warn(
                "warning: {queueID}: cannot queue non-delivery notification: {error}",
                queueID=attempt.queueID,
                error=failure.getErrorMessage(),
            )

        return committed.addCallbacks(done, failed)

    # -- one next hop ------------------------------------------------------

    def _deliverGroup(self, attempt: _Attempt, route: Any, recipients: list[str]) -> Deferred[None]:

        if isinstance(route, Discard):
            return self._record(attempt, recipients, "none", None, "sent", "2.0.0", route.reason or "discarded")
        if isinstance(route, Undeliverable):
            status = "bounced" if route.permanent else "deferred"
            return self._record(attempt, recipients, "none", None, status, route.status, route.reason)
        nexthops: tuple[Any, ...] = route

        def resolved(destinations: list[Any]) -> Deferred[None]:
            semaphore = self._semaphores.get(route)
            if semaphore is None:
                semaphore = self._semaphores[route] = DeferredSemaphore(max(self._limit, 1) if self._limit > 0 else 1 << 30)
            if not semaphore.tokens:
                # It waits for a connection slot, maybe behind many others:
                # it holds no content meanwhile (read again when sent).
                attempt.content = None
            # A connection is reused only for the same route, next-hop
            # domain and TLS policy it was made under: never across a
            # change of TLS requirements.
            try:
                tls = self._tlsPolicyFor(nexthops[0].host)
                key: tuple[Any, ...] = (route, nexthops[0].host, tls.level, id(tls))
            except Exception:
                # Reported per destination by _protocolFor, which fails the
                # same way; nothing is cached under this key.
                key = (route, nexthops[0].host, None, None)
            return semaphore.run(self._deliverTo, attempt, nexthops[0], destinations, recipients, key)

        def unresolved(failure: Failure) -> Deferred[None]:
            failure.trap(ResolutionError)
            error: ResolutionError = failure.value  # type: ignore[assignment]
            status = "bounced" if error.permanent else "deferred"
            return self._record(attempt, recipients, "none", None, status, error.status, error.reason)

        # An address in brackets (relayhost = [192.0.2.1]:587) needs no
        # resolver: the delivery starts in this call.
        known = self._resolvedNow(nexthops)
        if isinstance(known, ResolutionError):
            return unresolved(Failure(known))
        if known is not None:
            return resolved(list(known))
        resolving = resolveAll(nexthops, self._resolver, self._policy, random=self._random)
        return resolving.addCallbacks(resolved, unresolved)

    def _resolvedNow(self, nexthops: tuple[Any, ...]) -> tuple[Any, ...] | ResolutionError | None:
        """
        L{resolveNow} for a route, remembered: the answer for addresses in
        brackets does not change while the manager runs.
        """
        if nexthops in self._literalRoutes:
            return self._literalRoutes[nexthops]
        known: tuple[Any, ...] | ResolutionError | None
        try:
            found = resolveNow(nexthops, self._policy)
            known = None if found is None else tuple(found)
        except ResolutionError as error:
            known = error
        if len(self._literalRoutes) >= _LITERAL_ROUTES_LIMIT:
            # Domain literals in recipients are anyone's to choose.
            self._literalRoutes.clear()
        self._literalRoutes[nexthops] = known
        return known

    def _deliverTo(
        self,
        attempt: _Attempt,
        nexthop: Any,
        destinations: list[Any],
        recipients: list[str],
        key: tuple[Any, ...],
    ) -> Deferred[None]:
        """
        Try the destinations in order until every recipient has a final
        outcome, as Postfix's smtp(8): a refused connection, and any soft
        failure on a server that is not the last one to try (a 4xx or, with
        C{smtp_skip_5xx_greeting}, 5xx greeting, a failed EHLO/HELO or TLS
        handshake, a lost connection, a timeout, a 4xx reply to MAIL, RCPT
        or DATA) keeps the recipients concerned for the next server.  A 5xx
        reply is final for its recipients wherever it comes from.  The
        budget (L{AttemptBudget}: C{smtp_mx_address_limit},
        C{smtp_mx_session_limit}) decides which server is the last.

        An idle cached connection with the same C{key} is used first; what
        it cannot deliver (its RSET failed, a soft failure) goes on to the
        destinations as usual.
        """

        budget = AttemptBudget(destinations, self._policy)
        lastError = ["4.4.1", "no destination to try"]

        def sent(kept: Optional[list[tuple[str, str, str]]]) -> Optional[Deferred[None]]:
            if not kept:
                return None
            lastError[:] = [kept[-1][1], kept[-1][2]]
            return tryNext([recipient for recipient, dsn, reason in kept])

        def tryNext(remaining: list[str]) -> Deferred[None]:
            destination = budget.nextDestination()
            if destination is None:
                # As Postfix: relay=none when no server could be reached.
                return self._record(attempt, remaining, "none", None, "deferred", lastError[0], lastError[1])
            return tryDestination(destination, remaining, plaintext=False)

        def tryDestination(destination: Any, remaining: list[str], *, plaintext: bool) -> Deferred[None]:
            relay = f"{destination.hostname}[{destination.address}]:{destination.port}"
            try:
                protocol = self._protocolFor(nexthop, destination, plaintext=plaintext)
                endpoint = self._connector(destination)
            except Exception as problem:
                lastError[:] = ["4.3.5", f"cannot connect to {relay}: {problem}"]
                return tryNext(remaining)
            from ..client import connectNextHop

            connecting = connectNextHop(endpoint, protocol, view=self._view, clock=self._clock)

            def connected(protocol: Any) -> Deferred[None]:
                connection = _Connection(key, protocol, relay, self._clock.seconds(), cacheable=not plaintext)

                def isFinal() -> bool:
                    # Asked once the session is over: only then is it known
                    # whether it counts against smtp_mx_session_limit.
                    if protocol.established:
                        budget.sessionEstablished()
                    return not budget.hasMore()

                def retryPlaintext() -> Deferred[None]:
                    # Opportunistic TLS failed in the handshake: as Postfix,
                    # the same server again, in clear, at once.
                    self._log.info(
                        "{queueID}: TLS handshake with {relay} failed at level may; retrying in plaintext",
                        queueID=attempt.queueID,
                        relay=relay,
                    )
                    return tryDestination(destination, remaining, plaintext=True)

                return self._sendOver(
                    attempt, connection, remaining, isFinal, reused=False, retryPlaintext=None if plaintext else retryPlaintext
                ).addCallback(sent)

            def notConnected(failure: Failure) -> Deferred[None]:
                lastError[:] = ["4.4.1", f"connect to {relay}: {_connectError(failure)}"]
                return tryNext(remaining)

            return connecting.addCallbacks(connected, notConnected)

        cached = self._takeCached(key)
        if cached is not None:
            return self._sendOver(
                attempt, cached, list(recipients), lambda: not budget.hasMore(), reused=True
            ).addCallback(sent)
        return tryNext(list(recipients))

    # -- the connection cache ----------------------------------------------

    def _takeCached(self, key: tuple[Any, ...]) -> Optional[_Connection]:
        """
        An idle cached connection for C{key} that may carry another
        message now, taken out of the cache.
        """
        connections = self._cache.get(key, [])
        while connections:
            connection = connections.pop()
            if connection.expiry is not None and connection.expiry.active():
                connection.expiry.cancel()
            connection.expiry = None
            if connection.protocol.ready and self._reusable(connection):
                return connection
            _hangUp(connection.protocol)
        self._cache.pop(key, None)
        return None

    def _reusable(self, connection: _Connection) -> bool:
        """
        Whether the connection may carry another message, by Postfix's
        limits: C{smtp_connection_reuse_time_limit} since it was made, and
        C{smtp_connection_reuse_count_limit} messages.
        """
        if self._clock.seconds() - connection.made >= self._view[params.smtp_connection_reuse_time_limit]:
            return False
        countLimit = self._view[params.smtp_connection_reuse_count_limit]
        return countLimit <= 0 or connection.uses < countLimit

    def _wanted(self, connection: _Connection) -> bool:
        """
        Whether to cache the connection: its destination is listed in
        C{smtp_connection_cache_destinations}, or (with
        C{smtp_connection_cache_on_demand}) the next hop has mail flowing:
        another delivery to it is waiting for a connection (Postfix's
        backlog) or in progress beside this one (Postfix's qmgr keeps
        on-demand caching on while deliveries to a destination run
        concurrently).  The last delivery of a burst closes its
        connection.
        """
        route, host = connection.key[0], connection.key[1]
        listed = self._view[params.smtp_connection_cache_destinations]
        if listed:
            names = {host.lower(), f"[{host.lower()}]"}
            names.update(f"[{nexthop.host.lower()}]:{nexthop.port}" for nexthop in route)
            if any(name.lower() in names for name in listed):
                return True
        if not self._view[params.smtp_connection_cache_on_demand]:
            return False
        semaphore = self._semaphores.get(route)
        if semaphore is None:
            return False
        # This delivery still holds one of the tokens.
        return bool(semaphore.waiting) or semaphore.limit - semaphore.tokens > 1

    def _release(self, connection: _Connection) -> Deferred[None]:
        """
        A message is done with the connection: cache it for the next one
        (idle for at most C{smtp_connection_cache_time_limit}), or QUIT.
        A connection the session gave up on (a protocol error, a lost or
        timed-out conversation, unexpected input) is never cached.
        """
        protocol = connection.protocol
        if connection.cacheable and protocol.ready and self._reusable(connection) and self._wanted(connection):
            self._cache.setdefault(connection.key, []).append(connection)
            connection.expiry = self._clock.callLater(
                self._view[params.smtp_connection_cache_time_limit], self._expire, connection
            )
            if not connection.watched:
                connection.watched = True
                protocol.whenClosed().addCallback(lambda ignored: self._uncache(connection))
            return succeed(None)
        closing: Deferred[None] = protocol.quit() if protocol.usable else succeed(None)
        return closing.addErrback(lambda failure: None)

    def _expire(self, connection: _Connection) -> None:
        connection.expiry = None
        if self._uncache(connection):
            _hangUp(connection.protocol)

    def _uncache(self, connection: _Connection) -> bool:
        """
        Take a connection out of the cache (it closed, or expired).

        @return: whether it was there.
        """
        connections = self._cache.get(connection.key, [])
        if connection not in connections:
            return False
        connections.remove(connection)
        if not connections:
            del self._cache[connection.key]
        if connection.expiry is not None and connection.expiry.active():
            connection.expiry.cancel()
        connection.expiry = None
        return True

    def _protocolFor(self, nexthop: Any, destination: Any, *, plaintext: bool = False) -> Any:
        """
        A client protocol for one destination under the next hop's TLS
        policy, or without TLS for a C{plaintext} retry.
        """
        from ..client import ClientSession, SessionSettings, SMTPClientProtocol

        tls = self._tlsPolicyFor(nexthop.host)
        hop = f"{destination.hostname}[{destination.address}]"
        creator = tls.creatorFor(destination.hostname) if tls.context is not None and not plaintext else None

        def verdict(transport: ITransport) -> Optional[str]:
            judged = tls.verdict(transport, f"{hop}:{destination.port}")
            self._log.info("{line}", line=judged.logLine)
            return None if judged.satisfied else (judged.reason or "TLS handshake failed")

        credentials = self._credentials(nexthop, destination)
        sasl = self._sasl
        session = ClientSession(
            SessionSettings(
                nextHop=hop,
                heloName=self._view[params.smtp_helo_name],
                tlsLevel="none" if plaintext else tls.level,
                skip5xxGreeting=self._view[params.smtp_skip_5xx_greeting],
                username=None if credentials is None else credentials[0],
                password=None if credentials is None else credentials[1],
                authOverPlaintext=sasl.overPlaintext,
                authOverTLS=sasl.overTLS,
                authMechanisms=sasl.mechanisms,
            )
        )
        return SMTPClientProtocol(
            session=session,
            nextHop=hop,
            view=self._view,
            clock=self._clock,
            tlsCreator=creator,
            tlsVerdict=verdict,
        )

    def _credentials(self, nexthop: Any, destination: Any) -> Optional[tuple[str, str]]:
        """
        The SASL user name and password for a server of the next hop, or
        L{None}.
        """
        from ..client._sasl import nexthopKeys
        from ..client._tables import TableError

        if not self._sasl.enabled:
            return None
        try:
            return self._sasl.credentials(
                destination.hostname, *nexthopKeys(nexthop.host, nexthop.port, nexthop.mxLookup)
            )
        except TableError as error:
            self._log.warn(
                "warning: {hop}: SASL password lookup failed: {error}", hop=destination.hostname, error=error
            )
            return None

    def _defaultTLSPolicy(self, domain: str) -> Any:
        from ..tls import clientTLSPolicy

        policy = self._tlsPolicies.get(domain)
        if policy is None:
            policy = self._tlsPolicies[domain] = clientTLSPolicy(self._view, nextHop=domain, reactor=self._clock)
            for line in policy.warnings:
                self._log.warn("{line}", line=line)
        return policy

    def _tcpEndpoint(self, destination: Any) -> IStreamClientEndpoint:
        if destination.family == 6:
            bind = self._view[params.smtp_bind_address6]
            return TCP6ClientEndpoint(
                self._clock, destination.address, destination.port, bindAddress=(bind, 0) if bind else None
            )
        bind = self._view[params.smtp_bind_address]
        return TCP4ClientEndpoint(
            self._clock, destination.address, destination.port, bindAddress=(bind, 0) if bind else None
        )

    def _sendOver(
        self,
        attempt: _Attempt,
        connection: _Connection,
        recipients: list[str],
        isFinal: Callable[[], bool],
        *,
        reused: bool,
        retryPlaintext: Optional[Callable[[], Deferred[None]]] = None,
    ) -> Deferred[Any]:
        """
        Send the message over one connection and record the outcomes,
        except the soft failures that another server may do better with;
        then cache or close the connection.

        @param isFinal: called once the session is over: whether this was
            the last server to try.
        @param reused: the connection came from the cache: a message it
            hands back untried (its RSET failed) goes to a new connection.
        @param retryPlaintext: called instead, when the TLS handshake failed
            at level C{may}, to retry the same server in clear.
        @return: fires with the recipients kept for the next server, with
            their DSN code and reason: (recipient, dsn, reason); or with
            C{None} when C{retryPlaintext} took the message over.
        """
        from ..client import OutboundMessage

        protocol = connection.protocol
        relay = connection.relay
        # For a reused connection the setup time (delays "c") is nil.
        started = self._clock.seconds()
        content = attempt.content
        if content is not None:
            message = OutboundMessage.fromContent(attempt.header, content, tuple(recipients))
            source: IO[bytes] = message.content
        else:
            try:
                source = open(attempt.path, "rb")
            except OSError as problem:
                _hangUp(protocol)
                return self._record(
                    attempt, recipients, relay, started, "deferred", "4.3.0", f"cannot read queue file: {problem}"
                ).addCallback(lambda ignored: [])
            message = OutboundMessage.fromQueueFile(attempt.header, source, tuple(recipients))
        try:
            delivering: Deferred[Any] = protocol.deliver(message)
        except RuntimeError:
            # The session gave the connection up before the message (a
            # greeting refused, a lost connection).
            source.close()
            _hangUp(protocol)
            reason = f"lost connection with {relay} before delivery"
            if reused or not isFinal():
                return succeed([(recipient, "4.4.2", reason) for recipient in recipients])
            return self._record(attempt, recipients, relay, started, "deferred", "4.4.2", reason).addCallback(
                lambda ignored: []
            )
        connection.uses += 1

        def delivered(result: Any) -> Deferred[Any]:
            source.close()
            if result.untried and result.retryPlaintext and retryPlaintext is not None:
                return retryPlaintext()
            final = isFinal() and not (reused and result.untried)
            work = []
            reported = set()
            kept: list[tuple[str, str, str]] = []
            for outcome in result.outcomes:
                reported.add(outcome.recipient)
                if outcome.status == "deferred" and not final:
                    # Postfix's smtp_trouble: a soft error on a server that
                    # is not the last is only noted; the next one is tried.
                    self._log.info("{queueID}: {reason}", queueID=attempt.queueID, reason=outcome.reason)
                    kept.append((outcome.recipient, outcome.dsn, outcome.reason))
                    continue
                work.append(
                    self._record(
                        attempt,
                        [outcome.recipient],
                        relay,
                        started,
                        outcome.status,
                        outcome.dsn,
                        outcome.reason,
                        connection.uses,
                    )
                )
            missing = [r for r in recipients if r not in reported]
            if missing:
                reason = f"delivery to {relay} was not attempted"
                if final:
                    work.append(
                        self._record(attempt, missing, relay, started, "deferred", "4.4.2", reason, connection.uses)
                    )
                else:
                    kept += [(recipient, "4.4.2", reason) for recipient in missing]
            recorded = gatherResults(work, consumeErrors=True)
            if not kept:
                # Nothing left for another server: the connection and the
                # concurrency slot are free for the next message now, while
                # the markers become durable (the attempt waits for them
                # before it decides about the file; each outcome is still
                # logged only once durable).
                attempt.recording.append(recorded)
                return self._release(connection).addCallback(lambda ignored: kept)

            def release(result: object) -> Deferred[object]:
                return self._release(connection).addCallback(lambda ignored: result)

            return recorded.addBoth(release).addCallback(lambda ignored: kept)

        def failed(failure: Failure) -> Failure:
            source.close()
            return failure

        done: Deferred[Any] = delivering.addCallbacks(delivered, failed)
        return done

    # -- outcomes ----------------------------------------------------------

    def _record(
        self,
        attempt: _Attempt,
        recipients: Sequence[str],
        relay: str,
        connected: Optional[float],
        status: str,
        dsn: str,
        reason: str,
        connectionUse: int = 1,
    ) -> Deferred[None]:
        """
        Mark each recipient's outcome durably in the queue file, then log it.

        @param connectionUse: which message this was on its connection;
            from the second on, the log line says C{conn_use=N} after the
            relay, as Postfix's does for a reused connection.
        """
        if status == "deferred":
            header = attempt.header
            lifetime = self._view[
                params.bounce_queue_lifetime if header.envelope.sender == "" else params.maximal_queue_lifetime
            ]
            if self._clock.seconds() - header.envelope.arrival >= lifetime:
                status, reason = "bounced", f"message expired; last error: {reason}"
        marker = {"sent": RecipientStatus.DELIVERED, "bounced": RecipientStatus.BOUNCED}.get(status)
        entries = [entry for address in recipients for entry in attempt.byAddress.get(address, [])]
        path = attempt.path
        # The last recipient pending in the file is delivered, and no other
        # marker of this attempt is still being written: the same worker
        # job removes the file once this marker is durable (a bounce waits
        # for its notification to be queued first, in _finishFile).
        last = (
            marker is RecipientStatus.DELIVERED
            and attempt.marking == 0
            and not attempt.failures
            and not attempt.deferred
            and attempt.remaining.issubset(entry.statusOffset for entry in entries)
        )

        attempt.marking += 1
        marking = self._mark(_MarkRequest(path, entries, marker, last))

        def settled(result: Any) -> Any:
            attempt.marking -= 1
            return result

        def marked(removed: bool) -> None:
            if marker is not None:
                attempt.remaining.difference_update(entry.statusOffset for entry in entries)
            if removed:
                attempt.removed = True
            if status == "deferred":
                attempt.deferred = True
            elif status == "bounced":
                attempt.bounced = True
                host = relay.split("[", 1)[0]
                for address in recipients:
                    attempt.failures.append(
                        FailedRecipient(
                            address, dsn, reason, remoteMTA=host if relay != "none" else None
                        )
                    )
            for address in recipients:
                self._logOutcome(attempt, address, relay, connected, dsn, f"{status} ({reason})", connectionUse)

        return marking.addBoth(settled).addCallback(marked)

    def _mark(self, request: _MarkRequest) -> Deferred[bool]:
        """
        Have C{request} carried out in the worker: in the next marker job,
        which starts now if none is running, else when the running one
        ends.  Under load the markers of concurrent deliveries so share one
        job (one thread hand-off, and fsyncs of files whose changes the
        first fsync's journal commit already made durable), without
        delaying a marker when the worker is idle.

        @return: fires with whether the file was removed, or fails with
            what writing the marker raised.
        """
        result: Deferred[bool] = Deferred()
        self._markQueue.append((request, result))
        if not self._markRunning:
            self._startMarking()
        return result

    def _startMarking(self) -> None:
        batch, self._markQueue = self._markQueue, []
        requests = [request for request, result in batch]
        self._markRunning = True

        def mark() -> list[bool | Exception]:
            # Read at run time: tests replace the manager's fsync.
            return _markAll(requests, self._fsync)

        marking: Deferred[list[bool | Exception]] = self._worker.run(mark)
        marking.addBoth(self._marked, batch)

    def _marked(
        self, outcomes: list[bool | Exception] | Failure, batch: list[tuple[_MarkRequest, Deferred[bool]]]
    ) -> None:
        self._markRunning = False
        for index, (request, result) in enumerate(batch):
            outcome = outcomes if isinstance(outcomes, Failure) else outcomes[index]
            if isinstance(outcome, (Failure, Exception)):
                result.errback(outcome)
            else:
                result.callback(outcome)
        # Markers asked for meanwhile (and by the callbacks just run).
        if self._markQueue and not self._markRunning:
            self._startMarking()

    def _logOutcome(
        self,
        attempt: _Attempt,
        recipient: str,
        relay: str,
        connected: Optional[float],
        dsn: str,
        status: str,
        connectionUse: int = 1,
    ) -> None:
        now = self._clock.seconds()
        arrival = attempt.header.envelope.arrival
        inQueue = max(0.0, attempt.started - arrival)
        if connected is None:
            setup, transmission = 0.0, 0.0
            inQueue = max(0.0, now - arrival)
        else:
            setup = max(0.0, connected - attempt.started)
            transmission = max(0.0, now - connected)
        self._log.info(
            "{queueID}: to=<{recipient}>, relay={relay}{reuse}, delay={delay}, delays={delays}, dsn={dsn}, status={status}",
            queueID=attempt.queueID,
            recipient=recipient,
            relay=relay,
            conn_use=connectionUse,
            reuse=f", conn_use={connectionUse}" if connectionUse > 1 else "",
            delay=formatDelay(max(0.0, now - arrival)),
            delays="/".join(formatDelay(x) for x in (0.0, inQueue, setup, transmission)),
            dsn=dsn,
            status=status,
        )
