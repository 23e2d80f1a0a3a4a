"""
smtpd behind a load balancer: C{smtpd_upstream_proxy_protocol = haproxy}
wires L{mtaguard.proxyprotocol.ProxyHeaderFactory} in front of the smtpd
service, deterministically (a StringTransport and a Clock), and for real
with Debian's C{haproxy} sending C{send-proxy} and C{send-proxy-v2} to a
real C{twistd mtaguard}.
"""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import threading

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config import ConfigurationError, ParameterView
from mtaguard.proxyprotocol import ProxyHeaderFactory
from mtaguard.smtpd import SMTPServerFactory
from mtaguard.smtpd._service import SMTPServerService
from mtaguard.testing import MemoryQueue

from .test_proxyprotocol import serverCreator
from .realpeers import (
    HOST,
    LineSocket,
    MtaguardProcess,
    childEnvironment,
    freePort,
    portIsFree,
    requireTool,
    serverCommand,
    temporaryDirectory,
    waitForFiles,
    writeConfiguration,
)

BASE = {
    "compatibility_level": "3.6",
    "myhostname": "mx.example.org",
    "mydomain": "example.org",
    "mynetworks": "127.0.0.0/8",
}


def service(directory: str | None = None, **values: str) -> SMTPServerService:
    """
    An smtpd service on a Clock; with TLS wrapper mode if C{directory} is
    given (its certificate goes there).
    """
    settings = dict(BASE)
    settings.update(values)
    return SMTPServerService(
        name="smtp/inet",
        view=ParameterView(settings),
        endpoints=(),
        reactor=Clock(),
        queue=MemoryQueue(),
        processLimit=0,
        tlsCreator=serverCreator(directory) if directory is not None else None,
        wrapperMode=directory is not None,
    )


class ServiceWiringTests(SynchronousTestCase):
    """
    What the smtpd service listens with.
    """

    def test_default(self) -> None:
        """
        Without the parameter the SMTP factory listens directly.
        """
        self.assertIsInstance(service()._listenFactory, SMTPServerFactory)

    def test_haproxy(self) -> None:
        """
        C{haproxy} puts the PROXY reader in front, with
        C{smtpd_upstream_proxy_timeout} as its deadline and smtpd's log
        namespace.
        """
        smtpd = service(
            smtpd_upstream_proxy_protocol="haproxy", smtpd_upstream_proxy_timeout="7s"
        )
        factory = smtpd._listenFactory
        self.assertIsInstance(factory, ProxyHeaderFactory)
        self.assertIs(factory.wrappedFactory, smtpd.factory)
        self.assertEqual(factory.timeout, 7)
        self.assertEqual(factory.log.namespace, "mtaguard.smtpd")

    def test_wrapperModeProxyOutermost(self) -> None:
        """
        With TLS wrapper mode the PROXY reader is outside the TLS layer:
        haproxy's header comes before the handshake.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        smtpd = service(directory, smtpd_upstream_proxy_protocol="haproxy")
        factory = smtpd._listenFactory
        self.assertIsInstance(factory, ProxyHeaderFactory)
        self.assertIsInstance(factory.wrappedFactory, TLSMemoryBIOFactory)
        self.assertIs(factory.wrappedFactory.wrappedFactory, smtpd.factory)

    def test_badValue(self) -> None:
        """
        Any other value stops the service from being built, with one line
        naming the service and the parameter.
        """
        with self.assertRaises(ConfigurationError) as raised:
            service(smtpd_upstream_proxy_protocol="proxy-v3")
        message = str(raised.exception)
        self.assertIn("service smtp/inet", message)
        self.assertIn("smtpd_upstream_proxy_protocol", message)
        self.assertIn("proxy-v3", message)
        self.assertNotIn("\n", message)

    def test_sessionSeesProxiedClient(self) -> None:
        """
        Through the listening factory, the session greets only after the
        header and logs the client the proxy saw.
        """
        smtpd = service(smtpd_upstream_proxy_protocol="haproxy")
        protocol = smtpd._listenFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"")
        with capturedLogs() as events:
            protocol.dataReceived(b"PROXY TCP6 2001:db8::7 2001:db8::25 4711 25\r\n")
        self.assertTrue(transport.value().startswith(b"220 mx.example.org ESMTP"))
        self.assertIn("connect from unknown[2001:db8::7]", [formatEvent(e) for e in events])
        self.assertEqual(events[0]["log_namespace"], "mtaguard.smtpd")


class BadValueTests(SynchronousTestCase):
    """
    A real C{twistd mtaguard} refuses an unknown proxy protocol.  (Nothing
    here runs on the reactor; the child process has its own deadline.)
    """

    def test_exitsBeforeBinding(self) -> None:
        """
        C{smtpd_upstream_proxy_protocol = proxy-v3}: exit status 1, one
        line naming main.cf and the parameter, and the port stays free.
        """
        directory = temporaryDirectory(self)
        port = freePort()
        writeConfiguration(directory, port, {"smtpd_upstream_proxy_protocol": "proxy-v3"})
        result = subprocess.run(
            serverCommand(directory), cwd=directory, env=childEnvironment(directory),
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        )
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.assertEqual(result.returncode, 1, output)
        [line] = output.splitlines()
        self.assertIn(f"{directory}/main.cf, line ", line)
        self.assertIn("smtpd_upstream_proxy_protocol", line)
        self.assertIn("proxy-v3", line)
        self.assertTrue(portIsFree(port))


# -- a real haproxy in front of a real mtaguard ------------------------------------

HAPROXY_CONFIG = """\
global
    maxconn 64

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

