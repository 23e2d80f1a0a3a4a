# -*- test-case-name: tests.test_postscreen_engine -*-
"""
postscreen's dummy SMTP engine and its three deep protocol tests
(pipelining, non-SMTP command, bare newline), sans I/O: the decisions
Postfix's C{postscreen_smtpd.c} makes after the final C{220}, and the
end-of-session verdict of C{psc_conclude} (C{postscreen_misc.c}).

A client lands here when the before-220 phase (L{_early.EarlySession})
ends with L{EnterDummyEngine}: a test failed with C{enforce}, the server
address vetoed allowlisting, or deep tests remain to run.  postscreen is
not a proxy, so such a client is never handed off in this session: every
RCPT gets a 4xx (or the 550 of a failed C{enforce} test), and a client that
passed everything is remembered in the cache so its I{next} connection is
handed off (C{PASS OLD}).

L{DummyEngine} does no I/O, keeps no timers and reads no clock.  The
caller (postscreen's protocol) feeds it events with explicit times
(L{DummyEngine.start}, L{DummyEngine.dataReceived},
L{DummyEngine.timerFired}, L{DummyEngine.tlsStarted},
L{DummyEngine.connectionLost}) and executes the returned actions in order:
L{Log}, L{Send}, L{WaitUntil}, L{StartTLS}, L{CacheUpdate} and
L{Disconnect}.  After L{Disconnect} (or a hang-up) every further event
returns no actions.  The caller logs C{DISCONNECT [addr]:port} itself.

The session, top to bottom::

    New      --start: 220 (unless pregreet enforced)------> Reading
    Reading  --complete command line----------------------> (tests)
             --line of line_length_limit or more----------> Closed (421)
             --deadline passed (timerFired)---------------> Closed (421 4.4.2)
             --connectionLost-----------------------------> Closed (HANGUP)
    (tests)  --bare LF / non-SMTP / pipelining, drop------> Closed (521)
             --... enforce: RCPT reply becomes 550--------> (tests)
             --... ignore: passed until now + min TTL-----> (tests)
             --RCPT: untouched deep tests pass------------> (tests)
             --command count over the limit (not QUIT)----> Closed (421)
             --otherwise----------------------------------> (command)
    (command) --QUIT, DATA, BDAT---------------------------> Closed
              --STARTTLS accepted, pending input dropped---> AwaitingTLS
              --anything else: reply, re-arm deadline------> Reading
    AwaitingTLS --tlsStarted: HELO and MAIL forgotten------> Reading
                --deadline passed, connectionLost----------> Closed

Every way into C{Closed} goes through one conclusion, as Postfix's
C{psc_conclude}:

    - When anything failed (a before-220 test with C{enforce}, so
      C{entry.failed}; a deep test with C{enforce} or C{drop}) or the
      server address vetoed allowlisting, nothing is logged and nothing is
      cached: Postfix clears every pass of a failing session.
    - Otherwise, when every test still to do in this session passed (the
      deep tests of C{entry.deepTests}, by reaching RCPT or through
      C{ignore}, and the before-220 tests, which L{EnterDummyEngine}
      reports through C{entry.verdicts}), C{PASS NEW} is logged.
    - Otherwise the client may still have passed I{some} tests (say the
      pregreet test, then it hung up before RCPT).  Postfix caches those,
      so that a client can be allowlisted "in the course of multiple
      sessions"; so does this engine: a L{CacheUpdate} is returned whenever
      nothing failed and some test holds a pass (C{PASS NEW} or not).
      Because L{EnterDummyEngine} does not say which before-220 passes are
      new and which came from the cache, a session with only cached passes
      rewrites the same times, which is harmless.

Details of Postfix that are easy to get wrong, kept here:

    - The final C{220} is skipped only for a client that failed the
      pregreet test with C{enforce} (Postfix's C{PSC_STATE_FLAG_PREGR_FAIL},
      which C{ignore} clears, so an ignored pregreeter is greeted).
    - C{HANGUP after} counts from L{DummyEngine.start}: Postfix restarts its
      clock for "tests after SMTP handshake".
    - C{soft_bounce} softens I{every} reply the engine sends (Postfix's
      C{psc_send_reply}), C{502 5.5.2} as well as the 550 of a failed test.
    - The deep tests pass at RCPT even when that RCPT is refused (no MAIL,
      TLS required), and a session that ends by the count limit right after
      still concludes with C{PASS NEW}.
    - STARTTLS with an argument gets C{501 Syntax: EHLO hostname} (sic, in
      3.7).

How this differs from Postfix, and why:

    - A line is too long once its text (without CRLF or LF) reaches
      C{line_length_limit}, whatever it holds.  Postfix does not count
      bytes read right after a CR, so an endless run of CRs grows its
      buffer without limit; this engine's buffer stays bounded.
    - The EHLO keywords to discard are fixed for the session (the static
      C{postscreen_discard_ehlo_keywords}, or a per-client override given
      to L{DummyEngine}); Postfix starts every session with an empty mask
      until EHLO ("XXX Should be ~0").  The C{discarding EHLO keywords} line
      is logged, as in Postfix, only for a per-client override that differs
      from the static list.
    - STARTTLS is offered only when the protocol can do TLS
      (L{EngineSettings.tlsAvailable}); Postfix offers it by configuration
      alone and lets tlsproxy fail.  The TLS handshake is bounded by
      C{postscreen_command_time_limit} (Postfix suspends the engine's timer
      and relies on tlsproxy's), and input delivered before
      L{DummyEngine.tlsStarted} waits for it, up to 4 x C{line_length_limit}
      bytes.
    - Peer text in log lines is escaped with L{escapeForLog} throughout
      (Postfix replaces the command word's non-printable bytes with C{?}).
    - Not implemented: C{postscreen_command_filter},
      C{postscreen_reject_footer}, C{postscreen_discard_ehlo_keyword_address_maps}
      lookups (the caller may pass their result), and the "X21" mode
      (a final 421 at the first command).
"""

