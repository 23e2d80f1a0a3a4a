# -*- test-case-name: tests.test_client_protocol -*-
"""
Connecting an L{SMTPClientProtocol} to a next hop within
C{smtp_connect_timeout}.

The TCP connect is the one wait that no L{Deadline} covers (there is no
protocol yet), so it gets its own bound here, with the clock injected:
Postfix's C{smtp_connect_timeout}, C{0} leaving it to the kernel.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import TimeoutError
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint

from ..config import ParameterView, params
from ._protocol import SMTPClientProtocol

__all__ = ["connectNextHop"]


def connectNextHop(
    endpoint: IStreamClientEndpoint,
    protocol: SMTPClientProtocol,
    *,
    view: ParameterView,
    clock: IReactorTime,
) -> Deferred[SMTPClientProtocol]:
    """
    Connect C{protocol} through C{endpoint}, giving up after
    C{smtp_connect_timeout} seconds.

    @param endpoint: Where the next hop listens (a TCP endpoint for
        C{host[address]:port}, with the bind address if one is configured).
    @param protocol: A fresh protocol; its session starts with the
        connection.
    @param view: Supplies C{smtp_connect_timeout}.
    @param clock: Times the connect.
    @return: Fires with C{protocol} once the connection is up (the greeting
        is then under C{smtp_helo_timeout}); fails with the endpoint's error,
        or with L{twisted.internet.error.TimeoutError} after the timeout, the
        connection attempt cancelled.  Either failure means: defer, or try
        the next address.
    """
    connecting: Deferred[SMTPClientProtocol] = connectProtocol(endpoint, protocol)
    timeout = view[params.smtp_connect_timeout]
    if timeout > 0:
        # Cancelling the endpoint's Deferred stops the connection attempt,
        # so that a late SYN-ACK does not leave a connection nobody owns.
        connecting.addTimeout(timeout, clock, onTimeoutCancel=_timedOut)
    return connecting


def _timedOut(result: object, timeout: float) -> SMTPClientProtocol:
    """
    The connect was cancelled by the timeout: report it as the timeout it
    is (what the endpoint's own C{timeout} reports), not as the
    C{ConnectingCancelledError} the cancellation produces.
    """
    raise TimeoutError(f"connect did not complete within {timeout:g} s")
