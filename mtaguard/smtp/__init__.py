"""
The sans-I/O core of mtaguard's SMTP server: parsing what clients send,
their command arguments, and the replies and log texts sent back.  Nothing
in this package does I/O, keeps time or waits: the protocol feeds it bytes
and acts on what it returns.

The reply constants stay in C{mtaguard.smtp._replies} (import them from
there by name); only L{Reply} and L{multiline} are re-exported here.
"""

from ._arguments import (
    ArgumentSyntaxError,
    AuthenticationAborted,
    decodeLogin,
    decodePlain,
    decodeResponse,
    parseMailFrom,
    parseRcptTo,
    validateBody,
    validateSize,
    validateSmtpUtf8,
)
from ._escape import escapeForLog
from ._events import ChunkContent, Command, DataContent, EndOfChunk, EndOfData, Event
from ._replies import Reply, multiline
from ._serverparser import ServerParser

__all__ = [
    "ArgumentSyntaxError",
    "AuthenticationAborted",
    "ChunkContent",
    "Command",
    "DataContent",
    "EndOfChunk",
    "EndOfData",
    "Event",
    "Reply",
    "ServerParser",
    "decodeLogin",
    "decodePlain",
    "decodeResponse",
    "escapeForLog",
    "multiline",
    "parseMailFrom",
    "parseRcptTo",
    "validateBody",
    "validateSize",
    "validateSmtpUtf8",
]
