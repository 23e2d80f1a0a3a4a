# -*- test-case-name: tests.test_client_tables -*-
"""
Postfix lookup tables that mtaguard can read itself: C{texthash:},
C{inline:} and C{static:}.

They serve C{transport_maps} (and C{relay_domains}, which may name tables
too).  Tables are opened from the parameter's items with L{openTable};
every other table type is refused at start-up with an error that names the
parameter, because a table we cannot read must never be silently empty: a
missing transport entry would send mail somewhere else.

C{texthash:} reads the C{postmap(1)} source format (see L{parseTextTable}).
Unlike Postfix, whose C{texthash:} never notices changes, the file is read
again when its modification time or size changes, so that an edited
transport table takes effect without a restart (Postfix daemons get the
same effect by exiting when an indexed table changes).
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Optional, Protocol, Sequence

from twisted.logger import Logger

_log = Logger()

#: Table types that Postfix has and mtaguard does not read, with what to
#: use instead.  Indexed files need a database library mtaguard does not
#: link: Debian's C{postmap} builds C{hash:} files with Berkeley DB, and
#: mtaguard has no Berkeley DB (or LMDB, or CDB) reader.
_INDEXED = frozenset({"hash", "btree", "lmdb", "cdb", "dbm", "sdbm"})


class TableError(Exception):
    """
    A lookup table cannot be opened or read.

    @ivar parameter: the parameter that names the table (C{transport_maps}).
    @ivar table: the table as written in the parameter (C{texthash:/path}).
    @ivar reason: what went wrong.
    """

    def __init__(self, parameter: str, table: str, reason: str) -> None:
        self.parameter = parameter
        self.table = table
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.parameter}: {self.table}: {self.reason}"


class UnsupportedTable(TableError):
    """
    A parameter names a table type that mtaguard cannot read.
    """


class LookupTable(Protocol):
    """
    What a lookup table offers: one key in, one value (or nothing) out.
    """

    @property
    def name(self) -> str:
        """
        The table as written in the parameter, for messages.
        """

    def lookup(self, key: str) -> Optional[str]:
        """
        The value stored under C{key}, compared case-insensitively as
        Postfix folds keys of these tables, or L{None}.

        @raise TableError: the table cannot be read now (a C{texthash:} file
            that disappeared); the caller must defer, not treat the key as
            absent.
        """


def parseTextTable(lines: Iterable[str], where: str) -> dict[str, str]:
    """
    Parse the C{postmap(1)} source format into a dict.

    Rules, as C{postmap} applies them: a logical line is C{key}, white
    space, C{value}; keys are folded to lower case; a line that begins with
    white space continues the previous logical line; empty lines, blank
    lines and lines whose first non-blank character is C{#} are ignored (a
    C{#} elsewhere is data).  A duplicate key keeps its first value, with a
    warning, as C{postmap} does without C{-r}.  A key without a value is
    skipped with a warning.

    @param lines: the file's lines.
    @param where: the file name, for warnings.
    @return: the key to value mapping.
    """
    table: dict[str, str] = {}
    logical: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace() and logical:
            # Continuation: joined with one space, as postmap's readlline()
            # does.
            start, text = logical[-1]
            logical[-1] = (start, f"{text} {stripped}")
        else:
            logical.append((number, stripped))
    for number, text in logical:
        parts = text.split(None, 1)
        if len(parts) < 2:
            _log.warn(
                "{where}, line {line}: expected format: key whitespace value",
                where=where,
                line=number,
            )
            continue
        key, value = parts[0].lower(), parts[1].strip()
        if key in table:
            _log.warn(
                "{where}, line {line}: duplicate entry: \"{key}\"",
                where=where,
                line=number,
                key=key,
            )
            continue
        table[key] = value
    return table


class TextHashTable:
    """
    A C{texthash:/path} table, read at construction and again whenever the
    file's modification time or size changes.

    @ivar name: C{texthash:/path}.
    @ivar loads: how many times the file was read (for tests and logs).
    """

    def __init__(
        self,
        path: str,
        *,
        parameter: str,
        stat: Callable[[str], os.stat_result] = os.stat,
    ) -> None:
        """
        @param path: the file.
        @param parameter: the parameter naming the table, for errors.
        @param stat: C{os.stat}, replaceable in tests.

        @raise TableError: the file cannot be read.
        """
        self.path = path
        self.name = f"texthash:{path}"
        self.loads = 0
        self._parameter = parameter
        self._stat = stat
        self._stamp: tuple[int, int] | None = None
        self._table: dict[str, str] = {}
        self._refresh()

    def _refresh(self) -> None:
        """
        Read the file again if it changed since the last read.
        """
        try:
            info = self._stat(self.path)
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp == self._stamp:
                return
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                table = parseTextTable(f, self.path)
        except OSError as error:
            raise TableError(self._parameter, self.name, error.strerror or str(error)) from None
        # Only a complete read replaces the table, so a lookup never sees
        # half of an old file and half of a new one.
        self._table = table
        self._stamp = stamp
        self.loads += 1

    def lookup(self, key: str) -> Optional[str]:
        """
        See L{LookupTable.lookup}.
        """
        self._refresh()
        return self._table.get(key.lower())


def _splitInline(body: str) -> list[str]:
    """
    Split the inside of C{inline:{...}} into items at commas and white
    space outside braces, keeping braced items whole.
    """
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in body:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                items.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        items.append("".join(current))
    return items


def _unbrace(text: str) -> str:
    """
    Remove one pair of surrounding braces and the white space inside them,
    as Postfix's C{extpar()} does for C{{ text with spaces }}.
    """
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        return text[1:-1].strip()
    return text


class InlineTable:
    """
    An C{inline:{ key=value, { key = value with spaces } }} table.

    @ivar name: the table as written.
    """

    def __init__(self, spec: str, *, parameter: str) -> None:
        """
        @param spec: everything after C{inline:}, braces included.
        @param parameter: the parameter naming the table, for errors.

        @raise TableError: the syntax is wrong.
        """
        self.name = f"inline:{spec}"
        body = spec.strip()
        if not (body.startswith("{") and body.endswith("}")):
            raise TableError(parameter, self.name, "expected inline:{ key=value, ... }")
        self._table: dict[str, str] = {}
        for item in _splitInline(body[1:-1]):
            key, equals, value = _unbrace(item).partition("=")
            if not equals or not key.strip():
                raise TableError(
                    parameter, self.name, f"missing '=' after attribute name: {item!r}"
                )
            self._table.setdefault(key.strip().lower(), value.strip())

    def lookup(self, key: str) -> Optional[str]:
        """
        See L{LookupTable.lookup}.
        """
        return self._table.get(key.lower())


class StaticTable:
    """
    A C{static:value} table: every key finds the same value.

    @ivar name: the table as written.
    """

    def __init__(self, value: str) -> None:
        """
        @param value: everything after C{static:}; C{{ text }} keeps spaces.
        """
        self.name = f"static:{value}"
        self._value = _unbrace(value)

    def lookup(self, key: str) -> Optional[str]:
        """
        See L{LookupTable.lookup}.
        """
        return self._value


def openTable(
    spec: str,
    *,
    parameter: str,
    stat: Callable[[str], os.stat_result] = os.stat,
) -> LookupTable:
    """
    Open one table named by a parameter item (C{type:name}).

    @param spec: the item, for example C{texthash:/etc/postfix/transport}.
    @param parameter: the parameter's name, for errors.
    @param stat: C{os.stat}, replaceable in tests.

    @raise UnsupportedTable: the type is not C{texthash}, C{inline} or
        C{static}.
    @raise TableError: the table cannot be read or parsed.
    """
    kind, colon, rest = spec.partition(":")
    kind = kind.lower()
    if not colon:
        raise TableError(parameter, spec, "expected a lookup table, type:name")
    if kind == "texthash":
        return TextHashTable(rest, parameter=parameter, stat=stat)
    if kind == "inline":
        return InlineTable(rest, parameter=parameter)
    if kind == "static":
        return StaticTable(rest)
    if kind in _INDEXED:
        raise UnsupportedTable(
            parameter,
            spec,
            f"unsupported lookup table type {kind}: mtaguard has no Berkeley DB,"
            f" LMDB or CDB reader; name the postmap source file as"
            f" texthash:{rest} instead",
        )
    raise UnsupportedTable(
        parameter,
        spec,
        f"unsupported lookup table type {kind}: mtaguard reads texthash:,"
        " inline: and static: tables",
    )


class TableList:
    """
    The tables of one parameter, searched in order: the first table that
    knows a key answers, as Postfix's C{maps_find()} does.
    """

    def __init__(self, tables: Sequence[LookupTable]) -> None:
        """
        @param tables: the opened tables, in parameter order.
        """
        self.tables = tuple(tables)

    @classmethod
    def fromParameter(
        cls,
        items: Iterable[str],
        *,
        parameter: str,
        stat: Callable[[str], os.stat_result] = os.stat,
    ) -> "TableList":
        """
        Open every table in a parameter's value (as the parameter view
        returns it: one item per table).

        @raise TableError: see L{openTable}.
        """
        return cls([openTable(item, parameter=parameter, stat=stat) for item in items])

    def __bool__(self) -> bool:
        return bool(self.tables)

    def lookup(self, key: str) -> Optional[str]:
        """
        The first table's value for C{key}, or L{None}.

        @raise TableError: a table cannot be read now.
        """
        for table in self.tables:
            value = table.lookup(key)
            if value is not None:
                return value
        return None
