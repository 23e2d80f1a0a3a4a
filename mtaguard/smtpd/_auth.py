# -*- test-case-name: tests.test_smtpd_auth -*-
"""
SMTP AUTH (RFC 4954) for the server: the C{PLAIN} and C{LOGIN} dialogues
as a sans-I/O exchange, and the twisted.cred side that checks what they
produce against a password file.

The protocol drives one L{AuthExchange} per C{AUTH} command::

    exchange = AuthExchange(mechanism, initialResponse, responseLimit=limit)
    step = exchange.start()              # may raise ArgumentSyntaxError
    while isinstance(step, Challenge):
        send(step.reply)
        step = exchange.respond(nextLine) # may raise ArgumentSyntaxError
    authenticate(portal, step)            # Deferred: user name or failure

Every way a client can get the dialogue wrong ends in an
L{ArgumentSyntaxError} carrying the reply to send, never in an unexpected
exception (a malformed C{AUTH PLAIN} escapes C{twisted.mail.smtp}).
L{logExchangeError} and L{failureReply} write Postfix's log lines, whose
shape fail2ban's C{postfix[mode=auth]} filter depends on.

Password file format (C{mtaguard_sasl_password_file}), one account a line::

    # comments and blank lines are ignored
    alice:$scrypt$ln=14,r=8,p=5$<salt>$<key>
    bob:{PLAIN}correct horse battery staple

C{$scrypt$} entries are produced by L{hashPassword} (and the
C{mtaguard-passwd} command): C{ln} is log2 of scrypt's cost N, C{r} the
block size and C{p} the parallelism, C{salt} and C{key} are standard
base64 without padding (16 and 32 bytes).  C{{PLAIN}} marks a password
stored in clear text; any other value can never match, so a line pasted
from another system fails closed instead of being taken as a clear-text
password.  The user name is everything before the first colon.
"""

from __future__ import annotations

import argparse
import binascii
import getpass
import hashlib
import os
import re
import sys
import tempfile
from base64 import b64encode
from hmac import compare_digest
from typing import Callable, Optional, Sequence, TextIO, TypeVar, Union

from attrs import field, frozen
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from ..smtp._arguments import (
    ArgumentSyntaxError,
    AuthenticationAborted,
    decodeLogin,
    decodePlain,
)
from ..smtp._escape import escapeForLog
from ..smtp._replies import (
    AUTH_CHALLENGE,
    AUTH_FAILED,
    AUTH_RESPONSE_TOO_LONG,
    AUTH_TEMPORARY_FAILURE,
    REASON_BAD_CONTINUED_RESPONSE,
    REASON_BAD_INITIAL_RESPONSE,
    Reply,
)

__all__ = [
    "MECHANISMS",
    "AuthExchange",
    "AuthenticationFailed",
    "Challenge",
    "Credentials",
    "IAuthenticatedUser",
    "PasswordFileChecker",
    "PasswordFileError",
    "authenticate",
    "failureReply",
    "hashPassword",
    "logExchangeError",
    "main",
    "passwordFilePortal",
    "verifyPassword",
]

log = Logger(namespace="mtaguard.smtpd")
_T = TypeVar("_T")

#: The mechanisms offered, in the order of the EHLO C{AUTH} keyword.
MECHANISMS = ("PLAIN", "LOGIN")

# Reasons, with the wording of Postfix's SASL back ends: Cyrus SASL's
# sasl_errstring() for a refused password or authorization identity, the
# Dovecot client's text for an unknown mechanism (which fail2ban's
# mdre-auth deliberately does not count as an attack).
REASON_AUTHENTICATION_FAILURE = "authentication failure"
REASON_AUTHORIZATION_FAILURE = "authorization failure"
REASON_INVALID_MECHANISM = "Invalid authentication mechanism"
REASON_BACKEND_ERROR = "Authentication backend error"

# "Username:" and "Password:", the de-facto LOGIN challenges every client
# expects (draft-murchison-sasl-login).
_USERNAME_CHALLENGE = AUTH_CHALLENGE.format(challenge="VXNlcm5hbWU6")
_PASSWORD_CHALLENGE = AUTH_CHALLENGE.format(challenge="UGFzc3dvcmQ6")
# PLAIN without an initial response gets an empty challenge: "334 ".
_EMPTY_CHALLENGE = AUTH_CHALLENGE.format(challenge="")