from __future__ import annotations

import enum
from typing import Any, Mapping, Optional, Union

import attr

from ..config import ParameterView, params
from ..smtp._escape import escapeForLog
from ..smtpd._forbidden import ForbiddenCommands
from ._early import (
    BARE_NEWLINE,
    DEEP_TESTS,
    DNSBL,
    DROP,
    ENFORCE,
    EXTRA_FAIL_LOG_FORMAT,
    HANGUP_LOG_FORMAT,
    NON_SMTP_COMMAND,
    PASS_NEW_LOG_FORMAT,
    PIPELINING,
    PREGREET,
    CacheUpdate,
    EarlySettings,
    EnterDummyEngine,
    Log,
    WaitUntil,
    formatDelay,
    softBounced,
)

#: Log formats (for the project's Logger) that render to Postfix's text.
COMMAND_PIPELINING_LOG_FORMAT = "COMMAND PIPELINING from [{address}]:{port} after {command}: {escaped}"
NON_SMTP_COMMAND_LOG_FORMAT = "NON-SMTP COMMAND from [{address}]:{port} after {where}: {command} {escaped}"
BARE_NEWLINE_LOG_FORMAT = "BARE NEWLINE from [{address}]:{port} after {escaped}"
COMMAND_TIME_LIMIT_LOG_FORMAT = "COMMAND TIME LIMIT from [{address}]:{port} after {where}"
COMMAND_COUNT_LIMIT_LOG_FORMAT = "COMMAND COUNT LIMIT from [{address}]:{port} after {where}"
COMMAND_LENGTH_LIMIT_LOG_FORMAT = "COMMAND LENGTH LIMIT from [{address}]:{port} after {where}"
RCPT_REJECT_LOG_FORMAT = (
    "NOQUEUE: reject: RCPT from [{address}]:{port}: {reply};"
    " from=<{sender}>, to=<{recipient}>, proto={protocol}, helo=<{helo}>"
)
DATA_WITHOUT_RCPT_LOG_FORMAT = "DATA without valid RCPT from [{address}]:{port}"
BDAT_WITHOUT_RCPT_LOG_FORMAT = "BDAT without valid RCPT from [{address}]:{port}"
#: Postfix's text has no colon between address and port (sic).
#: A third-party after-greeting check that raised (it decides nothing).
CHECK_BROKEN_LOG_FORMAT = "warning: postscreen check {test} failed for [{address}]:{port}: {error}"
EHLO_DISCARD_LOG_FORMAT = "[{address}]{port}: discarding EHLO keywords: {keywords}"
HANGUP_AFTER_HANDSHAKE = "tests after SMTP handshake"

#: What Postfix logs as the previous command before the first one, and for
#: a command it does not know.
WHERE_CONNECT = "CONNECT"
WHERE_UNIMPLEMENTED = "UNIMPLEMENTED"

#: How much peer text a log line keeps (Postfix's C{%.100s}).
LOG_TEXT_LIMIT = 100

#: TLS levels of L{EngineSettings.tlsLevel}.
TLS_NONE = "none"
TLS_MAY = "may"
TLS_ENCRYPT = "encrypt"

#: EHLO keywords Postfix's C{ehlo_mask} knows, in its table order (the
#: order C{str_ehlo_mask} logs them in); others are ignored.
EHLO_KEYWORDS = (
    "8BITMIME",
    "AUTH",
    "ETRN",
    "PIPELINING",
    "SIZE",
    "VERP",
    "VRFY",
    "XCLIENT",
    "XFORWARD",
    "STARTTLS",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "SMTPUTF8",
    "CHUNKING",
    "SILENT-DISCARD",
)
SILENT_DISCARD = "SILENT-DISCARD"

