"""
Helpers for real-peer tests of mtaguard's SMTP client (the relay side): a
throw-away certificate authority, a stub DNS server for next-hop names, a
private Postfix instance (its own smtpd, with STARTTLS) as the next hop,
Postfix's smtp-sink, and a next hop that never answers the end of DATA.

Everything binds 127.0.0.1 on free ports, every wait has a deadline, and
nothing touches the system's Postfix: the private instance has its own
configuration, queue and data directories under the test's temporary
directory and its own log file (C{maillog_file}).
"""

from __future__ import annotations

import datetime
import os
import pwd
import smtplib
import socket
import subprocess
import sys
import threading
from email.message import EmailMessage
from typing import Any
from unittest import SkipTest

from .realpeers import HOST, ROOT, LogFileReader, _now, childEnvironment, requireTool

#: The host name of the next hop the tests relay to.
NEXT_HOP_NAME = "mx.next.example"


def requireCondition(testCase: Any, ok: bool, problem: str) -> None:
    """
    Fail under CI (C{CI=true}) and skip elsewhere unless C{ok}, as
    L{requireTool} does for a missing command.
    """
    if ok:
        return
    if os.environ.get("CI") == "true":
        testCase.fail(f"{problem}; it is required under CI")
    raise SkipTest(problem)


# --- certificates ------------------------------------------------------------


