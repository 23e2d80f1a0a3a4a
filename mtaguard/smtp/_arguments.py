# -*- test-case-name: tests.test_smtp_arguments -*-
"""
Parse the arguments of C{MAIL}, C{RCPT} and C{AUTH}, with Postfix's
tolerance and its replies for what is not tolerated.

Every failure is an L{ArgumentSyntaxError} carrying the reply to send, so
that a malformed argument can never escape as an unexpected exception (as a
malformed C{AUTH PLAIN} does in the old SMTP server of the framework we
build on).
"""

from __future__ import annotations

import binascii
import re
from typing import Optional

from ._replies import (
    AUTH_ABORTED,
    AUTH_FAILED,
    BAD_RECIPIENT_SYNTAX,
    BAD_SENDER_SYNTAX,
    BAD_SIZE_SYNTAX,
    MAIL_SYNTAX,
    RCPT_SYNTAX,
    REASON_BAD_INITIAL_RESPONSE,
    UNSUPPORTED_OPTION,
    Reply,
)

Parameters = dict[str, Optional[str]]

# RFC 5321 esmtp-keyword.
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_BLANKS = " \t"
# SIZE is an off_t in Postfix; anything that does not fit is bad syntax.
_MAX_SIZE = 2**63 - 1


class ArgumentSyntaxError(ValueError):
    """
    A command argument could not be accepted.

    @ivar reply: The reply to send (fields already filled in).
    """

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.toBytes().decode("utf-8", "surrogateescape").rstrip())
        self.reply = reply


class AuthenticationAborted(ArgumentSyntaxError):
    """
    The client answered C{*}: it gave up the C{AUTH} exchange.
    """

    def __init__(self) -> None:
        super().__init__(AUTH_ABORTED)


