"""
The C{twistd mtaguard} plugin.  This file only creates the service maker;
everything else lives in the C{mtaguard} package.
"""

from twisted.application.service import ServiceMaker

mtaguardServiceMaker = ServiceMaker(
    "mtaguard",
    "mtaguard._tap",
    "A hardened SMTP front door configured like Postfix.",
    "mtaguard",
)