class CertificateAuthority:
    """
    A throw-away CA whose certificate is written to C{path}; it signs
    server certificates for any host name.
    """

    def __init__(self, directory: str, name: str = "mtaguard test CA") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.path = os.path.join(directory, "ca.pem")
        with open(self.path, "wb") as handle:
            handle.write(self._certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, hostname: str) -> tuple[str, str]:
        """
        Write a key and a server certificate for C{hostname} (in the
        subjectAltName and the CN) signed by this CA.

        @return: the paths of the key and of the certificate.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        keyPath = os.path.join(self.directory, f"{hostname}.key")
        certificatePath = os.path.join(self.directory, f"{hostname}.pem")
        with open(keyPath, "wb") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        os.chmod(keyPath, 0o600)
        with open(certificatePath, "wb") as handle:
            handle.write(certificate.public_bytes(serialization.Encoding.PEM))
        return keyPath, certificatePath


# --- DNS ---------------------------------------------------------------------


class StubDNS:
    """
    C{tests/dnsstub.py} as a child process, answering A queries for a few
    names on 127.0.0.1:C{port}.
    """

    def __init__(self, testCase: Any, port: int, table: dict[str, str]) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.dnsstub", str(port)]
            + [f"{name}={address}" for name, address in table.items()],
            cwd=ROOT, env=childEnvironment(ROOT), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        testCase.addCleanup(self.stop)
        assert self.process.stdout is not None
        # The child prints "ready" once it listens; readline() returns at
        # once (b"") if it dies first, and the thread bounds the wait.
        ready: list[bytes] = []
        reader = threading.Thread(
            target=lambda: ready.append(self.process.stdout.readline()),
            daemon=True,
        )
        reader.start()
        reader.join(30)
        if ready != [b"ready\n"]:
            self.stop()
            raise AssertionError(f"the stub DNS server did not start: {ready!r}")

    @property
    def server(self) -> str:
        """
        The server in C{mtaguard_dns_servers} syntax.
        """
        return f"[{HOST}]:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


# --- a private Postfix instance ------------------------------------------------

#: The daemons a private instance needs to receive mail over SMTP with
#: STARTTLS and discard it (chroot off: it lives under /tmp).
_MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixInstance(LogFileReader):
    """
    A private Postfix (master, smtpd, cleanup, qmgr, ...) listening on
    127.0.0.1:C{port} with STARTTLS (C{smtpd_tls_security_level = may})
    under the host name L{NEXT_HOP_NAME}.

    It accepts mail from 127.0.0.0/8 for any domain and discards it
    (C{default_transport = discard:relayed}), logging to its own
    C{maillog_file}: C{header_checks} log each message's C{Subject:}
    (C{warning: header Subject: ...}), which shows what arrived.  Started
    with C{postfix -c DIR start} and stopped with C{postfix -c DIR stop};
    this needs root, as any Postfix does.
    """

    def __init__(self, testCase: Any, directory: str, port: int, *, key: str, certificate: str) -> None:
        postfix = requireTool(testCase, "postfix")
        requireCondition(
            testCase, os.geteuid() == 0, "a private Postfix instance needs root"
        )
        try:
            owner: pwd.struct_passwd | None = pwd.getpwnam("postfix")
        except KeyError:
            owner = None
        requireCondition(testCase, owner is not None, "there is no postfix user")
        assert owner is not None
        self.postfix = postfix
        self.port = port
        self.root = os.path.join(directory, "postfix")
        self.config = os.path.join(self.root, "conf")
        queue = os.path.join(self.root, "queue")
        data = os.path.join(self.root, "data")
        for path in (self.config, queue, data):
            os.makedirs(path)
        # The daemons run as the postfix user: let it reach its files.
        for path in (directory, self.root):
            os.chmod(path, 0o755)
        os.chown(data, owner.pw_uid, owner.pw_gid)
        self.logPath = os.path.join(self.root, "maillog")
        checks = os.path.join(self.config, "header_checks")
        with open(checks, "w") as handle:
            handle.write("/^Subject: / WARN\n")
        settings = {
            "compatibility_level": "3.7",
            "myhostname": NEXT_HOP_NAME,
            "mydomain": "next.example",
            "mydestination": "",
            "inet_interfaces": HOST,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "queue_directory": queue,
            "data_directory": data,
            "mail_owner": owner.pw_name,
            "default_transport": "discard:relayed",
            "local_transport": "discard:local",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file": self.logPath,
            "maillog_file_prefixes": directory,
            "header_checks": f"regexp:{checks}",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_chain_files": f"{key}, {certificate}",
            "smtpd_tls_loglevel": "1",
            "smtpd_client_connection_count_limit": "0",
            # Clients log as unknown[127.0.0.1] whatever /etc/hosts says.
            "smtpd_peername_lookup": "no",
        }
        with open(os.path.join(self.config, "main.cf"), "w") as handle:
            for name, value in settings.items():
                handle.write(f"{name} = {value}\n")
        with open(os.path.join(self.config, "master.cf"), "w") as handle:
            handle.write(_MASTER_CF.format(host=HOST, port=port))
        testCase.addCleanup(self.stop)
        result = subprocess.run(
            [postfix, "-c", self.config, "start"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"postfix start failed ({result.returncode}): {result.stdout}{result.stderr}\n{self.log()}"
            )
        self._waitForListener(30)

    def _waitForListener(self, timeout: float) -> None:
        deadline = _now() + timeout
        while _now() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=5) as probe:
                    probe.settimeout(10)
                    if probe.recv(4).startswith(b"220"):
                        probe.sendall(b"QUIT\r\n")
                        return
            except OSError:
                pass
            threading.Event().wait(0.1)
        raise AssertionError(f"the private Postfix did not greet on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        subprocess.run(
            [self.postfix, "-c", self.config, "stop"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        )



# --- smtp-sink and other next hops ------------------------------------------------


def startSink(testCase: Any, port: int, received: str, *options: str) -> subprocess.Popen[bytes]:
    """
    Run Postfix's smtp-sink on 127.0.0.1:C{port}, writing each message it
    receives to a file in C{received} (created here), with extra
    C{options} (C{-W connect:5}, ...).
    """
    sink = requireTool(testCase, "smtp-sink")
    os.makedirs(received, exist_ok=True)
    process = subprocess.Popen(
        [sink, "-u", "root", "-d", os.path.join(received, "%M."), *options, f"{HOST}:{port}", "100"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    testCase.addCleanup(process.wait, 30)
    testCase.addCleanup(_kill, process)
    return process


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()


class SilentAfterData:
    """
    A next hop on 127.0.0.1:C{port} (threads, one per connection) that
    accepts everything up to the end of DATA and then never answers: the
    sender is stuck waiting for the reply to its final dot.

    L{dataEnded} is set when some connection has sent its final dot;
    L{messages} holds every message received so far.
    """

    def __init__(self, testCase: Any, port: int) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, port))
        self.listener.listen(16)
        self.dataEnded = threading.Event()
        self.messages: list[bytes] = []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()
        testCase.addCleanup(self.stop)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self._stopped:
                    connection.close()
                    return
                self._connections.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(120)
        buffer = b""
        inData = False
        message = b""
        try:
            connection.sendall(b"220 silent.example ESMTP\r\n")
            while True:
                data = connection.recv(65536)
                if not data:
                    return
                buffer += data
                while b"\r\n" in buffer:
                    line, buffer = buffer.split(b"\r\n", 1)
                    if inData:
                        if line == b".":
                            with self._lock:
                                self.messages.append(message)
                            self.dataEnded.set()
                            # Never answer; wait for the sender to go.
                            while connection.recv(65536):
                                pass
                            return
                        message += line + b"\r\n"
                        continue
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        connection.sendall(b"250 silent.example\r\n")
                    elif verb == b"DATA":
                        inData = True
                        connection.sendall(b"354 go ahead\r\n")
                    elif verb == b"QUIT":
                        connection.sendall(b"221 bye\r\n")
                        return
                    else:
                        connection.sendall(b"250 ok\r\n")
        except OSError:
            return
        finally:
            connection.close()

    def stop(self) -> None:
        """
        Stop listening and drop every connection.
        """
        with self._lock:
            self._stopped = True
            connections, self._connections = self._connections, []
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# --- mtaguard side -------------------------------------------------------------


def aMessage(subject: str, body: str | None = None, recipient: str = "someone@remote.example") -> EmailMessage:
    """
    A message from C{sender@example.org} to C{recipient} with C{subject},
    whose body is C{body} (by default the subject).
    """
    message = EmailMessage()
    message["From"] = "sender@example.org"
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(f"{subject if body is None else body}\n")
    return message


def submit(port: int, subject: str, recipient: str = "someone@remote.example") -> None:
    """
    Send one message to mtaguard on C{port}; raises unless it is
    acknowledged with 250.
    """
    with smtplib.SMTP(HOST, port, timeout=30) as client:
        client.send_message(aMessage(subject, recipient=recipient))


def queueCommand(directory: str, program: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """
    Run C{mtaguard-postqueue} or C{mtaguard-postsuper} on the configuration
    in C{directory}.
    """
    entry = {"postqueue": "postqueueMain", "postsuper": "postsuperMain"}[program]
    return subprocess.run(
        [sys.executable, "-c", f"import sys; from mtaguard.control import {entry}; sys.exit({entry}())",
         "-c", directory, *argv],
        cwd=ROOT, env=childEnvironment(directory), capture_output=True, text=True, timeout=60,
    )


def subjects(directory: str) -> list[bytes]:
    """
    The C{Subject:} lines of the messages smtp-sink wrote to C{directory},
    sorted, one per file.
    """
    found = []
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as handle:
            for line in handle.read().splitlines():
                if line.startswith(b"Subject: "):
                    found.append(line)
                    break
    return sorted(found)


__all__ = [
    "NEXT_HOP_NAME",
    "CertificateAuthority",
    "PostfixInstance",
    "SilentAfterData",
    "StubDNS",
    "queueCommand",
    "requireCondition",
    "startSink",
    "subjects",
    "submit",
]