class AuthenticationFailed(ArgumentSyntaxError):
    """
    The exchange failed in a way Postfix logs as C{SASL <mechanism>
    authentication failed}: the reply is C{535 5.7.8 Error: authentication
    failed: <reason>}.

    @ivar reason: The reason, as in the reply and the log line.
    @ivar username: The user name the client gave, if it got that far.
    """

    def __init__(self, reason: str, username: Optional[str] = None) -> None:
        super().__init__(AUTH_FAILED.format(reason=reason))
        self.reason = reason
        self.username = username


@frozen
class Challenge:
    """
    A C{334} challenge to send; the client's next line goes to
    L{AuthExchange.respond}.

    @ivar reply: The reply.
    """

    reply: Reply


@frozen
class Credentials:
    """
    What a finished exchange yields, to be checked with L{authenticate}.

    @ivar authzid: The authorization identity: C{""} or equal to
        C{username} (anything else was refused during the exchange).
    @ivar username: The authentication identity.
    @ivar password: The password; kept out of C{repr} so that it cannot
        end up in a log or a traceback.
    """

    authzid: str
    username: str
    password: str = field(repr=False)


class AuthExchange:
    """
    One AUTH command's dialogue: PLAIN (with or without initial response)
    and LOGIN (with or without the user name as initial response).

    @ivar mechanism: The mechanism, upper-cased.
    """

    def __init__(
        self, mechanism: str, initialResponse: Optional[str], *, responseLimit: int
    ) -> None:
        """
        @param mechanism: The first argument of C{AUTH} (any case).
        @param initialResponse: The second argument, or C{None} if there was
            none (C{"="} is an empty initial response, not a missing one).
        @param responseLimit: C{smtpd_sasl_response_limit}: the longest
            response line accepted, in bytes without the line ending.
        @raise AuthenticationFailed: For an unknown mechanism
            (C{Invalid authentication mechanism}, as Postfix with Dovecot).
        """
        self.mechanism = mechanism.upper()
        self._responseLimit = responseLimit
        self._initial = initialResponse
        self._username: Optional[str] = None
        # The step that the next client line answers; None once finished.
        self._next: Optional[Callable[[str, str], Union[Challenge, Credentials]]] = None
        self._started = False
        if self.mechanism not in MECHANISMS:
            raise AuthenticationFailed(REASON_INVALID_MECHANISM)

    def start(self) -> Union[Challenge, Credentials]:
        """
        Take the first step.

        @return: A challenge to send, or the credentials when the initial
            response held all of them.
        @raise ArgumentSyntaxError: L{AuthenticationFailed} for a malformed
            initial response, L{AuthenticationAborted} for C{"*"}, or
            C{500 5.5.6 SASL response limit exceeded}.
        """
        if self._started:
            raise RuntimeError("AuthExchange.start() called twice")
        self._started = True
        initial = self._initial
        if self.mechanism == "PLAIN":
            if initial is None:
                self._next = self._plain
                return Challenge(_EMPTY_CHALLENGE)
            return self._step(self._plain, initial, REASON_BAD_INITIAL_RESPONSE)
        if initial is None:
            self._next = self._loginUsername
            return Challenge(_USERNAME_CHALLENGE)
        return self._step(self._loginUsername, initial, REASON_BAD_INITIAL_RESPONSE)

    def respond(self, line: bytes) -> Union[Challenge, Credentials]:
        """
        Take the client's answer to the last challenge.

        @param line: The line, with or without its line ending.
        @return: The next challenge, or the credentials.
        @raise ArgumentSyntaxError: L{AuthenticationFailed} for a malformed
            response, L{AuthenticationAborted} for C{"*"}, or C{500 5.5.6
            SASL response limit exceeded}.
        @raise RuntimeError: If no challenge is outstanding (a bug in the
            caller, not something a client can cause).
        """
        step = self._next
        if step is None:
            raise RuntimeError("no AUTH challenge is outstanding")
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        # surrogateescape keeps any byte; decodeResponse refuses non-ASCII.
        text = line.decode("utf-8", "surrogateescape")
        return self._step(step, text, REASON_BAD_CONTINUED_RESPONSE)

    def _step(
        self,
        step: Callable[[str, str], Union[Challenge, Credentials]],
        text: str,
        reason: str,
    ) -> Union[Challenge, Credentials]:
        # Whatever happens the exchange is over unless the step sets a new
        # _next: a failed exchange can never be continued.
        self._next = None
        if len(text.encode("utf-8", "surrogateescape")) > self._responseLimit:
            raise ArgumentSyntaxError(AUTH_RESPONSE_TOO_LONG)
        return step(text, reason)

    def _decoded(self, decoder: Callable[[str], _T], text: str, reason: str) -> _T:
        # decodePlain/decodeLogin always name the initial response; an
        # answer to a challenge gets Postfix's "continued response" text.
        try:
            return decoder(text)
        except AuthenticationAborted:
            raise
        except ArgumentSyntaxError:
            raise AuthenticationFailed(reason, self._username) from None

    def _plain(self, text: str, reason: str) -> Union[Challenge, Credentials]:
        authzid, username, password = self._decoded(decodePlain, text, reason)
        self._username = username
        if authzid and authzid != username:
            # Acting as someone else needs a proxy policy mtaguard does not
            # have; Cyrus SASL answers SASL_NOAUTHZ the same way.
            raise AuthenticationFailed(REASON_AUTHORIZATION_FAILURE, username)
        return Credentials(authzid=authzid, username=username, password=password)

    def _loginUsername(self, text: str, reason: str) -> Union[Challenge, Credentials]:
        username = self._decoded(decodeLogin, text, reason)
        if not username:
            raise AuthenticationFailed(REASON_AUTHENTICATION_FAILURE)
        self._username = username
        self._next = self._loginPassword
        return Challenge(_PASSWORD_CHALLENGE)

    def _loginPassword(self, text: str, reason: str) -> Union[Challenge, Credentials]:
        password = self._decoded(decodeLogin, text, reason)
        assert self._username is not None
        if not password:
            raise AuthenticationFailed(REASON_AUTHENTICATION_FAILURE, self._username)
        return Credentials(authzid="", username=self._username, password=password)


