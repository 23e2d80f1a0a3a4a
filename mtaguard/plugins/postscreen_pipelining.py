"""
Postfix's postscreen test C{pipelining}, as a plugin.

The command pipelining test of the dummy SMTP engine: a client that sends
more commands before a reply, without PIPELINING announced.
"""

from ..config import params
from ..postscreen._checks import AFTER_GREETING, ToggledTest

check = ToggledTest(
    "pipelining",
    AFTER_GREETING,
    params.postscreen_pipelining_enable,
    params.postscreen_pipelining_action,
    params.postscreen_pipelining_ttl,
)
