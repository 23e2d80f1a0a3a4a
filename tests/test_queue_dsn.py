"""
Tests for L{mtaguard.queue._dsn}: RFC 3464 delivery status notifications.
"""

from __future__ import annotations

import email
import email.policy

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.queue._dsn import FailedRecipient, buildBounce

ORIGINAL = b"Subject: hello\r\nFrom: a@c.example\r\n\r\nbody line\r\n"


def bounce(**kw: object) -> bytes:
    arguments: dict[str, object] = dict(
        myhostname="mx.example.org",
        queueID="4jZY1d0Hgkz1",
        sender="a@c.example",
        arrival=0.0,
        now=3600.0,
        failures=[
            FailedRecipient("x@remote.example", "5.1.1", "550 5.1.1 <x@remote.example>: no such user",
                            "mx.remote.example"),
            FailedRecipient("y@slow.example", "4.4.7", "message expired after 5 days"),
        ],
        original=ORIGINAL,
        sizeLimit=50000,
        boundary="4jZY1d0Hgkz1.3600/mx.example.org",
    )
    arguments.update(kw)
    return buildBounce(**arguments)  # type: ignore[arg-type]


class BounceTests(SynchronousTestCase):
    """
    The notification is a well-formed multipart/report.
    """

    def test_structure(self) -> None:
        """
        Three parts: text, message/delivery-status with one block per
        recipient, and the returned message.
        """
        message = email.message_from_bytes(bounce(), policy=email.policy.default)
        self.assertEqual(str(message["To"]), "a@c.example")
        self.assertEqual(message.get_content_type(), "multipart/report")
        self.assertEqual(message.get_param("report-type"), "delivery-status")
        parts = list(message.iter_parts())
        self.assertEqual(
            [part.get_content_type() for part in parts],
            ["text/plain", "message/delivery-status", "message/rfc822"],
        )
        self.assertIn("<x@remote.example>: 550 5.1.1", parts[0].get_content())
        status = bounce().decode()
        self.assertIn("Final-Recipient: rfc822; x@remote.example\r\nAction: failed\r\nStatus: 5.1.1", status)
        self.assertIn("Remote-MTA: dns; mx.remote.example", status)
        self.assertIn("Diagnostic-Code: X-mtaguard; message expired after 5 days", status)

    def test_headersOnlyWhenLarge(self) -> None:
        """
        A message larger than bounce_size_limit comes back as its headers
        only.
        """
        data = bounce(sizeLimit=10)
        self.assertIn(b"Content-Type: text/rfc822-headers", data)
        self.assertNotIn(b"body line", data)

    def test_lineEndings(self) -> None:
        """
        Every line ends in CRLF, and a remote server's text cannot add
        header lines.
        """
        data = bounce(
            failures=[FailedRecipient("x@r.example", "5.0.0", "550 bad\r\nX-Injected: yes", "mx")]
        )
        self.assertNotIn(b"\r\nX-Injected", data)
        self.assertNotIn(b"\n", data.replace(b"\r\n", b""))

    @given(st.text(min_size=1, max_size=200))
    def test_anyDiagnostic(self, text: str) -> None:
        """
        Whatever a server said, the notification parses and keeps its three
        parts.
        """
        data = bounce(failures=[FailedRecipient("x@r.example", "5.0.0", text, "mx")])
        message = email.message_from_bytes(data, policy=email.policy.default)
        self.assertEqual(len(list(message.iter_parts())), 3)
