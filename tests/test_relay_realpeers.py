"""
mtaguard's SMTP client against real next hops over loopback: Postfix's own
smtpd (a private instance) with STARTTLS verified against a test CA, and
Postfix's smtp-sink answering slower than mtaguard's client deadlines allow.

Routing to the Postfix instance goes by name, as in production:
C{relayhost = [mx.next.example]:PORT} suppresses the MX lookup, and the
host name is resolved to an address through DNS (a stub server named in
C{mtaguard_dns_servers}; mtaguard, like Postfix with
C{smtp_host_lookup = dns}, never reads the hosts file).  At
C{smtp_tls_security_level = verify} the default
C{smtp_tls_verify_cert_match = hostname} then requires the server
certificate to name C{mx.next.example}, the host of the C{[host]:port}
next hop.
"""

from __future__ import annotations

import os
import re
import time

from twisted.trial.unittest import TestCase

from .realpeers import (
    HOST,
    MtaguardProcess,
    freePort,
    temporaryDirectory,
    waitForFiles,
    writeConfiguration,
)
from .relaypeers import (
    NEXT_HOP_NAME,
    CertificateAuthority,
    PostfixInstance,
    StubDNS,
    queueCommand,
    startSink,
    subjects,
    submit,
)

#: Far beyond a test's time: no retry happens while it runs.
HOUR = "3600s"


