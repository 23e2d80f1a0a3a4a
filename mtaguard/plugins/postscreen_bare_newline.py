"""
Postfix's postscreen test C{bare_newline}, as a plugin.

The bare newline test of the dummy SMTP engine: a command line that ends
in LF without CR.
"""

from __future__ import annotations

from typing import Optional

from twisted.plugin import IPlugin
from zope.interface import implementer

from ..config import ParameterView, params
from ..interfaces import IPostscreenCheck
from ..postscreen._checks import AFTER_GREETING, BuiltinCheck, CheckResources


@implementer(IPlugin, IPostscreenCheck)
class BareNewlineCheck:
    """
    The C{bare_newline} test; postscreen's core runs it with Postfix's semantics.
    """

    name = "bare_newline"
    phase = AFTER_GREETING

    def configure(self, view: ParameterView, resources: CheckResources) -> Optional[BuiltinCheck]:
        if not view[params.postscreen_bare_newline_enable]:
            return None
        return BuiltinCheck(
            self.name,
            view[params.postscreen_bare_newline_action],
            float(view[params.postscreen_bare_newline_ttl]),
        )


check = BareNewlineCheck()