# Replies, exactly as Postfix 3.7's postscreen_smtpd.c sends them (without
# CRLF; soft_bounce is applied when sending).
_OK = "250 2.0.0 Ok"
_MAIL_OK = "250 2.1.0 Ok"
_BYE = "221 2.0.0 Bye"
_HELO_SYNTAX = "501 Syntax: HELO hostname"
_EHLO_SYNTAX = "501 Syntax: EHLO hostname"
#: Postfix 3.7 answers STARTTLS with an argument with the EHLO text (sic).
_STARTTLS_SYNTAX = _EHLO_SYNTAX
_TLS_ACTIVE = "554 5.5.1 Error: TLS already active"
_NOT_IMPLEMENTED = "502 5.5.1 Error: command not implemented"
_READY_TLS = "220 2.0.0 Ready to start TLS"
_SEND_HELO_FIRST = "503 5.5.1 Error: send HELO/EHLO first"
_NESTED_MAIL = "503 5.5.1 Error: nested MAIL command"
_MAIL_SYNTAX = "501 5.5.4 Syntax: MAIL FROM:<address>"
_NEED_MAIL = "503 5.5.1 Error: need MAIL command"
_RCPT_SYNTAX = "501 5.5.4 Syntax: RCPT TO:<address>"
_DATA_SYNTAX = "501 5.5.4 Syntax: DATA"
_NEED_RCPT = "503 5.5.1 Error: need RCPT command"
_NO_VALID_RECIPIENTS = "554 5.5.1 Error: no valid recipients"
_BDAT_SYNTAX = "501 5.5.4 Syntax: BDAT count [LAST]"
_BDAT_NEED_MAIL = "554 5.5.1 Error: need MAIL command"
_VRFY_SYNTAX = "501 5.5.4 Syntax: VRFY address"
_VRFY_DISABLED = "502 5.5.1 VRFY command is disabled"
_ETRN_SYNTAX = "500 Syntax: ETRN domain"
_ETRN_REFUSED = "458 Unable to queue messages"
_NOT_RECOGNIZED = "502 5.5.2 Error: command not recognized"
_STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
_PROTOCOL_ERROR_TEXT = "5.5.1 Protocol error"
_NON_SMTP_DROP = "521 5.7.0 Error: I can break rules, too. Goodbye."


@attr.frozen
class EngineSettings:
    """
    The parameters of the dummy SMTP engine, read once per session (some
    depend on stress mode).

    @ivar myhostname: C{myhostname}.
    @ivar banner: C{smtpd_banner}, the text of the final C{220 } line.
    @ivar messageSizeLimit: C{message_size_limit}; 0 announces a bare
        C{SIZE}.
    @ivar disableVrfy: C{postscreen_disable_vrfy_command}.
    @ivar heloRequired: C{postscreen_helo_required}.
    @ivar smtputf8: C{smtputf8_enable}: announce SMTPUTF8, and count a
        command word that is not UTF-8 as non-SMTP.
    @ivar discardEhloKeywords: C{postscreen_discard_ehlo_keywords},
        upper-cased.
    @ivar forbidden: C{postscreen_forbidden_commands}, compiled.
    @ivar commandCountLimit: C{postscreen_command_count_limit}.
    @ivar commandTimeLimit: C{postscreen_command_time_limit}, seconds.
    @ivar lineLengthLimit: C{line_length_limit}.
    @ivar tlsLevel: L{TLS_NONE}, L{TLS_MAY} or L{TLS_ENCRYPT}, from
        C{postscreen_tls_security_level} or its obsolete booleans.
    @ivar tlsAvailable: whether the protocol can start TLS at all.
    @ivar early: the before-220 settings: the deep tests' actions and TTLs,
        C{soft_bounce}.
    @ivar warnings: configuration warnings to log once, Postfix's text.
    """

    myhostname: str
    banner: str
    early: EarlySettings = EarlySettings()
    messageSizeLimit: int = 10240000
    disableVrfy: bool = False
    heloRequired: bool = False
    smtputf8: bool = True
    discardEhloKeywords: frozenset[str] = frozenset()
    forbidden: ForbiddenCommands = attr.field(
        factory=lambda: ForbiddenCommands.fromList(("CONNECT", "GET", "POST", "regexp:{{/^[^A-Z]/ Bogus}}"))
    )
    commandCountLimit: int = 20
    commandTimeLimit: float = 300.0
    lineLengthLimit: int = 2048
    tlsLevel: str = TLS_NONE
    tlsAvailable: bool = False
    warnings: tuple[str, ...] = ()

    @classmethod
    def fromView(
        cls, view: ParameterView, early: EarlySettings, *, tlsAvailable: bool = False
    ) -> EngineSettings:
        """
        Read the settings from C{view} as it is now (so C{view.stress}
        decides C{postscreen_command_time_limit}).

        @param early: the session's before-220 settings.
        @param tlsAvailable: whether the protocol has certificates to start
            TLS with.
        @raise mtaguard.config.ParameterError: for a bad value.
        @raise mtaguard.smtpd._forbidden.UnsupportedTable: for a
            C{postscreen_forbidden_commands} table mtaguard cannot read.
        """
        warnings: list[str] = []
        return cls(
            myhostname=view[params.myhostname],
            banner=view[params.smtpd_banner],
            early=early,
            messageSizeLimit=view[params.message_size_limit],
            disableVrfy=view[params.postscreen_disable_vrfy_command],
            heloRequired=view[params.postscreen_helo_required],
            smtputf8=view[params.smtputf8_enable],
            discardEhloKeywords=frozenset(
                word.upper() for word in view[params.postscreen_discard_ehlo_keywords]
            ),
            forbidden=ForbiddenCommands.fromList(view[params.postscreen_forbidden_commands]),
            commandCountLimit=view[params.postscreen_command_count_limit],
            commandTimeLimit=float(view[params.postscreen_command_time_limit]),
            lineLengthLimit=view[params.line_length_limit],
            tlsLevel=_tlsLevel(view, warnings),
            tlsAvailable=tlsAvailable,
            warnings=tuple(warnings),
        )

    @property
    def minTTL(self) -> float:
        """
        Postfix's C{psc_min_ttl}: how long an C{ignore}d deep-test failure
        counts as a pass ("until the result from some other test expires").
        """
        early = self.early
        return min(
            early.pipeliningTTL,
            early.nonSmtpCommandTTL,
            early.bareNewlineTTL,
            early.greetTTL,
            early.dnsblMinTTL,
        )

    def reply(self, line: str) -> bytes:
        """
        A reply as sent: soft-bounced when C{soft_bounce} is on (Postfix's
        C{psc_send_reply} softens every reply), with CRLF.
        """
        if self.early.softBounce:
            line = softBounced(line)
        return (line + "\r\n").encode("utf-8", "surrogateescape")


