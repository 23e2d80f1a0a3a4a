# -*- test-case-name: tests.test_service -*-
"""
Build mtaguard's service tree from a configuration: one child service per
master.cf service that mtaguard runs.

Postfix splits its work over many daemons that master(8) starts; mtaguard
does the work of the internal ones (queue manager, cleanup, bounce, ...)
inside its own process, so their master.cf lines are accepted and noted, and
only the services that face the network or deliver mail become children.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Iterable

from twisted.application.service import IService, MultiService, Service
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized

from .config import Configuration, ConfigurationError, ParameterView, ServiceEntry, params
from .config._mastercf import inetAddress
from .resolver import SystemResolver

log = Logger()

#: Postfix daemons whose work mtaguard does in-process: their master.cf lines
#: are accepted as they are.
INTERNAL_PROGRAMS = frozenset(
    {
        "anvil",
        "bounce",
        "cleanup",
        "discard",
        "dnsblog",
        "error",
        "flush",
        "oqmgr",
        "pickup",
        "postlogd",
        "proxymap",
        "qmgr",
        "scache",
        "showq",
        "tlsmgr",
        "tlsproxy",
        "trivial-rewrite",
        "verify",
    }
)


#: mtaguard's queue lives in this subdirectory of queue_directory.
QUEUE_SUBDIRECTORY = "mtaguard"


class _ResolverService(Service):
    """
    Closes the shared DNS resolver when the service tree stops, so that it
    no longer re-reads C{/etc/resolv.conf}.
    """

    name = "resolver"

    def __init__(self, resolver: SystemResolver) -> None:
        self.resolver = resolver

    def stopService(self) -> None:
        self.resolver.close()
        Service.stopService(self)


class SharedServices:
    """
    What the services of one mtaguard process share: the reactor, the
    durable queue and the local delivery agent, created on first use and
    started before any listener.
    """

    def __init__(self, configuration: Configuration, top: MultiService, reactor: Any) -> None:
        self.configuration = configuration
        self.reactor = reactor
        self._top = top
        self._queue: Any = None
        self._local: Any = None
        self._manager: Any = None
        self._control: Any = None
        #: The smtpd factories by master.cf service name, for postscreen's
        #: hand-off to its pass service.
        self.smtpdFactories: dict[str, Any] = {}
        #: (postscreen service, the smtpd service it hands clients to).
        self.postscreenPasses: list[tuple[str, str]] = []

    def smtpdFactory(self, name: str) -> Any:
        """
        The smtpd factory of the master.cf service C{name}.

        @raise LookupError: if no smtpd service has that name.
        """
        try:
            return self.smtpdFactories[name]
        except KeyError:
            raise LookupError(f"no smtpd service named {name!r} in master.cf") from None

    def queue(self) -> Any:
        """
        The queue in C{queue_directory}, with local delivery into Maildirs
        under C{data_directory}.
        """
        if self._queue is None:
            from .queue import FileSystem, QueueStore
            from .queue._store import linuxSyncfs
            from .queue._local import LocalDeliveryManager
            from .queue._maildir import MaildirAgent
            from .smtpd._policy import RelayPolicy

            view = self.configuration.view()
            # A subdirectory of its own: queue_directory is often shared
            # with a Postfix on the same host (its default is Postfix's
            # spool), whose incoming/ and active/ must never be touched.
            directory = os.path.join(view[params.queue_directory], QUEUE_SUBDIRECTORY)
            fileSystem = FileSystem()
            if view[params.mtaguard_queue_sync] == "syncfs":
                fileSystem.syncFileSystem = linuxSyncfs()
                if fileSystem.syncFileSystem is None:
                    raise ConfigurationError(
                        "mtaguard_queue_sync = syncfs: syncfs(2) is not available here"
                    )
            self._queue = QueueStore(directory, reactor=self.reactor, fileSystem=fileSystem)
            self._queue.setName("queue")
            self._queue.setServiceParent(self._top)
            agent = MaildirAgent(view[params.data_directory], hostname=view[params.myhostname])
            self._local = LocalDeliveryManager(
                self._queue,
                agent,
                isLocal=RelayPolicy(view).isLocal,
                reactor=self.reactor,
                log=Logger(namespace="mtaguard.local"),
                worker=self._queue.worker,
            )
            self._local.setName("local")
            self._local.setServiceParent(self._top)
        return self._queue

    def queued(self, queueID: str, recipients: tuple[str, ...]) -> None:
        """
        A message was committed: deliver what is local (a message with no
        local recipient is not even read back).
        """
        if self._local is not None:
            self._local.queued(queueID, recipients)
        if self._manager is not None:
            self._manager.queued(queueID, recipients)

    def queueManager(self, view: ParameterView) -> Any:
        """
        The queue manager that delivers non-local recipients with the SMTP
        client (one for every C{smtp} transport: they share the queue),
        with the parameters of the first C{smtp} service and the system's
        DNS resolver.

        @raise ConfigurationError: a next hop or C{transport_maps} table in
            the configuration is unusable.
        """
        if self._manager is None:
            from .client import Router, RoutingError, TableError
            from .queue import QueueManager
            from .smtpd._policy import RelayPolicy

            store = self.queue()
            resolver = SystemResolver.fromView(view, self.reactor)
            self._top.addService(_ResolverService(resolver))
            try:
                router = Router.fromView(view)
            except (RoutingError, TableError) as error:
                raise ConfigurationError(str(error)) from None
            self._manager = QueueManager(
                store,
                view=view,
                router=router,
                resolver=resolver,
                isLocal=RelayPolicy(view).isLocal,
                clock=self.reactor,
                log=Logger(namespace="mtaguard.smtp"),
                worker=store.worker,
                # A notification for a local sender goes to its Maildir.
                bounceQueued=self.queued,
            )
            self._manager.setName("qmgr")
            self._manager.setServiceParent(self._top)
            self._control = self.controlService(store.directory, self._manager)
            self._control.setServiceParent(self._top)
        return self._manager

    def controlService(self, queueDirectory: str, manager: Any) -> Any:
        """
        The control socket that C{mtaguard-postqueue -f/-i} and
        C{mtaguard-postsuper -r/-d} talk to, answered by C{manager}; in
        C{<queue_directory>/mtaguard/private/control}.

        @raise ConfigurationError: if that path is too long for a UNIX
            socket address (so the service does not start without it), or
            another service answers on it.
        """
        from .control._protocol import SocketPathTooLong, controlSocketPath
        from .control._server import ControlService, serviceAnswers

        try:
            path = controlSocketPath(queueDirectory)
        except SocketPathTooLong as error:
            raise ConfigurationError(str(error)) from None
        if serviceAnswers(path):
            # Checked before any port is bound: two services delivering
            # from one queue would send every message twice.
            raise ConfigurationError(
                f"another mtaguard service is running on the queue in {queueDirectory}"
                f" (it answers on {path})"
            )
        control = ControlService(path, manager, reactor=self.reactor, log=Logger(namespace="mtaguard.control"))
        Service.setName(control, "control")
        return control


#: Builds the service for one master.cf entry of a runnable program.
ProgramBuilder = Callable[[ServiceEntry, ParameterView, "tuple[str, ...]", SharedServices], IService]


def _buildSmtpd(
    entry: ServiceEntry, view: ParameterView, endpoints: tuple[str, ...], shared: SharedServices
) -> IService:
    from .smtpd._service import SMTPServerService, processLimitOf
    from .tls import TLSConfigurationError, serverTLS

    try:
        tls = serverTLS(view, reactor=shared.reactor)
    except TLSConfigurationError as error:
        raise ConfigurationError(str(error)) from None
    for line in tls.warnings:
        log.warn("{line}", line=line)
    portal = None
    if view[params.smtpd_sasl_auth_enable]:
        from .smtpd._auth import passwordFilePortal

        passwordFile = view[params.mtaguard_sasl_password_file]
        if passwordFile:
            portal = passwordFilePortal(passwordFile)
        else:
            log.warn(
                "warning: service {service}: smtpd_sasl_auth_enable = yes but"
                " mtaguard_sasl_password_file is empty: AUTH is not offered",
                service=f"{entry.name}/{entry.type}",
            )
    service = SMTPServerService(
        name=f"{entry.name}/{entry.type}",
        view=view,
        endpoints=endpoints,
        reactor=shared.reactor,
        queue=shared.queue(),
        processLimit=processLimitOf(entry.processLimit, view),
        tlsCreator=tls.creator,
        tlsRequired=tls.level == "encrypt",
        wrapperMode=tls.wrapperMode,
        portal=portal,
        queued=shared.queued,
    )
    shared.smtpdFactories[entry.name] = service.factory
    return service


class ClientTransport(Service):
    """
    A master.cf service running C{smtp} (C{smtp/unix}, C{relay/unix}): a
    transport name the router may choose.  Its deliveries are made by the
    shared queue manager (L{SharedServices.queueManager}), which this
    service makes sure exists.
    """

    def __init__(self, entry: ServiceEntry, manager: Any) -> None:
        self.entry = entry
        self.manager = manager
        Service.setName(self, f"{entry.name}/{entry.type}")


def _buildSmtp(
    entry: ServiceEntry, view: ParameterView, endpoints: tuple[str, ...], shared: SharedServices
) -> IService:
    return ClientTransport(entry, shared.queueManager(view))


def _buildPostscreen(
    entry: ServiceEntry, view: ParameterView, endpoints: tuple[str, ...], shared: SharedServices
) -> IService:
    from .postscreen._service import buildPostscreen
    from .tls import TLSConfigurationError, serverTLS

    tlsCreator = None
    if view[params.postscreen_tls_security_level] not in ("", "none") or (
        not view[params.postscreen_tls_security_level] and view[params.postscreen_use_tls]
    ):
        try:
            tls = serverTLS(view, reactor=shared.reactor)
        except TLSConfigurationError as error:
            raise ConfigurationError(str(error)) from None
        tlsCreator = tls.creator
    passName = view[params.smtpd_service_name]
    shared.postscreenPasses.append((f"{entry.name}/{entry.type}", passName))
    return buildPostscreen(
        name=f"{entry.name}/{entry.type}",
        view=view,
        endpoints=endpoints,
        reactor=shared.reactor,
        passFactory=lambda: shared.smtpdFactory(passName),
        dataDirectory=view[params.data_directory],
        tlsCreator=tlsCreator,
    )


programBuilders: dict[str, ProgramBuilder] = {
    "smtpd": _buildSmtpd,
    "smtp": _buildSmtp,
    "postscreen": _buildPostscreen,
}

#: The listen backlog of every inet service: Twisted's default of 50 makes a
#: burst of connections wait for SYN retransmissions.
LISTEN_BACKLOG = 1024


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _port(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise ConfigurationError(f"unknown service name: {text!r}") from None


def _interfaceAddresses(view: ParameterView) -> list[str]:
    protocols = set(view[params.inet_protocols])
    if "all" in protocols:
        protocols = {"ipv4", "ipv6"}
    addresses: list[str] = []
    for item in view[params.inet_interfaces]:
        if item == "all":
            # One dual-stack socket when both families are wanted.
            addresses.append("::" if "ipv6" in protocols else "0.0.0.0")
        elif item == "loopback-only":
            if "ipv4" in protocols:
                addresses.append("127.0.0.1")
            if "ipv6" in protocols:
                addresses.append("::1")
        else:
            addresses.append(item.strip("[]"))
    return addresses


def endpointDescriptions(entry: ServiceEntry, view: ParameterView) -> tuple[str, ...]:
    """
    The Twisted server endpoint descriptions an inet service listens on.

    A master.cf name C{host:port} binds that address; a bare C{port} binds
    every address of C{inet_interfaces}.  Other service types have no
    listening endpoint of their own.

    @raise ConfigurationError: if the port is an unknown service name.
    """
    if entry.type != "inet":
        return ()
    host, portText = inetAddress(entry)
    port = _port(portText)
    hosts = [host] if host is not None else _interfaceAddresses(view)
    descriptions = []
    for address in hosts:
        kind = "tcp6" if ":" in address else "tcp"
        descriptions.append(
            f"{kind}:{port}:interface={_escape(address)}:backlog={LISTEN_BACKLOG}"
        )
    return tuple(descriptions)


class MasterService(MultiService):
    """
    The top of the service tree: one child per master.cf service mtaguard
    runs.

    @ivar logObserver: an observer to give the application this service
        joins, when that application has none; twistd then logs through it
        instead of building its own (see L{mtaguard.logobserver}).
    """

    logObserver: ILogObserver | None = None

    def __init__(self) -> None:
        MultiService.__init__(self)

    def setServiceParent(self, parent: Any) -> None:
        # twistd passes its Application here and starts logging right after,
        # with the application's ILogObserver component if it has one.
        if self.logObserver is not None and isinstance(parent, Componentized):
            if parent.getComponent(ILogObserver, None) is None:
                parent.setComponent(ILogObserver, self.logObserver)
        MultiService.setServiceParent(self, parent)


def makeMasterService(configuration: Configuration, *, reactor: Any) -> MasterService:
    """
    The service tree for a loaded configuration.

    @param reactor: the reactor every service runs on (and takes its time
        from); resolved only by the caller (the twistd plugin or a .tac
        file).
    @raise ConfigurationError: if a service cannot be built.
    """
    top = MasterService()
    shared = SharedServices(configuration, top, reactor)
    internal: list[str] = []
    for entry in configuration.services():
        if entry.command in INTERNAL_PROGRAMS:
            internal.append(f"{entry.name}/{entry.type}")
            continue
        builder = programBuilders.get(entry.command)
        if builder is None:
            log.warn(
                "warning: {path}, line {line}: service {service}/{type}: program"
                " {command} is not supported by mtaguard; mail routed to it"
                " stays in the queue",
                path=configuration.masterCfPath,
                line=entry.firstLine,
                service=entry.name,
                type=entry.type,
                command=entry.command,
            )
            continue
        view = configuration.view(entry)
        endpoints = endpointDescriptions(entry, view)
        child: IService = builder(entry, view, endpoints, shared)
        child.setServiceParent(top)
    if internal:
        log.info(
            "{path}: Postfix internal services handled inside mtaguard: {services}",
            path=configuration.masterCfPath,
            services=" ".join(internal),
        )
    for screen, passName in shared.postscreenPasses:
        if passName not in shared.smtpdFactories:
            raise ConfigurationError(
                f"{configuration.masterCfPath}: service {screen} (postscreen) hands clients to"
                f" smtpd service {passName!r} (smtpd_service_name), which master.cf does not"
                f" define; add a line such as: {passName} pass - - n - - smtpd"
            )
    return top


def warnings(configuration: Configuration) -> Iterable[str]:
    """
    The configuration's non-fatal problems, one line each.
    """
    return configuration.warnings