# --- Logging, as Postfix's smtpd_sasl_glue.c --------------------------------


def _logFailed(client: str, mechanism: str, reason: str, username: Optional[str]) -> None:
    # Postfix 3.7: "%s: SASL %.100s authentication failed: %s,
    # sasl_username=%.100s" (checked against Debian's smtpd binary).  The
    # mechanism and user name come from the client, so they are escaped.
    log.warn(
        "warning: {client}: SASL {mechanism} authentication failed: {reason}, "
        "sasl_username={username}",
        client=client,
        mechanism=escapeForLog(mechanism, 100),
        reason=reason or "(reason unavailable)",
        username="(unavailable)" if username is None else escapeForLog(username, 100),
    )


def logExchangeError(client: str, mechanism: str, error: ArgumentSyntaxError) -> None:
    """
    Log an error raised by L{AuthExchange} as Postfix does: a failure as
    C{warning: <client>: SASL <mech> authentication failed: <reason>,
    sasl_username=<user>}, an abort as C{warning: <client>: SASL <mech>
    authentication aborted}; an over-long response is not logged.

    @param client: C{name[address]}, as in every smtpd log line.
    @param mechanism: The mechanism as the client sent it.
    @param error: The error; its C{reply} is what to send.
    """
    if isinstance(error, AuthenticationAborted):
        log.warn(
            "warning: {client}: SASL {mechanism} authentication aborted",
            client=client,
            mechanism=escapeForLog(mechanism, 100),
        )
    elif isinstance(error, AuthenticationFailed):
        _logFailed(client, mechanism, error.reason, error.username)


def failureReply(client: str, mechanism: str, username: str, failure: Failure) -> Reply:
    """
    Log a failed L{authenticate} and choose the reply, as Postfix does.

    @param client: C{name[address]}.
    @param mechanism: The mechanism as the client sent it.
    @param username: L{Credentials.username}.
    @param failure: The failure of L{authenticate}'s Deferred.
    @return: C{535 5.7.8 Error: authentication failed: authentication
        failure} for L{UnauthorizedLogin}; for anything else (an unreadable
        password file, no checker) C{454 4.7.0 Temporary authentication
        failure: Authentication backend error}, so that the client retries
        later instead of giving up on a password that may be right; that
        case is logged as C{warning: SASL authentication problem: ...},
        which fail2ban does not count against the client.
    """
    if failure.check(UnauthorizedLogin):
        _logFailed(client, mechanism, REASON_AUTHENTICATION_FAILURE, username)
        return AUTH_FAILED.format(reason=REASON_AUTHENTICATION_FAILURE)
    # Not the "authentication failed" shape: fail2ban must not ban every
    # user who tries while the password file is unreadable.  The text is
    # Postfix's own for a back-end problem.
    log.warn(
        "warning: SASL authentication problem: {error}",
        error=escapeForLog(failure.getErrorMessage(), 200),
    )
    return AUTH_TEMPORARY_FAILURE.format(reason=REASON_BACKEND_ERROR)


