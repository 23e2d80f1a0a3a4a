"""
Tests for the SMTP client's TLS policy in L{mtaguard.tls}: security levels,
trust, server name matching, protocols, renegotiation and the Postfix log
line.

Certificates are made here with C{cryptography} (a test CA, server
certificates with the right, wrong, wildcard and expired names, a
self-signed one).  Handshakes are real OpenSSL handshakes between two
L{TLSMemoryBIOFactory} protocols connected in memory by
L{twisted.test.iosim}, driven by a L{Clock}: no network.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mtaguard import tls
from mtaguard.config import parseConfiguration

# --- a small PKI -------------------------------------------------------------------

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256: fast to generate, so every test can afford fresh keys.
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


class PKI:
    """
    A test CA that issues server certificates.
    """

    def __init__(self, common: str = "mtaguard test CA") -> None:
        self.key = _key()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(_name(common))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY)
            .not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        *names: str,
        notBefore: datetime.datetime | None = None,
        notAfter: datetime.datetime | None = None,
        selfSigned: bool = False,
        common: str | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """
        A server key and certificate for the DNS names C{names}
        (subjectAltName), signed by this CA or by itself.
        """
        key = _key()
        subject = _name(common or (names[0] if names else "no-san.test.example"))
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if selfSigned else self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(notBefore or NOW - DAY)
            .not_valid_after(notAfter or NOW + 10 * DAY)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in names]),
                critical=False,
            )
        return key, builder.sign(key if selfSigned else self.key, hashes.SHA256())


# --- an in-memory server -----------------------------------------------------------


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """
    The application on either side: records the handshake, data and loss.
    """

    def __init__(self) -> None:
        self.handshakeDone = False
        self.received = b""
        self.lost: Failure | None = None

    def handshakeCompleted(self) -> None:
        self.handshakeDone = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = reason or Failure(Exception("connection lost"))


@implementer(IOpenSSLServerConnectionCreator)
class ServerCreator:
    """
    A plain test server: one certificate, a maximum version, and nothing
    that stops it from renegotiating.
    """

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        chain: list[x509.Certificate],
        maximum: int | None = None,
        minimum: int | None = None,
    ) -> None:
        self.context = SSL.Context(SSL.TLS_METHOD)
        self.context.use_privatekey(key)
        self.context.use_certificate(chain[0])
        for issuer in chain[1:]:
            self.context.add_extra_chain_cert(issuer)
        if maximum is not None:
            self.context.set_max_proto_version(maximum)
        if minimum is not None:
            self.context.set_min_proto_version(minimum)
        if minimum is not None and minimum < SSL.TLS1_2_VERSION:
            self.context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        self.sni: list[bytes | None] = []

        def servername(connection: SSL.Connection) -> None:
            self.sni.append(connection.get_servername())

        self.context.set_tlsext_servername_callback(servername)

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)


class Connection:
    """
    One client/server pair, connected in memory and handshaken.
    """

    def __init__(
        self,
        creator: IOpenSSLClientConnectionCreator,
        server: ServerCreator,
        clock: Clock,
    ) -> None:
        self.clock = clock
        # Kept here: the TLS wrapper forgets its application on loss.
        self.client = Recorder()
        self.server = Recorder()
        clientFactory = TLSMemoryBIOFactory(
            creator, True, Factory.forProtocol(lambda: self.client), clock
        )
        serverFactory = TLSMemoryBIOFactory(
            server, False, Factory.forProtocol(lambda: self.server), clock
        )

        def clientTransport(protocol: Any) -> FakeTransport:
            return FakeTransport(
                protocol,
                isServer=False,
                hostAddress=IPv4Address("TCP", "198.51.100.7", 40000),
                peerAddress=IPv4Address("TCP", "192.0.2.1", 25),
            )

        self.clientTLS: TLSMemoryBIOProtocol
        self.serverTLS: TLSMemoryBIOProtocol
        self.pump: IOPump
        self.clientTLS, self.serverTLS, self.pump = connectedServerAndClient(
            lambda: serverFactory.buildProtocol(IPv4Address("TCP", "198.51.100.7", 40000)),
            lambda: clientFactory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 25)),
            clientTransportFactory=clientTransport,
            greet=False,
            clock=clock,
        )
        self.settle()

    def settle(self) -> None:
        """
        Pump bytes and run due calls until nothing moves.
        """
        for _ in range(20):
            self.pump.flush()
            self.clock.advance(0)
            self.clock.advance(0.01)


# --- helpers -----------------------------------------------------------------------


class ClientTLSTestCase(SynchronousTestCase):
    """
    A directory for files, a CA, and policies from main.cf text.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.clock = Clock()
        self.ca = PKI()
        self.caFile = self.write("ca.pem", self.ca.pem())

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def policy(self, mainCf: str, nextHop: str = "example.com") -> tls.ClientTLSPolicy:
        view = parseConfiguration(self.directory, mainCf, "").view()
        return tls.clientTLSPolicy(view, nextHop=nextHop, reactor=self.clock)

    def levelPolicy(
        self, level: str, extra: str = "", nextHop: str = "example.com"
    ) -> tls.ClientTLSPolicy:
        return self.policy(
            f"smtp_tls_security_level = {level}\nsmtp_tls_CAfile = {self.caFile}\n{extra}",
            nextHop,
        )

    def server(
        self, *names: str, maximum: int | None = None, minimum: int | None = None, **kw: Any
    ) -> ServerCreator:
        key, certificate = self.ca.issue(*names, **kw)
        return ServerCreator(key, [certificate], maximum, minimum)

    def connect(
        self,
        policy: tls.ClientTLSPolicy,
        server: ServerCreator,
        serverHostname: str = "mx.example.com",
    ) -> tuple[Connection, tls.TLSVerdict]:
        connection = Connection(policy.creatorFor(serverHostname), server, self.clock)
        return connection, policy.verdict(connection.clientTLS)

    def assertDelivers(self, verdict: tls.TLSVerdict, trust: str) -> None:
        self.assertEqual((verdict.trust, verdict.satisfied, verdict.reason), (trust, True, None))
        self.assertTrue(verdict.established)

    def assertDefers(self, verdict: tls.TLSVerdict, trust: str, reason: str) -> None:
        self.assertEqual((verdict.trust, verdict.satisfied, verdict.reason), (trust, False, reason))


