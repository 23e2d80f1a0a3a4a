"""
Tests for L{mtaguard.postconf._cli}: option parsing, compatibility checks
and dispatch, compared with the real Postfix 3.7 C{postconf}; and the
C{--json} extension.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any, Sequence

from twisted.trial.unittest import SynchronousTestCase

import mtaguard.postconf._cli as cli
from mtaguard.postconf import main
from mtaguard.postconf._cli import DEFAULT_CONFIG_DIRECTORY, Mode, parseArguments

from .test_postconf_main import (
    REALISTIC_MAIN_CF,
    GoldenMixin,
    makeConfig,
    runOurs,
)


class OptionParsingTests(SynchronousTestCase):
    """
    Options are parsed as Postfix's getopt loop parses them.
    """

    def test_stopsAtFirstOperand(self) -> None:
        """
        Options end at the first operand: a later C{-e} is an operand.
        """
        invocation = parseArguments(["-M", "smtp/inet", "-e"])
        self.assertEqual(invocation.operands, ["smtp/inet", "-e"])
        self.assertEqual(invocation.mode, Mode.M)

    def test_combinedFlags(self) -> None:
        """
        Flags combine in one argument; C{-c} and C{-o} take the rest of
        the argument or the next one, and C{-o} repeats.
        """
        invocation = parseArguments(["-nf", "-cDIR", "-o", "a=1", "-ob=2", "-hx", "x"])
        self.assertEqual(invocation.mode, Mode.n | Mode.f | Mode.h | Mode.x | Mode.o | Mode.p)
        self.assertEqual(invocation.configDirectory, "DIR")
        self.assertEqual(invocation.overrides, ["a=1", "b=2"])
        self.assertEqual(invocation.operands, ["x"])

    def test_doubleDash(self) -> None:
        """
        C{--} ends the options and is dropped.
        """
        self.assertEqual(parseArguments(["-h", "--", "-x"]).operands, ["-x"])

    def test_implicitEdit(self) -> None:
        """
        A first operand with C{=} implies C{-e}.
        """
        self.assertTrue(parseArguments(["a=1"]).mode & Mode.e)
        self.assertTrue(parseArguments(["-M", "x/unix=x unix - - n - - smtp"]).mode & Mode.e)

    def test_json(self) -> None:
        """
        C{--json} is an option like any other.
        """
        self.assertTrue(parseArguments(["--json", "-n"]).json)


class GoldenOptionTests(GoldenMixin):
    """
    Incompatible options fail exactly as with Postfix.
    """

    def test_incompatible(self) -> None:
        """
        Each bad combination gives Postfix's fatal message and status 1.
        """
        for args in (
            ["-d", "-n"],
            ["-n", "-d"],
            ["-e", "-d"],
            ["-M", "-n"],
            ["-M", "-d"],
            ["-F", "-d"],
            ["-P", "-n", "-d"],
            ["-h", "-H"],
            ["-f", "-e"],
            ["-x", "-X"],
            ["-X", "-e", "a"],
            ["-e", "-#", "a"],
            ["-d", "-o", "a=1"],
            ["-x", "-e", "a=1"],
            ["-hX", "a"],
            ["-M", "-P"],
            ["-F", "-h", "-n"],
            ["-n", "-e", "a"],
            ["-H", "-e", "a"],
            ["-M", "-H"],
            ["-M", "-d", "-H"],
            ["-ef", "a=1"],
            ["-n", "a=1"],
            ["-o", "x=1", "a=1"],
            ["-d", "-n", "-e"],
        ):
            self.golden(args)

    def test_badOption(self) -> None:
        """
        An unknown option or a missing option argument is a usage error:
        same complaint, exit status 1.
        """
        for args in (["-z"], ["-o"]):
            directory = makeConfig(self)
            status, out, err = runOurs(directory, args)
            self.assertEqual((status, out), (1, ""))
            lines = err.splitlines()
            self.assertIn(lines[0], (
                "mtaguard-postconf: invalid option -- 'z'",
                "mtaguard-postconf: option requires an argument -- 'o'",
            ))
            self.assertTrue(lines[1].startswith("mtaguard-postconf: fatal: usage: mtaguard-postconf"))

    def test_operandsAfterOptions(self) -> None:
        """
        Options after the first operand are operands (unknown names).
        """
        self.golden(["myhostname", "-h"])
        self.golden(["-h", "--", "myhostname"])
        self.golden(["-e", "--", "-x=1"])


class DirectoryTests(SynchronousTestCase):
    """
    The configuration directory: C{-c}, else C{$MAIL_CONFIG}, else
    C{/etc/mtaguard}.
    """

    def test_mailConfig(self) -> None:
        """
        C{$MAIL_CONFIG} names the directory, and C{-n} then shows
        C{config_directory}, as with Postfix.
        """
        directory = makeConfig(self, "myhostname = a.example\n")
        out = io.StringIO()
        status = main(["-n"], out=out, err=io.StringIO(), environ={"MAIL_CONFIG": directory})
        self.assertEqual(status, 0)
        self.assertEqual(
            out.getvalue(),
            f"config_directory = {directory}\nmyhostname = a.example\n",
        )

    def test_default(self) -> None:
        """
        Without C{-c} and C{$MAIL_CONFIG} the directory is
        C{/etc/mtaguard}.
        """
        self.assertEqual(DEFAULT_CONFIG_DIRECTORY, "/etc/mtaguard")
        err = io.StringIO()
        status = main(["-n"], out=io.StringIO(), err=err, environ={})
        if not os.path.exists("/etc/mtaguard/main.cf"):
            self.assertEqual(status, 1)
            self.assertEqual(
                err.getvalue(),
                "mtaguard-postconf: fatal: open /etc/mtaguard/main.cf: No such file or directory\n",
            )

    def test_moduleRuns(self) -> None:
        """
        C{python -m mtaguard.postconf} runs the command.
        """
        directory = makeConfig(self, "myhostname = m.example\n")
        process = subprocess.run(
            [sys.executable, "-m", "mtaguard.postconf", "-c", directory, "-h", "myhostname"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.assertEqual((process.returncode, process.stdout), (0, "m.example\n"), process.stderr)


class MasterDispatchTests(SynchronousTestCase):
    """
    C{-M}, C{-F} and C{-P} go to the master.cf side with the right mode
    and action.
    """

    def setUp(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

        def fakeRunMaster(
            configDirectory: str,
            mode: str,
            action: str,
            args: Sequence[str],
            *,
            fold: bool,
            valuesOnly: bool,
            namesOnly: bool,
            json: bool,
            out: Any,
            err: Any,
        ) -> int:
            self.calls.append((configDirectory, mode, action, list(args), fold, valuesOnly, namesOnly, json))
            return 0

        # Stand in for the master.cf side, whether or not it exists yet.
        name = "mtaguard.postconf._master"
        module = type(sys)(name)
        module.runMaster = fakeRunMaster  # type: ignore[attr-defined]
        previous = sys.modules.get(name)
        sys.modules[name] = module

        def restore() -> None:
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous

        self.addCleanup(restore)
        self.assertIs(cli.main, main)

    def test_dispatch(self) -> None:
        """
        Each form maps to one mode and action.
        """
        cases = [
            (["-M"], ("M", "show", [], False)),
            (["-Mf", "smtp/inet"], ("M", "show", ["smtp/inet"], True)),
            (["-F", "smtp/inet/command"], ("F", "show", ["smtp/inet/command"], False)),
            (["-P"], ("P", "show", [], False)),
            (["-M", "x/unix=x unix - n n - - smtp"], ("M", "edit", ["x/unix=x unix - n n - - smtp"], False)),
            (["-MX", "x/unix"], ("M", "delete", ["x/unix"], False)),
            (["-M#", "x/unix"], ("M", "comment", ["x/unix"], False)),
            (["-PX", "smtp/inet/a"], ("P", "delete", ["smtp/inet/a"], False)),
            (["-Pe", "smtp/inet/a=b"], ("P", "edit", ["smtp/inet/a=b"], False)),
            (["-Fe", "smtp/inet/chroot=n"], ("F", "edit", ["smtp/inet/chroot=n"], False)),
        ]
        for args, (mode, action, operands, fold) in cases:
            del self.calls[:]
            status = main(["-c", "/d", *args], out=io.StringIO(), err=io.StringIO(), environ={})
            self.assertEqual(status, 0, args)
            self.assertEqual(self.calls, [("/d", mode, action, operands, fold, False, False, False)])

    def test_flags(self) -> None:
        """
        C{-h}, C{-H} and C{--json} are passed on.
        """
        main(["-c", "/d", "--json", "-Ph"], out=io.StringIO(), err=io.StringIO(), environ={})
        self.assertEqual(self.calls, [("/d", "P", "show", [], False, True, False, True)])


class JSONTests(SynchronousTestCase):
    """
    C{--json} prints the answer as one JSON object.
    """

    def test_named(self) -> None:
        """
        Named parameters in argument order, values normalized as in the
        text output; unknown names are warned about and left out.
        """
        directory = makeConfig(self, REALISTIC_MAIN_CF)
        status, out, err = runOurs(directory, ["--json", "mynetworks", "myhostname", "nonexistent"])
        self.assertEqual(status, 0)
        self.assertEqual(
            out,
            '{"mynetworks": "127.0.0.0/8 [::1]/128 192.168.0.0/16", "myhostname": "mx.example.com"}\n',
        )
        self.assertIn("mtaguard-postconf: warning: nonexistent: unknown parameter\n", err)

    def test_nonDefault(self) -> None:
        """
        C{--json -n} gives every name set in main.cf; C{-x} expands.
        """
        directory = makeConfig(self, REALISTIC_MAIN_CF)
        status, out, err = runOurs(directory, ["--json", "-nx"])
        answer = json.loads(out)
        self.assertEqual(answer["smtpd_banner"], "mx.example.com ESMTP Postfix")
        self.assertEqual(answer["config_directory"], directory)
        self.assertNotIn("my_custom_param", answer)

    def test_all(self) -> None:
        """
        C{--json} alone gives every known parameter.
        """
        directory = makeConfig(self, "")
        status, out, err = runOurs(directory, ["--json"])
        answer = json.loads(out)
        self.assertEqual(answer["smtpd_timeout"], "${stress?{10}:{300}}s")
        self.assertIn("relay_destination_concurrency_limit", answer)

    def test_notForEdits(self) -> None:
        """
        C{--json} does not combine with edits.
        """
        directory = makeConfig(self, "")
        status, out, err = runOurs(directory, ["--json", "-e", "a=1"])
        self.assertEqual(status, 1)
        self.assertEqual(err, "mtaguard-postconf: fatal: --json applies to queries only\n")
