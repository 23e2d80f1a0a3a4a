"""
Tests for L{mtaguard.client.ClientSession}: scripted conversations with a
next hop, honest or not, and what becomes of each recipient.
"""

from __future__ import annotations

import base64
from typing import Sequence

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.client import (
    Action,
    AwaitReply,
    ClientSession,
    Close,
    ConnectionUnusable,
    Message,
    MessageDone,
    PlaintextDiscarded,
    Ready,
    RecipientOutcome,
    Send,
    SendContent,
    SessionSettings,
    StartTLS,
)

HOP = "mx.example.com[192.0.2.1]"
GREETING = b"220 mx.example.com ESMTP\r\n"


def ehlo(*keywords: str) -> bytes:
    """
    An EHLO reply announcing C{keywords}.
    """
    lines = ["mx.example.com", *keywords]
    return b"".join(
        b"250%s%s\r\n" % (b" " if i == len(lines) - 1 else b"-", line.encode())
        for i, line in enumerate(lines)
    )


ESMTP = ehlo("PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8")
PLAIN_ESMTP = ehlo("SIZE 10240000", "8BITMIME")

MESSAGE = Message("alice@example.net", ("bob@example.com",), 100)
THREE = Message(
    "alice@example.net",
    ("bob@example.com", "carol@example.com", "dave@example.com"),
    100,
)


def sent(actions: Sequence[Action]) -> bytes:
    """
    Everything the actions write to the server.
    """
    return b"".join(action.data for action in actions if isinstance(action, Send))


def outcomes(actions: Sequence[Action]) -> list[tuple[str, str, str]]:
    """
    The recipient outcomes among the actions, as (recipient, status, dsn).
    """
    return [
        (action.recipient, action.status, action.dsn)
        for action in actions
        if isinstance(action, RecipientOutcome)
    ]


def waits(actions: Sequence[Action]) -> list[str]:
    """
    The timeout parameters the actions arm.
    """
    return [action.timeout for action in actions if isinstance(action, AwaitReply)]


class Conversation:
    """
    A session and the actions it has returned so far.
    """

    def __init__(self, **settings: object) -> None:
        self.session = ClientSession(
            SessionSettings(HOP, "relay.example.net", **settings)  # type: ignore[arg-type]
        )
        self.actions: list[Action] = list(self.session.connectionMade())

    def server(self, data: bytes) -> list[Action]:
        """
        The server sends C{data}; return (and record) the actions.
        """
        actions = self.session.bytesReceived(data)
        self.actions += actions
        return actions

    def deliver(self, message: Message) -> list[Action]:
        actions = self.session.deliver(message)
        self.actions += actions
        return actions

    def content(self, *chunks: bytes) -> bytes:
        """
        Send the content as a producer would; return the wire bytes.
        """
        wire = b"".join(self.session.encodeContent(chunk) for chunk in chunks)
        actions = self.session.contentDone()
        self.actions += actions
        return wire + sent(actions)

    def handshake(self, reply: bytes = ESMTP) -> list[Action]:
        """
        Greeting and EHLO with C{reply}; return the actions taken on the
        EHLO reply.
        """
        self.server(GREETING)
        return self.server(reply)


