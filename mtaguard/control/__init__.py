"""
Queue control: C{mtaguard-postqueue} and C{mtaguard-postsuper}, Postfix's
C{postqueue} and C{postsuper} for mtaguard's queue.

For now they read (and delete from) the queue directory directly; what
only the running service can do (flush, requeue) fails with a message
saying so.  The functions of L{mtaguard.control._queueview} take a queue
directory and return plain values, so that commands answered by the
service over a control socket can call them too.
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
