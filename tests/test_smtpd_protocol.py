"""
Tests for L{mtaguard.smtpd.SMTPServerProtocol}: the SMTP dialogue, replies
as Postfix sends them, limits, and the durable-queue hand-off.
"""

from __future__ import annotations

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from .smtpdharness import Harness

MESSAGE = b"Subject: hi\r\n\r\nbody\r\n..stuffed\r\n.\r\n"


class DialogueTests(SynchronousTestCase):
    """
    A well-behaved client gets Postfix's replies and its mail queued.
    """

    def test_banner(self) -> None:
        """
        The greeting is C{220} with C{smtpd_banner}.
        """
        h = Harness()
        self.assertEqual(h.take(), b"220 mx.example.org ESMTP Postfix\r\n")

    def test_ehlo(self) -> None:
        """
        EHLO lists the extensions; without TLS, no STARTTLS; VRFY as long as
        it is enabled.
        """
        h = Harness()
        h.take()
        h.send(b"EHLO client.example\r\n")
        self.assertEqual(
            h.take(),
            b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
            b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
        )

    def test_discardEhloKeywords(self) -> None:
        """
        smtpd_discard_ehlo_keywords hides extensions.
        """
        h = Harness(smtpd_discard_ehlo_keywords="chunking, smtputf8")
        h.take()
        h.send(b"EHLO client.example\r\n")
        self.assertNotIn(b"CHUNKING", h.take())

    def test_messageQueued(self) -> None:
        """
        MAIL, RCPT, DATA: the content is dot-unstuffed, preceded by a
        Received header, committed, and only then acknowledged with 250.
        """
        h = Harness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@client.example> SIZE=100\r\n")
        self.assertEqual(h.take(), b"250 2.1.0 Ok\r\n")
        h.send(b"RCPT TO:<postmaster@mx.example.org>\r\n")
        self.assertEqual(h.take(), b"250 2.1.5 Ok\r\n")
        h.send(b"DATA\r\n")
        self.assertEqual(h.take(), b"354 End data with <CR><LF>.<CR><LF>\r\n")
        h.send(MESSAGE)
        self.assertEqual(h.take(), b"250 2.0.0 Ok: queued as MEM000001\r\n")
        [message] = h.queue.committed
        self.assertTrue(message.content.startswith(b"Received: from client.example (unknown [203.0.113.9])\r\n"))
        self.assertTrue(message.content.endswith(b"Subject: hi\r\n\r\nbody\r\n.stuffed\r\n"))
        self.assertEqual(message.envelope.recipients, ("postmaster@mx.example.org",))
        self.assertEqual(h.queuedIDs, ["MEM000001"])

    def test_pipelinedRepliesInOrder(self) -> None:
        """
        With the whole transaction pipelined and the commit still pending,
        nothing after DATA is answered until the message is safe; then the
        replies follow in command order.
        """
        h = Harness()
        h.ehlo()
        h.queue.holdCommits = True
        h.send(
            b"MAIL FROM:<a@client.example>\r\nRCPT TO:<postmaster@mx.example.org>\r\nDATA\r\n"
            + MESSAGE + b"NOOP\r\nQUIT\r\n"
        )
        self.assertEqual(
            h.take(),
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
        )
        h.queue.releaseCommits()
        self.assertEqual(
            h.take(), b"250 2.0.0 Ok: queued as MEM000001\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"
        )

    def test_relayDenied(self) -> None:
        """
        A remote recipient from an outside client is refused (454, the
        default defer_unauth_destination) and logged as Postfix does.
        """
        h = Harness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@client.example>\r\n")
        h.take()
        with capturedLogs() as events:
            h.send(b"RCPT TO:<victim@remote.example>\r\n")
        self.assertEqual(h.take(), b"454 4.7.1 <victim@remote.example>: Relay access denied\r\n")
        rendered = [e["log_format"].format(**e) for e in events]
        self.assertIn(
            "NOQUEUE: reject: RCPT from unknown[203.0.113.9]: 454 4.7.1 <victim@remote.example>:"
            " Relay access denied; from=<a@client.example> to=<victim@remote.example>"
            " proto=ESMTP helo=<client.example>",
            rendered,
        )
        h.send(b"DATA\r\n")
        self.assertEqual(h.take(), b"554 5.5.1 Error: no valid recipients\r\n")

    def test_sequenceErrors(self) -> None:
        """
        Commands out of order get Postfix's 503 replies.
        """
        h = Harness()
        h.take()
        h.send(b"RCPT TO:<a@b>\r\nDATA\r\nMAIL FROM:<a@c>\r\nMAIL FROM:<a@c>\r\n")
        self.assertEqual(
            h.lines(),
            [b"503 5.5.1 Error: need MAIL command", b"503 5.5.1 Error: need MAIL command",
             b"250 2.1.0 Ok", b"503 5.5.1 Error: nested MAIL command"],
        )

    def test_sizeDeclaredTooBig(self) -> None:
        """
        MAIL with SIZE above message_size_limit is refused at once.
        """
        h = Harness(message_size_limit="1000")
        h.ehlo()
        h.send(b"MAIL FROM:<a@c.example> SIZE=1001\r\n")
        self.assertEqual(h.take(), b"552 5.3.4 Message size exceeds fixed limit\r\n")

    def test_sizeEnforcedWhileStreaming(self) -> None:
        """
        Content beyond message_size_limit is not stored; the client gets 552
        after its end of data and the session goes on.
        """
        h = Harness(message_size_limit="1000")
        h.ehlo()
        h.transaction()
        h.send(b"DATA\r\n")
        h.take()
        h.send(b"x" * 600 + b"\r\n")
        h.send(b"y" * 600 + b"\r\n.\r\n")
        self.assertEqual(h.take(), b"552 5.3.4 Error: message file too big\r\n")
        self.assertEqual(h.queue.committed, [])
        self.assertTrue(h.queue.messages[0].aborted)
        h.send(b"NOOP\r\n")
        self.assertEqual(h.take(), b"250 2.0.0 Ok\r\n")

    def test_recipientLimit(self) -> None:
        """
        Recipients beyond smtpd_recipient_limit get 452 4.5.3.
        """
        h = Harness(smtpd_recipient_limit="2")
        h.ehlo()
        h.send(b"MAIL FROM:<a@c.example>\r\n")
        for _ in range(3):
            h.send(b"RCPT TO:<postmaster@mx.example.org>\r\n")
        self.assertEqual(
            h.lines()[1:], [b"250 2.1.5 Ok", b"250 2.1.5 Ok", b"452 4.5.3 Error: too many recipients"]
        )

    def test_queueCreateFails(self) -> None:
        """
        When the queue file cannot be created the client gets 452 4.3.1,
        never a 354 or a 250.
        """
        h = Harness()
        h.ehlo()
        h.transaction()
        h.queue.failCreate = OSError(28, "No space left on device")
        h.send(b"DATA\r\n")
        self.assertEqual(h.take(), b"452 4.3.1 Insufficient system storage\r\n")

    def test_commitFails(self) -> None:
        """
        When the queue file cannot be made durable the client gets a 4xx
        reply, never 250.
        """
        h = Harness()
        h.ehlo()
        h.transaction()
        h.queue.failCommit = OSError(28, "No space left on device")
        h.send(b"DATA\r\n" + MESSAGE)
        reply = h.take().splitlines()[-1]
        self.assertTrue(reply.startswith(b"451 4.3.0"), reply)

    def test_vrfy(self) -> None:
        """
        VRFY answers 252 unless disable_vrfy_command is set.
        """
        h = Harness()
        h.take()
        h.send(b"VRFY postmaster\r\n")
        self.assertEqual(h.take(), b"252 2.0.0 postmaster\r\n")
        h = Harness(disable_vrfy_command="yes")
        h.take()
        h.send(b"VRFY postmaster\r\n")
        self.assertEqual(h.take(), b"502 5.5.1 VRFY command is disabled\r\n")

    def test_quitAndStatistics(self) -> None:
        """
        QUIT gets 221 and closes; the disconnect line has Postfix's counts.
        """
        h = Harness()
        h.ehlo()
        with capturedLogs() as events:
            h.send(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<x@remote.example>\r\n"
                   b"RCPT TO:<postmaster@mx.example.org>\r\nQUIT\r\n")
            self.assertTrue(h.closed)
            h.lose()
        self.assertTrue(h.take().endswith(b"221 2.0.0 Bye\r\n"))
        rendered = [e["log_format"].format(**e) for e in events]
        self.assertIn(
            "disconnect from unknown[203.0.113.9] ehlo=1 mail=1 rcpt=1/2 quit=1 commands=4/5",
            rendered,
        )


