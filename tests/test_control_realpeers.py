"""
The control socket with real processes: C{mtaguard-postqueue -f} and
C{mtaguard-postsuper -r} make a running C{twistd mtaguard} deliver deferred
mail at once, long before its backoff would have tried again.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage

from twisted.trial.unittest import TestCase

from .realpeers import (
    HOST,
    ROOT,
    MtaguardProcess,
    childEnvironment,
    freePort,
    requireTool,
    temporaryDirectory,
    waitForFiles,
    writeConfiguration,
)

#: Far beyond the test's time: a delivery within it is the control
#: command's doing, not a queue run's or a backoff's.
HOUR = "3600s"


class ControlSocketProcessTests(TestCase):
    """
    The commands reach a real service over its control socket.
    """

    timeout = 180

    def setUp(self) -> None:
        self.sink = requireTool(self, "smtp-sink")
        self.directory = temporaryDirectory(self)
        self.port = freePort()
        self.sinkPort = freePort()
        writeConfiguration(
            self.directory,
            self.port,
            {
                "relayhost": f"[{HOST}]:{self.sinkPort}",
                "smtp_tls_security_level": "",
                "queue_run_delay": HOUR,
                "minimal_backoff_time": HOUR,
                "maximal_backoff_time": HOUR,
            },
            masterExtra="smtp unix - - n - - smtp\n",
        )
        self.server = MtaguardProcess(self.directory, self.port)
        self.server.start()
        self.addCleanup(self.server.stop)

    def send(self, subject: str) -> None:
        with smtplib.SMTP(HOST, self.port, timeout=30) as client:
            message = EmailMessage()
            message["From"] = "sender@example.org"
            message["To"] = "someone@remote.example"
            message["Subject"] = subject
            message.set_content("control socket test\n")
            client.send_message(message)

    def startSink(self) -> str:
        received = os.path.join(self.directory, "sink")
        os.makedirs(received)
        sink = subprocess.Popen(
            [self.sink, "-u", "root", "-d", os.path.join(received, "%M."), f"{HOST}:{self.sinkPort}", "100"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.addCleanup(sink.wait, 30)
        self.addCleanup(sink.kill)
        return received

    def command(self, program: str, *argv: str) -> subprocess.CompletedProcess[str]:
        entry = {"postqueue": "postqueueMain", "postsuper": "postsuperMain"}[program]
        return subprocess.run(
            [sys.executable, "-c", f"import sys; from mtaguard.control import {entry}; sys.exit({entry}())",
             "-c", self.directory, *argv],
            cwd=ROOT, env=childEnvironment(self.directory), capture_output=True, text=True, timeout=60,
        )

    def deferUntilNextHopUp(self) -> str:
        """
        Send one message while the next hop is down; once it is deferred,
        start Postfix's smtp-sink as the next hop.

        @return: the directory the sink writes messages to.
        """
        self.send("deferred then flushed")
        self.server.waitForLog("status=deferred")
        return self.startSink()

    def test_flush(self) -> None:
        """
        After C{mtaguard-postqueue -f} the deferred message reaches the
        next hop within seconds, though the backoff and the queue run
        delay are an hour.
        """
        received = self.deferUntilNextHopUp()
        started = time.monotonic()
        result = self.command("postqueue", "-f")
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "", ""))
        [path] = waitForFiles(received, 1, timeout=60)
        self.assertLess(time.monotonic() - started, 60)
        with open(path, "rb") as handle:
            self.assertIn(b"Subject: deferred then flushed", handle.read())
        self.server.waitForLog("status=sent")

    def test_requeueAndNoService(self) -> None:
        """
        C{mtaguard-postsuper -r ALL} also delivers at once; once the
        service is stopped, C{mtaguard-postqueue -f} says it is not running
        and exits 1.
        """
        received = self.deferUntilNextHopUp()
        result = self.command("postsuper", "-r", "ALL")
        self.assertEqual(
            (result.returncode, result.stderr), (0, "mtaguard-postsuper: Requeued: 1 message\n"), self.server.log()
        )
        waitForFiles(received, 1, timeout=60)
        self.server.stop()
        result = self.command("postqueue", "-f")
        self.assertEqual(result.returncode, 1)
        self.assertIn("Cannot flush mail queue - the mtaguard service is not running", result.stderr)
