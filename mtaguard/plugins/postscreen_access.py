"""
Postfix's postscreen test C{access}, as a plugin.

The permanent access list, C{postscreen_access_list}: C{permit_mynetworks},
C{cidr:} tables, C{permit}, C{reject}, C{dunno}; a denylisted client meets
C{postscreen_denylist_action}.
"""

from __future__ import annotations

from typing import Optional

from twisted.plugin import IPlugin
from zope.interface import implementer

from ..config import ConfigurationError, ParameterView, params
from ..interfaces import IPostscreenCheck
from ..postscreen._checks import BEFORE_GREETING, BuiltinCheck, CheckResources
from ..postscreen._access import AccessList, AccessListError


@implementer(IPlugin, IPostscreenCheck)
class AccessCheck:
    """
    The C{access} test; postscreen's core runs it with Postfix's semantics.
    """

    name = "access"
    phase = BEFORE_GREETING

    def configure(self, view: ParameterView, resources: CheckResources) -> Optional[BuiltinCheck]:
        items = view[params.postscreen_access_list]
        if not items:
            return None
        try:
            accessList = AccessList.parse(items, readFile=resources.readFile)
        except AccessListError as error:
            raise ConfigurationError(str(error)) from None
        return BuiltinCheck(self.name, view[params.postscreen_denylist_action], 0.0, accessList)


check = AccessCheck()