def _tlsLevel(view: ParameterView, warnings: list[str]) -> str:
    # Postfix's psc_smtpd_init: the level overrides the obsolete booleans,
    # and enforcing implies offering.
    level = view[params.postscreen_tls_security_level]
    if not level:
        if view[params.postscreen_enforce_tls]:
            return TLS_ENCRYPT
        return TLS_MAY if view[params.postscreen_use_tls] else TLS_NONE
    if level in ("fingerprint", "verify", "secure"):
        warnings.append(
            f"warning: {params.postscreen_tls_security_level.name}: unsupported TLS level"
            f' "{level}", using "encrypt"'
        )
        return TLS_ENCRYPT
    return level


# Actions -------------------------------------------------------------------


@attr.frozen
class Send:
    """
    Write C{data} to the client.
    """

    data: bytes


@attr.frozen
class StartTLS:
    """
    Start the TLS handshake now (the C{220} went out in the L{Send} before
    this), then call L{DummyEngine.tlsStarted}.  The engine has already
    discarded any plaintext the client sent after STARTTLS.
    """


@attr.frozen
class Disconnect:
    """
    Close the connection once the preceding L{Send}s are written.
    """


Action = Union[Log, Send, WaitUntil, StartTLS, CacheUpdate, Disconnect]


class _Phase(enum.Enum):
    NEW = "new"
    READING = "reading"
    AWAITING_TLS = "awaiting TLS"
    CLOSED = "closed"


class _Ended(Exception):
    """
    The session ended while a command was handled; the actions so far
    stand.
    """


# Commands: name -> (enabled, allowed before STARTTLS when TLS is enforced).
_COMMANDS: dict[bytes, tuple[bool, bool]] = {
    b"HELO": (True, True),
    b"EHLO": (True, True),
    b"STARTTLS": (True, True),
    b"XCLIENT": (False, False),
    b"XFORWARD": (False, False),
    b"AUTH": (False, False),
    b"MAIL": (True, False),
    b"RCPT": (True, False),
    b"DATA": (True, False),
    b"BDAT": (True, False),
    b"RSET": (True, False),
    b"NOOP": (True, True),
    b"VRFY": (True, False),
    b"ETRN": (True, False),
    b"QUIT": (True, True),
}


def _nextToken(text: bytes) -> tuple[Optional[bytes], bytes]:
    """
    Postfix's C{mystrtok(&ptr, " ")}: skip spaces, take the word up to the
    next space, and return it with the rest after that one space.
    """
    text = text.lstrip(b" ")
    if not text:
        return None, b""
    word, _, rest = text.partition(b" ")
    return word, rest


def _extractAddress(text: bytes) -> bytes:
    """
    Postfix's C{psc_extract_addr}: the address after the colon, unquoted,
    C{<>} stripped, a source route dropped; never an error.
    """
    text = text.lstrip(b" ")
    stop = b" "
    if text[:1] == b"<":
        text = text[1:]
        stop = b">"
    result = bytearray()
    quoted = False
    index = 0
    while index < len(text):
        char = text[index : index + 1]
        if not quoted and char == stop:
            break
        if char == b'"':
            quoted = not quoted
        else:
            if char == b"\\":
                index += 1
                if index >= len(text):
                    break
                char = text[index : index + 1]
            result += char
        index += 1
    address = bytes(result)
    if address[:1] == b"@" and b":" in address:
        address = address.split(b":", 1)[1]
    return address


def _validUTF8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _logText(data: bytes) -> str:
    """
    Peer text for a log line, escaped whole (it is already bounded by
    C{line_length_limit}).
    """
    return escapeForLog(data, limit=len(data))


