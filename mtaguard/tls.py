# -*- test-case-name: tests.test_tls,tests.test_renegotiation -*-
"""
TLS contexts: the only place in mtaguard that builds them.

The server side follows Postfix's smtpd(8) parameters: the security level
(C{smtpd_tls_security_level}, or the obsolete C{smtpd_use_tls} and
C{smtpd_enforce_tls}), wrapper mode, certificates from
C{smtpd_tls_chain_files} or the legacy C{*_cert_file}/C{*_key_file} pairs,
protocol ranges in Postfix syntax and cipher grades.  Two things differ on
purpose:

  - with the default protocol settings the minimum is TLS 1.2 (Twisted's
    default), not Postfix's C{>=TLSv1}; an admin who names an older version
    in C{smtpd_tls_protocols} (for example C{>=TLSv1}) gets it;
  - client-initiated renegotiation is always refused and the connection
    aborted (L{NoRenegotiationServerCreator}), whatever C{tls_ssl_options}
    says.

A certificate problem disables TLS with a warning at level C{may}, as
Postfix does, and is fatal (L{TLSConfigurationError}) when TLS is required
(level C{encrypt} or wrapper mode), where Postfix would instead run and turn
every client away.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import attr
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from OpenSSL import SSL
from twisted.internet.interfaces import (
    IOpenSSLServerConnectionCreator,
    IReactorTime,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.randbytes import secureRandom
from zope.interface import Attribute, Interface, implementer

from mtaguard.config import ParameterView, params

if TYPE_CHECKING:
    from twisted.protocols.tls import TLSMemoryBIOProtocol

log = Logger(namespace="mtaguard.tls")

__all__ = [
    "IPeerName",
    "NoRenegotiationServerCreator",
    "ServerTLS",
    "TLSConfigurationError",
    "cipherList",
    "peerTLSSummary",
    "protocolRange",
    "serverTLS",
    "serverTLSOptions",
]


class TLSConfigurationError(Exception):
    """
    TLS is required but cannot be set up.  C{str()} is one line naming the
    parameter (and, where known, the main.cf or master.cf line) at fault.

    @ivar parameter: the name of the parameter at fault.
    """

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(message)


class _Disabled(Exception):
    """
    TLS cannot be set up: what Postfix logs when it disables TLS support.

    @ivar parameter: the parameter at fault.
    @ivar warnings: the Postfix-style warning lines, most specific last.
    @ivar reason: a one-line explanation for L{TLSConfigurationError}.
    """

    def __init__(self, parameter: str, warnings: Sequence[str], reason: str) -> None:
        self.parameter = parameter
        self.warnings = tuple(warnings)
        self.reason = reason
        super().__init__(reason)


class IPeerName(Interface):
    """
    A protocol that knows its client's name in Postfix's log form.

    L{NoRenegotiationServerCreator} uses it, when the protocol wrapped by
    TLS provides it, to name the peer in its warning; otherwise it logs
    C{unknown[address]}.
    """

    peerName = Attribute("The client as Postfix logs it: C{name[address]}.")


# --- protocol versions ------------------------------------------------------

#: Postfix's protocol names, lowest first, with OpenSSL's version numbers.
#: SSLv2 and SSLv3 are known to the parser but never enabled: OpenSSL no
#: longer implements them.
_VERSIONS: tuple[tuple[str, int], ...] = (
    ("SSLv2", 0x0200),
    ("SSLv3", SSL.SSL3_VERSION),
    ("TLSv1", SSL.TLS1_VERSION),
    ("TLSv1.1", SSL.TLS1_1_VERSION),
    ("TLSv1.2", SSL.TLS1_2_VERSION),
    ("TLSv1.3", SSL.TLS1_3_VERSION),
)
_VERSION_BY_NAME = {name.lower(): number for name, number in _VERSIONS}
_NAME_BY_VERSION = {number: name for name, number in _VERSIONS}
_IMPLEMENTED = (SSL.TLS1_VERSION, SSL.TLS1_1_VERSION, SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION)

#: The lowest version used unless the admin names an older one: Twisted's
#: own default minimum (C{twisted.internet.ssl.TLSVersion.TLSv1_2}).
DEFAULT_MINIMUM = SSL.TLS1_2_VERSION


class InvalidProtocols(ValueError):
    """
    A protocol list does not parse or enables no version.
    """


def _versionBound(token: str) -> int:
    number = _VERSION_BY_NAME.get(token.lower())
    if number is not None:
        return number
    if re.fullmatch(r"0[xX][0-9a-fA-F]{1,4}", token):
        return int(token, 16)
    raise InvalidProtocols(f"invalid TLS protocol version bound: {token}")


@attr.s(frozen=True, auto_attribs=True)
class ProtocolRange:
    """
    The TLS versions a protocol list enables.

    @ivar minimum: the lowest enabled version (an OpenSSL version number).
    @ivar maximum: the highest enabled version.
    @ivar namesOlder: whether the list names a version older than
        L{DEFAULT_MINIMUM} as allowed (C{>=TLSv1}, C{TLSv1.1}, ...), rather
        than only leaving it out of its exclusions.
    """

    minimum: int
    maximum: int
    namesOlder: bool


def protocolRange(items: Iterable[str]) -> ProtocolRange:
    """
    Parse a Postfix protocol list (C{smtpd_tls_protocols}): exclusions
    (C{!SSLv3}), inclusions (C{TLSv1.2}), bounds (C{>=TLSv1.2},
    C{<=TLSv1.3}, C{>=0x0303}), separated by commas, spaces or colons.

    As with Postfix, an inclusion list excludes every known version it does
    not name.  A gap (C{TLSv1, !TLSv1.1, TLSv1.2}) cannot be expressed as a
    range: the versions below it are disabled too, which never enables a
    version the admin excluded.

    @raise InvalidProtocols: for an unknown name or when nothing is left.
    """
    floor = 0
    ceiling = 0
    include: set[int] = set()
    exclude: set[int] = set()
    namesOlder = False
    for item in items:
        for token in filter(None, re.split(r"[\s,:]+", item)):
            if token.startswith(">="):
                floor = _versionBound(token[2:])
                namesOlder |= floor < DEFAULT_MINIMUM
            elif token.startswith("<="):
                ceiling = _versionBound(token[2:])
            else:
                negated = token.startswith("!")
                name = token[1:] if negated else token
                number = _VERSION_BY_NAME.get(name.lower())
                if number is None:
                    raise InvalidProtocols(f"invalid TLS protocol name: {name}")
                if negated:
                    exclude.add(number)
                else:
                    include.add(number)
                    namesOlder |= number < DEFAULT_MINIMUM
    if include:
        exclude |= {number for _, number in _VERSIONS} - include
    enabled = [
        number
        for number in _IMPLEMENTED
        if number not in exclude and number >= floor and (not ceiling or number <= ceiling)
    ]
    if not enabled:
        raise InvalidProtocols("no TLS protocol version is enabled")
    maximum = enabled[-1]
    minimum = maximum
    # Walk down from the top while the versions stay contiguous.
    for number in reversed(_IMPLEMENTED[: _IMPLEMENTED.index(maximum)]):
        if number not in enabled:
            break
        minimum = number
    return ProtocolRange(minimum, maximum, namesOlder)


# --- ciphers -------------------------------------------------------------------

_GRADES = {
    "high": params.tls_high_cipherlist,
    "medium": params.tls_medium_cipherlist,
    "low": params.tls_low_cipherlist,
    "export": params.tls_export_cipherlist,
    "null": params.tls_null_cipherlist,
}


def cipherList(view: ParameterView, grade: str, exclusions: Iterable[str]) -> str:
    """
    The OpenSSL cipher string for a Postfix cipher grade: the grade's
    C{tls_*_cipherlist} followed by C{:!name} for each exclusion, as
    Postfix's tls_set_ciphers() builds it.  It governs TLS 1.2 and older;
    TLS 1.3 suites are OpenSSL's defaults, as with Postfix.

    @raise ValueError: for an unknown grade or an exclusion holding one of
        C{+-!}.
    """
    try:
        parameter = _GRADES[grade]
    except KeyError:
        raise ValueError(f"invalid cipher grade: {grade}") from None
    text = view[parameter]
    for exclusion in exclusions:
        if any(char in exclusion for char in "+-!"):
            raise ValueError(f'invalid unary \'+-!\' in cipher name: "{exclusion}"')
        text += f":!{exclusion}"
    return text


# --- tls_ssl_options -----------------------------------------------------------

_SSL_OPTIONS = {
    "NO_TICKET": SSL.OP_NO_TICKET,
    "NO_COMPRESSION": SSL.OP_NO_COMPRESSION,
    "NO_RENEGOTIATION": SSL.OP_NO_RENEGOTIATION,
    "LEGACY_SERVER_CONNECT": SSL.OP_LEGACY_SERVER_CONNECT,
    # Not exported by pyOpenSSL; values from OpenSSL's ssl.h.
    "NO_SESSION_RESUMPTION_ON_RENEGOTIATION": 1 << 16,
    "ENABLE_MIDDLEBOX_COMPAT": 1 << 20,
    "PRIORITIZE_CHACHA": 1 << 21,
}
#: SSL_OP_ALLOW_CLIENT_RENEGOTIATION: never honoured, whatever the mask.
_ALLOW_CLIENT_RENEGOTIATION = 1 << 8


def _sslOptions(items: Iterable[str], warnings: list[str]) -> int:
    mask = 0
    for item in items:
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", item):
            mask |= int(item, 16)
            continue
        option = _SSL_OPTIONS.get(item.upper())
        if option is None:
            warnings.append(f"warning: ignoring unknown tls_ssl_options value: {item}")
        else:
            mask |= option
    if mask & _ALLOW_CLIENT_RENEGOTIATION:
        warnings.append(
            "warning: tls_ssl_options: client-initiated renegotiation is never allowed;"
            " ignoring that bit"
        )
        mask &= ~_ALLOW_CLIENT_RENEGOTIATION
    return mask


# --- certificates and keys ------------------------------------------------------

_PEM = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL
)
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"DSA PRIVATE KEY"}
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE"}

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | dsa.DSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


@attr.s(frozen=True, auto_attribs=True)
class CertifiedKey:
    """
    A private key with its certificate chain.

    @ivar key: the private key.
    @ivar chain: the server certificate first, then its issuers.
    @ivar source: the file(s) they came from, for messages.
    """

    key: PrivateKey
    chain: tuple[x509.Certificate, ...]
    source: str


class _PEMError(Exception):
    """
    A PEM file cannot be read or holds something unusable.
    """


def _pemObjects(path: str) -> list[PrivateKey | x509.Certificate]:
    """
    The keys and certificates of one PEM file, in file order; parameters
    blocks (C{EC PARAMETERS}, C{DH PARAMETERS}) are skipped.

    @raise _PEMError: when the file cannot be read or a block does not load.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise _PEMError(f"{path}: {error.strerror}") from None
    objects: list[PrivateKey | x509.Certificate] = []
    for match in _PEM.finditer(data):
        label = match.group(1)
        block = match.group(0)
        try:
            if label in _KEY_LABELS:
                key = serialization.load_pem_private_key(block, password=None)
                if not isinstance(
                    key,
                    (
                        rsa.RSAPrivateKey,
                        ec.EllipticCurvePrivateKey,
                        dsa.DSAPrivateKey,
                        ed25519.Ed25519PrivateKey,
                        ed448.Ed448PrivateKey,
                    ),
                ):
                    raise _PEMError(f"{path}: unsupported private key type")
                objects.append(key)
            elif label in _CERT_LABELS:
                objects.append(x509.load_pem_x509_certificate(block))
            elif label == b"ENCRYPTED PRIVATE KEY":
                raise _PEMError(f"{path}: encrypted private keys are not supported")
        except (ValueError, TypeError) as error:
            raise _PEMError(f"{path}: bad {label.decode('ascii')}: {error}") from None
    return objects


