# -*- test-case-name: tests.test_service -*-
"""
Listening on a master.cf service's endpoints: shared by the services that
face the network (smtpd, postscreen).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure


class Listener:
    """
    Binds one factory on a service's endpoint descriptions (once, however
    often L{listen} is called), and stops listening on request.

    A port that cannot be bound stops the reactor: a front door that cannot
    open its port must not pretend to run.

    @ivar ports: the bound ports, shared with whoever pauses accepting
        (the smtpd factory under its process limit).
    """

    def __init__(
        self,
        *,
        name: str,
        program: str,
        endpoints: tuple[str, ...],
        reactor: Any,
        factory: Any,
        ports: list[IListeningPort],
        log: Logger,
    ) -> None:
        self.name = name
        self.program = program
        self.endpoints = endpoints
        self.ports = ports
        self._reactor = reactor
        self._factory = factory
        self._log = log
        self._listening = False

    def listen(self) -> None:
        """
        Bind every endpoint, unless already done.
        """
        if self._listening:
            return
        self._listening = True
        for description in self.endpoints:
            endpoint = serverFromString(self._reactor, description)
            listening: Deferred[IListeningPort] = endpoint.listen(self._factory)
            listening.addCallbacks(self._listened, self._failed, errbackArgs=(description,))

    def _listened(self, port: IListeningPort) -> None:
        self.ports.append(port)
        address = port.getHost()
        self._log.info(
            "{program} service {name} listening on {host}:{port}",
            program=self.program,
            name=self.name,
            host=getattr(address, "host", "?"),
            port=getattr(address, "port", "?"),
        )

    def _failed(self, failure: Failure, description: str) -> None:
        self._log.critical(
            "fatal: service {name}: cannot listen on {endpoint}: {error}",
            name=self.name,
            endpoint=description,
            error=failure.getErrorMessage(),
        )
        if self._reactor.running:
            self._reactor.stop()
        else:
            self._reactor.callWhenRunning(self._reactor.stop)

    def stop(self) -> Deferred[Any]:
        """
        Stop listening on every bound port; fires when all are closed.
        """
        ports = list(self.ports)
        del self.ports[:]
        self._listening = False
        return DeferredList([Deferred.fromCoroutine(_stop(port)) for port in ports])


async def _stop(port: IListeningPort) -> None:
    result = port.stopListening()
    if isinstance(result, Deferred):
        await result