listen v1
    bind {host}:{v1}
    server mtaguard {host}:{mta} send-proxy

listen v2
    bind {host}:{v2}
    server mtaguard {host}:{mta} send-proxy-v2
"""


class HAProxyTests(SynchronousTestCase):
    """
    Debian's haproxy, once with C{send-proxy} (v1) and once with
    C{send-proxy-v2}, in front of C{twistd mtaguard} with
    C{smtpd_upstream_proxy_protocol = haproxy}.  Clients connect from
    other loopback addresses (127.0.0.23, 127.0.0.24) than haproxy's own
    (127.0.0.1), so the log shows whose address smtpd used.  Every wait
    is a blocking one with its own deadline; nothing runs on the reactor.
    """

    #: main.cf settings of the mtaguard behind haproxy.
    settings = {"smtpd_upstream_proxy_protocol": "haproxy"}
    #: master.cf, with C{{port}} for the listening port; L{None}: one smtpd.
    masterCf: str | None = None

    def setUp(self) -> None:
        haproxy = requireTool(self, "haproxy")
        self.directory = temporaryDirectory(self)
        self.port = freePort()
        self.paths = writeConfiguration(self.directory, self.port, self.settings)
        if self.masterCf is not None:
            with open(os.path.join(self.directory, "master.cf"), "w") as handle:
                handle.write(self.masterCf.format(host=HOST, port=self.port))
        self.server = MtaguardProcess(self.directory, self.port)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.v1, self.v2 = freePort(), freePort()
        config = os.path.join(self.directory, "haproxy.cfg")
        with open(config, "w") as handle:
            handle.write(HAPROXY_CONFIG.format(host=HOST, v1=self.v1, v2=self.v2, mta=self.port))
        check = subprocess.run([haproxy, "-c", "-f", config], capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check)
        self.haproxyLog = open(os.path.join(self.directory, "haproxy.log"), "wb")
        self.addCleanup(self.haproxyLog.close)
        # -db: stay in the foreground, no daemon to chase after the test.
        self.haproxy = subprocess.Popen(
            [haproxy, "-db", "-f", config], stdin=subprocess.DEVNULL,
            stdout=self.haproxyLog, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.addCleanup(self.stopHAProxy)
        for port in (self.v1, self.v2):
            self.waitForListener(port)

    def stopHAProxy(self) -> None:
        if self.haproxy.poll() is None:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
                self.haproxy.wait(10)

    def waitForListener(self, port: int) -> None:
        for _ in range(200):
            if self.haproxy.poll() is not None:
                self.fail(f"haproxy exited with {self.haproxy.returncode}")
            with socket.socket() as probe:
                # Not from 127.0.0.1, which is haproxy's own address.
                probe.bind(("127.0.0.2", 0))
                if probe.connect_ex((HOST, port)) == 0:
                    return
            threading.Event().wait(0.05)
        self.fail(f"haproxy does not listen on {port}")

    def send(self, port: int, source: str, subject: str) -> None:
        with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15,
                          source_address=(source, 0)) as client:
            client.sendmail("sender@example.org", ["postmaster@localhost"],
                            f"Subject: {subject}\r\n\r\nvia haproxy\r\n".encode())

    def test_v1AndV2(self) -> None:
        """
        A message through each haproxy listener is delivered, and smtpd
        logs and records the client address haproxy saw, never haproxy's.
        """
        self.send(self.v1, "127.0.0.23", "v1")
        self.send(self.v2, "127.0.0.24", "v2")
        log = self.server.waitForLog("disconnect from unknown[127.0.0.24]")
        # haproxy itself connects from 127.0.0.1; its probes from 127.0.0.2.
        self.assertIn("connect from unknown[127.0.0.23]", log)
        self.assertIn("connect from unknown[127.0.0.24]", log)
        self.assertNotIn("connect from unknown[127.0.0.1]", log)
        maildir = os.path.join(self.paths["maildir"], "postmaster", "new")
        received: dict[str, bytes] = {}
        for path in waitForFiles(maildir, 2):
            with open(path, "rb") as handle:
                content = handle.read()
            received["v1" if b"Subject: v1" in content else "v2"] = content
        self.assertIn(b"[127.0.0.23]", received["v1"])
        self.assertIn(b"[127.0.0.24]", received["v2"])

    def test_directClientWithoutHeader(self) -> None:
        """
        A client that bypasses haproxy gets Postfix's 421 and the warning
        names what it sent.
        """
        client = LineSocket(self.port)
        self.addCleanup(client.close)
        client.send(b"EHLO nope\r\n")
        self.assertEqual(client.readReply(), b"421 4.3.2 No system resources\r\n")
        self.assertTrue(client.isClosed())
        self.server.waitForLog("warning: haproxy read: short protocol header: EHLO nope\\r\\n")