class DeliveryTests(SynchronousTestCase):
    """
    Messages go through, step by step or pipelined, and each wait names
    its Postfix timeout.
    """

    def test_plain(self) -> None:
        """
        Without PIPELINING: greeting, EHLO, MAIL, RCPT, DATA, content, end
        of data, each answered before the next; the recipient is sent with
        the server's reply; QUIT ends it.
        """
        c = Conversation()
        self.assertEqual(c.actions, [AwaitReply("smtp_helo_timeout", "receiving the initial server greeting")])
        actions = c.server(GREETING)
        self.assertEqual(sent(actions), b"EHLO relay.example.net\r\n")
        self.assertEqual(waits(actions), ["smtp_helo_timeout"])
        self.assertEqual(c.server(PLAIN_ESMTP), [Ready()])
        actions = c.deliver(MESSAGE)
        self.assertEqual(sent(actions), b"MAIL FROM:<alice@example.net> SIZE=100\r\n")
        self.assertEqual(waits(actions), ["smtp_mail_timeout"])
        actions = c.server(b"250 2.1.0 Ok\r\n")
        self.assertEqual(sent(actions), b"RCPT TO:<bob@example.com>\r\n")
        self.assertEqual(waits(actions), ["smtp_rcpt_timeout"])
        actions = c.server(b"250 2.1.5 Ok\r\n")
        self.assertEqual(sent(actions), b"DATA\r\n")
        self.assertEqual(waits(actions), ["smtp_data_init_timeout"])
        actions = c.server(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        self.assertEqual(actions, [SendContent(chunked=False)])
        self.assertEqual(c.content(b"Subject: hi\r\n\r\n.body"), b"Subject: hi\r\n\r\n..body\r\n.\r\n")
        self.assertEqual(waits(c.actions[-1:]), ["smtp_data_done_timeout"])
        actions = c.server(b"250 2.0.0 Ok: queued as 4ABC\r\n")
        self.assertEqual(
            actions,
            [
                RecipientOutcome(
                    "bob@example.com",
                    "sent",
                    "2.0.0",
                    "250 2.0.0 Ok: queued as 4ABC",
                    actions[0].reply,  # type: ignore[union-attr]
                ),
                MessageDone(MESSAGE),
                Ready(),
            ],
        )
        actions = c.session.quit()
        self.assertEqual(sent(actions), b"QUIT\r\n")
        self.assertEqual(waits(actions), ["smtp_quit_timeout"])
        self.assertEqual(c.server(b"221 2.0.0 Bye\r\n"), [Close()])
        self.assertEqual(c.session.connectionLost(), [])

    def test_deliverBeforeGreeting(self) -> None:
        """
        A message handed over before the handshake is sent as soon as the
        handshake is over.
        """
        c = Conversation()
        self.assertEqual(c.deliver(MESSAGE), [])
        actions = c.handshake(PLAIN_ESMTP)
        self.assertTrue(sent(actions).endswith(b"MAIL FROM:<alice@example.net> SIZE=100\r\n"))
        self.assertNotIn(Ready(), actions)

    def test_heloFallback(self) -> None:
        """
        A server that refuses EHLO with a 5xx gets HELO, and then plain SMTP:
        no extensions, no ESMTP parameters, no pipelining.
        """
        c = Conversation()
        c.server(GREETING)
        actions = c.server(b"502 5.5.2 Error: command not recognized\r\n")
        self.assertEqual(sent(actions), b"HELO relay.example.net\r\n")
        self.assertEqual(waits(actions), ["smtp_helo_timeout"])
        self.assertEqual(c.server(b"250 mx.example.com\r\n"), [Ready()])
        self.assertEqual(sent(c.deliver(MESSAGE)), b"MAIL FROM:<alice@example.net>\r\n")

    def test_ehloTemporaryFailure(self) -> None:
        """
        A 4xx to EHLO is no reason to fall back: the message is deferred
        and the session says QUIT.
        """
        c = Conversation()
        c.deliver(MESSAGE)
        c.server(GREETING)
        actions = c.server(b"450 4.3.2 busy\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.3.2")])
        self.assertEqual(sent(actions), b"QUIT\r\n")

    def test_pipelinedMixedRecipients(self) -> None:
        """
        With PIPELINING, MAIL, every RCPT and DATA go in one write, and the
        replies are matched in order: one recipient accepted and sent, one
        deferred by its 450, one bounced by its 550.
        """
        c = Conversation()
        c.handshake()
        actions = c.deliver(THREE)
        self.assertEqual(
            actions[0],
            Send(
                b"MAIL FROM:<alice@example.net> SIZE=100\r\n"
                b"RCPT TO:<bob@example.com>\r\n"
                b"RCPT TO:<carol@example.com>\r\n"
                b"RCPT TO:<dave@example.com>\r\n"
                b"DATA\r\n"
            ),
        )
        self.assertEqual(len([a for a in actions if isinstance(a, Send)]), 1)
        actions = c.server(
            b"250 2.1.0 Ok\r\n"
            b"250 2.1.5 Ok\r\n"
            b"450 4.2.0 <carol@example.com>: Recipient address rejected: Greylisted\r\n"
            b"550 5.1.1 <dave@example.com>: Recipient address rejected: User unknown\r\n"
            b"354 End data with <CR><LF>.<CR><LF>\r\n"
        )
        self.assertEqual(
            outcomes(actions),
            [("carol@example.com", "deferred", "4.2.0"), ("dave@example.com", "bounced", "5.1.1")],
        )
        [bounce] = [a for a in actions if isinstance(a, RecipientOutcome) and a.status == "bounced"]
        self.assertEqual(
            bounce.reason,
            f"host {HOP} said: 550 5.1.1 <dave@example.com>: Recipient address "
            "rejected: User unknown (in reply to RCPT TO command)",
        )
        self.assertEqual(actions[-1], SendContent(chunked=False))
        c.content(b"body\r\n")
        actions = c.server(b"250 2.0.0 Ok: queued as 4ABC\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "sent", "2.0.0")])
        self.assertEqual(actions[-2:], [MessageDone(THREE), Ready()])

    def test_pipelinedRepliesTrickled(self) -> None:
        """
        The pipelined replies give the same outcomes when they arrive one
        byte at a time, and every reply re-arms the deadline with the
        timeout of the next one awaited.
        """
        replies = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n450 4.2.0 no\r\n550 5.1.1 no\r\n354 go\r\n"
        c = Conversation()
        c.handshake()
        c.deliver(THREE)
        actions: list[Action] = []
        for i in range(len(replies)):
            actions += c.server(replies[i : i + 1])
        self.assertEqual(
            outcomes(actions),
            [("carol@example.com", "deferred", "4.2.0"), ("dave@example.com", "bounced", "5.1.1")],
        )
        self.assertEqual(
            waits(c.actions),
            [
                "smtp_helo_timeout",
                "smtp_helo_timeout",
                "smtp_mail_timeout",
                "smtp_rcpt_timeout",
                "smtp_rcpt_timeout",
                "smtp_rcpt_timeout",
                "smtp_data_init_timeout",
            ],
        )
        self.assertEqual(actions[-1], SendContent(chunked=False))

    def test_allRecipientsRefused(self) -> None:
        """
        Without pipelining, when every RCPT is refused no DATA is sent; the
        message is done and the next one on this connection starts with
        RSET.
        """
        c = Conversation()
        c.handshake(PLAIN_ESMTP)
        c.deliver(MESSAGE)
        c.server(b"250 2.1.0 Ok\r\n")
        actions = c.server(b"550 5.1.1 unknown\r\n")
        self.assertEqual(sent(actions), b"")
        self.assertEqual(outcomes(actions), [("bob@example.com", "bounced", "5.1.1")])
        self.assertEqual(actions[-2:], [MessageDone(MESSAGE), Ready()])
        self.assertEqual(sent(c.deliver(MESSAGE)), b"RSET\r\n")

    def test_pipelinedDataAfterRefusals(self) -> None:
        """
        With pipelining, a 354 to DATA after every RCPT was refused gets an
        empty end of data only to stay in step; the reply to it changes
        nothing.
        """
        c = Conversation()
        c.handshake()
        c.deliver(MESSAGE)
        actions = c.server(b"250 2.1.0 Ok\r\n550 5.1.1 unknown\r\n354 go ahead\r\n")
        self.assertEqual(sent(actions), b".\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "bounced", "5.1.1")])
        actions = c.server(b"554 5.5.1 Error: no valid recipients\r\n")
        self.assertEqual(actions, [MessageDone(MESSAGE), Ready()])

    def test_mailRefused(self) -> None:
        """
        A 5xx to MAIL bounces every recipient with that reply; the pipelined
        RCPT and DATA replies that follow are consumed, not reported.
        """
        c = Conversation()
        c.handshake()
        c.deliver(THREE)
        actions = c.server(b"553 5.7.1 <alice@example.net>: Sender address rejected\r\n")
        self.assertEqual(
            [o[1:] for o in outcomes(actions)], [("bounced", "5.7.1")] * 3
        )
        self.assertIn("(in reply to MAIL FROM command)", actions[0].reason)  # type: ignore[union-attr]
        actions = c.server(b"503 5.5.1 need MAIL\r\n" * 3 + b"503 5.5.1 need RCPT\r\n")
        self.assertEqual(actions, [MessageDone(THREE), Ready()])

    def test_dataRefused(self) -> None:
        """
        A 4xx to DATA defers every accepted recipient.
        """
        c = Conversation()
        c.handshake()
        c.deliver(MESSAGE)
        actions = c.server(b"250 Ok\r\n250 Ok\r\n451 4.3.0 try later\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.3.0")])
        self.assertEqual(actions[-2:], [MessageDone(MESSAGE), Ready()])

    def test_endOfDataRefused(self) -> None:
        """
        A 5xx after the content bounces the accepted recipients; a reply
        without an enhanced code gets its class's.
        """
        c = Conversation()
        c.handshake()
        c.deliver(MESSAGE)
        c.server(b"250 Ok\r\n250 Ok\r\n354 go\r\n")
        c.content(b"x\r\n")
        actions = c.server(b"554 content rejected\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "bounced", "5.0.0")])

    def test_esmtpParameters(self) -> None:
        """
        MAIL FROM carries SIZE, BODY=8BITMIME and SMTPUTF8 when the server
        offers them and the message needs them.
        """
        c = Conversation()
        c.handshake()
        message = Message("al\u00efce@example.net", ("bob@example.com",), 42, eightBit=True)
        actions = c.deliver(message)
        self.assertTrue(
            sent(actions).startswith(
                "MAIL FROM:<al\u00efce@example.net> SIZE=42 BODY=8BITMIME SMTPUTF8\r\n".encode()
            )
        )

    def test_eightBitWithout8BitMime(self) -> None:
        """
        An 8-bit message goes to a server without 8BITMIME without
        C{BODY=} (no MIME conversion is done).
        """
        c = Conversation()
        c.handshake(ehlo("PIPELINING"))
        actions = c.deliver(Message("a@example.net", ("b@example.com",), 1, eightBit=True))
        self.assertTrue(sent(actions).startswith(b"MAIL FROM:<a@example.net>\r\n"))

    def test_oneMessageAtATime(self) -> None:
        """
        A second message while one is under way is a programming error.
        """
        c = Conversation()
        c.deliver(MESSAGE)
        self.assertRaises(RuntimeError, c.session.deliver, MESSAGE)


class LimitTests(SynchronousTestCase):
    """
    Messages the server said it cannot take are failed before anything is
    sent for them.
    """

    def test_sizeTooBig(self) -> None:
        """
        A message larger than the server's SIZE bounces with Postfix's text
        naming the limit, nothing is sent, and the connection stays usable.
        """
        c = Conversation()
        c.handshake(ehlo("PIPELINING", "SIZE 1000"))
        big = Message("alice@example.net", ("bob@example.com", "carol@example.com"), 5000)
        actions = c.deliver(big)
        self.assertEqual(sent(actions), b"")
        self.assertEqual(
            outcomes(actions),
            [("bob@example.com", "bounced", "5.3.4"), ("carol@example.com", "bounced", "5.3.4")],
        )
        self.assertEqual(
            actions[0].reason,  # type: ignore[union-attr]
            f"message size 5000 exceeds size limit 1000 of server {HOP}",
        )
        self.assertEqual(actions[-2:], [MessageDone(big), Ready()])
        # Nothing was sent, so no RSET is needed before the next message.
        self.assertTrue(sent(c.deliver(MESSAGE)).startswith(b"MAIL FROM:"))

    def test_sizeUnlimited(self) -> None:
        """
        C{SIZE 0} and C{SIZE} without a number set no limit.
        """
        for keyword in ("SIZE 0", "SIZE"):
            c = Conversation()
            c.handshake(ehlo(keyword))
            self.assertTrue(sent(c.deliver(Message("a@x", ("b@y",), 10**9))).startswith(b"MAIL"))

    def test_smtputf8NotOffered(self) -> None:
        """
        A message that needs SMTPUTF8 (requested, or a non-ASCII address)
        bounces with 5.6.7 at a server without SMTPUTF8; nothing is sent.
        """
        for message in [
            Message("a@example.net", ("b@example.com",), 1, smtputf8=True),
            Message("a@example.net", ("b\u00fc@example.com",), 1),
        ]:
            c = Conversation()
            c.handshake(ehlo("PIPELINING"))
            actions = c.deliver(message)
            self.assertEqual(sent(actions), b"")
            self.assertEqual([o[1:] for o in outcomes(actions)], [("bounced", "5.6.7")])
            self.assertEqual(
                actions[0].reason,  # type: ignore[union-attr]
                f"SMTPUTF8 is required, but was not offered by host {HOP}",
            )

    def test_badAddresses(self) -> None:
        """
        Envelope addresses that could break the command line are refused
        when the message is built.
        """
        self.assertRaises(ValueError, Message, "a\r\n@x", ("b@y",), 1)
        self.assertRaises(ValueError, Message, "a@x", ("b@y>",), 1)
        self.assertRaises(ValueError, Message, "a@x", (), 1)


class TLSTests(SynchronousTestCase):
    """
    STARTTLS per C{smtp_tls_security_level}, and the response-injection
    defense.
    """

    def test_encryptNotOffered(self) -> None:
        """
        At C{encrypt}, a server that does not offer STARTTLS (stripped by a
        man in the middle, or never there) gets nothing but EHLO and QUIT:
        the message is deferred with Postfix's 4.7.4.
        """
        for level in ("encrypt", "verify", "secure"):
            c = Conversation(tlsLevel=level)
            c.deliver(MESSAGE)
            actions = c.handshake()
            self.assertEqual(
                outcomes(actions), [("bob@example.com", "deferred", "4.7.4")], level
            )
            self.assertEqual(
                actions[0].reason,  # type: ignore[union-attr]
                f"TLS is required, but was not offered by host {HOP}",
            )
            self.assertIn(MessageDone(MESSAGE), actions)
            self.assertIsInstance(actions[-3], ConnectionUnusable)
            self.assertEqual(sent(c.actions), b"EHLO relay.example.net\r\nQUIT\r\n")
            self.assertRaises(RuntimeError, c.session.deliver, MESSAGE)

    def test_mayNotOffered(self) -> None:
        """
        At C{may}, no STARTTLS means plaintext delivery.
        """
        c = Conversation(tlsLevel="may")
        c.deliver(MESSAGE)
        self.assertIn(b"MAIL FROM:", sent(c.handshake()))

    def test_noneIgnoresStartTLS(self) -> None:
        """
        At C{none}, an offered STARTTLS is not used.
        """
        c = Conversation()
        self.assertEqual(c.handshake(ehlo("STARTTLS")), [Ready()])

    def test_startTLS(self) -> None:
        """
        At C{encrypt} with STARTTLS offered: STARTTLS, the handshake (under
        smtp_starttls_timeout), then EHLO again with everything learnt in
        clear forgotten, then the message.
        """
        c = Conversation(tlsLevel="encrypt")
        c.deliver(MESSAGE)
        actions = c.handshake(ehlo("PIPELINING", "STARTTLS", "SIZE 10"))
        self.assertEqual(sent(actions)[-10:], b"STARTTLS\r\n")
        actions = c.server(b"220 2.0.0 Ready to start TLS\r\n")
        self.assertEqual(actions, [StartTLS("smtp_starttls_timeout")])
        actions = c.session.tlsEstablished()
        self.assertEqual(sent(actions), b"EHLO relay.example.net\r\n")
        self.assertEqual(waits(actions), ["smtp_helo_timeout"])
        # The SIZE 10 seen in clear no longer applies.
        actions = c.server(ehlo("PIPELINING", "SIZE 1000"))
        self.assertTrue(sent(actions).startswith(b"MAIL FROM:<alice@example.net> SIZE=100\r\n"))

    def test_responseInjection(self) -> None:
        """
        C{220 ready} and a forged C{250} in the same plaintext segment: the
        forged reply is discarded before the handshake and reported, never
        taken as the answer to the EHLO sent after TLS.
        """
        c = Conversation(tlsLevel="encrypt")
        c.deliver(MESSAGE)
        c.handshake(ehlo("STARTTLS"))
        actions = c.server(b"220 ready\r\n250 fake\r\n")
        self.assertEqual(actions, [PlaintextDiscarded(10), StartTLS()])
        # More plaintext before the handshake is done: discarded too.
        self.assertEqual(c.server(b"250 more\r\n"), [PlaintextDiscarded(10)])
        actions = c.session.tlsEstablished()
        self.assertEqual(sent(actions), b"EHLO relay.example.net\r\n")
        # The reply to EHLO is still awaited: the fake 250 was not it.
        self.assertEqual(c.server(b"250-mx.example.com\r\n"), [])
        actions = c.server(b"250 PIPELINING\r\n")
        self.assertIn(b"MAIL FROM:", sent(actions))

    def test_injectedPartialReply(self) -> None:
        """
        An injected incomplete multi-line reply is discarded as well, so it
        cannot become the first lines of the real post-TLS reply.
        """
        c = Conversation(tlsLevel="may")
        c.handshake(ehlo("STARTTLS"))
        actions = c.server(b"220 ready\r\n250-injected")
        self.assertEqual(actions, [PlaintextDiscarded(12), StartTLS()])
        c.session.tlsEstablished()
        self.assertEqual(c.server(ehlo()), [Ready()])

    def test_startTLSRefusedAtMay(self) -> None:
        """
        At C{may}, a refused STARTTLS means plaintext delivery.
        """
        c = Conversation(tlsLevel="may")
        c.deliver(MESSAGE)
        c.handshake(ehlo("STARTTLS"))
        actions = c.server(b"454 4.7.0 TLS not available due to local problem\r\n")
        self.assertIn(b"MAIL FROM:", sent(actions))

    def test_startTLSRefusedAtEncrypt(self) -> None:
        """
        At C{encrypt}, a refused STARTTLS defers the message.
        """
        c = Conversation(tlsLevel="encrypt")
        c.deliver(MESSAGE)
        c.handshake(ehlo("STARTTLS"))
        actions = c.server(b"554 5.5.1 Error: TLS not available\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.7.5")])
        self.assertNotIn(b"MAIL", sent(c.actions))

    def test_handshakeFailedAtMay(self) -> None:
        """
        At C{may}, a failed handshake hands the untried message back for a
        plaintext retry, with no outcome.
        """
        c = Conversation(tlsLevel="may")
        c.deliver(MESSAGE)
        c.handshake(ehlo("STARTTLS"))
        c.server(b"220 go\r\n")
        actions = c.session.tlsFailed()
        self.assertEqual(
            actions,
            [
                ConnectionUnusable("Cannot start TLS: handshake failure", MESSAGE, retryPlaintext=True),
                Close(abort=True),
            ],
        )

    def test_handshakeFailedAtVerify(self) -> None:
        """
        At C{verify}, a failed handshake (or certificate check) defers.
        """
        c = Conversation(tlsLevel="verify")
        c.deliver(MESSAGE)
        c.handshake(ehlo("STARTTLS"))
        c.server(b"220 go\r\n")
        actions = c.session.tlsFailed("certificate verification failed")
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.7.5")])
        self.assertEqual(actions[-1], Close(abort=True))

    def test_unsupportedLevel(self) -> None:
        """
        Levels the client does not implement are refused, not weakened.
        """
        for level in ("dane", "fingerprint", "bogus"):
            self.assertRaises(ValueError, SessionSettings, HOP, "me", tlsLevel=level)


