# -*- test-case-name: tests.test_smtp_replies -*-
"""
Every reply the SMTP server sends, as a named constant with Postfix 3.7's
exact text.

Code and tests refer to replies by name, never by retyping their text.
Unless marked otherwise below, each text was checked against
C{shared/reference/postfix.md} (sections 1.2, 2.1, 3, 5.2 and 9.2) and
against the format strings compiled into Debian's Postfix 3.7.11
C{/usr/lib/postfix/sbin/smtpd} and its C{libpostfix-*.so} libraries
(C{strings(1)}).  Fields in braces are filled in with L{Reply.format}.
"""

from __future__ import annotations

from typing import Sequence

from attrs import evolve, field, frozen


@frozen
class Reply:
    """
    One SMTP reply.

    @ivar code: The three-digit reply code.
    @ivar enhanced: The RFC 3463 enhanced status code, or C{""} for replies
        that have none (the greeting, C{354}).
    @ivar text: The text, possibly with C{str.format} fields in braces.
    """

    code: int
    enhanced: str
    text: str
    # The rendered line, made on the first toBytes(): constant replies go
    # out once or more per message, and rendering is most of their cost.
    # Not part of the value (equality, hash, repr); evolve() starts afresh.
    _bytes: bytes | None = field(default=None, init=False, eq=False, repr=False)

    def format(self, **fields: object) -> Reply:
        """
        Fill in the fields of the text.

        @param fields: The values, by field name.
        @return: A new reply with the fields filled in.
        @raise KeyError: If a field is missing.
        """
        # Called for most replies: construct directly, evolve() is slower.
        return Reply(self.code, self.enhanced, self.text.format(**fields))

    def formatBytes(self, **fields: object) -> bytes:
        """
        C{format(**fields).toBytes()} without the intermediate reply: for
        the replies with a field that go out once per message.

        @param fields: The values, by field name.
        @return: The line, as L{toBytes} renders it.
        @raise KeyError: If a field is missing.
        """
        prefix = f"{self.code} {self.enhanced} " if self.enhanced else f"{self.code} "
        return _encode(prefix + self.text.format(**fields)) + b"\r\n"

    def toBytes(self) -> bytes:
        """
        Render the reply as one line, C{CODE ENHANCED TEXT} and CRLF.

        Any CR or LF in the text (which can only have come from a field the
        peer supplied) becomes a space, so that a reply can never turn into
        two.

        @return: The line.
        """
        rendered = self._bytes
        if rendered is None:
            prefix = f"{self.code} {self.enhanced} " if self.enhanced else f"{self.code} "
            rendered = _encode(prefix + self.text) + b"\r\n"
            # The instance is frozen; the cache is not part of its value.
            object.__setattr__(self, "_bytes", rendered)
        return rendered


def _encode(text: str) -> bytes:
    """
    Encode reply text, neutralising line breaks.

    @param text: The text.
    @return: UTF-8 bytes (undecodable peer bytes restored as they were).
    """
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "surrogateescape")


def multiline(code: int, lines: Sequence[str]) -> bytes:
    """
    Render a multi-line reply, such as the C{EHLO} response: C{250-first},
    ..., C{250 last}.

    @param code: The reply code.
    @param lines: The texts of the lines, in order; at least one.
    @return: The reply, every line ending in CRLF.
    @raise ValueError: If C{lines} is empty.
    """
    if not lines:
        raise ValueError("a reply needs at least one line")
    last = len(lines) - 1
    return b"".join(
        _encode(f"{code}{' ' if index == last else '-'}{line}") + b"\r\n"
        for index, line in enumerate(lines)
    )


# Connection: greeting, limits and closing.
GREETING = Reply(220, "", "{banner}")  # smtpd_banner = $myhostname ESMTP $mail_name
NOT_ACCEPTING = Reply(554, "", "{myhostname} ESMTP not accepting connections")
BYE = Reply(221, "2.0.0", "Bye")
TIMEOUT = Reply(421, "4.4.2", "{myhostname} Error: timeout exceeded")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "{myhostname} Error: too many errors")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "{myhostname} Error: too many connections from {address}")
# Postfix uses the same text for the connection rate limit (anvil) as for
# the concurrency limit; only the log line differs.
CONNECTION_RATE_LIMIT = TOO_MANY_CONNECTIONS
SERVICE_UNAVAILABLE = Reply(421, "", "{myhostname} Service unavailable - try again later")
SERVER_LOCAL_ERROR = Reply(421, "4.3.0", "{myhostname} Server local error")
PIPELINING_SYNC = Reply(554, "5.5.0", "Error: SMTP protocol synchronization")

# Command parsing (postfix.md 2.1).
BAD_UTF8 = Reply(500, "5.5.2", "Error: bad UTF-8 syntax")
BAD_SYNTAX = Reply(500, "5.5.2", "Error: bad syntax")
COMMAND_NOT_RECOGNIZED = Reply(500, "5.5.2", "Error: command not recognized")
COMMAND_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Error: command not implemented")
NON_SMTP_COMMAND = Reply(221, "2.7.0", "Error: I can break rules, too. Goodbye.")

# Bare newline (postfix.md 3); the code is smtpd_forbid_bare_newline_reject_code.
BARE_LF = Reply(550, "5.5.2", "{myhostname} Error: bare <LF> received")

# HELO/EHLO.
HELO_SYNTAX = Reply(501, "", "Syntax: HELO hostname")
EHLO_SYNTAX = Reply(501, "", "Syntax: EHLO hostname")
HELO_OK = Reply(250, "", "{myhostname}")
SEND_HELO_FIRST = Reply(503, "5.5.1", "Error: send HELO/EHLO first")

