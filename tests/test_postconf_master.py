"""
Tests for master.cf parsing (L{mtaguard.config._mastercf}), editing
(L{mtaguard.config._mastercf_edit}) and C{mtaguard-postconf -M/-F/-P}
(L{mtaguard.postconf._master}).

The golden tests run the real Postfix C{postconf} and L{runMaster} on two
copies of the same configuration directory and compare standard output,
exit status, the message text after C{fatal: }/C{warning: }, and master.cf
byte for byte after every edit.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from typing import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mtaguard.config._mastercf import (
    MasterCfSyntaxError,
    ServiceEntry,
    formatEntry,
    inetAddress,
    parseMasterCf,
    processLimit,
)
from mtaguard.postconf._master import runMaster

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "docs", "example")
DEBIAN_MASTER_CF = "/usr/share/postfix/master.cf.dist"


def realPostconf() -> str:
    """
    Find Postfix's C{postconf} on C{PATH}.

    @raise SkipTest: when it is missing, except on CI (C{CI=true}), where
        the golden tests must run and a missing C{postconf} is a failure.
    """
    found = shutil.which("postconf")
    if found is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("postconf is not on PATH; golden tests need Postfix 3.7")
        raise SkipTest("postconf (Postfix 3.7) is not on PATH")
    return found


def _messages(stderr: str) -> list[str]:
    # Compare what follows "fatal: " / "warning: ", whatever the program name.
    result = []
    for line in stderr.splitlines():
        # Postfix also warns about -o names that no parameter uses; that
        # needs the parameter registry and is not part of runMaster.
        if ": unused parameter: " in line:
            continue
        for marker in ("fatal: ", "warning: "):
            if marker in line:
                result.append(marker + line.split(marker, 1)[1])
                break
    return result


def runOurs(directory: str, argv: Sequence[str]) -> tuple[int, str, str]:
    """
    Run L{runMaster} with C{postconf}-style arguments, e.g. C{["-Mf",
    "smtp"]}: the first argument holds the mode letter and the flags.

    @return: exit status, standard output, standard error.
    """
    flags = argv[0].lstrip("-")
    mode, rest = flags[0], flags[1:]
    if "X" in rest:
        action = "delete"
    elif "#" in rest:
        action = "comment"
    elif "e" in rest:
        action = "edit"
    else:
        action = "show"
    out, err = io.StringIO(), io.StringIO()
    status = runMaster(
        directory,
        mode,
        action,
        list(argv[1:]),
        fold="f" in rest,
        valuesOnly="h" in rest,
        namesOnly="H" in rest,
        json=False,
        out=out,
        err=err,
    )
    return status, out.getvalue(), err.getvalue()


class GoldenTestCase(SynchronousTestCase):
    """
    Compare C{postconf -c A ...} with C{runMaster(B, ...)}.
    """

    def makeDirectory(self, masterText: str | None = None, source: str | None = None) -> str:
        """
        Create a configuration directory: a copy of C{source}, or an empty
        main.cf and C{masterText} as master.cf (none when C{None}).
        """
        directory = self.mktemp()
        if source is not None:
            shutil.copytree(source, directory)
        else:
            os.makedirs(directory)
            with open(os.path.join(directory, "main.cf"), "w"):
                pass
            if masterText is not None:
                with open(os.path.join(directory, "master.cf"), "w") as handle:
                    handle.write(masterText)
        # Postfix re-reads a main.cf modified in the last few seconds, with
        # pauses, in case it is still being written; age it to avoid that.
        past = os.stat(directory).st_mtime - 60
        os.utime(os.path.join(directory, "main.cf"), (past, past))
        return directory

    def assertEachSameAsPostfix(
        self,
        requests: Sequence[Sequence[str]],
        masterText: str | None = None,
        source: str | None = None,
        directories: tuple[str, str] | None = None,
    ) -> None:
        """
        Run each request once on its own fresh pair of directories (or on
        C{directories}), Postfix invocations in parallel because each fatal
        error costs Postfix a one-second sleep, and compare.
        """
        postconf = realPostconf()
        pairs = [
            directories
            or (self.makeDirectory(masterText, source), self.makeDirectory(masterText, source))
            for _ in requests
        ]
        processes = [
            subprocess.Popen(
                [postconf, "-c", theirs, *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for argv, (theirs, _) in zip(requests, pairs)
        ]
        for argv, (theirs, ours), process in zip(requests, pairs, processes):
            realOutput, realErrors = process.communicate()
            status, output, errors = runOurs(ours, argv)
            label = repr(list(argv))
            self.assertEqual((output, status), (realOutput, process.returncode), label)
            # Postfix names the directory in messages; use the same spelling.
            self.assertEqual(
                _messages(errors), _messages(realErrors.replace(theirs, ours)), label
            )
            self.assertEqual(_read(ours), _read(theirs), label)

    def assertSameAsPostfix(
        self,
        steps: Sequence[Sequence[str]],
        masterText: str | None = None,
        source: str | None = None,
    ) -> None:
        """
        Run every step on two identical directories, one with Postfix and
        one with mtaguard, and compare after each step.
        """
        directories = (
            self.makeDirectory(masterText, source),
            self.makeDirectory(masterText, source),
        )
        for argv in steps:
            self.assertEachSameAsPostfix([argv], directories=directories)


def _read(directory: str) -> bytes | None:
    try:
        with open(os.path.join(directory, "master.cf"), "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _debian() -> str:
    with open(DEBIAN_MASTER_CF) as handle:
        return handle.read()


class DebianQueryTests(GoldenTestCase):
    """
    Queries of Debian's stock master.cf give Postfix's output.
    """

    def check(self, *argv: str) -> None:
        self.assertSameAsPostfix([argv], masterText=_debian())

    def test_allEntries(self) -> None:
        """
        C{-M} prints every entry on one line, fields at Postfix's columns.
        """
        self.check("-M")

    def test_folded(self) -> None:
        """
        C{-Mf} puts each C{-o} on its own line and wraps long argv.
        """
        self.check("-Mf")

    def test_byName(self) -> None:
        """
        C{-M smtp} shows both smtp services.
        """
        self.check("-M", "smtp")

    def test_byNameAndType(self) -> None:
        """
        C{-M smtp/inet} shows one service.
        """
        self.check("-M", "smtp/inet")

    def test_typeWildcard(self) -> None:
        """
        C{-M '*/inet'} and C{-M '*/unix-dgram'} select by type.
        """
        self.check("-M", "*/inet", "*/unix-dgram")

    def test_patternOrder(self) -> None:
        """
        Output follows file order; an entry matched by two patterns is
        printed twice.
        """
        self.check("-M", "pickup", "smtp/inet", "smtp")

    def test_emptyComponents(self) -> None:
        """
        Empty pattern components are skipped: C{smtp/} is C{smtp/*} and
        C{smtp//chroot} is C{smtp/chroot}.
        """
        self.check("-M", "smtp/", "*/*/")
        self.check("-F", "smtp//chroot", "smtp/inet/")

    def test_unmatched(self) -> None:
        """
        A pattern that matches nothing is a warning, exit 0.
        """
        self.check("-M", "nosuch/inet", "smtp/badtype", "s?tp")

    def test_badPatterns(self) -> None:
        """
        Too many components, a leading C{/}, or C{*} inside a name is fatal.
        """
        self.assertEachSameAsPostfix(
            [["-M", "a/b/c"], ["-M", ""], ["-M", "/inet"], ["-M", "sm*"],
             ["-F", "a/b/c/d"], ["-P", "a/b/c/d"], ["-P", "relay/unix/sys*"]],
            masterText=_debian(),
        )

    def test_fields(self) -> None:
        """
        C{-F} prints every field of every service.
        """
        self.check("-F")

    def test_fieldsFolded(self) -> None:
        """
        C{-Ff} folds the command field like C{-Mf}, after the name.
        """
        self.check("-Ff")

    def test_fieldWildcards(self) -> None:
        """
        C{-F '*/*/chroot'}, C{-F smtp/*/chroot} and field order within a
        service follow the patterns.
        """
        self.check("-F", "*/*/chroot", "smtp/*/chroot")
        self.check("-F", "smtp/inet/command", "smtp/inet/service")

    def test_fieldValuesOnly(self) -> None:
        """
        C{-Fh} prints values only, including Postfix's missing space after
        a four-letter program such as C{pipe}.
        """
        self.check("-Fh")
        self.check("-Fhf", "*/*/command")

    def test_fieldNamesOnly(self) -> None:
        """
        C{-FH} prints names only.
        """
        self.check("-FH", "smtp")

    def test_badField(self) -> None:
        """
        An unknown field name is fatal.
        """
        self.check("-F", "smtp/inet/badfield")

    def test_parameters(self) -> None:
        """
        C{-P}, C{-Pf}, C{-Ph}, C{-PH} and C{-P} patterns.
        """
        for argv in (["-P"], ["-Pf"], ["-Ph"], ["-PH"], ["-P", "*/*/syslog_name"],
                     ["-P", "*", "relay", "*/unix", "relay/unix/syslog_name"],
                     ["-P", "smtp/inet"], ["-P", "relay/unix/nosuch_param"]):
            self.check(*argv)

    def test_hValuesWithM(self) -> None:
        """
        C{-M} refuses C{-h} and C{-H}.
        """
        self.check("-Mh")
        self.check("-MH")


class DebianEditTests(GoldenTestCase):
    """
    Edits of Debian's stock master.cf give Postfix's file, byte for byte.
    """

    def check(self, *steps: Sequence[str]) -> None:
        self.assertSameAsPostfix(steps, masterText=_debian())

    def test_fieldEdit(self) -> None:
        """
        C{-F smtp/inet/chroot=n} moves the re-formatted entry below the
        comment block that followed it.
        """
        self.check(["-Fe", "smtp/inet/chroot=n"])

    def test_fieldEditWildcard(self) -> None:
        """
        C{-F '*/unix/chroot=n'} rewrites every unix entry.
        """
        self.check(["-Fe", "*/unix/chroot=n"])

    def test_fieldEditCommandAndName(self) -> None:
        """
        The command field takes whitespace; service and type can change.
        """
        self.check(
            ["-Fe", "smtp/inet/command=smtpd -o smtpd_tls_security_level=may"],
            ["-Fe", "smtp/inet/service=smtp2", "smtp/unix/type=inet"],
            ["-Fe", "relay/unix/wakeup=5", "smtp2/inet/chroot="],
        )

    def test_parameterEdit(self) -> None:
        """
        C{-P} adds or updates C{-o}; new ones go after the last daemon
        option; requests apply in order.
        """
        self.check(
            ["-Pe", "smtp/inet/smtpd_tls_security_level=may"],
            ["-Pe", "relay/unix/syslog_name=postfix/relay2"],
            ["-Pe", "maildrop/unix/x=1"],
            ["-Pe", "relay/unix/a=1", "relay/unix/b=2", "relay/unix/a=3"],
            ["-Pe", "smtp/inet/smtpd_tls_security_level="],
        )

    def test_parameterEditEverywhere(self) -> None:
        """
        C{-P '*/*/syslog_name=postfix/x'} touches every service.
        """
        self.check(["-Pe", "*/*/syslog_name=postfix/x"])

    def test_parameterDelete(self) -> None:
        """
        C{-PX} removes the C{-o}; an absent parameter still re-formats.
        """
        self.check(["-PX", "relay/unix/syslog_name"], ["-PX", "relay/unix/nosuch"])

    def test_commentOut(self) -> None:
        """
        C{-M#} prefixes C{#} to the entry's lines, even after an edit.
        """
        self.check(["-M#", "smtp/inet"], ["-Pe", "relay/unix/a=1"], ["-M#", "relay/unix"])

    def test_delete(self) -> None:
        """
        C{-MX} deletes the entry and its continuation lines, not the
        comment after it; unmatched names are silent.
        """
        self.check(["-MX", "relay/unix", "nosuch/unix"], ["-MX", "*/inet"])

    def test_replaceAndAppend(self) -> None:
        """
        C{-M name/type=entry} replaces in place or appends at the end.
        """
        self.check(
            ["-Me", "submission/inet=submission inet n - n - - smtpd "
             "-o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt"],
            ["-Me", "smtp/inet=smtp inet n - n - 1 postscreen"],
            ["-Me", "127.0.0.1:2525/inet=127.0.0.1:2525 inet n - n - - smtpd "
             "-o smtpd_tls_security_level=none"],
            ["-M", "relay/unix=relay unix - - n - - smtp -o a=b"],
        )

    def test_replaceMatchesNewKey(self) -> None:
        """
        The first entry matching the pattern or the new name/type is
        replaced and other matches are deleted.
        """
        self.check(["-Me", "smtp/unix=smtp inet n - n - - smtpd"])
        self.check(["-Me", "*/unix=x unix - - n - - smtpd"])
        self.check(["-Me", "pickup/unix=relay unix - - n - - smtpd"])

    def test_replaceRepeated(self) -> None:
        """
        New entries named twice are appended twice; a known entry named
        twice takes the last request.
        """
        self.check(
            ["-Me", "b/inet=b inet n - n - - smtpd", "a/inet=a inet n - n - - smtpd",
             "b/inet=b inet n - n - - smtp2"],
            ["-Me", "smtp/inet=smtp inet n - n - - A", "smtp/inet=smtp inet n - n - - B"],
        )

    def test_editErrors(self) -> None:
        """
        Each malformed edit request is fatal with Postfix's message and
        leaves master.cf alone; unmatched services are warnings.
        """
        self.assertEachSameAsPostfix([
            ["-Fe", "smtp/inet/chroot=n y"],
            ["-Fe", "smtp/inet/*=n"],
            ["-Fe", "smtp/inet=n"],
            ["-Fe", "smtp/inet/nosuchfield=1"],
            ["-Fe", "smtp/inet/private=x"],
            ["-Fe", "smtp/inet/wakeup=abc"],
            ["-Pe", "smtp/inet/*=x"],
            ["-Pe", "smtp/inet/foo=a b"],
            ["-Pe", "smtp/inet=x"],
            ["-Pe", "smtp/inet/ a = b "],
            ["-Me", "smtp=smtp inet n - n - - smtpd"],
            ["-Me", "smtp/inet=smtp"],
            ["-Me", "x/inet=x inet bogus - n - - smtpd"],
            ["-Me", "=x inet n - n - - smtpd"],
            ["-Me", "a b=x inet n - n - - smtpd"],
            ["-Me", "x/inet=x inet n - n - - smtpd", "-e"],
            ["-Me", "x/inet=x inet\nn - n - - smtpd"],
            ["-Me", "#x/inet=x inet n - n - - smtpd"],
            ["-MX", "smtp"],
            ["-MX", "smtp/inet=x"],
            ["-M#", "smtp/inet=x"],
            ["-PX", "relay/unix/syslog_name=x"],
            ["-PX", "relay/unix"],
            ["-PX", "relay/unix/*"],
            ["-F#", "smtp/inet/chroot"],
            ["-FX", "smtp/inet/chroot"],
            ["-P#", "a/b/c"],
            ["-Me"], ["-Fe"], ["-Pe"], ["-MX"], ["-M#"], ["-PX"],
            ["-Fe", "nosuch/inet/chroot=n"],
            ["-Fe", "nosuch/inet/private=x"],
            ["-Pe", "nosuch/unix/foo=bar"],
            ["-PX", "nosuch/unix/x"],
        ], masterText=_debian())


class ExampleTests(GoldenTestCase):
    """
    The mtaguard example configuration in C{docs/example} reads and edits
    as in Postfix.
    """

    def check(self, *steps: Sequence[str]) -> None:
        self.assertSameAsPostfix(steps, source=EXAMPLE)

    def test_queries(self) -> None:
        """
        C{-M}, C{-Mf}, C{-F}, C{-P} of the example, which has inet names
        with addresses, a long-form C{-o} and a folded pipe argv.
        """
        self.check(["-M"], ["-Mf"], ["-F"], ["-Ffh", "quarantine"], ["-P"],
                   ["-M", "127.0.0.1:2525/inet", "smtpd/pass"])

    def test_editSequence(self) -> None:
        """
        Several edits in a row on the same directory, including a comment
        line between continuation lines.
        """
        self.check(
            ["-Pe", "127.0.0.1:2587/inet/smtpd_tls_auth_only=yes"],
            ["-PX", "relay/unix/smtp_helo_timeout"],
            ["-Fe", "127.0.0.1:2525/inet/process_limit=2"],
            ["-M#", "quarantine/unix"],
            ["-MX", "dnsblog/unix", "tlsproxy/unix"],
            ["-Me", "[::1]:2525/inet=[::1]:2525 inet n - n - 1 postscreen"],
            ["-M"],
        )


class MalformedFileTests(GoldenTestCase):
    """
    Bad master.cf files get Postfix's messages and exit statuses.
    """

    def test_badFieldCount(self) -> None:
        """
        Fewer than eight fields is fatal, naming the entry's first line.
        """
        self.assertSameAsPostfix([["-M"]], "a unix - - n - - x\nb unix -\n - n\n")

    def test_badFields(self) -> None:
        """
        Bad type, flag, wakeup and process limit fields are fatal.
        """
        for line in ("a UNIX - - n - - x", "a unix bogus - n - - x", "a unix - x n - - x",
                     "a unix - - x - - x", "a unix - - n 1?? - x", "a unix - - n - -1 x",
                     "a unix - - n\n   1x    - x", "a {unix} - - n - - x"):
            self.assertEachSameAsPostfix(
                [["-M"], ["-F"], ["-Pe", "a/unix/b=c"], ["-Pe", "*/*/b=c"], ["-Fe", "*/*/chroot=y"],
                 ["-MX", "a/unix"], ["-M#", "*/*"], ["-Me", "a/unix=a unix - - n - - y"]],
                line + "\nb unix - - n - - z\n",
            )

    def test_oddButValid(self) -> None:
        """
        C{?}, C{-?}, C{0?}, C{00} and braces in names are accepted.
        """
        self.assertSameAsPostfix(
            [["-M"], ["-F"]],
            "a unix - - n ? - x\nb unix - - n -? 00 x\n{c d} unix - - n 0? - x\n",
        )

    def test_leadingWhitespace(self) -> None:
        """
        A file that starts with an indented line: warning, line ignored.
        """
        self.assertSameAsPostfix([["-M"]], "  a unix - - n - - x\n  b\nc unix - - n - - z\n")

    def test_longOverrides(self) -> None:
        """
        The long C{-o { name = value }} form is normalised, bad ones warn,
        and C{-o} after a non-option is an ordinary argument.
        """
        self.assertSameAsPostfix(
            [["-M"], ["-Mf"], ["-P"], ["-Pe", "a/unix/name=v2"]],
            "a unix - - n - - smtpd -o {name=value} -o { name2= value } "
            "-o {  n3  =  v1  v2  } -o {=x} -o {noequals}\n"
            "b unix - - n - - smtpd x -o { a = b } -o {c d}\n"
            "c unix - - n - - pipe { a b  c } end { x  y }\n"
            "d unix - - n - - smtpd -o -o -o a=b\n",
        )

    def test_foldingQuirks(self) -> None:
        """
        Folding counts an argument without the braces Postfix adds, and the
        first non-option argument is printed without braces.
        """
        self.assertSameAsPostfix(
            [["-M"], ["-Mf"], ["-Ff"], ["-Pe", "*/*/x=1"]],
            "y fifo n - - 0 0 trivial-rewrite\n  { bhe  bi. j /=j/cjaxibaadydja.hf } -o"
            " { p = d/eha/bh/egiyxb=ef.dieabj.bgbx gbax/ } -o q=h\n"
            "z pass y n n - - local { ex.abedy/jb=eh=.=fey } -o syslog_name=fybf=hjj"
            " hi.eh -o smtpd_x=dbfxfaf/gjg.d=jf.gicxjjccb.hyx -o p=iaic -v"
            " { bjie.ibfbe=b  ba//cb=x }\n",
        )

    def test_duplicates(self) -> None:
        """
        The same name/type twice: C{-M} and C{-F} show both entries, C{-P}
        shows the first entry's parameters for both, and edits change both.
        """
        self.assertSameAsPostfix(
            [["-M"], ["-F"], ["-P"], ["-Pe", "a/unix/x=1"], ["-PX", "a/unix/p"]],
            "a unix - - n - - x -o p=1\nb unix - - n - - z\na unix - - n - - y -o q=2\n",
        )

    def test_emptyFields(self) -> None:
        """
        Postfix writes empty fields set with C{-F}; an empty service name
        shifts the other columns left.
        """
        self.assertSameAsPostfix(
            [["-Fe", "a/unix/process_limit="], ["-M"], ["-Fe", "a/unix/service="], ["-M"]],
            "a unix - - n - - smtpd -o a=1 -o b=0 -o a=2\n",
        )

    def test_noFinalNewline(self) -> None:
        """
        A file without a final newline: untouched lines keep that, and an
        appended entry is glued to the last line, as Postfix does.
        """
        text = "a unix - - n - - smtpd\n# c\nd unix - - n - - smtpd"
        self.assertSameAsPostfix([["-M#", "d/unix"]], text)
        self.assertSameAsPostfix([["-Pe", "d/unix/q=1"]], text)
        self.assertSameAsPostfix([["-Me", "e/unix=e unix - - n - - x"]], text)

    def test_commentsBetweenContinuations(self) -> None:
        """
        Comment lines inside an entry stay where they are on every edit.
        """
        text = ("# head\na unix - - n - - smtpd -v\n# mid comment\n  -o x=1\n\n"
                "  -o y=2 tail\n# after a\nb unix - - n - - smtpd -- -o z=1\n")
        for step in (["-M#", "a/unix"], ["-MX", "a/unix"], ["-Pe", "a/unix/q=1"],
                     ["-Pe", "b/unix/q=1"], ["-Me", "a/unix=a unix - - n - - x"]):
            self.assertSameAsPostfix([step], text)

    def test_missingMasterCf(self) -> None:
        """
        A missing master.cf is fatal, with a different message for edits.
        """
        self.assertSameAsPostfix([["-M"], ["-F"], ["-Pe", "a/unix/b=c"]], None)


class ParserTests(SynchronousTestCase):
    """
    L{parseMasterCf} and the helpers around it.
    """

    def test_continuationAndComments(self) -> None:
        """
        Indented lines continue an entry, even across comment and blank
        lines; C{firstLine} and C{lastLine} span them.
        """
        parsed = parseMasterCf(
            "# top\nrelay unix - - n - - smtp\n# note\n\n  -o a=1\n\t-o b=2\nx unix - - n - - y\n"
        )
        relay, x = parsed.entries
        self.assertEqual(relay.arguments, ("-o", "a=1", "-o", "b=2"))
        self.assertEqual(relay.overrides, (("a", "1"), ("b", "2")))
        self.assertEqual((relay.firstLine, relay.lastLine), (2, 6))
        self.assertEqual((x.firstLine, x.lastLine), (7, 7))
        self.assertEqual(relay.key(), ("relay", "unix"))

    def test_longOverride(self) -> None:
        """
        C{-o { name = value }} keeps the whitespace inside the value.
        """
        (entry,) = parseMasterCf("a inet n - n - - smtpd -o { smtpd_banner = hi  there }\n").entries
        self.assertEqual(entry.overrides, (("smtpd_banner", "hi  there"),))
        self.assertEqual(entry.arguments, ("-o", "smtpd_banner=hi  there"))

    def test_braces(self) -> None:
        """
        Braces protect whitespace in arguments and are removed.
        """
        (entry,) = parseMasterCf("a unix - n n - - pipe argv=/bin/x { a  b } {}\n").entries
        self.assertEqual(entry.command, "pipe")
        self.assertEqual(entry.arguments, ("argv=/bin/x", "a  b", ""))

    def test_afterNonOption(self) -> None:
        """
        C{-o} after the first non-option argument is not an override.
        """
        (entry,) = parseMasterCf("a unix - n n - - smtpd x -o a=b\n").entries
        self.assertEqual(entry.overrides, ())

    def test_duplicatesKept(self) -> None:
        """
        The same name and type twice: both entries are kept, in order.
        """
        parsed = parseMasterCf("a unix - - n - - x\na unix - - n - - y\n")
        self.assertEqual([e.command for e in parsed.entries], ["x", "y"])

    def test_errors(self) -> None:
        """
        Bad field count and bad fields raise L{MasterCfSyntaxError} with
        Postfix's text and the 1-based line.
        """
        error = self.assertRaises(
            MasterCfSyntaxError, parseMasterCf, "a unix - - n - - x\n\nb unix -\n", path="d/master.cf"
        )
        self.assertEqual((str(error), error.line), ("file d/master.cf: line 3: bad field count", 3))
        error = self.assertRaises(MasterCfSyntaxError, parseMasterCf, "a bogus - - n - - x\n")
        self.assertEqual(str(error), 'invalid type field "bogus" in "a bogus - - n - - x"')

    def test_warnings(self) -> None:
        """
        Malformed long overrides and braces are warnings, not errors.
        """
        parsed = parseMasterCf("a unix - - n - - x -o {=v} {a}b\n")
        self.assertEqual(
            parsed.warnings,
            ("master.cf: syntax error after '}' in \"{a}b\"",
             'master.cf: missing attribute name: "=v"'),
        )

    def test_inetAddress(self) -> None:
        """
        inet names: port, host:port, [IPv6]:port.
        """
        entries = parseMasterCf(
            "smtp inet n - n - - x\n127.0.0.1:2525 inet n - n - - x\n"
            "[::1]:smtp inet n - n - - x\n[2001:db8::1]:25 inet n - n - - x\n"
        ).entries
        self.assertEqual(
            [inetAddress(e) for e in entries],
            [(None, "smtp"), ("127.0.0.1", "2525"), ("::1", "smtp"), ("2001:db8::1", "25")],
        )

    def test_processLimit(self) -> None:
        """
        C{-} means the default; 0 means unlimited.
        """
        a, b = parseMasterCf("a unix - - n - - x\nb unix - - n - 0 x\n").entries
        self.assertEqual((processLimit(a, 100), processLimit(b, 100)), (100, 0))


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.:", min_size=1, max_size=20).filter(
    lambda s: not s.startswith("-")
)
_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_=./$", min_size=1, max_size=30)