def _publicBytes(item: PrivateKey | x509.Certificate) -> bytes:
    public = item.public_key()
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _keyType(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, dsa.DSAPrivateKey):
        return "DSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ECDSA"
    return "EdDSA"


def loadChainFiles(paths: Sequence[str]) -> list[CertifiedKey]:
    """
    Load C{smtpd_tls_chain_files}: the files are read as one sequence of
    PEM objects in which each private key is followed by its certificate
    chain (server certificate first).  The key may also come right after
    its server certificate, which covers the older "key file, cert file"
    pair listed as two chain files.

    @raise _PEMError: when a file cannot be read, or a key has no
        certificate, or a certificate no key, or they do not match.
    """
    objects: list[tuple[str, PrivateKey | x509.Certificate]] = []
    for path in paths:
        objects.extend((path, item) for item in _pemObjects(path))
    groups: list[tuple[list[str], list[PrivateKey], list[x509.Certificate]]] = []
    for path, item in objects:
        current = groups[-1] if groups else None
        if isinstance(item, x509.Certificate):
            if current is not None and (current[1] or not current[2]):
                current[2].append(item)
            else:
                groups.append(([path], [], [item]))
        else:
            if current is not None and not current[1] and len(current[2]) == 1:
                # The key follows its server certificate.
                current[1].append(item)
                current[0].append(path)
            else:
                groups.append(([path], [item], []))
    if not groups:
        raise _PEMError(f"{', '.join(paths)}: no private key or certificate found")
    loaded: list[CertifiedKey] = []
    for sources, keys, certificates in groups:
        source = ", ".join(dict.fromkeys(sources))
        if not keys:
            raise _PEMError(f"{source}: certificate without a private key")
        if not certificates:
            raise _PEMError(f"{source}: private key without a certificate")
        if _publicBytes(keys[0]) != _publicBytes(certificates[0]):
            raise _PEMError(f"{source}: private key does not match the certificate after it")
        loaded.append(CertifiedKey(keys[0], tuple(certificates), source))
    return loaded


