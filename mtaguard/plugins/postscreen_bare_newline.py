"""
Postfix's postscreen test C{bare_newline}, as a plugin.

The bare newline test of the dummy SMTP engine: a command line that ends
in LF without CR.
"""

from ..config import params
from ..postscreen._checks import AFTER_GREETING, ToggledTest

check = ToggledTest(
    "bare_newline",
    AFTER_GREETING,
    params.postscreen_bare_newline_enable,
    params.postscreen_bare_newline_action,
    params.postscreen_bare_newline_ttl,
)
