"""
Tests for L{mtaguard.service}: the service tree built from master.cf.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.config import parseConfiguration
from mtaguard.config._mastercf import parseMasterCf
from mtaguard.service import LISTEN_BACKLOG, ClientTransport, endpointDescriptions, makeMasterService
from mtaguard.smtpd._service import SMTPServerService

STOCK_MASTER_CF = "/usr/share/postfix/master.cf.dist"


def stockMasterCf(testCase: SynchronousTestCase) -> str:
    if not os.path.exists(STOCK_MASTER_CF):
        if os.environ.get("CI") == "true":
            testCase.fail(f"{STOCK_MASTER_CF} missing: install Debian's postfix package")
        raise testCase.skipTest(f"{STOCK_MASTER_CF} not installed")
    with open(STOCK_MASTER_CF) as handle:
        return handle.read()


class EndpointTests(SynchronousTestCase):
    """
    inet service names become Twisted endpoint descriptions.
    """

    def endpoints(self, name: str, **main: str) -> tuple[str, ...]:
        configuration = parseConfiguration(
            "/nonexistent", "".join(f"{k} = {v}\n" for k, v in main.items()),
            f"{name} inet n - n - - smtpd\n",
        )
        [entry] = configuration.services()
        return endpointDescriptions(entry, configuration.view(entry))

    def test_hostAndPort(self) -> None:
        """
        C{host:port} binds that address with a large listen backlog.
        """
        self.assertEqual(
            self.endpoints("127.0.0.1:2525"),
            (f"tcp:2525:interface=127.0.0.1:backlog={LISTEN_BACKLOG}",),
        )

    def test_ipv6(self) -> None:
        """
        C{[::1]:port} binds IPv6 loopback, with the colons escaped.
        """
        self.assertEqual(
            self.endpoints("[::1]:2525"),
            (f"tcp6:2525:interface=\\:\\:1:backlog={LISTEN_BACKLOG}",),
        )

    def test_serviceNameAndInterfaces(self) -> None:
        """
        A bare service name is looked up (smtp is 25) and bound on every
        inet_interfaces address.
        """
        self.assertEqual(
            self.endpoints("smtp", inet_interfaces="loopback-only", inet_protocols="ipv4"),
            (f"tcp:25:interface=127.0.0.1:backlog={LISTEN_BACKLOG}",),
        )


class StockMasterCfTests(SynchronousTestCase):
    """
    Debian's stock master.cf starts unchanged.
    """

    def test_stock(self) -> None:
        """
        Internal services are noted once, unsupported programs are warned
        about with their line, and smtpd, smtp and postscreen services are
        built.
        """
        text = stockMasterCf(self)
        configuration = parseConfiguration(
            self.mktemp(), "queue_directory = /nonexistent/q\n", text
        )
        with capturedLogs() as events:
            top = makeMasterService(configuration, reactor=Clock())
        rendered = [e["log_format"].format(**e) for e in events]
        internal = [line for line in rendered if "internal services" in line]
        self.assertEqual(len(internal), 1)
        self.assertIn("pickup/unix", internal[0])
        unsupported = [line for line in rendered if "is not supported by mtaguard" in line]
        entries = {e.command for e in parseMasterCf(text).entries}
        self.assertIn("pipe", entries)
        self.assertTrue(any("program pipe" in line and ", line " in line for line in unsupported))
        children = {child.name: child for child in top}  # type: ignore[attr-defined]
        self.assertIsInstance(children["smtp/inet"], SMTPServerService)
        self.assertIsInstance(children["smtp/unix"], ClientTransport)
        self.assertIn("qmgr", children)