class ErrorLimitTests(SynchronousTestCase):
    """
    Error counting as Postfix does it.
    """

    def test_hardLimit(self) -> None:
        """
        With smtpd_hard_error_limit errors made, the next command gets 421
        and the session ends.
        """
        h = Harness(smtpd_hard_error_limit="2")
        h.take()
        h.send(b"XYZZY\r\nXYZZY\r\nNOOP\r\n")
        self.assertEqual(
            h.lines(),
            [b"500 5.5.2 Error: command not recognized"] * 2
            + [b"421 4.7.0 mx.example.org Error: too many errors"],
        )
        self.assertTrue(h.closed)

    def test_stressLimits(self) -> None:
        """
        Under stress the hard error limit is 1, as with Postfix's
        C{-o stress=yes}.
        """
        h = Harness()
        h.view.stress = True
        h.take()
        h.send(b"XYZZY\r\nNOOP\r\n")
        self.assertEqual(
            h.lines(),
            [b"500 5.5.2 Error: command not recognized",
             b"421 4.7.0 mx.example.org Error: too many errors"],
        )

    def test_softLimitDelaysReplies(self) -> None:
        """
        Past smtpd_soft_error_limit every reply waits smtpd_error_sleep_time,
        without blocking: the reply appears only after the clock moves.
        """
        h = Harness(smtpd_soft_error_limit="1", smtpd_error_sleep_time="2s")
        h.take()
        h.send(b"XYZZY\r\nNOOP\r\n")
        self.assertEqual(h.take(), b"500 5.5.2 Error: command not recognized\r\n")
        h.clock.advance(1.9)
        self.assertEqual(h.take(), b"")
        h.clock.advance(0.2)
        self.assertEqual(h.take(), b"250 2.0.0 Ok\r\n")

    def test_junkCommands(self) -> None:
        """
        With smtpd_junk_command_limit L, the (L+2)-th junk command counts as
        an error.
        """
        h = Harness(smtpd_junk_command_limit="2", smtpd_hard_error_limit="1")
        h.take()
        h.send(b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n")
        self.assertEqual(
            h.lines(),
            [b"250 2.0.0 Ok"] * 4 + [b"421 4.7.0 mx.example.org Error: too many errors"],
        )

    def test_longLine(self) -> None:
        """
        A command longer than line_length_limit is truncated and warned
        about, and nothing beyond the limit is kept.
        """
        h = Harness(line_length_limit="600")
        h.take()
        with capturedLogs() as events:
            h.send(b"NOOP " + b"a" * 5000 + b"\r\n")
        self.assertEqual(h.take(), b"250 2.0.0 Ok\r\n")
        rendered = [e["log_format"].format(**e) for e in events]
        self.assertTrue(
            any("request longer than 600: NOOP aaaa" in line for line in rendered), rendered
        )


class AuthTests(SynchronousTestCase):
    """
    SMTP AUTH through twisted.cred, with Postfix's replies.
    """

    def harness(self, **values: str) -> Harness:
        import os

        from twisted.internet.defer import succeed

        from mtaguard.smtpd._auth import hashPassword, passwordFilePortal

        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write("alice:{PLAIN}secret\n")
        h = Harness(smtpd_sasl_auth_enable="yes", **values)
        h.context.portal = passwordFilePortal(path, runner=lambda f: succeed(f()))
        return h

    def test_advertisedAndPlain(self) -> None:
        """
        AUTH PLAIN LOGIN is offered; PLAIN with the right password gets 235
        and lets the client relay.
        """
        import base64

        h = self.harness()
        h.take()
        h.send(b"EHLO c.example\r\n")
        self.assertIn(b"250-AUTH PLAIN LOGIN\r\n", h.take())
        token = base64.b64encode(b"\0alice\0secret")
        h.send(b"AUTH PLAIN " + token + b"\r\n")
        self.assertEqual(h.take(), b"235 2.7.0 Authentication successful\r\n")
        h.send(b"MAIL FROM:<alice@c.example>\r\nRCPT TO:<x@remote.example>\r\n")
        self.assertEqual(h.take(), b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n")

    def test_loginWrongPassword(self) -> None:
        """
        LOGIN's two challenges, then a wrong password: 535 and the log line
        fail2ban's auth filter matches.
        """
        import base64

        h = self.harness()
        h.ehlo()
        h.send(b"AUTH LOGIN\r\n")
        self.assertEqual(h.take(), b"334 VXNlcm5hbWU6\r\n")
        h.send(base64.b64encode(b"alice") + b"\r\n")
        self.assertEqual(h.take(), b"334 UGFzc3dvcmQ6\r\n")
        from twisted.logger import capturedLogs

        with capturedLogs() as events:
            h.send(base64.b64encode(b"wrong") + b"\r\n")
        self.assertTrue(h.take().startswith(b"535 5.7.8 Error: authentication failed"))
        rendered = [e["log_format"].format(**e) for e in events]
        self.assertTrue(
            any(
                line.startswith(
                    "warning: unknown[203.0.113.9]: SASL LOGIN authentication failed"
                )
                for line in rendered
            ),
            rendered,
        )

    def test_tlsAuthOnly(self) -> None:
        """
        With smtpd_tls_auth_only, AUTH is neither offered nor accepted in
        clear.
        """
        h = self.harness(smtpd_tls_auth_only="yes")
        h.take()
        h.send(b"EHLO c.example\r\n")
        self.assertNotIn(b"AUTH", h.take())
        h.send(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
        self.assertTrue(h.take().startswith(b"504 5.5.4"))

    def test_notEnabled(self) -> None:
        """
        Without smtpd_sasl_auth_enable, AUTH gets 503.
        """
        h = Harness()
        h.take()
        h.send(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
        self.assertEqual(h.take(), b"503 5.5.1 Error: authentication not enabled\r\n")

    def test_malformed(self) -> None:
        """
        Malformed base64 gets a reply, never an exception.
        """
        h = self.harness()
        h.ehlo()
        h.send(b"AUTH PLAIN !!!notbase64\r\n")
        self.assertTrue(h.take().startswith(b"535 5.7.8"))
        h.send(b"NOOP\r\n")
        self.assertEqual(h.take(), b"250 2.0.0 Ok\r\n")


class ParameterTests(SynchronousTestCase):
    """
    MAIL and RCPT accept the ESMTP parameters announced, and refuse others
    with Postfix's replies.
    """

    def test_mailParameters(self) -> None:
        """
        BODY=8BITMIME, SMTPUTF8 and AUTH=<> are accepted; an unknown
        parameter or BODY value gets 555 5.5.4.
        """
        h = Harness()
        h.ehlo()
        for line, reply in [
            (b"MAIL FROM:<a@c.example> BODY=8BITMIME SMTPUTF8 AUTH=<>\r\n", b"250 2.1.0 Ok\r\n"),
            (b"RSET\r\n", b"250 2.0.0 Ok\r\n"),
            (b"MAIL FROM:<a@c.example> BODY=BINARYMIME\r\n",
             b"555 5.5.4 Unsupported option: BODY=BINARYMIME\r\n"),
            (b"MAIL FROM:<a@c.example> RET=FULL\r\n", b"555 5.5.4 Unsupported option: RET=FULL\r\n"),
            (b"MAIL FROM:<a@c.example> SIZE=abc\r\n", b"501 5.5.4 Bad message size syntax\r\n"),
        ]:
            h.send(line)
            self.assertEqual(h.take(), reply, line)

    def test_utf8Addresses(self) -> None:
        """
        A non-ASCII address needs the SMTPUTF8 parameter.
        """
        h = Harness()
        h.ehlo()
        h.send("MAIL FROM:<j\u00f6rg@c.example>\r\n".encode())
        self.assertEqual(h.take(), b"553 5.6.7 Must declare SMTPUTF8 to send unicode address\r\n")
        h.send("MAIL FROM:<j\u00f6rg@c.example> SMTPUTF8\r\n".encode())
        self.assertEqual(h.take(), b"250 2.1.0 Ok\r\n")
        h.send("RCPT TO:<p\u00f6stmaster@mx.example.org>\r\n".encode())
        self.assertEqual(h.take(), b"250 2.1.5 Ok\r\n")

    def test_rcptParameters(self) -> None:
        """
        DSN is not announced, so NOTIFY is refused.
        """
        h = Harness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<postmaster@mx.example.org> NOTIFY=NEVER\r\n")
        self.assertEqual(
            h.lines()[-1], b"555 5.5.4 Unsupported option: NOTIFY=NEVER"
        )
