"""
The durable mail queue and the local delivery agent.

A message is acknowledged only once its queue file is written, fsync'ed and
moved into C{active/} (L{QueueStore}, group-committed); then
L{LocalDeliveryManager} delivers its local recipients with L{MaildirAgent},
and L{QueueManager} the others with the SMTP client.
The queue file format is documented in C{docs/queue-format.md}.
"""

from ._envelope import Envelope
from ._format import (
    QueueFile,
    QueueFileHeader,
    QueueFormatError,
    QueuedRecipient,
    RecipientStatus,
    encodeQueueFile,
    parseQueueFile,
)
from ._ids import QueueIDGenerator
from ._local import LocalDeliveryManager
from ._manager import QueueManager, markRecipient
from ._maildir import MaildirAgent
from ._store import (
    MAX_PENDING_BYTES,
    ConcurrentCalls,
    FileSystem,
    ManualWorker,
    QueuedMessage,
    QueueStore,
    SynchronousWorker,
    ThreadPoolWorker,
    serialCalls,
)

__all__ = [
    "ConcurrentCalls",
    "Envelope",
    "FileSystem",
    "LocalDeliveryManager",
    "MAX_PENDING_BYTES",
    "MaildirAgent",
    "ManualWorker",
    "QueueFile",
    "QueueFileHeader",
    "QueueFormatError",
    "QueueIDGenerator",
    "QueueManager",
    "QueueStore",
    "QueuedMessage",
    "QueuedRecipient",
    "RecipientStatus",
    "SynchronousWorker",
    "ThreadPoolWorker",
    "encodeQueueFile",
    "markRecipient",
    "parseQueueFile",
    "serialCalls",
]