class AuthTests(SynchronousTestCase):
    """
    SASL AUTH PLAIN and LOGIN for relay hosts that require it.
    """

    def authenticated(self, mechanisms: str, **settings: object) -> Conversation:
        """
        A conversation at C{encrypt} that has completed STARTTLS and is
        waiting for the post-TLS EHLO reply announcing C{mechanisms}.
        """
        c = Conversation(tlsLevel="encrypt", username="relay", password="s3cret", **settings)
        c.handshake(ehlo("STARTTLS", "AUTH " + mechanisms))
        c.server(b"220 go\r\n")
        c.session.tlsEstablished()
        return c

    def test_plain(self) -> None:
        """
        AUTH PLAIN with the initial response, over TLS; then ready.
        """
        c = self.authenticated("LOGIN PLAIN")
        actions = c.server(ehlo("AUTH LOGIN PLAIN"))
        token = base64.b64encode(b"\0relay\0s3cret")
        self.assertEqual(sent(actions), b"AUTH PLAIN " + token + b"\r\n")
        self.assertEqual(waits(actions), ["smtp_helo_timeout"])
        self.assertEqual(c.server(b"235 2.7.0 Authentication successful\r\n"), [Ready()])

    def test_login(self) -> None:
        """
        AUTH LOGIN: user name and password each answer a 334.
        """
        c = self.authenticated("LOGIN")
        self.assertEqual(sent(c.server(ehlo("AUTH LOGIN"))), b"AUTH LOGIN\r\n")
        self.assertEqual(sent(c.server(b"334 VXNlcm5hbWU6\r\n")), base64.b64encode(b"relay") + b"\r\n")
        self.assertEqual(sent(c.server(b"334 UGFzc3dvcmQ6\r\n")), base64.b64encode(b"s3cret") + b"\r\n")
        self.assertEqual(c.server(b"235 2.7.0 ok\r\n"), [Ready()])

    def test_refused(self) -> None:
        """
        A refused login defers (never bounces) with Postfix's text.
        """
        c = self.authenticated("PLAIN")
        c.deliver(MESSAGE)
        c.server(ehlo("AUTH PLAIN"))
        actions = c.server(b"535 5.7.8 Error: authentication failed\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.7.8")])
        self.assertIn(
            f"SASL authentication failed; server {HOP} said: 535 5.7.8",
            actions[0].reason,  # type: ignore[union-attr]
        )

    def test_notOverPlaintext(self) -> None:
        """
        Without TLS the password is not sent: the message is deferred.
        """
        c = Conversation(tlsLevel="may", username="relay", password="s3cret")
        c.deliver(MESSAGE)
        actions = c.handshake(ehlo("AUTH PLAIN LOGIN"))
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.7.0")])
        self.assertNotIn(b"AUTH", sent(c.actions))

    def test_plaintextAllowed(self) -> None:
        """
        With C{authOverPlaintext}, AUTH goes without TLS.
        """
        c = Conversation(username="relay", password="s3cret", authOverPlaintext=True)
        self.assertIn(b"AUTH PLAIN", sent(c.handshake(ehlo("AUTH PLAIN"))))

    def test_notOverTLSEither(self) -> None:
        """
        With C{authOverTLS} off (Postfix's default C{noplaintext} in
        C{smtp_sasl_tls_security_options}), PLAIN and LOGIN are not used
        inside TLS either: no mechanism is available.
        """
        c = self.authenticated("PLAIN LOGIN", authOverTLS=False)
        c.deliver(MESSAGE)
        actions = c.server(ehlo("AUTH PLAIN LOGIN"))
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.7.0")])
        self.assertIn("no mechanism available", actions[0].reason)  # type: ignore[union-attr]

    def test_mechanismOrder(self) -> None:
        """
        The mechanisms are tried in the configured order, among those the
        server offers.
        """
        c = self.authenticated("PLAIN LOGIN", authMechanisms=("LOGIN", "PLAIN"))
        self.assertEqual(sent(c.server(ehlo("AUTH PLAIN LOGIN"))), b"AUTH LOGIN\r\n")
        c = self.authenticated("PLAIN", authMechanisms=("LOGIN",))
        c.deliver(MESSAGE)
        actions = c.server(ehlo("AUTH PLAIN"))
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.7.0")])

    def test_challengeLoop(self) -> None:
        """
        An unexpected challenge is cancelled with C{*}; a second one fails
        the login rather than looping.
        """
        c = self.authenticated("PLAIN")
        c.server(ehlo("AUTH PLAIN"))
        self.assertEqual(sent(c.server(b"334 \r\n")), b"*\r\n")
        actions = c.server(b"334 \r\n")
        self.assertIsInstance(actions[0], ConnectionUnusable)

    def test_noAuthOffered(self) -> None:
        """
        A server that does not offer AUTH is used without, as Postfix does.
        """
        c = Conversation(username="relay", password="s3cret")
        self.assertEqual(c.handshake(ehlo("PIPELINING")), [Ready()])


