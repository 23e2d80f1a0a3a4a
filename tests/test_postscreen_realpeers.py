"""
postscreen in a real C{twistd -n mtaguard} process, with real clients:
swaks and Postfix's smtp-source pass through it to smtpd and their mail is
delivered; a raw-socket bot that talks before its turn is caught.  Tools
that are missing fail under CI (C{CI=true}) and skip elsewhere.
"""

from __future__ import annotations

import os
import socket

from twisted.trial.unittest import TestCase

from . import test_smtpd_proxy
from .test_fail2ban import failedAddresses

from .realpeers import (
    HOST,
    MtaguardProcess,
    freePort,
    requireTool,
    runTool,
    temporaryDirectory,
    waitForFiles,
    writeConfiguration,
)

LOCAL = "postmaster@localhost"


class PostscreenProcessTestCase(TestCase):
    """
    One mtaguard process with postscreen on a free port in front of its
    smtpd pass service; 127.0.0.1 is outside mynetworks, so every client
    is screened.
    """

    timeout = 120
    extraSettings: dict[str, str] = {}

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        self.port = freePort()
        settings = {
            "mynetworks": "10.255.255.0/24",
            "postscreen_greet_wait": "1s",
        }
        settings.update(self.extraSettings)
        self.paths = writeConfiguration(self.directory, self.port, settings)
        with open(os.path.join(self.directory, "master.cf"), "w") as handle:
            handle.write(f"{HOST}:{self.port} inet n - n - 1 postscreen\nsmtpd pass - - n - - smtpd\n")
        self.server = MtaguardProcess(self.directory, self.port)
        self.server.start()
        self.addCleanup(self.server.stop)

    def delivered(self, count: int) -> list[str]:
        return waitForFiles(os.path.join(self.paths["maildir"], "postmaster", "new"), count)


class CleanClientTests(PostscreenProcessTestCase):
    """
    Well-behaved clients pass postscreen and deliver.
    """

    def test_swaks(self) -> None:
        """
        swaks from 127.0.0.2 reads the two-line greeting (postscreen's
        teaser, smtpd's 220) and delivers; postscreen logs CONNECT and
        PASS NEW, smtpd logs the same client.
        """
        swaks = requireTool(self, "swaks")
        result = runTool(
            [swaks, "--server", f"{HOST}:{self.port}", "--local-interface", "127.0.0.2",
             "--from", "a@example.org", "--to", LOCAL, "--helo", "client.example",
             "--timeout", "15", "--header", "Subject: through postscreen"],
            timeout=60,
        )
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.assertEqual(result.returncode, 0, output)
        self.assertIn("<-  220-mx.test.example ESMTP Postfix", output)
        self.assertIn("<-  220 mx.test.example ESMTP Postfix", output)
        [path] = self.delivered(1)
        with open(path, "rb") as handle:
            self.assertIn(b"Subject: through postscreen\n", handle.read())
        log = self.server.waitForLog("PASS NEW [127.0.0.2]:")
        self.assertIn(f"CONNECT from [127.0.0.2]:", log)
        self.assertIn("connect from unknown[127.0.0.2]", log)

    def test_smtpSource(self) -> None:
        """
        smtp-source opens a connection per message: the first waits out
        the greeting test, the rest are PASS OLD; all 30 messages arrive.
        """
        source = requireTool(self, "smtp-source")
        result = runTool(
            [source, "-c", "-m", "30", "-s", "3", "-l", "2048", "-f", "a@example.org",
             "-t", LOCAL, f"{HOST}:{self.port}"],
            timeout=90,
        )
        self.assertEqual(result.returncode, 0, (result.stdout + result.stderr).decode())
        self.assertEqual(len(self.delivered(30)), 30)
        log = self.server.log()
        # One session waits out the greeting test (others that arrive
        # meanwhile share its verdict); later ones are PASS OLD, or handed
        # off silently while another session of the client is screened.
        self.assertEqual(log.count("PASS NEW [127.0.0.1]:"), 1)
        self.assertGreaterEqual(log.count("PASS OLD [127.0.0.1]:"), 1)
        self.assertGreaterEqual(log.count("] connect from unknown[127.0.0.1]"), 30)
        self.assertGreaterEqual(log.count("CONNECT from [127.0.0.1]:"), 30)


class BotTests(PostscreenProcessTestCase):
    """
    A client that talks before the greeting is enforced against.
    """

    extraSettings = {"postscreen_greet_action": "enforce"}

    def test_pregreetEnforced(self) -> None:
        """
        A bot that sends EHLO right after connecting gets 550 for its RCPT
        and is hung up on at DATA; Postfix's lines are in the log.
        """
        bot = socket.socket()
        self.addCleanup(bot.close)
        bot.settimeout(15)
        bot.bind(("127.0.0.3", 0))
        bot.connect((HOST, self.port))
        self.assertEqual(bot.recv(100), b"220-mx.test.example ESMTP Postfix\r\n")
        bot.sendall(b"EHLO bot.example\r\n")
        received = b""
        while b"250 " not in received:
            received += bot.recv(4096)
        bot.sendall(b"MAIL FROM:<spam@bot.example>\r\n")
        self.assertEqual(bot.recv(100), b"250 2.1.0 Ok\r\n")
        bot.sendall(b"RCPT TO:<postmaster@localhost>\r\n")
        self.assertEqual(bot.recv(100), b"550 5.5.1 Protocol error\r\n")
        bot.sendall(b"DATA\r\n")
        self.assertEqual(bot.recv(100), b"554 5.5.1 Error: no valid recipients\r\n")
        self.assertEqual(bot.recv(100), b"")
        log = self.server.waitForLog("DISCONNECT [127.0.0.3]:")
        self.assertIn("PREGREET 18 after ", log)
        self.assertIn("NOQUEUE: reject: RCPT from [127.0.0.3]:", log)
        self.assertIn("DATA without valid RCPT from [127.0.0.3]:", log)
        self.assertNotIn("connect from unknown[127.0.0.3]", log)
        # The shipped fail2ban filter finds the bot in postscreen's real
        # log lines.
        self.assertGreaterEqual(failedAddresses(self, self.server.logPath)["127.0.0.3"], 1)


class PostscreenHAProxyTests(test_smtpd_proxy.HAProxyTests):
    """
    The same haproxy tests with postscreen in front of smtpd: postscreen
    reads the PROXY header, screens the client haproxy names and hands it
    to smtpd, which sees that client too.
    """

    settings = {
        "postscreen_upstream_proxy_protocol": "haproxy",
        "postscreen_greet_wait": "1s",
        "mynetworks": "10.255.255.0/24",
    }
    masterCf = "{host}:{port} inet n - n - 1 postscreen\nsmtpd pass - - n - - smtpd\n"

    def test_postscreenSeesProxiedClient(self) -> None:
        """
        postscreen's CONNECT and PASS NEW name the client haproxy saw.
        """
        self.send(self.v1, "127.0.0.23", "v1")
        log = self.server.waitForLog("PASS NEW [127.0.0.23]:")
        self.assertIn("CONNECT from [127.0.0.23]:", log)
        self.assertNotIn("CONNECT from [127.0.0.1]:", log)
