"""
Tests for L{mtaguard.postconf._main} and L{mtaguard.config._known}: main.cf
queries and edits, compared byte for byte with the real Postfix 3.7
C{postconf} (golden tests) where it is installed.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from typing import Mapping, Optional, Sequence

from twisted.trial.unittest import SynchronousTestCase

import mtaguard.config._compat  # noqa: F401  (fills the registry)
from mtaguard.config._known import (
    knownNames,
    serviceParameters,
    unusedParameters,
)
from mtaguard.config._maincf import Setting
from mtaguard.config._registry import registry
from mtaguard.postconf import main
from mtaguard.postconf._main import formatLine, rewriteMainCf, splitNameValue

POSTCONF = "/usr/sbin/postconf"
MASTER_CF_DIST = "/usr/share/postfix/master.cf.dist"

#: A realistic main.cf: comments, indented comments inside continuations,
#: continuation lines, "name=value" without blanks, a duplicate, user
#: parameters with and without a $reference, stress-dependent names.
REALISTIC_MAIN_CF = """\
# main.cf for the golden tests
# (comment line 2)
compatibility_level = 3.7
myhostname = mx.example.com
mydomain=example.com
mynetworks = 127.0.0.0/8
    [::1]/128
  # a comment inside the continuation
    192.168.0.0/16

# relay settings
smtpd_relay_restrictions = permit_mynetworks,
    permit_sasl_authenticated,
    defer_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, reject_rbl_client zen.spamhaus.org, reject_rhsbl_sender dbl.spamhaus.org, check_policy_service unix:private/policy
