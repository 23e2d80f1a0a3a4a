"""
The fail2ban filter shipped in C{docs/fail2ban/filter.d/mtaguard.conf},
checked with the real C{fail2ban-regex}: against smtpd lines a real
C{twistd mtaguard} writes (bad RCPT, non-SMTP command, failed AUTH, AUTH
dropped, too many errors, plus a clean session), and against postscreen
lines rendered from postscreen's format constants in twistd's log layout.

Each offending session comes from its own loopback address, so the
addresses fail2ban extracts say which lines matched.
"""

from __future__ import annotations

import base64
import collections
import os
import socket
import subprocess
from typing import Any

from twisted.logger import LogLevel, formatEventAsClassicLogText
from twisted.trial.unittest import TestCase

from .realpeers import (
    HOST,
    ROOT,
    LineSocket,
    MtaguardProcess,
    freePort,
    requireTool,
    runTool,
    temporaryDirectory,
    writeConfiguration,
)

FILTER = os.path.join(ROOT, "docs", "fail2ban", "filter.d", "mtaguard.conf")


def failedAddresses(testCase: TestCase, logPath: str) -> collections.Counter[str]:
    """
    Run C{fail2ban-regex -o ip LOG FILTER}: one address per matched line.
    """
    tool = requireTool(testCase, "fail2ban-regex")
    result = runTool([tool, "-o", "ip", logPath, FILTER], timeout=120)
    testCase.assertEqual(result.returncode, 0, result)
    return collections.Counter(result.stdout.decode().split())


class FromAddress(LineSocket):
    """
    A raw client socket bound to a chosen loopback source address.
    """

    def __init__(self, port: int, source: str) -> None:
        self.sock: Any = socket.create_connection(
            (HOST, port), timeout=10, source_address=(source, 0)
        )
        self.buffer = b""

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.readReply()


class SmtpdLinesTests(TestCase):
    """
    smtpd's own log lines, from a real process.
    """

    timeout = 120

    def setUp(self) -> None:
        requireTool(self, "fail2ban-regex")
        self.directory = temporaryDirectory(self)
        passwords = os.path.join(self.directory, "sasl-passwd")
        with open(passwords, "w") as handle:
            handle.write("alice:{PLAIN}right\n")
        self.port = freePort()
        writeConfiguration(self.directory, self.port, {
            # Only 127.0.0.1 may relay; the clients below come from
            # other loopback addresses.
            "mynetworks": "127.0.0.1/32",
            "smtpd_sasl_auth_enable": "yes",
            "mtaguard_sasl_password_file": passwords,
            "smtpd_tls_auth_only": "no",
            "smtpd_hard_error_limit": "3",
            "smtpd_error_sleep_time": "0",
        })
        self.server = MtaguardProcess(self.directory, self.port)
        self.server.start()
        self.addCleanup(self.server.stop)

    def client(self, source: str) -> FromAddress:
        client = FromAddress(self.port, source)
        self.addCleanup(client.close)
        self.assertTrue(client.readReply().startswith(b"220 "))
        return client

    def test_offendersMatchCleanSessionsDoNot(self) -> None:
        """
        Rejected recipients (one match each), a non-SMTP command, a failed
        AUTH, an AUTH dropped halfway and too many errors each give their
        client's address; a clean session gives none.
        """
        relay = self.client("127.0.0.31")
        relay.command(b"EHLO relay.example")
        relay.command(b"MAIL FROM:<a@relay.example>")
        for victim in (b"one", b"two"):
            reply = relay.command(b"RCPT TO:<" + victim + b"@remote.example>")
            self.assertTrue(reply.startswith(b"454 4.7.1 "), reply)
        relay.command(b"QUIT")

        http = self.client("127.0.0.32")
        self.assertTrue(http.command(b"GET / HTTP/1.1").startswith(b"221 "))

        guesser = self.client("127.0.0.33")
        guesser.command(b"EHLO guesser.example")
        wrong = base64.b64encode(b"\0alice\0wrong")
        self.assertTrue(guesser.command(b"AUTH PLAIN " + wrong).startswith(b"535 "))
        guesser.command(b"QUIT")

        dropper = self.client("127.0.0.34")
        dropper.command(b"EHLO dropper.example")
        self.assertTrue(dropper.command(b"AUTH LOGIN").startswith(b"334 "))
        dropper.close()

        noisy = self.client("127.0.0.35")
        for _ in range(3):
            self.assertTrue(noisy.command(b"BLAH").startswith(b"5"))
        self.assertTrue(noisy.command(b"BLAH").startswith(b"421 "))

        clean = self.client("127.0.0.36")
        clean.command(b"EHLO clean.example")
        clean.command(b"QUIT")

        for source in ("31", "32", "33", "34", "35", "36"):
            self.server.waitForLog(f"disconnect from unknown[127.0.0.{source}]")
        found = failedAddresses(self, self.server.logPath)
        self.assertEqual(found, collections.Counter({
            "127.0.0.31": 2, "127.0.0.32": 1, "127.0.0.33": 1, "127.0.0.34": 1,
            "127.0.0.35": 1,
        }), self.server.log())

        # Every session's connect and disconnect line, offenders' included,
        # is left alone.
        sessions = os.path.join(self.directory, "sessions.log")
        with open(sessions, "w") as handle:
            for line in self.server.log().splitlines():
                if " connect from " in line or " disconnect from " in line:
                    handle.write(line + "\n")
        self.assertEqual(failedAddresses(self, sessions), collections.Counter())


