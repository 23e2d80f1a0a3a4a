"""
postscreen as a service, on the real reactor and loopback sockets: built
from master.cf, handing clients to the smtpd pass service, asking a real
DNS server (twisted.names on loopback) for DNSBL answers, and sharing
verdicts between two instances through a real memcached.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from typing import Any, Optional

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.names import dns, server
from twisted.names.common import ResolverBase
from twisted.trial.unittest import SkipTest, TestCase

from mtaguard.config import ConfigurationError, loadConfiguration
from mtaguard.service import makeMasterService

from .realpeers import freePort, makeCertificate

HOSTNAME = "mx.test.example"


class Recorder(Protocol):
    """
    A client that records what the server sends and says when a pattern
    arrives.
    """

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[None] = Deferred()
        self._waits: list[tuple[bytes, Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for item in list(self._waits):
            pattern, d = item
            if pattern in self.received:
                self._waits.remove(item)
                d.callback(self.received)

    def waitFor(self, pattern: bytes) -> Deferred[bytes]:
        if pattern in self.received:
            return succeed(self.received)
        d: Deferred[bytes] = Deferred()
        self._waits.append((pattern, d))
        return d

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class ZoneResolver(ResolverBase):
    """
    Answers A queries from a dict, NXDOMAIN otherwise: a DNSBL zone.
    """

    def __init__(self, records: dict[str, str], ttl: int = 300) -> None:
        ResolverBase.__init__(self)
        self.records = records
        self.ttl = ttl
        self.queries: list[str] = []

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any) -> Deferred[Any]:
        text = name.decode("ascii").lower()
        self.queries.append(text)
        if type == dns.A and text in self.records:
            answer = dns.RRHeader(
                name=name, type=dns.A, ttl=self.ttl, payload=dns.Record_A(self.records[text], ttl=self.ttl)
            )
            return succeed(([answer], [], []))
        from twisted.internet.defer import fail

        return fail(dns.DomainError(name))


class ServiceHarness:
    """
    Mixed into a trial C{TestCase}: start mtaguard instances whose
    master.cf runs postscreen in front of an smtpd pass service, connect
    clients from chosen loopback addresses, and collect mtaguard's log
    lines.
    """

    mktemp: Any
    addCleanup: Any

    def startLogging(self) -> None:
        self.logged: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if str(event.get("log_namespace", "")).startswith("mtaguard"):
                self.logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def startInstance(self, extra: Optional[dict[str, str]] = None, *, name: str = "a") -> int:
        directory = os.path.abspath(self.mktemp()) + name
        os.makedirs(os.path.join(directory, "queue"))
        os.makedirs(os.path.join(directory, "data"))
        port = freePort()
        settings = {
            "compatibility_level": "3.6",
            "myhostname": HOSTNAME,
            "mydomain": "test.example",
            "mynetworks": "127.0.0.1/32",
            "queue_directory": os.path.join(directory, "queue"),
            "data_directory": os.path.join(directory, "data"),
            "postscreen_greet_wait": "1s",
        }
        settings.update(extra or {})
        with open(os.path.join(directory, "main.cf"), "w") as handle:
            handle.writelines(f"{k} = {v}\n" for k, v in settings.items())
        with open(os.path.join(directory, "master.cf"), "w") as handle:
            handle.write(f"127.0.0.1:{port} inet n - n - 1 postscreen\nsmtpd pass - - n - - smtpd\n")
        top = makeMasterService(loadConfiguration(directory), reactor=globalReactor)
        top.startService()
        self.addCleanup(top.stopService)
        self.postscreens = getattr(self, "postscreens", {})
        self.postscreens[port] = top.getServiceNamed(f"127.0.0.1:{port}/inet").factory
        return port

    @inlineCallbacks
    def cached(self, port: int, address: str) -> Any:
        """
        Wait until instance C{port}'s verdict cache has an entry for
        C{address} (cache updates are written asynchronously).
        """
        cache = self.postscreens[port].cache
        for _ in range(100):
            verdicts = yield cache.get(address)
            if verdicts is not None:
                return verdicts
            yield deferLater(globalReactor, 0.02, lambda: None)
        raise AssertionError(f"no cache entry for {address}")

    @inlineCallbacks
    def connect(self, port: int, source: str = "127.0.0.2") -> Any:
        endpoint = TCP4ClientEndpoint(globalReactor, "127.0.0.1", port, bindAddress=(source, 0))
        protocol = yield endpoint.connect(Factory.forProtocol(Recorder))
        self.addCleanup(self._close, protocol)
        return protocol

    def _close(self, protocol: Recorder) -> Deferred[None]:
        if protocol.closed.called:
            return succeed(None)
        protocol.transport.loseConnection()  # type: ignore[union-attr]
        return protocol.closed



class PostscreenServiceTests(ServiceHarness, TestCase):
    """
    A postscreen service in front of an smtpd pass service, built from
    master.cf and running on loopback.
    """

    timeout = 30

    def setUp(self) -> None:
        self.startLogging()

    @inlineCallbacks
    def test_handOffAndDeliver(self) -> Any:
        """
        A new client gets the teaser, then smtpd's greeting on the same
        connection after the greet wait, and can send mail through it.
        """
        port = self.startInstance()
        client = yield self.connect(port)
        yield client.waitFor(b"220-")
        self.assertEqual(client.received, f"220-{HOSTNAME} ESMTP Postfix\r\n".encode())
        yield client.waitFor(b"220 ")
        self.assertEqual(
            client.received, f"220-{HOSTNAME} ESMTP Postfix\r\n220 {HOSTNAME} ESMTP Postfix\r\n".encode()
        )
        client.transport.write(b"EHLO client.example\r\n")
        yield client.waitFor(b"250 ")
        client.transport.write(b"MAIL FROM:<a@client.example>\r\nRCPT TO:<postmaster@" + HOSTNAME.encode() + b">\r\nDATA\r\n")
        yield client.waitFor(b"354 ")
        client.transport.write(b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        yield client.waitFor(b"221 ")
        self.assertIn(b"250 2.0.0 Ok: queued as ", client.received)
        connects = [line for line in self.logged if line.startswith("CONNECT from [127.0.0.2]:")]
        self.assertEqual(len(connects), 1)
        self.assertTrue(any(line.startswith("PASS NEW [127.0.0.2]:") for line in self.logged))
        self.assertTrue(any(line.startswith("connect from unknown[127.0.0.2]") for line in self.logged), self.logged)

    @inlineCallbacks
    def test_passOldAfterRestartFromSQLiteCache(self) -> Any:
        """
        The default cache (SQLite under data_directory) makes the second
        connection C{PASS OLD}: smtpd greets at once, without a teaser.
        """
        port = self.startInstance()
        first = yield self.connect(port)
        yield first.waitFor(b"220 ")
        yield self._close(first)
        yield self.cached(port, "127.0.0.2")
        second = yield self.connect(port)
        yield second.waitFor(b"220 ")
        self.assertEqual(second.received, f"220 {HOSTNAME} ESMTP Postfix\r\n".encode())
        self.assertTrue(any(line.startswith("PASS OLD [127.0.0.2]:") for line in self.logged))

    def test_missingPassService(self) -> None:
        """
        A postscreen without its smtpd pass service is a configuration
        error naming the missing line.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "main.cf"), "w") as handle:
            handle.write(f"myhostname = {HOSTNAME}\ndata_directory = {directory}\nqueue_directory = {directory}\n")
        with open(os.path.join(directory, "master.cf"), "w") as handle:
            handle.write("127.0.0.1:2599 inet n - n - 1 postscreen\n")
        error = self.assertRaises(
            ConfigurationError, makeMasterService, loadConfiguration(directory), reactor=globalReactor
        )
        self.assertIn("smtpd pass - - n - - smtpd", str(error))

    @inlineCallbacks
    def test_dnsblDropWithRealDNS(self) -> Any:
        """
        A client listed in a DNSBL zone served by a real DNS server on
        loopback is dropped with Postfix's reply and log lines; an unlisted
        one passes.
        """
        zone = ZoneResolver({"2.0.0.127.dnsbl.test": "127.0.0.2"})
        factory = server.DNSServerFactory(clients=[zone])
        udp = globalReactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        self.addCleanup(udp.stopListening)
        dnsPort = udp.getHost().port
        port = self.startInstance(
            {
                "mtaguard_dns_servers": f"[127.0.0.1]:{dnsPort}",
                "postscreen_dnsbl_sites": "dnsbl.test",
                "postscreen_dnsbl_action": "drop",
            }
        )
        listed = yield self.connect(port, "127.0.0.2")
        yield listed.closed
        self.assertEqual(
            listed.received,
            f"220-{HOSTNAME} ESMTP Postfix\r\n".encode()
            + b"521 5.7.1 Service unavailable; client [127.0.0.2] blocked using dnsbl.test\r\n",
        )
        self.assertTrue(any(line.startswith("DNSBL rank 1 for [127.0.0.2]:") for line in self.logged))
        self.assertIn("2.0.0.127.dnsbl.test", zone.queries)
        clean = yield self.connect(port, "127.0.0.3")
        yield clean.waitFor(b"220 ")
        self.assertTrue(any(line.startswith("PASS NEW [127.0.0.3]:") for line in self.logged))


