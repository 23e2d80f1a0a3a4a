"""
Postfix's postscreen test C{pregreet}, as a plugin.

The pregreet test: a C{220-} teaser (C{postscreen_greet_banner}), then
C{postscreen_greet_wait} for a client that talks before its turn.
"""

from __future__ import annotations

from typing import Optional

from twisted.plugin import IPlugin
from zope.interface import implementer

from ..config import ParameterView, params
from ..interfaces import IPostscreenCheck
from ..postscreen._checks import BEFORE_GREETING, BuiltinCheck, CheckResources


@implementer(IPlugin, IPostscreenCheck)
class PregreetCheck:
    """
    The C{pregreet} test; postscreen's core runs it with Postfix's semantics.
    """

    name = "pregreet"
    phase = BEFORE_GREETING

    def configure(self, view: ParameterView, resources: CheckResources) -> Optional[BuiltinCheck]:
        if not view[params.postscreen_greet_banner]:
            return None
        return BuiltinCheck(
            self.name, view[params.postscreen_greet_action], float(view[params.postscreen_greet_ttl])
        )


check = PregreetCheck()