class DummyEngine:
    """
    The dummy SMTP engine for one client.

    @ivar clientAddress: the client's IP address, for log lines.
    @ivar clientPort: the client's port, for log lines.
    """

    def __init__(
        self,
        settings: EngineSettings,
        entry: EnterDummyEngine,
        *,
        clientAddress: str,
        clientPort: int,
        start: float,
        discardEhloKeywords: Optional[frozenset[str]] = None,
        checks: Optional[Mapping[str, Any]] = None,
        client: Any = None,
    ) -> None:
        """
        @param entry: how the before-220 phase ended.
        @param start: the session's connect time: before-220 verdicts in
            C{entry.verdicts} later than this hold a pass, earlier ones are
            tests still to do.
        @param discardEhloKeywords: the per-client result of
            C{postscreen_discard_ehlo_keyword_address_maps}, looked up by
            the caller, or L{None} for the static list.
        @param checks: third-party after-greeting checks
            (L{IConfiguredCheck} providers) by name; those named in
            C{entry.deepTests} run on every command line.
        @param client: the L{ClientInfo} given to those checks.
        """
        self._settings = settings
        self._entry = entry
        self.clientAddress = clientAddress
        self.clientPort = clientPort
        self._connected = start
        self._started = start
        self._phase = _Phase.NEW
        self._buffer = bytearray()
        self._deadline = 0.0
        self._where = WHERE_CONNECT
        self._count = 0
        self._helo: Optional[bytes] = None
        self._sender: Optional[bytes] = None
        self._protocol = "SMTP"
        self._tls = False
        self._rcptReply = entry.rcptReply
        self._todo = frozenset(entry.deepTests)
        self._checks = {name: check for name, check in (checks or {}).items() if name in self._todo}
        self._client = client
        self._passed: dict[str, int] = {}
        self._failed: set[str] = set()
        self._skipped: set[str] = set()
        discard = settings.discardEhloKeywords
        self._ehloDiscardLog: Optional[str] = None
        if discardEhloKeywords is not None:
            override = frozenset(word.upper() for word in discardEhloKeywords)
            # Postfix compares keyword masks, so unknown words never count.
            known = [word for word in EHLO_KEYWORDS if word in override]
            static = {word for word in EHLO_KEYWORDS if word in discard}
            if set(known) != static and known and SILENT_DISCARD not in override:
                self._ehloDiscardLog = " ".join(known)
            discard = override
        self._discard = discard

    # Helpers -------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """
        Whether the session is over (no further event has an effect).
        """
        return self._phase is _Phase.CLOSED

    @property
    def buffered(self) -> int:
        """
        How many bytes of an incomplete command line the engine holds; at
        most C{line_length_limit} while reading commands.
        """
        return len(self._buffer)

    def _log(self, format: str, **fields: Any) -> Log:
        return Log(format, {"address": self.clientAddress, "port": self.clientPort, **fields})

    def _send(self, line: str) -> Send:
        return Send(self._settings.reply(line))

    def _starttlsOffered(self) -> bool:
        settings = self._settings
        return (
            settings.tlsLevel != TLS_NONE
            and settings.tlsAvailable
            and "STARTTLS" not in self._discard
        )

    def _conclude(self, now: float, actions: list[Action], reply: Optional[str]) -> None:
        """
        Postfix's C{psc_conclude}: log C{PASS NEW} and update the cache as
        the module docstring explains, then send the final reply (none after
        a hang-up) and close.
        """
        self._phase = _Phase.CLOSED
        del self._buffer[:]
        entry = self._entry
        early = self._settings.early
        if not (entry.failed or entry.vetoed or self._failed):
            verdicts = entry.verdicts
            earlyTodo = [
                test
                for test in (PREGREET, DNSBL)
                if early.enabled(test) and getattr(verdicts, test) <= self._connected
            ]
            earlyPassed = any(getattr(verdicts, test) > self._connected for test in (PREGREET, DNSBL))
            # Third-party before-220 checks, when the cache entry has them:
            # _early lists only configured ones, so each is enabled.
            extra: tuple[tuple[str, int], ...] = getattr(verdicts, "extra", ())
            earlyExtra = [(name, time) for name, time in extra if name not in self._checks]
            earlyTodo.extend(name for name, time in earlyExtra if time <= self._connected)
            earlyPassed = earlyPassed or any(time > self._connected for _, time in earlyExtra)
            if self._passed and not earlyTodo and all(test in self._passed for test in self._todo):
                actions.append(self._log(PASS_NEW_LOG_FORMAT))
            if self._passed or earlyPassed:
                passed = self._passed
                updated = attr.evolve(
                    verdicts,
                    pipelining=passed.get(PIPELINING, verdicts.pipelining),
                    non_smtp_command=passed.get(NON_SMTP_COMMAND, verdicts.non_smtp_command),
                    bare_newline=passed.get(BARE_NEWLINE, verdicts.bare_newline),
                    extra=tuple(sorted((name, passed.get(name, time)) for name, time in extra)),
                )
                actions.append(CacheUpdate(updated))
        if reply is not None:
            actions.append(self._send(reply))
            actions.append(Disconnect())

    def _end(self, now: float, actions: list[Action], reply: str) -> _Ended:
        self._conclude(now, actions, reply)
        return _Ended()

    def _fail(self, now: float, actions: list[Action], test: str, action: str, dropReply: str) -> None:
        """
        A deep test failed (its log line is out): apply its action.

        @raise _Ended: for C{drop}.
        """
        self._skipped.add(test)
        self._passed.pop(test, None)
        if action == DROP:
            self._failed.add(test)
            raise self._end(now, actions, dropReply)
        if action == ENFORCE:
            self._failed.add(test)
            self._rcptReply = f"550 {_PROTOCOL_ERROR_TEXT}"
            return
        # ignore: un-fail, and count as passed until some other test's
        # result expires (Postfix's psc_min_ttl).
        self._passed[test] = int(now) + int(self._settings.minTTL)

    def _active(self, test: str) -> bool:
        return test in self._todo and test not in self._skipped

    # Events --------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """
        The engine takes over: greet (unless the client failed the
        pregreet test with C{enforce}; Postfix then sends no banner, which
        spares many C{NON-SMTP COMMAND} events) and wait for a command.
        """
        if self._phase is not _Phase.NEW:
            return []
        self._phase = _Phase.READING
        self._started = now
        actions: list[Action] = []
        settings = self._settings
        if not (self._entry.pregreeted and settings.early.greetAction == ENFORCE):
            actions.append(Send(b"220 " + settings.banner.encode("utf-8", "surrogateescape") + b"\r\n"))
        self._deadline = now + settings.commandTimeLimit
        actions.append(WaitUntil(self._deadline))
        if self._buffer:
            actions.extend(self._process(now))
        return actions

    def dataReceived(self, now: float, data: bytes) -> list[Action]:
        """
        The client sent C{data}: handle every complete command line in the
        buffer.  While STARTTLS is being negotiated the input waits for
        L{tlsStarted}; more than 4 x C{line_length_limit} bytes of it end
        the session as a too long command.
        """
        if self._phase is _Phase.NEW:
            # Input before start() (the caller should call start first)
            # waits for it; the most kept is bounded like input during the
            # TLS handshake.
            self._buffer += data[: max(0, self._pendingLimit() - len(self._buffer))]
            return []
        if self._phase is _Phase.AWAITING_TLS:
            # Bytes the TLS layer delivered before the handshake was
            # reported; they are encrypted-channel input, kept for
            # tlsStarted, and bounded like a line.
            self._buffer += data
            if len(self._buffer) > self._pendingLimit():
                actions: list[Action] = [self._log(COMMAND_LENGTH_LIMIT_LOG_FORMAT, where=self._where)]
                self._conclude(now, actions, self._generic421())
                return actions
            return []
        if self._phase is not _Phase.READING:
            return []
        self._buffer += data
        return self._process(now)

    def timerFired(self, now: float) -> list[Action]:
        """
        A L{WaitUntil} deadline passed.  A timer for a deadline that was
        since moved is ignored.
        """
        if self._phase not in (_Phase.READING, _Phase.AWAITING_TLS) or now < self._deadline:
            return []
        actions: list[Action] = [self._log(COMMAND_TIME_LIMIT_LOG_FORMAT, where=self._where)]
        self._conclude(now, actions, f"421 4.4.2 {self._settings.myhostname} Error: timeout exceeded")
        return actions

    def tlsStarted(self, now: float) -> list[Action]:
        """
        The TLS handshake after STARTTLS completed: forget HELO and MAIL,
        as Postfix does, and read commands again.
        """
        if self._phase is not _Phase.AWAITING_TLS:
            return []
        self._phase = _Phase.READING
        self._tls = True
        self._helo = None
        self._sender = None
        self._deadline = now + self._settings.commandTimeLimit
        actions: list[Action] = [WaitUntil(self._deadline)]
        if self._buffer:
            actions.extend(self._process(now))
        return actions

    def connectionLost(self, now: float) -> list[Action]:
        """
        The connection closed.  A client that hangs up before the session
        ended is logged (no penalty: some MTAs never send QUIT), and the
        session concludes.
        """
        if self._phase is _Phase.CLOSED:
            return []
        if self._phase is _Phase.NEW:
            self._phase = _Phase.CLOSED
            return []
        actions: list[Action] = [
            self._log(
                HANGUP_LOG_FORMAT,
                delay=formatDelay(now - self._started),
                where=HANGUP_AFTER_HANDSHAKE,
            )
        ]
        self._conclude(now, actions, None)
        return actions

    # Reading -------------------------------------------------------------

    def _pendingLimit(self) -> int:
        """
        The most bytes kept while commands are not read (before L{start},
        during the TLS handshake).
        """
        return 4 * self._settings.lineLengthLimit

    def _generic421(self) -> str:
        return f"421 {self._settings.myhostname} Service unavailable - try again later"

    def _process(self, now: float) -> list[Action]:
        actions: list[Action] = []
        limit = self._settings.lineLengthLimit
        handled = False
        try:
            while self._phase is _Phase.READING:
                end = self._buffer.find(b"\n")
                if end < 0:
                    if len(self._buffer) > limit:
                        raise self._lengthLimit(now, actions)
                    break
                bare = end == 0 or self._buffer[end - 1] != 0x0D
                line = bytes(self._buffer[: end if bare else end - 1])
                if len(line) >= limit:
                    raise self._lengthLimit(now, actions)
                del self._buffer[: end + 1]
                if bare and self._active(BARE_NEWLINE):
                    actions.append(
                        self._log(BARE_NEWLINE_LOG_FORMAT, escaped=escapeForLog(line, LOG_TEXT_LIMIT))
                    )
                    self._fail(
                        now,
                        actions,
                        BARE_NEWLINE,
                        self._settings.early.bareNewlineAction,
                        f"521 {_PROTOCOL_ERROR_TEXT}",
                    )
                self._command(now, line, actions)
                handled = True
        except _Ended:
            return actions
        if self._phase is _Phase.READING and handled:
            # The whole next command must arrive within the limit: the
            # deadline moves only when a command completes.
            self._deadline = now + self._settings.commandTimeLimit
            actions.append(WaitUntil(self._deadline))
        return actions

    def _lengthLimit(self, now: float, actions: list[Action]) -> _Ended:
        actions.append(self._log(COMMAND_LENGTH_LIMIT_LOG_FORMAT, where=self._where))
        return self._end(now, actions, self._generic421())

    # Commands ------------------------------------------------------------

    def _command(self, now: float, line: bytes, actions: list[Action]) -> None:
        """
        Postfix's C{psc_smtpd_read_event} after a line: the non-SMTP,
        pipelining and count tests, then the command.

        @raise _Ended: when the session ends.
        """
        settings = self._settings
        # Postfix works on a C string: nothing after a NUL exists.
        line = line.split(b"\0", 1)[0]
        word, rest = _nextToken(line)
        command = word or b""
        name = command.upper()
        known = _COMMANDS.get(name)
        previous = self._where
        self._where = name.decode("ascii") if known is not None else WHERE_UNIMPLEMENTED

        if (
            known is None
            and self._active(NON_SMTP_COMMAND)
            and (
                settings.forbidden.matches(command)
                or (settings.smtputf8 and not _validUTF8(command))
            )
        ):
            actions.append(
                self._log(
                    NON_SMTP_COMMAND_LOG_FORMAT,
                    where=previous,
                    command=escapeForLog(command, LOG_TEXT_LIMIT),
                    escaped=escapeForLog(rest, LOG_TEXT_LIMIT),
                )
            )
            self._fail(now, actions, NON_SMTP_COMMAND, settings.early.nonSmtpCommandAction, _NON_SMTP_DROP)

        if name != b"BDAT" and self._active(PIPELINING) and self._buffer:
            actions.append(
                self._log(
                    COMMAND_PIPELINING_LOG_FORMAT,
                    command=escapeForLog(command, LOG_TEXT_LIMIT),
                    escaped=escapeForLog(bytes(self._buffer[:LOG_TEXT_LIMIT]), LOG_TEXT_LIMIT),
                )
            )
            self._fail(
                now, actions, PIPELINING, settings.early.pipeliningAction, f"521 {_PROTOCOL_ERROR_TEXT}"
            )

        for test, check in sorted(self._checks.items()):
            if self._active(test):
                self._runCheck(now, actions, test, check, name, line)

        if name == b"RCPT":
            # The deep tests pass once the client gets this far; a later
            # violation can still fail them.
            for test, check in self._checks.items():
                if test not in self._passed and test not in self._failed:
                    self._passed[test] = int(now) + int(check.ttl)
            ttls = {
                PIPELINING: settings.early.pipeliningTTL,
                NON_SMTP_COMMAND: settings.early.nonSmtpCommandTTL,
                BARE_NEWLINE: settings.early.bareNewlineTTL,
            }
            for test in DEEP_TESTS:
                if test in self._todo and test not in self._passed and test not in self._failed:
                    self._passed[test] = int(now) + int(ttls[test])

        self._count += 1
        if self._count > settings.commandCountLimit and name != b"QUIT":
            actions.append(self._log(COMMAND_COUNT_LIMIT_LOG_FORMAT, where=previous))
            raise self._end(now, actions, self._generic421())

        if known is None or not known[0]:
            actions.append(self._send(_NOT_RECOGNIZED))
            return
        if settings.tlsLevel == TLS_ENCRYPT and not self._tls and not known[1]:
            actions.append(self._send(_STARTTLS_FIRST))
            return
        handler = getattr(self, "_do_" + name.decode("ascii"))
        handler(now, rest, actions)

    def _runCheck(self, now: float, actions: list[Action], test: str, check: Any, verb: bytes, line: bytes) -> None:
        """
        Run a third-party after-greeting check on a command line; a check
        that raises is logged and decides nothing.

        @raise _Ended: when it fails with action C{drop}.
        """
        from ._checks import CheckFail

        try:
            outcome = check.command(self._client, verb, line)
        except Exception as error:
            actions.append(
                self._log(
                    CHECK_BROKEN_LOG_FORMAT, test=test, error=f"{type(error).__name__}: {error}"
                )
            )
            return
        if not isinstance(outcome, CheckFail):
            return
        actions.append(
            self._log(
                EXTRA_FAIL_LOG_FORMAT,
                test=test.upper(),
                reason=escapeForLog(outcome.reason, LOG_TEXT_LIMIT),
            )
        )
        self._skipped.add(test)
        self._passed.pop(test, None)
        action = str(check.action)
        if action == DROP:
            self._failed.add(test)
            raise self._end(now, actions, f"521 {outcome.reply}")
        if action == ENFORCE:
            self._failed.add(test)
            self._rcptReply = f"550 {outcome.reply}"
            return
        self._passed[test] = int(now) + int(self._settings.minTTL)

    def _do_HELO(self, now: float, args: bytes, actions: list[Action]) -> None:
        helo, _ = _nextToken(args)
        if helo is None:
            actions.append(self._send(_HELO_SYNTAX))
            return
        self._helo = helo
        self._sender = None
        actions.append(self._send(f"250 {self._settings.myhostname}"))

    def _do_EHLO(self, now: float, args: bytes, actions: list[Action]) -> None:
        helo, _ = _nextToken(args)
        if helo is None:
            actions.append(self._send(_EHLO_SYNTAX))
            return
        self._helo = helo
        self._sender = None
        self._protocol = "ESMTP"
        if self._ehloDiscardLog is not None:
            actions.append(self._log(EHLO_DISCARD_LOG_FORMAT, keywords=self._ehloDiscardLog))
        actions.append(Send(self._ehloReply()))

    def _ehloReply(self) -> bytes:
        settings = self._settings
        discard = self._discard
        keywords: list[str] = []
        if "SIZE" not in discard:
            size = settings.messageSizeLimit
            keywords.append(f"SIZE {size}" if size > 0 else "SIZE")
        if "VRFY" not in discard and not settings.disableVrfy:
            keywords.append("VRFY")
        if "ETRN" not in discard:
            keywords.append("ETRN")
        if not self._tls and self._starttlsOffered():
            keywords.append("STARTTLS")
        for keyword in ("ENHANCEDSTATUSCODES", "8BITMIME", "DSN"):
            if keyword not in discard:
                keywords.append(keyword)
        if settings.smtputf8 and "SMTPUTF8" not in discard:
            keywords.append("SMTPUTF8")
        if "CHUNKING" not in discard:
            keywords.append("CHUNKING")
        lines = [settings.myhostname, *keywords]
        text = "".join(
            f"250{' ' if index == len(lines) - 1 else '-'}{line}\r\n" for index, line in enumerate(lines)
        )
        return text.encode("utf-8", "surrogateescape")

    def _do_STARTTLS(self, now: float, args: bytes, actions: list[Action]) -> None:
        if _nextToken(args)[0] is not None:
            actions.append(self._send(_STARTTLS_SYNTAX))
            return
        if self._tls:
            actions.append(self._send(_TLS_ACTIVE))
            return
        if not self._starttlsOffered():
            actions.append(self._send(_NOT_IMPLEMENTED))
            return
        actions.append(self._send(_READY_TLS))
        # Plaintext pipelined after STARTTLS must never be read as if it
        # came over TLS (CVE-2011-0411, STARTTLS command injection).
        del self._buffer[:]
        self._phase = _Phase.AWAITING_TLS
        # Postfix suspends the engine's timer and leaves the handshake to
        # tlsproxy's; we bound it with the command time limit.
        self._deadline = now + self._settings.commandTimeLimit
        actions.append(StartTLS())
        actions.append(WaitUntil(self._deadline))

    def _do_MAIL(self, now: float, args: bytes, actions: list[Action]) -> None:
        if self._settings.heloRequired and self._helo is None:
            actions.append(self._send(_SEND_HELO_FIRST))
            return
        if self._sender is not None:
            actions.append(self._send(_NESTED_MAIL))
            return
        _, colon, address = args.partition(b":")
        if not colon:
            actions.append(self._send(_MAIL_SYNTAX))
            return
        self._sender = _extractAddress(address)
        actions.append(self._send(_MAIL_OK))

    def _do_RCPT(self, now: float, args: bytes, actions: list[Action]) -> None:
        if self._sender is None:
            actions.append(self._send(_NEED_MAIL))
            return
        _, colon, address = args.partition(b":")
        if not colon:
            actions.append(self._send(_RCPT_SYNTAX))
            return
        reply = self._rcptReply
        if self._settings.early.softBounce:
            reply = softBounced(reply)
        actions.append(
            self._log(
                RCPT_REJECT_LOG_FORMAT,
                reply=reply,
                sender=_logText(self._sender),
                recipient=_logText(_extractAddress(address)),
                protocol=self._protocol,
                helo=_logText(self._helo or b""),
            )
        )
        actions.append(self._send(reply))

    def _do_DATA(self, now: float, args: bytes, actions: list[Action]) -> None:
        # postscreen never sees DATA from a legitimate client (every RCPT
        # was rejected, PIPELINING is not offered): reply and hang up.
        actions.append(self._log(DATA_WITHOUT_RCPT_LOG_FORMAT))
        if _nextToken(args)[0] is not None:
            reply = _DATA_SYNTAX
        elif self._sender is None:
            reply = _NEED_RCPT
        else:
            reply = _NO_VALID_RECIPIENTS
        raise self._end(now, actions, reply)

    def _do_BDAT(self, now: float, args: bytes, actions: list[Action]) -> None:
        actions.append(self._log(BDAT_WITHOUT_RCPT_LOG_FORMAT))
        if "CHUNKING" in self._discard:
            reply = _NOT_IMPLEMENTED
        elif _nextToken(args)[0] is None:
            reply = _BDAT_SYNTAX
        elif self._sender is None:
            reply = _BDAT_NEED_MAIL
        else:
            reply = _NO_VALID_RECIPIENTS
        raise self._end(now, actions, reply)

    def _do_RSET(self, now: float, args: bytes, actions: list[Action]) -> None:
        self._sender = None
        actions.append(self._send(_OK))

    def _do_NOOP(self, now: float, args: bytes, actions: list[Action]) -> None:
        actions.append(self._send(_OK))

    def _do_VRFY(self, now: float, args: bytes, actions: list[Action]) -> None:
        if _nextToken(args)[0] is None:
            actions.append(self._send(_VRFY_SYNTAX))
        elif self._settings.disableVrfy:
            actions.append(self._send(_VRFY_DISABLED))
        else:
            actions.append(self._send(self._rcptReply))

    def _do_ETRN(self, now: float, args: bytes, actions: list[Action]) -> None:
        if self._settings.heloRequired and self._helo is None:
            actions.append(self._send(_SEND_HELO_FIRST))
        elif _nextToken(args)[0] is None:
            actions.append(self._send(_ETRN_SYNTAX))
        else:
            actions.append(self._send(_ETRN_REFUSED))

    def _do_QUIT(self, now: float, args: bytes, actions: list[Action]) -> None:
        raise self._end(now, actions, _BYE)


__all__ = [
    "Action",
    "Disconnect",
    "DummyEngine",
    "EngineSettings",
    "Send",
    "StartTLS",
]
