# -*- test-case-name: tests.test_tls -*-
"""
C{mtaguard-tls}: TLS chores for first runs, after Postfix's C{postfix tls}.

C{mtaguard-tls new-server-cert [-c DIR] [--hostname NAME] [--days N]
[--ecdsa] [--force]} makes a private key and a self-signed certificate for
the host, writes them as one chain file (key first, as
C{smtpd_tls_chain_files} wants) to C{DIR/tls/}, readable by the owner only,
and prints the main.cf lines that enable opportunistic TLS with it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import sys
import tempfile
from typing import Sequence, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtaguard.config import (
    ConfigurationError,
    ParameterError,
    params,
    parseConfiguration,
)

PROGRAM = "mtaguard-tls"

#: Where the configuration lives without C{-c} or C{$MAIL_CONFIG}, as for
#: C{mtaguard-postconf}.
DEFAULT_CONFIG_DIRECTORY = "/etc/mtaguard"


class _Fatal(Exception):
    """
    The command cannot go on; C{str()} is the message.
    """


def _hostname(directory: str) -> str:
    """
    C{myhostname} as main.cf in C{directory} sets it, else the registry
    default (this host's name).  Only main.cf matters here, so a missing
    master.cf is no reason to fail.
    """
    mainCf = os.path.join(directory, "main.cf")
    try:
        with open(mainCf, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
    except FileNotFoundError:
        text = ""
    except OSError as error:
        raise _Fatal(f"open {mainCf}: {error.strerror}") from None
    try:
        configuration = parseConfiguration(directory, text, "")
        return configuration.view()[params.myhostname]
    except (ConfigurationError, ParameterError) as error:
        raise _Fatal(str(error)) from None


def makeSelfSigned(
    hostname: str, days: int, *, ecdsa: bool = False
) -> tuple[bytes, bytes]:
    """
    A new private key and a self-signed server certificate for C{hostname}.

    @param days: how long the certificate is valid.
    @param ecdsa: make an EC P-256 key instead of RSA 2048.  RSA is the
        default, as with Postfix, because every SMTP client can use it.
    @return: the key (PKCS#8 PEM) and the certificate (PEM).
    """
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if ecdsa:
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # RSA key transport is still used by some old TLS 1.0 clients.
        key_encipherment=not ecdsa,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A little slack for clients whose clocks run behind.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    keyPEM = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return keyPEM, certificate.public_bytes(serialization.Encoding.PEM)


def writePrivately(path: str, data: bytes, *, replace: bool) -> None:
    """
    Write C{data} to C{path} with mode 0600: to a temporary file beside
    it (created 0600, so the key is never readable by others, not even for
    a moment), fsynced, then renamed into place; then the directory is
    fsynced.

    @param replace: whether an existing file may be replaced.
    @raise FileExistsError: when C{path} exists and C{replace} is false.
    """
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=".new-", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o600)
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            # link() fails if the name exists, so an existing key is never
            # clobbered by a race between two runs.
            os.link(temporary, path)
            os.unlink(temporary)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    directoryDescriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directoryDescriptor)
    finally:
        os.close(directoryDescriptor)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="TLS set-up helpers for mtaguard."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser(
        "new-server-cert",
        help="create a private key and a self-signed server certificate",
    )
    new.add_argument(
        "-c",
        dest="directory",
        metavar="DIR",
        help="configuration directory (default: $MAIL_CONFIG, else /etc/mtaguard)",
    )
    new.add_argument("--hostname", help="name in the certificate (default: myhostname)")
    new.add_argument(
        "--days", type=int, default=365, help="validity in days (default: 365)"
    )
    new.add_argument("--ecdsa", action="store_true", help="EC P-256 key instead of RSA 2048")
    new.add_argument("--force", action="store_true", help="replace an existing file")
    return parser


def _newServerCert(arguments: argparse.Namespace, out: TextIO) -> None:
    directory = os.path.abspath(
        arguments.directory or os.environ.get("MAIL_CONFIG") or DEFAULT_CONFIG_DIRECTORY
    )
    if not os.path.isdir(directory):
        raise _Fatal(f"{directory}: not a directory")
    if arguments.days < 1:
        raise _Fatal(f"--days must be at least 1, not {arguments.days}")
    hostname = arguments.hostname or _hostname(directory)
    if not hostname:
        raise _Fatal("empty host name: use --hostname")
    keyPEM, certPEM = makeSelfSigned(hostname, arguments.days, ecdsa=arguments.ecdsa)
    tlsDirectory = os.path.join(directory, "tls")
    os.makedirs(tlsDirectory, mode=0o700, exist_ok=True)
    path = os.path.join(tlsDirectory, f"server-{'ecdsa' if arguments.ecdsa else 'rsa'}.pem")
    try:
        writePrivately(path, keyPEM + certPEM, replace=arguments.force)
    except FileExistsError:
        raise _Fatal(f"{path} exists: use --force to replace it") from None
    out.write(
        f"# self-signed certificate for {hostname}, valid {arguments.days} days;"
        " add to main.cf:\n"
        f"{params.smtpd_tls_chain_files.name} = {path}\n"
        f"{params.smtpd_tls_security_level.name} = may\n"
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """
    The C{mtaguard-tls} command.

    @param argv: the arguments without the program name; C{sys.argv[1:]}
        by default.
    @return: the exit status: 0, 1 after a fatal error, 2 for bad usage.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        # argparse writes usage errors to sys.stderr itself.
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            arguments = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exit:
        return int(exit.code or 0)
    try:
        _newServerCert(arguments, out)
    except _Fatal as error:
        err.write(f"{PROGRAM}: fatal: {error}\n")
        return 1
    except OSError as error:
        err.write(f"{PROGRAM}: fatal: {error.filename}: {error.strerror}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
