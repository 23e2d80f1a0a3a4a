# -*- test-case-name: tests.test_smtpd_delivery -*-
"""
Embedding: serve an application's own C{IMessageDelivery} behind every
mtaguard defense.

Twisted applications that use C{twisted.mail.smtp.SMTPFactory} hand their
mail to an L{IMessageDelivery}: C{validateFrom} at MAIL, C{validateTo} at
RCPT (returning a factory of L{IMessageSMTP}), then one C{lineReceived} per
line and C{eomReceived} at the end.  L{DeliveryQueue} presents such an object
to mtaguard's server as its queue, so the application keeps its code.

C{twisted.mail.smtp} is not imported: it resolves the host name at import
time.  L{Address} and L{User} here are compatible with the objects it
passes (C{.local}, C{.domain}, C{.dest}, C{.helo}, C{.protocol},
C{.orig}).
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList, FirstError, fail, succeed
from twisted.mail.interfaces import IMessageDelivery, IMessageDeliveryFactory, IMessageSMTP
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import IQueuedMessage


class Address:
    """
    An address as C{twisted.mail.smtp.Address} presents it: C{local} and
    C{domain} as bytes, C{bytes()} and C{str()} giving C{local@domain}.
    """

    def __init__(self, address: str) -> None:
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        self.local = local.encode("utf-8", "surrogateescape")
        self.domain = domain.encode("utf-8", "surrogateescape")
        self.addrstr = address.encode("utf-8", "surrogateescape")

    def __bytes__(self) -> bytes:
        return self.addrstr

    def __str__(self) -> str:
        return self.addrstr.decode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        return f"Address({str(self)!r})"


class User:
    """
    A recipient as C{twisted.mail.smtp.User} presents it.

    @ivar dest: the recipient L{Address}.
    @ivar helo: C{(helo argument, client address)}.
    @ivar protocol: the server protocol.
    @ivar orig: the sender L{Address}.
    """

    def __init__(self, dest: Address, helo: tuple[bytes, bytes], protocol: object, orig: Address) -> None:
        self.dest = dest
        self.helo = helo
        self.protocol = protocol
        self.orig = orig

    def __str__(self) -> str:
        return str(self.dest)


@implementer(IQueuedMessage)
class _DeliveredMessage:
    """
    Content written by the server, passed line by line to the
    application's L{IMessageSMTP} objects.
    """

    def __init__(self, queueID: str, messages: list[IMessageSMTP]) -> None:
        self.queueID = queueID
        self._messages = messages
        self._partial = b""
        self._finished = False

    def registerProducer(self, producer: object, streaming: bool) -> None:
        # lineReceived is synchronous: nothing ever backs up here.
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\r\n")
        self._partial = lines.pop()
        for message in self._messages:
            # One C-level loop per message: a 100 KB message has over a
            # thousand lines, and a Python loop per line costs more than
            # the rest of the DATA path.
            deque(map(message.lineReceived, lines), maxlen=0)

    def commit(self) -> Deferred[str]:
        self._finished = True
        if self._partial:
            self.write(b"\r\n")
        outcomes = []
        for message in self._messages:
            try:
                outcomes.append(message.eomReceived())
            except Exception:
                outcomes.append(fail())
        if all(isinstance(o, Deferred) and o.called and not isinstance(o.result, Failure) for o in outcomes):
            # The usual case: every message is already stored, and a fired
            # Deferred without a failure leaves nothing unhandled.
            return succeed(self.queueID)
        results = DeferredList(
            [o if isinstance(o, Deferred) else succeed(o) for o in outcomes],
            fireOnOneErrback=True,
            consumeErrors=True,
        )

        def unwrap(failure: Failure) -> Failure:
            # DeferredList wraps the first error; give the caller the cause.
            error = failure.value
            if isinstance(error, FirstError):
                return error.subFailure
            return failure

        return results.addCallbacks(lambda _: self.queueID, unwrap)

    def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        for message in self._messages:
            message.connectionLost()


class DeliveryQueue:
    """
    An application's L{IMessageDelivery} (or L{IMessageDeliveryFactory},
    asked for a new delivery object per message) in the place of mtaguard's
    durable queue.  Durability is then the application's business: its
    C{eomReceived} Deferred decides when the client gets its 250.
    """

    def __init__(
        self,
        delivery: IMessageDelivery | None = None,
        deliveryFactory: IMessageDeliveryFactory | None = None,
    ) -> None:
        if (delivery is None) == (deliveryFactory is None):
            raise ValueError("give exactly one of delivery and deliveryFactory")
        self._delivery = delivery
        self._factory = deliveryFactory
        self._ids = itertools.count(1)

    def deliveryForTransaction(self) -> IMessageDelivery:
        """
        The delivery object for one transaction.
        """
        if self._delivery is not None:
            return self._delivery
        assert self._factory is not None
        # IMessageDeliveryFactory's methods are not annotated.
        delivery: IMessageDelivery = self._factory.getMessageDelivery()
        return delivery

    def newMessage(self, factories: list[Callable[[], IMessageSMTP]]) -> IQueuedMessage:
        """
        Start a message for the recipients whose C{validateTo} returned
        C{factories}.
        """
        return _DeliveredMessage(f"E{next(self._ids):08d}", [factory() for factory in factories])
