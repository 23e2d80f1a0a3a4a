# -*- test-case-name: tests.test_postscreen_early -*-
"""
postscreen's before-220 phase, sans I/O: the decisions Postfix's
C{psc_endpt_lookup_done} (C{postscreen.c}), C{postscreen_early.c} and
C{psc_conclude} (C{postscreen_tests.c}) make for one connection, from the
access list to the hand-off.

L{EarlySession} does no I/O, keeps no timers and reads no clock.  The
caller (postscreen's protocol) feeds it events with explicit times
(C{connected}, C{clientSpoke}, C{dnsblDone}, C{waitEnded}, C{hungUp}) and
executes the returned actions in order: L{Log}, L{SendTeaser},
L{StartDNSBL}, L{WaitUntil}, L{CacheUpdate} and one final action that ends
the phase, L{HandOff}, L{Drop} or L{EnterDummyEngine}.  After a final
action every further event returns no actions.

The session's phases, top to bottom::

    Connected --access permit----------------------------> HandedOff
              --access reject, denylist drop-------------> Dropped
              --all enabled tests cached (PASS OLD)------> HandedOff
              --nothing to test before 220, veto/enforce-> InEngine
              --tests to run-----------------------------> Waiting
    Waiting   --clientSpoke, pregreet drop---------------> Dropped
              --clientSpoke, DNSBL not pending-----------> (conclude)
              --dnsblDone, pregreet not pending----------> (conclude)
              --waitEnded--------------------------------> (conclude)
              --hungUp-----------------------------------> Closed
    (conclude) --DNSBL fail, drop------------------------> Dropped
               --a failure kept, veto, deep tests--------> InEngine
               --otherwise-------------------------------> HandedOff
"""

from __future__ import annotations

import enum
from typing import Any, Mapping, Optional, Union

import attr

from ..config import ParameterView, params
from ..smtp._escape import escapeForLog
from ._access import Access
from ._cache import Verdicts
from ._dnsbl import RANK_LOG_FORMAT, ReplyMap, rejectReply, verdict

#: The actions a before-220 test may be configured with.
IGNORE = "ignore"
ENFORCE = "enforce"
DROP = "drop"

#: Test names, in Postfix's cache order (the fields of L{Verdicts}).
PREGREET = "pregreet"
DNSBL = "dnsbl"
PIPELINING = "pipelining"
NON_SMTP_COMMAND = "non_smtp_command"
BARE_NEWLINE = "bare_newline"
TESTS = (PREGREET, DNSBL, PIPELINING, NON_SMTP_COMMAND, BARE_NEWLINE)
DEEP_TESTS = (PIPELINING, NON_SMTP_COMMAND, BARE_NEWLINE)

#: Test-specific reply texts after the code (Postfix's postscreen*.c).
DENYLIST_REPLY_TEXT = "5.3.2 Service currently unavailable"
PREGREET_REPLY_TEXT = "5.5.1 Protocol error"

#: The code of a reply sent before hanging up (C{drop}) and of the reply
#: the dummy engine gives every RCPT (C{enforce}).
DROP_CODE = 521
ENFORCE_CODE = 550

#: Log formats (for the project's Logger) that render to Postfix's text.
ALLOWLISTED_LOG_FORMAT = "ALLOWLISTED [{address}]:{port}"
WHITELISTED_LOG_FORMAT = "WHITELISTED [{address}]:{port}"
DENYLISTED_LOG_FORMAT = "DENYLISTED [{address}]:{port}"
BLACKLISTED_LOG_FORMAT = "BLACKLISTED [{address}]:{port}"
ALLOWLIST_VETO_LOG_FORMAT = "ALLOWLIST VETO [{address}]:{port}"
WHITELIST_VETO_LOG_FORMAT = "WHITELIST VETO [{address}]:{port}"
PASS_NEW_LOG_FORMAT = "PASS NEW [{address}]:{port}"
PASS_OLD_LOG_FORMAT = "PASS OLD [{address}]:{port}"
PREGREET_LOG_FORMAT = "PREGREET {count} after {delay} from [{address}]:{port}: {escaped}"
HANGUP_LOG_FORMAT = "HANGUP after {delay} from [{address}]:{port} in {where}"
HANGUP_BEFORE_HANDSHAKE = "tests before SMTP handshake"

