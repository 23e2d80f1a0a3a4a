"""
The sans-I/O core of mtaguard's SMTP client: parsing what a next hop
replies, deciding what to send next, and encoding message content for the
wire.  Nothing in the core does I/O, keeps time or waits: the protocol
(L{SMTPClientProtocol}, connected with L{connectNextHop}) feeds it bytes and
events and acts on what it returns.

Routing (L{Router}, L{resolve}) chooses each recipient's next hop and the
servers to try there; its only I/O is the DNS resolver it is given.
"""

from ._content import ChunkEncoder, DataEncoder, normalize
from ._factory import connectNextHop
from ._protocol import (
    CHUNK_SIZE,
    ContentError,
    DeliveryResult,
    OutboundMessage,
    SMTPClientProtocol,
)
from ._replyparser import (
    MalformedReply,
    ReplyEvent,
    ReplyParser,
    ServerReply,
    parseEhlo,
)
from ._routing import (
    AddressPolicy,
    AttemptBudget,
    Destination,
    Discard,
    Nexthop,
    ResolutionError,
    Route,
    Router,
    RoutingError,
    Undeliverable,
    groupByNexthop,
    parseNexthop,
    resolve,
    resolveAll,
    resolveNow,
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
from ._tables import TableError, TableList, UnsupportedTable, openTable

__all__ = [
    "CHUNK_SIZE",
    "ContentError",
    "DeliveryResult",
    "OutboundMessage",
    "SMTPClientProtocol",
    "connectNextHop",
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
    "AddressPolicy",
    "AttemptBudget",
    "Destination",
    "Discard",
    "Nexthop",
    "ResolutionError",
    "Route",
    "Router",
    "RoutingError",
    "Undeliverable",
    "groupByNexthop",
    "parseNexthop",
    "resolve",
    "resolveAll",
    "resolveNow",
    "TableError",
    "TableList",
    "UnsupportedTable",
    "openTable",
    "DataEncoder",
    "MalformedReply",
    "ReplyEvent",
    "ReplyParser",
    "ServerReply",
    "normalize",
    "parseEhlo",
]
