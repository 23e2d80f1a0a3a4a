# -*- test-case-name: tests.test_postconf_master -*-
"""
The master.cf half of C{mtaguard-postconf}: C{-M}, C{-F} and C{-P}, to show
and to edit services, with the output, messages and exit statuses of
Postfix 3.7's C{postconf}.  It works on any Postfix master.cf, including
services that mtaguard itself cannot run.
"""

from __future__ import annotations

import json as jsonModule
import os
from typing import Callable, Sequence, TextIO

from mtaguard.config._files import editLock, writeAtomically
from mtaguard.config._mastercf import (
    BLANKS,
    FIELD_NAMES,
    INDENT,
    LINE_LIMIT,
    MasterCfSyntaxError,
    ParsedMasterCf,
    ServiceEntry,
    commandText,
    formatEntry,
    parseMasterCf,
    printable,
)
from mtaguard.config._mastercf_edit import (
    MasterCfEditError,
    Pattern,
    checkEditable,
    commentEntries,
    deleteEntries,
    editFields,
    editParameters,
    entryRequests,
    fieldRequests,
    matches,
    parameterRequests,
    parsePattern,
    replaceEntries,
    servicePatterns,
)

PROGRAM = "mtaguard-postconf"


class _Fatal(Exception):
    """
    Stop with C{fatal: <message>} and exit status 1.
    """


def fieldValue(entry: ServiceEntry, field: str, start: int = 1, fold: bool = False) -> str:
    """
    @param field: one of L{FIELD_NAMES}.
    @param start: the columns used before the value; see L{commandText}.
    @param fold: fold a long command like C{postconf -Mf} does.
    @return: the value C{postconf -F} shows for C{field} of C{entry}.
    """
    if field == "command":
        return commandText(entry, start, fold)
    return entry.fields()[FIELD_NAMES.index(field)]


def parameters(entry: ServiceEntry) -> list[tuple[str, str]]:
    """
    @return: the C{-o} overrides of C{entry} as C{postconf -P} shows them:
        one per name (the last wins), sorted by name.
    """
    latest = dict(entry.overrides)
    return [(name, latest[name]) for name in sorted(latest)]


def parameterTables(parsed: ParsedMasterCf) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """
    @return: what C{postconf -P} shows for each service name and type.
        Postfix keeps one parameter table per name and type: entries that
        share them share the table, where the first entry's value of a
        parameter wins over later entries' (within one entry, the last
        C{-o} wins).
    """
    merged: dict[tuple[str, str], dict[str, str]] = {}
    for entry in parsed.entries:
        table = merged.setdefault(entry.key(), {})
        for name, value in parameters(entry):
            table.setdefault(name, value)
    return {key: sorted(table.items()) for key, table in merged.items()}


def foldWords(prefix: str, value: str) -> str:
    """
    Fold C{prefix} followed by the words of C{value} the way C{postconf
    -f} folds settings: a word that would push the line past 80 columns
    starts a new line indented by four spaces.
    """
    lines = []
    line = prefix
    for word in value.split():
        if not line:
            line = word
        elif len(line) + 1 + len(word) > LINE_LIMIT:
            lines.append(line)
            line = INDENT + word
        else:
            line += " " + word
    lines.append(line)
    return "\n".join(lines)


def _setting(name: str, value: str, fold: bool, valuesOnly: bool, namesOnly: bool) -> str:
    # Postfix shows -P values with runs of whitespace collapsed, folded or
    # not, and "name =" for an empty value.
    if namesOnly:
        return name
    if valuesOnly:
        return foldWords("", value) if fold else " ".join(value.split())
    if fold:
        return foldWords(f"{name} =", value)
    return " ".join([name, "=", *value.split()])


def _patterns(arguments: Sequence[str], maximum: int, usage: str) -> list[Pattern]:
    patterns = []
    for argument in arguments:
        pattern = parsePattern(argument, 1, maximum)
        if pattern is None:
            raise _Fatal(usage)
        patterns.append(pattern)
    return patterns or [("*",) * maximum]


