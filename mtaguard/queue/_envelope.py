# -*- test-case-name: tests.test_queue_format -*-
"""
The envelope of a queued message: everything the SMTP server learned about a
message besides its content.
"""

from __future__ import annotations

from attrs import field, frozen


def _tupleOfStrings(value: "tuple[str, ...] | list[str]") -> tuple[str, ...]:
    return tuple(value)


def _tupleOfParameters(
    value: "tuple[tuple[str, str | None], ...] | list[tuple[str, str | None]]",
) -> tuple[tuple[str, str | None], ...]:
    return tuple((name, parameterValue) for name, parameterValue in value)


@frozen
class Envelope:
    """
    The envelope of one message, as received by the SMTP server.

    @ivar sender: the reverse path of C{MAIL FROM}, without angle brackets;
        C{""} for the null sender of bounces.
    @ivar recipients: the forward paths of the accepted C{RCPT TO} commands,
        without angle brackets, in the order received.
    @ivar parameters: the ESMTP parameters of C{MAIL FROM} as
        C{(name, value)} pairs, C{value} being C{None} for a parameter
        without C{=} (for example C{("SMTPUTF8", None)}).
    @ivar clientAddress: the client's IP address, as text.
    @ivar clientPort: the client's TCP port.
    @ivar clientName: the client's verified host name, or C{"unknown"}.
    @ivar helo: the argument of the client's C{HELO} or C{EHLO}.
    @ivar protocol: C{"SMTP"} or C{"ESMTP"} (Postfix's C{proto=}).
    @ivar tls: whether the message arrived over TLS.
    @ivar authUser: the SASL user name if the client authenticated.
    @ivar arrival: when the message arrived, in the reactor clock's seconds.
    """

    sender: str
    recipients: tuple[str, ...] = field(converter=_tupleOfStrings)
    parameters: tuple[tuple[str, str | None], ...] = field(converter=_tupleOfParameters)
    clientAddress: str
    clientPort: int
    clientName: str
    helo: str
    protocol: str
    tls: bool
    authUser: str | None
    arrival: float
