# -*- test-case-name: tests.test_postconf_master -*-
"""
master.cf edits, sans I/O: each function takes the old file text and
returns the new file text, laid out exactly as Postfix 3.7's C{postconf}
lays it out.

Layout rules (verified against the real C{postconf}):

  - lines that belong to no edited entry (comments, blank lines, other
    entries) are copied byte for byte, a missing final newline included;
  - C{-M name/type=entry} replaces the first entry that matches the
    pattern or the new entry's own name and type I{in place}, deletes the
    other matches, and appends the new entry at the end of the file when
    nothing matches (after the last byte, even without a final newline);
  - C{-F} and C{-P} edits drop the entry's lines and write the re-formatted
    entry just before the next entry (or at the end of the file), that is
    I{after} the comment and blank lines that followed it;
  - C{-MX} and C{-PX}-less deletes drop the entry's first and continuation
    lines but keep comment lines between them;
  - C{-M#} puts C{#} before the entry's first and continuation lines;
  - re-written entries are formatted like C{postconf -Mf}.

Requests apply in argument order to the entries as they stand in memory;
entries appended by C{-M} are not matched by later requests of the same
invocation.
"""

from __future__ import annotations

from typing import Callable, Sequence

import attr

from ._mastercf import (
    BLANKS,
    FIELD_NAMES,
    MasterCfSyntaxError,
    ParsedMasterCf,
    ServiceEntry,
    commandArguments,
    daemonOptionEnd,
    entryFromText,
    entryProblem,
    fieldProblem,
    formatEntry,
    lineKind,
    overridePairs,
    physicalLines,
    printable,
    rebuild,
    splitNameValue,
    tokenize,
)

#: A service pattern: name, type and (for C{-F}/C{-P}) a third component;
#: C{"*"} matches anything.
Pattern = tuple[str, ...]


class MasterCfEditError(ValueError):
    """
    An edit request is not acceptable; C{str()} is Postfix's fatal
    message.
    """


def parsePattern(text: str, minimum: int, maximum: int) -> Pattern | None:
    """
    Parse a C{name[/type[/third]]} service pattern as C{postconf} does:
    empty components are skipped, C{*} must stand alone in a component,
    and missing trailing components are C{*}.

    @return: a pattern of C{maximum} components, or C{None} when C{text}
        is not acceptable.
    """
    if text.startswith("/"):
        return None
    parts = [part for part in text.split("/") if part]
    if not minimum <= len(parts) <= maximum:
        return None
    if any("*" in part and part != "*" for part in parts):
        return None
    return tuple(parts + ["*"] * (maximum - len(parts)))


def matches(pattern: Pattern, entry: ServiceEntry) -> bool:
    """
    @return: whether the name and type of C{entry} match C{pattern}.
    """
    return pattern[0] in ("*", entry.name) and pattern[1] in ("*", entry.type)


@attr.s(slots=True, auto_attribs=True)
class _Slot:
    """
    One entry of the file being edited, and what to do with its lines.

    C{action} is C{"keep"}, C{"delete"}, C{"comment"}, C{"here"} (write
    C{entry} in place of the first line) or C{"later"} (write C{entry}
    before the next entry).
    """

    entry: ServiceEntry
    action: str = "keep"


def _rewrite(text: str, slots: Sequence[_Slot], appended: Sequence[str]) -> str:
    lines = physicalLines(text)
    owner: dict[int, _Slot] = {}
    for slot in slots:
        for number in range(slot.entry.firstLine, slot.entry.lastLine + 1):
            if lineKind(lines[number - 1].rstrip("\n")) != "skip":
                owner[number] = slot
    output: list[str] = []
    pending: list[str] = []
    for number, line in enumerate(lines, 1):
        owned = owner.get(number)
        kind = lineKind(line.rstrip("\n"))
        if kind == "start":
            output.extend(pending)
            pending = []
        if owned is None or owned.action == "keep":
            output.append(line)
        elif owned.action == "comment":
            output.append("#" + line)
        elif number == owned.entry.firstLine and owned.action == "here":
            output.append(formatEntry(owned.entry, fold=True) + "\n")
        elif number == owned.entry.firstLine and owned.action == "later":
            pending.append(formatEntry(owned.entry, fold=True) + "\n")
    output.extend(pending)
    output.extend(appended)
    return "".join(output)


def checkEditable(text: str, parsed: ParsedMasterCf, path: str) -> None:
    """
    Refuse to edit a file where an entry's first line lacks its type:
    Postfix finds entries by the name and type on their first line while
    it copies the file, and stops at the first entry where it cannot,
    whatever the request.

    @raise MasterCfEditError: C{file <path>: line <n>: specify service name
        and type on the same line}.
    """
    lines = physicalLines(text)
    for entry in parsed.entries:
        if len(tokenize(lines[entry.firstLine - 1])) < 2:
            raise MasterCfEditError(
                f"file {path}: line {entry.firstLine}: "
                "specify service name and type on the same line"
            )


