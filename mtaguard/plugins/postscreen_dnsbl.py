"""
Postfix's postscreen test C{dnsbl}, as a plugin.

Weighted DNS block- and allowlists, C{postscreen_dnsbl_sites}, queried in
parallel during the greeting wait.
"""

from __future__ import annotations

from typing import Optional

from twisted.plugin import IPlugin
from zope.interface import implementer

from ..config import ConfigurationError, ParameterView, params
from ..interfaces import IPostscreenCheck
from ..postscreen._checks import BEFORE_GREETING, BuiltinCheck, CheckResources, DNSBLSetup
from ..postscreen._dnsbl import DNSBLSyntaxError, parseSites
from ..postscreen._dnsbllookup import DNSBLLookup


@implementer(IPlugin, IPostscreenCheck)
class DnsblCheck:
    """
    The C{dnsbl} test; postscreen's core runs it with Postfix's semantics.
    """

    name = "dnsbl"
    phase = BEFORE_GREETING

    def configure(self, view: ParameterView, resources: CheckResources) -> Optional[BuiltinCheck]:
        items = view[params.postscreen_dnsbl_sites]
        if not items:
            return None
        try:
            sites = parseSites(items)
        except DNSBLSyntaxError as error:
            raise ConfigurationError(f"postscreen_dnsbl_sites: {error}") from None
        if resources.resolver is None:
            raise ConfigurationError("postscreen_dnsbl_sites is set but no DNS resolver is available")
        lookup = DNSBLLookup(
            resources.resolver,
            clock=resources.reactor,
            timeout=view[params.postscreen_dnsbl_timeout],
            minTTL=view[params.postscreen_dnsbl_min_ttl],
            maxTTL=view[params.postscreen_dnsbl_max_ttl],
        )
        return BuiltinCheck(
            self.name,
            view[params.postscreen_dnsbl_action],
            float(view[params.postscreen_dnsbl_min_ttl]),
            DNSBLSetup(sites, lookup),
        )


check = DnsblCheck()
