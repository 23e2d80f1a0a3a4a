"""
Tests for L{mtaguard.client.ReplyParser} and L{mtaguard.client.parseEhlo}:
the replies a next hop sends, however the network cuts them, and what a
hostile next hop cannot make the parser do.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.client import MalformedReply, ReplyParser, ServerReply, parseEhlo

EHLO = (
    b"250-mx.example.com\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 10240000\r\n"
    b"250-VRFY\r\n"
    b"250-ETRN\r\n"
    b"250-STARTTLS\r\n"
    b"250-AUTH PLAIN LOGIN\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250-8BITMIME\r\n"
    b"250-DSN\r\n"
    b"250-SMTPUTF8\r\n"
    b"250 CHUNKING\r\n"
)


def parse(data: bytes) -> list[object]:
    """
    All events from C{data} given to a fresh parser in one piece.
    """
    return list(ReplyParser().feed(data))


class ReplyTests(SynchronousTestCase):
    """
    Well-formed replies come out whole, with their code, enhanced status
    code and text.
    """

    def test_singleLine(self) -> None:
        """
        A one-line reply gives its code, its enhanced status code and the
        rest of the text.
        """
        self.assertEqual(
            parse(b"250 2.1.0 Ok\r\n"), [ServerReply(250, "2.1.0", ("Ok",))]
        )

    def test_noEnhancedCode(self) -> None:
        """
        A greeting without an enhanced status code has C{None}, and its
        DSN falls back to the reply class, as Postfix reports it.
        """
        [reply] = parse(b"220 mx.example.com ESMTP\r\n")
        assert isinstance(reply, ServerReply)
        self.assertEqual(reply, ServerReply(220, None, ("mx.example.com ESMTP",)))
        self.assertEqual(reply.dsn, "2.0.0")

    def test_enhancedClassMustMatch(self) -> None:
        """
        A 550 whose text starts with C{4.1.1} does not carry that code: the
        class disagrees with the reply, so the text is kept as it came.
        """
        self.assertEqual(
            parse(b"550 4.1.1 nope\r\n"), [ServerReply(550, None, ("4.1.1 nope",))]
        )

    def test_codeOnly(self) -> None:
        """
        A reply of just a code (RFC 5321 allows the text to be missing) has
        one empty line of text.
        """
        self.assertEqual(parse(b"354\r\n"), [ServerReply(354, None, ("",))])

    def test_multiLine(self) -> None:
        """
        The lines of a multi-line reply are collected until the line whose
        code is followed by a space; a repeated enhanced code is removed
        from each line, and the one-line rendering joins them.
        """
        [reply] = parse(
            b"550-5.7.1 Service unavailable; client blocked\r\n"
            b"550-5.7.1 see https://example.com/\r\n"
            b"550 5.7.1 for details\r\n"
        )
        self.assertEqual(
            reply,
            ServerReply(
                550,
                "5.7.1",
                (
                    "Service unavailable; client blocked",
                    "see https://example.com/",
                    "for details",
                ),
            ),
        )
        self.assertEqual(
            str(reply),
            "550 5.7.1 Service unavailable; client blocked "
            "see https://example.com/ for details",
        )

    def test_severalReplies(self) -> None:
        """
        Pipelined replies in one segment come out one by one, in order.
        """
        self.assertEqual(
            parse(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n"),
            [
                ServerReply(250, "2.1.0", ("Ok",)),
                ServerReply(250, "2.1.5", ("Ok",)),
                ServerReply(354, None, ("go ahead",)),
            ],
        )

    def test_pullOneAtATime(self) -> None:
        """
        L{ReplyParser.nextReply} returns one reply and leaves the rest
        buffered, and says C{None} when it needs more bytes.
        """
        parser = ReplyParser()
        parser.receive(b"220 hi\r\n250 ok\r\n25")
        self.assertEqual(parser.nextReply(), ServerReply(220, None, ("hi",)))
        self.assertEqual(parser.buffered(), 10)
        self.assertEqual(parser.nextReply(), ServerReply(250, None, ("ok",)))
        self.assertIsNone(parser.nextReply())
        parser.receive(b"0 again\n")
        self.assertEqual(parser.nextReply(), ServerReply(250, None, ("again",)))

    def test_bareLineFeed(self) -> None:
        """
        A line ended by a bare LF is accepted, as Postfix's client does.
        """
        self.assertEqual(parse(b"250 ok\n"), [ServerReply(250, None, ("ok",))])

    def test_unprintable(self) -> None:
        """
        Control characters, DEL and bytes that are not UTF-8 become C{?},
        so reply text is safe to put in logs and bounces; UTF-8 survives.
        """
        self.assertEqual(
            parse(b"550 a\x1b[31mb\x7fc\xffd \xc3\xa9\rX\r\n"),
            [ServerReply(550, None, ("a?[31mb?c?d \u00e9?X",))],
        )

    @settings(max_examples=200)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([220, 250, 354, 421, 450, 550]),
                st.lists(
                    st.text(
                        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                        max_size=30,
                    ),
                    min_size=1,
                    max_size=5,
                ),
            ),
            min_size=1,
            max_size=4,
        ),
        st.data(),
    )
    def test_splitAnywhere(
        self, replies: list[tuple[int, list[str]]], data: st.DataObject
    ) -> None:
        """
        However the network cuts a stream of (multi-line) replies, the same
        replies come out, in order, each line's text intact.
        """
        wire = b"".join(
            b"".join(
                b"%d%s%s\r\n"
                % (code, b" " if i == len(lines) - 1 else b"-", line.encode())
                for i, line in enumerate(lines)
            )
            for code, lines in replies
        )
        cuts = sorted(
            data.draw(st.lists(st.integers(0, len(wire)), max_size=len(wire)))
        )
        whole = parse(wire)
        parser = ReplyParser()
        events = []
        previous = 0
        for cut in [*cuts, len(wire)]:
            events.extend(parser.feed(wire[previous:cut]))
            previous = cut
        self.assertEqual(events, whole)
        self.assertEqual([r.code for r in events if isinstance(r, ServerReply)], [c for c, _ in replies])
        for event, (code, lines) in zip(events, replies):
            assert isinstance(event, ServerReply)
            self.assertEqual(len(event.lines), len(lines))

    def test_everyBytePosition(self) -> None:
        """
        A multi-line EHLO reply fed in two pieces, cut at every possible
        position, gives the same single reply.
        """
        whole = parse(EHLO)
        self.assertEqual(len(whole), 1)
        for cut in range(len(EHLO) + 1):
            parser = ReplyParser()
            events = parser.feed(EHLO[:cut]) + parser.feed(EHLO[cut:])
            self.assertEqual(events, whole, f"cut at {cut}")


class MalformedTests(SynchronousTestCase):
    """
    Anything that is not a reply, or is too much of one, is reported once as
    L{MalformedReply}; the parser then ignores the connection.
    """

    def assertMalformed(self, data: bytes, reason: str, **kwargs: int) -> MalformedReply:
        """
        C{data} gives exactly one L{MalformedReply} whose reason contains
        C{reason}, and nothing after it.
        """
        parser = ReplyParser(**kwargs)
        events = parser.feed(data)
        self.assertEqual(len(events), 1, events)
        [event] = events
        assert isinstance(event, MalformedReply)
        self.assertIn(reason, event.reason)
        self.assertTrue(parser.failed)
        self.assertEqual(parser.feed(b"250 ok\r\n"), [])
        return event

    def test_notACode(self) -> None:
        """
        A line that does not start with three digits is malformed.
        """
        event = self.assertMalformed(b"HTTP/1.1 400 Bad Request\r\n", "not an SMTP reply")
        self.assertEqual(event.line, b"HTTP/1.1 400 Bad Request")

    def test_badSeparator(self) -> None:
        """
        A code followed by something other than a space or a hyphen is
        malformed.
        """
        self.assertMalformed(b"250+ok\r\n", "not an SMTP reply")

    def test_badClass(self) -> None:
        """
        Codes outside 2xx to 5xx do not exist in SMTP.
        """
        self.assertMalformed(b"150 ok\r\n", "not an SMTP reply")
        self.assertMalformed(b"650 ok\r\n", "not an SMTP reply")

    def test_shortLine(self) -> None:
        """
        A line shorter than a code is malformed.
        """
        self.assertMalformed(b"25\r\n", "not an SMTP reply")

    def test_codeChanges(self) -> None:
        """
        Every line of a multi-line reply must carry the same code: a
        continuation that switches code is malformed, not a new reply.
        """
        self.assertMalformed(b"250-first\r\n550 second\r\n", "code changed")

    def test_lineTooLong(self) -> None:
        """
        A complete line longer than C{line_length_limit} is refused.
        """
        self.assertMalformed(b"250 " + b"x" * 2045 + b"\r\n", "longer than 2048")

    def test_lineLimitExact(self) -> None:
        """
        A line of exactly C{line_length_limit} bytes is fine, whether its
        CRLF comes now or later.
        """
        line = b"250 " + b"x" * 2044
        self.assertEqual(parse(line + b"\r\n"), [ServerReply(250, None, ("x" * 2044,))])
        parser = ReplyParser()
        self.assertEqual(parser.feed(line + b"\r"), [])
        self.assertEqual(len(parser.feed(b"\n")), 1)

    def test_endlessLine(self) -> None:
        """
        A line that never ends is refused as soon as it passes the limit,
        and the buffer is released: a next hop cannot make us hold an
        unbounded line.
        """
        parser = ReplyParser()
        self.assertEqual(parser.feed(b"250 " + b"x" * 2000), [])
        [event] = parser.feed(b"x" * 100)
        assert isinstance(event, MalformedReply)
        self.assertIn("longer than 2048", event.reason)
        self.assertEqual(parser.buffered(), 0)
        parser.receive(b"x" * 100000)
        self.assertEqual(parser.buffered(), 0)

    def test_tooManyLines(self) -> None:
        """
        A reply with more lines than the limit is refused, even if each line
        is short.
        """
        self.assertMalformed(b"250-x\r\n" * 5 + b"250 x\r\n", "longer than 5 lines", maxLines=5)
        self.assertEqual(
            len(ReplyParser(maxLines=5).feed(b"250-x\r\n" * 4 + b"250 x\r\n")), 1
        )

    def test_unreadFlood(self) -> None:
        """
        Bytes that pile up while nobody reads them (a server talking out of
        turn) are refused beyond C{maxBuffered}.
        """
        parser = ReplyParser(maxBuffered=100)
        parser.receive(b"250 ok\r\n" * 12)
        self.assertFalse(parser.failed)
        parser.receive(b"250 ok\r\n")
        self.assertTrue(parser.failed)
        [event] = parser.feed(b"")
        assert isinstance(event, MalformedReply)
        self.assertIn("more than 100 bytes", event.reason)

    @settings(max_examples=300)
    @given(st.binary(max_size=3000))
    def test_arbitraryBytes(self, data: bytes) -> None:
        """
        Arbitrary bytes never crash the parser, never leave more than a
        line's worth buffered, and give replies then at most one
        L{MalformedReply}.
        """
        parser = ReplyParser()
        events = parser.feed(data)
        if parser.failed:
            self.assertEqual(parser.buffered(), 0)
        else:
            # The unfinished last line is within the limit (+1 for a CR).
            self.assertLessEqual(len(data) - data.rfind(b"\n") - 1, 2049)
        malformed = [e for e in events if isinstance(e, MalformedReply)]
        self.assertLessEqual(len(malformed), 1)
        if malformed:
            self.assertIs(events[-1], malformed[0])


class DiscardTests(SynchronousTestCase):
    """
    L{ReplyParser.discardBuffered} drops what the server sent beyond the
    reply just read: the STARTTLS response-injection defense.
    """

    def test_discardAfterStartTLS(self) -> None:
        """
        C{220 ready} followed, in the same segment, by a fake C{250}: the
        220 is read, the fake reply is discarded and counted, and never
        comes out.
        """
        parser = ReplyParser()
        parser.receive(b"220 2.0.0 Ready to start TLS\r\n250 fake\r\n")
        self.assertEqual(parser.nextReply(), ServerReply(220, "2.0.0", ("Ready to start TLS",)))
        self.assertEqual(parser.discardBuffered(), 10)
        self.assertIsNone(parser.nextReply())
        self.assertEqual(parser.feed(b"250 real\r\n"), [ServerReply(250, None, ("real",))])

    def test_discardPartialMultiLine(self) -> None:
        """
        The lines of an incomplete multi-line reply are discarded too, so
        that they cannot become the start of the first reply after TLS.
        """
        parser = ReplyParser()
        parser.receive(b"220 go\r\n250-injected\r\n250-more")
        parser.nextReply()
        self.assertEqual(parser.nextReply(), None)
        self.assertEqual(parser.discardBuffered(), len(b"250-injected\r\n250-more"))
        self.assertEqual(parser.feed(b"250 real\r\n"), [ServerReply(250, None, ("real",))])

    def test_nothingToDiscard(self) -> None:
        """
        An honest server leaves nothing to discard.
        """
        parser = ReplyParser()
        parser.receive(b"220 go\r\n")
        parser.nextReply()
        self.assertEqual(parser.discardBuffered(), 0)


class EhloTests(SynchronousTestCase):
    """
    L{parseEhlo} reads the extensions a server announces.
    """

    def test_postfix(self) -> None:
        """
        Postfix's EHLO reply: keywords upper-cased, parameters kept, the
        greeting line left out.
        """
        [reply] = parse(EHLO)
        assert isinstance(reply, ServerReply)
        self.assertEqual(
            parseEhlo(reply),
            {
                "PIPELINING": "",
                "SIZE": "10240000",
                "VRFY": "",
                "ETRN": "",
                "STARTTLS": "",
                "AUTH": "PLAIN LOGIN",
                "ENHANCEDSTATUSCODES": "",
                "8BITMIME": "",
                "DSN": "",
                "SMTPUTF8": "",
                "CHUNKING": "",
            },
        )

    def test_caseAndSpacing(self) -> None:
        """
        Keywords are case-insensitive and parameters are separated by
        single spaces whatever the server used.
        """
        [reply] = parse(b"250-mx\r\n250-pipelining\r\n250-auth  LOGIN  PLAIN \r\n250 Size\r\n")
        assert isinstance(reply, ServerReply)
        self.assertEqual(
            parseEhlo(reply), {"PIPELINING": "", "AUTH": "LOGIN PLAIN", "SIZE": ""}
        )

    def test_legacyAuth(self) -> None:
        """
        The old C{AUTH=LOGIN PLAIN} form counts as C{AUTH} when there is no
        proper C{AUTH} line, and loses to one.
        """
        [reply] = parse(b"250-mx\r\n250-AUTH=LOGIN PLAIN\r\n250 8BITMIME\r\n")
        assert isinstance(reply, ServerReply)
        self.assertEqual(parseEhlo(reply), {"AUTH": "LOGIN PLAIN", "8BITMIME": ""})
        [reply] = parse(b"250-mx\r\n250-AUTH=LOGIN\r\n250 AUTH PLAIN\r\n")
        assert isinstance(reply, ServerReply)
        self.assertEqual(parseEhlo(reply), {"AUTH": "PLAIN"})

    def test_junkIgnored(self) -> None:
        """
        Lines that are not ehlo-lines, and repeats, are ignored; the first
        occurrence of a keyword wins.
        """
        [reply] = parse(
            b"250-mx\r\n250-\r\n250-SIZE 100\r\n250-SIZE 200\r\n250-?BAD\r\n250 -X\r\n"
        )
        assert isinstance(reply, ServerReply)
        self.assertEqual(parseEhlo(reply), {"SIZE": "100"})

    def test_greetingOnly(self) -> None:
        """
        A one-line EHLO reply announces nothing.
        """
        self.assertEqual(parseEhlo(ServerReply(250, None, ("mx.example.com",))), {})