# --- twisted.cred ---------------------------------------------------------------


class IAuthenticatedUser(Interface):
    """
    The avatar L{authenticate} asks for: the SASL login name, as C{str}.
    """


@implementer(IRealm)
class _UserNameRealm:
    """
    A realm whose avatar is the login name itself: SMTP AUTH needs nothing
    more than who the client is.
    """

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: type[Interface]
    ) -> tuple[type[Interface], str, Callable[[], None]]:
        if IAuthenticatedUser not in interfaces:
            raise NotImplementedError("only IAuthenticatedUser is provided")
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else str(avatarId)
        return IAuthenticatedUser, name, lambda: None


def authenticate(portal: Portal, credentials: Credentials) -> "Deferred[str]":
    """
    Check credentials from an L{AuthExchange} through a portal.

    @param portal: A portal with a checker for L{IUsernamePassword} and a
        realm providing L{IAuthenticatedUser} (L{passwordFilePortal} builds
        one).
    @param credentials: The credentials.
    @return: A Deferred firing with the login name, or failing with
        L{UnauthorizedLogin} for wrong credentials (anything else, such as
        L{PasswordFileError}, is a temporary problem: see L{failureReply}).
    """
    # twisted.cred's password checkers work on bytes.
    creds = UsernamePassword(
        credentials.username.encode("utf-8", "surrogateescape"),
        credentials.password.encode("utf-8", "surrogateescape"),
    )

    def loggedIn(result: tuple[object, object, Callable[[], None]]) -> str:
        _, avatar, logout = result
        # Nothing is held per login, so log out at once.
        logout()
        return str(avatar)

    return portal.login(creds, None, IAuthenticatedUser).addCallback(loggedIn)


def passwordFilePortal(
    path: str, *, runner: Optional[Callable[[Callable[[], bool]], "Deferred[bool]"]] = None
) -> Portal:
    """
    Build the portal mtaguard uses for C{mtaguard_sasl_password_file}.

    @param path: The password file.
    @param runner: See L{PasswordFileChecker.__init__}.
    @return: A portal for L{authenticate}.
    """
    return Portal(_UserNameRealm(), [PasswordFileChecker(path, runner=runner)])


# --- Password hashes ---------------------------------------------------------

# scrypt with OWASP's (N=2**14, r=8, p=5) point: the same work as its
# minimum (2**17, 8, 1) but 16 MiB instead of 128 MiB per check, which
# matters when many AUTH attempts are checked at once.
_LOG_N, _R, _P = 14, 8, 5
_SALT_BYTES, _KEY_BYTES = 16, 32
# Refuse parameters from a (tampered or mistyped) file that would make one
# check take gigabytes or minutes.
_MAX_MEMORY = 256 * 1024 * 1024
_MAX_P = 64
_SCRYPT = re.compile(
    r"\$scrypt\$ln=(?P<ln>[0-9]{1,2}),r=(?P<r>[0-9]{1,3}),p=(?P<p>[0-9]{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<key>[A-Za-z0-9+/]+)\Z"
)
_PLAIN_PREFIX = "{PLAIN}"


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return binascii.a2b_base64(text + "=" * (-len(text) % 4), strict_mode=True)


def hashPassword(password: str, *, logN: int = _LOG_N, r: int = _R, p: int = _P) -> str:
    """
    Hash a password for the password file.

    @param password: The password.
    @param logN: log2 of scrypt's cost parameter N.
    @param r: scrypt's block size.
    @param p: scrypt's parallelism.
    @return: C{$scrypt$ln=<logN>,r=<r>,p=<p>$<salt>$<key>}, with a fresh
        random salt.
    """
    salt = os.urandom(_SALT_BYTES)
    key = _scrypt(password.encode("utf-8", "surrogateescape"), salt, logN, r, p, _KEY_BYTES)
    return f"$scrypt$ln={logN},r={r},p={p}${_b64(salt)}${_b64(key)}"


