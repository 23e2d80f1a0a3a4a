"""
Tests for L{mtaguard.config._view.ParameterView}: typed, stress-aware
lookups.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config._registry import Kind, Parameter, Registry
from mtaguard.config._view import ParameterError, ParameterView


def makeRegistry() -> tuple[Registry, dict[str, Parameter[object]]]:
    registry = Registry()
    declared: dict[str, Parameter[object]] = {}
    for parameter in [
        Parameter("smtpd_timeout", "${stress?{10}:{300}}s", Kind.TIME, "t", minimum=1),
        Parameter("maximal_queue_lifetime", "5d", Kind.TIME, "q", unit="d"),
        Parameter("smtpd_hard_error_limit", "${stress?{1}:{20}}", Kind.INT, "h"),
        Parameter("disable_vrfy_command", "no", Kind.BOOL, "v"),
        Parameter("myhostname", "host.example", Kind.STRING, "n"),
        Parameter("smtpd_banner", "$myhostname ESMTP $mail_name", Kind.STRING, "b"),
        Parameter("mail_name", "Postfix", Kind.STRING, "m"),
        Parameter(
            "smtpd_forbid_bare_newline",
            "normalize",
            Kind.STRING,
            "f",
            choices=("no", "normalize", "yes", "reject"),
        ),
        Parameter("mynetworks", "127.0.0.0/8", Kind.LIST, "l"),
        Parameter("unused_thing", "abc", Kind.STRING, "u", used=False),
    ]:
        declared[parameter.name] = registry.add(parameter)
    return registry, declared


class ParameterViewTests(SynchronousTestCase):
    """
    A view answers typed values, expands references and follows stress.
    """

    def setUp(self) -> None:
        self.registry, self.p = makeRegistry()

    def view(self, **values: str) -> ParameterView:
        return ParameterView(
            values, origins={k: ("/etc/mtaguard/main.cf", 7) for k in values},
            registry=self.registry,
        )

    def test_typedDefaults(self) -> None:
        """
        Defaults convert to their declared type: times to seconds in the
        parameter's default unit, numbers, booleans, lists.
        """
        view = self.view()
        self.assertEqual(view[self.p["smtpd_timeout"]], 300)
        self.assertEqual(view[self.p["maximal_queue_lifetime"]], 5 * 86400)
        self.assertEqual(view[self.p["smtpd_hard_error_limit"]], 20)
        self.assertIs(view[self.p["disable_vrfy_command"]], False)
        self.assertEqual(view[self.p["mynetworks"]], ("127.0.0.0/8",))
        self.assertEqual(view[self.p["smtpd_banner"]], "host.example ESMTP Postfix")

    def test_units(self) -> None:
        """
        A bare number takes the parameter's default unit; an explicit unit
        wins.
        """
        view = self.view(maximal_queue_lifetime="2", smtpd_timeout="2m")
        self.assertEqual(view[self.p["maximal_queue_lifetime"]], 2 * 86400)
        self.assertEqual(view[self.p["smtpd_timeout"]], 120)

    def test_stressSwitch(self) -> None:
        """
        Setting C{stress} switches stress-dependent values at the next
        lookup, and back, without rebuilding the view.
        """
        view = self.view()
        timeout = self.p["smtpd_timeout"]
        self.assertEqual(view[timeout], 300)
        view.stress = True
        self.assertEqual(view[timeout], 10)
        self.assertEqual(view[self.p["smtpd_hard_error_limit"]], 1)
        view.stress = False
        self.assertEqual(view[timeout], 300)

    def test_explicitBeatsDefault(self) -> None:
        """
        An explicit setting replaces the default, and may refer to others.
        """
        view = self.view(myhostname="mx.example.org", smtpd_banner="$myhostname hi")
        self.assertEqual(view[self.p["smtpd_banner"]], "mx.example.org hi")
        self.assertTrue(view.isExplicit("myhostname"))
        self.assertFalse(view.isExplicit("mail_name"))

    def test_badValueNamesFileLineParameter(self) -> None:
        """
        A value that does not convert raises L{ParameterError} whose text
        names the file, the line and the parameter.
        """
        view = self.view(smtpd_timeout="abc")
        error = self.assertRaises(ParameterError, view.__getitem__, self.p["smtpd_timeout"])
        self.assertTrue(
            str(error).startswith(
                "/etc/mtaguard/main.cf, line 7: invalid smtpd_timeout parameter value:"
            ),
            str(error),
        )

    def test_bounds(self) -> None:
        """
        Values outside the declared bounds are refused.
        """
        view = self.view(smtpd_timeout="0")
        self.assertRaises(ParameterError, view.__getitem__, self.p["smtpd_timeout"])

    def test_choices(self) -> None:
        """
        Enumerations accept their values in any case and refuse others.
        """
        self.assertEqual(
            self.view(smtpd_forbid_bare_newline="Reject")[self.p["smtpd_forbid_bare_newline"]],
            "reject",
        )
        view = self.view(smtpd_forbid_bare_newline="sometimes")
        self.assertRaises(
            ParameterError, view.__getitem__, self.p["smtpd_forbid_bare_newline"]
        )

    def test_checkFindsStressOnlyErrors(self) -> None:
        """
        L{ParameterView.check} looks at stress values too, so an error that
        only shows under overload is caught at start-up; unused parameters
        are not checked.
        """
        view = self.view(smtpd_timeout="${stress?{soon}:{300}}s", unused_thing="$((")
        error = self.assertRaises(ParameterError, view.check)
        self.assertEqual(error.parameter, "smtpd_timeout")
        self.assertIs(view.stress, False)

    def test_malformedExpression(self) -> None:
        """
        A malformed C{$} expression is a L{ParameterError} too.
        """
        view = self.view(smtpd_banner="${oops")
        self.assertRaises(ParameterError, view.__getitem__, self.p["smtpd_banner"])
