# -*- test-case-name: tests.test_postconf_main -*-
"""
The main.cf side of C{mtaguard-postconf}: queries (no option, C{-d},
C{-n}, C{-h}, C{-H}, C{-x}, C{-f}, C{-o}, C{--json}) and edits (C{-e},
C{-X}, C{-#}), each reproducing what Postfix 3.7's C{postconf} prints and
writes.
"""

from __future__ import annotations

import json as _json
import os
import re
from typing import Callable, Iterable, Mapping, Optional, Sequence, TextIO

import attr

from mtaguard.config._expand import Expander, ExpansionError, compileTemplate
from mtaguard.config._files import editLock, writeAtomically
from mtaguard.config._known import (
    LEGACY_PARAMETERS,
    KnownNames,
    READ_ONLY_PARAMETERS,
    ServiceEntry,
    knownNames,
)
from mtaguard.config._maincf import (
    MainCfSyntaxError,
    ParsedMainCf,
    Setting,
    logicalLines,
    parseMainCf,
)
from mtaguard.config._registry import Registry, registry as _registry
from mtaguard.postscreen._checks import declarePluginParameters

#: The program name used in messages and as C{process_name}.
PROGRAM = "mtaguard-postconf"

#: Postfix folds C{postconf -f} output before a word would reach this
#: column, and indents continuation lines by four spaces (postconf_print.c).
LINE_LIMIT = 80
INDENT = "    "

_SEPARATORS = re.compile(r"[ \t\r\n]+")


class PostconfFatal(Exception):
    """
    A condition after which Postfix's C{postconf} exits with status 1;
    C{str()} is Postfix's message text, without the C{fatal: } prefix.
    """


@attr.s(auto_attribs=True)
class Messages:
    """
    Writes diagnostics to standard error as Postfix does, with our program
    name: C{mtaguard-postconf: warning: ...}.

    @ivar err: the error stream.
    """

    err: TextIO

    def warn(self, text: str) -> None:
        """
        Print a warning.

        @param text: Postfix's text of the warning.
        """
        self.err.write(f"{PROGRAM}: warning: {text}\n")
        self.err.flush()


def formatLine(text: str, fold: bool = False) -> str:
    """
    Format one line of output the way Postfix's C{pcf_print_line} does:
    every run of whitespace becomes one space, leading and trailing
    whitespace goes, and with C{fold} a word that would make the line reach
    L{LINE_LIMIT} columns starts a new line indented by L{INDENT}.

    @param text: the unformatted line, without a line terminator.
    @param fold: whether to fold long lines (C{postconf -f}).
    @return: the formatted text, ending in a newline.
    """
    parts: list[str] = []
    length = 0
    for word in _SEPARATORS.split(text):
        if not word:
            continue
        if length > 0:
            if not fold or length + len(word) < LINE_LIMIT:
                parts.append(" ")
                length += 1
            else:
                parts.append("\n" + INDENT)
                length = len(INDENT)
        parts.append(word)
        length += len(word)
    parts.append("\n")
    return "".join(parts)


def splitNameValue(text: str) -> tuple[str, str]:
    """
    Split C{name = value} as Postfix's C{split_nameval} does: the name is
    the first run of non-blank characters other than C{=}, blanks may
    surround the C{=}, and the value is trimmed.

    @param text: the text to split.
    @raise ValueError: with Postfix's error text (C{missing attribute
        name} or C{missing '=' after attribute name}).
    """
    stripped = text.lstrip()
    if not stripped:
        raise ValueError("missing attribute name")
    match = re.match(r"[^\s=]*", stripped)
    assert match is not None
    name = match.group()
    rest = stripped[match.end() :].lstrip()
    if not rest.startswith("="):
        raise ValueError("missing '=' after attribute name")
    if not name:
        raise ValueError("missing attribute name")
    return name, rest[1:].strip()


# --- reading -----------------------------------------------------------------


def mainCfPath(configDirectory: str) -> str:
    """
    The path of main.cf in C{configDirectory}, spelled as Postfix spells it
    in messages.

    @param configDirectory: the configuration directory.
    """
    return f"{configDirectory}/main.cf"


def _readText(path: str) -> str:
    with open(path, "rb") as handle:
        data = handle.read()
    return data.decode("utf-8", errors="surrogateescape")


