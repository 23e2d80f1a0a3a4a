"""
Tests for L{mtaguard.queue._headers}: the Message-ID lines of Postfix's
cleanup, whatever the pieces the content arrives in.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.queue._headers import HEADER_LIMIT, MessageIDScanner


def scan(content: bytes, cuts: list[int] = []) -> list[tuple[str, bytes]]:
    """
    What the scanner reports for C{content} fed in pieces cut at C{cuts};
    it must report exactly once.
    """
    scanner = MessageIDScanner()
    reports = []
    start = 0
    for cut in sorted(set(cuts)) + [len(content)]:
        result = scanner.feed(content[start:cut]) if cut > start else None
        if result is not None:
            reports.append(result)
        start = max(start, cut)
    result = scanner.end()
    if result is not None:
        reports.append(result)
    assert len(reports) == 1, reports
    return reports[0]


class PostfixCasesTests(SynchronousTestCase):
    """
    The cases checked against a private Postfix 3.7 (what its cleanup
    logged is the expected value).
    """

    def test_plain(self) -> None:
        self.assertEqual(
            scan(b"Subject: one\r\nMessage-ID: <abc.123@example.org>\r\n\r\nbody\r\n"),
            [("message-id", b"<abc.123@example.org>")],
        )

    def test_spacesKeptAtTheEnd(self) -> None:
        """
        Leading white space goes, trailing white space stays; the name's
        case does not matter.
        """
        self.assertEqual(
            scan(b"Subject: two\r\nmessage-id:   <folded@example.org>  \r\n\r\nbody\r\n"),
            [("message-id", b"<folded@example.org>  ")],
        )

    def test_folded(self) -> None:
        self.assertEqual(
            scan(b"Subject: three\r\nMessage-Id:\r\n <cont@example.org>\r\n\r\nbody\r\n"),
            [("message-id", b"<cont@example.org>")],
        )

    def test_missing(self) -> None:
        self.assertEqual(scan(b"Subject: four (none)\r\n\r\nbody\r\n"), [("message-id", b"<>")])

    def test_notBracketed(self) -> None:
        self.assertEqual(
            scan(b"Subject: five\r\nMessage-ID: not-bracketed\r\n\r\nbody\r\n"),
            [("message-id", b"not-bracketed")],
        )

    def test_twice(self) -> None:
        self.assertEqual(
            scan(b"Subject: six\r\nMessage-ID: <a@x>\r\nMessage-ID: <b@x>\r\n\r\nbody\r\n"),
            [("message-id", b"<a@x>"), ("message-id", b"<b@x>")],
        )


class HeaderSectionTests(SynchronousTestCase):
    """
    Only the primary header section counts, and its end is found.
    """

    def test_bodyNotLookedAt(self) -> None:
        """
        A Message-ID in the body (a forwarded message) is not the message's.
        """
        self.assertEqual(
            scan(b"Subject: fwd\r\n\r\nMessage-ID: <inner@x>\r\n"), [("message-id", b"<>")]
        )

    def test_firstNonHeaderLineEnds(self) -> None:
        """
        Without an empty line, the first line that is not a header starts
        the body.
        """
        self.assertEqual(scan(b"Subject: x\r\nnot a header\r\nMessage-ID: <late@x>\r\n"), [("message-id", b"<>")])

    def test_resent(self) -> None:
        """
        Resent-Message-ID is logged under its own name, and the missing
        Message-ID still is.
        """
        self.assertEqual(
            scan(b"Resent-Message-ID: <r@x>\r\nSubject: x\r\n\r\n"),
            [("resent-message-id", b"<r@x>"), ("message-id", b"<>")],
        )

    def test_headerOnly(self) -> None:
        """
        Content that ends inside its header section is reported at its end.
        """
        self.assertEqual(scan(b"Message-ID: <only@x>\r\n"), [("message-id", b"<only@x>")])
        self.assertEqual(scan(b""), [("message-id", b"<>")])

    def test_bounded(self) -> None:
        """
        A header section longer than Postfix's header_size_limit is cut
        there: what follows is not buffered or looked at.
        """
        long = b"X-Long: " + b"a" * HEADER_LIMIT + b"\r\nMessage-ID: <after@x>\r\n\r\n"
        scanner = MessageIDScanner()
        self.assertIsNotNone(scanner.feed(long[: HEADER_LIMIT + 10]))
        self.assertIsNone(scanner.feed(long[HEADER_LIMIT + 10 :]))
        self.assertEqual(scan(long), [("message-id", b"<>")])

    @settings(max_examples=300, deadline=None)
    @given(
        headers=st.lists(
            st.sampled_from(
                [
                    b"Subject: hello\r\n",
                    b"Message-ID: <one@example.org>\r\n",
                    b"message-id:\r\n\t<two@example.org> \r\n",
                    b"Received: from a\r\n\tby b\r\n",
                    b"Resent-Message-Id: <r@x>\r\n",
                    b"X-Empty:\r\n",
                ]
            ),
            max_size=6,
        ),
        body=st.sampled_from([b"", b"\r\nbody\r\n", b"\r\nMessage-ID: <body@x>\r\n", b"\r\n"]),
        cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
    )
    def test_piecesDoNotMatter(self, headers: list[bytes], body: bytes, cuts: list[int]) -> None:
        """
        The report does not depend on how the content is cut.
        """
        content = b"".join(headers) + body
        self.assertEqual(scan(content, cuts), scan(content))
        expected = [
            ("message-id" if h.lower().startswith(b"message-id") else "resent-message-id", value)
            for h in headers
            for value in [h.split(b":", 1)[1].replace(b"\r\n", b"").lstrip(b" \t")]
            if h.lower().startswith((b"message-id", b"resent-message-id"))
        ]
        if not any(name == "message-id" for name, _ in expected):
            expected.append(("message-id", b"<>"))
        self.assertEqual(scan(content), expected)