# --- building the server context ------------------------------------------------


@attr.s(frozen=True, auto_attribs=True)
class ServerTLS:
    """
    The server TLS set-up of one service.

    @ivar level: C{none}, C{may} or C{encrypt}, after the obsolete
        parameters and the unsupported levels are folded in.
    @ivar wrapperMode: whether TLS starts on connect (port 465).
    @ivar creator: the connection creator for C{startTLS} or
        L{twisted.protocols.tls.TLSMemoryBIOFactory}; L{None} when TLS is
        off or was disabled by a problem (see C{warnings}).
    @ivar warnings: lines for the caller to log, in Postfix's words
        (C{warning: ...}).
    """

    level: str
    wrapperMode: bool
    creator: "NoRenegotiationServerCreator | None"
    warnings: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        """
        Whether clients must use TLS: level C{encrypt} or wrapper mode.
        """
        return self.wrapperMode or self.level == "encrypt"


def _securityLevel(view: ParameterView, warnings: list[str]) -> str:
    level = view[params.smtpd_tls_security_level]
    if not level:
        # Postfix falls back to the obsolete booleans.
        if view[params.smtpd_enforce_tls]:
            return "encrypt"
        return "may" if view[params.smtpd_use_tls] else "none"
    if level in ("fingerprint", "verify", "secure"):
        warnings.append(
            f'warning: {params.smtpd_tls_security_level.name}: unsupported TLS level'
            f' "{level}", using "encrypt"'
        )
        return "encrypt"
    return level