class ProxyAndTLSTests(ServiceHarness, TestCase):
    """
    postscreen behind a PROXY-protocol load balancer, and STARTTLS in its
    dummy SMTP engine.
    """

    timeout = 30

    def setUp(self) -> None:
        self.startLogging()

    @inlineCallbacks
    def test_proxyHeaderGivesRealClient(self) -> Any:
        """
        With C{postscreen_upstream_proxy_protocol = haproxy} the tests, the
        log lines and the handed-off smtpd see the client named in the
        header, not the proxy.
        """
        port = self.startInstance({"postscreen_upstream_proxy_protocol": "haproxy"})
        client = yield self.connect(port)
        client.transport.write(b"PROXY TCP4 198.51.100.7 192.0.2.2 4711 25\r\n")
        yield client.waitFor(b"220 ")
        self.assertEqual(
            client.received, f"220-{HOSTNAME} ESMTP Postfix\r\n220 {HOSTNAME} ESMTP Postfix\r\n".encode()
        )
        self.assertIn("CONNECT from [198.51.100.7]:4711 to [192.0.2.2]:25", self.logged)
        self.assertIn("PASS NEW [198.51.100.7]:4711", self.logged)
        self.assertTrue(any(line.startswith("connect from unknown[198.51.100.7]") for line in self.logged), self.logged)

    @inlineCallbacks
    def test_proxyHeaderMissing(self) -> Any:
        """
        A connection that does not start with a PROXY header gets Postfix's
        421 and never reaches the tests.
        """
        port = self.startInstance({"postscreen_upstream_proxy_protocol": "haproxy"})
        client = yield self.connect(port)
        client.transport.write(b"EHLO nope\r\n")
        yield client.closed
        self.assertEqual(client.received, b"421 4.3.2 No system resources\r\n")
        self.assertFalse(any(line.startswith("CONNECT from") for line in self.logged))

    @inlineCallbacks
    def test_starttlsInEngineDiscardsInjection(self) -> Any:
        """
        A client in the dummy engine can start TLS; a command pipelined
        after STARTTLS in the same packet is discarded, never answered.
        """
        certificates = os.path.abspath(self.mktemp())
        os.makedirs(certificates)
        chain = makeCertificate(certificates)
        port = self.startInstance(
            {
                "postscreen_greet_banner": "",
                "postscreen_bare_newline_enable": "yes",
                "smtpd_tls_security_level": "may",
                "smtpd_tls_chain_files": chain,
            }
        )
        client = yield self.connect(port)
        yield client.waitFor(b"220 ")
        client.transport.write(b"EHLO client.example\r\n")
        yield client.waitFor(b"250 ")
        self.assertIn(b"250-STARTTLS\r\n", client.received)
        client.received = b""
        client.transport.write(b"STARTTLS\r\nRSET\r\n")
        yield client.waitFor(b"220 ")
        self.assertEqual(client.received, b"220 2.0.0 Ready to start TLS\r\n")
        from twisted.internet.ssl import CertificateOptions

        client.received = b""
        client.transport.startTLS(CertificateOptions())
        client.transport.write(b"EHLO client.example\r\n")
        yield client.waitFor(b"250 ")
        self.assertNotIn(b"STARTTLS", client.received)
        self.assertTrue(client.received.startswith(b"250-" + HOSTNAME.encode()), client.received)


