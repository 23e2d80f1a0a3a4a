# -*- test-case-name: tests.test_smtpd_factory -*-
"""
The SMTP server factory: per-client connection limits and stress mode.

Postfix's master(8) notices when a service reaches its process limit and
starts new smtpd processes with C{stress=yes}; anvil(8) counts connections
per client.  mtaguard does both in the factory: it counts sessions, switches
the service's L{ParameterView} into stress mode at the limit, stops
accepting (new clients wait in the listen backlog, as with Postfix), and
refuses a client over its per-address limits with Postfix's reply.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Deque, Iterable, Optional

from twisted.internet.interfaces import IAddress, IListeningPort, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from ..config import params
from ._policy import matchNetworks, parseNetworks
from ._protocol import ServerContext, SMTPServerProtocol
from ..smtp import _replies as replies

log = Logger(namespace="mtaguard.smtpd")

#: Postfix keeps a service in stress mode until it has stayed below its
#: process limit for this long (master(8): 1000 seconds).
STRESS_PERSISTENCE = 1000.0


class _Refused(Protocol):
    """
    A connection refused at accept time: one 421 reply, then hang up.
    """

    def __init__(self, reply: bytes) -> None:
        self._reply = reply

    def connectionMade(self) -> None:
        # Protocol.transport is Optional until makeConnection, which has
        # run by the time connectionMade is called.
        self.transport.write(self._reply)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class SMTPServerFactory(Factory):
    """
    Builds L{SMTPServerProtocol}s for one master.cf service.

    @ivar processLimit: the service's master.cf process limit (0: none):
        the number of concurrent sessions at which stress mode starts and
        accepting stops.
    """

    protocol = SMTPServerProtocol

    def __init__(self, context: ServerContext, *, processLimit: int) -> None:
        self.context = context
        self.processLimit = processLimit
        self.ports: list[IListeningPort] = []
        self.sessions = 0
        self._perClient: dict[str, int] = collections.Counter()
        self._arrivals: dict[str, Deque[float]] = {}
        self._stressUntil: float | None = None
        self._stressCheck: Any = None
        self._accepting = True
        self._exceptions = parseNetworks(
            context.view[params.smtpd_client_event_limit_exceptions]
        )

    @classmethod
    def forDelivery(
        cls,
        delivery: Any = None,
        *,
        deliveryFactory: Any = None,
        view: Any = None,
        clock: IReactorTime,
        processLimit: int = 0,
        tlsCreator: Any = None,
    ) -> "SMTPServerFactory":
        """
        A factory that hands mail to an application's C{IMessageDelivery}
        (or C{IMessageDeliveryFactory}), the way C{twisted.mail}'s
        C{SMTPFactory} does, with every mtaguard defense in front of it.

        @param view: the parameters; by default those of the built-in
            configuration (Postfix's defaults at compatibility level 3.6).
        """
        from ..config import builtinConfiguration
        from ._delivery import DeliveryQueue

        if view is None:
            view = builtinConfiguration().view()
        context = ServerContext(
            view=view,
            delivery=DeliveryQueue(delivery, deliveryFactory),
            clock=clock,
            tlsCreator=tlsCreator,
        )
        return cls(context, processLimit=processLimit)

    @property
    def _clock(self) -> IReactorTime:
        return self.context.clock

    def buildProtocol(self, addr: IAddress | None) -> Optional[Protocol]:
        view = self.context.view
        host = getattr(addr, "host", "")
        reply = self._limitReply(host)
        if reply is not None:
            refused = _Refused(reply)
            refused.factory = self
            return refused
        self.sessions += 1
        self._perClient[host] += 1
        self._checkStress()
        protocol = SMTPServerProtocol(self.context)
        protocol.factory = self
        # The protocol gives the count back when its connection ends; a
        # string per session rather than a closure (held by every idle
        # connection, so its size counts).
        protocol.countedHost = host
        return protocol

    # -- per-client limits ------------------------------------------------------

    def _limitReply(self, host: str) -> bytes | None:
        view = self.context.view
        if matchNetworks(self._exceptions, host):
            return None
        hostname = view[params.myhostname]
        countLimit = view[params.smtpd_client_connection_count_limit]
        if countLimit and self._perClient[host] + 1 > countLimit:
            log.warn(
                "warning: Connection concurrency limit exceeded: {count} from"
                " unknown[{host}] for service {service}",
                count=self._perClient[host] + 1,
                host=host,
                service=self.context.serviceName,
            )
            return replies.TOO_MANY_CONNECTIONS.format(
                myhostname=hostname, address=host
            ).toBytes()
        rateLimit = view[params.smtpd_client_connection_rate_limit]
        if rateLimit:
            now = self._clock.seconds()
            window = view[params.anvil_rate_time_unit]
            arrivals = self._arrivals.setdefault(host, collections.deque())
            while arrivals and arrivals[0] <= now - window:
                arrivals.popleft()
            if len(arrivals) >= rateLimit:
                log.warn(
                    "warning: Connection rate limit exceeded: {count} from"
                    " unknown[{host}] for service {service}",
                    count=len(arrivals) + 1,
                    host=host,
                    service=self.context.serviceName,
                )
                return replies.TOO_MANY_CONNECTIONS.format(
                    myhostname=hostname, address=host
                ).toBytes()
            # Bounded: at most rateLimit arrivals are kept per client.
            arrivals.append(now)
        return None

    def sessionEnded(self, host: str) -> None:
        """
        A session counted by L{buildProtocol} for client C{host} ended.
        """
        self.sessions -= 1
        self._perClient[host] -= 1
        if self._perClient[host] <= 0:
            del self._perClient[host]
            arrivals = self._arrivals.get(host)
            if arrivals is not None and not arrivals:
                del self._arrivals[host]
        self._checkStress()

    # -- stress ---------------------------------------------------------------

    def _checkStress(self) -> None:
        if not self.processLimit:
            return
        now = self._clock.seconds()
        view = self.context.view
        atLimit = self.sessions >= self.processLimit
        if atLimit:
            if not view.stress:
                log.warn(
                    'warning: service "{service}" has reached its process limit'
                    ' "{limit}": new clients may experience noticeable delays;'
                    " entering stress mode",
                    service=self.context.serviceName,
                    limit=self.processLimit,
                )
                view.stress = True
            self._stressUntil = now + STRESS_PERSISTENCE
            self._setAccepting(False)
        else:
            self._setAccepting(True)
            if view.stress and self._stressUntil is not None and now >= self._stressUntil:
                view.stress = False
                self._stressUntil = None
                log.info(
                    'service "{service}": leaving stress mode',
                    service=self.context.serviceName,
                )
            elif view.stress and self._stressUntil is not None and self._stressCheck is None:
                self._stressCheck = self._clock.callLater(
                    self._stressUntil - now, self._stressTimer
                )

    def _stressTimer(self) -> None:
        self._stressCheck = None
        self._checkStress()

    def _setAccepting(self, accepting: bool) -> None:
        if accepting == self._accepting:
            return
        self._accepting = accepting
        for port in self.ports:
            # Sessions beyond the limit wait in the kernel's listen backlog.
            # IListeningPort does not declare startReading/stopReading;
            # the ports that endpoints listen on (tcp.Port) are
            # FileDescriptors, which have them.
            if accepting:
                port.startReading()  # type: ignore[attr-defined]
            else:
                port.stopReading()  # type: ignore[attr-defined]
