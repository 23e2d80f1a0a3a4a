"""
Postfix's postscreen test C{pipelining}, as a plugin.

The command pipelining test of the dummy SMTP engine: a client that sends
more commands before a reply, without PIPELINING announced.
"""

from __future__ import annotations

from typing import Optional

from twisted.plugin import IPlugin
from zope.interface import implementer

from ..config import ParameterView, params
from ..interfaces import IPostscreenCheck
from ..postscreen._checks import AFTER_GREETING, BuiltinCheck, CheckResources


@implementer(IPlugin, IPostscreenCheck)
class PipeliningCheck:
    """
    The C{pipelining} test; postscreen's core runs it with Postfix's semantics.
    """

    name = "pipelining"
    phase = AFTER_GREETING

    def configure(self, view: ParameterView, resources: CheckResources) -> Optional[BuiltinCheck]:
        if not view[params.postscreen_pipelining_enable]:
            return None
        return BuiltinCheck(
            self.name,
            view[params.postscreen_pipelining_action],
            float(view[params.postscreen_pipelining_ttl]),
        )


check = PipeliningCheck()
