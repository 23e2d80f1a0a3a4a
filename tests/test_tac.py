"""
The C{.tac} examples in C{tac/} run under a real C{twistd -ny}: the
standalone one from a configuration directory (here with postscreen in
front of smtpd), the embedded one handing mail to an application's own
C{IMessageDelivery}.
"""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import sys
import threading

from twisted.trial.unittest import TestCase

from .realpeers import HOST, ROOT, childEnvironment, freePort, temporaryDirectory, waitForFiles, writeConfiguration


def runTac(testCase: TestCase, tac: str, directory: str, environment: dict[str, str], port: int) -> None:
    """
    Run C{twistd -ny tac/TAC} in C{directory} until the test ends, and wait
    until it listens on C{port}.
    """
    log = open(os.path.join(directory, "twistd.log"), "wb")
    testCase.addCleanup(log.close)
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "-y", os.path.join(ROOT, "tac", tac)],
        cwd=directory, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop() -> None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)

    testCase.addCleanup(stop)
    for _ in range(600):
        if process.poll() is not None:
            with open(os.path.join(directory, "twistd.log"), "rb") as handle:
                raise AssertionError(f"twistd exited: {handle.read().decode(errors='replace')}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            threading.Event().wait(0.05)
    raise AssertionError(f"{tac} does not listen on {port}")


class TacTests(TestCase):
    """
    Both examples start and serve mail.
    """

    timeout = 120

    def test_standalone(self) -> None:
        """
        C{standalone.tac} runs the configuration C{MTAGUARD_CONFIG} names:
        here postscreen, whose teaser and smtpd's greeting a client sees.
        """
        directory = temporaryDirectory(self)
        port = freePort()
        writeConfiguration(directory, port, {"mynetworks": "10.255.255.0/24", "postscreen_greet_wait": "1s"})
        with open(os.path.join(directory, "master.cf"), "w") as handle:
            handle.write(f"{HOST}:{port} inet n - n - 1 postscreen\nsmtpd pass - - n - - smtpd\n")
        environment = childEnvironment(directory)
        environment["MTAGUARD_CONFIG"] = directory
        runTac(self, "standalone.tac", directory, environment, port)
        with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15) as client:
            code, banner = client.ehlo()
            self.assertEqual(code, 250)
            client.sendmail("a@example.org", ["postmaster@localhost"], b"Subject: via standalone.tac\r\n\r\nhi\r\n")
        [path] = waitForFiles(os.path.join(directory, "data", "maildir", "postmaster", "new"), 1)
        with open(path, "rb") as handle:
            self.assertIn(b"Subject: via standalone.tac", handle.read())

    def test_embedded(self) -> None:
        """
        C{embedded.tac} hands mail to the application's own delivery, which
        writes it under C{embedded-mail/}.
        """
        directory = temporaryDirectory(self)
        port = freePort()
        environment = childEnvironment(directory)
        environment["MTAGUARD_LISTEN"] = f"tcp:{port}:interface={HOST}"
        runTac(self, "embedded.tac", directory, environment, port)
        with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15) as client:
            client.sendmail("a@example.org", ["user@example.org"], b"Subject: via embedded.tac\r\n\r\nhi\r\n")
        [path] = waitForFiles(os.path.join(directory, "embedded-mail"), 1)
        with open(path, "rb") as handle:
            content = handle.read()
        self.assertIn(b"Subject: via embedded.tac", content)
        self.assertTrue(content.startswith(b"Received: from client.example by embedded-example"), content[:100])