def _show(
    mode: str,
    parsed: ParsedMasterCf,
    arguments: Sequence[str],
    fold: bool,
    valuesOnly: bool,
    namesOnly: bool,
    asJson: bool,
    out: TextIO,
    warn: Callable[[str], None],
) -> None:
    if mode == "M":
        if namesOnly or valuesOnly:
            raise _Fatal(f"with option -M, do not specify -{'H' if namesOnly else 'h'}")
        patterns = _patterns(arguments, 2, "-M option requires service_name[/type]")
    elif mode == "F":
        patterns = _patterns(arguments, 3, "-F option requires service_name[/type[/field]]")
        for pattern in patterns:
            if pattern[2] != "*" and pattern[2] not in FIELD_NAMES:
                raise _Fatal(f'invalid service attribute name: "{printable(pattern[2])}"')
    else:
        patterns = _patterns(arguments, 3, "-P option requires service_name[/type[/parameter]]")
    matched = [False] * len(patterns)
    services: list[dict[str, str]] = []
    flat: dict[str, str] = {}
    lines: list[str] = []
    tables = parameterTables(parsed)
    # Postfix walks the entries in file order and, for each, the requests
    # in argument order; an entry matched twice is shown twice.
    for entry in parsed.entries:
        for index, pattern in enumerate(patterns):
            if not matches(pattern, entry):
                continue
            prefix = f"{entry.name}/{entry.type}/"
            if mode == "M":
                matched[index] = True
                lines.append(formatEntry(entry, fold))
                services.append(
                    {field: fieldValue(entry, field) for field in FIELD_NAMES}
                )
            elif mode == "F":
                for field in FIELD_NAMES:
                    if pattern[2] in ("*", field):
                        matched[index] = True
                        flat[prefix + field] = fieldValue(entry, field)
                        if namesOnly:
                            lines.append(prefix + field)
                        elif valuesOnly:
                            lines.append(fieldValue(entry, field, 0, fold))
                        else:
                            name = f"{prefix}{field} = "
                            value = fieldValue(entry, field, len(name), fold)
                            # Postfix prints "name =" for an empty value.
                            lines.append((name + value).rstrip(" "))
            else:
                for name, value in tables[entry.key()]:
                    if pattern[2] in ("*", name):
                        matched[index] = True
                        flat[prefix + name] = value
                        lines.append(
                            _setting(prefix + name, value, fold, valuesOnly, namesOnly)
                        )
    if asJson:
        document: object = {"services": services} if mode == "M" else flat
        out.write(jsonModule.dumps(document, indent=2) + "\n")
    else:
        out.write("".join(line + "\n" for line in lines))
    for index, argument in enumerate(arguments):
        if not matched[index]:
            warn(f'unmatched request: "{printable(argument)}"')


def _edit(
    mode: str,
    action: str,
    path: str,
    text: str,
    parsed: ParsedMasterCf,
    arguments: Sequence[str],
    warn: Callable[[str], None],
) -> str:
    if action == "edit":
        if not arguments:
            raise _Fatal("-e requires name=value argument")
    else:
        if mode != "M" and not (mode == "P" and action == "delete"):
            flag = "X" if action == "delete" else "#"
            raise _Fatal(f"with option -{mode}, do not specify -{flag}")
        if not arguments:
            raise _Fatal("missing service argument")
        for argument in arguments:
            if "=" in argument:
                raise _Fatal(f"specify one of -e -{'X' if action == 'delete' else '#'}")
    try:
        # Requests are checked first: a bad request is reported even when
        # the file could not be edited.
        if mode == "M":
            if action == "edit":
                entryRequests(arguments)
            else:
                servicePatterns(arguments)
        elif mode == "F":
            fieldRequests(arguments)
        else:
            parameterRequests(arguments, delete=action == "delete")
        checkEditable(text, parsed, path)
        if mode == "M":
            if action == "edit":
                return replaceEntries(text, parsed, entryRequests(arguments))
            patterns = servicePatterns(arguments)
            if action == "delete":
                return deleteEntries(text, parsed, patterns)
            return commentEntries(text, parsed, patterns)
        if mode == "F":
            newText, unmatched = editFields(text, parsed, fieldRequests(arguments))
        else:
            requests = parameterRequests(arguments, delete=action == "delete")
            newText, unmatched = editParameters(text, parsed, requests)
    except MasterCfEditError as error:
        raise _Fatal(str(error)) from None
    for index in unmatched:
        warn(f'unmatched service_name/type: "{printable(arguments[index])}"')
    return newText


