# -*- test-case-name: tests.test_postscreen_protocol -*-
"""
The postscreen factory: what one postscreen service shares between its
connections.

It counts connections (per client address, being screened, handed off),
refuses clients over the limits with Postfix's replies, enters and leaves
stress mode at 90% and 70% of C{postscreen_pre_queue_limit} as Postfix's
postscreen does, keeps the per-address verdicts of clients that have
sessions open, and hands clean clients to the smtpd factory of the
C{pass} service.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Optional

import attr
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config import ConfigurationError, ParameterView, params
from ..interfaces import IVerdictCache
from ..smtpd._policy import matchNetworks, parseNetworks
from ._access import Access
from ._cache import Verdicts
from ._checks import AFTER_GREETING, ConfiguredChecks, ClientInfo
from ._early import EarlySettings, EnterDummyEngine, ExtraTest
from ._protocol import (
    SERVER_PORTS_BUSY_LOG_FORMAT,
    SERVER_PORTS_BUSY_REPLY,
    TOO_MANY_CONNECTIONS_LOG_FORMAT,
    TOO_MANY_CONNECTIONS_REPLY,
    PostscreenProtocol,
)

log = Logger(namespace="mtaguard.postscreen")

#: How many clients' verdicts are kept in memory in front of the cache: a
#: client seen recently is judged without a round trip to the cache (whose
#: writes are asynchronous, so a reconnecting client could otherwise miss
#: its own verdict).
RECENT_LIMIT = 50_000

STRESS_ENTER_LOG_FORMAT = "entering STRESS mode with {count} connections"
STRESS_LEAVE_LOG_FORMAT = "leaving STRESS mode with {count} connections"


@attr.s(slots=True)
class _Client:
    sessions: int = attr.ib(default=0)
    verdicts: Optional[Verdicts] = attr.ib(default=None)
    passNew: int = attr.ib(default=0)


class PostscreenFactory(Factory):
    """
    Builds L{PostscreenProtocol}s for one postscreen service.

    @ivar screening: connections being screened (not yet handed off or
        closed).
    """

    def __init__(
        self,
        *,
        view: ParameterView,
        clock: IReactorTime,
        checks: ConfiguredChecks,
        passFactory: Callable[[], Any],
        cache: Optional[IVerdictCache] = None,
        tlsCreator: Any = None,
        isMyNetwork: Callable[[str], bool] = lambda address: False,
        dnsblReplyMap: Any = None,
    ) -> None:
        self.view = view
        self.clock = clock
        self.checks = checks
        self.cache = cache
        self.tlsCreator = tlsCreator
        self._passFactory = passFactory
        self._isMyNetwork = isMyNetwork
        self._replyMap = dnsblReplyMap
        self.screening = 0
        self._clients: dict[str, _Client] = collections.defaultdict(_Client)
        self._settings: dict[bool, EarlySettings] = {}
        self._engineSettings: dict[bool, Any] = {}
        self._accessDecisions: dict[str, Access] = {}
        self._recent: collections.OrderedDict[str, Verdicts] = collections.OrderedDict()
        self._lookups: dict[str, list[Deferred[Optional[Verdicts]]]] = {}
        self._writes: set[Deferred[None]] = set()
        interfaces = view[params.postscreen_allowlist_interfaces]
        self._allInterfaces = any(item.lower() == "static:all" for item in interfaces)
        try:
            self._interfaces = () if self._allInterfaces else parseNetworks(interfaces)
        except ValueError as error:
            raise ConfigurationError(f"postscreen_allowlist_interfaces: {error}") from None
        limit = view[params.postscreen_pre_queue_limit]
        self._hiwat = int(0.9 * limit)
        self._lowat = int(0.7 * limit)

    @property
    def dnsbl(self) -> Any:
        """
        The built-in DNSBL test's sites and lookup, or L{None} when off.
        """
        check = self.checks.builtins.get("dnsbl")
        return None if check is None else check.detail

    # -- settings ------------------------------------------------------------

    def earlySettings(self) -> EarlySettings:
        """
        The before-220 settings as they are now (normal or stress mode).
        """
        stress = self.view.stress
        settings = self._settings.get(stress)
        if settings is None:
            settings = EarlySettings.fromView(self.view, dnsblReplyMap=self._replyMap)
            builtins = self.checks.builtins
            # A built-in test whose plugin is absent does not run.
            settings = attr.evolve(
                settings,
                greetBanner=settings.greetBanner if "pregreet" in builtins else "",
                dnsblEnabled=settings.dnsblEnabled and "dnsbl" in builtins,
                pipeliningEnabled=settings.pipeliningEnabled and "pipelining" in builtins,
                nonSmtpCommandEnabled=settings.nonSmtpCommandEnabled and "non_smtp_command" in builtins,
                bareNewlineEnabled=settings.bareNewlineEnabled and "bare_newline" in builtins,
                extras=tuple(
                    [
                        *(
                            ExtraTest(name, str(check.action), float(check.ttl))
                            for name, check in sorted(self.checks.before.items())
                        ),
                        *(
                            ExtraTest(name, str(check.action), float(check.ttl), afterGreeting=True)
                            for name, check in sorted(self.checks.after.items())
                        ),
                    ]
                ),
            )
            self._settings[stress] = settings
        return settings

    def newEngine(self, entry: EnterDummyEngine, client: ClientInfo, start: float) -> Any:
        """
        The dummy SMTP engine for a client that does not go to smtpd now.
        """
        from ._engine import DummyEngine, EngineSettings

        stress = self.view.stress
        settings = self._engineSettings.get(stress)
        if settings is None:
            settings = self._engineSettings[stress] = EngineSettings.fromView(
                self.view, self.earlySettings(), tlsAvailable=self.tlsCreator is not None
            )
        return DummyEngine(
            settings,
            entry,
            clientAddress=client.address,
            clientPort=client.port,
            start=start,
            checks=self.checks.after,
            client=client,
        )

    # -- decisions -------------------------------------------------------------

    def access(self, address: str) -> Access:
        """
        The permanent access list's decision for C{address}.
        """
        check = self.checks.builtins.get("access")
        if check is None:
            return Access.DUNNO
        # The list and its tables are fixed while the service runs, so a
        # decision holds; clients come back, and parsing addresses is not
        # free.
        decision = self._accessDecisions.get(address)
        if decision is None:
            decision = check.detail.decide(address, self._isMyNetwork)
            if len(self._accessDecisions) >= RECENT_LIMIT:
                self._accessDecisions.clear()
            self._accessDecisions[address] = decision
        return decision

    def allowlistVeto(self, serverAddress: str) -> bool:
        """
        Whether clients on C{serverAddress} can never be allowlisted
        (C{postscreen_allowlist_interfaces}).
        """
        if self._allInterfaces:
            return False
        return not matchNetworks(self._interfaces, serverAddress)

    def refusal(self, protocol: PostscreenProtocol) -> Optional[tuple[str, bytes]]:
        """
        Steps 2 and 3 of Postfix's order: the per-client and post-queue
        limits.  The new session is already counted.

        @return: the log format and reply for a refused client, or L{None}.
        """
        view = self.view
        address = protocol.client.address
        limit = view[params.postscreen_client_connection_count_limit]
        if limit > 0 and self._clients[address].sessions > limit:
            return TOO_MANY_CONNECTIONS_LOG_FORMAT, TOO_MANY_CONNECTIONS_REPLY
        postLimit = view[params.postscreen_post_queue_limit]
        if postLimit > 0 and self.waitingForSmtpd() >= postLimit:
            return SERVER_PORTS_BUSY_LOG_FORMAT, SERVER_PORTS_BUSY_REPLY
        return None

    def waitingForSmtpd(self) -> int:
        """
        Handed-off clients beyond smtpd's process limit: the ones a Postfix
        smtpd process would not have picked up yet.
        """
        try:
            smtpd = self._passFactory()
        except LookupError:
            return 0
        limit = getattr(smtpd, "processLimit", 0)
        if not limit:
            return 0
        return max(0, int(getattr(smtpd, "sessions", 0)) - limit)

    def screeningPortsBusy(self) -> bool:
        """
        Whether the pre-queue limit is reached (the new session counted).
        """
        return self.screening >= self.view[params.postscreen_pre_queue_limit]

    # -- the verdict cache ---------------------------------------------------

    def sharedVerdicts(self, address: str) -> Optional[Verdicts]:
        """
        The verdicts of the client's other open sessions (Postfix's
        per-client state), or L{None}.
        """
        client = self._clients.get(address)
        return None if client is None else client.verdicts

    def recentVerdicts(self, address: str) -> Optional[Verdicts]:
        """
        The client's verdicts from a recent session here (the memory in
        front of the cache), or L{None}.
        """
        if self.cache is None:
            return None
        recent = self._recent.get(address)
        if recent is not None:
            self._recent.move_to_end(address)
        return recent

    def verdictsFor(self, address: str) -> Deferred[Optional[Verdicts]]:
        """
        The cache's entry for the client.  Concurrent sessions of one
        client share one cache lookup.  Never fails: the cache degrades.
        """
        if self.cache is None:
            return succeed(None)
        waiting: Deferred[Optional[Verdicts]] = Deferred()
        pending = self._lookups.get(address)
        if pending is not None:
            pending.append(waiting)
            return waiting
        self._lookups[address] = [waiting]
        looking: Deferred[Optional[Verdicts]] = self.cache.get(address)

        def unavailable(failure: Failure) -> None:
            log.warn(
                "warning: postscreen cache lookup for {address} failed: {error}",
                address=address,
                error=failure.getErrorMessage(),
            )
            return None

        def answered(verdicts: Optional[Verdicts]) -> None:
            if verdicts is not None:
                self._remember(address, verdicts)
            for d in self._lookups.pop(address, []):
                d.callback(verdicts)

        looking.addErrback(unavailable).addCallback(answered)
        return waiting

    def firstPass(self, address: str) -> bool:
        """
        Whether a session of the client that passed every test is the first
        of its overlapping sessions to do so (Postfix's C{pass_new_count}):
        only that one logs C{PASS NEW}, the others C{PASS OLD}.
        """
        client = self._clients.get(address)
        if client is None:
            return True
        client.passNew += 1
        return client.passNew == 1

    def _remember(self, address: str, verdicts: Verdicts) -> None:
        client = self._clients.get(address)
        if client is not None:
            client.verdicts = verdicts
        if self.cache is not None:
            # Bounded: the least recently used entries go first.
            self._recent[address] = verdicts
            self._recent.move_to_end(address)
            while len(self._recent) > RECENT_LIMIT:
                self._recent.popitem(last=False)

    def storeVerdicts(self, address: str, verdicts: Verdicts) -> None:
        """
        Remember C{verdicts} for the client's other and later sessions and
        store them in the cache.
        """
        known = self._recent.get(address)
        self._remember(address, verdicts)
        if self.cache is None or known == verdicts:
            # Nothing new to store (a client that keeps coming back with
            # the same verdicts, e.g. zombies hanging up in the engine).
            return

        def failed(failure: Failure) -> None:
            log.warn(
                "warning: postscreen cache update for {address} failed: {error}",
                address=address,
                error=failure.getErrorMessage(),
            )

        writing = self.cache.put(address, verdicts).addErrback(failed)
        if not writing.called:
            self._writes.add(writing)
            writing.addBoth(self._written, writing)

    def _written(self, result: object, writing: Deferred[None]) -> object:
        self._writes.discard(writing)
        return result

    def flush(self) -> Deferred[object]:
        """
        Fires once the cache writes in progress are done (each is bounded
        by the cache's timeout): a service that stops waits for them.
        """
        return DeferredList(list(self._writes)).addCallback(lambda _: None)

    # -- connections -----------------------------------------------------------

    def buildProtocol(self, addr: IAddress | None) -> Optional[Protocol]:
        protocol = PostscreenProtocol(self)
        return protocol

    def sessionStarted(self, protocol: PostscreenProtocol) -> None:
        """
        Count a new connection; enter stress mode at 90% of the pre-queue
        limit.
        """
        self.screening += 1
        self._clients[protocol.client.address].sessions += 1
        if not self.view.stress and self.screening >= self._hiwat:
            self.view.stress = True
            log.warn(STRESS_ENTER_LOG_FORMAT, count=self.screening)

    def sessionEnded(self, protocol: PostscreenProtocol) -> None:
        """
        A connection was handed off or closed; leave stress mode at 70% of
        the pre-queue limit.
        """
        self.screening -= 1
        address = protocol.client.address
        client = self._clients.get(address)
        if client is not None:
            client.sessions -= 1
            if client.sessions <= 0:
                del self._clients[address]
        if self.view.stress and self.screening <= self._lowat:
            self.view.stress = False
            log.info(STRESS_LEAVE_LOG_FORMAT, count=self.screening)

    def handOff(self, protocol: PostscreenProtocol, addr: IAddress) -> Protocol:
        """
        The smtpd protocol that takes the client's connection over.
        """
        smtpd = self._passFactory()
        inner: Protocol = smtpd.buildProtocol(addr)
        return inner


__all__ = ["PostscreenFactory", "AFTER_GREETING"]
