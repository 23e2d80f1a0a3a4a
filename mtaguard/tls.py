# -*- test-case-name: tests.test_tls,tests.test_renegotiation,tests.test_tls_client -*-
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

The SMTP client side (L{clientTLSPolicy}, L{ClientTLSPolicy},
L{TLSVerdict}) follows smtp(8): levels C{none} to C{secure}, trust from
C{smtp_tls_CAfile}/C{smtp_tls_CApath}, server names checked with
service_identity against C{smtp_tls_verify_cert_match} or
C{smtp_tls_secure_cert_match}, the same protocol and cipher parsing and
TLS 1.2 floor as the server, and server-initiated renegotiation refused.
C{dane}, C{dane-only} and C{fingerprint} are not supported and say so.
"""

from __future__ import annotations

import ipaddress
import re
import weakref
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import attr
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from OpenSSL import SSL
from OpenSSL.crypto import X509
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IReactorTime,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.randbytes import secureRandom
from zope.interface import Attribute, Interface, implementer

from mtaguard.config import Parameter, ParameterView, params

if TYPE_CHECKING:
    from twisted.protocols.tls import TLSMemoryBIOProtocol

log = Logger(namespace="mtaguard.tls")

__all__ = [
    "CLIENT_TLS_LEVELS",
    "ClientTLSPolicy",
    "IPeerName",
    "NoRenegotiationServerCreator",
    "ServerTLS",
    "TLSConfigurationError",
    "TLSVerdict",
    "cipherList",
    "clientTLSPolicy",
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


def _cipherString(
    view: ParameterView, gradeParameter: Parameter[str], exclusions: list[str], minimum: int
) -> str:
    """
    The OpenSSL cipher string for a cipher grade parameter and exclusions,
    for server and client alike.

    @raise _Disabled: when the grade or an exclusion is invalid.
    """
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
    return ciphers


def _versionBounds(view: ParameterView, protocolsParameter: Parameter[tuple[str, ...]]) -> tuple[int, int]:
    """
    The lowest and highest protocol versions a C{*_tls_protocols} or
    C{*_tls_mandatory_protocols} parameter allows, for server and client
    alike.

    Postfix's default (C{>=TLSv1}) is not taken as a wish for TLS 1.0: only
    a list the admin wrote that names an older version lowers the floor
    below Twisted's TLS 1.2.

    @raise _Disabled: for an invalid list, or one that allows only versions
        older than TLS 1.2 without saying so explicitly.
    """
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
    return minimum, maximum


def _setCipherList(context: SSL.Context, view: ParameterView, gradeParameter: Parameter[str], ciphers: str) -> None:
    """
    Give the context its cipher list.

    @raise _Disabled: with Postfix's warning when OpenSSL rejects it.
    """
    try:
        context.set_cipher_list(ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as error:
        raise _Disabled(
            gradeParameter.name,
            [f'warning: invalid cipher list "{ciphers}": {error}: disabling TLS support'],
            f"{_where(view, gradeParameter.name)}{gradeParameter.name}:"
            f" OpenSSL rejects the cipher list {ciphers!r}",
        ) from None


def _excludedCiphers(
    view: ParameterView,
    exclude: Parameter[tuple[str, ...]],
    mandatoryExclude: Parameter[tuple[str, ...]],
    mandatory: bool,
) -> list[str]:
    """
    The ciphers to exclude: C{*_tls_exclude_ciphers}, plus
    C{*_tls_mandatory_exclude_ciphers} when TLS is mandatory.
    """
    exclusions = list(view[exclude])
    if mandatory:
        exclusions += view[mandatoryExclude]
    return exclusions


def _buildContext(view: ParameterView, mandatory: bool, warnings: list[str]) -> SSL.Context:
    """
    Build the server context.

    @raise _Disabled: when a parameter or a file makes it impossible.
    """
    certified = _certificates(view, warnings)

    protocolsParameter = (
        params.smtpd_tls_mandatory_protocols if mandatory else params.smtpd_tls_protocols
    )
    minimum, maximum = _versionBounds(view, protocolsParameter)

    gradeParameter = params.smtpd_tls_mandatory_ciphers if mandatory else params.smtpd_tls_ciphers
    exclusions = _excludedCiphers(
        view, params.smtpd_tls_exclude_ciphers, params.smtpd_tls_mandatory_exclude_ciphers, mandatory
    )
    if view[params.smtpd_tls_ask_ccert] or (mandatory and view[params.smtpd_tls_req_ccert]):
        # Anonymous ciphers cannot ask for a client certificate.
        exclusions.append("aNULL")
    ciphers = _cipherString(view, gradeParameter, exclusions, minimum)

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
    # Last: pyOpenSSL freezes the context after this call.
    _setCipherList(context, view, gradeParameter, ciphers)
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
    certificate = connection.get_certificate(as_cryptography=True)
    return (
        f"{trust} TLS connection established from {peerName}: {_cipherText(connection)}"
        + _signatureText(certificate)
    )


def _cipherText(connection: SSL.Connection) -> str:
    """
    The middle of Postfix's "TLS connection established" line, shared by
    the server and the client: C{TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
    (256/256 bits)}, then C{key-exchange X25519} when OpenSSL tells.
    """
    bits = connection.get_cipher_bits() or 0
    text = (
        f"{connection.get_protocol_version_name()} with cipher"
        f" {connection.get_cipher_name()} ({bits}/{bits} bits)"
    )
    try:
        group = connection.get_group_name()
    except (AttributeError, NotImplementedError):
        group = None
    if group:
        text += f" key-exchange {group}"
    return text


# --- the SMTP client -------------------------------------------------------------
#
# Client TLS follows Postfix's smtp(8):
#
#   - none: no STARTTLS.  may: opportunistic, no authentication, the
#     opportunistic protocols and ciphers.  encrypt: TLS required, the
#     mandatory protocols and ciphers, still no authentication (Postfix
#     logs such sessions as Untrusted or Trusted and delivers).  verify and
#     secure: TLS required, the chain must verify against smtp_tls_CAfile /
#     smtp_tls_CApath and a server name must match smtp_tls_verify_cert_match
#     or smtp_tls_secure_cert_match; anonymous ciphers are excluded.
#   - dane, dane-only and fingerprint are refused with TLSConfigurationError.
#   - trust: only smtp_tls_CAfile and smtp_tls_CApath, plus the system's
#     default store when tls_append_default_CA = yes and one of them is set
#     (Postfix's tls_set_ca_certificate_info() does exactly that).  With
#     neither set nothing is trusted, so verify and secure defer every
#     message; clientTLSPolicy() warns about it.
#   - two differences from Postfix: names come from subjectAltName only
#     (service_identity, RFC 6125), where Postfix falls back to the subject
#     CN when a certificate has no DNS names; and an empty
#     smtp_tls_servername sends the server's host name as SNI (as Twisted
#     does, and hosted MX services expect), where Postfix sends none.
#
# Certificate checks at verify and secure happen inside the handshake: the
# verify callback fails it when the chain or the name does not pass, so no
# byte of SMTP ever travels over a connection the level does not accept,
# whatever the caller does.  The outcome is kept per connection for
# ClientTLSPolicy.verdict(), which gives the caller Postfix's log line and
# the reason to defer.

#: The client levels mtaguard implements.
CLIENT_TLS_LEVELS = ("none", "may", "encrypt", "verify", "secure")
#: Levels at which TLS is required: a missing STARTTLS or a failed
#: handshake defers the message.
_CLIENT_REQUIRED = ("encrypt", "verify", "secure")
#: Levels at which the server certificate is authenticated.
_CLIENT_MATCHING = ("verify", "secure")
#: Postfix levels mtaguard refuses to pretend to implement.
_CLIENT_UNSUPPORTED = ("dane", "dane-only", "fingerprint")

#: OpenSSL's X509_V_ERR_* texts for the errors a mail client meets; others
#: are logged by number (pyOpenSSL does not export
#: X509_verify_cert_error_string).
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    22: "certificate chain too long",
    23: "certificate revoked",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
    27: "certificate not trusted",
    28: "certificate rejected",
}

#: TLS alert "no_renegotiation" (RFC 5246 section 7.2.2): what OpenSSL
#: sends when it refuses a HelloRequest because of OP_NO_RENEGOTIATION.
_ALERT_NO_RENEGOTIATION = 100


def _clientSecurityLevel(view: ParameterView) -> str:
    """
    C{smtp_tls_security_level}, or what the obsolete C{smtp_use_tls},
    C{smtp_enforce_tls} and C{smtp_tls_enforce_peername} mean when it is
    empty (Postfix: enforce with peername is C{verify}).

    @raise TLSConfigurationError: for a level mtaguard does not implement.
    """
    parameter = params.smtp_tls_security_level
    level: str = view[parameter]
    if not level:
        if view[params.smtp_enforce_tls]:
            return "verify" if view[params.smtp_tls_enforce_peername] else "encrypt"
        return "may" if view[params.smtp_use_tls] else "none"
    if level in _CLIENT_UNSUPPORTED:
        # Quietly downgrading dane or fingerprint to encrypt would deliver
        # over connections the admin asked us to authenticate.
        raise TLSConfigurationError(
            parameter.name,
            f"{_where(view, parameter.name)}{parameter.name} = {level}: not supported by"
            " mtaguard (no DANE/TLSA and no fingerprint matching); use verify or secure with"
            f" {params.smtp_tls_CAfile.name}, or encrypt",
        )
    return level


def _nextHopDomain(nextHop: str) -> str:
    """
    The domain part of a next hop: C{[mx.example.com]:587} and
    C{example.com:25} give C{mx.example.com} and C{example.com}; names
    are lower-cased, without a trailing dot.
    """
    text = nextHop.strip()
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end > 0 else text[1:]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".").lower()


def _isAddress(name: str) -> bool:
    candidate = name[5:] if name.lower().startswith("ipv6:") else name
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _acceptableNames(
    rules: Iterable[str], nextHop: str, serverHostname: str
) -> tuple[str, ...]:
    """
    Expand a Postfix match list (C{smtp_tls_verify_cert_match},
    C{smtp_tls_secure_cert_match}): C{hostname} is the server's (MX) host
    name, C{nexthop} the next-hop domain, C{dot-nexthop} any name below it
    (given as C{.example.com}); anything else is a literal name, or a
    parent domain when it starts with a dot.
    """
    names: list[str] = []
    for rule in rules:
        for token in filter(None, re.split(r"[\s,:]+", rule)):
            keyword = token.lower()
            if keyword == "hostname":
                name = _nextHopDomain(serverHostname)
            elif keyword == "nexthop":
                name = nextHop
            elif keyword == "dot-nexthop":
                name = "." + nextHop
            else:
                name = keyword.rstrip(".")
            if name and name != "." and name not in names:
                names.append(name)
    return tuple(names)


def _asciiName(name: str) -> str:
    """
    C{name} as certificates spell it: lower-case A-labels.
    """
    try:
        return name.encode("ascii").decode("ascii").lower()
    except UnicodeEncodeError:
        return name.encode("idna").decode("ascii").lower()


def _matchCertificate(certificate: x509.Certificate, names: Sequence[str]) -> str | None:
    """
    The first of C{names} that C{certificate} is valid for, or L{None}.

    Exact names go through service_identity (subjectAltName only; RFC 6125
    wildcards: C{*.example.com} covers one label).  A name starting with a
    dot accepts any certificate name strictly below that domain, and a
    wildcard whose base is that domain or below it, as Postfix does for
    C{dot-nexthop}.
    """
    from service_identity.cryptography import (
        extract_patterns,
        verify_certificate_hostname,
        verify_certificate_ip_address,
    )
    from service_identity.exceptions import CertificateError, VerificationError
    from service_identity.hazmat import DNSPattern

    for name in names:
        try:
            if name.startswith("."):
                suffix = _asciiName(name)
                for pattern in extract_patterns(certificate):
                    if not isinstance(pattern, DNSPattern):
                        continue
                    text = pattern.pattern.decode("ascii", "replace").lower().rstrip(".")
                    if text.startswith("*."):
                        text = text[1:]
                        if text == suffix or text.endswith(suffix):
                            return name
                    elif text.endswith(suffix) and len(text) > len(suffix):
                        return name
            elif _isAddress(name):
                address = name[5:] if name.lower().startswith("ipv6:") else name
                verify_certificate_ip_address(certificate, address)
                return name
            else:
                verify_certificate_hostname(certificate, name)
                return name
        except (CertificateError, VerificationError, ValueError):
            # No subjectAltName, a mismatch, or a name service_identity
            # cannot express: this name is not matched; try the next.
            continue
    return None


def _clientCertificates(view: ParameterView, warnings: list[str]) -> list[CertifiedKey]:
    """
    The client's own keys and certificates, if any are configured
    (C{smtp_tls_chain_files}, else the legacy C{smtp_tls_*cert_file} and
    C{smtp_tls_*key_file} pairs).  Most clients have none.

    @raise _Disabled: when one is configured and cannot be used.
    """
    chainFiles: tuple[str, ...] = view[params.smtp_tls_chain_files]
    legacy = [
        (params.smtp_tls_cert_file, params.smtp_tls_key_file),
        (params.smtp_tls_eccert_file, params.smtp_tls_eckey_file),
        (params.smtp_tls_dcert_file, params.smtp_tls_dkey_file),
    ]
    legacySet = [(c, k) for c, k in legacy if view[c] and view[c].lower() != "none"]
    try:
        if chainFiles:
            if legacySet:
                warnings.append(
                    f"warning: Both {params.smtp_tls_chain_files.name} and one or more of the"
                    f" legacy {params.smtp_tls_cert_file.name}, {params.smtp_tls_eccert_file.name}"
                    f" or {params.smtp_tls_dcert_file.name} are non-empty;"
                    " the legacy parameters will be ignored"
                )
            return loadChainFiles(chainFiles)
        loaded: list[CertifiedKey] = []
        for certParameter, keyParameter in legacySet:
            certFile: str = view[certParameter]
            keyFile: str = view[keyParameter] or certFile
            certificates = [i for i in _pemObjects(certFile) if isinstance(i, x509.Certificate)]
            keys = [i for i in _pemObjects(keyFile) if not isinstance(i, x509.Certificate)]
            if not certificates:
                raise _PEMError(f"{certFile}: no certificate found")
            if not keys:
                raise _PEMError(f"{keyFile}: no private key found")
            if _publicBytes(keys[0]) != _publicBytes(certificates[0]):
                raise _PEMError(
                    f"the private key in {keyFile} does not match the certificate in {certFile}"
                )
            loaded.append(CertifiedKey(keys[0], tuple(certificates), f"{certFile}, {keyFile}"))
        return loaded
    except _PEMError as error:
        parameter = params.smtp_tls_chain_files if chainFiles else legacySet[0][0]
        raise _Disabled(
            parameter.name,
            [
                f"warning: TLS library problem: {error}",
                "warning: cannot load the client certificate: disabling TLS support",
            ],
            f"{_where(view, parameter.name)}{parameter.name}: {error}",
        ) from None


def _buildClientContext(view: ParameterView, level: str, warnings: list[str]) -> SSL.Context:
    """
    The client context for C{level} (C{may} or above).  Certificate
    verification is set per connection (L{ClientTLSPolicy.creatorFor}).

    @raise _Disabled: when a parameter or a file makes it impossible.
    """
    mandatory = level in _CLIENT_REQUIRED
    protocolsParameter = (
        params.smtp_tls_mandatory_protocols if mandatory else params.smtp_tls_protocols
    )
    minimum, maximum = _versionBounds(view, protocolsParameter)

    gradeParameter = params.smtp_tls_mandatory_ciphers if mandatory else params.smtp_tls_ciphers
    exclusions = _excludedCiphers(
        view, params.smtp_tls_exclude_ciphers, params.smtp_tls_mandatory_exclude_ciphers, mandatory
    )
    if level in _CLIENT_MATCHING:
        # An anonymous cipher means no certificate to authenticate
        # (Postfix excludes aNULL at these levels too).
        exclusions.append("aNULL")
    ciphers = _cipherString(view, gradeParameter, exclusions, minimum)

    context = SSL.Context(SSL.TLS_METHOD)
    options = (
        SSL.OP_NO_SSLv2
        | SSL.OP_NO_SSLv3
        | SSL.OP_NO_COMPRESSION
        | SSL.OP_NO_TICKET
        | SSL.OP_NO_RENEGOTIATION
    )
    sslOptions: tuple[str, ...] = view[params.tls_ssl_options]
    context.set_options(options | _sslOptions(sslOptions, warnings))
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    context.set_min_proto_version(minimum)
    context.set_max_proto_version(maximum)
    context.set_verify_depth(view[params.smtp_tls_scert_verifydepth])
    # No smtp_tls_session_cache_database support yet: every connection
    # does a full handshake, so every one is verified.
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)

    caFile: str = view[params.smtp_tls_CAfile]
    caPath: str = view[params.smtp_tls_CApath]
    if caFile or caPath:
        try:
            context.load_verify_locations(caFile or None, caPath or None)
            if view[params.tls_append_default_CA]:
                context.set_default_verify_paths()
        except SSL.Error as error:
            which = params.smtp_tls_CAfile if caFile else params.smtp_tls_CApath
            shown = ", ".join(
                f'{p.name} = "{v}"'
                for p, v in ((params.smtp_tls_CAfile, caFile), (params.smtp_tls_CApath, caPath))
                if v
            )
            raise _Disabled(
                which.name,
                [
                    f"warning: TLS library problem: {error}",
                    f"warning: cannot load Certification Authority data, {shown}:"
                    " disabling TLS support",
                ],
                f"{_where(view, which.name)}{which.name}: cannot load Certification Authority"
                f" data ({shown}): {error}",
            ) from None
    elif level in _CLIENT_MATCHING:
        warnings.append(
            f"warning: {params.smtp_tls_security_level.name} = {level}, but neither"
            f" {params.smtp_tls_CAfile.name} nor {params.smtp_tls_CApath.name} is set:"
            " no server certificate can be trusted and every delivery will be deferred"
        )

    for item in _clientCertificates(view, warnings):
        try:
            context.use_certificate(item.chain[0])
            context.use_privatekey(item.key)
            context.check_privatekey()
            for issuer in item.chain[1:]:
                context.add_extra_chain_cert(issuer)
        except SSL.Error as error:
            raise _Disabled(
                params.smtp_tls_chain_files.name,
                [
                    f"warning: TLS library problem: {error}",
                    f"warning: cannot use the {_keyType(item.key)} key and certificate from"
                    f" {item.source}: disabling TLS support",
                ],
                f"{item.source}: {error}",
            ) from None
    # Last: pyOpenSSL freezes the context after this call.
    _setCipherList(context, view, gradeParameter, ciphers)
    return context


@attr.s(auto_attribs=True)
class _ClientConnectionState:
    """
    What one client connection learnt about its server, for
    L{ClientTLSPolicy.verdict}.

    @ivar serverHostname: the name the caller connected to.
    @ivar names: the acceptable names (empty below C{verify}).
    @ivar chainErrors: OpenSSL verification errors, as C{(depth, code)}.
    @ivar certificate: the server's certificate, once seen.
    @ivar matchedName: which acceptable name it matched, if any.
    @ivar rejection: why the handshake was failed on purpose, if it was.
    @ivar established: the first handshake completed.
    @ivar summary: the protocol and cipher part of the log line, taken when
        the handshake completed (the connection is gone after a loss).
    @ivar renegotiation: the server tried to renegotiate.
    """

    serverHostname: str
    names: tuple[str, ...]
    chainErrors: list[tuple[int, int]] = attr.ib(factory=list)
    certificate: x509.Certificate | None = None
    matchedName: str | None = None
    rejection: str | None = None
    established: bool = False
    summary: str = ""
    renegotiation: bool = False


def _errorText(code: int) -> str:
    return _VERIFY_ERRORS.get(code, f"certificate verification error {code}")


def _serverPeerName(serverHostname: str, transport: object) -> str:
    """
    Postfix's C{name[address]:port} for the server behind C{transport}
    (a TLS protocol wrapper or a transport), or C{name[unknown]}.
    """
    try:
        peer = transport.getPeer()  # type: ignore[attr-defined]
    except Exception:
        return f"{serverHostname}[unknown]"
    host = getattr(peer, "host", None)
    port = getattr(peer, "port", None)
    if host is None:
        return f"{serverHostname}[unknown]"
    return f"{serverHostname}[{host}]:{port}" if port is not None else f"{serverHostname}[{host}]"


@attr.s(frozen=True, auto_attribs=True)
class TLSVerdict:
    """
    What a client TLS connection is worth, after its handshake.

    @ivar trust: C{Verified} (chain trusted and a name matched, only at
        C{verify} and C{secure}), C{Trusted} (chain trusted, no name checked
        or matched), C{Untrusted} (chain not trusted) or C{Anonymous} (no
        server certificate).
    @ivar satisfied: whether the security level accepts the connection.
        When it is false the caller must not send the message: it defers
        it with C{4.7.5} and L{reason}.
    @ivar established: whether the TLS handshake completed.
    @ivar logLine: the line Postfix logs, e.g. C{Verified TLS connection
        established to mx.example.com[192.0.2.1]:25: TLSv1.3 with cipher
        TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519
        server-signature ECDSA (P-256)}; for a failed handshake, a line
        saying why.
    @ivar reason: Postfix's text when not satisfied (C{Server certificate
        not trusted}, C{Server certificate not verified}, ...), else
        L{None}.
    @ivar matchedName: the acceptable name the certificate matched.
    @ivar problems: the chain verification errors, in OpenSSL's words.
    """

    trust: str
    satisfied: bool
    established: bool
    logLine: str
    reason: str | None = None
    matchedName: str | None = None
    problems: tuple[str, ...] = ()


@implementer(IOpenSSLClientConnectionCreator)
class _ClientCreator:
    """
    Client connections for one server host under a L{ClientTLSPolicy}.
    """

    def __init__(self, policy: ClientTLSPolicy, serverHostname: str) -> None:
        self._policy = policy
        self._serverHostname = serverHostname
        self._names = policy.acceptableNames(serverHostname)

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """
        A new client connection: SNI, certificate checks for the level,
        and the renegotiation guard.

        @param tlsProtocol: the L{twisted.protocols.tls.TLSMemoryBIOProtocol}
            that will own it.
        """
        policy = self._policy
        context = policy.context
        if context is None:
            raise RuntimeError(f"TLS is off for {policy.nextHop} (level {policy.level})")
        connection = SSL.Connection(context, None)
        # Wins over any context option that would allow it.
        connection.set_options(SSL.OP_NO_RENEGOTIATION)
        serverName = policy.serverNameFor(self._serverHostname)
        if serverName:
            connection.set_tlsext_host_name(serverName.encode("idna"))
        state = _ClientConnectionState(self._serverHostname, self._names)
        # Found from the TLS protocol (what the application sees as its
        # transport) or from the connection; weakly, and the state refers
        # to neither, so that both can go away.
        policy._states[tlsProtocol] = state
        policy._states[connection] = state
        mustMatch = policy.level in _CLIENT_MATCHING
        serverHostname = self._serverHostname
        nextHop = policy.nextHop
        names = self._names
        reactor = policy._reactorOrGlobal()

        def peer() -> str:
            return _serverPeerName(serverHostname, tlsProtocol)

        def reject(reason: str, detail: str) -> None:
            if state.rejection is None:
                state.rejection = reason
                log.warn(
                    "warning: {detail}; {reason} (next hop {nextHop})",
                    detail=detail,
                    reason=reason,
                    nextHop=nextHop,
                )

        def verify(conn: SSL.Connection, cert: X509, code: int, depth: int, ok: int) -> bool:
            # Never raise in here: OpenSSL would swallow or misreport it;
            # an unexpected error fails closed at the levels that check.
            try:
                if not ok and (depth, code) not in state.chainErrors:
                    state.chainErrors.append((depth, code))
                if depth != 0:
                    if mustMatch and not ok:
                        reject(
                            "Server certificate not trusted",
                            f"server certificate verification failed for {peer()}:"
                            f" depth={depth} num={code}:{_errorText(code)}",
                        )
                        return False
                    return True
                if state.certificate is None:
                    state.certificate = cert.to_cryptography()
                    if mustMatch:
                        state.matchedName = _matchCertificate(state.certificate, names)
                if not mustMatch:
                    return True
                if state.chainErrors:
                    depth, code = state.chainErrors[0]
                    reject(
                        "Server certificate not trusted",
                        f"server certificate verification failed for {peer()}:"
                        f" num={code}:{_errorText(code)}",
                    )
                    return False
                if state.matchedName is None:
                    reject(
                        "Server certificate not verified",
                        f"server certificate for {peer()} matches none of"
                        f" {', '.join(names) or '(no names)'}",
                    )
                    return False
                return True
            except Exception:
                log.failure("while verifying the server certificate")
                state.rejection = state.rejection or "Server certificate not verified"
                return not mustMatch

        def abort() -> None:
            tlsProtocol.abortConnection()

        def info(conn: SSL.Connection, where: int, ret: int) -> None:
            # Never raise in here either; aborts are deferred to the reactor.
            try:
                if where & SSL.SSL_CB_HANDSHAKE_DONE:
                    if not state.established:
                        state.established = True
                        state.summary = _cipherText(conn)
                        if state.certificate is None:
                            state.certificate = conn.get_peer_certificate(as_cryptography=True)
                        if mustMatch and (state.certificate is None or state.rejection):
                            # Defence in depth: a handshake that completed
                            # without an accepted certificate (say, an
                            # anonymous cipher) is cut off.
                            reject(
                                "Server certificate not trusted",
                                f"no acceptable server certificate from {peer()}",
                            )
                            reactor.callLater(0, abort)
                    return
                renegotiating = (
                    where & SSL.SSL_CB_HANDSHAKE_START
                    and state.established
                    and conn.get_protocol_version() != SSL.TLS1_3_VERSION
                ) or (
                    where & SSL.SSL_CB_WRITE_ALERT
                    and ret & 0xFF == _ALERT_NO_RENEGOTIATION
                )
                if renegotiating and not state.renegotiation:
                    # TLS 1.3 post-handshake messages (NewSessionTicket,
                    # KeyUpdate) also start "handshakes" and are left alone.
                    state.renegotiation = True
                    log.warn(
                        "warning: TLS renegotiation attempt by {peer} (next hop {nextHop}):"
                        " refused, aborting",
                        peer=peer(),
                        nextHop=nextHop,
                    )
                    reactor.callLater(0, abort)
            except Exception:
                log.failure("while checking for TLS renegotiation")

        connection.set_verify(SSL.VERIFY_PEER, verify)
        connection.set_info_callback(info)
        return connection


@attr.s(frozen=True, auto_attribs=True)
class ClientTLSPolicy:
    """
    The client TLS policy for one next hop, from L{clientTLSPolicy}.

    @ivar level: C{none}, C{may}, C{encrypt}, C{verify} or C{secure}: the
        level in effect (C{none} when TLS was disabled at level C{may} by a
        configuration problem; see L{warnings}).
    @ivar required: TLS is mandatory (C{encrypt} and above): without
        STARTTLS, or when the handshake or L{verdict} fails, the message is
        deferred, never sent in clear.
    @ivar nextHop: the next-hop domain (C{nexthop} in the match lists).
    @ivar matchRules: the match list of the level (C{verify}:
        C{smtp_tls_verify_cert_match}, C{secure}:
        C{smtp_tls_secure_cert_match}); empty below C{verify}.
    @ivar context: the shared client context; L{None} at level C{none}.
    @ivar serverName: C{smtp_tls_servername}: the SNI policy.
    @ivar warnings: lines for the caller to log, in Postfix's words.
    """

    level: str
    required: bool
    nextHop: str
    matchRules: tuple[str, ...] = ()
    context: SSL.Context | None = attr.ib(default=None, repr=False, eq=False)
    serverName: str = ""
    warnings: tuple[str, ...] = ()
    _reactor: IReactorTime | None = attr.ib(default=None, repr=False, eq=False)
    _states: "weakref.WeakKeyDictionary[object, _ClientConnectionState]" = attr.ib(
        factory=lambda: weakref.WeakKeyDictionary(), repr=False, eq=False, init=False
    )

    def _reactorOrGlobal(self) -> IReactorTime:
        if self._reactor is not None:
            return self._reactor
        from twisted.internet import reactor

        return reactor

    def acceptableNames(self, serverHostname: str) -> tuple[str, ...]:
        """
        The names a server certificate may match when delivering to
        C{serverHostname} for this next hop: exact names, and parent
        domains written with a leading dot.  Empty below C{verify}, where
        names are not checked.

        @param serverHostname: the MX (or relay) host name: C{hostname}.
        """
        return _acceptableNames(self.matchRules, self.nextHop, serverHostname)

    def serverNameFor(self, serverHostname: str) -> str | None:
        """
        The SNI name to send to C{serverHostname}, or L{None} for none: an
        empty C{smtp_tls_servername} or C{hostname} sends the server's host
        name, C{nexthop} the next-hop domain, anything else is sent as is.
        Addresses are never sent (RFC 6066 section 3).
        """
        setting = self.serverName.strip()
        if not setting or setting.lower() == "hostname":
            name = _nextHopDomain(serverHostname)
        elif setting.lower() == "nexthop":
            name = self.nextHop
        else:
            name = setting.rstrip(".")
        if not name or _isAddress(name):
            return None
        return name

    def creatorFor(self, serverHostname: str) -> IOpenSSLClientConnectionCreator:
        """
        The connection creator for C{startTLS} (or a client
        L{twisted.protocols.tls.TLSMemoryBIOFactory}) toward
        C{serverHostname}.

        At C{may} and C{encrypt} any certificate is accepted (Postfix
        delivers over Untrusted and Anonymous TLS); its trust is only
        recorded.  At C{verify} and C{secure} the handshake fails unless
        the chain verifies against the CA settings and the certificate
        matches one of L{acceptableNames}.  SNI follows L{serverNameFor}.
        A server that tries to renegotiate is refused, logged and cut off
        on the next reactor turn.

        @raise RuntimeError: at level C{none}: there is nothing to create.
        """
        if self.context is None:
            raise RuntimeError(f"TLS is off for {self.nextHop} (level {self.level})")
        return _ClientCreator(self, serverHostname)

    def verdict(self, transport: ITransport, peerName: str | None = None) -> TLSVerdict:
        """
        Judge a connection made with L{creatorFor}, after its handshake
        (or after it failed).

        @param transport: the TLS transport: the
            L{twisted.protocols.tls.TLSMemoryBIOProtocol} (what the SMTP
            protocol has as C{self.transport}), also after the connection
            was lost, or anything whose C{getHandle()} is the
            L{SSL.Connection}.
        @param peerName: the server as Postfix names it; by default
            C{hostname[address]:port}.

        @raise ValueError: when the connection was not made by this policy.
        """
        state = self._states.get(transport)
        if state is None:
            getHandle = getattr(transport, "getHandle", None)
            handle = getHandle() if getHandle is not None else None
            state = self._states.get(handle) if handle is not None else None
        if state is None:
            raise ValueError("not a connection made by this policy")
        if peerName is None:
            peerName = _serverPeerName(state.serverHostname, transport)
        problems = tuple(_errorText(code) for _, code in state.chainErrors)
        certificate = state.certificate
        mustMatch = self.level in _CLIENT_MATCHING
        if certificate is None:
            trust = "Anonymous"
        elif state.chainErrors:
            trust = "Untrusted"
        elif mustMatch and state.matchedName is not None:
            trust = "Verified"
        else:
            trust = "Trusted"
        reason: str | None = None
        if state.renegotiation:
            reason = "TLS renegotiation attempted by the server"
        elif not state.established:
            reason = state.rejection or "TLS handshake failed"
        elif mustMatch and trust != "Verified":
            reason = (
                "Server certificate not verified"
                if trust == "Trusted"
                else "Server certificate not trusted"
            )
        if state.established:
            logLine = (
                f"{trust} TLS connection established to {peerName}: {state.summary}"
                + _signatureText(certificate)
            )
        else:
            logLine = f"Cannot start TLS with {peerName}: {reason}"
        return TLSVerdict(
            trust=trust,
            satisfied=reason is None,
            established=state.established,
            logLine=logLine,
            reason=reason,
            matchedName=state.matchedName if trust == "Verified" else None,
            problems=problems,
        )


def clientTLSPolicy(
    view: ParameterView,
    *,
    nextHop: str,
    tlsa: None = None,
    reactor: IReactorTime | None = None,
) -> ClientTLSPolicy:
    """
    Work out the SMTP client's TLS policy for one next hop from its
    parameters (C{smtp_tls_*}), as Postfix's smtp(8) does.

    Protocols and ciphers come from C{smtp_tls_protocols} and
    C{smtp_tls_ciphers} at C{may}, their C{mandatory} forms at C{encrypt}
    and above, with the exclusion lists; as on the server, the minimum is
    TLS 1.2 unless the admin's protocol list names an older version.
    Trust comes from C{smtp_tls_CAfile} and C{smtp_tls_CApath} only (plus
    the system store with C{tls_append_default_CA = yes}), as with Postfix.
    A client certificate is presented when C{smtp_tls_chain_files} or
    C{smtp_tls_cert_file} is set.

    @param view: the parameters of the delivering service.
    @param nextHop: the next-hop domain: the recipient domain for MX
        delivery, the host of C{[host]:port} otherwise (brackets and port
        are stripped).
    @param tlsa: DANE TLSA records; not supported, must be L{None}.
    @param reactor: runs the deferred aborts; the global reactor by
        default.

    @raise TLSConfigurationError: for C{dane}, C{dane-only} and
        C{fingerprint} (not supported), and when TLS is required
        (C{encrypt} and above) but cannot be set up.  At C{may} a problem
        disables TLS instead: the policy's level is C{none} and its
        warnings say why (Postfix then delivers in clear).
    """
    if tlsa is not None:
        raise TLSConfigurationError(
            params.smtp_tls_security_level.name, "DANE (TLSA records) is not supported"
        )
    level = _clientSecurityLevel(view)
    domain = _nextHopDomain(nextHop)
    warnings: list[str] = []
    if level == "none":
        return ClientTLSPolicy("none", False, domain, reactor=reactor)
    rules: tuple[str, ...] = ()
    if level == "verify":
        rules = view[params.smtp_tls_verify_cert_match]
    elif level == "secure":
        rules = view[params.smtp_tls_secure_cert_match]
    required = level in _CLIENT_REQUIRED
    try:
        context = _buildClientContext(view, level, warnings)
    except _Disabled as problem:
        if required:
            raise TLSConfigurationError(
                problem.parameter,
                f"{problem.reason} (TLS is required by"
                f" {params.smtp_tls_security_level.name} = {level})",
            ) from None
        return ClientTLSPolicy(
            "none", False, domain, warnings=tuple(warnings) + problem.warnings, reactor=reactor
        )
    return ClientTLSPolicy(
        level,
        required,
        domain,
        rules,
        context,
        view[params.smtp_tls_servername],
        tuple(warnings),
        reactor=reactor,
    )
