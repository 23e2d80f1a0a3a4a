# -*- test-case-name: tests.test_queue_local -*-
"""
Local delivery from the durable queue: every pending local recipient of a
committed message is delivered by a L{MaildirAgent}, then marked done in
the queue file; the file is removed when no recipient is left pending.

The order of the steps gives at-least-once delivery across crashes: the
Maildir rename is durable before the done marker, and the done markers are
durable before the file is removed, so a restart at any point either
delivers a recipient again or finds it done, and never loses it.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from typing import Any, Callable, Iterable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._format import QueueFile, QueueFileHeader, QueueFormatError, QueuedRecipient, RecipientStatus, parseQueueFile
from ._ids import isQueueID
from ._maildir import MaildirAgent
from ._markers import markRecipient
from ._store import QueueStore

#: Queue files delivered at the same time.  The store shares its worker's
#: threads with deliveries; a bound keeps a backlog of deliveries from
#: queueing ahead of the store's commits in the pool.
MAX_CONCURRENT_FILES = 2

CORRUPT = "corrupt"


def formatDelay(seconds: float) -> str:
    """
    Format a delay as Postfix does in C{delay=} and C{delays=}: whole
    seconds from 10 s, one decimal from 1 s, two significant decimals below
    (C{0.05}, C{0.1}), and C{0} for what rounds to nothing.
    """
    if seconds >= 10:
        return str(int(seconds))
    if seconds >= 1:
        text = f"{seconds:.1f}"
    else:
        text = f"{seconds:.2f}"
    text = text.rstrip("0").rstrip(".")
    return text or "0"


#: Postfix's qmgr line for a message that enters the active queue (at
#: arrival and at each retry); log tools count received mail and bytes from it.
ACTIVE_LOG_FORMAT = "{queueID}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)"


def logActive(log: Logger, header: QueueFileHeader) -> None:
    """
    Log qmgr's line for a message whose delivery attempt starts.
    """
    log.info(
        ACTIVE_LOG_FORMAT,
        queueID=header.queueID,
        sender=header.envelope.sender,
        size=header.size,
        nrcpt=len(header.envelope.recipients),
    )


def _readQueueFile(path: str) -> QueueFile:
    with open(path, "rb") as f:
        return parseQueueFile(f.read())


class LocalDeliveryManager(Service):
    """
    Deliver the local recipients of committed messages.

    The SMTP server calls L{queued} after each commit (with the
    envelope's recipients, so that relay-only messages are not read
    back); L{start} (or
    C{startService}) delivers what a previous run left in C{active/}.
    Recipients that are not local stay pending for the SMTP relay transport.
    """

    def __init__(
        self,
        store: QueueStore,
        agent: MaildirAgent,
        *,
        isLocal: Callable[[str], bool],
        reactor: Any,
        log: Logger,
        worker: Any = None,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        """
        @param store: the queue whose C{active/} files are delivered.
        @param agent: writes the Maildirs.
        @param isLocal: whether a recipient address is local
            (C{mydestination}); called in the reactor thread.
        @param reactor: provides C{IReactorTime}, for delays in log lines.
        @param log: receives the Postfix-form delivery log lines.
        @param worker: runs the blocking work; by default the store's.
        @param fsync: replaces C{os.fsync} for the done markers.
        """
        self._store = store
        self._agent = agent
        self._isLocal = isLocal
        self._reactor = reactor
        self._log = log
        self._worker = worker if worker is not None else store.worker
        self._fsync = fsync
        self._waiting: deque[tuple[str, float]] = deque()
        self._known: set[str] = set()
        self._running = 0

    def start(self) -> Deferred[None]:
        """
        Deliver every message left in C{active/} by a previous run.

        @return: a L{Deferred} that fires once they are scheduled.
        """
        now = self._reactor.seconds()
        directory = self._store.activeDirectory

        def scheduled(names: list[str]) -> None:
            for name in sorted(names):
                if isQueueID(name):
                    self._enqueue(name, now)

        listing: Deferred[list[str]] = self._worker.run(lambda: os.listdir(directory))
        return listing.addCallback(scheduled)

    def startService(self) -> None:
        """
        Start with the application; see L{start}.
        """
        Service.startService(self)
        self.start().addErrback(lambda failure: self._log.failure("scanning the queue failed", failure))

    def queued(self, queueID: str, recipients: Iterable[str] | None = None) -> None:
        """
        Deliver the message just committed as C{queueID}.

        @param recipients: the message's recipients as the caller knows
            them (the envelope's), or C{None} if it does not.  When given
            and none of them is local, the queue file is not read at all:
            the message waits in C{active/} for the relay transport.
            Without them the file is read to find its local recipients.
        """
        if recipients is not None:
            if isinstance(recipients, (str, bytes)):
                raise TypeError("recipients must be a collection of addresses, not one string")
            if not any(self._isLocal(recipient) for recipient in recipients):
                return
        self._enqueue(queueID, self._reactor.seconds())

    def _enqueue(self, queueID: str, queuedAt: float) -> None:
        if queueID in self._known:
            return
        self._known.add(queueID)
        self._waiting.append((queueID, queuedAt))
        self._next()

    def _next(self) -> None:
        while self._waiting and self._running < MAX_CONCURRENT_FILES:
            queueID, queuedAt = self._waiting.popleft()
            self._running += 1
            done = self._deliverFile(queueID, queuedAt)
            done.addErrback(self._fileFailed, queueID)
            done.addBoth(self._fileDone, queueID)

    def _fileFailed(self, failure: Failure, queueID: str) -> None:
        self._log.failure("{queueID}: delivery failed", failure, queueID=queueID)

    def _fileDone(self, result: object, queueID: str) -> None:
        self._running -= 1
        self._known.discard(queueID)
        self._next()

    def _deliverFile(self, queueID: str, queuedAt: float) -> Deferred[None]:
        path = os.path.join(self._store.activeDirectory, queueID)
        reading: Deferred[QueueFile] = self._worker.run(lambda: _readQueueFile(path))

        def read(queued: QueueFile) -> Deferred[None] | None:
            local = [r for r in queued.header.pending if self._isLocal(r.address)]
            if local and len(local) == len(queued.header.pending):
                # With a remote recipient pending, the queue manager's
                # attempt logs this line: once per activation, as qmgr.
                logActive(self._log, queued.header)
            return self._deliverRecipients(queueID, path, queued, local, queuedAt)

        def unreadable(failure: Failure) -> None:
            if isinstance(failure.value, FileNotFoundError):
                # Already removed (delivered by an earlier pass).
                return
            if isinstance(failure.value, QueueFormatError):
                self._log.warn("warning: {queueID}: corrupt queue file: {error}; moved to corrupt/", queueID=queueID, error=failure.value)
                corrupt = os.path.join(self._store.directory, CORRUPT)

                def move() -> None:
                    os.makedirs(corrupt, mode=0o700, exist_ok=True)
                    os.rename(path, os.path.join(corrupt, queueID))

                self._worker.run(move).addErrback(
                    lambda f: self._log.failure("{queueID}: cannot move corrupt queue file", f, queueID=queueID)
                )
                return
            failure.raiseException()

        return reading.addCallbacks(read, unreadable)

    def _deliverRecipients(
        self, queueID: str, path: str, queued: QueueFile, local: list[QueuedRecipient], queuedAt: float
    ) -> Deferred[None] | None:
        remaining = {r.statusOffset for r in queued.header.pending}
        if not remaining:
            return self._remove(queueID, path)
        if not local:
            return None
        arrival = queued.header.envelope.arrival
        recipients = deque(local)
        finished: Deferred[None] = Deferred()

        def deliverOne() -> None:
            recipient = recipients.popleft()
            started = self._reactor.seconds()

            def job() -> None:
                self._agent.deliver(queued, recipient.address, started)
                markRecipient(path, recipient, RecipientStatus.DELIVERED, self._fsync)

            def delivered(result: None) -> None:
                remaining.discard(recipient.statusOffset)
                self._logDelivery(queueID, recipient.address, arrival, queuedAt, started, "2.0.0", "sent (delivered to maildir)")

            def failed(failure: Failure) -> None:
                error = failure.value
                if not isinstance(error, OSError):
                    failure.raiseException()
                self._logDelivery(
                    queueID,
                    recipient.address,
                    arrival,
                    queuedAt,
                    started,
                    "4.3.0" if getattr(error, "errno", None) != errno.ENOSPC else "4.3.1",
                    f"deferred (maildir delivery failed: {error})",
                )

            def nextOne(result: None) -> None:
                if recipients:
                    deliverOne()
                elif remaining:
                    finished.callback(None)
                else:
                    self._remove(queueID, path).chainDeferred(finished)

            self._worker.run(job).addCallbacks(delivered, failed).addCallbacks(nextOne, finished.errback)

        deliverOne()
        return finished

    def _remove(self, queueID: str, path: str) -> Deferred[None]:
        # No fsync of active/ afterwards: every recipient is durably marked
        # done, so a removal lost in a crash only makes the next start
        # remove the file again, without delivering anything twice.
        def removed(result: None) -> None:
            self._log.info("{queueID}: removed", queueID=queueID)

        removing: Deferred[None] = self._worker.run(lambda: os.unlink(path))
        return removing.addCallback(removed)

    def _logDelivery(
        self, queueID: str, recipient: str, arrival: float, queuedAt: float, started: float, dsn: str, status: str
    ) -> None:
        now = self._reactor.seconds()
        beforeQueue = max(0.0, queuedAt - arrival)
        inQueue = max(0.0, started - max(queuedAt, arrival))
        transmission = max(0.0, now - started)
        self._log.info(
            "{queueID}: to=<{recipient}>, relay=local, delay={delay}, delays={delays}, dsn={dsn}, status={status}",
            queueID=queueID,
            recipient=recipient,
            delay=formatDelay(max(0.0, now - arrival)),
            delays="/".join(formatDelay(x) for x in (beforeQueue, inQueue, 0.0, transmission)),
            dsn=dsn,
            status=status,
        )
