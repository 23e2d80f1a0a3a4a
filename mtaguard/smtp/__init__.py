"""
The sans-I/O core of mtaguard's SMTP server: parsing what clients send,
their command arguments, and the replies and log texts sent back.  Nothing
in this package does I/O, keeps time or waits: the protocol feeds it bytes
and acts on what it returns.
"""

from ._events import ChunkContent, Command, DataContent, EndOfChunk, EndOfData, Event
from ._serverparser import ServerParser

__all__ = [
    "ChunkContent",
    "Command",
    "DataContent",
    "EndOfChunk",
    "EndOfData",
    "Event",
    "ServerParser",
]