def _scrypt(password: bytes, salt: bytes, logN: int, r: int, p: int, length: int) -> bytes:
    memory = 128 * r * (2**logN) + 128 * r * p
    return hashlib.scrypt(
        password, salt=salt, n=2**logN, r=r, p=p, dklen=length, maxmem=memory + 2**20
    )


def _parseScrypt(stored: str) -> Optional[tuple[bytes, int, int, int, bytes]]:
    match = _SCRYPT.match(stored)
    if match is None:
        return None
    logN, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
    if not (1 <= logN <= 30 and 1 <= r and 1 <= p <= _MAX_P):
        return None
    if 128 * r * (2**logN) > _MAX_MEMORY:
        return None
    try:
        salt, key = _unb64(match["salt"]), _unb64(match["key"])
    except (binascii.Error, ValueError):
        return None
    if not key:
        return None
    return salt, logN, r, p, key


def _usable(stored: str) -> bool:
    return stored.startswith(_PLAIN_PREFIX) or _parseScrypt(stored) is not None


def verifyPassword(password: str, stored: str) -> bool:
    """
    Check a password against a password file entry, in constant time.

    @param password: The password the client sent.
    @param stored: What follows C{user:} in the file.
    @return: Whether they match; C{False} for an entry in no known format.
    """
    given = password.encode("utf-8", "surrogateescape")
    if stored.startswith(_PLAIN_PREFIX):
        expected = stored[len(_PLAIN_PREFIX) :].encode("utf-8", "surrogateescape")
        # Comparing digests also keeps the password's length out of the
        # timing, which compare_digest alone does not.
        return compare_digest(hashlib.sha256(expected).digest(), hashlib.sha256(given).digest())
    parsed = _parseScrypt(stored)
    if parsed is None:
        return False
    salt, logN, r, p, key = parsed
    return compare_digest(_scrypt(given, salt, logN, r, p, len(key)), key)


# A hash of nothing anyone knows, checked for unknown users so that an
# unknown user name costs as much time as a wrong password.
_DUMMY_HASH = f"$scrypt$ln={_LOG_N},r={_R},p={_P}${_b64(bytes(_SALT_BYTES))}${_b64(bytes(_KEY_BYTES))}"


# --- The checker -----------------------------------------------------------------


class PasswordFileError(LoginFailed):
    """
    The password file could not be read: a temporary failure (C{454}), not
    a wrong password.
    """


def _threadRunner(function: Callable[[], bool]) -> "Deferred[bool]":
    # scrypt releases the GIL, so a thread keeps the reactor answering other
    # sessions during the ~0.2 s a check takes.
    from twisted.internet.threads import deferToThread

    return deferToThread(function)


