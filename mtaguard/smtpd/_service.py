# -*- test-case-name: tests.test_service -*-
"""
The smtpd service: listens on a master.cf service's endpoints and serves
SMTP with L{SMTPServerFactory}.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .._listening import Listener
from ..config import ConfigurationError, ParameterError, ParameterView, params
from ..proxyprotocol import ProxyHeaderFactory
from ..interfaces import IQueue
from ._factory import SMTPServerFactory
from ._protocol import ServerContext

log = Logger(namespace="mtaguard.smtpd")


class SMTPServerService(Service):
    """
    One smtpd service from master.cf.

    Ports are bound in L{privilegedStartService}, so that C{twistd --uid}
    can bind port 25 as root and then drop privileges, as Postfix's master
    does.
    """

    def __init__(
        self,
        *,
        name: str,
        view: ParameterView,
        endpoints: tuple[str, ...],
        reactor: Any,
        queue: IQueue,
        processLimit: int,
        tlsCreator: Any = None,
        tlsRequired: bool = False,
        wrapperMode: bool = False,
        portal: Any = None,
        queued: Callable[[str, tuple[str, ...]], None] | None = None,
    ) -> None:
        Service.setName(self, name)
        self.endpoints = endpoints
        context = ServerContext(
            view=view,
            queue=queue,
            clock=reactor,
            serviceName=name.split("/")[0],
            tlsCreator=tlsCreator,
            tlsRequired=tlsRequired,
            wrapperMode=wrapperMode,
            portal=portal,
            queued=queued,
        )
        self.factory = SMTPServerFactory(context, processLimit=processLimit)
        self._listenFactory: Any = self.factory
        if wrapperMode:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            self._listenFactory = TLSMemoryBIOFactory(tlsCreator, False, self.factory)
        if _upstreamProxy(view, name) == "haproxy":
            # Outermost: the load balancer's header precedes everything,
            # the TLS handshake of wrapper mode included.  The factory
            # then counts and judges the proxied client, not the proxy.
            self._listenFactory = ProxyHeaderFactory(
                self._listenFactory,
                clock=reactor,
                timeout=view[params.smtpd_upstream_proxy_timeout],
                log=log,
            )
        self._listener = Listener(
            name=name,
            program="smtpd",
            endpoints=endpoints,
            reactor=reactor,
            factory=self._listenFactory,
            ports=self.factory.ports,
            log=log,
        )

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._listener.listen()

    def startService(self) -> None:
        Service.startService(self)
        self._listener.listen()

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        return self._listener.stop()


def _upstreamProxy(view: ParameterView, name: str) -> str:
    """
    C{smtpd_upstream_proxy_protocol}: empty or C{haproxy}.

    The configuration check refuses other values before any service is
    built; this guards views built some other way (a .tac file).

    @raise ConfigurationError: for any other value.
    """
    try:
        value = view[params.smtpd_upstream_proxy_protocol]
    except ParameterError as error:
        raise ConfigurationError(f"service {name}: {error}") from None
    if value not in ("", "haproxy"):
        raise ConfigurationError(
            f"service {name}: unsupported smtpd_upstream_proxy_protocol value:"
            f" {value!r} (only haproxy, or empty for none)"
        )
    return value


def processLimitOf(text: str, view: ParameterView) -> int:
    """
    A master.cf process limit column: C{-} means C{default_process_limit}.
    """
    if text == "-":
        return view[params.default_process_limit]
    return int(text)