# MAIL.
MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
NESTED_MAIL = Reply(503, "5.5.1", "Error: nested MAIL command")
MAIL_OK = Reply(250, "2.1.0", "Ok")
BAD_SIZE_SYNTAX = Reply(501, "5.5.4", "Bad message size syntax")
MESSAGE_SIZE_EXCEEDS_LIMIT = Reply(552, "5.3.4", "Message size exceeds fixed limit")
INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage")
UNSUPPORTED_OPTION = Reply(555, "5.5.4", "Unsupported option: {option}")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")
TOO_MUCH_MAIL = Reply(450, "4.7.1", "Error: too much mail from {address}")

# RCPT.
RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
NEED_MAIL = Reply(503, "5.5.1", "Error: need MAIL command")
RCPT_OK = Reply(250, "2.1.5", "Ok")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Error: too many recipients")
RECIPIENT_RATE_LIMIT = Reply(450, "4.7.1", "Error: too many recipients from {address}")
# defer_unauth_destination uses 454 4.7.1; reject_unauth_destination uses
# relay_domains_reject_code (554) with 5.7.1.
RELAY_DENIED_TEMPORARY = Reply(454, "4.7.1", "<{recipient}>: Relay access denied")
RELAY_DENIED = Reply(554, "5.7.1", "<{recipient}>: Relay access denied")

# DATA and BDAT.
NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "Error: no valid recipients")
DATA_SYNTAX = Reply(501, "5.5.4", "Syntax: DATA")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
QUEUED = Reply(250, "2.0.0", "Ok: queued as {queueID}")
CHUNK_OK = Reply(250, "2.0.0", "Ok: {size} bytes")
CHUNK_QUEUED = Reply(250, "2.0.0", "Ok: {size} bytes queued as {queueID}")
BDAT_SYNTAX = Reply(521, "5.5.4", "Syntax: BDAT count [LAST]")
NULL_BDAT = Reply(551, "5.7.1", "Null BDAT request")
DATA_AFTER_BDAT = Reply(503, "5.5.1", "Error: DATA after BDAT")
MAIL_AFTER_BDAT = Reply(503, "5.5.1", "Error: MAIL after BDAT")
RCPT_AFTER_BDAT = Reply(503, "5.5.1", "Error: RCPT after BDAT")
CHUNK_TOO_BIG = Reply(552, "5.3.4", "Chunk exceeds message size limit")
DISCARDED_AFTER_ERROR = Reply(551, "5.0.0", "Discarded {size} bytes after earlier error")
# After end of data, the cleanup status "message file too big" is sent as
# "552 5.3.4 Error: message file too big" (postfix.md 9.2, seen live).
MESSAGE_FILE_TOO_BIG = Reply(552, "5.3.4", "Error: message file too big")
QUEUE_FILE_WRITE_ERROR = Reply(451, "4.3.0", "Queue file write error")

# Simple commands.
OK = Reply(250, "2.0.0", "Ok")
RSET_SYNTAX = Reply(501, "5.5.4", "Syntax: RSET")
VRFY_DISABLED = Reply(502, "5.5.1", "VRFY command is disabled")
# Postfix appends " [SMTPUTF8]" when smtputf8_enable = yes (the default); the
# format string is verified, the suffix is inferred from smtpd.c.
VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY address [SMTPUTF8]")
CANNOT_VERIFY = Reply(252, "2.0.0", "{address}")
# Postfix has no HELP command: it answers COMMAND_NOT_RECOGNIZED.  This reply
# exists for mtaguard deployments that choose to answer HELP; its wording is
# mtaguard's own, not Postfix's.
HELP = Reply(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")

# STARTTLS.
READY_TO_START_TLS = Reply(220, "2.0.0", "Ready to start TLS")
STARTTLS_SYNTAX = Reply(501, "5.5.4", "Syntax: STARTTLS")
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available due to local problem")
TLS_ALREADY_ACTIVE = Reply(554, "5.5.1", "Error: TLS already active")
MUST_STARTTLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
TOO_MANY_TLS_SESSIONS = Reply(454, "4.7.0", "Error: too many new TLS sessions from {address}")

# AUTH.
AUTH_NOT_ENABLED = Reply(503, "5.5.1", "Error: authentication not enabled")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Error: already authenticated")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "Error: MAIL transaction in progress")
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism")
AUTH_CHALLENGE = Reply(334, "", "{challenge}")
AUTH_SUCCESSFUL = Reply(235, "2.7.0", "Authentication successful")
AUTH_ABORTED = Reply(501, "5.7.0", "Authentication aborted")
AUTH_FAILED = Reply(535, "5.7.8", "Error: authentication failed: {reason}")
AUTH_TEMPORARY_FAILURE = Reply(454, "4.7.0", "Temporary authentication failure: {reason}")
AUTH_RESPONSE_TOO_LONG = Reply(500, "5.5.6", "SASL response limit exceeded")
AUTH_ENCRYPTION_REQUIRED = Reply(504, "5.5.4", "Encryption required for requested authentication mechanism")
AUTH_RATE_LIMIT = Reply(450, "4.7.1", "Error: too many AUTH commands from {address}")
# The reasons Postfix's Dovecot client passes to AUTH_FAILED for undecodable
# responses (strings in libpostfix; the reply they end up in is inferred from
# smtpd_sasl_glue.c, not seen live).
REASON_BAD_INITIAL_RESPONSE = "Invalid base64 data in initial response"
REASON_BAD_CONTINUED_RESPONSE = "Invalid base64 data in continued response"


#: Every reply constant, by name, for tests and documentation.
ALL_REPLIES: dict[str, Reply] = {
    name: value for name, value in sorted(globals().items()) if isinstance(value, Reply)
}