message_size_limit=20480000
smtpd_banner = $myhostname   ESMTP    $mail_name
my_custom_param = $myhostname
my_referenced = referenced.example
smtpd_helo_required = $my_referenced
relay_destination_concurrency_limit = 5
mydomain = second.example
"""


def requirePostconf(testCase: SynchronousTestCase) -> None:
    """
    Skip the calling test when the real postconf is missing, except on CI
    (C{CI=true}), where a missing oracle is a failure.

    @param testCase: the running test.
    """
    if os.path.exists(POSTCONF) and os.path.exists(MASTER_CF_DIST):
        return
    if os.environ.get("CI") == "true":
        testCase.fail(f"{POSTCONF} (Postfix 3.7) is required on CI")
    from twisted.trial.unittest import SkipTest

    raise SkipTest(f"{POSTCONF} is not installed")


def makeConfig(
    testCase: SynchronousTestCase, mainCf: Optional[str] = "", master: bool = True
) -> str:
    """
    Create a configuration directory.

    @param testCase: the running test (for C{mktemp}).
    @param mainCf: the main.cf text, or L{None} for no main.cf.
    @param master: whether to install Debian's master.cf.
    @return: the directory.
    """
    directory = os.path.abspath(testCase.mktemp())
    os.makedirs(directory)
    if mainCf is not None:
        with open(os.path.join(directory, "main.cf"), "w") as handle:
            handle.write(mainCf)
    if master and os.path.exists(MASTER_CF_DIST):
        shutil.copy(MASTER_CF_DIST, os.path.join(directory, "master.cf"))
    return directory


def runReal(directory: str, args: Sequence[str]) -> tuple[int, str, str]:
    """
    Run the real postconf with C{-c directory}.
    """
    process = subprocess.run(
        ["postconf", "-c", directory, *args],
        executable=POSTCONF,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C"},
    )
    return process.returncode, process.stdout, process.stderr


def runOurs(
    directory: Optional[str],
    args: Sequence[str],
    environ: Optional[Mapping[str, str]] = None,
) -> tuple[int, str, str]:
    """
    Run C{mtaguard-postconf} in-process, with C{-c directory} unless
    C{directory} is L{None}.
    """
    out = io.StringIO()
    err = io.StringIO()
    prefix = [] if directory is None else ["-c", directory]
    status = main([*prefix, *args], out=out, err=err, environ=environ or {})
    return status, out.getvalue(), err.getvalue()


#: Lines that differ by design: this process's id and name, the parameters
#: whose mtaguard default deliberately differs (registry note), and
#: mtaguard's own parameters, which Postfix does not have.
_DIFFERENT = frozenset({"process_id", "process_name"}) | frozenset(
    parameter.name for parameter in registry if parameter.note or not parameter.postfix
)


def _comparable(output: str) -> str:
    return "".join(
        line
        for line in output.splitlines(True)
        if line.split("=", 1)[0].strip() not in _DIFFERENT
    )


def _messages(stderr: str, program: str) -> set[str]:
    prefix = f"{program}: "
    found = set()
    for line in stderr.splitlines():
        assert line.startswith(prefix), line
        found.add(line[len(prefix) :])
    return found


class GoldenMixin(SynchronousTestCase):
    """
    Run the same command with the real postconf and with ours, each on its
    own copy of the same configuration, and compare everything.
    """

    def golden(
        self,
        args: Sequence[str],
        mainCf: Optional[str] = "",
        master: bool = True,
    ) -> tuple[str, str]:
        """
        Compare exit status, standard output (byte for byte, after mapping
        the directory name), the set of diagnostics and the main.cf bytes
        afterwards.

        @return: both configuration directories (real, ours).
        """
        requirePostconf(self)
        real = makeConfig(self, mainCf, master)
        ours = makeConfig(self, mainCf, master)
        realStatus, realOut, realErr = runReal(real, args)
        ourStatus, ourOut, ourErr = runOurs(ours, args)
        realOut = realOut.replace(real, ours)
        realErr = realErr.replace(real, ours)
        self.assertEqual(
            (realStatus, _comparable(realOut)),
            (ourStatus, _comparable(ourOut)),
            f"postconf {' '.join(args)}: {realErr!r} / {ourErr!r}",
        )
        realMessages = _messages(realErr, "postconf")
        ourMessages = _messages(ourErr, "mtaguard-postconf")
        # Postfix reads main.cf twice into the same table, so a duplicate
        # also earns a spurious "line 1: overriding" for the re-read; ours
        # must be among Postfix's.
        overriding = "overriding earlier entry"
        self.assertEqual(
            {m for m in realMessages if overriding not in m},
            {m for m in ourMessages if overriding not in m},
        )
        self.assertTrue(
            {m for m in ourMessages if overriding in m}
            <= {m for m in realMessages if overriding in m}
        )
        if mainCf is not None:
            with open(os.path.join(real, "main.cf"), "rb") as handle:
                realMain = handle.read()
            with open(os.path.join(ours, "main.cf"), "rb") as handle:
                ourMain = handle.read()
            self.assertEqual(realMain, ourMain)
        return real, ours


class GoldenQueryTests(GoldenMixin):
    """
    Queries answer exactly as Postfix's postconf does.
    """

    def test_fullListingEmptyMainCf(self) -> None:
        """
        With no option, every parameter is listed: all 1043 lines of
        Postfix's listing (built-in and service-derived names) match.
        """
        self.golden([])

    def test_fullListingRealistic(self) -> None:
        """
        The full listing of a realistic main.cf, with user-defined names,
        continuation lines and a set service-derived name, matches, as do
        the warnings (overriding, unused).
        """
        self.golden([], REALISTIC_MAIN_CF)

    def test_nonDefault(self) -> None:
        """
        C{-n} lists what main.cf sets, plus C{config_directory} under C{-c}.
        """
        self.golden(["-n"], REALISTIC_MAIN_CF)
        self.golden(["-n"])

    def test_nonDefaultFolded(self) -> None:
        """
        C{-nf} folds long values at 80 columns with a 4-space indent.
        """
        self.golden(["-nf"], REALISTIC_MAIN_CF)

    def test_folded(self) -> None:
        """
        C{-f} folds the full listing exactly like Postfix.
        """
        self.golden(["-f"], REALISTIC_MAIN_CF)

    def test_defaults(self) -> None:
        """
        C{-d} prints built-in defaults, named or all, ignoring main.cf.
        """
        self.golden(["-d", "mail_version", "smtpd_timeout", "myhostname"], REALISTIC_MAIN_CF)
        self.golden(["-d"], REALISTIC_MAIN_CF)

    def test_valuesOnly(self) -> None:
        """
        C{-h} and C{-hd} print values without names.
        """
        self.golden(["-h", "myhostname", "mynetworks", "smtpd_banner"], REALISTIC_MAIN_CF)
        self.golden(["-hd", "smtpd_timeout"], REALISTIC_MAIN_CF)

    def test_namesOnly(self) -> None:
        """
        C{-H} and C{-nH} print names without values.
        """
        self.golden(["-nH"], REALISTIC_MAIN_CF)
        self.golden(["-H"], REALISTIC_MAIN_CF)

    def test_expand(self) -> None:
        """
        C{-x} expands C{$name} recursively, in the full listing too.
        """
        self.golden(["-x", "smtpd_banner", "smtpd_helo_required", "smtpd_timeout"], REALISTIC_MAIN_CF)
        self.golden(["-x"], REALISTIC_MAIN_CF)
        self.golden(["-dx"])

    def test_expandStress(self) -> None:
        """
        C{-o stress=yes -x} gives the overload values.
        """
        self.golden(
            [
                "-o",
                "stress=yes",
                "-x",
                "smtpd_timeout",
                "smtpd_hard_error_limit",
                "smtpd_junk_command_limit",
                "smtpd_starttls_timeout",
                "smtpd_per_request_deadline",
                "postscreen_greet_wait",
            ]
        )

    def test_overrides(self) -> None:
        """
        C{-o} overrides main.cf for the invocation; an unknown override is
        reported unused.
        """
        self.golden(["-o", "myhostname=o.example", "-o", "nosuchparam=1", "-n"], REALISTIC_MAIN_CF)

    def test_unknownNames(self) -> None:
        """
        Unknown names get a warning in order with the answers; the exit
        status is 0.  A user-defined name is known only when referenced.
        """
        self.golden(
            ["nonexistent_param", "myhostname", "my_custom_param", "my_referenced", "foo_destination_recipient_limit"],
            REALISTIC_MAIN_CF,
        )

    def test_serviceDerived(self) -> None:
        """
        Service-derived names are known, with C{$default_...} defaults,
        only for delivery agents and pipe services in master.cf.
        """
        self.golden(
            [
                "relay_destination_concurrency_limit",
                "bsmtp_time_limit",
                "relay_time_limit",
                "local_destination_concurrency_limit",
                "smtp_transport_rate_delay",
                "pickup_destination_concurrency_limit",
            ],
            REALISTIC_MAIN_CF,
        )

    def test_legacyNames(self) -> None:
        """
        Legacy names answer by name but stay out of the listing unless
        main.cf sets them.
        """
        self.golden(["virtual_maps", "fallback_relay"])
        self.golden(["-n"], "virtual_maps = hash:/etc/x\n")
        self.golden([], "virtual_maps = hash:/etc/x\n")

    def test_readOnlyAndUndefined(self) -> None:
        """
        Read-only assignments and C{$name} without a value get Postfix's
        warnings; restriction classes become known.
        """
        text = (
            "process_id = 7\n"
            "other = $my_ref ${undefined_q}\n"
            "my_ref = 1\n"
            "smtpd_restriction_classes = cls1, cls2\n"
            "cls1 = permit\n"
        )
        self.golden(["-n"], text)
        self.golden(["cls1", "cls2", "other", "my_ref"], text)

    def test_noMasterCf(self) -> None:
        """
        A missing master.cf is a warning for main.cf queries.
        """
        self.golden(["-n"], "myhostname = a.example\n", master=False)

    def test_syntaxError(self) -> None:
        """
        A malformed main.cf line is fatal, naming file and line.
        """
        self.golden(["myhostname"], "# c\nmyhostname = a\nfoo\n")
        self.golden(["myhostname"], "=b\n")
        self.golden(["myhostname"], "a b = c\n")

    def test_leadingWhitespace(self) -> None:
        """
        An indented first line is warned about and ignored.
        """
        self.golden(["myhostname"], "  indented = a\nmyhostname = b\n")

    def test_missingMainCf(self) -> None:
        """
        A missing main.cf is fatal for queries.
        """
        self.golden(["myhostname"], None)

    def test_invalidOverride(self) -> None:
        """
        A malformed C{-o} is fatal.
        """
        self.golden(["-o", "badformat", "myhostname"])
        self.golden(["-o", "=b", "-n"])

    def test_docsExample(self) -> None:
        """
        The shipped example configuration (if present) lists identically.
        """
        example = os.path.join(os.path.dirname(__file__), "..", "docs", "example", "main.cf")
        if not os.path.exists(example):
            from twisted.trial.unittest import SkipTest

            raise SkipTest("docs/example/main.cf does not exist yet")
        with open(example) as handle:
            text = handle.read()
        self.golden(["-n"], text)
        self.golden([], text)


class GoldenEditTests(GoldenMixin):
    """
    Edits leave main.cf exactly as Postfix's postconf leaves it.
    """

    def test_editInPlace(self) -> None:
        """
        C{-e} replaces a logical line and its continuation lines with one
        C{name = value} line, leaving every other byte alone.
        """
        self.golden(["-e", "myhostname = mail.example.org", "mynetworks=10.0.0.0/8"], REALISTIC_MAIN_CF)

    def test_implicitEdit(self) -> None:
        """
        An operand with C{=} edits, without C{-e}.
        """
        self.golden(["myhostname=implicit.example"], REALISTIC_MAIN_CF)

    def test_appendNew(self) -> None:
        """
        A new name is appended; a file without a final newline is glued
        to, as Postfix 3.7 does.
        """
        self.golden(["-e", "new_param=1"], REALISTIC_MAIN_CF)
        self.golden(["-e", "b=2"], "a=1")
        self.golden(["-e", "b=2"], "")

    def test_duplicates(self) -> None:
        """
        Every occurrence of a duplicated name is rewritten, with one
        warning.
        """
        self.golden(["-e", "mydomain=x.example"], REALISTIC_MAIN_CF)
        self.golden(["-e", "a=9"], "a=1\na=2\na=3\n")

    def test_repeatedRequest(self) -> None:
        """
        The later of two requests for one name wins, with a warning.
        """
        self.golden(["-e", "a=1", "a=2"], "x = 1\n")

    def test_spaced(self) -> None:
        """
        Blanks around name and value are trimmed.
        """
        self.golden(["-e", " spaced = v "], "x = 1\n")

    def test_delete(self) -> None:
        """
        C{-X} removes a logical line with its continuation lines, keeping
        comments inside it; absent names are ignored.
        """
        self.golden(["-X", "mynetworks", "smtpd_relay_restrictions", "not_present_param"], REALISTIC_MAIN_CF)
        self.golden(["-X", "mydomain"], REALISTIC_MAIN_CF)

    def test_commentOut(self) -> None:
        """
        C{-#} prefixes each line of the logical line with C{#}.
        """
        self.golden(["-#", "mynetworks", "message_size_limit", "mydomain"], REALISTIC_MAIN_CF)

    def test_sequence(self) -> None:
        """
        A sequence of edits gives the same file as with Postfix.
        """
        requirePostconf(self)
        real = makeConfig(self, REALISTIC_MAIN_CF)
        ours = makeConfig(self, REALISTIC_MAIN_CF)
        for args in (
            ["myhostname=implicit.example"],
            ["-#", "mynetworks"],
            ["-X", "smtpd_relay_restrictions"],
            ["-X", "not_present_param"],
            ["-#", "message_size_limit"],
            ["-e", "added = 1"],
            ["-e", "added = 2"],
            ["-X", "added"],
        ):
            self.assertEqual(runReal(real, args)[0], runOurs(ours, args)[0])
            with open(os.path.join(real, "main.cf"), "rb") as a, open(
                os.path.join(ours, "main.cf"), "rb"
            ) as b:
                self.assertEqual(a.read(), b.read(), args)

    def test_errors(self) -> None:
        """
        Each malformed edit request is fatal with Postfix's message, and
        main.cf is left alone.
        """
        for args in (
            ["-e", "myhostname"],
            ["-e", "=value"],
            ["-e", "bad name=1"],
            ["-e", "multi\nline=1"],
            ["-e", "#comment=1"],
            ["-e", "  # c=1"],
            ["-e"],
            ["-X"],
            ["-#"],
            ["-X", "myhostname=1"],
            ["-X", ""],
            ["-X", "a", "b=c"],
            ["-#", "a=1"],
        ):
            self.golden(args, REALISTIC_MAIN_CF)

    def test_missingMainCf(self) -> None:
        """
        Editing without a main.cf is fatal; nothing is created.
        """
        real, ours = self.golden(["-e", "a=1"], None)
        self.assertFalse(os.path.exists(os.path.join(ours, "main.cf")))
        self.golden(["-X", "a"], None)


class FormatTests(SynchronousTestCase):
    """
    Output formatting without the oracle.
    """

    def test_normalizesWhitespace(self) -> None:
        """
        Runs of whitespace become one space; the ends are trimmed.
        """
        self.assertEqual(formatLine("a  =\t b   c "), "a = b c\n")
        self.assertEqual(formatLine("myorigin = "), "myorigin =\n")

    def test_fold(self) -> None:
        """
        A word that would reach column 80 starts a new line indented by
        four spaces: eight 9-letter words fill 79 columns.
        """
        words = " ".join(["abcdefghi"] * 10)
        self.assertEqual(
            formatLine(words, fold=True),
            " ".join(["abcdefghi"] * 8) + "\n    " + " ".join(["abcdefghi"] * 2) + "\n",
        )

    def test_splitNameValue(self) -> None:
        """
        Names and values split as Postfix's split_nameval does.
        """
        self.assertEqual(splitNameValue(" a = b c "), ("a", "b c"))
        for text, message in [
            ("=b", "missing attribute name"),
            ("", "missing attribute name"),
            ("a", "missing '=' after attribute name"),
            ("a b=c", "missing '=' after attribute name"),
        ]:
            with self.assertRaises(ValueError) as caught:
                splitNameValue(text)
            self.assertEqual(str(caught.exception), message)

    def test_rewriteKeepsCarriageReturns(self) -> None:
        """
        Untouched lines keep every byte, including a C{\\r}.
        """
        text = "a = 1\r\nb = 2\r\n"
        self.assertEqual(
            rewriteMainCf(text, "edit", {"b": "3"}, lambda name: None),
            "a = 1\r\nb = 3\n",
        )

    def test_newNamesInArgumentOrder(self) -> None:
        """
        New names are appended in argument order (Postfix's order is that
        of a randomly seeded hash table).
        """
        self.assertEqual(
            rewriteMainCf("", "edit", {"zz": "1", "aa": "2"}, lambda name: None),
            "zz = 1\naa = 2\n",
        )


class _Service:
    def __init__(self, name: str, command: str, overrides: tuple[tuple[str, str], ...] = ()) -> None:
        self.name = name
        self.command = command
        self.overrides = overrides


class KnownTests(SynchronousTestCase):
    """
    The known-name rule of L{mtaguard.config._known}.
    """

    def test_serviceParameters(self) -> None:
        """
        Delivery agents get 16 per-transport names, pipe services 17
        (with C{_time_limit}), spawn only C{_time_limit}; names the
        registry declares keep their built-in default.
        """
        found = serviceParameters(
            [_Service("relay", "smtp"), _Service("bsmtp", "pipe"), _Service("policy", "spawn"),
             _Service("local", "local"), _Service("pickup", "pickup")]
        )
        self.assertEqual(found["relay_destination_concurrency_limit"], "$default_destination_concurrency_limit")
        self.assertEqual(found["bsmtp_time_limit"], "$command_time_limit")
        self.assertEqual(found["policy_time_limit"], "$command_time_limit")
        self.assertNotIn("relay_time_limit", found)
        self.assertNotIn("local_destination_concurrency_limit", found)
        self.assertEqual(len([n for n in found if n.startswith("relay_")]), 16)
        self.assertEqual(len([n for n in found if n.startswith("bsmtp_")]), 17)
        self.assertFalse([n for n in found if n.startswith("pickup_")])

    def test_userNames(self) -> None:
        """
        A user-defined name is known when a main.cf value, a master.cf
        C{-o} value or a restriction class list mentions it.
        """
        values = {
            "a": "$b",
            "b": "1",
            "c": "2",
            "d": "3",
            "e": "4",
            "smtpd_restriction_classes": "e",
        }
        known = knownNames(values, [_Service("submission", "smtpd", (("x", "$d"),))])
        self.assertIn("b", known)
        self.assertIn("d", known)
        self.assertIn("e", known)
        self.assertNotIn("a", known)
        self.assertNotIn("c", known)

    def test_unusedParameters(self) -> None:
        """
        Unused settings are reported in file order, read-only ones not.
        """
        settings = [
            Setting("myhostname", "x", 1),
            Setting("zz_unused", "1", 2),
            Setting("process_id", "1", 3),
            Setting("aa_unused", "$myhostname", 4),
        ]
        self.assertEqual(
            [s.name for s in unusedParameters(settings, [])], ["zz_unused", "aa_unused"]
        )