def _checkInput(argument: str) -> None:
    if "\n" in argument:
        raise MasterCfEditError("-Me, -Fe, -Pe, -X, or -# accept no multi-line input")
    if argument.lstrip(BLANKS).startswith("#"):
        raise MasterCfEditError("-Me, -Fe, -Pe, -X, or -# accept no comment input")


def splitRequest(argument: str) -> tuple[str, str]:
    """
    Split an edit request C{pattern=value}.

    @raise MasterCfEditError: for multi-line or comment input, or when the
        request is not C{name=value}.
    """
    _checkInput(argument)
    split = splitNameValue(argument)
    if isinstance(split, str):
        raise MasterCfEditError(f'{split}: "{printable(argument)}"')
    return split


def entryRequests(arguments: Sequence[str]) -> list[tuple[Pattern, ServiceEntry]]:
    """
    Parse C{-M name/type=entry} requests.

    @raise MasterCfEditError: with Postfix's message for the first bad one.
    """
    requests = []
    for argument in arguments:
        name, value = splitRequest(argument)
        pattern = parsePattern(name, 2, 2)
        if pattern is None:
            raise MasterCfEditError("-Me, -MX or -M# requires service_name/type")
        try:
            entry = entryFromText(value, 0, 0, [])
        except MasterCfSyntaxError as error:
            if error.message == "bad field count":
                raise MasterCfEditError(
                    f'bad field count: "{printable(argument)}"'
                ) from None
            raise MasterCfEditError(error.message) from None
        requests.append((pattern, entry))
    return requests


def servicePatterns(arguments: Sequence[str]) -> list[Pattern]:
    """
    Parse the C{name/type} operands of C{-MX} and C{-M#}.

    @raise MasterCfEditError: with Postfix's message for the first bad one.
    """
    patterns = []
    for argument in arguments:
        _checkInput(argument)
        pattern = parsePattern(argument, 2, 2)
        if pattern is None:
            raise MasterCfEditError("-Me, -MX or -M# requires service_name/type")
        patterns.append(pattern)
    return patterns


def _slots(parsed: ParsedMasterCf) -> list[_Slot]:
    return [_Slot(entry) for entry in parsed.entries]


def replaceEntries(
    text: str, parsed: ParsedMasterCf, requests: Sequence[tuple[Pattern, ServiceEntry]]
) -> str:
    """
    C{postconf -M name/type=entry ...}: for each request, the first entry
    that matches the pattern or has the new entry's name and type is
    replaced in place, further matches are deleted, and when nothing
    matches the new entry is appended.
    """
    slots = _slots(parsed)
    appended = []
    for pattern, new in requests:
        found = [
            slot
            for slot in slots
            if slot.action != "delete"
            and (matches(pattern, slot.entry) or slot.entry.key() == new.key())
        ]
        if not found:
            appended.append(formatEntry(new, fold=True) + "\n")
            continue
        found[0].action = "here"
        found[0].entry = attr.evolve(
            new, firstLine=found[0].entry.firstLine, lastLine=found[0].entry.lastLine
        )
        for slot in found[1:]:
            slot.action = "delete"
    return _rewrite(text, slots, appended)


def deleteEntries(text: str, parsed: ParsedMasterCf, patterns: Sequence[Pattern]) -> str:
    """
    C{postconf -MX name/type ...}: remove every matching entry with its
    continuation lines; comment lines are kept.
    """
    slots = _slots(parsed)
    for slot in slots:
        if any(matches(pattern, slot.entry) for pattern in patterns):
            slot.action = "delete"
    return _rewrite(text, slots, [])


def commentEntries(text: str, parsed: ParsedMasterCf, patterns: Sequence[Pattern]) -> str:
    """
    C{postconf -M# name/type ...}: put C{#} before the first line and each
    continuation line of every matching entry.
    """
    slots = _slots(parsed)
    for slot in slots:
        if any(matches(pattern, slot.entry) for pattern in patterns):
            slot.action = "comment"
    return _rewrite(text, slots, [])


def fieldRequests(arguments: Sequence[str]) -> list[tuple[Pattern, str]]:
    """
    Parse C{-F name/type/field=value} requests.

    @raise MasterCfEditError: with Postfix's message for the first bad one.
    """
    requests = []
    for argument in arguments:
        name, value = splitRequest(argument)
        pattern = parsePattern(name, 3, 3)
        if pattern is None:
            raise MasterCfEditError("-Fe or -FX requires service_name/type/field_name")
        if pattern[2] == "*":
            raise MasterCfEditError("-Fe does not accept wild-card field name")
        if pattern[2] not in FIELD_NAMES:
            raise MasterCfEditError(
                f'invalid service attribute name: "{printable(pattern[2])}"'
            )
        if pattern[2] != "command" and any(c in BLANKS for c in value):
            raise MasterCfEditError("-Fe does not accept whitespace in non-command field")
        if pattern[2] == "command" and not tokenize(value):
            # Postfix 3.7.11 crashes here; refuse instead of writing an
            # entry without a program.
            raise MasterCfEditError("-Fe requires a non-empty command field")
        requests.append((pattern, value))
    return requests


