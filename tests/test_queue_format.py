"""
Tests for L{mtaguard.queue._format}: the version-1 queue file format.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.queue import Envelope, QueueFormatError, RecipientStatus, encodeQueueFile, parseQueueFile
from mtaguard.queue._format import SIZE_PLACEHOLDER, encodeHeader, parseHeader

# Any text, including controls, spaces, '%', '=', non-ASCII (SMTPUTF8) and
# the lone surrogates that surrogateescape decoding of 8-bit bytes yields.
anyText = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.text(
    st.sampled_from("a@b.ü%= \r\n\t\x00\udc80\udcff"), max_size=20
)

envelopes = st.builds(
    Envelope,
    sender=anyText,
    recipients=st.lists(anyText, min_size=1, max_size=5).map(tuple),
    parameters=st.lists(st.tuples(anyText, st.none() | anyText), max_size=4).map(tuple),
    clientAddress=anyText,
    clientPort=st.integers(min_value=-(2**70), max_value=2**70),
    clientName=anyText,
    helo=anyText,
    protocol=anyText,
    tls=st.booleans(),
    authUser=st.none() | anyText,
    arrival=st.floats(allow_nan=False),
)

queueIDs = st.text("0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz", min_size=1, max_size=20)


class RoundTripTests(SynchronousTestCase):
    """
    Every envelope and content survive writing and reading.
    """

    @given(queueIDs, envelopes, st.binary(max_size=300))
    def test_roundTrip(self, queueID: str, envelope: Envelope, content: bytes) -> None:
        """
        Parsing an encoded queue file gives back the queue ID, the envelope,
        the content, and every recipient pending.
        """
        queued = parseQueueFile(encodeQueueFile(queueID, envelope, content))
        self.assertEqual(queued.header.queueID, queueID)
        self.assertEqual(queued.header.envelope, envelope)
        self.assertEqual(queued.content, content)
        self.assertEqual(
            [r.status for r in queued.header.recipients],
            [RecipientStatus.PENDING] * len(envelope.recipients),
        )

    @given(queueIDs, envelopes, st.binary(max_size=300))
    def test_committedHeader(self, queueID: str, envelope: Envelope, content: bytes) -> None:
        """
        The header the store hands a delivery agent at commit, without
        reading the file, is the one reading the file gives.
        """
        encoded = encodeHeader(queueID, envelope)
        self.assertEqual(
            encoded.committedHeader(queueID, envelope, len(content)),
            parseQueueFile(encodeQueueFile(queueID, envelope, content)).header,
        )

    @given(queueIDs, envelopes, st.binary(max_size=50), st.data())
    def test_statusRewrittenInPlace(self, queueID: str, envelope: Envelope, content: bytes, data: st.DataObject) -> None:
        """
        Writing a status byte at a recipient's C{statusOffset} changes that
        recipient's status and nothing else.
        """
        raw = bytearray(encodeQueueFile(queueID, envelope, content))
        header = parseQueueFile(bytes(raw)).header
        index = data.draw(st.integers(0, len(header.recipients) - 1))
        status = data.draw(st.sampled_from(RecipientStatus))
        offset = header.recipients[index].statusOffset
        raw[offset : offset + 1] = status.value
        changed = parseQueueFile(bytes(raw))
        self.assertEqual(changed.header.recipients[index].status, status)
        self.assertEqual(changed.header.envelope, envelope)
        self.assertEqual(changed.content, content)
        self.assertEqual(
            [r.status for i, r in enumerate(changed.header.recipients) if i != index],
            [r.status for i, r in enumerate(header.recipients) if i != index],
        )

    @given(st.binary(max_size=200))
    def test_garbageNeverCrashes(self, data: bytes) -> None:
        """
        Arbitrary bytes are either a queue file or a L{QueueFormatError}.
        """
        try:
            parseQueueFile(data)
        except QueueFormatError:
            pass


class FormatTests(SynchronousTestCase):
    """
    The details of the on-disk text.
    """

    envelope = Envelope(
        sender="jöe@exämple.org",
        recipients=("a b@x", "ü@ß"),
        parameters=(("SMTPUTF8", None), ("ENVID", "")),
        clientAddress="2001:db8::1",
        clientPort=25,
        clientName="unknown",
        helo="[2001:db8::1]",
        protocol="ESMTP",
        tls=True,
        authUser="",
        arrival=1.5,
    )

    def test_golden(self) -> None:
        """
        The header is readable text: UTF-8 kept, space and C{%} escaped, an
        empty parameter value distinct from none.
        """
        header = encodeHeader("4dFVrw1s5xz1", self.envelope)
        self.assertEqual(
            header.data.decode("utf-8"),
            "MTAGUARD-QUEUE 1\n"
            "queue_id 4dFVrw1s5xz1\n"
            "size --------------------\n"
            "arrival 1.5\n"
            "sender jöe@exämple.org\n"
            "parameter SMTPUTF8\n"
            "parameter ENVID=\n"
            "client_address 2001:db8::1\n"
            "client_port 25\n"
            "client_name unknown\n"
            "helo [2001:db8::1]\n"
            "protocol ESMTP\n"
            "tls yes\n"
            "auth_user \n"
            "recipient P a%20b@x\n"
            "recipient P ü@ß\n"
            "\n",
        )
        self.assertEqual(header.data[header.sizeOffset : header.sizeOffset + 20], SIZE_PLACEHOLDER)

    def test_uncommittedRefused(self) -> None:
        """
        A header whose size is still the placeholder was never committed.
        """
        header = encodeHeader("4dFVrw1s5xz1", self.envelope)
        error = self.assertRaises(QueueFormatError, parseHeader, header.data)
        self.assertIn("never committed", str(error))

    def test_truncatedRefused(self) -> None:
        """
        A file shorter than its size field says is refused.
        """
        data = encodeQueueFile("4dFVrw1s5xz1", self.envelope, b"content\r\n")
        self.assertRaises(QueueFormatError, parseQueueFile, data[:-1])

    def test_otherVersionRefused(self) -> None:
        """
        A file of another version is refused with a message naming it.
        """
        data = encodeQueueFile("4dFVrw1s5xz1", self.envelope, b"")
        error = self.assertRaises(QueueFormatError, parseQueueFile, data.replace(b"QUEUE 1", b"QUEUE 2", 1))
        self.assertIn("version", str(error))