def runMaster(
    configDirectory: str,
    mode: str,
    action: str,
    args: list[str],
    *,
    fold: bool,
    valuesOnly: bool,
    namesOnly: bool,
    json: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """
    Run C{mtaguard-postconf -M}, C{-F} or C{-P} on the master.cf file in
    C{configDirectory}, like Postfix 3.7's C{postconf -c configDirectory}.

    @param mode: C{"M"} (whole entries), C{"F"} (fields) or C{"P"} (C{-o}
        parameters).
    @param action: C{"show"}; C{"edit"} (C{-e}, or operands with C{=});
        C{"delete"} (C{-X}) or C{"comment"} (C{-#}).  A C{"show"} whose
        operands contain C{=} is an edit, as in Postfix.
    @param args: the operands: C{name[/type[/field-or-parameter]]}
        patterns, or C{pattern=value} edit requests.
    @param fold: C{-f}: fold long lines.
    @param valuesOnly: C{-h}: print values without names (C{-F}, C{-P}).
    @param namesOnly: C{-H}: print names without values (C{-F}, C{-P}).
    @param json: print the answer as one JSON object instead of text (an
        mtaguard extension; C{fold}, C{valuesOnly} and C{namesOnly} are then
        ignored, except that C{-M} still refuses C{-h}/C{-H}).  For C{-M}:
        C{{"services": [{"service": ..., "type": ..., "private": ...,
        "unprivileged": ..., "chroot": ..., "wakeup": ..., "process_limit":
        ..., "command": ...}, ...]}}, one object per printed entry, fields
        as C{-F} shows them (C{-} kept; C{command} includes the arguments).
        For C{-F} and C{-P}: a flat object such as C{{"smtp/inet/chroot":
        "y", "relay/unix/syslog_name": "postfix/$service_name"}}, in output
        order; a name printed twice keeps the last value; C{-P} values keep
        their whitespace (the text output collapses it, as Postfix does).
        Warnings still go to C{err}.
    @param out: where the answer goes.
    @param err: where C{mtaguard-postconf: fatal: ...} and C{...: warning:
        ...} messages go, with Postfix's text after the prefix.
    @return: the exit status: 1 after a fatal error, else 0 (warnings
        included).
    """

    def warn(message: str) -> None:
        err.write(f"{PROGRAM}: warning: {message}\n")

    if action == "show" and any("=" in argument for argument in args):
        action = "edit"
    # Postfix builds the path by plain concatenation, and names it so.
    path = f"{configDirectory}/master.cf"
    try:
        try:
            with open(f"{configDirectory}/main.cf", "rb"):
                pass
        except OSError as error:
            raise _Fatal(f"open {configDirectory}/main.cf: {error.strerror}") from None
        if action == "show":
            text = _read(path, "open {path}: {reason}")
            parsed = _parse(text, path, warn)
            _show(mode, parsed, args, fold, valuesOnly, namesOnly, json, out, warn)
            return 0
        with editLock(configDirectory):
            text = _read(path, "open {path} for reading: {reason}")
            parsed = _parse(text, path, warn, validate=False)
            newText = _edit(mode, action, path, text, parsed, args, warn)
            writeAtomically(path, newText)
        return 0
    except _Fatal as fatal:
        err.write(f"{PROGRAM}: fatal: {fatal}\n")
        return 1


def _read(path: str, template: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise _Fatal(template.format(path=path, reason=error.strerror)) from None
    # Postfix is 8-bit clean; surrogateescape keeps any byte intact through
    # an edit.
    return data.decode("utf-8", "surrogateescape")


def _parse(
    text: str, path: str, warn: Callable[[str], None], validate: bool = True
) -> ParsedMasterCf:
    try:
        parsed = parseMasterCf(text, path=path, validate=validate)
    except MasterCfSyntaxError as error:
        raise _Fatal(error.message) from None
    for warning in parsed.warnings:
        warn(warning)
    return parsed


__all__ = ["runMaster"]
