"""
kill -9 of a real mtaguard process at the awkward moments of a message's
life (tests/test_crash_recovery.py covers the one after the 250, with the
next hop down):

  - in the middle of receiving DATA: the half-received message was never
    acknowledged, so after a restart nothing of it is delivered or left in
    the queue, while an acknowledged one is delivered;
  - in the middle of delivering: the next hop has taken the whole message
    but not yet answered the final dot; after a restart every acknowledged
    message arrives at least once (the interrupted ones may arrive twice,
    as with Postfix: "message may be sent more than once").

Every wait is for a file, a log line or a socket event, with a deadline.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable

from twisted.trial.unittest import TestCase

from .realpeers import (
    HOST,
    LineSocket,
    MtaguardProcess,
    _now,
    freePort,
    temporaryDirectory,
    waitForFiles,
    writeConfiguration,
)
from .relaypeers import SilentAfterData, queueCommand, startSink, subjects, submit


def kill(server: MtaguardProcess) -> None:
    """
    SIGKILL the process and reap it.
    """
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(30)


def waitUntil(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """
    Poll C{predicate} until it is true, or fail after C{timeout} seconds.
    """
    deadline = _now() + timeout
    while _now() < deadline:
        if predicate():
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"{what} not within {timeout}s")


class KillMomentTests(TestCase):
    """
    What survives a SIGKILL depends only on whether the message was
    acknowledged, not on what mtaguard was doing at the time.
    """

    timeout = 180

    def configure(self, sinkPort: int) -> tuple[str, int, str]:
        """
        Configure mtaguard relaying everything to 127.0.0.1:C{sinkPort}.

        @return: its directory, its port, its queue directory.
        """
        directory = temporaryDirectory(self)
        port = freePort()
        paths = writeConfiguration(
            directory,
            port,
            {"relayhost": f"[{HOST}]:{sinkPort}", "smtp_tls_security_level": ""},
            masterExtra="smtp unix - - n - - smtp\n",
        )
        return directory, port, os.path.join(paths["queue"], "mtaguard")

    def test_killMidData(self) -> None:
        """
        One message is acknowledged while the next hop is down; a second
        is half sent (DATA accepted, part of the body, no final dot) when
        mtaguard is killed.  After a restart with smtp-sink up, the first
        arrives, the second never does, and the queue ends empty: the
        unfinished file is removed at start-up.
        """
        sinkPort = freePort()
        directory, port, queue = self.configure(sinkPort)
        server = MtaguardProcess(directory, port)
        server.start()
        self.addCleanup(server.stop)
        submit(port, "acknowledged before the crash")
        server.waitForLog("status=deferred")

        client = LineSocket(port)
        self.addCleanup(client.close)
        self.assertTrue(client.readReply().startswith(b"220"))
        client.send(b"EHLO client.example\r\n")
        self.assertTrue(client.readReply().startswith(b"250"))
        client.send(b"MAIL FROM:<sender@example.org>\r\n")
        self.assertTrue(client.readReply().startswith(b"250"))
        client.send(b"RCPT TO:<someone@remote.example>\r\n")
        self.assertTrue(client.readReply().startswith(b"250"))
        client.send(b"DATA\r\n")
        self.assertTrue(client.readReply().startswith(b"354"))
        client.send(
            b"From: sender@example.org\r\nTo: someone@remote.example\r\n"
            b"Subject: half sent when killed\r\n\r\n" + b"the first half of the body\r\n" * 200
        )
        # The message has its file in incoming/ from the start of DATA.
        incoming = os.path.join(queue, "incoming")
        waitUntil(lambda: bool(os.listdir(incoming)), "a file in incoming/")
        kill(server)
        client.close()
        self.assertEqual(len(os.listdir(os.path.join(queue, "active"))), 1)

        received = os.path.join(directory, "sink")
        startSink(self, sinkPort, received)
        restarted = MtaguardProcess(directory, port)
        restarted.start()
        self.addCleanup(restarted.stop)
        # The deferred message keeps its backoff across the restart (it is
        # in the file, as with Postfix): flush, as an admin would.
        flushed = queueCommand(directory, "postqueue", "-f")
        self.assertEqual(flushed.returncode, 0, flushed.stderr)
        log = restarted.waitForLog("status=sent")
        # Start-up emptied incoming/ (logging only files that had content
        # on disk: the store keeps empty spare files there).
        waitForFiles(received, 1)
        self.assertEqual(os.listdir(incoming), [])
        listing = queueCommand(directory, "postqueue", "-p")
        self.assertEqual((listing.returncode, listing.stdout), (0, "Mail queue is empty\n"), listing.stderr)
        self.assertEqual(subjects(received), [b"Subject: acknowledged before the crash"])
        self.assertEqual(restarted.log().count("status=sent"), 1)

    def test_killMidDelivery(self) -> None:
        """
        Three acknowledged messages go to a next hop that takes the whole
        content and never answers the final dot; mtaguard is killed while
        it waits for that answer.  After a restart with smtp-sink in its
        place, all three arrive there (the ones interrupted are sent
        again: at least once, never lost).
        """
        sinkPort = freePort()
        directory, port, queue = self.configure(sinkPort)
        silent = SilentAfterData(self, sinkPort)
        server = MtaguardProcess(directory, port)
        server.start()
        self.addCleanup(server.stop)
        names = [f"in flight {number}" for number in range(3)]
        for name in names:
            submit(port, name)
        if not silent.dataEnded.wait(30):
            raise AssertionError(f"no message reached the silent next hop:\n{server.log()}")
        kill(server)
        self.assertNotIn("status=sent", server.log())
        silent.stop()
        # The kill came after whole messages had gone out, while their
        # final dot waited for an answer.
        interrupted = [
            line for message in silent.messages for line in message.split(b"\r\n")
            if line.startswith(b"Subject: ")
        ]
        self.assertGreaterEqual(len(interrupted), 1)
        for line in interrupted:
            self.assertIn(line.decode(), [f"Subject: {name}" for name in names])

        received = os.path.join(directory, "sink")
        startSink(self, sinkPort, received)
        restarted = MtaguardProcess(directory, port)
        restarted.start()
        self.addCleanup(restarted.stop)
        waitForFiles(received, 3, timeout=90)
        restarted.waitForLog("status=sent", count=3)
        self.assertEqual(
            subjects(received), sorted(f"Subject: {name}".encode() for name in names)
        )
        waitUntil(
            lambda: queueCommand(directory, "postqueue", "-p").stdout == "Mail queue is empty\n",
            "an empty queue",
        )
