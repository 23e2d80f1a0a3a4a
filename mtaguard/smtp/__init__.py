"""
The sans-I/O core of mtaguard's SMTP server: parsing what clients send,
their command arguments, and the replies and log texts sent back, with no
transport, reactor or asynchronous machinery anywhere in this package.
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
