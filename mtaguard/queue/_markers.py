# -*- test-case-name: tests.test_queue_manager -*-
"""
Per-recipient done markers: the one place that rewrites a queue file.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from ._format import QueuedRecipient, RecipientStatus


def markRecipient(
    path: str,
    recipient: QueuedRecipient,
    status: RecipientStatus,
    fsync: Callable[[int], None] = os.fsync,
) -> bool:
    """
    Durably record a recipient's new status in its queue file: one byte
    written in place (a crash leaves the old or the new byte, never a torn
    field), then fsync.

    @return: C{False} if the file is gone (deleted with
        C{mtaguard-postsuper -d} while being delivered): there is nothing
        left to record.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        os.pwrite(descriptor, status.value, recipient.statusOffset)
        fsync(descriptor)
    finally:
        os.close(descriptor)
    return True


def markTogether(
    marks: Sequence[tuple[str, Sequence[QueuedRecipient], RecipientStatus]],
    fsync: Callable[[int], None] = os.fsync,
) -> list[bool | Exception]:
    """
    L{markRecipient} for several files at once: every status byte is
    written first, then each file fsync'ed.  On ext4 the first fsync's
    journal commit then carries the other files' changed inodes (and, in
    ordered mode, their data), so the fsyncs after it find little left to
    do.  Each file is durable when its own fsync returns, as with
    L{markRecipient}.

    @param marks: (queue file, its recipients to mark, their new status).
    @return: for each, C{True} once durable, C{False} if the file is gone,
        or the exception that made it fail (one file's failure is not
        another's).
    """
    results: list[bool | Exception] = []
    opened: list[tuple[int, int]] = []
    try:
        for index, (path, recipients, status) in enumerate(marks):
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                results.append(False)
                continue
            except OSError as error:
                results.append(error)
                continue
            opened.append((index, descriptor))
            results.append(True)
            try:
                for recipient in recipients:
                    os.pwrite(descriptor, status.value, recipient.statusOffset)
            except OSError as error:
                results[index] = error
        for index, descriptor in opened:
            if results[index] is True:
                try:
                    fsync(descriptor)
                except Exception as error:
                    results[index] = error
    finally:
        for index, descriptor in opened:
            try:
                os.close(descriptor)
            except OSError as error:
                if results[index] is True:
                    results[index] = error
    return results
