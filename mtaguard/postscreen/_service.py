# -*- test-case-name: tests.test_postscreen_service -*-
"""
The postscreen service: listens on a master.cf service's endpoints, screens
each client with L{PostscreenFactory}, hands clean ones to the smtpd
factory of the C{pass} service (C{smtpd_service_name}), and cleans the
verdict cache periodically.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from .._listening import Listener
from ..config import ConfigurationError, ParameterView, params
from ..resolver import SystemResolver
from ..smtpd._policy import matchNetworks, parseNetworks
from ._cache import CacheCleaner, cacheFromParameter
from ._checks import CheckResources, configureChecks, discoverChecks
from ._factory import PostscreenFactory

log = Logger(namespace="mtaguard.postscreen")


def _readFile(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read()


class PostscreenService(MultiService):
    """
    One postscreen service from master.cf.

    Ports are bound in L{privilegedStartService}, so that C{twistd --uid}
    can bind port 25 as root and then drop privileges.
    """

    def __init__(
        self,
        *,
        name: str,
        endpoints: tuple[str, ...],
        reactor: Any,
        factory: PostscreenFactory,
        listenFactory: Any = None,
        resolver: Optional[SystemResolver] = None,
    ) -> None:
        MultiService.__init__(self)
        self._resolver = resolver
        Service.setName(self, name)
        self.endpoints = endpoints
        self.factory = factory
        self.ports: list[IListeningPort] = []
        self._listener = Listener(
            name=name,
            program="postscreen",
            endpoints=endpoints,
            reactor=reactor,
            factory=listenFactory if listenFactory is not None else factory,
            ports=self.ports,
            log=log,
        )

    def privilegedStartService(self) -> None:
        MultiService.privilegedStartService(self)
        self._listener.listen()

    def startService(self) -> None:
        MultiService.startService(self)
        self._listener.listen()

    def stopService(self) -> Deferred[Any]:
        stopping = MultiService.stopService(self)
        if self._resolver is not None:
            self._resolver.close()
        waits = [self._listener.stop()]
        if isinstance(stopping, Deferred):
            waits.append(stopping)
        cache = self.factory.cache
        if cache is None:
            return DeferredList(waits)
        # Close the cache only after the writes in progress are done.
        flushed = self.factory.flush()
        flushed.addCallback(lambda _: cache.close())
        waits.append(flushed)
        return DeferredList(waits)


def buildPostscreen(
    *,
    name: str,
    view: ParameterView,
    endpoints: tuple[str, ...],
    reactor: Any,
    passFactory: Callable[[], Any],
    dataDirectory: str,
    tlsCreator: Any = None,
    checks: Optional[list[Any]] = None,
) -> PostscreenService:
    """
    A postscreen service for one master.cf entry.

    @param passFactory: returns the smtpd factory clean clients go to
        (looked up when the first client passes, so the C{pass} service may
        come later in master.cf); raises L{LookupError} if there is none.
    @param checks: the check plugins; by default those
        L{discoverChecks} finds.
    @raise ConfigurationError: for a bad parameter value.
    """
    try:
        networks = parseNetworks(view[params.mynetworks])
    except ValueError as error:
        raise ConfigurationError(f"mynetworks: {error}") from None

    def isMyNetwork(address: str) -> bool:
        return matchNetworks(networks, address)

    resolver = SystemResolver.fromView(view, reactor) if view[params.postscreen_dnsbl_sites] else None
    resources = CheckResources(reactor=reactor, resolver=resolver, readFile=_readFile, isMyNetwork=isMyNetwork)
    configured = configureChecks(discoverChecks() if checks is None else checks, view, resources)
    cache = cacheFromParameter(view, reactor=reactor, dataDirectory=dataDirectory)
    replyMap = _replyMap(view)
    factory = PostscreenFactory(
        view=view,
        clock=reactor,
        checks=configured,
        passFactory=passFactory,
        cache=cache,
        tlsCreator=tlsCreator,
        isMyNetwork=isMyNetwork,
        dnsblReplyMap=replyMap,
    )
    listenFactory: Any = factory
    if view[params.postscreen_upstream_proxy_protocol]:
        listenFactory = _proxied(view, reactor, factory)
    service = PostscreenService(
        name=name,
        endpoints=endpoints,
        reactor=reactor,
        factory=factory,
        listenFactory=listenFactory,
        resolver=resolver,
    )
    if cache is not None:
        interval = view[params.postscreen_cache_cleanup_interval]
        MultiService.addService(service, CacheCleaner(cache, clock=reactor, interval=interval))
    return service


def _replyMap(view: ParameterView) -> Any:
    from ..client._tables import TableError, TableList

    tables = view[params.postscreen_dnsbl_reply_map]
    if not tables:
        return None
    try:
        return TableList.fromParameter(tables, parameter="postscreen_dnsbl_reply_map")
    except TableError as error:
        raise ConfigurationError(str(error)) from None


def _proxied(view: ParameterView, reactor: Any, factory: PostscreenFactory) -> Any:
    protocol = view[params.postscreen_upstream_proxy_protocol]
    if protocol != "haproxy":
        raise ConfigurationError(
            f"postscreen_upstream_proxy_protocol: unsupported protocol {protocol!r} (use haproxy or nothing)"
        )
    from ..proxyprotocol import ProxyHeaderFactory

    return ProxyHeaderFactory(
        factory, clock=reactor, timeout=float(view[params.postscreen_upstream_proxy_timeout]), log=log
    )
