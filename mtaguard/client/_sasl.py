# -*- test-case-name: tests.test_client_sasl -*-
"""
SASL authentication to the next hop: which credentials, which mechanisms.

Postfix's SMTP client (C{smtp_sasl_auth_enable = yes}) looks the password
up in C{smtp_sasl_password_maps} by the remote server's host name, then by
the next-hop destination as written (C{[mail.isp.example]:587} for that
C{relayhost}); the value is C{username:password}.  mtaguard speaks PLAIN
and LOGIN, both "plaintext" mechanisms in SASL's terms, so it uses them
only where the security options allow plaintext mechanisms: outside TLS
per C{smtp_sasl_security_options}, inside TLS per
C{smtp_sasl_tls_security_options} (Postfix's default, C{noplaintext,
noanonymous}, allows neither; a relayhost set-up usually says
C{smtp_sasl_tls_security_options = noanonymous}).
"""

from __future__ import annotations

from typing import Optional

from attrs import frozen

from ..config import ConfigurationError, ParameterView, params
from ._tables import TableError, TableList

#: The mechanisms mtaguard's client implements, in its order of preference.
MECHANISMS = ("PLAIN", "LOGIN")

#: The security option that excludes PLAIN and LOGIN.
NOPLAINTEXT = "noplaintext"


@frozen
class SASLClientSettings:
    """
    The client's SASL configuration.

    @ivar enabled: C{smtp_sasl_auth_enable}.
    @ivar passwords: C{smtp_sasl_password_maps}, opened.
    @ivar overPlaintext: whether PLAIN/LOGIN may be used without TLS.
    @ivar overTLS: whether PLAIN/LOGIN may be used inside TLS.
    @ivar mechanisms: the usable mechanisms, in order of preference, after
        C{smtp_sasl_mechanism_filter}.
    """

    enabled: bool
    passwords: Optional[TableList] = None
    overPlaintext: bool = False
    overTLS: bool = False
    mechanisms: tuple[str, ...] = MECHANISMS

    @classmethod
    def fromView(cls, view: ParameterView) -> SASLClientSettings:
        """
        Read the C{smtp_sasl_*} parameters.

        @raise ConfigurationError: for a password table that cannot be
            opened, or a mechanism filter that leaves nothing mtaguard can
            use.
        """
        if not view[params.smtp_sasl_auth_enable]:
            return cls(False)
        try:
            passwords = TableList.fromParameter(
                view[params.smtp_sasl_password_maps], parameter="smtp_sasl_password_maps"
            )
        except TableError as error:
            raise ConfigurationError(str(error)) from None
        wanted = [item.upper() for item in view[params.smtp_sasl_mechanism_filter]]
        mechanisms = tuple(m for m in MECHANISMS if not wanted or m in wanted)
        if not mechanisms:
            raise ConfigurationError(
                "smtp_sasl_mechanism_filter: none of the mechanisms mtaguard implements"
                f" ({', '.join(MECHANISMS)}) is allowed"
            )
        plain = [item.lower() for item in view[params.smtp_sasl_security_options]]
        tls = [item.lower() for item in view[params.smtp_sasl_tls_security_options]]
        return cls(
            True,
            passwords,
            overPlaintext=NOPLAINTEXT not in plain,
            overTLS=NOPLAINTEXT not in tls,
            mechanisms=mechanisms,
        )

    def credentials(self, host: str, *destinations: str) -> Optional[tuple[str, str]]:
        """
        The user name and password for a server, or L{None} (then the
        client does not authenticate).

        @param host: the server's host name (C{mail.isp.example}).
        @param destinations: the next hop as it may be written
            (C{[mail.isp.example]:587}; C{[mail.isp.example]} for port 25).
        @raise TableError: a table cannot be read now.
        """
        if not self.enabled or not self.passwords:
            return None
        for key in (host.lower().rstrip("."), *destinations):
            value = self.passwords.lookup(key)
            if value is not None:
                username, _, password = value.partition(":")
                return username, password
        return None


def nexthopKeys(host: str, port: int, mxLookup: bool, defaultPort: int = 25) -> tuple[str, ...]:
    """
    The ways an admin may have written a next hop in C{relayhost} or
    C{transport_maps}, as password-table keys: with its port, and without
    it when it is the default.

    >>> nexthopKeys("mail.isp.example", 587, False)
    ('[mail.isp.example]:587',)
    >>> nexthopKeys("example.com", 25, True)
    ('example.com:25', 'example.com')
    """
    name = host if mxLookup else f"[{host}]"
    keys = [f"{name}:{port}"]
    if port == defaultPort:
        keys.append(name)
    return tuple(keys)