def readMainCf(configDirectory: str, messages: Messages) -> ParsedMainCf:
    """
    Read and parse main.cf, printing its warnings.

    @param configDirectory: the configuration directory.
    @param messages: where warnings go.
    @raise PostconfFatal: if the file cannot be opened or has a syntax
        error.
    """
    path = mainCfPath(configDirectory)
    try:
        text = _readText(path)
    except OSError as error:
        raise PostconfFatal(f"open {path}: {error.strerror}") from None
    try:
        parsed = parseMainCf(text)
    except MainCfSyntaxError as error:
        raise PostconfFatal(f"{path}, line {error.line}: {error}") from None
    for warning in parsed.warnings:
        # "line N: ..." warnings name the line after a comma, the others
        # after a colon, as Postfix's msg_warn formats do.
        separator = ", " if warning.startswith("line ") else ": "
        messages.warn(f"{path}{separator}{warning}")
    return parsed


@attr.s(frozen=True, slots=True, auto_attribs=True)
class _FallbackService:
    """
    A master.cf entry as far as the known-name rule needs it; used only
    while L{mtaguard.config._mastercf} is not available.
    """

    name: str
    type: str
    command: str
    overrides: tuple[tuple[str, str], ...]


def _fallbackServices(text: str) -> list[_FallbackService]:
    services: list[_FallbackService] = []
    for logical in logicalLines(text.split("\n")):
        fields = logical.text.split()
        if len(fields) < 8 or logical.text[:1].isspace():
            continue
        overrides: list[tuple[str, str]] = []
        arguments = fields[8:]
        index = 0
        while index < len(arguments):
            if arguments[index] == "-o" and index + 1 < len(arguments):
                token = arguments[index + 1]
                index += 2
                if token == "{":
                    words: list[str] = []
                    while index < len(arguments) and arguments[index] != "}":
                        words.append(arguments[index])
                        index += 1
                    index += 1
                    token = " ".join(words)
                name, sep, value = token.partition("=")
                if sep:
                    overrides.append((name.strip(), value.strip()))
                continue
            index += 1
        services.append(_FallbackService(fields[0], fields[1], fields[7], tuple(overrides)))
    return services


def readServices(configDirectory: str, messages: Messages) -> list[ServiceEntry]:
    """
    Read master.cf for the service-derived and C{-o} names.  A missing
    master.cf only earns a warning, as with Postfix's main.cf queries.

    @param configDirectory: the configuration directory.
    @param messages: where warnings go.
    """
    path = f"{configDirectory}/master.cf"
    try:
        text = _readText(path)
    except OSError as error:
        messages.warn(f"open {path}: {error.strerror}")
        return []
    try:
        from mtaguard.config._mastercf import parseMasterCf
    except ModuleNotFoundError as error:
        # master.cf support is written separately; until it lands, a
        # minimal reading of the service name, command and -o options
        # is enough for the known-name rule.
        if error.name != "mtaguard.config._mastercf":
            raise
        return list(_fallbackServices(text))
    parsed = parseMasterCf(text)
    for warning in getattr(parsed, "warnings", ()):
        messages.warn(str(warning))
    return list(parsed.entries)


# --- queries -----------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class QueryOptions:
    """
    The options of a main.cf query.

    @ivar defaults: C{-d}: show built-in defaults, ignoring main.cf.
    @ivar nonDefault: C{-n}: show only names set in main.cf.
    @ivar expand: C{-x}: expand C{$name}.
    @ivar fold: C{-f}: fold long lines.
    @ivar valuesOnly: C{-h}: print values without names.
    @ivar namesOnly: C{-H}: print names without values.
    @ivar json: C{--json}: print one JSON object C{{name: value}}.
    @ivar overrides: C{-o name=value}, in command-line order.
    @ivar explicitDirectory: whether the directory came from C{-c} or
        C{$MAIL_CONFIG} (then C{-n} shows C{config_directory}, as Postfix
        does).
    """

    defaults: bool = False
    nonDefault: bool = False
    expand: bool = False
    fold: bool = False
    valuesOnly: bool = False
    namesOnly: bool = False
    json: bool = False
    overrides: tuple[str, ...] = ()
    explicitDirectory: bool = False


def _hostDefaults(configDirectory: str, defaults: bool) -> dict[str, str]:
    # The defaults that describe this very invocation, as Postfix computes
    # them in postconf itself rather than from its built-in tables.  Under
    # -d, config_directory is the compiled-in default, even with -c.
    answer = {"process_id": str(os.getpid()), "process_name": PROGRAM}
    if not defaults:
        answer["config_directory"] = configDirectory
    return answer


