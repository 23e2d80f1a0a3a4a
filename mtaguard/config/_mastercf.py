# -*- test-case-name: tests.test_postconf_master -*-
"""
master.cf, sans I/O: service entries, their fields and C{-o} overrides, and
the normalised layout that C{postconf -M} prints.

The syntax is that of master(5) as Postfix 3.7 reads it:

  - one logical line per service; a physical line that starts with
    whitespace continues the logical line before it, and blank lines and
    lines whose first non-blank character is C{#} are ignored, even
    between continuation lines;
  - eight or more fields: service, type, private, unprivileged, chroot,
    wakeup, process limit, command, then the command's arguments;
  - C{-} means "the built-in default" in the five flag/number columns;
  - C{{ ... }} around a command argument protects whitespace inside it
    (the braces and the whitespace just inside them are removed);
  - C{-o name=value} and the long form C{-o { name = value }} override a
    main.cf parameter for that service only.  Only options before the
    first non-option argument (or C{--}) are daemon options.

When the same service name and type appear twice, L{ParsedMasterCf} keeps
both, in file order; for running services the last one wins, as in
master(8).  Editing lives in L{mtaguard.config._mastercf_edit}.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import attr

#: The characters Postfix treats as whitespace in master.cf (C isspace()).
BLANKS = " \t\n\v\f\r"

#: The service types that master(5) accepts.
SERVICE_TYPES = ("inet", "unix", "unix-dgram", "fifo", "pass")

#: The names C{postconf -F} uses for the eight fields, in column order.
FIELD_NAMES = (
    "service",
    "type",
    "private",
    "unprivileged",
    "chroot",
    "wakeup",
    "process_limit",
    "command",
)

#: The column where C{postconf -M} starts each of the eight fields.
COLUMN_GOALS = (0, 11, 17, 25, 33, 41, 49, 57)

#: Folded output (C{-Mf}, C{-Ff}, edits) stays below this many columns...
LINE_LIMIT = 80
#: ...and indents continuation lines by this much.
INDENT = "    "


class MasterCfSyntaxError(ValueError):
    """
    master.cf (or an entry given to C{postconf -M name/type=entry}) is not
    valid.  C{str()} is Postfix's message, e.g. C{invalid type field
    "UNIX" in "a UNIX - - n - - x"}; L{line} is the 1-based line of the
    offending entry (0 when the text did not come from a file).
    """

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ServiceEntry:
    """
    One master.cf service.

    The first seven fields are kept as written, C{-} included.  C{command}
    and C{arguments} are what the program receives: C{{...}} protection is
    removed (C{{ a b }} becomes C{"a b"}) and the long override form
    C{-o { name = value }} becomes C{"-o", "name=value"}.  C{overrides}
    holds the well-formed C{-o name=value} daemon options, in order; a name
    may repeat, and the last one wins.
    """

    name: str
    type: str
    private: str
    unprivileged: str
    chroot: str
    wakeup: str
    processLimit: str
    command: str
    arguments: tuple[str, ...]
    overrides: tuple[tuple[str, str], ...]
    firstLine: int
    lastLine: int

    def key(self) -> tuple[str, str]:
        """
        @return: C{(name, type)}, which identifies the service.
        """
        return (self.name, self.type)

    def fields(self) -> tuple[str, ...]:
        """
        @return: the first seven fields, in column order, as written.
        """
        return (
            self.name,
            self.type,
            self.private,
            self.unprivileged,
            self.chroot,
            self.wakeup,
            self.processLimit,
        )


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ParsedMasterCf:
    """
    The services of a master.cf file in file order, duplicates included
    (the last entry for a name and type is the one that runs), and the
    warnings Postfix would print while reading it, without the
    C{warning: } prefix.
    """

    entries: tuple[ServiceEntry, ...]
    warnings: tuple[str, ...]


def isBlank(character: str) -> bool:
    """
    @return: whether C{character} is whitespace for master.cf purposes.
    """
    return character in BLANKS


def printable(text: str) -> str:
    """
    Replace control characters by C{?}, as Postfix does when it quotes
    configuration text in a message.
    """
    return "".join(c if c.isprintable() else "?" for c in text)


def tokenize(text: str) -> list[str]:
    """
    Split master.cf text at whitespace, except whitespace inside C{{...}}.

    Braces stay in the tokens; L{unbrace} removes them.  A C{}} without a
    matching C{{} is an ordinary character, as in Postfix.
    """
    tokens: list[str] = []
    index = 0
    length = len(text)
    while True:
        while index < length and text[index] in BLANKS:
            index += 1
        if index >= length:
            return tokens
        start = index
        depth = 0
        while index < length and (depth > 0 or text[index] not in BLANKS):
            if text[index] == "{":
                depth += 1
            elif text[index] == "}" and depth > 0:
                depth -= 1
            index += 1
        tokens.append(text[start:index])


def unbrace(token: str, warnings: list[str]) -> str:
    """
    Remove C{{...}} protection from one token: C{"{ a b }"} becomes
    C{"a b"}.  Tokens that do not start with C{{} are returned unchanged.
    Malformed braces add Postfix's warning to C{warnings}.
    """
    if not token.startswith("{"):
        return token
    depth = 0
    for index, character in enumerate(token):
        if character == "{":
            depth += 1
        elif character == "}":
            depth -= 1
            if depth == 0:
                if token[index + 1 :].strip(BLANKS):
                    warnings.append(
                        f"master.cf: syntax error after '}}' in \"{printable(token)}\""
                    )
                return token[1:index].strip(BLANKS)
    warnings.append(f"master.cf: missing '}}' in \"{printable(token)}\"")
    return token[1:].strip(BLANKS)


def splitNameValue(text: str) -> tuple[str, str] | str:
    """
    Split C{name = value} the way Postfix's C{split_nameval} does.

    @return: C{(name, value)}, whitespace around both removed, or Postfix's
        complaint (C{missing attribute name} / C{missing '=' after
        attribute name}) when C{text} is not of that form.
    """
    stripped = text.lstrip(BLANKS)
    end = 0
    while end < len(stripped) and stripped[end] not in BLANKS and stripped[end] != "=":
        end += 1
    name = stripped[:end]
    if not name:
        return "missing attribute name"
    rest = stripped[end:].lstrip(BLANKS)
    if not rest.startswith("="):
        return "missing '=' after attribute name"
    return (name, rest[1:].strip(BLANKS))


def daemonOptionEnd(arguments: Sequence[str]) -> int:
    """
    @return: the index in C{arguments} of the first argument that is not a
        daemon option (a non-option, or C{--}), or C{len(arguments)}; the
        value after C{-o} counts as part of its option.
    """
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if not argument.startswith("-") or argument == "--":
            return index
        if argument == "-o" and index + 1 < len(arguments):
            index += 2
        else:
            index += 1
    return index


def overridePairs(arguments: Sequence[str]) -> list[tuple[int, str]]:
    """
    @return: C{(index, value)} for each C{-o value} among the daemon options
        of C{arguments}, where C{index} is the position of the C{-o}.
    """
    pairs = []
    end = daemonOptionEnd(arguments)
    index = 0
    while index < end:
        if arguments[index] == "-o" and index + 1 < len(arguments):
            pairs.append((index, arguments[index + 1]))
            index += 2
        else:
            index += 1
    return pairs


def _overrides(arguments: Sequence[str]) -> tuple[tuple[str, str], ...]:
    result = []
    for _, value in overridePairs(arguments):
        split = splitNameValue(value)
        if isinstance(split, tuple):
            result.append(split)
    return tuple(result)


def commandArguments(
    tokens: Sequence[str], warnings: list[str]
) -> tuple[str, tuple[str, ...]]:
    """
    Turn the raw tokens of the command field and its arguments into the
    program and the arguments it receives: braces removed, and each daemon
    option C{-o { name = value }} normalised to C{name=value}.  An override
    that is not C{name=value} is kept as written, with Postfix's warning.
    """
    plain = [unbrace(token, warnings) for token in tokens]
    command, arguments = plain[0], plain[1:]
    for index, value in overridePairs(arguments):
        # Only the long form is rewritten (and complained about); a short
        # "-o value" is kept exactly as written.
        if not tokens[index + 2].startswith("{"):
            continue
        split = splitNameValue(value)
        if isinstance(split, tuple):
            arguments[index + 1] = f"{split[0]}={split[1]}"
        else:
            warnings.append(f'master.cf: {split}: "{printable(value)}"')
    return command, tuple(arguments)


def _validWakeup(text: str) -> bool:
    # "N?" means "wake up only after first use"; Postfix also accepts a
    # lone "?" and "-?", so strip one "?" and check what is left.
    if text.endswith("?"):
        text = text[:-1]
    return text == "-" or all(c in "0123456789" for c in text)


def _validProcessLimit(text: str) -> bool:
    return text == "-" or (text != "" and all(c in "0123456789" for c in text))


def fieldProblem(field: str, value: str) -> str | None:
    """
    Check one of the first seven fields.

    @param field: a name from L{FIELD_NAMES} other than C{command}.
    @return: C{None} when C{value} is acceptable, else Postfix's complaint
        without its C{in "..."} suffix, e.g. C{invalid chroot field "x"}.
    """
    if field == "type":
        good = value in SERVICE_TYPES
    elif field in ("private", "unprivileged", "chroot"):
        good = value in ("y", "n", "-")
    elif field == "wakeup":
        good = _validWakeup(value)
    elif field == "process_limit":
        good = _validProcessLimit(value)
    else:
        good = True
    if good:
        return None
    return f'invalid {field} field "{printable(value)}"'


def entryFromText(
    text: str, firstLine: int, lastLine: int, warnings: list[str], validate: bool = True
) -> ServiceEntry:
    """
    Build a L{ServiceEntry} from the text of one logical line.

    @param validate: check the flag and number fields (see
        L{parseMasterCf}).

    @raise MasterCfSyntaxError: for fewer than eight fields (the message is
        C{bad field count}, which callers decorate) or an invalid field.
    """
    tokens = tokenize(text)
    if len(tokens) < len(FIELD_NAMES):
        raise MasterCfSyntaxError("bad field count", firstLine)
    # Postfix checks the type first, then the columns left to right.
    for index in (1, 2, 3, 4, 5, 6) if validate else ():
        problem = fieldProblem(FIELD_NAMES[index], tokens[index])
        if problem is not None:
            raise MasterCfSyntaxError(
                f'{problem} in "{printable(text.strip(BLANKS))}"', firstLine
            )
    command, arguments = commandArguments(tokens[7:], warnings)
    return ServiceEntry(
        name=tokens[0],
        type=tokens[1],
        private=tokens[2],
        unprivileged=tokens[3],
        chroot=tokens[4],
        wakeup=tokens[5],
        processLimit=tokens[6],
        command=command,
        arguments=arguments,
        overrides=_overrides(arguments),
        firstLine=firstLine,
        lastLine=lastLine,
    )


def rebuild(entry: ServiceEntry, **changes: object) -> ServiceEntry:
    """
    @return: a copy of C{entry} with C{changes} applied and C{overrides}
        recomputed from the (possibly new) arguments.
    """
    changed = attr.evolve(entry, **changes)  # type: ignore[arg-type]
    return attr.evolve(changed, overrides=_overrides(changed.arguments))


def lineKind(line: str) -> str:
    """
    Classify one physical line (without its newline).

    @return: C{"skip"} for blank and comment lines, C{"continuation"} for
        a line that starts with whitespace, else C{"start"}.
    """
    stripped = line.lstrip(BLANKS)
    if not stripped or stripped.startswith("#"):
        return "skip"
    if line[0] in BLANKS:
        return "continuation"
    return "start"


def physicalLines(text: str) -> list[str]:
    """
    Split file text at newlines only (not at the other characters that
    C{str.splitlines} honours), keeping each line's newline.
    """
    lines = text.split("\n")
    result = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        result.append(lines[-1])
    return result


def _logicalLines(lines: Sequence[str]) -> Iterable[tuple[int, int, str]]:
    # Yield (first, last, joined text), 1-based; Postfix joins continuation
    # lines by plain concatenation, leading whitespace included.
    current: list[str] = []
    first = last = 0
    for number, line in enumerate(lines, 1):
        content = line.rstrip("\n")
        kind = lineKind(content)
        if kind == "skip":
            continue
        if kind == "continuation" and current:
            current.append(content)
            last = number
            continue
        if current:
            yield first, last, "".join(current)
        current = [content]
        first = last = number
    if current:
        yield first, last, "".join(current)


def entryProblem(entry: ServiceEntry) -> str | None:
    """
    @return: Postfix's complaint about the first invalid field of C{entry},
        without its C{in "..."} suffix, or C{None}.
    """
    for name, value in zip(FIELD_NAMES[1:7], entry.fields()[1:]):
        problem = fieldProblem(name, value)
        if problem is not None:
            return problem
    return None


def parseMasterCf(
    text: str, *, path: str = "master.cf", validate: bool = True
) -> ParsedMasterCf:
    """
    Parse the text of a master.cf file.

    @param path: the file name to use in messages, as Postfix prints it
        (C{<config_directory>/master.cf}).
    @param validate: check the type, flag and number fields.  C{postconf}
        edits read the file without these checks and only check the
        entries they rewrite (see L{entryProblem}).
    @raise MasterCfSyntaxError: with Postfix's message, e.g. C{file
        /etc/postfix/master.cf: line 12: bad field count}.
    """
    entries = []
    warnings: list[str] = []
    for first, last, logical in _logicalLines(physicalLines(text)):
        if logical[0] in BLANKS:
            # Continuation text with nothing to continue: Postfix warns and
            # ignores it.
            warnings.append(
                f'{path}: logical line must not start with whitespace: "{printable(logical)}"'
            )
            continue
        try:
            entries.append(entryFromText(logical, first, last, warnings, validate))
        except MasterCfSyntaxError as error:
            if error.message == "bad field count":
                raise MasterCfSyntaxError(
                    f"file {path}: line {first}: bad field count", first
                ) from None
            raise
    return ParsedMasterCf(entries=tuple(entries), warnings=tuple(warnings))


def displayArgument(argument: str) -> str:
    """
    @return: C{argument} as master.cf text: wrapped in C{{...}} when it
        contains whitespace.
    """
    if any(c in BLANKS for c in argument):
        return "{" + argument + "}"
    return argument


def argumentUnits(entry: ServiceEntry) -> list[tuple[str, int, bool]]:
    """
    Group the arguments of C{entry} for display, as C{postconf} does.

    Each C{-o value} daemon option is one unit, every other argument is a
    unit of its own.  Postfix prints the argument that ends the daemon
    options (the first non-option, or C{--}) without C{{...}}, even when it
    contains whitespace, so that C{pipe { a b }} comes out as C{pipe a b};
    and when it folds lines it counts the length of an argument without
    the braces it adds.  Both quirks are kept so that output and edits
    match Postfix byte for byte.

    @return: C{(text, countedLength, isOverride)} triples.
    """
    units = []
    arguments = entry.arguments
    end = daemonOptionEnd(arguments)
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if index < end and argument == "-o" and index + 1 < len(arguments):
            value = arguments[index + 1]
            units.append((f"-o {displayArgument(value)}", 3 + len(value), True))
            index += 2
            continue
        if index == end:
            units.append((argument, len(argument), False))
        else:
            units.append((displayArgument(argument), len(argument), False))
        index += 1
    return units


def commandText(entry: ServiceEntry, start: int = 0, fold: bool = False) -> str:
    """
    Format the program and its arguments, as C{postconf} shows the
    C{command} field and the end of a C{-M} line.

    @param start: how many columns are already used on the first line.
        Postfix separates two items only when the line is longer than the
        indent, so after C{start=0} a program of four characters or less is
        glued to a following non-option argument (C{postconf -Fh} shows
        C{pipeflags=...}); callers that want that quirk pass 0.
    @param fold: fold as described in L{formatEntry}.
    @return: the text, with newlines between folded lines.
    """
    lines = [displayArgument(entry.command)]
    # The length Postfix believes the line has: braces are not counted,
    # and after an override the next unit always starts a new line.
    length = start + len(entry.command)
    for text, counted, isOverride in argumentUnits(entry):
        if isOverride:
            length = LINE_LIMIT
        if length <= len(INDENT):
            lines[-1] += text
            length += counted
        elif not fold or length + 1 + counted < LINE_LIMIT:
            lines[-1] += " " + text
            length += 1 + counted
        else:
            lines.append(INDENT + text)
            length = len(INDENT) + counted
        if isOverride:
            length = LINE_LIMIT
    return "\n".join(lines)


def formatEntry(entry: ServiceEntry, fold: bool = False) -> str:
    """
    Format C{entry} the way C{postconf -M} (C{fold=False}) or C{postconf
    -Mf} and master.cf edits (C{fold=True}) do, without a final newline.

    The fields start at the columns in L{COLUMN_GOALS}, with at least one
    space between them.  Folding keeps lines below L{LINE_LIMIT} columns
    where possible and puts each C{-o name=value} on a line of its own,
    indented by L{INDENT}; other arguments wrap like words.
    """
    fields = entry.fields()
    line = fields[0]
    # Like Postfix, pad only after something was printed: an empty name
    # (possible after "postconf -F name/type/service=") shifts the line.
    for goal, field in zip(COLUMN_GOALS[1:], fields[1:]):
        if line:
            line += " " * max(1, goal - len(line))
        line += field
    if line:
        line += " " * max(1, COLUMN_GOALS[-1] - len(line))
    return line + commandText(entry, len(line), fold)


def processLimit(entry: ServiceEntry, defaultProcessLimit: int) -> int:
    """
    @param defaultProcessLimit: the value of C{default_process_limit}.
    @return: the maximum number of processes for C{entry}; 0 means no limit.
    """
    if entry.processLimit == "-":
        return defaultProcessLimit
    return int(entry.processLimit)


def inetAddress(entry: ServiceEntry) -> tuple[str | None, str]:
    """
    Split the name of an C{inet} service into host and port.

    Accepted forms: C{port}, C{host:port}, C{[host]:port} (needed for IPv6
    addresses) and C{[host]}.  The host and port may be symbolic.

    @return: C{(host, port)}; C{host} is C{None} when the service listens
        on all addresses.
    @raise ValueError: when C{entry} is not an C{inet} service or its name
        has no port.
    """
    if entry.type != "inet":
        raise ValueError(f"{entry.name}/{entry.type} is not an inet service")
    name = entry.name
    if name.startswith("["):
        close = name.find("]")
        if close < 0:
            raise ValueError(f'missing "]" in inet service name "{name}"')
        host, rest = name[1:close], name[close + 1 :]
        if not rest.startswith(":") or len(rest) == 1:
            raise ValueError(f'missing port in inet service name "{name}"')
        return (host, rest[1:])
    host, colon, port = name.rpartition(":")
    if not colon:
        return (None, name)
    if not port:
        raise ValueError(f'missing port in inet service name "{name}"')
    return (host or None, port)
