"""
Tests for L{mtaguard.tls} (server TLS from Postfix parameters) and
L{mtaguard._certificate} (C{mtaguard-tls new-server-cert}).

Contexts are checked by what they do: an in-memory handshake against a
client limited to a protocol version or cipher, not by reading options.
"""

from __future__ import annotations

import io
import os
import re
import stat
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mtaguard import _certificate, tls
from mtaguard.config import ParameterView, parseConfiguration

_KEYS: dict[tuple[str, bool], tuple[bytes, bytes]] = {}


def keyAndCert(hostname: str = "mx.test.example", ecdsa: bool = True) -> tuple[bytes, bytes]:
    """
    A cached key and self-signed certificate: RSA generation is slow
    enough to matter when every test makes one.
    """
    if (hostname, ecdsa) not in _KEYS:
        _KEYS[(hostname, ecdsa)] = _certificate.makeSelfSigned(hostname, 30, ecdsa=ecdsa)
    return _KEYS[(hostname, ecdsa)]


def viewFor(directory: str, mainCf: str) -> ParameterView:
    """
    The main.cf view of C{mainCf}, as if it lived in C{directory}.
    """
    return parseConfiguration(directory, mainCf, "").view()


def handshake(
    server: SSL.Context,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    ciphers: str | None = None,
) -> SSL.Connection | None:
    """
    Run a TLS handshake in memory between C{server} and a client limited to
    the given versions and TLS 1.2 ciphers.

    @return: the server's connection if the handshake completed, else
        L{None}.
    """
    clientContext = SSL.Context(SSL.TLS_METHOD)
    clientContext.set_verify(SSL.VERIFY_NONE)
    if minimum is not None:
        clientContext.set_min_proto_version(minimum)
    if maximum is not None:
        clientContext.set_max_proto_version(maximum)
    # Level 0 on the client, so that a refusal is the server's doing.
    clientContext.set_cipher_list(((ciphers or "ALL") + ":@SECLEVEL=0").encode())
    client = SSL.Connection(clientContext, None)
    client.set_connect_state()
    serverConnection = SSL.Connection(server, None)
    serverConnection.set_accept_state()
    done = [False, False]
    for _ in range(20):
        for index, (one, other) in enumerate(
            [(client, serverConnection), (serverConnection, client)]
        ):
            if not done[index]:
                try:
                    one.do_handshake()
                    done[index] = True
                except SSL.WantReadError:
                    pass
                except SSL.Error:
                    return None
            try:
                other.bio_write(one.bio_read(65536))
            except SSL.WantReadError:
                pass
        if all(done):
            return serverConnection
    return None


class ProtocolRangeTests(SynchronousTestCase):
    """
    L{tls.protocolRange} reads Postfix's protocol lists.
    """

    def test_exclusions(self) -> None:
        """
        Exclusions leave everything else; SSLv2 and SSLv3 never count.
        """
        result = tls.protocolRange(["!SSLv2, !SSLv3, !TLSv1, !TLSv1.1"])
        self.assertEqual(
            (result.minimum, result.maximum, result.namesOlder),
            (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION, False),
        )
        result = tls.protocolRange(["!SSLv2", "!SSLv3"])
        self.assertEqual((result.minimum, result.namesOlder), (SSL.TLS1_VERSION, False))

    def test_bounds(self) -> None:
        """
        C{>=} and C{<=} set the range, also in hex.
        """
        result = tls.protocolRange([">=TLSv1.2"])
        self.assertEqual((result.minimum, result.maximum), (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION))
        result = tls.protocolRange([">=0x0303", "<=TLSv1.2"])
        self.assertEqual((result.minimum, result.maximum), (SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION))
        self.assertTrue(tls.protocolRange([">=TLSv1"]).namesOlder)
        self.assertTrue(tls.protocolRange([">=tlsv1.1"]).namesOlder)

    def test_inclusions(self) -> None:
        """
        An inclusion list excludes the versions it does not name; a gap
        disables what lies below it.
        """
        result = tls.protocolRange(["TLSv1.2"])
        self.assertEqual((result.minimum, result.maximum), (SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION))
        result = tls.protocolRange(["TLSv1:TLSv1.2:TLSv1.3"])
        self.assertEqual((result.minimum, result.maximum), (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION))
        self.assertTrue(result.namesOlder)

    def test_invalid(self) -> None:
        """
        Unknown names and lists that leave nothing raise.
        """
        self.assertRaises(tls.InvalidProtocols, tls.protocolRange, ["TLSv9"])
        self.assertRaises(tls.InvalidProtocols, tls.protocolRange, [">=TLSv9"])
        self.assertRaises(
            tls.InvalidProtocols, tls.protocolRange, ["!TLSv1.2", "!TLSv1.3", ">=TLSv1.2"]
        )


