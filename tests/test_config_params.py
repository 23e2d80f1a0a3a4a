"""
Tests for the parameter declarations in L{mtaguard.config.params} and
L{mtaguard.config._compat}, checked against real Postfix.

C{tests/data/postconf-d-3.7.txt} is the verbatim output of Postfix 3.7.11
(Debian 12 package 3.7.11-0+deb12u1) for an empty configuration, generated
once with::

    d=$(mktemp -d); touch $d/main.cf $d/master.cf
    postconf -c $d -d > tests/data/postconf-d-3.7.txt

Its host-dependent lines (myhostname, mydomain, mynetworks, process_id,
process_name) describe the machine it was made on; the tests compute those
instead of comparing them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mtaguard.config import _compat, _hostdefaults, params
from mtaguard.config._expand import Expander
from mtaguard.config._registry import Kind, Parameter, registry

TOP = Path(__file__).resolve().parent.parent
TABLE_PATH = TOP / "tests" / "data" / "postconf-d-3.7.txt"
DOCS_PATH = TOP / "docs" / "parameters.md"


def readTable() -> dict[str, str]:
    """
    The reference table as name -> default text.
    """
    table: dict[str, str] = {}
    for line in TABLE_PATH.read_text().splitlines():
        name, sep, value = line.partition(" = ")
        if not sep:
            name, value = line.rstrip().removesuffix("=").rstrip(), ""
        table[name.strip()] = value
    return table


TABLE = readTable()

#: Where mtaguard deliberately differs from Postfix 3.7's default.
DELIBERATE = {"smtpd_forbid_bare_newline": "normalize"}


def loadTool(name: str) -> ModuleType:
    """
    Import C{tools/<name>.py}, which is not part of a package.
    """
    spec = importlib.util.spec_from_file_location(name, TOP / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def defaultsLookup(stress: str, compatibilityLevel: str) -> Callable[[str], Optional[str]]:
    """
    A lookup over the registry defaults, with C{stress} and
    C{compatibility_level} set as given.
    """
    overrides = {"stress": stress, "compatibility_level": compatibilityLevel}

    def lookup(name: str) -> Optional[str]:
        if name in overrides:
            return overrides[name]
        parameter = registry.get(name)
        return None if parameter is None else parameter.defaultText()

    return lookup


class DefaultsTests(SynchronousTestCase):
    """
    Registry defaults match C{postconf -d} of Postfix 3.7.
    """

    def test_defaultsMatchPostfix(self) -> None:
        """
        Every Postfix parameter in the registry has exactly the default
        text of the reference table, except host-dependent ones (computed)
        and the documented deliberate differences.
        """
        mismatches = []
        for parameter in registry:
            if not parameter.postfix or callable(parameter.default):
                continue
            expected = DELIBERATE.get(parameter.name, TABLE.get(parameter.name))
            if expected is None:
                continue  # legacy names: see test_legacyNamesAreEmpty
            if parameter.default != expected:
                mismatches.append((parameter.name, parameter.default, expected))
        self.assertEqual(mismatches, [])

    def test_legacyNamesAreEmpty(self) -> None:
        """
        Registered Postfix names missing from the table are the legacy names
        that current defaults refer to; C{postconf -d} prints them empty.
        """
        legacy = [p for p in registry if p.postfix and p.name not in TABLE]
        self.assertTrue(legacy)
        self.assertEqual([(p.name, p.default) for p in legacy if p.default != ""], [])

    def test_deliberateDifference(self) -> None:
        """
        C{smtpd_forbid_bare_newline} defaults to C{normalize} where Postfix
        3.7 says C{no}, and says so in its note.
        """
        parameter = params.smtpd_forbid_bare_newline
        self.assertEqual(TABLE["smtpd_forbid_bare_newline"], "no")
        self.assertEqual(parameter.defaultText(), "normalize")
        self.assertEqual(parameter.choices, ("no", "normalize", "yes", "reject"))
        self.assertIn("Postfix 3.9", parameter.note)
        self.assertEqual(params.smtpd_forbid_bare_newline_exclusions.default, "$mynetworks")
        self.assertEqual(params.smtpd_forbid_bare_newline_reject_code.default, "550")

    def test_hostDependentDefaults(self) -> None:
        """
        Host-dependent defaults compute a non-empty value that is valid for
        the parameter's type.
        """
        computed = [p for p in registry if callable(p.default)]
        self.assertEqual(
            {p.name for p in computed},
            {"myhostname", "mydomain", "mynetworks", "process_id", "process_name"},
        )
        for parameter in computed:
            text = parameter.defaultText()
            self.assertTrue(text, parameter.name)
            parameter.convert(text)

    def test_everyTableNameRegistered(self) -> None:
        """
        Every parameter Postfix 3.7 knows is in the registry.
        """
        self.assertEqual([name for name in TABLE if name not in registry], [])

    def test_timeUnitsFollowDefaults(self) -> None:
        """
        A time parameter's default unit is the unit letter of its default,
        as Postfix derives it (so C{maximal_queue_lifetime} counts days).
        """
        for parameter in registry:
            if parameter.kind is Kind.TIME:
                self.assertEqual(parameter.unit, str(parameter.default)[-1], parameter.name)
        self.assertEqual(params.maximal_queue_lifetime.convert("2"), 2 * 86400)
        self.assertEqual(params.postscreen_dnsbl_max_ttl.convert("1"), 3600)


class DeclarationTests(SynchronousTestCase):
    """
    The declarations are complete and consistent.
    """

    def test_docs(self) -> None:
        """
        Every registered parameter has a non-empty one-line description.
        """
        for parameter in registry:
            self.assertTrue(parameter.doc.strip(), parameter.name)
            self.assertNotIn("\n", parameter.doc, parameter.name)

    def test_attributeNames(self) -> None:
        """
        Every parameter attribute of L{params} is named like its parameter,
        and every parameter mtaguard uses is such an attribute.
        """
        attributes = {
            key: value for key, value in vars(params).items() if isinstance(value, Parameter)
        }
        self.assertEqual([k for k, v in attributes.items() if k != v.name], [])
        self.assertEqual(
            [p.name for p in registry if p.used and p.name not in attributes], []
        )

    def test_compatibilityOnly(self) -> None:
        """
        Parameters declared in L{_compat} are unused strings sharing one
        description.
        """
        unused = [p for p in registry if not p.used]
        self.assertTrue(unused)
        for parameter in unused:
            self.assertIs(parameter.kind, Kind.STRING)
            self.assertEqual(parameter.doc, _compat.COMPAT_DOC)
            self.assertTrue(parameter.postfix)

    def test_compatModuleUpToDate(self) -> None:
        """
        The committed C{_compat.py} is what C{tools/generate_compat.py}
        produces now.
        """
        expected = loadTool("generate_compat").generate()
        actual = (TOP / "mtaguard" / "config" / "_compat.py").read_text()
        self.assertEqual(actual, expected)

    def test_usedDefaultsConvert(self) -> None:
        """
        Every used parameter's default, expanded with C{stress} set and
        unset and at compatibility levels 0 and 3.6, converts to its type
        within its bounds.  Raw parameters are converted unexpanded.
        """
        for stress in ("yes", ""):
            for level in ("0", "3.6"):
                lookup = defaultsLookup(stress, level)
                expander = Expander(lookup)
                for parameter in registry:
                    if not parameter.used:
                        continue
                    if parameter.name in params.RAW_PARAMETERS:
                        text = parameter.defaultText()
                    else:
                        text = expander.name(parameter.name)
                    try:
                        parameter.convert(text)
                    except ValueError as error:
                        self.fail(f"{parameter.name} ({stress=}, {level=}): {error}")

    def test_stressDependentDefaults(self) -> None:
        """
        Under stress the stress-dependent defaults take their overload
        values.
        """
        normal = Expander(defaultsLookup("", "0"))
        stressed = Expander(defaultsLookup("yes", "0"))
        cases = {
            "smtpd_timeout": (300, 10),
            "smtpd_starttls_timeout": (300, 10),
            "smtpd_hard_error_limit": (20, 1),
            "smtpd_junk_command_limit": (100, 1),
            "smtpd_per_request_deadline": (False, True),
            "postscreen_greet_wait": (6, 2),
            "postscreen_command_time_limit": (300, 10),
        }
        for name, (atRest, underStress) in cases.items():
            parameter = registry.get(name)
            assert parameter is not None
            self.assertEqual(parameter.convert(normal.name(name)), atRest, name)
            self.assertEqual(parameter.convert(stressed.name(name)), underStress, name)


class HostDefaultsTests(SynchronousTestCase):
    """
    Host-dependent defaults agree with the real C{postconf}.
    """

    def test_hostnameRule(self) -> None:
        """
        A single-label host name gets C{.localdomain}; a dotted one is kept.
        """
        self.assertEqual(_hostdefaults.qualifyHostname("vm"), "vm.localdomain")
        self.assertEqual(_hostdefaults.qualifyHostname("mx.example.com"), "mx.example.com")
        self.assertIn(".", _hostdefaults.myhostname())

    def test_domainRule(self) -> None:
        """
        C{mydomain} drops the first label only when the rest still has a
        dot, else it is C{localdomain}.
        """
        self.assertEqual(_hostdefaults.domainOf("mx.example.com"), "example.com")
        self.assertEqual(_hostdefaults.domainOf("vm.localdomain"), "localdomain")
        self.assertEqual(_hostdefaults.domainOf("example.com"), "localdomain")
        self.assertEqual(_hostdefaults.domainOf("a.b.c.d"), "b.c.d")

    def test_mynetworksShape(self) -> None:
        """
        The computed C{mynetworks} lists IPv4 networks as C{net/len} and IPv6
        networks as C{[net]/len}, without duplicates, loopback included.
        """
        patterns = _hostdefaults.mynetworks().split()
        self.assertEqual(len(patterns), len(set(patterns)))
        self.assertIn("127.0.0.0/8", patterns)
        for pattern in patterns:
            address, _, length = pattern.rpartition("/")
            self.assertTrue(length.isdigit(), pattern)
            if ":" in address:
                self.assertTrue(address.startswith("[") and address.endswith("]"), pattern)

    def test_matchesPostconf(self) -> None:
        """
        When Postfix's C{postconf} is installed, its C{-d} output for
        myhostname, mydomain and mynetworks equals ours.  Without it the
        test is skipped, except under CI, where it fails.
        """
        postconf = shutil.which("postconf") or shutil.which(
            "postconf", path="/usr/sbin:/usr/local/sbin"
        )
        if postconf is None:
            if os.environ.get("CI") == "true":
                self.fail("postconf is not installed, but CI requires this comparison")
            raise SkipTest("postconf is not installed")
        names = ["myhostname", "mydomain", "mynetworks"]
        with tempfile.TemporaryDirectory() as directory:
            for name in ("main.cf", "master.cf"):
                Path(directory, name).touch()
            output = subprocess.run(
                [postconf, "-c", directory, "-d", *names],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        expected = dict(line.partition(" = ")[::2] for line in output.splitlines())
        for name in names:
            parameter = registry.get(name)
            assert parameter is not None
            self.assertEqual(parameter.defaultText(), expected[name], name)


class DocumentationTests(SynchronousTestCase):
    """
    The generated parameter documentation cannot go stale.
    """

    def test_docsUpToDate(self) -> None:
        """
        The committed C{docs/parameters.md} is what
        C{tools/generate_parameter_docs.py} produces now.
        """
        expected = loadTool("generate_parameter_docs").generate()
        self.assertEqual(DOCS_PATH.read_text(), expected)
