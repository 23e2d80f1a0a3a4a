# -*- test-case-name: tests.test_queue_manager -*-
"""
Per-recipient done markers: the one place that rewrites a queue file.
"""

from __future__ import annotations

import os
from typing import Callable

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
