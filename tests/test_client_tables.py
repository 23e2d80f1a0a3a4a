"""
Tests for L{mtaguard.client._tables}: the Postfix lookup tables mtaguard
reads itself (C{texthash:}, C{inline:}, C{static:}) and the refusal of the
others.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.client._tables import (
    InlineTable,
    StaticTable,
    TableError,
    TableList,
    TextHashTable,
    UnsupportedTable,
    openTable,
    parseTextTable,
)


class ParseTextTableTests(SynchronousTestCase):
    """
    The C{postmap(1)} source format.
    """

    def test_keysAndValues(self) -> None:
        """
        Each line is a key, white space and a value; keys are folded to
        lower case, values keep their case and inner spaces.
        """
        table = parseTextTable(
            ["Example.COM   smtp:[Relay.example]:587\n", "b.example error:5.1.1 No Such User\n"],
            "t",
        )
        self.assertEqual(
            table,
            {"example.com": "smtp:[Relay.example]:587", "b.example": "error:5.1.1 No Such User"},
        )

    def test_commentsAndBlankLines(self) -> None:
        """
        Lines whose first non-blank character is C{#}, and blank lines, are
        ignored; a C{#} later in a line is data.
        """
        table = parseTextTable(
            ["# comment\n", "\n", "   \n", "  # indented comment\n", "a.example x#y\n"], "t"
        )
        self.assertEqual(table, {"a.example": "x#y"})

    def test_continuation(self) -> None:
        """
        A line starting with white space continues the previous one.
        """
        table = parseTextTable(["a.example error:5.7.1 mail\n", "  is not accepted\n"], "t")
        self.assertEqual(table, {"a.example": "error:5.7.1 mail is not accepted"})

    def test_duplicateKeepsFirst(self) -> None:
        """
        A duplicate key keeps its first value, as C{postmap} does.
        """
        table = parseTextTable(["a first\n", "A second\n"], "t")
        self.assertEqual(table, {"a": "first"})

    def test_keyWithoutValueSkipped(self) -> None:
        """
        A key without a value is skipped, not stored as empty.
        """
        self.assertEqual(parseTextTable(["lonely\n", "b c\n"], "t"), {"b": "c"})


class TextHashTableTests(SynchronousTestCase):
    """
    C{texthash:} files, read once and again when they change.
    """

    def write(self, text: str, stamp: int) -> str:
        path = getattr(self, "path", None) or self.mktemp()
        self.path = path
        with open(path, "w") as f:
            f.write(text)
        # Explicit times: the test never depends on the clock's resolution.
        os.utime(path, ns=(stamp, stamp))
        return path

    def test_lookup(self) -> None:
        """
        Keys are found case-insensitively; unknown keys give L{None}.
        """
        table = TextHashTable(self.write("example.com relay:[mx]\n", 10**9), parameter="transport_maps")
        self.assertEqual(table.lookup("EXAMPLE.com"), "relay:[mx]")
        self.assertIsNone(table.lookup("other.example"))
        self.assertEqual(table.name, f"texthash:{self.path}")

    def test_readOnceWhileUnchanged(self) -> None:
        """
        Lookups do not read the file again while it is unchanged.
        """
        table = TextHashTable(self.write("a b\n", 10**9), parameter="transport_maps")
        for _ in range(3):
            table.lookup("a")
        self.assertEqual(table.loads, 1)

    def test_reloadOnChange(self) -> None:
        """
        A new modification time makes the next lookup see the new content.
        """
        table = TextHashTable(self.write("a old\n", 10**9), parameter="transport_maps")
        self.assertEqual(table.lookup("a"), "old")
        self.write("a new\nb added\n", 2 * 10**9)
        self.assertEqual(table.lookup("a"), "new")
        self.assertEqual(table.lookup("b"), "added")
        self.assertEqual(table.loads, 2)

    def test_missingFile(self) -> None:
        """
        A file that cannot be read is an error naming the parameter.
        """
        error = self.assertRaises(
            TableError, TextHashTable, self.mktemp(), parameter="transport_maps"
        )
        self.assertIn("transport_maps", str(error))
        self.assertIn("No such file", str(error))

    def test_fileDisappears(self) -> None:
        """
        When the file goes away after it was read, lookups fail (the caller
        defers) instead of answering from nothing.
        """
        table = TextHashTable(self.write("a b\n", 10**9), parameter="transport_maps")
        os.remove(self.path)
        self.assertRaises(TableError, table.lookup, "a")


class InlineAndStaticTests(SynchronousTestCase):
    """
    C{inline:} and C{static:} tables.
    """

    def test_inline(self) -> None:
        """
        Items are separated by commas or white space; braces keep a value
        with spaces and commas whole.
        """
        table = InlineTable(
            "{ A.example=smtp:[a]:25, b.example=relay:b {c.example = error:5.7.1 no, thanks } }",
            parameter="transport_maps",
        )
        self.assertEqual(table.lookup("a.example"), "smtp:[a]:25")
        self.assertEqual(table.lookup("B.EXAMPLE"), "relay:b")
        self.assertEqual(table.lookup("c.example"), "error:5.7.1 no, thanks")
        self.assertIsNone(table.lookup("d.example"))

    def test_inlineSyntax(self) -> None:
        """
        An item without C{=}, or a missing brace, is an error naming the
        parameter.
        """
        error = self.assertRaises(TableError, InlineTable, "{ a.example }", parameter="transport_maps")
        self.assertIn("transport_maps", str(error))
        self.assertRaises(TableError, InlineTable, "a=b", parameter="transport_maps")

    def test_static(self) -> None:
        """
        A C{static:} table answers every key with its value.
        """
        self.assertEqual(StaticTable("smtp:[relay]").lookup("anything"), "smtp:[relay]")
        self.assertEqual(StaticTable("{ error:5.7.1 go away }").lookup("x"), "error:5.7.1 go away")


class OpenTableTests(SynchronousTestCase):
    """
    L{openTable} and L{TableList}.
    """

    def test_types(self) -> None:
        """
        C{texthash:}, C{inline:} and C{static:} open their table types.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("a b\n")
        self.assertIsInstance(openTable(f"texthash:{path}", parameter="p"), TextHashTable)
        self.assertIsInstance(openTable("inline:{a=b}", parameter="p"), InlineTable)
        self.assertIsInstance(openTable("static:x", parameter="p"), StaticTable)

    def test_indexedUnsupported(self) -> None:
        """
        C{hash:} (and other indexed types) are refused with an error that
        names the parameter, says why, and suggests C{texthash:}.
        """
        error = self.assertRaises(
            UnsupportedTable, openTable, "hash:/etc/postfix/transport", parameter="transport_maps"
        )
        text = str(error)
        self.assertIn("transport_maps", text)
        self.assertIn("Berkeley DB", text)
        self.assertIn("texthash:/etc/postfix/transport", text)
        self.assertRaises(UnsupportedTable, openTable, "lmdb:/x", parameter="transport_maps")

    def test_otherUnsupported(self) -> None:
        """
        Any other table type is refused too, naming the supported ones.
        """
        error = self.assertRaises(UnsupportedTable, openTable, "regexp:/x", parameter="transport_maps")
        self.assertIn("texthash:", str(error))
        self.assertRaises(TableError, openTable, "no-colon", parameter="transport_maps")

    def test_tableListOrder(self) -> None:
        """
        The first table that knows a key answers.
        """
        tables = TableList.fromParameter(
            ["inline:{a=first}", "inline:{a=second, b=only}"], parameter="transport_maps"
        )
        self.assertEqual(tables.lookup("a"), "first")
        self.assertEqual(tables.lookup("b"), "only")
        self.assertIsNone(tables.lookup("c"))
        self.assertFalse(TableList([]))