class VerifiedTLSToPostfixTests(TestCase):
    """
    C{smtp_tls_security_level = verify} against Postfix's smtpd.
    """

    timeout = 120

    def relayThrough(
        self, certificateName: str, *, trusted: bool = True
    ) -> tuple[MtaguardProcess, PostfixInstance, str]:
        """
        Start a private Postfix whose certificate, issued by a fresh test
        CA (or, unless C{trusted}, by another one), names
        C{certificateName}; a stub DNS server that resolves
        L{NEXT_HOP_NAME} to 127.0.0.1; and mtaguard relaying everything to
        C{[mx.next.example]:PORT} at C{verify} with that CA as
        C{smtp_tls_CAfile}.  Then send it one message.

        @return: mtaguard, Postfix, and mtaguard's configuration directory.
        """
        directory = temporaryDirectory(self)
        authority = CertificateAuthority(directory)
        issuer = authority
        if not trusted:
            other = os.path.join(directory, "other-ca")
            os.makedirs(other)
            issuer = CertificateAuthority(other, "some other CA")
        key, certificate = issuer.issue(certificateName)
        postfixPort = freePort()
        postfix = PostfixInstance(self, directory, postfixPort, key=key, certificate=certificate)
        resolver = StubDNS(self, freePort(), {NEXT_HOP_NAME: HOST})
        configuration = os.path.join(directory, "mtaguard")
        os.makedirs(configuration)
        port = freePort()
        writeConfiguration(
            configuration,
            port,
            {
                "relayhost": f"[{NEXT_HOP_NAME}]:{postfixPort}",
                "mtaguard_dns_servers": resolver.server,
                "inet_protocols": "ipv4",
                "smtp_tls_security_level": "verify",
                "smtp_tls_CAfile": authority.path,
                "queue_run_delay": HOUR,
                "minimal_backoff_time": HOUR,
                "maximal_backoff_time": HOUR,
            },
            masterExtra="smtp unix - - n - - smtp\n",
        )
        server = MtaguardProcess(configuration, port)
        server.start()
        self.addCleanup(server.stop)
        submit(port, "relay over verified TLS")
        return server, postfix, configuration

    def test_verifiedDelivery(self) -> None:
        """
        With a certificate for C{mx.next.example} from the trusted CA,
        mtaguard logs C{Verified TLS connection established to
        mx.next.example[127.0.0.1]:PORT} and C{status=sent}, and the
        message arrives at Postfix over TLS: Postfix's smtpd logs a TLS
        connection from 127.0.0.1 and its cleanup sees the message's
        subject.
        """
        server, postfix, _ = self.relayThrough(NEXT_HOP_NAME)
        log = server.waitForLog("status=sent")
        self.assertIn(
            f"Verified TLS connection established to {NEXT_HOP_NAME}[{HOST}]:{postfix.port}:", log
        )
        self.assertIn(f"relay={NEXT_HOP_NAME}[{HOST}]:{postfix.port}, ", log)
        # Postfix's 250 names its queue ID: the same message in both logs.
        match = re.search(r" status=sent \(250 2\.0\.0 Ok: .*queued as ([0-9A-Za-z]+)\)", log)
        assert match is not None, log
        queueID = match.group(1)
        postfixLog = postfix.waitForLog(f"{queueID}: to=<someone@remote.example>, relay=none")
        self.assertIn("TLS connection established from unknown[127.0.0.1]: TLSv1.", postfixLog)
        self.assertIn(
            f"{queueID}: warning: header Subject: relay over verified TLS from", postfixLog
        )
        self.assertIn("status=sent (relayed)", postfixLog)
        # qmgr's line has the same form in both logs.
        active = re.compile(r"[0-9A-Za-z]+: from=<sender@example\.org>, size=\d+, nrcpt=1 \(queue active\)")
        self.assertRegex(log, active)
        self.assertRegex(postfixLog, active)

    def test_wrongNameDeferred(self) -> None:
        """
        With a certificate from the trusted CA for another name, the
        handshake fails verification: the message is deferred and stays in
        mtaguard's queue (C{mtaguard-postqueue -p} lists it), and nothing
        is sent in clear: Postfix never receives a MAIL command.
        """
        server, postfix, configuration = self.relayThrough("wrong.example")
        log = server.waitForLog("status=deferred")
        self.assertNotIn("status=sent", log)
        self.assertNotIn("Verified TLS connection established", log)
        self.assertIn(
            f"warning: server certificate for {NEXT_HOP_NAME}[{HOST}]:{postfix.port}"
            f" matches none of {NEXT_HOP_NAME}; Server certificate not verified",
            log,
        )
        self.assertIn(f"relay={NEXT_HOP_NAME}[{HOST}]:{postfix.port}, ", log)
        self.assertIn(
            "dsn=4.7.5, status=deferred (Cannot start TLS: Server certificate not verified)", log
        )
        self.assertIn(f"SSL_connect error to {NEXT_HOP_NAME}[{HOST}]: ", log)
        listing = queueCommand(configuration, "postqueue", "-p")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertIn("someone@remote.example", listing.stdout)
        self.assertIn("sender@example.org", listing.stdout)
        self.assertNothingReceived(postfix)

    def test_untrustedIssuerDeferred(self) -> None:
        """
        With a certificate for the right name from a CA that is not in
        C{smtp_tls_CAfile}, the message is deferred with Postfix's
        C{Server certificate not trusted}, and nothing is sent in clear.
        """
        server, postfix, configuration = self.relayThrough(NEXT_HOP_NAME, trusted=False)
        log = server.waitForLog("status=deferred")
        self.assertNotIn("status=sent", log)
        self.assertIn(
            "dsn=4.7.5, status=deferred (Cannot start TLS: Server certificate not trusted)", log
        )
        listing = queueCommand(configuration, "postqueue", "-p")
        self.assertIn("someone@remote.example", listing.stdout)
        self.assertNothingReceived(postfix)

    def assertNothingReceived(self, postfix: PostfixInstance) -> None:
        """
        Postfix's smtpd saw the session end in the handshake after
        STARTTLS: no MAIL command, no message.
        """
        postfixLog = postfix.waitForLog("starttls=0/1")
        self.assertNotIn("client=unknown", postfixLog)
        self.assertNotIn("warning: header Subject", postfixLog)
        sessions = [line for line in postfixLog.splitlines() if "disconnect from" in line]
        self.assertEqual([line for line in sessions if "mail=" in line], [])


