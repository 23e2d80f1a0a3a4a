"""
Connection reuse with real processes: a running C{twistd mtaguard} sends
several messages to Postfix's smtp-sink over one connection (RSET between
them), and says so in Postfix's form (C{conn_use=N}).
"""

from __future__ import annotations

import os
import smtplib

from twisted.trial.unittest import TestCase

from .relaypeers import aMessage, startSink
from .realpeers import (
    HOST,
    MtaguardProcess,
    freePort,
    requireTool,
    temporaryDirectory,
    waitForFiles,
    writeConfiguration,
)


class ConnectionReuseTests(TestCase):
    """
    A cached connection carries the next message to the same next hop.
    """

    timeout = 180

    def test_reusedWithSmtpSink(self) -> None:
        """
        With the relayhost listed in smtp_connection_cache_destinations,
        three messages sent in a row reach smtp-sink, the later ones over
        the first one's connection.
        """
        requireTool(self, "smtp-sink")
        directory = temporaryDirectory(self)
        port = freePort()
        sinkPort = freePort()
        received = os.path.join(directory, "sink")
        startSink(self, sinkPort, received)
        writeConfiguration(
            directory,
            port,
            {
                "relayhost": f"[{HOST}]:{sinkPort}",
                "smtp_tls_security_level": "",
                "smtp_connection_cache_destinations": f"[{HOST}]:{sinkPort}",
                # Long enough for a loaded machine to queue the next message.
                "smtp_connection_cache_time_limit": "30s",
            },
            masterExtra="smtp unix - - n - - smtp\n",
        )
        server = MtaguardProcess(directory, port)
        server.start()
        self.addCleanup(server.stop)

        with smtplib.SMTP(HOST, port, timeout=30) as client:
            for number in range(3):
                message = aMessage(f"reuse test {number}", f"message number {number}")
                client.send_message(message)
                # One at a time: each is delivered before the next comes.
                server.waitForLog("status=sent", count=number + 1)
        self.assertEqual(len(waitForFiles(received, 3, timeout=60)), 3)
        log = server.log()
        self.assertIn(f"relay=127.0.0.1[127.0.0.1]:{sinkPort}, conn_use=2, ", log)
        self.assertIn(f"relay=127.0.0.1[127.0.0.1]:{sinkPort}, conn_use=3, ", log)