# --- levels ------------------------------------------------------------------------


class LevelTests(ClientTLSTestCase):
    """
    C{smtp_tls_security_level} and what it implies.
    """

    def test_levels(self) -> None:
        """
        C{none} has no context; C{may} is optional; C{encrypt}, C{verify}
        and C{secure} require TLS; the default (empty) is C{none}.
        """
        self.assertEqual(self.policy("").level, "none")
        none = self.levelPolicy("none")
        self.assertEqual((none.level, none.required, none.context), ("none", False, None))
        self.assertRaises(RuntimeError, none.creatorFor, "mx.example.com")
        levels = [("may", False), ("encrypt", True), ("verify", True), ("secure", True)]
        for level, required in levels:
            policy = self.levelPolicy(level)
            self.assertEqual((policy.level, policy.required), (level, required))
            self.assertIsInstance(policy.context, SSL.Context)
            verifyObject(IOpenSSLClientConnectionCreator, policy.creatorFor("mx.example.com"))

    def test_obsoleteParameters(self) -> None:
        """
        With no level, C{smtp_use_tls} means C{may}, C{smtp_enforce_tls}
        means C{verify} (with the default C{smtp_tls_enforce_peername =
        yes}) or C{encrypt}.
        """
        self.assertEqual(self.policy("smtp_use_tls = yes").level, "may")
        self.assertEqual(
            self.policy(f"smtp_enforce_tls = yes\nsmtp_tls_CAfile = {self.caFile}").level, "verify"
        )
        self.assertEqual(
            self.policy("smtp_enforce_tls = yes\nsmtp_tls_enforce_peername = no").level, "encrypt"
        )

    def test_unsupportedLevels(self) -> None:
        """
        C{dane}, C{dane-only} and C{fingerprint} are refused with an error
        that names the parameter and says they are not supported, and so
        are TLSA records.
        """
        for level in ("dane", "dane-only", "fingerprint"):
            error = self.assertRaises(
                tls.TLSConfigurationError,
                self.policy,
                f"smtp_tls_security_level = {level}",
            )
            self.assertEqual(error.parameter, "smtp_tls_security_level")
            self.assertIn(f"smtp_tls_security_level = {level}: not supported", str(error))
        view = parseConfiguration(self.directory, "smtp_tls_security_level = may", "").view()
        self.assertRaises(
            tls.TLSConfigurationError,
            tls.clientTLSPolicy,
            view,
            nextHop="example.com",
            tlsa=[b"record"],  # type: ignore[arg-type]
        )

    def test_noTrustAnchorsWarns(self) -> None:
        """
        At C{verify} with neither C{smtp_tls_CAfile} nor C{smtp_tls_CApath},
        Postfix trusts nothing (the system store is not used); the policy
        says so in a warning, and a CA-signed server is not trusted.
        """
        policy = self.policy("smtp_tls_security_level = verify")
        self.assertEqual(len(policy.warnings), 1)
        self.assertIn("neither smtp_tls_CAfile nor smtp_tls_CApath", policy.warnings[0])
        with capturedLogs():
            _, verdict = self.connect(policy, self.server("mx.example.com"))
        self.assertDefers(verdict, "Untrusted", "Server certificate not trusted")

    def test_badCAfile(self) -> None:
        """
        A CA file that cannot be loaded disables TLS at C{may} (level
        C{none}, with Postfix's warning) and is fatal when TLS is required.
        """
        missing = os.path.join(self.directory, "missing.pem")
        policy = self.policy(f"smtp_tls_security_level = may\nsmtp_tls_CAfile = {missing}")
        self.assertEqual(policy.level, "none")
        self.assertIn("cannot load Certification Authority data", policy.warnings[-1])
        error = self.assertRaises(
            tls.TLSConfigurationError,
            self.policy,
            f"smtp_tls_security_level = encrypt\nsmtp_tls_CAfile = {missing}",
        )
        self.assertEqual(error.parameter, "smtp_tls_CAfile")
        self.assertIn("smtp_tls_security_level = encrypt", str(error))


