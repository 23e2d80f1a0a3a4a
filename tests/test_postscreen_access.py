"""
Tests for L{mtaguard.postscreen._access}: postscreen_access_list.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.postscreen._access import Access, AccessList, AccessListError, CIDRTable

TABLE = """\
# postscreen_access.cidr
192.168.0.1         dunno
192.168.0.0/16      reject
127.0.0.50/32       reject
127.0.0.51          permit
[2001:db8::]/32     reject
"""


def accessList(*items: str, table: str = TABLE) -> AccessList:
    return AccessList.parse(items, readFile=lambda path: table)


def myNetworks(address: str) -> bool:
    return address.startswith("10.")


class AccessListTests(SynchronousTestCase):
    """
    The first element that decides wins, as in Postfix.
    """

    def test_default(self) -> None:
        """
        The default C{permit_mynetworks} allows mynetworks and decides
        nothing for others.
        """
        access = accessList("permit_mynetworks")
        self.assertIs(access.decide("10.1.2.3", myNetworks), Access.PERMIT)
        self.assertIs(access.decide("203.0.113.9", myNetworks), Access.DUNNO)

    def test_cidrTable(self) -> None:
        """
        The postconf(5) example: C{dunno} in the table goes on with the next
        element, a reject network rejects, and the live-tested permit and
        reject entries work.
        """
        access = accessList("permit_mynetworks", "cidr:/etc/postfix/postscreen_access.cidr")
        self.assertIs(access.decide("192.168.0.1", myNetworks), Access.DUNNO)
        self.assertIs(access.decide("192.168.7.7", myNetworks), Access.REJECT)
        self.assertIs(access.decide("127.0.0.50", myNetworks), Access.REJECT)
        self.assertIs(access.decide("127.0.0.51", myNetworks), Access.PERMIT)
        self.assertIs(access.decide("2001:db8::25", myNetworks), Access.REJECT)
        self.assertIs(access.decide("::ffff:192.168.1.1", myNetworks), Access.REJECT)

    def test_dunnoInTableContinues(self) -> None:
        """
        A table's dunno continues with the next element; a bare dunno stops.
        """
        access = accessList("cidr:/t", "reject")
        self.assertIs(access.decide("192.168.0.1", myNetworks), Access.REJECT)
        access = accessList("dunno", "reject")
        self.assertIs(access.decide("192.168.0.1", myNetworks), Access.DUNNO)

    def test_errors(self) -> None:
        """
        Unsupported elements and malformed tables are refused with a message
        naming the element or the file line.
        """
        self.assertRaises(AccessListError, accessList, "hash:/etc/postfix/access")
        error = self.assertRaises(
            AccessListError, accessList, "cidr:/t", table="10.0.0.0/8 maybe\n"
        )
        self.assertIn("cidr:/t, line 1", str(error))
        self.assertRaises(AccessListError, CIDRTable.parse, "cidr:/t", "10.0.0.1/8 reject\n")
        self.assertRaises(AccessListError, CIDRTable.parse, "cidr:/t", "if /x/\nendif\n")

    def test_unreadable(self) -> None:
        """
        A table file that cannot be read is an error, not an empty table.
        """

        def missing(path: str) -> str:
            raise FileNotFoundError(2, "No such file or directory")

        self.assertRaises(
            AccessListError, AccessList.parse, ["cidr:/nope"], readFile=missing
        )