class FailureTests(SynchronousTestCase):
    """
    421, timeouts, lost connections and garbage: nothing is lost, nothing
    pending is left without an outcome.
    """

    def test_421MidTransaction(self) -> None:
        """
        A 421 in the middle of the pipelined replies defers every recipient
        still without an outcome and drops the connection.
        """
        c = Conversation()
        c.handshake()
        c.deliver(THREE)
        actions = c.server(b"250 Ok\r\n250 Ok\r\n421 4.4.2 mx.example.com Error: timeout exceeded\r\n")
        self.assertEqual(
            outcomes(actions),
            [
                ("bob@example.com", "deferred", "4.4.2"),
                ("carol@example.com", "deferred", "4.4.2"),
                ("dave@example.com", "deferred", "4.4.2"),
            ],
        )
        self.assertIn("(in reply to RCPT TO command)", actions[0].reason)  # type: ignore[union-attr]
        self.assertEqual(actions[3], MessageDone(THREE))
        self.assertIsInstance(actions[4], ConnectionUnusable)
        self.assertEqual(actions[5:], [Close(abort=True)])
        self.assertEqual(c.server(b"250 Ok\r\n"), [])
        self.assertRaises(RuntimeError, c.session.deliver, MESSAGE)

    def test_421AfterPartialOutcomes(self) -> None:
        """
        A recipient already bounced keeps its outcome when a 421 follows.
        """
        c = Conversation()
        c.handshake()
        c.deliver(THREE)
        actions = c.server(b"250 Ok\r\n550 5.1.1 no\r\n421 4.3.2 bye\r\n")
        self.assertEqual(
            outcomes(actions),
            [
                ("bob@example.com", "bounced", "5.1.1"),
                ("carol@example.com", "deferred", "4.3.2"),
                ("dave@example.com", "deferred", "4.3.2"),
            ],
        )

    def test_421Greeting(self) -> None:
        """
        A 421 greeting defers the pending message; no QUIT.
        """
        c = Conversation()
        c.deliver(MESSAGE)
        actions = c.server(b"421 4.3.2 Service shutting down\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.3.2")])
        self.assertEqual(sent(actions), b"")
        self.assertEqual(actions[-1], Close(abort=True))

    def test_unexpectedInputWhileIdle(self) -> None:
        """
        Bytes the server sends when no reply is awaited (after the last
        reply of a message) make the connection unusable, so that they can
        never be read as the reply to a later RSET.
        """
        c = Conversation()
        c.deliver(MESSAGE)
        c.server(b"220 mx ESMTP\r\n")
        c.server(b"250 mx\r\n")
        c.server(b"250 2.1.0 Ok\r\n")
        c.server(b"250 2.1.5 Ok\r\n")
        c.server(b"354 go\r\n")
        c.content(b"Subject: x\r\n\r\nbody\r\n")
        actions = c.server(b"250 2.0.0 queued\r\n250 2.0.0 extra\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "sent", "2.0.0")])
        [unusable] = [action for action in actions if isinstance(action, ConnectionUnusable)]
        self.assertIn("unexpected input while idle", unusable.reason)
        self.assertEqual(actions[-1], Close(abort=True))

    def test_421GreetingReason(self) -> None:
        """
        A 421 greeting is reported in Postfix's words for a greeting.
        """
        c = Conversation()
        c.deliver(MESSAGE)
        actions = c.server(b"421 4.3.2 Service shutting down\r\n")
        self.assertEqual(
            actions[0].reason,  # type: ignore[union-attr]
            f"host {HOP} refused to talk to me: 421 4.3.2 Service shutting down",
        )

    def test_5xxGreetingNotSkipped(self) -> None:
        """
        With smtp_skip_5xx_greeting = no, a 5xx greeting bounces the
        message (and says QUIT).
        """
        c = Conversation(skip5xxGreeting=False)
        c.deliver(MESSAGE)
        actions = c.server(b"554 5.7.1 go away\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "bounced", "5.7.1")])
        self.assertEqual(sent(actions), b"QUIT\r\n")

    def test_established(self) -> None:
        """
        The session counts as established (for smtp_mx_session_limit) only
        once the EHLO handshake is over, not after a greeting alone.
        """
        c = Conversation()
        c.deliver(MESSAGE)
        c.server(b"220 mx ESMTP\r\n")
        self.assertFalse(c.session.established)
        c.server(b"250 mx\r\n")
        self.assertTrue(c.session.established)

    def test_refusedGreeting(self) -> None:
        """
        A 554 greeting defers (the next MX may do better) and says QUIT.
        """
        c = Conversation()
        c.deliver(MESSAGE)
        actions = c.server(b"554 5.7.1 go away\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.7.1")])
        self.assertEqual(
            actions[0].reason,  # type: ignore[union-attr]
            f"host {HOP} refused to talk to me: 554 5.7.1 go away",
        )
        self.assertEqual(sent(actions), b"QUIT\r\n")
        self.assertEqual(c.server(b"221 bye\r\n"), [Close()])

    def test_timeout(self) -> None:
        """
        An expired deadline defers with Postfix's text naming the state,
        and drops the connection.
        """
        c = Conversation()
        c.handshake()
        c.deliver(MESSAGE)
        c.server(b"250 Ok\r\n")
        actions = c.session.timedOut()
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.4.2")])
        self.assertEqual(
            actions[0].reason,  # type: ignore[union-attr]
            f"conversation with {HOP} timed out while sending RCPT TO",
        )
        self.assertEqual(actions[-1], Close(abort=True))

    def test_lostDuringContent(self) -> None:
        """
        A connection lost while the body is sent defers the message.
        """
        c = Conversation()
        c.handshake()
        c.deliver(MESSAGE)
        c.server(b"250 Ok\r\n250 Ok\r\n354 go\r\n")
        actions = c.session.connectionLost()
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.4.2")])
        self.assertEqual(
            actions[0].reason,  # type: ignore[union-attr]
            f"lost connection with {HOP} while sending message body",
        )

    def test_lostAfterEndOfData(self) -> None:
        """
        Lost while waiting for the end-of-data reply: deferred, and the
        reason warns of a possible duplicate, as Postfix's does.
        """
        c = Conversation()
        c.handshake()
        c.deliver(MESSAGE)
        c.server(b"250 Ok\r\n250 Ok\r\n354 go\r\n")
        c.content(b"x\r\n")
        actions = c.session.connectionLost()
        self.assertIn("message may be sent more than once", actions[0].reason)  # type: ignore[union-attr]

    def test_malformed(self) -> None:
        """
        A malformed reply defers and drops the connection.
        """
        c = Conversation()
        c.handshake()
        c.deliver(MESSAGE)
        actions = c.server(b"250 Ok\r\nHTTP/1.0 200 OK\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.5.0")])
        self.assertEqual(actions[-1], Close(abort=True))

    def test_overlongReply(self) -> None:
        """
        A reply line over C{line_length_limit} defers and drops.
        """
        c = Conversation()
        c.deliver(MESSAGE)
        actions = c.server(b"220 " + b"x" * 5000)
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.5.0")])
        self.assertEqual(actions[-1], Close(abort=True))

    def test_unsolicitedFlood(self) -> None:
        """
        A server that floods us while we send the body is dropped once the
        unread output passes the bound.
        """
        c = Conversation()
        c.handshake()
        c.deliver(MESSAGE)
        c.server(b"250 Ok\r\n250 Ok\r\n354 go\r\n")
        self.assertEqual(c.server(b"250 x\r\n" * 100), [])
        actions = c.server(b"250 x\r\n" * 100000)
        self.assertEqual(outcomes(actions), [("bob@example.com", "deferred", "4.5.0")])


