"""
Tests for L{mtaguard.client._sasl}: the client's SASL credentials and
mechanisms, from Postfix's parameters.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config import ConfigurationError, ParameterView
from mtaguard.client._sasl import SASLClientSettings, nexthopKeys


class SASLClientSettingsTests(SynchronousTestCase):
    """
    C{smtp_sasl_*} as Postfix reads them.
    """

    def settings(self, **values: str) -> SASLClientSettings:
        return SASLClientSettings.fromView(ParameterView(values))

    def passwordFile(self, text: str) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as handle:
            handle.write(text)
        return path

    def test_off(self) -> None:
        """
        By default nothing is looked up.
        """
        settings = self.settings()
        self.assertFalse(settings.enabled)
        self.assertIsNone(settings.credentials("mail.isp.example", "[mail.isp.example]:587"))

    def test_lookupOrder(self) -> None:
        """
        The server's host name is looked up first, then the next hop as
        written; the value is C{user:password} (the password may hold
        colons).
        """
        path = self.passwordFile(
            "[mail.isp.example]:587 relayuser:pa:ss\nmx2.isp.example hostuser:other\n"
        )
        settings = self.settings(smtp_sasl_auth_enable="yes", smtp_sasl_password_maps=f"texthash:{path}")
        self.assertEqual(
            settings.credentials("mail.isp.example", "[mail.isp.example]:587"), ("relayuser", "pa:ss")
        )
        self.assertEqual(
            settings.credentials("mx2.isp.example", "[mail.isp.example]:587"), ("hostuser", "other")
        )
        self.assertIsNone(settings.credentials("mx.other.example", "other.example"))

    def test_securityOptions(self) -> None:
        """
        Postfix's defaults allow PLAIN/LOGIN nowhere; C{noanonymous} for TLS
        sessions allows them inside TLS only.
        """
        defaults = self.settings(smtp_sasl_auth_enable="yes")
        self.assertEqual((defaults.overPlaintext, defaults.overTLS), (False, False))
        usual = self.settings(smtp_sasl_auth_enable="yes", smtp_sasl_tls_security_options="noanonymous")
        self.assertEqual((usual.overPlaintext, usual.overTLS), (False, True))
        everywhere = self.settings(smtp_sasl_auth_enable="yes", smtp_sasl_security_options="noanonymous")
        self.assertEqual((everywhere.overPlaintext, everywhere.overTLS), (True, True))

    def test_mechanismFilter(self) -> None:
        """
        C{smtp_sasl_mechanism_filter} narrows the mechanisms; one that
        leaves nothing usable is a configuration error.
        """
        self.assertEqual(
            self.settings(smtp_sasl_auth_enable="yes", smtp_sasl_mechanism_filter="login").mechanisms,
            ("LOGIN",),
        )
        self.assertRaises(
            ConfigurationError,
            self.settings,
            smtp_sasl_auth_enable="yes",
            smtp_sasl_mechanism_filter="cram-md5",
        )

    def test_badTable(self) -> None:
        """
        A table type mtaguard cannot read is a configuration error.
        """
        self.assertRaises(
            ConfigurationError,
            self.settings,
            smtp_sasl_auth_enable="yes",
            smtp_sasl_password_maps="hash:/etc/postfix/sasl_passwd",
        )


class NexthopKeysTests(SynchronousTestCase):
    """
    Next hops as password-table keys.
    """

    def test_keys(self) -> None:
        """
        A next hop is looked up with its port, and without it when it is 25.
        """
        self.assertEqual(nexthopKeys("mail.isp.example", 587, False), ("[mail.isp.example]:587",))
        self.assertEqual(
            nexthopKeys("mail.isp.example", 25, False), ("[mail.isp.example]:25", "[mail.isp.example]")
        )
        self.assertEqual(nexthopKeys("example.com", 25, True), ("example.com:25", "example.com"))