@st.composite
def _entries(draw: st.DrawFn) -> str:
    fields = [
        draw(_names),
        draw(st.sampled_from(["inet", "unix", "unix-dgram", "fifo", "pass"])),
        *[draw(st.sampled_from(["y", "n", "-"])) for _ in range(3)],
        draw(st.sampled_from(["-", "0", "60", "1000?"])),
        draw(st.sampled_from(["-", "0", "1", "100"])),
        draw(st.sampled_from(["smtpd", "pipe", "smtp", "local"])),
    ]
    arguments: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            arguments += ["-o", f"{draw(_names).replace('=', '')}={draw(_words)}"]
        elif kind == 1:
            arguments += ["-o", f"{{ p = {draw(_words)} {draw(_words)} }}"]
        elif kind == 2:
            arguments.append(draw(st.sampled_from(["-v", "-D"])))
        else:
            arguments.append(f"{{ {draw(_words)}  {draw(_words)} }}")
    separator = draw(st.sampled_from([" ", "\t", "\n  "]))
    return separator.join(fields + arguments)


class RoundTripTests(SynchronousTestCase):
    """
    Normalised output reads back as the same service.
    """

    @settings(max_examples=200, deadline=None)
    @given(_entries(), st.booleans())
    def test_stable(self, text: str, fold: bool) -> None:
        """
        parse, normalise (C{-M} or C{-Mf} layout), parse again: same
        service; normalising again gives the same text.  (Postfix prints
        the first non-option argument without braces, so this holds for
        entries whose first non-option argument has no whitespace; the
        generator puts a daemon option or nothing before braced words.)
        """
        (entry,) = parseMasterCf(text + "\n").entries
        first = _firstNonOption(entry)
        if first is not None and any(c.isspace() for c in first):
            return
        normal = formatEntry(entry, fold)
        (again,) = parseMasterCf(normal + "\n").entries
        self.assertEqual(_semantic(again), _semantic(entry))
        self.assertEqual(formatEntry(again, fold), normal)