def _splitAddress(rest: str, strict: bool, badAddress: Reply) -> tuple[str, str]:
    """
    Take the address off the front of C{rest}.

    @param rest: What follows C{FROM:} or C{TO:} and any blanks.
    @param strict: Require angle brackets (C{smtpd_strict_rfc821_envelopes}).
    @param badAddress: The reply for a malformed address.
    @return: The address (brackets removed) and the text after it.
    """
    if not rest.startswith("<"):
        if strict:
            raise ArgumentSyntaxError(badAddress)
        end = len(rest)
        for index, char in enumerate(rest):
            if char in _BLANKS:
                end = index
                break
        address = rest[:end]
        if "<" in address or ">" in address:
            raise ArgumentSyntaxError(badAddress)
        return address, rest[end:]
    # Find the closing bracket, skipping quoted local parts such as
    # <"a>b"@example.com>.  Nearly every address has no quotes or
    # backslashes, and then the first ">" closes it.
    quoted = False
    escaped = False
    if '"' not in rest and "\\" not in rest:
        index = rest.find(">")
        if index == -1:
            raise ArgumentSyntaxError(badAddress)
        rangeStart = len(rest)
    else:
        rangeStart = 1
    for index in range(rangeStart, len(rest)):
        char = rest[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            break
    else:
        if rangeStart == 1:
            raise ArgumentSyntaxError(badAddress)
    address = rest[1:index]
    after = rest[index + 1 :]
    if after and after[0] not in _BLANKS:
        raise ArgumentSyntaxError(badAddress)
    if address.startswith("@"):
        # An obsolete source route, <@relay1,@relay2:user@example.com>: the
        # address is what follows the colon, as RFC 5321 C.2 allows.
        colon = address.find(":")
        if colon == -1:
            raise ArgumentSyntaxError(badAddress)
        address = address[colon + 1 :]
    return address, after


def _parseParameters(text: str) -> Parameters:
    """
    Parse C{KEYWORD[=VALUE]} ESMTP parameters separated by blanks.

    @param text: The parameters.
    @return: Upper-cased keywords mapped to their values (C{None} when
        there is no C{=}); a repeated keyword keeps its last value.
    """
    parameters: Parameters = {}
    for token in text.split():
        keyword, equals, value = token.partition("=")
        if not _KEYWORD.match(keyword):
            raise ArgumentSyntaxError(UNSUPPORTED_OPTION.format(option=token))
        parameters[keyword.upper()] = value if equals else None
    return parameters


def _parsePath(
    argument: str, prefix: str, syntax: Reply, badAddress: Reply, strict: bool
) -> tuple[str, Parameters]:
    if argument[: len(prefix)].upper() != prefix:
        raise ArgumentSyntaxError(syntax)
    rest = argument[len(prefix) :].lstrip(_BLANKS)
    if not rest:
        raise ArgumentSyntaxError(syntax)
    address, after = _splitAddress(rest, strict, badAddress)
    return address, _parseParameters(after)


def parseMailFrom(argument: str, *, strict: bool = False) -> tuple[str, Parameters]:
    """
    Parse the argument of C{MAIL}: C{FROM:<address> [parameters]}.

    As in Postfix, C{FROM:} is case-insensitive, blanks may follow the
    colon, and unless C{strict} the address may come without angle
    brackets.

    @param argument: L{Command.argument<mtaguard.smtp.Command.argument>}.
    @param strict: Postfix's C{smtpd_strict_rfc821_envelopes}.
    @return: The address without brackets (C{""} for the null sender
        C{<>}) and the ESMTP parameters.
    @raise ArgumentSyntaxError: With C{501 5.5.4 Syntax: MAIL
        FROM:<address>}, C{501 5.1.7 Bad sender address syntax} or C{555
        5.5.4 Unsupported option: ...}.
    """
    return _parsePath(argument, "FROM:", MAIL_SYNTAX, BAD_SENDER_SYNTAX, strict)


def parseRcptTo(argument: str, *, strict: bool = False) -> tuple[str, Parameters]:
    """
    Parse the argument of C{RCPT}: C{TO:<address> [parameters]}, with the
    same tolerance as L{parseMailFrom}.  An empty recipient is refused.

    @param argument: L{Command.argument<mtaguard.smtp.Command.argument>}.
    @param strict: Postfix's C{smtpd_strict_rfc821_envelopes}.
    @return: The address without brackets and the ESMTP parameters.
    @raise ArgumentSyntaxError: With C{501 5.5.4 Syntax: RCPT
        TO:<address>}, C{501 5.1.3 Bad recipient address syntax} or C{555
        5.5.4 Unsupported option: ...}.
    """
    address, parameters = _parsePath(
        argument, "TO:", RCPT_SYNTAX, BAD_RECIPIENT_SYNTAX, strict
    )
    if not address:
        raise ArgumentSyntaxError(BAD_RECIPIENT_SYNTAX)
    return address, parameters


def validateSize(value: Optional[str]) -> int:
    """
    Check the value of the C{SIZE} parameter.

    @param value: The value (C{None} for a bare C{SIZE}).
    @return: The declared size.
    @raise ArgumentSyntaxError: With C{501 5.5.4 Bad message size syntax}
        unless the value is all ASCII digits and fits an C{off_t}.
    """
    if not value or not (value.isascii() and value.isdigit()):
        raise ArgumentSyntaxError(BAD_SIZE_SYNTAX)
    size = int(value)
    if size > _MAX_SIZE:
        raise ArgumentSyntaxError(BAD_SIZE_SYNTAX)
    return size


def validateBody(value: Optional[str], *, allowBinary: bool = False) -> str:
    """
    Check the value of the C{BODY} parameter.

    @param value: The value.
    @param allowBinary: Accept C{BINARYMIME} (Postfix does not).
    @return: C{"7BIT"}, C{"8BITMIME"} or C{"BINARYMIME"}.
    @raise ArgumentSyntaxError: With C{555 5.5.4 Unsupported option:
        BODY=...}, as Postfix answers.
    """
    body = (value or "").upper()
    if body in ("7BIT", "8BITMIME") or (allowBinary and body == "BINARYMIME"):
        return body
    option = "BODY" if value is None else f"BODY={value}"
    raise ArgumentSyntaxError(UNSUPPORTED_OPTION.format(option=option))


def validateSmtpUtf8(value: Optional[str]) -> bool:
    """
    Check the C{SMTPUTF8} parameter, a flag without value.

    @param value: The value.
    @return: C{True}.
    @raise ArgumentSyntaxError: With C{555 5.5.4 Unsupported option:
        SMTPUTF8=...} if it has a value.
    """
    if value is not None:
        raise ArgumentSyntaxError(UNSUPPORTED_OPTION.format(option=f"SMTPUTF8={value}"))
    return True


def _authFailure() -> ArgumentSyntaxError:
    return ArgumentSyntaxError(AUTH_FAILED.format(reason=REASON_BAD_INITIAL_RESPONSE))


def decodeResponse(response: str) -> bytes:
    """
    Decode a base64 SASL response (an initial response or an answer to a
    C{334} challenge).

    @param response: The client's text: base64, C{"="} for an empty
        response, or C{"*"} to cancel.
    @return: The decoded bytes.
    @raise AuthenticationAborted: For C{"*"}.
    @raise ArgumentSyntaxError: With C{535 5.7.8 Error: authentication
        failed: Invalid base64 data in initial response} for anything that
        is not strictly valid base64.
    """
    response = response.strip()
    if response == "*":
        raise AuthenticationAborted()
    if response == "=":
        return b""
    if not response.isascii():
        raise _authFailure()
    try:
        return binascii.a2b_base64(response.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError):
        raise _authFailure() from None


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _authFailure() from None


def decodePlain(b64: str) -> tuple[str, str, str]:
    """
    Decode an C{AUTH PLAIN} response (RFC 4616): C{[authzid] NUL authcid NUL
    password}, base64-encoded.

    @param b64: The response.
    @return: C{(authzid, authcid, password)}; C{authzid} is C{""} when the
        client did not ask to act as someone else.
    @raise ArgumentSyntaxError: For bad base64, bad UTF-8, a wrong number
        of fields or an empty user name or password (or
        L{AuthenticationAborted} for C{"*"}).
    """
    fields = decodeResponse(b64).split(b"\0")
    if len(fields) != 3 or not fields[1] or not fields[2]:
        raise _authFailure()
    authzid, authcid, password = (_text(field) for field in fields)
    return authzid, authcid, password


def decodeLogin(b64: str) -> str:
    """
    Decode one C{AUTH LOGIN} response (the user name or the password).

    @param b64: The response.
    @return: The decoded text.
    @raise ArgumentSyntaxError: For bad base64 or bad UTF-8 (or
        L{AuthenticationAborted} for C{"*"}).
    """
    return _text(decodeResponse(b64))
