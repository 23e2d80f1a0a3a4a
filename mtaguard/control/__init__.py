"""
Queue control: C{mtaguard-postqueue} and C{mtaguard-postsuper}, Postfix's
C{postqueue} and C{postsuper} for mtaguard's queue.

Listing reads the queue directory directly.  Flush (C{-f}), delivery of
one message (C{-i}), requeue (C{-r}) and, while the service runs, deletion
(C{-d}) are asked of the running service over its control socket
(C{<queue_directory>/mtaguard/private/control}, AMP over a UNIX socket,
owner only; L{mtaguard.control._server}); without a running service
deletion unlinks the files directly and the other requests fail saying
that it is not running.
"""

from ._postqueue import main as postqueueMain
from ._postsuper import main as postsuperMain
from ._queueview import (
    QueueEntry,
    deleteMessage,
    deleteMessages,
    formatJSON,
    formatMailq,
    listQueue,
    listQueueIDs,
    queueDirectoryOf,
    readEntry,
)

__all__ = [
    "QueueEntry",
    "deleteMessage",
    "deleteMessages",
    "formatJSON",
    "formatMailq",
    "listQueue",
    "listQueueIDs",
    "postqueueMain",
    "postsuperMain",
    "queueDirectoryOf",
    "readEntry",
]
