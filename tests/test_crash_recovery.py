"""
Crash recovery with real processes: mail acknowledged with 250 survives a
kill -9 of mtaguard and is delivered after a restart.
"""

from __future__ import annotations

import os
import signal
import smtplib

from twisted.trial.unittest import TestCase

from .relaypeers import aMessage, queueCommand, startSink, subjects
from .realpeers import (
    HOST,
    MtaguardProcess,
    freePort,
    requireTool,
    temporaryDirectory,
    waitForFiles,
    writeConfiguration,
)


class KillNineTests(TestCase):
    """
    The durable queue keeps every acknowledged message across a crash.
    """

    timeout = 180

    def test_acknowledgedMailSurvivesKill(self) -> None:
        """
        Twenty messages for a next hop that is down are acknowledged; the
        process is killed with SIGKILL; after a restart, with the next hop
        (Postfix's smtp-sink) up, all twenty arrive there.
        """
        requireTool(self, "smtp-sink")
        directory = temporaryDirectory(self)
        port = freePort()
        sinkPort = freePort()
        writeConfiguration(
            directory,
            port,
            {"relayhost": f"[{HOST}]:{sinkPort}", "smtp_tls_security_level": ""},
            masterExtra="smtp unix - - n - - smtp\n",
        )
        server = MtaguardProcess(directory, port)
        server.start()
        self.addCleanup(server.stop)

        with smtplib.SMTP(HOST, port, timeout=30) as client:
            for number in range(20):
                message = aMessage(f"crash test {number}", f"message number {number}")
                # send_message raises unless the server answered 250.
                client.send_message(message)

        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)

        received = os.path.join(directory, "sink")
        startSink(self, sinkPort, received)

        restarted = MtaguardProcess(directory, port)
        restarted.start()
        self.addCleanup(restarted.stop)
        # The messages deferred before the crash keep their backoff (it is
        # in their files, as with Postfix): flush, as an admin would.
        flushed = queueCommand(directory, "postqueue", "-f")
        self.assertEqual(flushed.returncode, 0, flushed.stderr)
        waitForFiles(received, 20, timeout=90)
        delivered = {line for line in subjects(received) if line.startswith(b"Subject: crash test ")}
        self.assertEqual(len(delivered), 20, restarted.log())
