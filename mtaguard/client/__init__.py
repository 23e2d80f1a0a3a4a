"""
The sans-I/O core of mtaguard's SMTP client: parsing what a next hop
replies, deciding what to send next, and encoding message content for the
wire.  Nothing in this package does I/O, keeps time or waits: the protocol
feeds it bytes and events and acts on what it returns.
"""

from ._content import ChunkEncoder, DataEncoder, normalize
from ._replyparser import (
    MalformedReply,
    ReplyEvent,
    ReplyParser,
    ServerReply,
    parseEhlo,
)
from ._session import (
    TLS_LEVELS,
    Action,
    AwaitReply,
    ClientSession,
    Close,
    ConnectionUnusable,
    Message,
    MessageDone,
    PlaintextDiscarded,
    Ready,
    RecipientOutcome,
    Send,
    SendContent,
    SessionSettings,
    StartTLS,
)

__all__ = [
    "TLS_LEVELS",
    "Action",
    "AwaitReply",
    "ChunkEncoder",
    "ClientSession",
    "Close",
    "ConnectionUnusable",
    "Message",
    "MessageDone",
    "PlaintextDiscarded",
    "Ready",
    "RecipientOutcome",
    "Send",
    "SendContent",
    "SessionSettings",
    "StartTLS",
    "DataEncoder",
    "MalformedReply",
    "ReplyEvent",
    "ReplyParser",
    "ServerReply",
    "normalize",
    "parseEhlo",
]
