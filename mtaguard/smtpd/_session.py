# -*- test-case-name: tests.test_smtpd_protocol -*-
"""
The state of one SMTP connection (L{Session}) and of one mail transaction
(L{Transaction}), kept apart: a transaction is replaced on RSET, HELO/EHLO,
STARTTLS and after each message, while the session lives as long as the
connection.
"""

from __future__ import annotations

from typing import Any

import attr

from ..interfaces import IQueuedMessage

#: The order in which Postfix lists commands in its "disconnect from" line.
STATISTICS_ORDER = (
    "helo",
    "ehlo",
    "xclient",
    "xforward",
    "starttls",
    "auth",
    "mail",
    "rcpt",
    "data",
    "bdat",
    "rset",
    "noop",
    "vrfy",
    "etrn",
    "quit",
    "unknown",
)


@attr.s(slots=True, auto_attribs=True)
class CommandStatistics:
    """
    Per-command counts of successes and attempts, for Postfix's disconnect
    line (C{ehlo=1 mail=1 rcpt=1/2 quit=1 commands=4/5}).
    """

    ok: dict[str, int] = attr.Factory(dict)
    total: dict[str, int] = attr.Factory(dict)

    def record(self, name: str, success: bool) -> None:
        """
        Count one command.
        """
        self.total[name] = self.total.get(name, 0) + 1
        if success:
            self.ok[name] = self.ok.get(name, 0) + 1

    def summary(self) -> str:
        """
        The statistics part of Postfix's disconnect line.
        """
        parts = []
        allOk = 0
        allTotal = 0
        for name in STATISTICS_ORDER:
            total = self.total.get(name, 0)
            if not total:
                continue
            ok = self.ok.get(name, 0)
            allOk += ok
            allTotal += total
            parts.append(f"{name}={ok}" if ok == total else f"{name}={ok}/{total}")
        parts.append(
            f"commands={allOk}" if allOk == allTotal and allTotal else f"commands={allOk}/{allTotal}"
        )
        return " ".join(parts)


@attr.s(slots=True, auto_attribs=True)
class Transaction:
    """
    One mail transaction: from MAIL to the end of the message.

    @ivar sender: the MAIL FROM address (C{""} for the null sender).
    @ivar parameters: the MAIL FROM ESMTP parameters.
    @ivar recipients: accepted recipients.
    @ivar rejected: how many RCPT commands were refused.
    @ivar declaredSize: the SIZE= value, if given.
    @ivar message: the queue file being written, from DATA/BDAT on.
    @ivar contentSize: content bytes received so far.
    @ivar tooBig: content went past C{message_size_limit}; the rest is read
        and discarded, then refused.
    """

    sender: str
    parameters: dict[str, str | None]
    recipients: list[str] = attr.Factory(list)
    rejected: int = 0
    declaredSize: int | None = None
    message: IQueuedMessage | None = None
    contentSize: int = 0
    tooBig: bool = False
    failed: bool = False
    #: Embedding: the application's delivery object and, per accepted
    #: recipient, the message factory its validateTo returned.
    delivery: Any = None
    factories: list[Any] = attr.Factory(list)
    #: Embedding: the sender as the application's C{Address}, and the
    #: C{User} objects its validateTo accepted, in order; receivedHeader is
    #: given these same objects, as twisted.mail does.
    origin: Any = None
    users: list[Any] = attr.Factory(list)


@attr.s(slots=True, auto_attribs=True)
class Session:
    """
    One SMTP connection.

    @ivar clientAddress: the peer's IP address.
    @ivar clientPort: the peer's port.
    @ivar clientName: the verified host name, or C{unknown}.
    @ivar helo: the HELO/EHLO argument, if one was accepted.
    @ivar esmtp: whether the client said EHLO.
    @ivar tls: whether the connection is encrypted.
    @ivar authUser: the SASL login name, once authenticated.
    @ivar errors: Postfix's error count (for the soft and hard limits).
    @ivar junk: junk commands (HELO, EHLO, NOOP, RSET, VRFY, ETRN) since the
        last message.
    @ivar lastCommand: the last command's name in upper case, or
        C{CONNECT}, for "timeout after X" and "lost connection after X".
    """

    clientAddress: str
    clientPort: int
    clientName: str = "unknown"
    helo: str | None = None
    esmtp: bool = False
    tls: bool = False
    authUser: str | None = None
    errors: int = 0
    junk: int = 0
    recipientsOvershoot: int = 0
    lastCommand: str = "CONNECT"
    statistics: CommandStatistics = attr.Factory(CommandStatistics)
    transaction: Transaction | None = None

    @property
    def client(self) -> str:
        """
        The client as Postfix's smtpd logs it: C{name[address]}.
        """
        return f"{self.clientName}[{self.clientAddress}]"

    @property
    def protocol(self) -> str:
        """
        C{ESMTP} or C{SMTP}, as in Postfix's C{proto=} log field.
        """
        return "ESMTP" if self.esmtp else "SMTP"