def _setField(entry: ServiceEntry, field: str, value: str) -> ServiceEntry:
    if field == "command":
        command, arguments = commandArguments(tokenize(value), [])
        return rebuild(entry, command=command, arguments=arguments)
    # Postfix accepts an empty value without checking it.
    if value:
        problem = fieldProblem(field, value)
        if problem is not None:
            raise MasterCfEditError(f'{problem} in "{printable(value)}"')
    attribute = {
        "service": "name",
        "process_limit": "processLimit",
    }.get(field, field)
    return rebuild(entry, **{attribute: value})


def _editEach(
    text: str,
    parsed: ParsedMasterCf,
    patterns: Sequence[Pattern],
    edit: Callable[[int, ServiceEntry], ServiceEntry],
) -> tuple[str, list[int]]:
    # Requests apply in argument order to the entries as they stand, so a
    # later request sees the effect of an earlier one.
    slots = _slots(parsed)
    lines = physicalLines(text)
    unmatched = []
    for index, pattern in enumerate(patterns):
        hit = False
        for slot in slots:
            if matches(pattern, slot.entry):
                hit = True
                if slot.action == "keep":
                    # Edits read master.cf without checking fields, and
                    # check an entry only when a request matches it,
                    # quoting its lines each followed by a space.
                    problem = entryProblem(slot.entry)
                    if problem is not None:
                        quoted = "".join(
                            line.rstrip("\n") + " "
                            for line in lines[slot.entry.firstLine - 1 : slot.entry.lastLine]
                            if lineKind(line.rstrip("\n")) != "skip"
                        )
                        raise MasterCfEditError(f'{problem} in "{printable(quoted)}"')
                slot.action = "later"
                slot.entry = edit(index, slot.entry)
        if not hit:
            unmatched.append(index)
    return _rewrite(text, slots, []), unmatched


def editFields(
    text: str, parsed: ParsedMasterCf, requests: Sequence[tuple[Pattern, str]]
) -> tuple[str, list[int]]:
    """
    C{postconf -F name/type/field=value ...}: set a field of every matching
    entry (renaming and retyping included; duplicates are not checked).

    @return: the new text and the indexes of requests that matched no
        entry.
    @raise MasterCfEditError: for an invalid field value.
    """
    return _editEach(
        text,
        parsed,
        [pattern for pattern, _ in requests],
        lambda index, entry: _setField(entry, requests[index][0][2], requests[index][1]),
    )


def parameterRequests(
    arguments: Sequence[str], delete: bool
) -> list[tuple[Pattern, str | None]]:
    """
    Parse C{-P name/type/parameter=value} (or, with C{delete}, C{-PX
    name/type/parameter}) requests.

    @return: patterns with the new value, C{None} for deletion.
    @raise MasterCfEditError: with Postfix's message for the first bad one.
    """
    requests: list[tuple[Pattern, str | None]] = []
    for argument in arguments:
        value: str | None
        if delete:
            _checkInput(argument)
            name, value = argument, None
        else:
            name, value = splitRequest(argument)
        pattern = parsePattern(name, 3, 3)
        if pattern is None:
            raise MasterCfEditError("-Pe or -PX requires service_name/type/parameter")
        if pattern[2] == "*":
            raise MasterCfEditError("-Pe does not accept wild-card parameter name")
        if value is not None and any(c in BLANKS for c in value):
            raise MasterCfEditError("-Pe does not accept whitespace in parameter value")
        requests.append((pattern, value))
    return requests


def setParameter(entry: ServiceEntry, name: str, value: str | None) -> ServiceEntry:
    """
    Add, update or (with C{value=None}) remove C{-o name=...} daemon
    options of C{entry}.  Every existing option for C{name} is updated or
    removed; a new one goes after the last daemon option.
    """
    arguments = list(entry.arguments)
    positions = []
    for index, option in overridePairs(arguments):
        split = splitNameValue(option)
        if isinstance(split, tuple) and split[0] == name:
            positions.append(index)
    if value is None:
        for index in reversed(positions):
            del arguments[index : index + 2]
    elif positions:
        for index in positions:
            arguments[index + 1] = f"{name}={value}"
    else:
        end = daemonOptionEnd(arguments)
        arguments[end:end] = ["-o", f"{name}={value}"]
    return rebuild(entry, arguments=tuple(arguments))


def editParameters(
    text: str, parsed: ParsedMasterCf, requests: Sequence[tuple[Pattern, str | None]]
) -> tuple[str, list[int]]:
    """
    C{postconf -P name/type/parameter=value ...} and C{-PX}: change the
    C{-o} options of every matching entry.  A matching entry is
    re-formatted even when the parameter to delete is absent.

    @return: the new text and the indexes of requests that matched no
        entry.
    """
    return _editEach(
        text,
        parsed,
        [pattern for pattern, _ in requests],
        lambda index, entry: setParameter(entry, requests[index][0][2], requests[index][1]),
    )