def runQuery(
    configDirectory: str,
    names: Sequence[str],
    options: QueryOptions,
    out: TextIO,
    err: TextIO,
    registry: Registry = _registry,
) -> int:
    """
    Answer a main.cf query.

    @param configDirectory: the configuration directory.
    @param names: the parameter names asked for; empty for all.
    @param options: the query options.
    @param out: standard output.
    @param err: standard error.
    @param registry: the parameter registry.
    @return: the exit status (0); fatal conditions raise.
    @raise PostconfFatal: on unreadable or malformed configuration.
    """
    messages = Messages(err)
    values: dict[str, str] = {}
    settings: list[Setting] = []
    mainPath = mainCfPath(configDirectory)
    if not options.defaults:
        parsed = readMainCf(configDirectory, messages)
        settings.extend(parsed.settings)
        for override in options.overrides:
            try:
                name, value = splitNameValue(override)
            except ValueError as error:
                raise PostconfFatal(
                    f"invalid parameter override: {override}: {error}"
                ) from None
            settings.append(Setting(name, value, 0))
        for setting in settings:
            values[setting.name] = setting.value
        if options.explicitDirectory:
            # Postfix puts the -c / $MAIL_CONFIG directory into its table
            # of main.cf values, so that -n reports it.
            values["config_directory"] = configDirectory
    services = readServices(configDirectory, messages)
    declarePluginParameters([*values, *names])
    hostDefaults = _hostDefaults(configDirectory, options.defaults)
    readOnly = [name for name in values if name in READ_ONLY_PARAMETERS]
    if options.defaults:
        known = knownNames({}, services, registry, hostDefaults)
        # -d knows no user-defined names: Postfix registers them only
        # when it reads main.cf.
    else:
        effective = {n: v for n, v in values.items() if n not in READ_ONLY_PARAMETERS}
        known = knownNames(effective, services, registry, hostDefaults)
        for source, name in known.undefined:
            messages.warn(f"{configDirectory}/{source}: undefined parameter: {name}")
        for name in readOnly:
            messages.warn(
                f"{mainPath}: read-only parameter assignment: {name}={values[name]}"
            )
        values = effective

    def lookup(name: str) -> Optional[str]:
        if not options.defaults and name in values:
            return values[name]
        return known.defaults.get(name)

    expander = Expander(lookup)

    def valueOf(name: str) -> Optional[str]:
        if options.defaults:
            value: Optional[str] = known.defaults[name]
        elif name in values:
            value = values[name]
        elif options.nonDefault or name in known.user:
            value = None
        else:
            value = known.defaults[name]
        if value is not None and options.expand and name not in registry.rawNames:
            try:
                value = expander.template(compileTemplate(value))
            except ExpansionError as error:
                raise PostconfFatal(f"macro processing error: {error}") from None
        return value

    answers: list[tuple[str, str]] = []
    if names:
        selected: Iterable[str] = names
    else:
        # Legacy names stay out of listings unless main.cf sets them.
        selected = sorted(
            name
            for name in known.defaults
            if name not in LEGACY_PARAMETERS or (not options.defaults and name in values)
        )
    for name in selected:
        if names and name not in known:
            messages.warn(f"{name}: unknown parameter")
            continue
        shown = valueOf(name)
        if shown is None:
            continue
        if options.json:
            answers.append((name, formatLine(shown).rstrip("\n")))
        elif options.namesOnly:
            out.write(formatLine(name, options.fold))
        elif options.valuesOnly:
            out.write(formatLine(shown, options.fold))
        else:
            out.write(formatLine(f"{name} = {shown}", options.fold))
    if options.json:
        out.write(_json.dumps(dict(answers), ensure_ascii=False) + "\n")
    out.flush()

    if not options.defaults:
        for setting in _unused(settings, known):
            messages.warn(f"{mainPath}: unused parameter: {setting.name}={setting.value}")
    return 0


def _unused(settings: Iterable[Setting], known: KnownNames) -> list[Setting]:
    # The last definition of each name counts, reported in file order
    # (Postfix reports them in hash-table order, which varies per run).
    effective: dict[str, Setting] = {}
    for setting in settings:
        effective.pop(setting.name, None)
        effective[setting.name] = setting
    return [
        setting
        for name, setting in effective.items()
        if name not in READ_ONLY_PARAMETERS and name not in known
    ]


# --- edits -------------------------------------------------------------------

#: The three kinds of main.cf edit.
EDIT, DELETE, COMMENT = "edit", "delete", "comment"


