# -*- test-case-name: tests.test_testing -*-
"""
Public test doubles for applications that embed mtaguard, and for
mtaguard's own tests.  Every fake provides the interface it stands in for
(checked with C{verifyObject} in mtaguard's tests).
"""

from __future__ import annotations

import itertools
from typing import Any

import attr
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from .interfaces import IQueue, IQueuedMessage, IVerdictCache


@implementer(IQueuedMessage)
class MemoryMessage:
    """
    A message held in memory by L{MemoryQueue}.

    @ivar content: everything written so far.
    @ivar committed: whether L{commit} succeeded.
    @ivar aborted: whether L{abort} was called.
    """

    def __init__(self, queue: "MemoryQueue", queueID: str, envelope: Any) -> None:
        self._queue = queue
        self.queueID = queueID
        self.envelope = envelope
        self.content = bytearray()
        self.committed = False
        self.aborted = False
        self.producer: Any = None

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        if self.aborted:
            raise RuntimeError("write after abort")
        self.content += data

    def commit(self) -> "Deferred[str]":
        if self._queue.failCommit is not None:
            return fail(self._queue.failCommit)
        if self._queue.holdCommits:
            pending: Deferred[str] = Deferred()
            self._queue.pendingCommits.append((self, pending))
            return pending
        self._commitNow()
        return succeed(self.queueID)

    def _commitNow(self) -> None:
        self.committed = True
        self._queue.committed.append(self)

    def abort(self) -> None:
        self.aborted = True


@implementer(IQueue)
@attr.s(auto_attribs=True)
class MemoryQueue:
    """
    A queue in memory, for tests: every message is kept and can be
    inspected.

    @ivar failCreate: an exception L{newMessage} raises, if set.
    @ivar failCommit: an exception commits fail with, if set.
    @ivar holdCommits: keep commits pending until L{releaseCommits}.
    """

    failCreate: Exception | None = None
    failCommit: Exception | None = None
    holdCommits: bool = False
    messages: list[MemoryMessage] = attr.Factory(list)
    committed: list[MemoryMessage] = attr.Factory(list)
    pendingCommits: list[tuple[MemoryMessage, "Deferred[str]"]] = attr.Factory(list)
    _ids: Any = attr.Factory(lambda: itertools.count(1))

    def newMessage(self, envelope: object) -> MemoryMessage:
        if self.failCreate is not None:
            raise self.failCreate
        message = MemoryMessage(self, f"MEM{next(self._ids):06d}", envelope)
        self.messages.append(message)
        return message

    def releaseCommits(self) -> None:
        """
        Let every held commit succeed.
        """
        pending, self.pendingCommits = self.pendingCommits, []
        for message, deferred in pending:
            message._commitNow()
            deferred.callback(message.queueID)


@implementer(IVerdictCache)
class MemoryVerdictCache:
    """
    A postscreen verdict cache in a dict, answering at once: for tests and
    for embedders that want no persistence.

    @ivar entries: client address to its stored verdicts.
    """

    name = "memory:"

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}

    def get(self, clientAddress: str) -> Deferred[Any]:
        return succeed(self.entries.get(clientAddress))

    def put(self, clientAddress: str, verdicts: Any) -> Deferred[None]:
        self.entries[clientAddress] = verdicts
        return succeed(None)

    def cleanup(self) -> Deferred[tuple[int, int]]:
        return succeed((len(self.entries), 0))

    def close(self) -> Deferred[None]:
        return succeed(None)
