"""
The Message-ID lines of mtaguard's queue against those of a real Postfix
cleanup: the same messages go to a C{twistd mtaguard} and to a private
Postfix 3.7, and both logs must name the same Message-IDs in the same form.
"""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import time

from twisted.trial.unittest import TestCase

from .realpeers import HOST, MtaguardProcess, freePort, temporaryDirectory, writeConfiguration
from .relaypeers import NEXT_HOP_NAME, CertificateAuthority, PostfixInstance

#: Header sections whose Message-ID lines differ: plain, odd spacing and
#: case, folded, missing, not bracketed, twice, resent.
MESSAGES = [
    b"Subject: one\r\nMessage-ID: <abc.123@example.org>\r\n\r\nbody\r\n",
    b"Subject: two\r\nmessage-id:   <spaced@example.org>  \r\n\r\nbody\r\n",
    b"Subject: three\r\nMessage-Id:\r\n <folded@example.org>\r\n\r\nbody\r\n",
    b"Subject: four\r\n\r\nMessage-ID: <in-the-body@example.org>\r\n",
    b"Subject: five\r\nMessage-ID: not-bracketed\r\n\r\nbody\r\n",
    b"Subject: six\r\nMessage-ID: <a@x>\r\nMessage-ID: <b@x>\r\n\r\nbody\r\n",
    b"Resent-Message-ID: <resent@x>\r\nMessage-ID: <seven@x>\r\n\r\nbody\r\n",
]

_LINE = re.compile(r": ((?:resent-)?message-id=.*)$", re.M)


def send(port: int) -> None:
    with smtplib.SMTP(HOST, port, timeout=30) as client:
        for message in MESSAGES:
            client.sendmail("sender@example.org", ["someone@remote.example"], message)


def messageIDLines(read: object, count: int, timeout: float = 30.0) -> list[str]:
    """
    The C{message-id=} lines of a log, once there are C{count} of them.
    """
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = _LINE.findall(read())  # type: ignore[operator]
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"only {len(lines)} message-id lines: {lines}")


class MessageIDLinesTests(TestCase):
    """
    C{ID: message-id=...} as Postfix's cleanup logs it.
    """

    timeout = 120

    def test_sameAsPostfix(self) -> None:
        """
        For the same messages, mtaguard logs the same Message-ID lines as
        Postfix (which, for clients outside C{local_header_rewrite_clients},
        adds no header either).
        """
        directory = temporaryDirectory(self)
        key, certificate = CertificateAuthority(directory).issue(NEXT_HOP_NAME)
        postfixPort = freePort()
        postfix = PostfixInstance(self, directory, postfixPort, key=key, certificate=certificate)
        for command in (
            ["postconf", "-c", postfix.config, "-e", "local_header_rewrite_clients ="],
            [postfix.postfix, "-c", postfix.config, "reload"],
        ):
            subprocess.run(command, check=True, capture_output=True, timeout=60)
        configuration = os.path.join(directory, "mtaguard")
        os.makedirs(configuration)
        port = freePort()
        writeConfiguration(configuration, port, {"queue_run_delay": "3600s"})
        server = MtaguardProcess(configuration, port)
        server.start()
        self.addCleanup(server.stop)

        send(port)
        # Postfix's master restarts its daemons on reload: wait for that.
        time.sleep(1.0)
        send(postfixPort)
        expected = len(MESSAGES) + 2  # six has two, seven a resent one
        ours = messageIDLines(server.log, expected)
        theirs = messageIDLines(postfix.log, expected)
        self.assertEqual(ours, theirs)
        self.assertIn("message-id=<>", ours)
        self.assertIn("message-id=<spaced@example.org>  ", ours)
