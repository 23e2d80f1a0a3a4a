# -*- test-case-name: tests.test_sendnow -*-
"""
Writing a reply straight to the socket when nothing is queued before it.

Twisted's C{transport.write} always buffers: it registers the socket for
writing (an C{epoll_ctl}), sends on the reactor's next pass, then
unregisters it (another C{epoll_ctl}).  An SMTP server writes a small reply
and then waits for the client, so the socket almost always has room: here
the reply is sent at once, and only what the kernel does not take goes
through Twisted's buffer as before.  On a loopback benchmark this is two
system calls and a reactor pass fewer per reply.

Only a plain TCP connection qualifies (C{twisted.internet.tcp.Connection}
exactly as Twisted builds it, without TLS started on it); anything else (a
TLS transport, a PROXY wrapper, a test transport) is written as usual.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

__all__ = ["canSendNow", "sendNow"]


def canSendNow(transport: Any) -> bool:
    """
    Whether C{transport} is a plain Twisted TCP connection whose socket
    L{sendNow} may write to directly (checked once per connection; TLS is
    checked again at each write since it can start later).
    """
    return isinstance(transport, tcp.Connection) and hasattr(transport, "_tempDataBuffer")


def sendNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}, which L{canSendNow} accepted: straight to
    its socket when Twisted holds nothing unsent for it, else (or for what
    the socket did not take) through C{transport.write}.
    """
    if (
        not getattr(transport, "TLS", False)
        and not transport.dataBuffer
        and not transport._tempDataBuffer
        and transport.connected
        and not transport.disconnecting
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int):
            if sent == len(data):
                return
            data = data[sent:]
        # An error (the peer went away): Twisted's own write path meets
        # it again and closes the connection as it always does.
    transport.write(data)
