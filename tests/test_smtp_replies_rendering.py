"""
Tests for the cheaper renderings of L{mtaguard.smtp._replies.Reply}: the
cached C{toBytes} of a constant reply and C{formatBytes}.
"""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.smtp import _replies as replies
from mtaguard.smtp._replies import Reply


class RenderingTests(SynchronousTestCase):
    """
    Caching and direct formatting render exactly what the plain path does.
    """

    def test_cachedToBytes(self) -> None:
        """
        A reply renders the same line every time, and the cache is no part
        of its value: equality, hash and repr ignore it.
        """
        fresh = Reply(250, "2.1.0", "Ok")
        self.assertEqual(fresh.toBytes(), b"250 2.1.0 Ok\r\n")
        self.assertIs(fresh.toBytes(), fresh.toBytes())
        other = Reply(250, "2.1.0", "Ok")
        self.assertEqual(fresh, other)
        self.assertEqual(hash(fresh), hash(other))
        self.assertEqual(repr(fresh), "Reply(code=250, enhanced='2.1.0', text='Ok')")

    def test_evolveRendersAnew(self) -> None:
        """
        A reply made from a rendered one with another code renders its own
        line.
        """
        replies.MAIL_OK.toBytes()
        self.assertEqual(attrs.evolve(replies.MAIL_OK, code=450).toBytes(), b"450 2.1.0 Ok\r\n")

    def test_everyConstant(self) -> None:
        """
        Every reply without fields renders as its fields say, twice.
        """
        for name, reply in replies.ALL_REPLIES.items():
            if "{" in reply.text:
                continue
            prefix = f"{reply.code} {reply.enhanced} " if reply.enhanced else f"{reply.code} "
            expected = (prefix + reply.text).encode("utf-8") + b"\r\n"
            self.assertEqual(reply.toBytes(), expected, name)
            self.assertEqual(reply.toBytes(), expected, name)

    @given(st.text(max_size=40))
    @settings(max_examples=200, deadline=None)
    def test_formatBytes(self, queueID: str) -> None:
        """
        C{formatBytes} gives what C{format} then C{toBytes} give, with line
        breaks in a field neutralised alike.
        """
        for reply in (replies.QUEUED, replies.GREETING):
            field = "queueID" if reply is replies.QUEUED else "banner"
            self.assertEqual(
                reply.formatBytes(**{field: queueID}), reply.format(**{field: queueID}).toBytes()
            )
        self.assertEqual(
            replies.CHUNK_OK.formatBytes(size=len(queueID)),
            replies.CHUNK_OK.format(size=len(queueID)).toBytes(),
        )
