"""
An example third-party postscreen check: refuse clients whose address is in
a file of addresses, one per line (a stand-in for a site's own reputation
service).  Copy it into a C{twisted/plugins/} or C{mtaguard/plugins/}
directory on C{sys.path} (without C{__init__.py}) and set, in main.cf::

    mtaguard_example_check_file = /etc/mtaguard/bad-clients
    mtaguard_example_check_action = enforce
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import threads
from twisted.plugin import IPlugin
from zope.interface import implementer

from mtaguard.config import ConfigurationError, Kind, Parameter, registry
from mtaguard.interfaces import IConfiguredCheck, IPostscreenCheck
from mtaguard.postscreen import BEFORE_GREETING, CheckFail, CheckPass

# Plugin parameters are declared once with registry.declare, so main.cf may
# set them and mtaguard-postconf knows them.
checkFile = registry.declare(
    Parameter(
        "mtaguard_example_check_file",
        "",
        Kind.STRING,
        "File of client addresses the example check refuses; empty: check off.",
        postfix=False,
    )
)
checkAction = registry.declare(
    Parameter(
        "mtaguard_example_check_action",
        "enforce",
        Kind.STRING,
        "What a listed client gets: ignore, enforce or drop.",
        choices=("ignore", "enforce", "drop"),
        postfix=False,
    )
)
checkTTL = registry.declare(
    Parameter(
        "mtaguard_example_check_ttl",
        "1h",
        Kind.TIME,
        "How long a pass of the example check is cached.",
        postfix=False,
    )
)


@implementer(IConfiguredCheck)
class _Configured:
    def __init__(self, path: str, action: str, ttl: float, reactor: Any) -> None:
        self.path = path
        self.action = action
        self.ttl = ttl
        self.reactor = reactor

    def _listed(self, address: str) -> bool:
        with open(self.path, encoding="utf-8") as handle:
            return any(line.strip() == address for line in handle)

    def check(self, client: Any) -> Any:
        # Never block the reactor: file and network work goes to a thread
        # (or is asynchronous to begin with).
        looking = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self._listed, client.address
        )
        return looking.addCallback(
            lambda listed: CheckFail(f"listed in {self.path}", "5.7.1 Service unavailable; listed locally")
            if listed
            else CheckPass()
        )

    def command(self, client: Any, verb: bytes, line: bytes) -> Any:
        return None


@implementer(IPlugin, IPostscreenCheck)
class ExampleCheck:
    name = "example"
    phase = BEFORE_GREETING

    def configure(self, view: Any, resources: Any) -> Optional[_Configured]:
        path = view[checkFile]
        if not path:
            return None
        try:
            open(path, encoding="utf-8").close()
        except OSError as error:
            raise ConfigurationError(f"mtaguard_example_check_file: {path}: {error.strerror}") from None
        return _Configured(path, view[checkAction], float(view[checkTTL]), resources.reactor)


example = ExampleCheck()
