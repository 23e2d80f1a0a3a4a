"""
SMTP smuggling (CVE-2023-51764) regression tests: a client must never be
able to end a message where this server and the next hop would disagree.

C{ParserSmugglingTests} checks the parser alone against the transcripts in
C{shared/reference/postfix.md} section 3.2.
"""

from __future__ import annotations

from typing import Optional

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.smtp import Command, DataContent, EndOfData, Event, ServerParser

# The payload from postfix.md 3.2, sent in one write after 354.
PAYLOAD = (
    b"Subject: one\r\n\r\nbody one\r\n\n.\nMAIL FROM:<evil@x.example>\r\n"
    b"RCPT TO:<postmaster@mx.test.example>\r\nDATA\r\n"
    b"Subject: smuggled\r\n\r\nbody two\r\n.\r\n"
)

# What Postfix stored with smtpd_forbid_bare_newline = normalize (3.2).
STORED_NORMALIZED = (
    b"Subject: one\r\n\r\nbody one\r\n\r\nMAIL FROM:<evil@x.example>\r\n"
    b"RCPT TO:<postmaster@mx.test.example>\r\nDATA\r\n"
    b"Subject: smuggled\r\n\r\nbody two\r\n"
)

# Variants of the end-of-data marker that some servers accept
# (the SEC Consult list: LF.LF, CRLF.LF, LF.CRLF, CR.CR and friends).
MARKERS = [
    b"\n.\n",
    b"\r\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\r\n\x00.\r\n",
]


def run(mode: str, data: bytes, byteByByte: bool = False) -> list[Event]:
    """
    Play C{data} after C{354} against a parser that accepts every DATA
    command, returning every event.
    """
    parser = ServerParser(bareNewline=mode)
    parser.startData()
    events: list[Event] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if byteByByte else [data]
    for chunk in chunks:
        parser.receive(chunk)
        while (event := parser.nextEvent()) is not None:
            events.append(event)
            if isinstance(event, Command) and event.verb == "DATA":
                parser.startData()
    return events


def content(events: list[Event]) -> list[Optional[bytes]]:
    """
    The messages in C{events}: the content of each ended message, then
    C{None} if a message was left unfinished.
    """
    messages: list[Optional[bytes]] = []
    current = b""
    for event in events:
        if isinstance(event, DataContent):
            current += event.data
        elif isinstance(event, EndOfData):
            messages.append(current)
            current = b""
    if current:
        messages.append(None)
    return messages


class ParserSmugglingTests(SynchronousTestCase):
    """
    The parser's end-of-data rules against smuggling payloads.
    """

    def test_noModeIsSmugglable(self) -> None:
        """
        With C{smtpd_forbid_bare_newline = no}, as in Postfix 3.7's default,
        C{<LF>.<LF>} ends the message and the smuggled commands come out as
        commands: two messages, the second from the attacker.
        """
        for byteByByte in (False, True):
            events = run("no", PAYLOAD, byteByByte)
            self.assertEqual(
                content(events),
                [b"Subject: one\r\n\r\nbody one\r\n\r\n", b"Subject: smuggled\r\n\r\nbody two\r\n"],
            )
            verbs = [e.verb for e in events if isinstance(e, Command)]
            self.assertEqual(verbs, ["MAIL", "RCPT", "DATA"])

    def test_normalizeStoresOneMessage(self) -> None:
        """
        With C{normalize}, the payload is one message whose body is exactly
        what Postfix stored: bare-LF lines became CRLF lines and the "." line
        next to a bare LF vanished; no command is seen.
        """
        for byteByByte in (False, True):
            events = run("normalize", PAYLOAD, byteByByte)
            self.assertEqual(content(events), [STORED_NORMALIZED])
            self.assertFalse([e for e in events if isinstance(e, Command)])
            self.assertEqual(events[-1], EndOfData(len(STORED_NORMALIZED), True))

    def test_rejectFlagsTheMessage(self) -> None:
        """
        With C{reject}, the message still ends only at the real CRLF.CRLF,
        and the end event says a bare LF was seen, so that the session
        answers C{550 5.5.2 ... Error: bare <LF> received}.
        """
        events = run("reject", PAYLOAD)
        self.assertEqual(content(events), [STORED_NORMALIZED])
        self.assertEqual(events[-1], EndOfData(len(STORED_NORMALIZED), True))

    def test_bareLineFeedInContent(self) -> None:
        """
        A bare LF inside otherwise proper content is stored as CRLF in
        C{normalize} and flagged for rejection in C{reject} (postfix.md 3.2).
        """
        for mode in ("normalize", "reject"):
            events = run(mode, b"line with bare lf\nnext\r\n.\r\n")
            self.assertEqual(
                events,
                [DataContent(b"line with bare lf\r\nnext\r\n"), EndOfData(25, True)],
            )

    def test_bareLineFeedCommand(self) -> None:
        """
        A command ending in a bare LF is accepted and flagged, so that
        C{reject} can disconnect.
        """
        parser = ServerParser(bareNewline="reject")
        parser.receive(b"EHLO c.example\n")
        self.assertEqual(
            parser.nextEvent(), Command("EHLO", "c.example", b"EHLO c.example", True, False)
        )

    def test_markerVariants(self) -> None:
        """
        In C{normalize} and C{reject}, no variant of the end marker other
        than CRLF.CRLF ends the message, and what is stored contains no bare
        CR or LF that the next hop could take for an end marker.
        """
        for mode in ("normalize", "reject"):
            for marker in MARKERS:
                payload = b"a" + marker + b"MAIL FROM:<evil@x.example>\r\n"
                for byteByByte in (False, True):
                    events = run(mode, payload, byteByByte)
                    self.assertEqual(content(events), [None], (mode, marker))
                    stored = b"".join(e.data for e in events if isinstance(e, DataContent))
                    self.assertNotIn(b"\r", stored.replace(b"\r\n", b""), (mode, marker))
                    self.assertNotIn(b"\n", stored.replace(b"\r\n", b""), (mode, marker))
                    self.assertFalse([e for e in events if isinstance(e, Command)])

    def test_noModeContentIsClean(self) -> None:
        """
        Even in C{no} mode, which ends DATA at a bare-LF marker, the content
        handed on has CRLF line endings only, so the message cannot smuggle
        anything to the next hop.
        """
        for marker in MARKERS:
            events = run("no", b"x\rx\ny" + marker + b"z\r\n.\r\n")
            for event in events:
                if isinstance(event, DataContent):
                    stripped = event.data.replace(b"\r\n", b"")
                    self.assertNotIn(b"\r", stripped, marker)
                    self.assertNotIn(b"\n", stripped, marker)


