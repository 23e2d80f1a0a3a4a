"""
Postfix's postscreen test C{non_smtp_command}, as a plugin.

The non-SMTP command test of the dummy SMTP engine: header-like lines and
C{postscreen_forbidden_commands} (HTTP's CONNECT, GET, POST...).
"""

from __future__ import annotations

from typing import Optional

from twisted.plugin import IPlugin
from zope.interface import implementer

from ..config import ParameterView, params
from ..interfaces import IPostscreenCheck
from ..postscreen._checks import AFTER_GREETING, BuiltinCheck, CheckResources


@implementer(IPlugin, IPostscreenCheck)
class NonSmtpCommandCheck:
    """
    The C{non_smtp_command} test; postscreen's core runs it with Postfix's semantics.
    """

    name = "non_smtp_command"
    phase = AFTER_GREETING

    def configure(self, view: ParameterView, resources: CheckResources) -> Optional[BuiltinCheck]:
        if not view[params.postscreen_non_smtp_command_enable]:
            return None
        return BuiltinCheck(
            self.name,
            view[params.postscreen_non_smtp_command_action],
            float(view[params.postscreen_non_smtp_command_ttl]),
        )


check = NonSmtpCommandCheck()