@implementer(ICredentialsChecker)
class PasswordFileChecker:
    """
    Users from a file of C{user:password} lines (see the module docstring
    for the format), re-read when the file changes, compared in constant
    time.

    @ivar credentialInterfaces: L{IUsernamePassword} only: PLAIN and LOGIN
        both deliver a clear-text password.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        path: str,
        *,
        runner: Optional[Callable[[Callable[[], bool]], "Deferred[bool]"]] = None,
    ) -> None:
        """
        @param path: The password file.
        @param runner: Runs one password check and returns a Deferred of its
            result; by default in the reactor's thread pool.  Tests pass a
            synchronous one.
        """
        self.path = path
        self._run = _threadRunner if runner is None else runner
        self._stamp: Optional[tuple[int, int, int, int]] = None
        self._users: dict[bytes, str] = {}

    def _load(self) -> dict[bytes, str]:
        """
        Return the accounts, re-reading the file if it changed.

        @raise PasswordFileError: If the file cannot be read.
        """
        try:
            info = os.stat(self.path)
            # mtime alone misses a change within the file system's timestamp
            # granularity, or a file replaced by one with an older mtime.
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino, info.st_dev)
            if stamp == self._stamp:
                return self._users
            with open(self.path, "rb") as handle:
                data = handle.read()
        except OSError as e:
            # Fail closed: a password file that vanished must not keep its
            # old accounts alive.
            self._stamp = None
            self._users = {}
            raise PasswordFileError(f"cannot read {self.path}: {e.strerror}") from e
        self._users = self._parse(data)
        self._stamp = stamp
        return self._users

    def _parse(self, data: bytes) -> dict[bytes, str]:
        users: dict[bytes, str] = {}
        for number, raw in enumerate(data.splitlines(), 1):
            line = raw.decode("utf-8", "surrogateescape").rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, colon, stored = line.partition(":")
            if not colon or not name:
                log.warn(
                    "warning: {path}, line {number}: ignoring malformed entry",
                    path=self.path,
                    number=number,
                )
                continue
            key = name.encode("utf-8", "surrogateescape")
            if key in users:
                # First entry wins, as with /etc/passwd.
                log.warn(
                    "warning: {path}, line {number}: ignoring duplicate entry for {user}",
                    path=self.path,
                    number=number,
                    user=escapeForLog(name),
                )
                continue
            if not _usable(stored):
                # Kept (it can never match) so that the line is not mistaken
                # for an unknown user, but worth telling the administrator.
                log.warn(
                    "warning: {path}, line {number}: password for {user} is neither "
                    "{{PLAIN}} nor a valid $scrypt$ hash; it can never match",
                    path=self.path,
                    number=number,
                    user=escapeForLog(name),
                )
            users[key] = stored
        return users

    def requestAvatarId(self, credentials: IUsernamePassword) -> "Deferred[bytes | tuple[()]]":
        """
        Check a user name and password.

        @param credentials: The credentials; user name and password as bytes
            (UTF-8) or C{str}.
        @return: A Deferred firing with the user name (bytes), or failing
            with L{UnauthorizedLogin}, or L{PasswordFileError} if the file
            cannot be read.
        """
        try:
            users = self._load()
        except PasswordFileError:
            return fail()
        # IUsernamePassword says bytes, but str is common in cred code.
        rawName: str | bytes = credentials.username
        rawPassword: object = credentials.password
        username = (
            rawName.encode("utf-8", "surrogateescape") if isinstance(rawName, str) else bytes(rawName)
        )
        password = (
            rawPassword.decode("utf-8", "surrogateescape")
            if isinstance(rawPassword, bytes)
            else str(rawPassword)
        )
        stored = users.get(username)
        known = stored is not None
        check: str = stored if stored is not None else _DUMMY_HASH

        def verify() -> bool:
            return verifyPassword(password, check)

        def decide(matches: bool) -> bytes:
            if matches and known:
                return username
            raise UnauthorizedLogin()

        return self._run(verify).addCallback(decide)


# --- mtaguard-passwd ------------------------------------------------------------


def _readPassword(stdin: TextIO) -> str:
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise SystemExit("mtaguard-passwd: passwords differ")
        return first
    line = stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def _update(path: str, user: str, entry: str) -> None:
    """
    Replace or add C{user}'s line, atomically: a reader (the checker) sees
    the old file or the new one, never half of one.
    """
    try:
        with open(path, "rb") as handle:
            lines = handle.read().decode("utf-8", "surrogateescape").splitlines()
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        lines, mode = [], 0o600
    prefix = user + ":"
    replaced = False
    output = []
    for line in lines:
        if line.startswith(prefix):
            if not replaced:
                output.append(entry)
                replaced = True
            continue
        output.append(line)
    if not replaced:
        output.append(entry)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".mtaguard-passwd.", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(("\n".join(output) + "\n").encode("utf-8", "surrogateescape"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv: Optional[Sequence[str]] = None, stdin: Optional[TextIO] = None,
         stdout: Optional[TextIO] = None) -> int:
    """
    C{mtaguard-passwd [-f FILE] USER}: read a password from standard input
    (asked twice on a terminal) and add or replace C{USER}'s entry in
    C{FILE}, or print the line when no file is given.

    @param argv: The arguments (default C{sys.argv[1:]}).
    @param stdin: Where the password is read (default C{sys.stdin}).
    @param stdout: Where the line is printed (default C{sys.stdout}).
    @return: The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="mtaguard-passwd",
        description="Add or replace a user in an mtaguard SASL password file "
        "(the password is read from standard input).",
    )
    parser.add_argument("-f", "--file", help="the password file to update")
    parser.add_argument("user")
    arguments = parser.parse_args(argv)
    user: str = arguments.user
    if ":" in user or not user.strip() or user.lstrip().startswith("#") or any(
        char in user for char in "\r\n\0"
    ):
        parser.error("a user name must not be empty, start with #, or contain ':' or line breaks")
    password = _readPassword(sys.stdin if stdin is None else stdin)
    if not password:
        parser.error("empty password")
    entry = f"{user}:{hashPassword(password)}"
    if arguments.file:
        _update(arguments.file, user, entry)
    else:
        print(entry, file=sys.stdout if stdout is None else stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
