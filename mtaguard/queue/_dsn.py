# -*- test-case-name: tests.test_queue_dsn -*-
"""
Delivery status notifications (RFC 3464), sans I/O.

When recipients of a message bounce (a 5xx reply, or the queue lifetime
ran out), the sender gets a C{multipart/report} message: a short
explanation for people, a machine-readable C{message/delivery-status}
part with one block per failed recipient, and the returned message (whole
when it fits in C{bounce_size_limit}, its headers only otherwise).
"""

from __future__ import annotations

import time
from typing import Sequence

import attr


@attr.s(frozen=True, slots=True, auto_attribs=True)
class FailedRecipient:
    """
    One recipient to report.

    @ivar address: the recipient address.
    @ivar status: the enhanced status code, e.g. C{5.1.1}.
    @ivar diagnostic: what the remote server said (its reply text) or why
        mtaguard gave up.
    @ivar remoteMTA: the host that answered, if any.
    @ivar action: C{failed} (a bounce) or C{delayed} (a delay warning).
    """

    address: str
    status: str
    diagnostic: str
    remoteMTA: str | None = None
    action: str = "failed"


def _rfc5322Date(seconds: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000 (UTC)", time.gmtime(seconds))


def _clean(text: str) -> str:
    """
    One header-safe line: no CR or LF can come from a remote server's text.
    """
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def _headersOf(content: bytes) -> bytes:
    end = content.find(b"\r\n\r\n")
    if end == -1:
        return content if content.endswith(b"\r\n") else content + b"\r\n"
    return content[: end + 2]


def buildBounce(
    *,
    myhostname: str,
    queueID: str,
    sender: str,
    arrival: float,
    now: float,
    failures: Sequence[FailedRecipient],
    original: bytes,
    sizeLimit: int,
    boundary: str,
) -> bytes:
    """
    The notification for C{sender} about C{failures}, with CRLF line
    endings, ready to be queued with the null sender.

    @param original: the queued message content (headers and body).
    @param sizeLimit: C{bounce_size_limit}: the whole original is returned
        only if it is no larger than this; otherwise only its headers.
    @param boundary: the MIME boundary (unique per notification; the caller
        derives it from the queue ID and the time).
    """
    delayed = all(failure.action == "delayed" for failure in failures)
    subject = (
        "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    )
    lines = [
        f"From: MAILER-DAEMON@{myhostname} (Mail Delivery System)",
        f"To: <{sender}>",
        f"Subject: {subject}",
        f"Date: {_rfc5322Date(now)}",
        f"Message-Id: <{queueID}.{int(now)}.dsn@{myhostname}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "Content-Transfer-Encoding: 8bit",
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"This is mtaguard, the mail system at {myhostname}.",
        "",
    ]
    if delayed:
        lines += [
            "Your message could not be delivered yet to the recipients below.",
            "The mail system keeps trying; you need not send it again.",
        ]
    else:
        lines += [
            "Your message could not be delivered to the recipients below, and",
            "the mail system has given up on them.",
        ]
    lines.append("")
    for failure in failures:
        lines.append(f"<{failure.address}>: {_clean(failure.diagnostic)}")
    lines += [
        "",
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {myhostname}",
        f"X-Postfix-Queue-ID: {queueID}",
        f"X-Postfix-Sender: rfc822; {sender}",
        f"Arrival-Date: {_rfc5322Date(arrival)}",
    ]
    for failure in failures:
        lines += [
            "",
            f"Final-Recipient: rfc822; {failure.address}",
            f"Action: {failure.action}",
            f"Status: {failure.status}",
        ]
        if failure.remoteMTA:
            lines.append(f"Remote-MTA: dns; {failure.remoteMTA}")
            lines.append(f"Diagnostic-Code: smtp; {_clean(failure.diagnostic)}")
        else:
            lines.append(f"Diagnostic-Code: X-mtaguard; {_clean(failure.diagnostic)}")
    lines += ["", f"--{boundary}"]
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n"
    if len(original) <= sizeLimit:
        returned = (
            b"Content-Description: Undelivered Message\r\n"
            b"Content-Type: message/rfc822\r\n\r\n" + original
        )
    else:
        returned = (
            b"Content-Description: Undelivered Message Headers\r\n"
            b"Content-Type: text/rfc822-headers\r\n\r\n" + _headersOf(original)
        )
    if not returned.endswith(b"\r\n"):
        returned += b"\r\n"
    return head + returned + f"\r\n--{boundary}--\r\n".encode("ascii")