class ReuseTests(SynchronousTestCase):
    """
    One connection carries several messages; each after the first starts
    with RSET, which also checks that the cached connection still works.
    """

    def deliverOne(self, c: Conversation, message: Message) -> list[Action]:
        c.deliver(message)
        c.server(b"250 Ok\r\n250 Ok\r\n354 go\r\n")
        c.content(b"x\r\n")
        return c.server(b"250 2.0.0 queued\r\n")

    def test_rset(self) -> None:
        """
        The second message: RSET (under smtp_rset_timeout), then the
        pipelined group.
        """
        c = Conversation()
        c.handshake()
        self.deliverOne(c, MESSAGE)
        actions = c.deliver(THREE)
        self.assertEqual(sent(actions), b"RSET\r\n")
        self.assertEqual(waits(actions), ["smtp_rset_timeout"])
        actions = c.server(b"250 2.0.0 Ok\r\n")
        self.assertTrue(sent(actions).startswith(b"MAIL FROM:"))
        c.server(b"250 Ok\r\n" * 4 + b"354 go\r\n")
        c.content(b"y\r\n")
        actions = c.server(b"250 2.0.0 queued\r\n")
        self.assertEqual([o[1] for o in outcomes(actions)], ["sent"] * 3)

    def test_rsetRefused(self) -> None:
        """
        A cached connection that refuses RSET is given up; the message was
        not tried and comes back without an outcome.
        """
        c = Conversation()
        c.handshake()
        self.deliverOne(c, MESSAGE)
        c.deliver(THREE)
        actions = c.server(b"500 5.5.1 what?\r\n")
        self.assertEqual(outcomes(actions), [])
        [unusable] = [a for a in actions if isinstance(a, ConnectionUnusable)]
        self.assertEqual(unusable.untried, THREE)
        self.assertEqual(sent(actions), b"QUIT\r\n")

    def test_cachedConnectionDied(self) -> None:
        """
        A cached connection that died before RSET was answered hands the
        message back untried.
        """
        c = Conversation()
        c.handshake()
        self.deliverOne(c, MESSAGE)
        c.deliver(THREE)
        actions = c.session.connectionLost()
        self.assertEqual(outcomes(actions), [])
        self.assertEqual(actions, [ConnectionUnusable(f"lost connection with {HOP} while sending RSET", THREE)])

    def test_rset421(self) -> None:
        """
        A 421 to RSET also hands the message back, and drops the connection.
        """
        c = Conversation()
        c.handshake()
        self.deliverOne(c, MESSAGE)
        c.deliver(THREE)
        actions = c.server(b"421 4.4.2 idle too long\r\n")
        self.assertEqual(outcomes(actions), [])
        self.assertEqual(actions[0].untried, THREE)  # type: ignore[union-attr]
        self.assertEqual(actions[-1], Close(abort=True))

    def test_idleLoss(self) -> None:
        """
        An idle cached connection that goes away has nothing to defer.
        """
        c = Conversation()
        c.handshake()
        actions = c.session.connectionLost()
        self.assertEqual(len(actions), 1)
        self.assertIsInstance(actions[0], ConnectionUnusable)