class SlowNextHopTests(TestCase):
    """
    Postfix's smtp-sink delaying its replies (C{-W command:delay}) against
    mtaguard's client timeouts, set low.
    """

    timeout = 120

    def relayTo(self, sinkOptions: tuple[str, ...], settings: dict[str, str]) -> tuple[MtaguardProcess, str]:
        """
        Start smtp-sink with C{sinkOptions} and mtaguard relaying to it
        with C{settings}; send one message (it is acknowledged when this
        returns).

        @return: mtaguard and the directory smtp-sink writes to.
        """
        directory = temporaryDirectory(self)
        sinkPort = freePort()
        received = os.path.join(directory, "sink")
        startSink(self, sinkPort, received, *sinkOptions)
        port = freePort()
        writeConfiguration(
            directory,
            port,
            {
                "relayhost": f"[{HOST}]:{sinkPort}",
                "smtp_tls_security_level": "",
                "queue_run_delay": HOUR,
                "minimal_backoff_time": HOUR,
                "maximal_backoff_time": HOUR,
                **settings,
            },
            masterExtra="smtp unix - - n - - smtp\n",
        )
        server = MtaguardProcess(directory, port)
        server.start()
        self.addCleanup(server.stop)
        submit(port, "slow next hop")
        return server, received

    def assertDeferredQuickly(
        self, sinkOptions: tuple[str, ...], settings: dict[str, str], reason: str
    ) -> tuple[str, str]:
        """
        Relay one message to an smtp-sink run with C{sinkOptions}, with the
        client C{settings}; it must be deferred within 15 s (the limits
        are 2 s, smtp-sink's delays 20 s) with Postfix's text
        C{conversation with 127.0.0.1[127.0.0.1] timed out while REASON}.

        @return: mtaguard's log and the sink's dump file.
        """
        server, received = self.relayTo(sinkOptions, dict(settings, smtp_per_request_deadline="yes"))
        started = time.monotonic()
        log = server.waitForLog("status=deferred", timeout=30)
        self.assertLess(time.monotonic() - started, 15)
        self.assertIn(f"status=deferred (conversation with {HOST}[{HOST}] timed out while {reason})", log)
        return log, received

    def test_slowGreetingDeferred(self) -> None:
        """
        smtp-sink waits 20 s before its greeting; with
        C{smtp_helo_timeout = 2s} mtaguard gives up within seconds and
        defers the message with Postfix's text: C{conversation with
        127.0.0.1[127.0.0.1] timed out while receiving the initial server
        greeting}; no content reached the sink.
        """
        log, received = self.assertDeferredQuickly(
            ("-W", "connect:20"), {"smtp_helo_timeout": "2s"}, "receiving the initial server greeting"
        )
        # smtp-sink may have opened a dump file for the envelope: no
        # content ever reached it.
        self.assertEqual(subjects(received), [])

    def test_slowEndOfDataDeferred(self) -> None:
        """
        smtp-sink waits 20 s before answering the final dot; with
        C{smtp_data_done_timeout = 2s} the message is deferred within
        seconds with Postfix's warning that it may be sent more than once.
        """
        log, _ = self.assertDeferredQuickly(
            ("-W", ".:20"),
            {"smtp_data_done_timeout": "2s"},
            "sending end of data -- message may be sent more than once",
        )
        self.assertNotIn("status=sent", log)

    def test_slowDataReplyDeferred(self) -> None:
        """
        smtp-sink, without PIPELINING (C{-p}), waits 20 s before answering
        DATA (C{-w 20}); with C{smtp_data_init_timeout = 2s} the message is
        deferred within seconds, before any of its content was sent.
        """
        log, received = self.assertDeferredQuickly(
            ("-p", "-w", "20"), {"smtp_data_init_timeout": "2s"}, "sending DATA command"
        )
        # smtp-sink may have opened a dump file for the envelope: no
        # content ever reached it.
        self.assertEqual(subjects(received), [])

    def test_slowPipelinedDataReplyDeferred(self) -> None:
        """
        With PIPELINING, MAIL, RCPT and DATA go in one write, and smtp-sink
        sends its replies to the three together, after the C{-w 20} delay:
        mtaguard is waiting for the MAIL FROM reply, so the limit is
        C{smtp_mail_timeout}, as with Postfix's client.
        """
        log, received = self.assertDeferredQuickly(("-w", "20"), {"smtp_mail_timeout": "2s"}, "sending MAIL FROM")
        # smtp-sink may have opened a dump file for the envelope: no
        # content ever reached it.
        self.assertEqual(subjects(received), [])

    def test_slowWithinLimitsDelivered(self) -> None:
        """
        Delays shorter than the limits (1 s before the greeting, the DATA
        reply and the reply to the final dot, with 4 s timeouts) slow the
        delivery down but it succeeds.
        """
        server, received = self.relayTo(
            ("-W", "connect:1", "-w", "1", "-W", ".:1"),
            {
                "smtp_helo_timeout": "4s",
                # With PIPELINING the DATA delay holds the MAIL FROM reply.
                "smtp_mail_timeout": "4s",
                "smtp_data_init_timeout": "4s",
                "smtp_data_done_timeout": "4s",
                "smtp_per_request_deadline": "yes",
            },
        )
        log = server.waitForLog("status=sent", timeout=40)
        self.assertNotIn("status=deferred", log)
        waitForFiles(received, 1)
        self.assertEqual(subjects(received), [b"Subject: slow next hop"])