def _firstNonOption(entry: ServiceEntry) -> str | None:
    from mtaguard.config._mastercf import daemonOptionEnd

    end = daemonOptionEnd(entry.arguments)
    return entry.arguments[end] if end < len(entry.arguments) else None


def _semantic(entry: ServiceEntry) -> tuple[object, ...]:
    return entry.fields() + (entry.command, entry.arguments, entry.overrides)


class JsonTests(SynchronousTestCase):
    """
    The C{json=True} extension.
    """

    def query(self, mode: str, args: list[str]) -> object:
        """
        Run a query on a copy of Debian's master.cf and decode the JSON.
        """
        import json

        directory = self.mktemp()
        os.makedirs(directory)
        shutil.copy(DEBIAN_MASTER_CF, os.path.join(directory, "master.cf"))
        open(os.path.join(directory, "main.cf"), "w").close()
        out, err = io.StringIO(), io.StringIO()
        status = runMaster(directory, mode, "show", args, fold=False, valuesOnly=False,
                           namesOnly=False, json=True, out=out, err=err)
        self.assertEqual(status, 0)
        return json.loads(out.getvalue())

    def test_services(self) -> None:
        """
        C{-M} gives C{{"services": [...]}} with the C{-F} field names.
        """
        self.assertEqual(
            self.query("M", ["relay/unix"]),
            {"services": [{"service": "relay", "type": "unix", "private": "-",
                           "unprivileged": "-", "chroot": "y", "wakeup": "-",
                           "process_limit": "-",
                           "command": "smtp -o syslog_name=postfix/$service_name"}]},
        )

    def test_flat(self) -> None:
        """
        C{-F} and C{-P} give flat name/value objects.
        """
        self.assertEqual(self.query("F", ["smtp/inet/chroot"]), {"smtp/inet/chroot": "y"})
        self.assertEqual(self.query("P", []), {"relay/unix/syslog_name": "postfix/$service_name"})