class SharedMemcacheTests(ServiceHarness, TestCase):
    """
    Two mtaguard instances share verdicts through one real memcached.
    """

    timeout = 30

    @inlineCallbacks
    def setUp(self) -> Any:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        if not os.path.exists(binary):
            if os.environ.get("CI") == "true":
                self.fail("memcached is not installed, but CI requires it")
            raise SkipTest("memcached is not installed (Debian package memcached)")
        self.memcachePort = freePort()
        command = [binary, "-l", "127.0.0.1", "-p", str(self.memcachePort), "-U", "0"]
        if os.geteuid() == 0:
            command += ["-u", "root"]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop() -> None:
            process.kill()
            process.wait()

        self.addCleanup(stop)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.memcachePort), timeout=1).close()
                break
            except OSError:
                yield deferLater(globalReactor, 0.05, lambda: None)
        else:
            self.fail("memcached did not start listening")
        self.startLogging()

    @inlineCallbacks
    def test_passOnOneInstancePassOldOnTheOther(self) -> Any:
        """
        A client that passed on instance A is C{PASS OLD} on instance B.
        """
        shared = {
            "postscreen_cache_map": f"memcache:inet:127.0.0.1:{self.memcachePort}",
            "postscreen_cache_cleanup_interval": "0",
        }
        portA = self.startInstance(shared, name="a")
        portB = self.startInstance(shared, name="b")
        first = yield self.connect(portA)
        yield first.waitFor(b"220 ")
        self.assertIn(b"220-", first.received)
        # Instance B sees the verdict instance A wrote.
        yield self.cached(portB, "127.0.0.2")
        second = yield self.connect(portB)
        yield second.waitFor(b"220 ")
        self.assertEqual(second.received, f"220 {HOSTNAME} ESMTP Postfix\r\n".encode())
        self.assertTrue(any(line.startswith("PASS OLD [127.0.0.2]:") for line in self.logged))