class CipherListTests(SynchronousTestCase):
    """
    L{tls.cipherList} builds Postfix's cipher strings.
    """

    def test_gradeAndExclusions(self) -> None:
        """
        The grade's list, then C{:!name} per exclusion.
        """
        view = viewFor("/nonexistent", "")
        self.assertEqual(
            tls.cipherList(view, "medium", ["aNULL", "RC4"]),
            "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH:!aNULL:!RC4",
        )
        view = viewFor("/nonexistent", "tls_high_cipherlist = HIGH:!MD5\n")
        self.assertEqual(tls.cipherList(view, "high", []), "HIGH:!MD5")

    def test_invalid(self) -> None:
        """
        An exclusion with C{+-!} or an unknown grade is refused.
        """
        view = viewFor("/nonexistent", "")
        self.assertRaises(ValueError, tls.cipherList, view, "medium", ["!RC4"])
        self.assertRaises(ValueError, tls.cipherList, view, "superb", [])


class ServerTLSTestsMixin:
    """
    Temporary configuration directories with certificates.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()  # type: ignore[attr-defined]
        os.makedirs(self.directory)
        self.clock = Clock()

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def chainFile(self, ecdsa: bool = True) -> str:
        key, cert = keyAndCert(ecdsa=ecdsa)
        return self.write("rsa.pem" if not ecdsa else "ecdsa.pem", key + cert)

    def build(self, mainCf: str) -> tls.ServerTLS:
        return tls.serverTLS(viewFor(self.directory, mainCf), reactor=self.clock)

    def context(self, mainCf: str) -> SSL.Context:
        result = self.build(mainCf)
        assert result.creator is not None, result.warnings
        return result.creator.context


class LevelTests(ServerTLSTestsMixin, SynchronousTestCase):
    """
    The security level and wrapper mode decide whether TLS is on and how
    problems are treated.
    """

    def test_none(self) -> None:
        """
        Empty (with the obsolete booleans off) and C{none} mean no TLS, even
        with a certificate.
        """
        chain = self.chainFile()
        for level in ("", "none"):
            result = self.build(
                f"smtpd_tls_security_level = {level}\nsmtpd_tls_chain_files = {chain}\n"
            )
            self.assertEqual((result.level, result.creator, result.required), ("none", None, False))

    def test_obsoleteBooleans(self) -> None:
        """
        With an empty level, C{smtpd_use_tls} means may and
        C{smtpd_enforce_tls} encrypt.
        """
        chain = self.chainFile()
        result = self.build(f"smtpd_use_tls = yes\nsmtpd_tls_chain_files = {chain}\n")
        self.assertEqual(result.level, "may")
        self.assertIsNotNone(result.creator)
        result = self.build(f"smtpd_enforce_tls = yes\nsmtpd_tls_chain_files = {chain}\n")
        self.assertEqual((result.level, result.required), ("encrypt", True))

    def test_unsupportedLevels(self) -> None:
        """
        C{verify} and friends are server-side C{encrypt}, with Postfix's
        warning.
        """
        chain = self.chainFile()
        result = self.build(
            f"smtpd_tls_security_level = verify\nsmtpd_tls_chain_files = {chain}\n"
        )
        self.assertEqual(result.level, "encrypt")
        self.assertEqual(
            result.warnings,
            ('warning: smtpd_tls_security_level: unsupported TLS level "verify", using "encrypt"',),
        )

    def test_creator(self) -> None:
        """
        The creator provides L{IOpenSSLServerConnectionCreator}, and every
        connection it makes refuses renegotiation.
        """
        result = self.build(
            f"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {self.chainFile()}\n"
        )
        creator = result.creator
        assert creator is not None
        verifyObject(IOpenSSLServerConnectionCreator, creator)
        connection = creator.serverConnectionForTLS(object())
        self.assertTrue(connection.set_options(0) & SSL.OP_NO_RENEGOTIATION)

    def test_serverTLSOptions(self) -> None:
        """
        L{tls.serverTLSOptions} returns the creator and hands warnings to
        C{warn}, or logs them.
        """
        mainCf = "smtpd_tls_security_level = may\n"
        warned: list[str] = []
        self.assertIsNone(
            tls.serverTLSOptions(viewFor(self.directory, mainCf), reactor=self.clock, warn=warned.append)
        )
        self.assertEqual(warned, ["warning: No server certs available. TLS won't be enabled"])
        with capturedLogs() as events:
            tls.serverTLSOptions(viewFor(self.directory, mainCf), reactor=self.clock)
        self.assertEqual(
            [formatEvent(event) for event in events],
            ["warning: No server certs available. TLS won't be enabled"],
        )


class CertificateProblemTests(ServerTLSTestsMixin, SynchronousTestCase):
    """
    Missing or bad certificates: a warning and no TLS at C{may}, a fatal
    L{tls.TLSConfigurationError} naming the parameter when TLS is required.
    """

    def assertDisabled(self, mainCf: str, warning: str) -> None:
        result = self.build("smtpd_tls_security_level = may\n" + mainCf)
        self.assertIsNone(result.creator)
        self.assertIn(warning, result.warnings)

    def assertFatal(self, mainCf: str, parameter: str) -> tls.TLSConfigurationError:
        error = self.assertRaises(
            tls.TLSConfigurationError,
            self.build,
            "smtpd_tls_security_level = encrypt\n" + mainCf,
        )
        self.assertEqual(error.parameter, parameter)
        self.assertIn(parameter, str(error))
        self.assertNotIn("\n", str(error))
        return error

    def test_noCertificate(self) -> None:
        """
        No certificate at all.
        """
        self.assertDisabled("", "warning: No server certs available. TLS won't be enabled")
        error = self.assertFatal("", "smtpd_tls_chain_files")
        self.assertIn("smtpd_tls_security_level = encrypt", str(error))

    def test_wrapperModeRequiresTLS(self) -> None:
        """
        Wrapper mode needs a certificate whatever the level.
        """
        error = self.assertRaises(
            tls.TLSConfigurationError, self.build, "smtpd_tls_wrappermode = yes\n"
        )
        self.assertIn("smtpd_tls_wrappermode = yes", str(error))
        result = self.build(f"smtpd_tls_wrappermode = yes\nsmtpd_tls_chain_files = {self.chainFile()}\n")
        self.assertTrue(result.required)
        self.assertIsNotNone(result.creator)

    def test_missingChainFile(self) -> None:
        """
        A chain file that does not exist.
        """
        missing = os.path.join(self.directory, "missing.pem")
        mainCf = f"smtpd_tls_chain_files = {missing}\n"
        self.assertDisabled(
            mainCf,
            f"warning: error loading private keys and certificates from: {missing}:"
            " disabling TLS support",
        )
        error = self.assertFatal(mainCf, "smtpd_tls_chain_files")
        self.assertIn("No such file or directory", str(error))
        self.assertIn("main.cf, line 2:", str(error))

    def test_unreadableChainFile(self) -> None:
        """
        A path that cannot be read as a file (root reads anything, so a
        directory stands in for a file without permission).
        """
        mainCf = f"smtpd_tls_chain_files = {self.directory}\n"
        self.assertFatal(mainCf, "smtpd_tls_chain_files")

    def test_garbledChainFile(self) -> None:
        """
        Damaged PEM, or a key without its certificate.
        """
        key, cert = keyAndCert()
        garbled = self.write("garbled.pem", key.replace(b"\n", b"\nXX", 3) + cert)
        self.assertFatal(f"smtpd_tls_chain_files = {garbled}\n", "smtpd_tls_chain_files")
        keyOnly = self.write("key.pem", key)
        error = self.assertFatal(f"smtpd_tls_chain_files = {keyOnly}\n", "smtpd_tls_chain_files")
        self.assertIn("private key without a certificate", str(error))
        empty = self.write("empty.pem", b"nothing here\n")
        self.assertFatal(f"smtpd_tls_chain_files = {empty}\n", "smtpd_tls_chain_files")

    def test_mismatchedChain(self) -> None:
        """
        A key followed by someone else's certificate.
        """
        key, _ = keyAndCert()
        _, other = keyAndCert("other.example")
        path = self.write("mixed.pem", key + other)
        error = self.assertFatal(f"smtpd_tls_chain_files = {path}\n", "smtpd_tls_chain_files")
        self.assertIn("does not match", str(error))

    def test_legacyMissingKey(self) -> None:
        """
        C{smtpd_tls_cert_file} readable, C{smtpd_tls_key_file} not: Postfix's
        C{cannot get RSA private key} warning.
        """
        _, cert = keyAndCert(ecdsa=False)
        certFile = self.write("cert.pem", cert)
        keyFile = os.path.join(self.directory, "nokey.pem")
        mainCf = f"smtpd_tls_cert_file = {certFile}\nsmtpd_tls_key_file = {keyFile}\n"
        self.assertDisabled(
            mainCf,
            f'warning: cannot get RSA private key from file "{keyFile}": disabling TLS support',
        )
        self.assertFatal(mainCf, "smtpd_tls_key_file")

    def test_legacyMissingCert(self) -> None:
        """
        A missing certificate file.
        """
        certFile = os.path.join(self.directory, "nocert.pem")
        mainCf = f"smtpd_tls_cert_file = {certFile}\n"
        self.assertDisabled(
            mainCf,
            f'warning: cannot get RSA certificate from file "{certFile}": disabling TLS support',
        )
        self.assertFatal(mainCf, "smtpd_tls_cert_file")

    def test_legacyMismatch(self) -> None:
        """
        Key and certificate files that do not belong together.
        """
        key, _ = keyAndCert(ecdsa=False)
        _, cert = keyAndCert("other.example")
        certFile = self.write("c.pem", cert)
        keyFile = self.write("k.pem", key)
        self.assertFatal(
            f"smtpd_tls_cert_file = {certFile}\nsmtpd_tls_key_file = {keyFile}\n",
            "smtpd_tls_key_file",
        )

    def test_badProtocolsAndCiphers(self) -> None:
        """
        Parameter values that cannot work are treated like certificate
        problems.
        """
        chain = f"smtpd_tls_chain_files = {self.chainFile()}\n"
        self.assertDisabled(
            chain + "smtpd_tls_protocols = TLSv9\n",
            'warning: Invalid TLS protocol list "TLSv9": disabling TLS support',
        )
        self.assertFatal(chain + "smtpd_tls_mandatory_protocols = <=TLSv1.1\n", "smtpd_tls_mandatory_protocols")
        self.assertFatal(chain + "smtpd_tls_mandatory_exclude_ciphers = !RC4\n", "smtpd_tls_mandatory_ciphers")
        self.assertFatal(chain + "tls_medium_cipherlist = NOTHING-MATCHES\n", "smtpd_tls_mandatory_ciphers")


class CertificateSourceTests(ServerTLSTestsMixin, SynchronousTestCase):
    """
    The forms of certificate configuration Postfix accepts.
    """

    def test_legacyPair(self) -> None:
        """
        C{smtpd_tls_cert_file} with the key in the same file (the default
        C{smtpd_tls_key_file = $smtpd_tls_cert_file}).
        """
        key, cert = keyAndCert(ecdsa=False)
        both = self.write("both.pem", cert + key)
        self.assertIsNotNone(handshake(self.context(f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {both}\n")))

    def test_keyAfterCertificate(self) -> None:
        """
        C{smtpd_tls_chain_files = cert.pem, key.pem}: the key may follow its
        certificate.
        """
        key, cert = keyAndCert()
        certFile = self.write("cert.pem", cert)
        keyFile = self.write("key.pem", key)
        context = self.context(f"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {certFile}, {keyFile}\n")
        self.assertIsNotNone(handshake(context))

    def test_twoKeyTypes(self) -> None:
        """
        An ECDSA and an RSA chain: clients of either kind are served.
        """
        ecKey, ecCert = keyAndCert()
        rsaKey, rsaCert = keyAndCert(ecdsa=False)
        path = self.write("both.pem", ecKey + ecCert + rsaKey + rsaCert)
        context = self.context(f"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {path}\n")
        for cipher in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"):
            connection = handshake(context, maximum=SSL.TLS1_2_VERSION, ciphers=cipher)
            assert connection is not None, cipher
            self.assertEqual(connection.get_cipher_name(), cipher)

    def test_chainAndLegacyBothSet(self) -> None:
        """
        The chain files win, with Postfix's warning.
        """
        result = self.build(
            f"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {self.chainFile()}\n"
            "smtpd_tls_cert_file = /nonexistent/cert.pem\n"
        )
        self.assertIsNotNone(result.creator)
        self.assertEqual(len(result.warnings), 1)
        self.assertIn("the legacy parameters will be ignored", result.warnings[0])


class ProtocolAndCipherEffectTests(ServerTLSTestsMixin, SynchronousTestCase):
    """
    What the protocol and cipher parameters do to real handshakes.
    """

    def mainCf(self, extra: str = "", level: str = "may") -> str:
        return (
            f"smtpd_tls_security_level = {level}\n"
            f"smtpd_tls_chain_files = {self.chainFile(ecdsa=False)}\n" + extra
        )

    def test_defaultsMeanTLS12(self) -> None:
        """
        Postfix's default protocols (C{>=TLSv1}) still give TLS 1.2 as the
        minimum: a TLS 1.1 client is refused, 1.2 and 1.3 work.
        """
        for level in ("may", "encrypt"):
            context = self.context(self.mainCf(level=level))
            self.assertIsNone(handshake(context, maximum=SSL.TLS1_1_VERSION))
            connection = handshake(context, maximum=SSL.TLS1_2_VERSION)
            assert connection is not None
            self.assertEqual(connection.get_protocol_version_name(), "TLSv1.2")
            connection = handshake(context)
            assert connection is not None
            self.assertEqual(connection.get_protocol_version_name(), "TLSv1.3")

    def test_exclusionsAloneKeepTLS12(self) -> None:
        """
        An old C{!SSLv2, !SSLv3} list does not name an older version, so the
        TLS 1.2 minimum stays.
        """
        context = self.context(self.mainCf("smtpd_tls_protocols = !SSLv2, !SSLv3\n"))
        self.assertIsNone(handshake(context, maximum=SSL.TLS1_1_VERSION))

    def test_explicitLowerMinimum(self) -> None:
        """
        An admin who writes C{>=TLSv1} gets TLS 1.1 (at OpenSSL security
        level 0, which TLS before 1.2 needs).
        """
        context = self.context(self.mainCf("smtpd_tls_protocols = >=TLSv1\n"))
        connection = handshake(context, minimum=SSL.TLS1_1_VERSION, maximum=SSL.TLS1_1_VERSION)
        assert connection is not None
        self.assertEqual(connection.get_protocol_version_name(), "TLSv1.1")

    def test_raisedMinimum(self) -> None:
        """
        C{>=TLSv1.3} refuses TLS 1.2.
        """
        context = self.context(self.mainCf("smtpd_tls_protocols = >=TLSv1.3\n"))
        self.assertIsNone(handshake(context, maximum=SSL.TLS1_2_VERSION))
        self.assertIsNotNone(handshake(context))

    def test_mandatoryProtocols(self) -> None:
        """
        C{smtpd_tls_mandatory_protocols} applies at C{encrypt} only.
        """
        extra = "smtpd_tls_mandatory_protocols = >=TLSv1.3\n"
        self.assertIsNotNone(handshake(self.context(self.mainCf(extra)), maximum=SSL.TLS1_2_VERSION))
        self.assertIsNone(
            handshake(self.context(self.mainCf(extra, level="encrypt")), maximum=SSL.TLS1_2_VERSION)
        )

    def test_maximum(self) -> None:
        """
        C{<=TLSv1.2} keeps TLS 1.3 off.
        """
        connection = handshake(self.context(self.mainCf("smtpd_tls_protocols = <=TLSv1.2\n")))
        assert connection is not None
        self.assertEqual(connection.get_protocol_version_name(), "TLSv1.2")

    def tls12Ciphers(self, context: SSL.Context) -> list[str]:
        return [
            name
            for name in SSL.Connection(context, None).get_cipher_list()
            if not name.startswith("TLS_")
        ]

    def test_exclusions(self) -> None:
        """
        C{smtpd_tls_exclude_ciphers} removes ciphers at every level;
        C{smtpd_tls_mandatory_exclude_ciphers} only when TLS is required.
        """
        plain = self.tls12Ciphers(self.context(self.mainCf()))
        self.assertTrue([name for name in plain if "AES256" in name])
        excluded = self.tls12Ciphers(self.context(self.mainCf("smtpd_tls_exclude_ciphers = AES256\n")))
        self.assertTrue(excluded)
        self.assertEqual([name for name in excluded if "AES256" in name], [])
        context = self.context(self.mainCf("smtpd_tls_exclude_ciphers = AES256\n"))
        self.assertIsNone(
            handshake(context, maximum=SSL.TLS1_2_VERSION, ciphers="ECDHE-RSA-AES256-GCM-SHA384")
        )
        extra = "smtpd_tls_mandatory_exclude_ciphers = CHACHA20\n"
        self.assertTrue([n for n in self.tls12Ciphers(self.context(self.mainCf(extra))) if "CHACHA20" in n])
        self.assertEqual(
            [n for n in self.tls12Ciphers(self.context(self.mainCf(extra, "encrypt"))) if "CHACHA20" in n],
            [],
        )

    def test_grades(self) -> None:
        """
        The grade picks the C{tls_*_cipherlist}: at C{high}, MEDIUM-only
        ciphers go; the mandatory grade applies at C{encrypt}.
        """
        extra = "tls_high_cipherlist = ECDHE+AESGCM\nsmtpd_tls_mandatory_ciphers = high\n"
        mandatory = self.tls12Ciphers(self.context(self.mainCf(extra, "encrypt")))
        self.assertTrue(mandatory)
        self.assertEqual([n for n in mandatory if not re.match(r"ECDHE-.*AES.*GCM", n)], [])
        opportunistic = self.tls12Ciphers(self.context(self.mainCf(extra)))
        self.assertTrue([n for n in opportunistic if "GCM" not in n])

    def test_preemptCipherlist(self) -> None:
        """
        C{tls_preempt_cipherlist} sets server cipher preference.
        """
        connection = SSL.Connection(self.context(self.mainCf("tls_preempt_cipherlist = yes\n")), None)
        self.assertTrue(connection.set_options(0) & SSL.OP_CIPHER_SERVER_PREFERENCE)
        connection = SSL.Connection(self.context(self.mainCf()), None)
        self.assertFalse(connection.set_options(0) & SSL.OP_CIPHER_SERVER_PREFERENCE)

    def test_sslOptions(self) -> None:
        """
        C{tls_ssl_options} names and masks are applied, except the bit
        that would allow client renegotiation.
        """
        result = self.build(self.mainCf("tls_ssl_options = PRIORITIZE_CHACHA, 0x100, BOGUS\n"))
        assert result.creator is not None
        options = SSL.Connection(result.creator.context, None).set_options(0)
        self.assertTrue(options & (1 << 21))
        self.assertFalse(options & 0x100)
        self.assertTrue(options & SSL.OP_NO_RENEGOTIATION)
        self.assertEqual(len(result.warnings), 2)


class FakeTransport:
    """
    A transport after a TLS handshake, for L{tls.peerTLSSummary}.
    """

    def __init__(self, connection: SSL.Connection) -> None:
        self._connection = connection

    def getHandle(self) -> SSL.Connection:
        return self._connection

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)


class SummaryTests(ServerTLSTestsMixin, SynchronousTestCase):
    """
    L{tls.peerTLSSummary} logs the handshake as Postfix does.
    """

    def test_tls13(self) -> None:
        """
        Anonymous TLS 1.3 with an ECDSA key.
        """
        context = self.context(f"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {self.chainFile()}\n")
        connection = handshake(context, ciphers=None)
        assert connection is not None
        summary = tls.peerTLSSummary(FakeTransport(connection))  # type: ignore[arg-type]
        self.assertRegex(
            summary,
            r"^Anonymous TLS connection established from unknown\[127\.0\.0\.1\]: TLSv1\.3"
            r" with cipher TLS_\w+ \((\d+)/\1 bits\)( key-exchange \S+)?"
            r" server-signature ECDSA \(P-256\)$",
        )

    def test_tls12RSA(self) -> None:
        """
        TLS 1.2 with an RSA key, and a peer name from the caller.
        """
        context = self.context(
            f"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {self.chainFile(ecdsa=False)}\n"
        )
        connection = handshake(context, maximum=SSL.TLS1_2_VERSION, ciphers="ECDHE-RSA-AES256-GCM-SHA384")
        assert connection is not None
        summary = tls.peerTLSSummary(FakeTransport(connection), "client.example[192.0.2.1]")  # type: ignore[arg-type]
        self.assertTrue(
            summary.startswith(
                "Anonymous TLS connection established from client.example[192.0.2.1]:"
                " TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)"
            ),
            summary,
        )
        self.assertTrue(summary.endswith(" server-signature RSA (2048 bits)"), summary)


class NewServerCertTests(SynchronousTestCase):
    """
    C{mtaguard-tls new-server-cert}.
    """

    def run_(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = _certificate.main(list(argv), out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    def test_creates(self) -> None:
        """
        A 0600 chain file under C{DIR/tls}, for C{myhostname} from main.cf,
        and the main.cf lines that use it; the result loads.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "main.cf"), "w") as handle:
            handle.write("myhostname = mx.from-main.example\n")
        status, out, err = self.run_("new-server-cert", "-c", directory, "--days", "10")
        self.assertEqual((status, err), (0, ""))
        path = os.path.join(os.path.abspath(directory), "tls", "server-rsa.pem")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertIn(f"smtpd_tls_chain_files = {path}\n", out)
        self.assertIn("smtpd_tls_security_level = may\n", out)
        self.assertEqual(os.listdir(os.path.dirname(path)), ["server-rsa.pem"])
        from cryptography import x509

        with open(path, "rb") as handle:
            data = handle.read()
        self.assertTrue(data.startswith(b"-----BEGIN PRIVATE KEY-----"))
        certificate = x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN CERTIFICATE") :])
        self.assertEqual(
            certificate.subject.rfc4514_string(), "CN=mx.from-main.example"
        )
        lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        self.assertEqual(lifetime.days, 10)
        mainCf = "".join(line + "\n" for line in out.splitlines() if not line.startswith("#"))
        result = tls.serverTLS(viewFor(directory, mainCf), reactor=Clock())
        self.assertIsNotNone(result.creator)

    def test_refusesToOverwrite(self) -> None:
        """
        An existing file is kept unless C{--force}; C{--ecdsa} and
        C{--hostname} choose key type and name.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        args = ("new-server-cert", "-c", directory, "--hostname", "h.example", "--ecdsa")
        self.assertEqual(self.run_(*args)[0], 0)
        path = os.path.join(os.path.abspath(directory), "tls", "server-ecdsa.pem")
        with open(path, "rb") as handle:
            first = handle.read()
        status, _, err = self.run_(*args)
        self.assertEqual(status, 1)
        self.assertIn("exists: use --force", err)
        self.assertEqual(self.run_(*args, "--force")[0], 0)
        with open(path, "rb") as handle:
            self.assertNotEqual(handle.read(), first)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_usage(self) -> None:
        """
        Bad usage and a missing directory fail with a message.
        """
        self.assertEqual(self.run_()[0], 2)
        status, _, err = self.run_("new-server-cert", "-c", "/nonexistent/dir")
        self.assertEqual(status, 1)
        self.assertIn("mtaguard-tls: fatal: ", err)