# Postfix's formats (reference §5.1), used when postscreen's SMTP engine
# module that defines them is not there.
_ENGINE_FALLBACKS = {
    "NON_SMTP_COMMAND_LOG_FORMAT":
        "NON-SMTP COMMAND from [{address}]:{port} after {where}: {command} {escaped}",
    "BARE_NEWLINE_LOG_FORMAT": "BARE NEWLINE from [{address}]:{port} after {escaped}",
    "COMMAND_PIPELINING_LOG_FORMAT":
        "COMMAND PIPELINING from [{address}]:{port} after {command}: {escaped}",
}


def _engineFormat(name: str) -> str:
    try:
        from mtaguard.postscreen import _engine
    except Exception:
        return _ENGINE_FALLBACKS[name]
    return str(getattr(_engine, name, _ENGINE_FALLBACKS[name]))


def twistdLine(namespace: str, level: LogLevel, format: str, **fields: Any) -> str:
    """
    One line as twistd writes it to its log file.
    """
    event = dict(fields, log_format=format, log_namespace=namespace, log_level=level,
                 log_time=1795649804.0)
    text = formatEventAsClassicLogText(event)
    assert text is not None
    return text


class PostscreenLinesTests(TestCase):
    """
    postscreen's lines, rendered from its format constants.
    """

    def test_sample(self) -> None:
        """
        PREGREET, DNSBL rank, NON-SMTP COMMAND, BARE NEWLINE, COMMAND
        PIPELINING and DENYLISTED / BLACKLISTED match, IPv4 and IPv6; PASS
        NEW / PASS OLD / HANGUP do not; text the client chose cannot put
        another address into a match.
        """
        from mtaguard.postscreen._dnsbl import RANK_LOG_FORMAT
        from mtaguard.postscreen._early import (
            ALLOWLISTED_LOG_FORMAT,
            BLACKLISTED_LOG_FORMAT,
            DENYLISTED_LOG_FORMAT,
            HANGUP_BEFORE_HANDSHAKE,
            HANGUP_LOG_FORMAT,
            PASS_NEW_LOG_FORMAT,
            PASS_OLD_LOG_FORMAT,
            PREGREET_LOG_FORMAT,
        )

        def line(format: str, address: str, **fields: Any) -> str:
            return twistdLine("mtaguard.postscreen", LogLevel.info, format,
                              address=address, port=41234, **fields)

        lines = [
            line(PREGREET_LOG_FORMAT, "198.51.100.1", count=11, delay="0.2",
                 escaped="EHLO bot\\r\\n"),
            # The escaped pre-greeting tries to name someone else.
            line(PREGREET_LOG_FORMAT, "198.51.100.1", count=40, delay="0.1",
                 escaped="x from [192.0.2.99]:25: EHLO"),
            line(PREGREET_LOG_FORMAT, "2001:db8::1", count=5, delay="1.5", escaped="HELO\\r\\n"),
            line(RANK_LOG_FORMAT, "198.51.100.2", rank=3),
            line(_engineFormat("NON_SMTP_COMMAND_LOG_FORMAT"), "198.51.100.3", where="CONNECT",
                 command="GET", escaped="/ HTTP/1.1 from [192.0.2.99]:1"),
            line(_engineFormat("BARE_NEWLINE_LOG_FORMAT"), "198.51.100.4",
                 escaped="EHLO b.example"),
            line(_engineFormat("COMMAND_PIPELINING_LOG_FORMAT"), "198.51.100.5", command="EHLO",
                 escaped="MAIL FROM:<a@p.example>\\r\\n"),
            line(DENYLISTED_LOG_FORMAT, "198.51.100.6"),
            line(BLACKLISTED_LOG_FORMAT, "2001:db8::6"),
            # Clean clients.
            line(PASS_NEW_LOG_FORMAT, "198.51.100.50"),
            line(PASS_OLD_LOG_FORMAT, "198.51.100.50"),
            line(ALLOWLISTED_LOG_FORMAT, "198.51.100.51"),
            line(HANGUP_LOG_FORMAT, "198.51.100.52", delay="0.3", where=HANGUP_BEFORE_HANDSHAKE),
            twistdLine("mtaguard.postscreen", LogLevel.info,
                       "CONNECT from [{address}]:{port} to [{server}]:{sport}",
                       address="198.51.100.50", port=1, server="192.0.2.2", sport=25),
            twistdLine("mtaguard.postscreen", LogLevel.info, "DISCONNECT [{address}]:{port}",
                       address="198.51.100.50", port=1),
        ]
        path = os.path.join(temporaryDirectory(self), "postscreen.log")
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        self.assertTrue(lines[0].startswith("2026-11-"), lines[0])
        self.assertIn(" [mtaguard.postscreen#info] PREGREET 11 after 0.2 from", lines[0])
        self.assertEqual(failedAddresses(self, path), collections.Counter({
            "198.51.100.1": 2, "2001:db8::1": 1, "198.51.100.2": 1, "198.51.100.3": 1,
            "198.51.100.4": 1, "198.51.100.5": 1, "198.51.100.6": 1, "2001:db8::6": 1,
        }))