class ServerSmugglingTests(SynchronousTestCase):
    """
    The SMTP server never lets a second message be smuggled inside the
    first, and what it queues has clean line endings.
    """

    PAYLOAD = (
        b"Subject: one\r\n\r\nbody one\r\n\n.\nMAIL FROM:<evil@x.example>\r\n"
        b"RCPT TO:<postmaster@mx.example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\n"
        b"body two\r\n.\r\n"
    )

    def deliver(self, mode: str) -> tuple[bytes, list[bytes]]:
        from .smtpdharness import Harness

        h = Harness(smtpd_forbid_bare_newline=mode)
        h.ehlo()
        h.transaction()
        h.send(b"DATA\r\n")
        h.take()
        h.send(self.PAYLOAD)
        return h.take(), [bytes(m.content) for m in h.queue.committed]

    def test_normalizeIsDefault(self) -> None:
        """
        mtaguard's default (normalize, as Postfix 3.9) queues one message,
        the smuggled commands stay inside it as text, and the dot line next
        to bare LFs is dropped, exactly as Postfix stores it.
        """
        from .smtpdharness import Harness

        self.assertEqual(Harness().protocol._mode, "normalize")
        replies, messages = self.deliver("normalize")
        self.assertEqual(replies, b"250 2.0.0 Ok: queued as MEM000001\r\n")
        [content] = messages
        self.assertTrue(
            content.endswith(
                b"Subject: one\r\n\r\nbody one\r\n\r\nMAIL FROM:<evil@x.example>\r\n"
                b"RCPT TO:<postmaster@mx.example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\n"
                b"body two\r\n"
            ),
            content,
        )

    def test_reject(self) -> None:
        """
        In reject mode the message is refused after the real end of data
        with Postfix's 550 5.5.2, and the session goes on.
        """
        replies, messages = self.deliver("reject")
        self.assertEqual(replies, b"550 5.5.2 mx.example.org Error: bare <LF> received\r\n")
        self.assertEqual(messages, [])

    def test_yesIsNormalize(self) -> None:
        """
        C{yes} is Postfix 3.7.10's alias for normalize.
        """
        replies, messages = self.deliver("yes")
        self.assertEqual(len(messages), 1)

    def test_noIsPostfix37Compatible(self) -> None:
        """
        C{no} (Postfix 3.7's default) ends the message at LF.LF, as Postfix
        does; even then every queued line ends in CRLF.
        """
        replies, messages = self.deliver("no")
        self.assertEqual(len(messages), 2)
        for content in messages:
            self.assertNotIn(b"\n", content.replace(b"\r\n", b""))

    def test_exclusions(self) -> None:
        """
        Clients in smtpd_forbid_bare_newline_exclusions get Postfix 3.7's
        old behaviour.
        """
        from .smtpdharness import Harness

        h = Harness(client="127.0.0.1", smtpd_forbid_bare_newline="reject")
        self.assertEqual(h.protocol._mode, "no")

    def test_rejectCommandLine(self) -> None:
        """
        In reject mode a command ending in a bare LF ends the session with
        the reject code, as Postfix does.
        """
        from .smtpdharness import Harness

        h = Harness(smtpd_forbid_bare_newline="reject")
        h.take()
        h.send(b"EHLO c.example\n")
        self.assertEqual(h.take(), b"550 5.5.2 mx.example.org Error: bare <LF> received\r\n")
        self.assertTrue(h.closed)

    def test_bdat(self) -> None:
        """
        BDAT chunks are taken verbatim (no dot handling) with line endings
        normalised, and LAST commits the message.
        """
        from .smtpdharness import Harness

        h = Harness()
        h.ehlo()
        h.transaction()
        h.send(b"BDAT 12\r\nSubject: x\n\rBDAT 9 LAST\r\n.\r\nbody\r\n")
        self.assertEqual(
            h.lines(), [b"250 2.0.0 Ok: 12 bytes", b"250 2.0.0 Ok: queued as MEM000001"]
        )
        [message] = h.queue.committed
        # The CR ending chunk one is not followed by LF: a stray CR, which
        # becomes a space as Postfix's cleanup_replace_stray_cr_lf does.
        self.assertTrue(message.content.endswith(b"Subject: x\r\n .\r\nbody\r\n"), message.content)