class ChunkingTests(SynchronousTestCase):
    """
    BDAT when the server offers CHUNKING (with PIPELINING).
    """

    def start(self, message: Message = MESSAGE) -> Conversation:
        c = Conversation()
        c.handshake(ehlo("PIPELINING", "CHUNKING", "SIZE 10000"))
        actions = c.deliver(message)
        self.assertNotIn(b"DATA", sent(actions))
        return c

    def test_bdat(self) -> None:
        """
        MAIL and RCPT pipelined without DATA; after the RCPT replies the
        content goes in BDAT chunks, each answered, the last one deciding.
        """
        c = self.start()
        actions = c.server(b"250 Ok\r\n250 Ok\r\n")
        self.assertEqual(actions, [SendContent(chunked=True)])
        wire = c.content(b"Subject: x\r\n\r\n", b".body\n")
        self.assertEqual(
            wire,
            b"BDAT 14\r\nSubject: x\r\n\r\nBDAT 7\r\n.body\r\nBDAT 0 LAST\r\n",
        )
        # Each chunk reply re-arms for the next; the last gets the
        # end-of-data timeout.
        self.assertEqual(waits(c.actions[-1:]), ["smtp_data_xfer_timeout"])
        self.assertEqual(
            waits(c.server(b"250 2.0.0 14 octets received\r\n")), ["smtp_data_xfer_timeout"]
        )
        self.assertEqual(
            waits(c.server(b"250 2.0.0 7 octets received\r\n")), ["smtp_data_done_timeout"]
        )
        actions = c.server(b"250 2.0.0 Ok: 21 octets, queued as 4ABC\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "sent", "2.0.0")])
        self.assertEqual(actions[-2:], [MessageDone(MESSAGE), Ready()])

    def test_bdatRepliesDuringContent(self) -> None:
        """
        BDAT replies that arrive while the body is still being sent are
        consumed as they come, so they never pile up.
        """
        c = self.start()
        c.server(b"250 Ok\r\n250 Ok\r\n")
        for _ in range(1000):
            c.session.encodeContent(b"line\r\n")
            self.assertEqual(c.server(b"250 2.0.0 ok\r\n"), [])
        c.session.contentDone()
        actions = c.server(b"250 2.0.0 queued\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "sent", "2.0.0")])

    def test_chunkRefused(self) -> None:
        """
        A refused chunk decides the message even if the last one is
        accepted.
        """
        c = self.start()
        c.server(b"250 Ok\r\n250 Ok\r\n")
        c.content(b"a\r\n", b"b\r\n")
        actions = c.server(b"552 5.3.4 too big\r\n503 5.5.1 no\r\n250 what\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "bounced", "5.3.4")])
        self.assertIn("(in reply to BDAT command)", actions[0].reason)  # type: ignore[union-attr]

    def test_noRecipientNoContent(self) -> None:
        """
        When every RCPT is refused no BDAT is sent at all.
        """
        c = self.start()
        actions = c.server(b"250 Ok\r\n550 5.1.1 no\r\n")
        self.assertEqual(outcomes(actions), [("bob@example.com", "bounced", "5.1.1")])
        self.assertEqual(actions[-2:], [MessageDone(MESSAGE), Ready()])

    def test_chunkingWithoutPipelining(self) -> None:
        """
        CHUNKING without PIPELINING: DATA is used, so that no chunk waits
        for its reply in the middle of the body.
        """
        c = Conversation()
        c.handshake(ehlo("CHUNKING"))
        c.deliver(MESSAGE)
        c.server(b"250 Ok\r\n")
        self.assertEqual(sent(c.server(b"250 Ok\r\n")), b"DATA\r\n")


class SansIOTests(SynchronousTestCase):
    """
    The client core stays free of I/O.
    """

    def test_noIO(self) -> None:
        """
        The sans-I/O core of C{mtaguard.client} (reply parser, session
        machine, content encoder) mentions no Twisted, transport, reactor or
        Deferred; the protocol, factory and routing modules are the I/O
        adapters around it.
        """
        import pathlib
        import re

        import mtaguard.client

        package = pathlib.Path(mtaguard.client.__file__).parent
        sources = [package / f"{name}.py" for name in ("_replyparser", "_session", "_content")]
        self.assertTrue(sources)
        for source in sources:
            text = source.read_text()
            for word in ("twisted", "transport", "reactor", "Deferred"):
                self.assertIsNone(
                    re.search(word, text, re.IGNORECASE if word == "twisted" else 0),
                    f"{word} in {source.name}",
                )
