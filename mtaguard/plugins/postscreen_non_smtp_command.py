"""
Postfix's postscreen test C{non_smtp_command}, as a plugin.

The non-SMTP command test of the dummy SMTP engine: header-like lines and
C{postscreen_forbidden_commands} (HTTP's CONNECT, GET, POST...).
"""

from ..config import params
from ..postscreen._checks import AFTER_GREETING, ToggledTest

check = ToggledTest(
    "non_smtp_command",
    AFTER_GREETING,
    params.postscreen_non_smtp_command_enable,
    params.postscreen_non_smtp_command_action,
    params.postscreen_non_smtp_command_ttl,
)
