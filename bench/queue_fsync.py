"""
Measure durable-queue commits per second with real fsync on this disk: one
writer (each commit waits for the previous one, so every message pays its
own file and directory fsyncs) against N concurrent writers (commits that
arrive during a batch are group-committed by the next one, whose files are
fsync'ed concurrently).  Prints the commits per batch and the directory
fsyncs per commit as counted on the store's file-system calls.

Usage: .venv/bin/python bench/queue_fsync.py [--directory DIR] [--seconds S]
       [--size BYTES] [--writers N]

The directory must be on the disk under test (the default is a temporary
directory beside this script, not /tmp, which may be a tmpfs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks  # noqa: E402

from mtaguard.queue import Envelope, FileSystem, QueueStore  # noqa: E402
from mtaguard.queue._store import linuxSyncfs  # noqa: E402

reactor: object = _reactor
directorySyncs = [0]
countLock = threading.Lock()


def envelope() -> Envelope:
    return Envelope(
        sender="sender@client.example",
        recipients=("rcpt@remote.example",),
        parameters=(("SIZE", "4096"),),
        clientAddress="127.0.0.1",
        clientPort=40000,
        clientName="unknown",
        helo="client.example",
        protocol="ESMTP",
        tls=False,
        authUser=None,
        arrival=_reactor.seconds(),
    )


@inlineCallbacks
def run(store: QueueStore, writers: int, seconds: float, content: bytes):  # type: ignore[no-untyped-def]
    """
    Run C{writers} loops of commit-after-commit for C{seconds}.

    @return: (commits, elapsed seconds, batches, directory fsyncs).
    """
    deadline = time.perf_counter() + seconds
    counts = [0]
    batchesBefore = store.batches
    directorySyncsBefore = directorySyncs[0]

    @inlineCallbacks
    def writer():  # type: ignore[no-untyped-def]
        while time.perf_counter() < deadline:
            message = store.newMessage(envelope())
            message.write(content)
            yield message.commit()
            counts[0] += 1

    started = time.perf_counter()
    yield DeferredList([writer() for _ in range(writers)], fireOnOneErrback=True)
    elapsed = time.perf_counter() - started
    return counts[0], elapsed, store.batches - batchesBefore, directorySyncs[0] - directorySyncsBefore


@inlineCallbacks
def main():  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--directory", default=None, help="parent of the temporary queue directory")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--syncfs", action="store_true", help="flush a batch with one syncfs(2)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each mode")
    options = parser.parse_args()
    parent = options.directory or here
    directory = tempfile.mkdtemp(prefix="queue-fsync-", dir=parent)
    fileSystem = FileSystem(syncFileSystem=linuxSyncfs() if options.syncfs else None)
    store = QueueStore(directory, reactor=_reactor, fileSystem=fileSystem)
    store.start()
    directoryDescriptors = set(store._directoryDescriptors or ())
    realFsync = fileSystem.fsync

    def countingFsync(descriptor: int) -> None:
        if descriptor in directoryDescriptors:
            with countLock:  # syncing stages of two batches may overlap
                directorySyncs[0] += 1
        realFsync(descriptor)

    fileSystem.fsync = countingFsync
    content = (b"x" * 76 + b"\r\n") * (options.size // 78) + b"y" * (options.size % 78)
    results: dict[int, list[tuple[int, float, int, int]]] = {1: [], options.writers: []}
    try:
        for _ in range(options.rounds):
            # Interleaved, so that a change in the disk's load affects both.
            for writers in (1, options.writers):
                result = yield run(store, writers, options.seconds, content)
                results[writers].append(result)
                for name in os.listdir(store.activeDirectory):
                    os.unlink(os.path.join(store.activeDirectory, name))
    finally:
        yield store.stop()
        shutil.rmtree(directory)
    print(f"sync: {'syncfs per batch' if options.syncfs else 'fsync per file'}  disk: {parent}  message: {len(content)} bytes  {options.rounds} x {options.seconds:g} s per mode")
    rates = {}
    for writers, rounds in results.items():
        commits = sum(r[0] for r in rounds)
        elapsed = sum(r[1] for r in rounds)
        batches = sum(r[2] for r in rounds)
        syncs = sum(r[3] for r in rounds)
        rates[writers] = commits / elapsed
        print(
            f"{writers:3d} writer(s): {rates[writers]:8.0f} commits/s  "
            f"{commits / max(batches, 1):5.1f} commits/batch  "
            f"{syncs / max(commits, 1):5.2f} directory fsyncs/commit  "
            f"{1000 * elapsed / max(commits, 1) * writers:6.2f} ms/commit latency"
        )
    print(f"group-commit speed-up ({options.writers} vs 1 writer): {rates[options.writers] / rates[1]:.1f}x")


if __name__ == "__main__":

    def done(result: object) -> None:
        _reactor.stop()  # type: ignore[attr-defined]

    def failed(failure: object) -> None:
        print(failure)
        _reactor.stop()  # type: ignore[attr-defined]

    _reactor.callWhenRunning(lambda: main().addCallbacks(done, failed))  # type: ignore[attr-defined]
    _reactor.run()  # type: ignore[attr-defined]