def _where(view: ParameterView, name: str) -> str:
    origin = view.origin(name)
    if origin is None:
        return ""
    path, line = origin
    return f"{path}, line {line}: " if line else f"{path}: "


def _certificates(view: ParameterView, warnings: list[str]) -> list[CertifiedKey]:
    """
    Load the server keys and certificates as Postfix's smtpd does.

    @raise _Disabled: when none is configured or one cannot be loaded.
    """
    chainFiles = view[params.smtpd_tls_chain_files]
    legacy = [
        ("RSA", params.smtpd_tls_cert_file, params.smtpd_tls_key_file),
        ("ECDSA", params.smtpd_tls_eccert_file, params.smtpd_tls_eckey_file),
        ("DSA", params.smtpd_tls_dcert_file, params.smtpd_tls_dkey_file),
    ]
    legacySet = [
        entry for entry in legacy if view[entry[1]] and view[entry[1]].lower() != "none"
    ]
    if chainFiles:
        if legacySet:
            warnings.append(
                f"warning: Both {params.smtpd_tls_chain_files.name} and one or more of the"
                f" legacy {params.smtpd_tls_cert_file.name}, {params.smtpd_tls_eccert_file.name}"
                f" or {params.smtpd_tls_dcert_file.name} are non-empty;"
                " the legacy parameters will be ignored"
            )
        try:
            return loadChainFiles(chainFiles)
        except _PEMError as error:
            raise _Disabled(
                params.smtpd_tls_chain_files.name,
                [
                    f"warning: TLS library problem: {error}",
                    "warning: error loading private keys and certificates from:"
                    f" {', '.join(chainFiles)}: disabling TLS support",
                ],
                f"{_where(view, params.smtpd_tls_chain_files.name)}"
                f"{params.smtpd_tls_chain_files.name}: {error}",
            ) from None
    if not legacySet:
        raise _Disabled(
            params.smtpd_tls_chain_files.name,
            ["warning: No server certs available. TLS won't be enabled"],
            f"no server certificate: set {params.smtpd_tls_chain_files.name}"
            f" (or {params.smtpd_tls_cert_file.name} and {params.smtpd_tls_key_file.name});"
            " mtaguard-tls new-server-cert makes a self-signed one",
        )
    loaded: list[CertifiedKey] = []
    for keyType, certParameter, keyParameter in legacySet:
        certFile = view[certParameter]
        keyFile = view[keyParameter] or certFile
        try:
            certificates = [
                item for item in _pemObjects(certFile) if isinstance(item, x509.Certificate)
            ]
            if not certificates:
                raise _PEMError(f"{certFile}: no certificate found")
        except _PEMError as error:
            raise _Disabled(
                certParameter.name,
                [
                    f"warning: TLS library problem: {error}",
                    f'warning: cannot get {keyType} certificate from file "{certFile}":'
                    " disabling TLS support",
                ],
                f"{_where(view, certParameter.name)}{certParameter.name}: {error}",
            ) from None
        try:
            keys = [
                item for item in _pemObjects(keyFile) if not isinstance(item, x509.Certificate)
            ]
            if not keys:
                raise _PEMError(f"{keyFile}: no private key found")
        except _PEMError as error:
            raise _Disabled(
                keyParameter.name,
                [
                    f"warning: TLS library problem: {error}",
                    f'warning: cannot get {keyType} private key from file "{keyFile}":'
                    " disabling TLS support",
                ],
                f"{_where(view, keyParameter.name)}{keyParameter.name}: {error}",
            ) from None
        if _publicBytes(keys[0]) != _publicBytes(certificates[0]):
            raise _Disabled(
                keyParameter.name,
                [
                    f"warning: {keyType} private key in {keyFile} does not match public key"
                    f" in {certFile}: disabling TLS support"
                ],
                f"{_where(view, keyParameter.name)}{keyParameter.name}: the private key in"
                f" {keyFile} does not match the certificate in {certFile}",
            )
        loaded.append(CertifiedKey(keys[0], tuple(certificates), f"{certFile}, {keyFile}"))
    return loaded