#: How much of the escaped pregreet text is logged (Postfix's C{%.100s}).
PREGREET_LOG_LIMIT = 100


def softBounced(reply: str) -> str:
    """
    The reply as C{soft_bounce = yes} sends it: a 5 in the reply code and
    in the enhanced status code becomes a 4, as Postfix's postscreen does.

    >>> softBounced("521 5.5.1 Protocol error")
    '421 4.5.1 Protocol error'
    """
    if reply[:1] == "5":
        reply = "4" + reply[1:]
    if reply[4:5] == "5" and reply[5:6] == ".":
        reply = reply[:4] + "4" + reply[5:]
    return reply


def formatDelay(seconds: float) -> str:
    """
    An elapsed time as Postfix's postscreen logs it (C{format_tv} with 2
    significant digits and at most C{delay_logging_resolution_limit} = 2
    decimals): C{0.4}, C{1.5}, C{12}.
    """
    total = max(0, round(seconds * 1_000_000))
    sec, usec = divmod(total, 1_000_000)
    million = 1_000_000
    significant = 2
    resolution = million // 10**2
    width = 10**significant
    if sec > 0:
        n = 1
        while sec >= n and n <= width // 10:
            n *= 10
        resolution = (million // width) * n
    else:
        while usec >= width * resolution:
            width *= 10
    if resolution > 1:
        usec += resolution // 2
        if usec >= million:
            sec += 1
            usec -= million
    text = str(sec)
    if usec >= resolution:
        digits = []
        rem, n = usec, million // 10
        while rem >= resolution and n > 0:
            digits.append("0123456789"[rem // n])
            rem %= n
            n //= 10
        text += "." + "".join(digits)
    return text


@attr.frozen
class ExtraTest:
    """
    A third-party check (an L{IConfiguredCheck} plugin), as the session
    sees it.

    @ivar name: its name (cache key; upper-cased in log lines).
    @ivar action: C{ignore}, C{enforce} or C{drop}.
    @ivar ttl: seconds a pass is cached unless the check says otherwise.
    """

    name: str
    action: str
    ttl: float
    #: Whether it runs in the dummy SMTP engine (after the greeting)
    #: rather than during the greeting wait.
    afterGreeting: bool = False


#: How a failed third-party check is logged.
EXTRA_FAIL_LOG_FORMAT = "{test} from [{address}]:{port}: {reason}"


@attr.frozen
class EarlySettings:
    """
    The parameters of the before-220 phase, read once per connection (they
    depend on stress mode).

    @ivar greetBanner: C{postscreen_greet_banner}; empty disables the
        pregreet test.
    @ivar greetWait: C{postscreen_greet_wait}, seconds.
    @ivar greetAction: C{postscreen_greet_action}.
    @ivar dnsblAction: C{postscreen_dnsbl_action}.
    @ivar denylistAction: C{postscreen_denylist_action}.
    @ivar dnsblEnabled: whether C{postscreen_dnsbl_sites} is non-empty.
    @ivar dnsblThreshold: C{postscreen_dnsbl_threshold}.
    @ivar dnsblAllowlistThreshold: C{postscreen_dnsbl_allowlist_threshold}.
    @ivar greetTTL: C{postscreen_greet_ttl}, seconds.
    @ivar dnsblMinTTL: C{postscreen_dnsbl_min_ttl}, seconds; also the TTL
        of a DNSBL pass when no answer came in before the wait ended.
    @ivar dnsblMaxTTL: C{postscreen_dnsbl_max_ttl}, seconds.
    @ivar pipeliningEnabled: C{postscreen_pipelining_enable}.
    @ivar pipeliningAction: C{postscreen_pipelining_action}.
    @ivar pipeliningTTL: C{postscreen_pipelining_ttl}.
    @ivar nonSmtpCommandEnabled: C{postscreen_non_smtp_command_enable}.
    @ivar nonSmtpCommandAction: C{postscreen_non_smtp_command_action}.
    @ivar nonSmtpCommandTTL: C{postscreen_non_smtp_command_ttl}.
    @ivar bareNewlineEnabled: C{postscreen_bare_newline_enable}.
    @ivar bareNewlineAction: C{postscreen_bare_newline_action}.
    @ivar bareNewlineTTL: C{postscreen_bare_newline_ttl}.
    @ivar softBounce: C{soft_bounce}.
    @ivar respectfulLogging: C{respectful_logging}.
    @ivar dnsblReplyMap: C{postscreen_dnsbl_reply_map}, opened by the
        caller, or L{None}.
    """

    greetBanner: str = ""
    greetWait: float = 6.0
    greetAction: str = IGNORE
    dnsblAction: str = IGNORE
    denylistAction: str = IGNORE
    dnsblEnabled: bool = False
    dnsblThreshold: int = 1
    dnsblAllowlistThreshold: int = 0
    greetTTL: float = 86400.0
    dnsblMinTTL: float = 60.0
    dnsblMaxTTL: float = 3600.0
    pipeliningEnabled: bool = False
    pipeliningAction: str = ENFORCE
    pipeliningTTL: float = 30 * 86400.0
    nonSmtpCommandEnabled: bool = False
    nonSmtpCommandAction: str = DROP
    nonSmtpCommandTTL: float = 30 * 86400.0
    bareNewlineEnabled: bool = False
    bareNewlineAction: str = IGNORE
    bareNewlineTTL: float = 30 * 86400.0
    softBounce: bool = False
    respectfulLogging: bool = True
    dnsblReplyMap: Optional[ReplyMap] = attr.field(default=None, eq=False)
    extras: tuple[ExtraTest, ...] = ()

    @classmethod
    def fromView(cls, view: ParameterView, *, dnsblReplyMap: Optional[ReplyMap] = None) -> EarlySettings:
        """
        Read the settings from C{view} as it is now (so C{view.stress}
        decides the stress-dependent values such as C{postscreen_greet_wait}).

        @raise mtaguard.config.ParameterError: for a bad value.
        """
        return cls(
            greetBanner=view[params.postscreen_greet_banner],
            greetWait=float(view[params.postscreen_greet_wait]),
            greetAction=view[params.postscreen_greet_action],
            dnsblAction=view[params.postscreen_dnsbl_action],
            denylistAction=view[params.postscreen_denylist_action],
            dnsblEnabled=bool(view[params.postscreen_dnsbl_sites]),
            dnsblThreshold=view[params.postscreen_dnsbl_threshold],
            dnsblAllowlistThreshold=view[params.postscreen_dnsbl_allowlist_threshold],
            greetTTL=float(view[params.postscreen_greet_ttl]),
            dnsblMinTTL=float(view[params.postscreen_dnsbl_min_ttl]),
            dnsblMaxTTL=float(view[params.postscreen_dnsbl_max_ttl]),
            pipeliningEnabled=view[params.postscreen_pipelining_enable],
            pipeliningAction=view[params.postscreen_pipelining_action],
            pipeliningTTL=float(view[params.postscreen_pipelining_ttl]),
            nonSmtpCommandEnabled=view[params.postscreen_non_smtp_command_enable],
            nonSmtpCommandAction=view[params.postscreen_non_smtp_command_action],
            nonSmtpCommandTTL=float(view[params.postscreen_non_smtp_command_ttl]),
            bareNewlineEnabled=view[params.postscreen_bare_newline_enable],
            bareNewlineAction=view[params.postscreen_bare_newline_action],
            bareNewlineTTL=float(view[params.postscreen_bare_newline_ttl]),
            softBounce=view[params.soft_bounce],
            respectfulLogging=view[params.respectful_logging],
            dnsblReplyMap=dnsblReplyMap,
        )

    #: The enabled built-in tests, in L{TESTS} order, as the cache's
    #: positions (index into L{Verdicts.times}); computed once, since every
    #: connection asks.
    _enabledPositions: tuple[int, ...] = attr.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        flags = (
            bool(self.greetBanner),
            self.dnsblEnabled,
            self.pipeliningEnabled,
            self.nonSmtpCommandEnabled,
            self.bareNewlineEnabled,
        )
        object.__setattr__(
            self, "_enabledPositions", tuple(index for index, flag in enumerate(flags) if flag)
        )

    def enabled(self, test: str) -> bool:
        """
        Whether C{test} (one of L{TESTS}) is enabled.
        """
        return TESTS.index(test) in self._enabledPositions

    def enabledTests(self) -> list[str]:
        """
        The enabled built-in tests, in L{TESTS} order.
        """
        return [TESTS[index] for index in self._enabledPositions]

    def passOld(self, cached: Verdicts, now: float) -> bool:
        """
        Whether a client whose cache entry is C{cached} still holds a pass
        of every enabled test, built-in and third-party, before and after
        the greeting: Postfix's C{PASS OLD}, with no test to run.
        """
        times = cached.times()
        for index in self._enabledPositions:
            if times[index] <= now:
                return False
        if self.extras:
            for extra in self.extras:
                if cached.extraTime(extra.name) <= now:
                    return False
        return True

    def reply(self, code: int, text: str) -> str:
        """
        A reply C{code text} without CRLF, soft-bounced if C{soft_bounce}.
        """
        line = f"{code} {text}"
        return softBounced(line) if self.softBounce else line


# Actions -------------------------------------------------------------------


@attr.frozen
class Log:
    """
    Log one line.

    @ivar format: a Logger format string that renders to Postfix's
        text (one of the C{*_LOG_FORMAT} constants).
    @ivar fields: the raw values; peer text is already escaped.
    """

    format: str
    fields: Mapping[str, Any] = attr.field(hash=False)

    @property
    def text(self) -> str:
        """
        The line as Postfix logs it (without syslog prefix).
        """
        return self.format.format(**self.fields)


@attr.frozen
class SendTeaser:
    """
    Write C{data} (the C{220-} first line of a multi-line greeting).
    """

    data: bytes


@attr.frozen
class StartDNSBL:
    """
    Start the DNSBL lookups for the client; report with
    L{EarlySession.dnsblDone}.
    """


@attr.frozen
class StartCheck:
    """
    Run the third-party check C{name}; report with
    L{EarlySession.checkDone}.
    """

    name: str


@attr.frozen
class WaitUntil:
    """
    Call L{EarlySession.waitEnded} at time C{deadline} unless the session
    ended before.
    """

    deadline: float


@attr.frozen
class CacheUpdate:
    """
    Store C{verdicts} for the client in the verdict cache.
    """

    verdicts: Verdicts


@attr.frozen
class HandOff:
    """
    Final: hand the connection to smtpd.  Bytes the client sent during the
    phase stay unread, for smtpd.

    @ivar teaserSent: whether C{220-} went out, so smtpd's C{220 } greeting
        completes it.
    """

    teaserSent: bool


@attr.frozen
class Drop:
    """
    Final: write C{reply} and disconnect.
    """

    reply: bytes


@attr.frozen
class EnterDummyEngine:
    """
    Final: run the dummy SMTP engine (the client is never handed off in this
    session).

    @ivar replies: the C{enforce} replies (without CRLF, soft-bounced when
        configured) of the tests that failed, in order; empty when nothing
        failed.
    @ivar teaserSent: whether C{220-} went out.
    @ivar pregreeted: whether the client talked before the greeting; such a
        client never gets a final C{220 }.
    @ivar deepTests: the after-220 tests to run (all three, for logging,
        when a test failed).
    @ivar verdicts: the expiry times so far, for the cache update at the
        engine's end when every remaining test passed.
    @ivar failed: whether a test failed (then nothing may be cached).
    @ivar vetoed: whether C{postscreen_allowlist_interfaces} vetoed.
    """

    replies: tuple[str, ...]
    teaserSent: bool
    pregreeted: bool
    deepTests: tuple[str, ...]
    verdicts: Verdicts
    failed: bool
    vetoed: bool

    @property
    def rcptReply(self) -> str:
        """
        The reply for every RCPT: the last C{enforce} reply, else Postfix's
        C{450 4.3.2 Service currently unavailable}.
        """
        return self.replies[-1] if self.replies else "450 4.3.2 Service currently unavailable"


Action = Union[SendTeaser, StartDNSBL, StartCheck, WaitUntil, Log, CacheUpdate, HandOff, Drop, EnterDummyEngine]


class _Phase(enum.Enum):
    NEW = "new"
    WAITING = "waiting"
    DONE = "done"


@attr.frozen
class _DNSBLResult:
    score: int
    ttl: float
    listedBy: Optional[str]


class EarlySession:
    """
    The before-220 decisions for one connection.
    """

    def __init__(
        self,
        settings: EarlySettings,
        *,
        clientAddress: str,
        clientPort: int,
        serverAddress: str,
        serverPort: int,
    ) -> None:
        self._settings = settings
        self.clientAddress = clientAddress
        self.clientPort = clientPort
        self.serverAddress = serverAddress
        self.serverPort = serverPort
        self._phase = _Phase.NEW
        self._start = 0.0
        self._todo: set[str] = set()
        self._passed: dict[str, int] = {}
        self._failed: set[str] = set()
        self._replies: list[str] = []
        self._expiry: dict[str, int] = {test: 0 for test in TESTS}
        self._teaserSent = False
        self._pregreeted = False
        self._vetoed = False
        self._dnsbl: Optional[_DNSBLResult] = None
        # Sorted once here (settings.extras is in name order already).
        self._extras = {extra.name: extra for extra in settings.extras if not extra.afterGreeting}
        self._deepExtras = tuple(extra.name for extra in settings.extras if extra.afterGreeting)
        self._extraResults: dict[str, Optional[tuple[bool, str, str, float]]] = {}

    # Helpers -------------------------------------------------------------

    def _log(self, format: str, **fields: Any) -> Log:
        return Log(format, {"address": self.clientAddress, "port": self.clientPort, **fields})

    def _finish(self, action: Action) -> Action:
        self._phase = _Phase.DONE
        return action

    def _drop(self, text: str) -> Drop:
        reply = self._settings.reply(DROP_CODE, text)
        self._phase = _Phase.DONE
        return Drop((reply + "\r\n").encode("ascii"))

    def _enforce(self, text: str) -> None:
        self._replies.append(self._settings.reply(ENFORCE_CODE, text))

    def _handOffOrEngine(self) -> Action:
        deep = tuple(
            test for test in (*DEEP_TESTS, *self._deepExtras) if test in self._todo and test not in self._passed
        )
        if self._failed:
            # Postfix enables all after-220 tests for a failing client.
            deep = (*DEEP_TESTS, *self._deepExtras)
        if self._failed or self._vetoed or deep:
            return self._finish(
                EnterDummyEngine(
                    replies=tuple(self._replies),
                    teaserSent=self._teaserSent,
                    pregreeted=self._pregreeted,
                    deepTests=deep,
                    verdicts=self._verdicts(),
                    failed=bool(self._failed),
                    vetoed=self._vetoed,
                )
            )
        return self._finish(HandOff(teaserSent=self._teaserSent))

    def _verdicts(self) -> Verdicts:
        times = []
        for test in TESTS:
            if test in self._passed:
                times.append(self._passed[test])
            elif self._expiry[test] > 1:
                times.append(self._expiry[test])
            else:
                times.append(0 if self._settings.enabled(test) else 1)
        extra = []
        for name in sorted([*self._extras, *self._deepExtras]) if self._extras or self._deepExtras else ():
            if name in self._passed:
                extra.append((name, self._passed[name]))
            elif self._expiry.get(name, 0) > 1:
                extra.append((name, self._expiry[name]))
            else:
                extra.append((name, 0))
        a, b, c, d, e = times
        return Verdicts(a, b, c, d, e, extra=tuple(extra))

    def _asyncPending(self) -> bool:
        if DNSBL in self._todo and self._dnsbl is None:
            return True
        return any(name in self._todo and name not in self._extraResults for name in self._extras)

    def _elapsed(self, now: float) -> str:
        return formatDelay(now - self._start)

    # Events --------------------------------------------------------------

    def connected(
        self,
        now: float,
        *,
        access: Access,
        cached: Optional[Verdicts],
        allowlistVeto: bool,
        shared: bool = False,
    ) -> list[Action]:
        """
        The connection is accepted and the access list consulted (steps 4
        to 8 of Postfix's processing order; the caller handles the limits
        of steps 2, 3 and 7 and logs C{CONNECT}).

        @param access: L{AccessList.decide}'s answer for the client.
        @param cached: the client's cache entry, or L{None} when there is
            none (or this is not the IP's only session, when Postfix does
            not consult the cache).
        @param allowlistVeto: whether the server address fails
            C{postscreen_allowlist_interfaces}.
        @param shared: whether C{cached} is the state of another open
            session of the same client rather than the cache's entry: a
            client that passed is then handed off without C{PASS OLD}, as
            Postfix does (it logs C{PASS OLD} only after a cache lookup).
        """
        if self._phase is not _Phase.NEW:
            return []
        self._start = now
        settings = self._settings
        respectful = settings.respectfulLogging
        actions: list[Action] = []
        if access is Access.PERMIT:
            actions.append(self._log(ALLOWLISTED_LOG_FORMAT if respectful else WHITELISTED_LOG_FORMAT))
            actions.append(self._finish(HandOff(teaserSent=False)))
            return actions
        if access is Access.REJECT:
            actions.append(self._log(DENYLISTED_LOG_FORMAT if respectful else BLACKLISTED_LOG_FORMAT))
            if settings.denylistAction == DROP:
                actions.append(self._drop(DENYLIST_REPLY_TEXT))
                return actions
            if settings.denylistAction == ENFORCE:
                self._failed.add("denylist")
                self._enforce(DENYLIST_REPLY_TEXT)
            # ignore: un-fail, not marked passed; the tests run as usual.
        enabled = settings.enabledTests()
        if not self._failed and cached is not None:
            if not allowlistVeto and settings.passOld(cached, now):
                if not shared:
                    actions.append(self._log(PASS_OLD_LOG_FORMAT))
                actions.append(self._finish(HandOff(teaserSent=False)))
                return actions
            self._expiry = dict(zip(TESTS, cached.times()))
            for name in (*self._extras, *self._deepExtras):
                self._expiry[name] = cached.extraTime(name)
            enabled.extend([*self._extras, *self._deepExtras])
            self._todo = {test for test in enabled if self._expiry[test] <= now}
        else:
            self._todo = set(enabled) | set(self._extras) | set(self._deepExtras)
        if allowlistVeto:
            self._vetoed = True
            actions.append(
                self._log(ALLOWLIST_VETO_LOG_FORMAT if respectful else WHITELIST_VETO_LOG_FORMAT)
            )
        if PREGREET in self._todo:
            banner = settings.greetBanner.encode("utf-8", "surrogateescape")
            actions.append(SendTeaser(b"220-" + banner + b"\r\n"))
            self._teaserSent = True
        if DNSBL in self._todo:
            actions.append(StartDNSBL())
        extras = [name for name in self._extras if name in self._todo]
        actions.extend(StartCheck(name) for name in extras)
        if PREGREET in self._todo or DNSBL in self._todo or extras:
            self._phase = _Phase.WAITING
            actions.append(WaitUntil(now + settings.greetWait))
            return actions
        actions.append(self._handOffOrEngine())
        return actions

    def clientSpoke(self, now: float, data: bytes) -> list[Action]:
        """
        The client sent C{data} during the greet wait.  While the pregreet
        test is pending this fails it (once); otherwise the bytes are left
        for whoever reads next (smtpd or the dummy engine).
        """
        if self._phase is not _Phase.WAITING or not data:
            return []
        if PREGREET not in self._todo or self._pregreeted:
            return []
        self._pregreeted = True
        escaped = escapeForLog(data, limit=len(data))[:PREGREET_LOG_LIMIT]
        actions: list[Action] = [
            self._log(PREGREET_LOG_FORMAT, count=len(data), delay=self._elapsed(now), escaped=escaped)
        ]
        action = self._settings.greetAction
        if action == DROP:
            actions.append(self._drop(PREGREET_REPLY_TEXT))
            return actions
        if action == ENFORCE:
            self._failed.add(PREGREET)
            self._enforce(PREGREET_REPLY_TEXT)
        # ignore: un-fail, not passed: the test repeats next time.
        if not self._asyncPending():
            actions.extend(self._conclude(now))
        return actions

    def dnsblDone(self, now: float, score: int, ttl: float, listedBy: Optional[str]) -> list[Action]:
        """
        The DNSBL lookups are complete.

        @param score: the combined score (L{_dnsbl.evaluate}).
        @param ttl: the cache TTL of the result, already bounded by
            C{postscreen_dnsbl_min_ttl}/C{max_ttl} (L{_dnsbl.resultTTL}).
        @param listedBy: the domain to name in a reject reply (the one with
            the highest matching weight), or L{None}.
        """
        if self._phase is not _Phase.WAITING or DNSBL not in self._todo or self._dnsbl is not None:
            return []
        self._dnsbl = _DNSBLResult(score, ttl, listedBy)
        return self._maybeConclude(now)

    def checkDone(
        self, now: float, name: str, passed: Optional[bool], *, reason: str = "", reply: str = "", ttl: Optional[float] = None
    ) -> list[Action]:
        """
        The third-party check C{name} answered.

        @param passed: C{True} (pass), C{False} (fail), or L{None} (no
            result: the check broke; nothing is cached or enforced).
        @param reason: the failure's log text (already escaped).
        @param reply: the failure's reply text after the code.
        @param ttl: the pass's TTL, or L{None} for the configured one.
        """
        if self._phase is not _Phase.WAITING or name not in self._todo or name in self._extraResults:
            return []
        extra = self._extras[name]
        if passed is None:
            self._extraResults[name] = None
        else:
            self._extraResults[name] = (passed, reason, reply, extra.ttl if ttl is None else ttl)
        return self._maybeConclude(now)

    def _maybeConclude(self, now: float) -> list[Action]:
        if PREGREET in self._todo and not self._pregreeted:
            # A pending pregreet test always waits the full greet wait.
            return []
        if self._asyncPending():
            return []
        return self._conclude(now)

    def waitEnded(self, now: float) -> list[Action]:
        """
        The greet wait (L{WaitUntil}) is over: decide.
        """
        if self._phase is not _Phase.WAITING:
            return []
        return self._conclude(now)

    def hungUp(self, now: float) -> list[Action]:
        """
        The client hung up before the phase ended: log it; no penalty,
        nothing cached.
        """
        if self._phase is not _Phase.WAITING:
            self._phase = _Phase.DONE
            return []
        self._phase = _Phase.DONE
        return [self._log(HANGUP_LOG_FORMAT, delay=self._elapsed(now), where=HANGUP_BEFORE_HANDSHAKE)]

    # Conclusion ----------------------------------------------------------

    def _conclude(self, now: float) -> list[Action]:
        # Postfix's psc_early_event at the end of the wait, then
        # psc_conclude or the dummy engine.
        settings = self._settings
        actions: list[Action] = []
        stamp = int(now)
        outcome = "pass"
        if DNSBL in self._todo:
            result = self._dnsbl
            if result is None:
                # No answer before the wait ended: Postfix scores what it
                # has (nothing); we keep that pass short.
                result = _DNSBLResult(0, settings.dnsblMinTTL, None)
            outcome = verdict(result.score, settings.dnsblThreshold, settings.dnsblAllowlistThreshold)
            if outcome == "fail":
                actions.append(self._log(RANK_LOG_FORMAT, rank=result.score))
                reply = rejectReply(
                    ENFORCE_CODE, self.clientAddress, result.listedBy or "", settings.dnsblReplyMap
                )
                text = reply.split(" ", 1)[1]
                if settings.dnsblAction == DROP:
                    actions.append(self._drop(text))
                    return actions
                if settings.dnsblAction == ENFORCE:
                    self._failed.add(DNSBL)
                    self._enforce(text)
                # ignore: un-fail, not passed: the test repeats next time.
            else:
                self._passed[DNSBL] = stamp + int(result.ttl)
        for name in self._extras:
            if name not in self._todo:
                continue
            answer = self._extraResults.get(name)
            if answer is None:
                continue
            passed, reason, reply, ttl = answer
            if passed:
                self._passed[name] = stamp + int(ttl)
                continue
            actions.append(self._log(EXTRA_FAIL_LOG_FORMAT, test=name.upper(), reason=reason))
            action = self._extras[name].action
            if action == DROP:
                actions.append(self._drop(reply))
                return actions
            if action == ENFORCE:
                self._failed.add(name)
                self._enforce(reply)
        if PREGREET in self._todo and not self._pregreeted:
            self._passed[PREGREET] = stamp + int(settings.greetTTL)
        if DNSBL in self._passed and not self._failed and outcome == "allowlist":
            # Postfix's psc_whitelist_non_dnsbl: every other test, pending
            # or disabled, passes until at least the DNS TTL, and the deep
            # tests are skipped.
            until = self._passed[DNSBL]
            for test in (*TESTS, *self._extras, *self._deepExtras):
                if test != DNSBL:
                    self._passed[test] = max(self._passed.get(test, self._expiry.get(test, 0)), until)
        final = self._handOffOrEngine()
        if isinstance(final, HandOff):
            if self._todo and all(test in self._passed for test in self._todo):
                actions.append(self._log(PASS_NEW_LOG_FORMAT))
            if self._passed and not self._failed:
                actions.append(CacheUpdate(self._verdicts()))
        actions.append(final)
        return actions