def _editRequests(action: str, args: Sequence[str], messages: Messages) -> dict[str, Optional[str]]:
    """
    Validate the operands of an edit and collect them as name to new value
    (L{None} for C{-X} and C{-#}), in argument order; a name given twice
    keeps the later request, with Postfix's warning.
    """
    requests: dict[str, Optional[str]] = {}
    for argument in args:
        if "\n" in argument:
            raise PostconfFatal("-e, -X, or -# accepts no multi-line input")
        text = argument.lstrip(" \t\r\n\v\f")
        if text.startswith("#"):
            raise PostconfFatal("-e, -X, or -# accepts no comment input")
        value: Optional[str]
        if action == EDIT:
            try:
                name, value = splitNameValue(text)
            except ValueError as error:
                raise PostconfFatal(f'{error}: "{text}"') from None
        else:
            if not text:
                raise PostconfFatal("-X or -# requires non-blank parameter names")
            if "=" in text:
                raise PostconfFatal("-X or -# requires parameter names without value")
            name, value = text.rstrip(" \t\r\n\v\f"), None
        if name in requests:
            messages.warn(f"ignoring earlier request: '{name} = {requests[name]}'")
            # Postfix forgets the earlier request entirely; the later one
            # takes its place at the end.
            del requests[name]
        requests[name] = value
    return requests


def editMain(
    configDirectory: str,
    action: str,
    args: Sequence[str],
    err: TextIO,
) -> int:
    """
    Edit main.cf like C{postconf -e}, C{-X} or C{-#}.

    Lines that do not belong to a matched logical line are copied byte for
    byte.  A matched logical line (and its continuation lines) becomes one
    C{name = value} line (C{-e}), disappears (C{-X}) or has each of its
    lines prefixed with C{#} (C{-#}); comment and blank lines inside it are
    copied.  Every occurrence of a duplicated name is edited, with a
    warning at the second one.  New names (C{-e} only) are appended in
    argument order: Postfix appends them in the order of a randomly seeded
    hash table, which no one can depend on.

    @param configDirectory: the configuration directory.
    @param action: L{EDIT}, L{DELETE} or L{COMMENT}.
    @param args: the command-line operands.
    @param err: standard error.
    @return: the exit status (0); fatal conditions raise.
    @raise PostconfFatal: on bad operands or an unreadable main.cf.
    """
    messages = Messages(err)
    requests = _editRequests(action, args, messages)
    path = mainCfPath(configDirectory)
    if not os.path.isdir(configDirectory):
        # Postfix creates main.cf.tmp first, so that is what it names.
        raise PostconfFatal(f"open {path}.tmp: No such file or directory")
    with editLock(configDirectory):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise PostconfFatal(f"open {path} for reading: {error.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise PostconfFatal(f"{path}: not UTF-8 text; refusing to rewrite it") from None
        result = rewriteMainCf(text, action, requests, lambda name: messages.warn(
            f'{path}: multiple entries for "{name}"'
        ))
        writeAtomically(path, result)
    return 0


def rewriteMainCf(
    text: str,
    action: str,
    requests: Mapping[str, Optional[str]],
    duplicate: Callable[[str], None],
) -> str:
    """
    The new text of main.cf after an edit, sans I/O.

    @param text: the old text.
    @param action: L{EDIT}, L{DELETE} or L{COMMENT}.
    @param requests: name to new value (ignored unless C{action} is
        L{EDIT}), in the order new names are appended.
    @param duplicate: called with a name when it is met a second time.
    @return: the new text.
    """
    # Split on "\n" only, keeping terminators, so that every byte of an
    # untouched line (a "\r", a missing final newline) survives.
    physical = text.split("\n")
    lines = [line + "\n" for line in physical[:-1]]
    if physical[-1]:
        lines.append(physical[-1])
    stripped = [line.rstrip("\n") for line in lines]
    output: list[str] = []
    found: dict[str, int] = {}
    position = 0
    for logical in logicalLines(stripped):
        output.extend(lines[position : logical.first])
        start = stripped[logical.first]
        name = re.match(r"[^ \t\n\v\f\r=]*", start)
        key = name.group() if name is not None else ""
        if start[:1].isspace() or key not in requests:
            output.extend(lines[logical.first : logical.end])
            position = logical.end
            continue
        found[key] = found.get(key, 0) + 1
        if found[key] == 2:
            duplicate(key)
        if action == EDIT:
            output.append(f"{key} = {requests[key]}\n")
        for index in range(logical.first, logical.end):
            line = stripped[index]
            isContent = line.strip() and not line.strip().startswith("#")
            if not isContent:
                # Comments and blank lines inside a logical line are not
                # part of it: Postfix copies them.
                output.append(lines[index])
            elif action == COMMENT:
                output.append("#" + lines[index])
        position = logical.end
    output.extend(lines[position:])
    if action == EDIT:
        for key, value in requests.items():
            if key not in found:
                output.append(f"{key} = {value}\n")
    return "".join(output)


__all__: Sequence[str] = [
    "COMMENT",
    "DELETE",
    "EDIT",
    "Messages",
    "PostconfFatal",
    "QueryOptions",
    "editMain",
    "formatLine",
    "readMainCf",
    "readServices",
    "rewriteMainCf",
    "runQuery",
    "splitNameValue",
]