# --- certificates against levels -----------------------------------------------------


class CertificateTests(ClientTLSTestCase):
    """
    Each level against self-signed, right-name, wrong-name, wildcard and
    expired server certificates.
    """

    def test_selfSigned(self) -> None:
        """
        A self-signed certificate is Untrusted: fine at C{may} and
        C{encrypt}; at C{verify} and C{secure} the handshake is failed, so
        nothing is exchanged, and the verdict says to defer.
        """
        for level in ("may", "encrypt"):
            connection, verdict = self.connect(
                self.levelPolicy(level), self.server("mx.example.com", selfSigned=True)
            )
            self.assertDelivers(verdict, "Untrusted")
            self.assertEqual(verdict.problems, ("self-signed certificate",))
            self.assertTrue(connection.client.handshakeDone)
        for level in ("verify", "secure"):
            with capturedLogs() as events:
                connection, verdict = self.connect(
                    self.levelPolicy(level), self.server("mx.example.com", selfSigned=True)
                )
            self.assertFalse(connection.client.handshakeDone)
            self.assertIsNotNone(connection.client.lost)
            self.assertDefers(verdict, "Untrusted", "Server certificate not trusted")
            self.assertFalse(verdict.established)
            text = "\n".join(formatEvent(event) for event in events)
            self.assertIn(
                "server certificate verification failed for mx.example.com[192.0.2.1]:25:"
                " num=18:self-signed certificate",
                text,
            )
            self.assertIn("next hop example.com", text)

    def test_rightName(self) -> None:
        """
        A CA-signed certificate for the MX host name is Trusted at C{may}
        and C{encrypt} (names are not checked there, as with Postfix) and
        Verified at C{verify}, with Postfix's log line.
        """
        for level in ("may", "encrypt"):
            _, verdict = self.connect(self.levelPolicy(level), self.server("mx.example.com"))
            self.assertDelivers(verdict, "Trusted")
        connection, verdict = self.connect(
            self.levelPolicy("verify"), self.server("mx.example.com")
        )
        self.assertDelivers(verdict, "Verified")
        self.assertEqual(verdict.matchedName, "mx.example.com")
        self.assertRegex(
            verdict.logLine,
            r"^Verified TLS connection established to mx\.example\.com\[192\.0\.2\.1\]:25:"
            r" TLSv1\.3 with cipher TLS_\w+ \(\d+/\d+ bits\)( key-exchange \S+)?"
            r" server-signature ECDSA \(P-256\)$",
        )
        # The connection works: application data flows both ways.
        connection.clientTLS.write(b"EHLO client.example\r\n")
        connection.serverTLS.write(b"250 ok\r\n")
        connection.settle()
        self.assertEqual(connection.server.received, b"EHLO client.example\r\n")
        self.assertEqual(connection.client.received, b"250 ok\r\n")

    def test_wrongName(self) -> None:
        """
        A CA-signed certificate for another name: C{verify} fails the
        handshake (Trusted chain, name not matched: Postfix's "Server
        certificate not verified"); C{encrypt} delivers.
        """
        with capturedLogs() as events:
            connection, verdict = self.connect(
                self.levelPolicy("verify"), self.server("other.example.net")
            )
        self.assertFalse(connection.client.handshakeDone)
        self.assertDefers(verdict, "Trusted", "Server certificate not verified")
        self.assertIn(
            "server certificate for mx.example.com[192.0.2.1]:25 matches none of mx.example.com",
            "\n".join(formatEvent(event) for event in events),
        )
        _, verdict = self.connect(self.levelPolicy("encrypt"), self.server("other.example.net"))
        self.assertDelivers(verdict, "Trusted")

    def test_noSubjectAltName(self) -> None:
        """
        A certificate whose only name is its subject CN does not match:
        service_identity (and RFC 6125) use subjectAltName only.
        """
        with capturedLogs():
            _, verdict = self.connect(
                self.levelPolicy("verify"), self.server(common="mx.example.com")
            )
        self.assertDefers(verdict, "Trusted", "Server certificate not verified")

    def test_wildcard(self) -> None:
        """
        C{*.example.com} covers one label (C{mx.example.com}) but not two
        (C{a.mx.example.com}) nor the bare domain.
        """
        _, verdict = self.connect(self.levelPolicy("verify"), self.server("*.example.com"))
        self.assertDelivers(verdict, "Verified")
        with capturedLogs():
            _, verdict = self.connect(
                self.levelPolicy("verify"), self.server("*.example.com"), "a.mx.example.com"
            )
            self.assertDefers(verdict, "Trusted", "Server certificate not verified")
            _, verdict = self.connect(
                self.levelPolicy("verify", "smtp_tls_verify_cert_match = nexthop"),
                self.server("*.example.com"),
            )
            self.assertDefers(verdict, "Trusted", "Server certificate not verified")

    def test_expired(self) -> None:
        """
        An expired (or not yet valid) certificate is Untrusted: C{verify}
        fails, C{encrypt} delivers.
        """
        expired = {"notBefore": NOW - 10 * DAY, "notAfter": NOW - DAY}
        with capturedLogs() as events:
            _, verdict = self.connect(
                self.levelPolicy("verify"), self.server("mx.example.com", **expired)
            )
        self.assertDefers(verdict, "Untrusted", "Server certificate not trusted")
        self.assertIn(
            "num=10:certificate has expired", "\n".join(formatEvent(event) for event in events)
        )
        _, verdict = self.connect(
            self.levelPolicy("encrypt"), self.server("mx.example.com", **expired)
        )
        self.assertDelivers(verdict, "Untrusted")
        self.assertEqual(verdict.problems, ("certificate has expired",))
        with capturedLogs():
            _, verdict = self.connect(
                self.levelPolicy("secure"),
                self.server("mx.example.com", notBefore=NOW + DAY, notAfter=NOW + 9 * DAY),
            )
        self.assertDefers(verdict, "Untrusted", "Server certificate not trusted")

    def test_otherCA(self) -> None:
        """
        A certificate with the right name from a CA we do not trust.
        """
        other = PKI("another CA")
        key, certificate = other.issue("mx.example.com")
        with capturedLogs():
            _, verdict = self.connect(self.levelPolicy("verify"), ServerCreator(key, [certificate]))
        self.assertDefers(verdict, "Untrusted", "Server certificate not trusted")
        _, verdict = self.connect(self.levelPolicy("may"), ServerCreator(key, [certificate]))
        self.assertDelivers(verdict, "Untrusted")

    def test_intermediate(self) -> None:
        """
        A chain through an intermediate CA sent by the server verifies
        against the root alone.
        """
        intermediate = PKI("mtaguard test intermediate")
        # Re-sign the intermediate's certificate with the root.
        intermediate.certificate = (
            x509.CertificateBuilder()
            .subject_name(intermediate.certificate.subject)
            .issuer_name(self.ca.certificate.subject)
            .public_key(intermediate.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY)
            .not_valid_after(NOW + 20 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.ca.key, hashes.SHA256())
        )
        key, certificate = intermediate.issue("mx.example.com")
        server = ServerCreator(key, [certificate, intermediate.certificate])
        _, verdict = self.connect(self.levelPolicy("verify"), server)
        self.assertDelivers(verdict, "Verified")

    def test_CApath(self) -> None:
        """
        C{smtp_tls_CApath} is a hashed directory of CAs, as for OpenSSL.
        """
        import subprocess

        path = os.path.join(self.directory, "certs")
        os.makedirs(path)
        with open(os.path.join(path, "ca.pem"), "wb") as handle:
            handle.write(self.ca.pem())
        digest = subprocess.run(
            ["openssl", "x509", "-hash", "-noout", "-in", os.path.join(path, "ca.pem")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        os.symlink("ca.pem", os.path.join(path, f"{digest}.0"))
        policy = self.policy(f"smtp_tls_security_level = verify\nsmtp_tls_CApath = {path}")
        _, verdict = self.connect(policy, self.server("mx.example.com"))
        self.assertDelivers(verdict, "Verified")


# --- names ---------------------------------------------------------------------------


class NameMatchingTests(ClientTLSTestCase):
    """
    C{smtp_tls_verify_cert_match} and C{smtp_tls_secure_cert_match}.
    """

    def test_acceptableNames(self) -> None:
        """
        C{hostname} is the MX host, C{nexthop} the domain, C{dot-nexthop}
        anything below it; other entries are literal; below C{verify} no
        names are checked.
        """
        self.assertEqual(
            self.levelPolicy("verify").acceptableNames("MX.Example.com."), ("mx.example.com",)
        )
        self.assertEqual(
            self.levelPolicy("secure").acceptableNames("mx.example.com"),
            ("example.com", ".example.com"),
        )
        policy = self.levelPolicy(
            "verify",
            "smtp_tls_verify_cert_match = hostname, nexthop, relay.example.org .example.net",
            nextHop="[Example.com]:587",
        )
        self.assertEqual(policy.nextHop, "example.com")
        self.assertEqual(
            policy.acceptableNames("mx.example.com"),
            ("mx.example.com", "example.com", "relay.example.org", ".example.net"),
        )
        self.assertEqual(self.levelPolicy("encrypt").acceptableNames("mx.example.com"), ())

    def test_secureMatchesNexthopNotHostname(self) -> None:
        """
        At C{secure} (default C{nexthop, dot-nexthop}) a certificate for a
        host below the next-hop domain, or for the domain, is Verified; one
        naming only the MX host in another domain is not, even though
        C{verify} (C{hostname}) accepts it: the MX lookup is not trusted.
        """
        _, verdict = self.connect(self.levelPolicy("secure"), self.server("mx1.example.com"))
        self.assertDelivers(verdict, "Verified")
        self.assertEqual(verdict.matchedName, ".example.com")
        _, verdict = self.connect(self.levelPolicy("secure"), self.server("example.com"))
        self.assertDelivers(verdict, "Verified")
        self.assertEqual(verdict.matchedName, "example.com")
        _, verdict = self.connect(
            self.levelPolicy("secure"), self.server("*.example.com"), "mx.example.com"
        )
        self.assertDelivers(verdict, "Verified")
        hosted = self.server("mx.hoster.example")
        with capturedLogs():
            _, verdict = self.connect(self.levelPolicy("secure"), hosted, "mx.hoster.example")
        self.assertDefers(verdict, "Trusted", "Server certificate not verified")
        _, verdict = self.connect(self.levelPolicy("verify"), hosted, "mx.hoster.example")
        self.assertDelivers(verdict, "Verified")

    def test_dotNexthopIsStrict(self) -> None:
        """
        C{dot-nexthop} needs a name strictly below the domain: a look-alike
        suffix (C{badexample.com}) does not match.
        """
        with capturedLogs():
            _, verdict = self.connect(
                self.levelPolicy("secure", "smtp_tls_secure_cert_match = dot-nexthop"),
                self.server("badexample.com", "mx.badexample.com"),
            )
        self.assertDefers(verdict, "Trusted", "Server certificate not verified")

    def test_sni(self) -> None:
        """
        SNI is the server host name by default; C{smtp_tls_servername =
        nexthop} sends the domain; an address is never sent.
        """
        server = self.server("mx.example.com")
        self.connect(self.levelPolicy("may"), server)
        self.connect(self.levelPolicy("may", "smtp_tls_servername = nexthop"), server)
        self.connect(self.levelPolicy("may"), server, "192.0.2.1")
        self.assertEqual(server.sni, [b"mx.example.com", b"example.com", None])


# --- protocols and ciphers -----------------------------------------------------------


class ProtocolTests(ClientTLSTestCase):
    """
    Protocol versions and ciphers, with Postfix's parameters.
    """

    def tls11Server(self) -> ServerCreator:
        return self.server(
            "mx.example.com", maximum=SSL.TLS1_1_VERSION, minimum=SSL.TLS1_VERSION
        )

    def test_tls12MinimumByDefault(self) -> None:
        """
        With Postfix's defaults (C{>=TLSv1}) the client still refuses TLS
        1.1 and older (Twisted's minimum); a server limited to TLS 1.1
        fails the handshake, even at C{may}.
        """
        for level in ("may", "encrypt"):
            policy = self.levelPolicy(level)
            assert policy.context is not None
            connection, verdict = self.connect(
                policy, self.tls11Server()
            )
            self.assertFalse(connection.client.handshakeDone)
            self.assertFalse(verdict.satisfied)
            self.assertEqual(verdict.reason, "TLS handshake failed")
        _, verdict = self.connect(
            self.levelPolicy("may"), self.server("mx.example.com", maximum=SSL.TLS1_2_VERSION)
        )
        self.assertIn(": TLSv1.2 with cipher ", verdict.logLine)

    def test_explicitOlderProtocol(self) -> None:
        """
        An admin who names an older version gets it.
        """
        policy = self.levelPolicy("may", "smtp_tls_protocols = >=TLSv1")
        _, verdict = self.connect(
            policy, self.tls11Server()
        )
        self.assertDelivers(verdict, "Trusted")
        self.assertIn(": TLSv1.1 with cipher ", verdict.logLine)

    def test_mandatoryProtocols(self) -> None:
        """
        C{encrypt} and above use C{smtp_tls_mandatory_protocols}; C{may}
        uses C{smtp_tls_protocols}.
        """
        extra = "smtp_tls_mandatory_protocols = >=TLSv1.3\nsmtp_tls_protocols = <=TLSv1.2"
        server = self.server("mx.example.com", maximum=SSL.TLS1_2_VERSION)
        _, verdict = self.connect(self.levelPolicy("encrypt", extra), server)
        self.assertEqual(verdict.reason, "TLS handshake failed")
        _, verdict = self.connect(self.levelPolicy("may", extra), server)
        self.assertDelivers(verdict, "Trusted")
        _, verdict = self.connect(
            self.levelPolicy("may", extra), self.server("mx.example.com")
        )
        self.assertIn(": TLSv1.2 with cipher ", verdict.logLine)

    def test_ciphers(self) -> None:
        """
        The cipher grade and exclusions shape the TLS 1.2 cipher list;
        C{verify} and C{secure} also exclude anonymous ciphers.
        """

        def ciphers(policy: tls.ClientTLSPolicy) -> list[str]:
            assert policy.context is not None
            connection = SSL.Connection(policy.context, None)
            return [name for name in connection.get_cipher_list() if not name.startswith("TLS_")]

        default = ciphers(self.levelPolicy("may"))
        self.assertTrue(any("CHACHA20" in name for name in default))
        excluded = ciphers(self.levelPolicy("may", "smtp_tls_exclude_ciphers = CHACHA20"))
        self.assertFalse(any("CHACHA20" in name for name in excluded))
        # Mandatory exclusions apply only when TLS is required.
        extra = "smtp_tls_mandatory_exclude_ciphers = CHACHA20"
        self.assertTrue(any("CHACHA20" in name for name in ciphers(self.levelPolicy("may", extra))))
        self.assertFalse(
            any("CHACHA20" in name for name in ciphers(self.levelPolicy("encrypt", extra)))
        )
        for level in ("verify", "secure"):
            names = ciphers(self.levelPolicy(level))
            self.assertFalse(any(name.startswith(("ADH", "AECDH")) for name in names))

    def test_badProtocols(self) -> None:
        """
        A protocol list that enables nothing disables TLS at C{may} and is
        fatal at C{encrypt}.
        """
        policy = self.levelPolicy("may", "smtp_tls_protocols = TLSv1.1")
        # Named explicitly, so the older version is allowed: fine.
        self.assertEqual(policy.level, "may")
        policy = self.levelPolicy("may", "smtp_tls_protocols = !TLSv1.2 !TLSv1.3 !TLSv1 !TLSv1.1")
        self.assertEqual(policy.level, "none")
        self.assertIn("Invalid TLS protocol list", policy.warnings[-1])
        self.assertRaises(
            tls.TLSConfigurationError,
            self.levelPolicy,
            "encrypt",
            "smtp_tls_mandatory_protocols = bogus",
        )


# --- client certificate --------------------------------------------------------------


class ClientCertificateTests(ClientTLSTestCase):
    """
    C{smtp_tls_chain_files} and C{smtp_tls_cert_file}/C{smtp_tls_key_file}.
    """

    def clientChain(self) -> tuple[bytes, bytes, x509.Certificate]:
        key, certificate = self.ca.issue("client.example.org")
        keyPem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return keyPem, certificate.public_bytes(serialization.Encoding.PEM), certificate

    def askingServer(self) -> ServerCreator:
        server = self.server("mx.example.com")
        server.context.set_verify(SSL.VERIFY_PEER, lambda *args: True)
        return server

    def test_chainFiles(self) -> None:
        """
        The client presents the certificate of C{smtp_tls_chain_files}.
        """
        keyPem, certPem, certificate = self.clientChain()
        path = self.write("client.pem", keyPem + certPem)
        connection, verdict = self.connect(
            self.levelPolicy("encrypt", f"smtp_tls_chain_files = {path}"), self.askingServer()
        )
        self.assertTrue(verdict.satisfied)
        seen = connection.serverTLS.getHandle().get_peer_certificate(as_cryptography=True)
        self.assertEqual(seen, certificate)

    def test_legacyFiles(self) -> None:
        """
        The legacy cert/key pair works too; a missing key file disables TLS
        at C{may} and is fatal at C{encrypt}.
        """
        keyPem, certPem, certificate = self.clientChain()
        cert = self.write("cert.pem", certPem)
        key = self.write("key.pem", keyPem)
        connection, _ = self.connect(
            self.levelPolicy("may", f"smtp_tls_cert_file = {cert}\nsmtp_tls_key_file = {key}"),
            self.askingServer(),
        )
        seen = connection.serverTLS.getHandle().get_peer_certificate(as_cryptography=True)
        self.assertEqual(seen, certificate)
        policy = self.levelPolicy("may", f"smtp_tls_cert_file = {cert}")
        self.assertEqual(policy.level, "none")
        self.assertIn("no private key found", "\n".join(policy.warnings))
        self.assertRaises(
            tls.TLSConfigurationError, self.levelPolicy, "encrypt", f"smtp_tls_cert_file = {cert}"
        )


# --- renegotiation -------------------------------------------------------------------


class RenegotiationTests(ClientTLSTestCase):
    """
    A server that starts a second handshake on a TLS 1.2 session.
    """

    def renegotiate(self, connection: Connection) -> None:
        handle = connection.serverTLS.getHandle()
        handle.renegotiate()
        # The HelloRequest goes out with the next record the server writes.
        connection.serverTLS.write(b"250 after renegotiation\r\n")
        connection.settle()

    def test_refusedAndAborted(self) -> None:
        """
        The client refuses it, logs a warning naming the server and the
        next hop, aborts the connection on a later reactor turn (never
        inside OpenSSL's callback), and the verdict turns unsatisfied.
        """
        for level in ("may", "verify"):
            with capturedLogs() as events:
                connection, verdict = self.connect(
                    self.levelPolicy(level),
                    self.server("mx.example.com", maximum=SSL.TLS1_2_VERSION),
                )
                self.assertTrue(verdict.satisfied)
                handle = connection.clientTLS.getHandle()
                self.renegotiate(connection)
            lines = [formatEvent(event) for event in events]
            warnings = [line for line in lines if "renegotiation" in line]
            self.assertEqual(
                warnings,
                [
                    "warning: TLS renegotiation attempt by mx.example.com[192.0.2.1]:25"
                    " (next hop example.com): refused, aborting"
                ],
            )
            self.assertIsNotNone(connection.client.lost)
            self.assertEqual(handle.total_renegotiations(), 0)
            # The reply written with the HelloRequest may be delivered
            # before the abort: it is protected by the session's keys.
            # Nothing is exchanged afterwards.
            connection.serverTLS.write(b"later")
            connection.settle()
            self.assertNotIn(b"later", connection.client.received)

    def test_verdictAfterRenegotiation(self) -> None:
        """
        After a refused renegotiation the verdict says to stop.
        """
        policy = self.levelPolicy("encrypt")
        with capturedLogs():
            connection, _ = self.connect(
                policy, self.server("mx.example.com", maximum=SSL.TLS1_2_VERSION)
            )
            self.renegotiate(connection)
        verdict = policy.verdict(connection.clientTLS)
        self.assertFalse(verdict.satisfied)
        self.assertEqual(verdict.reason, "TLS renegotiation attempted by the server")

    def test_abortIsDeferred(self) -> None:
        """
        The client itself cuts the connection (not only the server after
        the refusal alert), and does it from the reactor on the next turn,
        not inside OpenSSL's info callback.
        """
        policy = self.levelPolicy("may")
        with capturedLogs() as events:
            connection, _ = self.connect(
                policy, self.server("mx.example.com", maximum=SSL.TLS1_2_VERSION)
            )
            connection.serverTLS.getHandle().renegotiate()
            connection.serverTLS.write(b"x")
            self.clock.advance(0)  # Twisted's write aggregation
            # Deliver the HelloRequest without running any timed call.
            connection.pump.pump(advanceClock=False)
            self.assertEqual(len([e for e in events if "renegotiation" in formatEvent(e)]), 1)
            clientTransport = connection.clientTLS.transport
            self.assertFalse(clientTransport.disconnecting)
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
            self.clock.advance(0)
            self.assertTrue(clientTransport.disconnecting)
            connection.settle()
        self.assertIsNotNone(connection.client.lost)

    def test_tls13PostHandshakeMessages(self) -> None:
        """
        TLS 1.3 has no renegotiation; its post-handshake messages (session
        tickets) are not mistaken for one.
        """
        with capturedLogs() as events:
            connection, verdict = self.connect(
                self.levelPolicy("may"), self.server("mx.example.com")
            )
            connection.serverTLS.write(b"250 ok\r\n")
            connection.settle()
        self.assertTrue(verdict.satisfied)
        self.assertIsNone(connection.client.lost)
        self.assertEqual(connection.client.received, b"250 ok\r\n")
        self.assertFalse([e for e in events if "renegotiation" in formatEvent(e)])


# --- verdict details -----------------------------------------------------------------


class VerdictTests(ClientTLSTestCase):
    """
    L{tls.ClientTLSPolicy.verdict} on its own.
    """

    def test_foreignConnection(self) -> None:
        """
        A connection the policy did not make is refused.
        """
        policy = self.levelPolicy("may")
        other = self.levelPolicy("may")
        connection, _ = self.connect(policy, self.server("mx.example.com"))
        self.assertRaises(ValueError, other.verdict, connection.clientTLS)

    def test_peerNameOverride(self) -> None:
        """
        The caller may name the server itself.
        """
        policy = self.levelPolicy("may")
        connection, _ = self.connect(policy, self.server("mx.example.com"))
        verdict = policy.verdict(connection.clientTLS, peerName="relay.example[203.0.113.5]:587")
        self.assertTrue(
            verdict.logLine.startswith(
                "Trusted TLS connection established to relay.example[203.0.113.5]:587: TLSv1.3"
            )
        )