def _buildContext(view: ParameterView, mandatory: bool, warnings: list[str]) -> SSL.Context:
    """
    Build the server context.

    @raise _Disabled: when a parameter or a file makes it impossible.
    """
    certified = _certificates(view, warnings)

    protocolsParameter = (
        params.smtpd_tls_mandatory_protocols if mandatory else params.smtpd_tls_protocols
    )
    protocolItems: tuple[str, ...] = view[protocolsParameter]
    try:
        versions = protocolRange(protocolItems)
    except InvalidProtocols as error:
        text = " ".join(protocolItems)
        raise _Disabled(
            protocolsParameter.name,
            [f'warning: Invalid TLS protocol list "{text}": disabling TLS support'],
            f"{_where(view, protocolsParameter.name)}{protocolsParameter.name}: {error}",
        ) from None
    minimum, maximum = versions.minimum, versions.maximum
    # Postfix's default (>=TLSv1) is not taken as a wish for TLS 1.0: only a
    # list the admin wrote that names an older version lowers the floor.
    lowered = versions.namesOlder and view.isExplicit(protocolsParameter.name)
    if minimum < DEFAULT_MINIMUM and not lowered:
        if maximum < DEFAULT_MINIMUM:
            raise _Disabled(
                protocolsParameter.name,
                [
                    f"warning: {protocolsParameter.name} enables only versions older than"
                    " TLSv1.2: disabling TLS support"
                ],
                f"{_where(view, protocolsParameter.name)}{protocolsParameter.name}:"
                " only versions older than TLSv1.2 are enabled",
            )
        minimum = DEFAULT_MINIMUM

    gradeParameter = params.smtpd_tls_mandatory_ciphers if mandatory else params.smtpd_tls_ciphers
    excluded: tuple[str, ...] = view[params.smtpd_tls_exclude_ciphers]
    exclusions = list(excluded)
    if mandatory:
        mandatoryExcluded: tuple[str, ...] = view[params.smtpd_tls_mandatory_exclude_ciphers]
        exclusions += mandatoryExcluded
    if view[params.smtpd_tls_ask_ccert] or (mandatory and view[params.smtpd_tls_req_ccert]):
        # Anonymous ciphers cannot ask for a client certificate.
        exclusions.append("aNULL")
    try:
        ciphers = cipherList(view, view[gradeParameter], exclusions)
    except ValueError as error:
        raise _Disabled(
            gradeParameter.name,
            [f"warning: {error}: disabling TLS support"],
            f"{_where(view, gradeParameter.name)}{gradeParameter.name}: {error}",
        ) from None
    if minimum < DEFAULT_MINIMUM:
        # OpenSSL 3 and later refuse TLS 1.0 and 1.1 above security level 0.
        ciphers += ":@SECLEVEL=0"

    context = SSL.Context(SSL.TLS_METHOD)
    options = (
        SSL.OP_NO_SSLv2
        | SSL.OP_NO_SSLv3
        | SSL.OP_NO_COMPRESSION
        | SSL.OP_NO_TICKET
        | SSL.OP_NO_RENEGOTIATION
        | SSL.OP_SINGLE_DH_USE
        | SSL.OP_SINGLE_ECDH_USE
    )
    if view[params.tls_preempt_cipherlist]:
        options |= SSL.OP_CIPHER_SERVER_PREFERENCE
    sslOptions: tuple[str, ...] = view[params.tls_ssl_options]
    options |= _sslOptions(sslOptions, warnings)
    context.set_options(options)
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    context.set_min_proto_version(minimum)
    context.set_max_proto_version(maximum)
    extra: list[x509.Certificate] = []
    for item in certified:
        try:
            context.use_certificate(item.chain[0])
            context.use_privatekey(item.key)
            context.check_privatekey()
        except SSL.Error as error:
            raise _Disabled(
                params.smtpd_tls_chain_files.name,
                [
                    f"warning: TLS library problem: {error}",
                    f"warning: cannot use the {_keyType(item.key)} key and certificate from"
                    f" {item.source}: disabling TLS support",
                ],
                f"{item.source}: {error}",
            ) from None
        # OpenSSL keeps one extra chain per context, not one per key type;
        # with several keys their issuers are sent together.
        for issuer in item.chain[1:]:
            if issuer not in extra:
                extra.append(issuer)
    for issuer in extra:
        context.add_extra_chain_cert(issuer)
    context.set_verify(SSL.VERIFY_NONE)
    # Required by OpenSSL for session resumption and client certificates.
    context.set_session_id(secureRandom(16).hex()[:32].encode("ascii"))
    # No smtpd_tls_session_cache_database support yet: no server-side cache.
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    try:
        # Last: pyOpenSSL freezes the context after this call.
        context.set_cipher_list(ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as error:
        raise _Disabled(
            gradeParameter.name,
            [f'warning: invalid cipher list "{ciphers}": {error}: disabling TLS support'],
            f"{_where(view, gradeParameter.name)}{gradeParameter.name}:"
            f" OpenSSL rejects the cipher list {ciphers!r}",
        ) from None
    return context


def serverTLS(view: ParameterView, *, reactor: IReactorTime) -> ServerTLS:
    """
    Work out one service's server TLS from its parameters.

    @param view: the service's parameters.
    @param reactor: schedules the abort of a connection that tries to
        renegotiate (never done inside OpenSSL's callback).

    @return: the level, wrapper mode, a creator or L{None}, and warnings
        for the caller to log.  At level C{may}, a certificate or parameter
        problem gives C{creator=None} and Postfix's warning lines
        (C{warning: cannot get RSA private key from file "...": disabling
        TLS support}).

    @raise TLSConfigurationError: when TLS is required (level C{encrypt}
        or C{smtpd_tls_wrappermode = yes}) and cannot be set up.
    """
    warnings: list[str] = []
    level = _securityLevel(view, warnings)
    wrapperMode = view[params.smtpd_tls_wrappermode]
    if level == "none" and not wrapperMode:
        return ServerTLS(level, wrapperMode, None, tuple(warnings))
    mandatory = wrapperMode or level == "encrypt"
    try:
        context = _buildContext(view, mandatory, warnings)
    except _Disabled as problem:
        if mandatory:
            why = (
                f"{params.smtpd_tls_wrappermode.name} = yes"
                if wrapperMode
                else f"{params.smtpd_tls_security_level.name} = encrypt"
            )
            raise TLSConfigurationError(
                problem.parameter, f"{problem.reason} (TLS is required by {why})"
            ) from None
        return ServerTLS(level, wrapperMode, None, tuple(warnings) + problem.warnings)
    return ServerTLS(
        level, wrapperMode, NoRenegotiationServerCreator(context, reactor), tuple(warnings)
    )


def serverTLSOptions(
    view: ParameterView,
    *,
    reactor: IReactorTime,
    warn: Callable[[str], None] | None = None,
) -> IOpenSSLServerConnectionCreator | None:
    """
    The server connection creator for C{view}, or L{None} when TLS is off
    (level C{none}) or disabled by a problem at level C{may}.

    @param warn: called with each warning line; by default they are logged
        through L{twisted.logger}.

    @raise TLSConfigurationError: when TLS is required and cannot be set up.
    """
    result = serverTLS(view, reactor=reactor)
    for line in result.warnings:
        if warn is None:
            log.warn("{line}", line=line)
        else:
            warn(line)
    return result.creator


# --- renegotiation ----------------------------------------------------------------


def _defaultPeerName(tlsProtocol: object) -> str:
    wrapped = getattr(tlsProtocol, "wrappedProtocol", None)
    if IPeerName.providedBy(wrapped):
        return str(wrapped.peerName)
    transport = getattr(tlsProtocol, "transport", None)
    if transport is None:
        return "unknown[unknown]"
    try:
        peer = transport.getPeer()
    except Exception:
        return "unknown[unknown]"
    host = getattr(peer, "host", None)
    return f"unknown[{host}]" if host is not None else f"unknown[{peer}]"


@implementer(IOpenSSLServerConnectionCreator)
class NoRenegotiationServerCreator:
    """
    Server TLS connections that cannot be renegotiated.

    Each connection gets C{OP_NO_RENEGOTIATION} (which wins over any
    context option that allows it, e.g. a C{tls_ssl_options} mask on old
    OpenSSL 1.1.1), and an info callback that logs and aborts the
    connection when a second TLS 1.2-or-older handshake starts.  OpenSSL
    calls it for refused attempts too, so the warning is logged either way.
    TLS 1.3 post-handshake messages (KeyUpdate, session tickets) also
    signal a handshake start, and are left alone: TLS 1.3 has no
    renegotiation.
    """

    def __init__(
        self,
        context: SSL.Context,
        reactor: IReactorTime,
        peerName: Callable[[object], str] = _defaultPeerName,
    ) -> None:
        """
        @param context: the server context; shared by every connection.
        @param reactor: runs the deferred abort.
        @param peerName: names the client of a TLS protocol wrapper for the
            warning.
        """
        self.context = context
        self._reactor = reactor
        self._peerName = peerName

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """
        A new server connection, guarded against renegotiation.

        @param tlsProtocol: the L{twisted.protocols.tls.TLSMemoryBIOProtocol}
            that will own it.
        """
        connection = SSL.Connection(self.context, None)
        connection.set_options(SSL.OP_NO_RENEGOTIATION)
        state = {"done": False, "aborting": False}
        reactor = self._reactor
        peerName = self._peerName

        def abort() -> None:
            tlsProtocol.abortConnection()

        def info(conn: SSL.Connection, where: int, ret: int) -> None:
            # Never raise in here: OpenSSL would swallow or misreport it.
            try:
                if where & SSL.SSL_CB_HANDSHAKE_DONE:
                    state["done"] = True
                elif (
                    where & SSL.SSL_CB_HANDSHAKE_START
                    and state["done"]
                    and not state["aborting"]
                    and conn.get_protocol_version() != SSL.TLS1_3_VERSION
                ):
                    state["aborting"] = True
                    log.warn(
                        "warning: TLS renegotiation attempt from {peer}: aborting",
                        peer=peerName(tlsProtocol),
                    )
                    reactor.callLater(0, abort)
            except Exception:
                log.failure("while checking for TLS renegotiation")

        connection.set_info_callback(info)
        return connection


# --- logging --------------------------------------------------------------------


def _signatureText(certificate: x509.Certificate | None) -> str:
    if certificate is None:
        return ""
    public = certificate.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(
            public.curve.name, public.curve.name
        )
        return f" server-signature ECDSA ({curve})"
    if isinstance(public, rsa.RSAPublicKey):
        return f" server-signature RSA ({public.key_size} bits)"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return " server-signature ED25519"
    return ""


def peerTLSSummary(transport: ITransport, peerName: str | None = None) -> str:
    """
    The line Postfix logs when a TLS handshake completes, e.g.
    C{Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3
    with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519
    server-signature ECDSA (P-256)}.

    The key-exchange group and the server key are added when OpenSSL tells
    them; the signature digest (Postfix's C{server-digest}) is not exposed
    by pyOpenSSL and is left out.  mtaguard does not verify client
    certificates, so a client that sent one is C{Untrusted}, otherwise
    C{Anonymous}.

    @param transport: a transport after its TLS handshake (anything whose
        C{getHandle()} is the L{SSL.Connection}).
    @param peerName: the client as Postfix names it; by default
        C{unknown[address]}.
    """
    # ITransport does not declare getHandle (ISystemHandle does, returning
    # object); a TLS transport's is its SSL.Connection.
    connection: SSL.Connection = transport.getHandle()  # type: ignore[attr-defined]
    if peerName is None:
        peerName = f"unknown[{getattr(transport.getPeer(), 'host', transport.getPeer())}]"
    trust = (
        "Anonymous"
        if connection.get_peer_certificate(as_cryptography=True) is None
        else "Untrusted"
    )
    bits = connection.get_cipher_bits() or 0
    text = (
        f"{trust} TLS connection established from {peerName}:"
        f" {connection.get_protocol_version_name()} with cipher"
        f" {connection.get_cipher_name()} ({bits}/{bits} bits)"
    )
    try:
        group = connection.get_group_name()
    except (AttributeError, NotImplementedError):
        group = None
    if group:
        text += f" key-exchange {group}"
    certificate = connection.get_certificate(as_cryptography=True)
    return text + _signatureText(certificate)
