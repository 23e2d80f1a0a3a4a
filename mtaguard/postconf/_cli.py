# -*- test-case-name: tests.test_postconf_cli -*-
"""
Option parsing and dispatch for C{mtaguard-postconf}, exactly as Postfix
3.7's C{postconf} parses its options: POSIX C{getopt} that stops at the
first operand, combined flags (C{-nf}, C{-hd}, C{-PX}), the same
compatibility matrix and the same fatal messages.
"""

from __future__ import annotations

import enum
import inspect
import os
import sys
from typing import Any, Mapping, Optional, Sequence, TextIO

import attr

from mtaguard.config._registry import Registry, registry as _registry

from ._main import (
    COMMENT,
    DELETE,
    EDIT,
    PROGRAM,
    PostconfFatal,
    QueryOptions,
    editMain,
    runQuery,
)

#: The configuration directory when neither C{-c} nor C{$MAIL_CONFIG}
#: names one.
DEFAULT_CONFIG_DIRECTORY = "/etc/mtaguard"


class Mode(enum.IntFlag):
    """
    The option bits, declared in the order Postfix lists options in its
    messages (C{specify one of -d -n}).
    """

    d = enum.auto()
    e = enum.auto()
    f = enum.auto()
    F = enum.auto()
    h = enum.auto()
    H = enum.auto()
    M = enum.auto()
    n = enum.auto()
    o = enum.auto()
    p = enum.auto()
    P = enum.auto()
    x = enum.auto()
    X = enum.auto()
    COMMENT = enum.auto()  # "-#"


_FLAG_LETTERS = {
    "d": Mode.d,
    "e": Mode.e,
    "f": Mode.f,
    "F": Mode.F,
    "h": Mode.h,
    "H": Mode.H,
    "M": Mode.M,
    "n": Mode.n,
    "p": Mode.p,
    "P": Mode.P,
    "x": Mode.x,
    "X": Mode.X,
    "#": Mode.COMMENT,
}

#: Postfix options mtaguard does not implement (SASL, lock and map types,
#: bounce templates, TLS information, parameter classes).
_UNSUPPORTED = frozenset("aAblmtCT")
_UNSUPPORTED_WITH_ARGUMENT = frozenset("CT")

_EDITS = Mode.e | Mode.COMMENT | Mode.X
_MASTER = Mode.M | Mode.F | Mode.P
_MAJOR = Mode.p | _MASTER

#: Mutually exclusive options (postconf.c C{pcf_incompat_options}).
_INCOMPATIBLE: tuple[Mode, ...] = (
    _MAJOR,
    Mode.d | Mode.e | Mode.n | Mode.COMMENT | Mode.X,
    Mode.f | _EDITS,
    Mode.x | _EDITS,
    Mode.o | Mode.d | _EDITS,
    Mode.h | _EDITS | Mode.H,
)

#: Each major mode and the only options it goes with
#: (postconf.c C{pcf_compat_options}).
_COMPATIBLE: tuple[tuple[Mode, Mode], ...] = (
    (
        Mode.p,
        _EDITS | Mode.f | Mode.h | Mode.x | Mode.d | Mode.n | Mode.o | Mode.H,
    ),
    (Mode.M, _EDITS | Mode.f | Mode.o | Mode.x),
    (Mode.F, Mode.e | Mode.f | Mode.h | Mode.o | Mode.x | Mode.H),
    (Mode.P, Mode.e | Mode.X | Mode.f | Mode.h | Mode.o | Mode.x | Mode.H),
)

USAGE = (
    f"usage: {PROGRAM}"
    " [-c config_dir]"
    " [-d (parameter defaults)]"
    " [-e (edit configuration)]"
    " [-f (fold lines)]"
    " [-F (master.cf fields)]"
    " [-h (no names)]"
    " [-H (no values)]"
    " [-M (master.cf)]"
    " [-n (non-default parameters)]"
    " [-o name=value (override parameter value)]"
    " [-p (main.cf, default)]"
    " [-P (master.cf parameters)]"
    " [-v (verbose)]"
    " [-x (expand parameter values)]"
    " [-X (exclude)]"
    " [-# (comment-out)]"
    " [--json]"
    " [name...]"
)


def _names(mode: Mode) -> str:
    return " ".join(
        "-#" if member is Mode.COMMENT else f"-{member.name}"
        for member in Mode
        if member in mode
    )


@attr.s(auto_attribs=True)
class Invocation:
    """
    A parsed command line.

    @ivar mode: the option bits.
    @ivar configDirectory: C{-c}, if given.
    @ivar overrides: the C{-o} values, in order.
    @ivar json: C{--json}.
    @ivar operands: everything after the options.
    """

    mode: Mode = Mode(0)
    configDirectory: Optional[str] = None
    overrides: list[str] = attr.Factory(list)
    json: bool = False
    operands: list[str] = attr.Factory(list)


class UsageError(PostconfFatal):
    """
    An unknown option or a missing option argument: Postfix prints the
    getopt complaint, then the usage as a fatal message.

    @ivar complaint: the getopt complaint line.
    """

    def __init__(self, complaint: str) -> None:
        super().__init__(USAGE)
        self.complaint = complaint


def parseArguments(argv: Sequence[str]) -> Invocation:
    """
    Parse the command line (without the program name) like Postfix's
    C{getopt} loop, then apply its implicit options and its compatibility
    checks.

    @param argv: the arguments.
    @raise PostconfFatal: with Postfix's message for a bad combination.
    """
    invocation = Invocation()
    index = 0
    while index < len(argv):
        argument = argv[index]
        if argument == "--":
            index += 1
            break
        if argument == "--json":
            invocation.json = True
            index += 1
            continue
        if argument.startswith("--"):
            raise UsageError(f"unrecognized option '{argument}'")
        if not argument.startswith("-") or argument == "-":
            break
        index += 1
        position = 1
        while position < len(argument):
            letter = argument[position]
            position += 1
            if letter in "co" or letter in _UNSUPPORTED_WITH_ARGUMENT:
                if position < len(argument):
                    value = argument[position:]
                elif index < len(argv):
                    value = argv[index]
                    index += 1
                else:
                    raise UsageError(f"option requires an argument -- '{letter}'")
                position = len(argument)
                if letter == "c":
                    invocation.configDirectory = value
                elif letter == "o":
                    invocation.mode |= Mode.o
                    invocation.overrides.append(value)
                else:
                    raise PostconfFatal(f"-{letter} is not supported by {PROGRAM}")
            elif letter in _FLAG_LETTERS:
                invocation.mode |= _FLAG_LETTERS[letter]
            elif letter == "v":
                pass  # Verbose logging: nothing to be verbose about.
            elif letter in _UNSUPPORTED:
                raise PostconfFatal(f"-{letter} is not supported by {PROGRAM}")
            else:
                raise UsageError(f"invalid option -- '{letter}'")
    invocation.operands = list(argv[index:])

    mode = invocation.mode
    # Make the implicit options explicit before checking compatibility,
    # as Postfix does: -p by default, -e when the first operand has "=".
    if not mode & _MAJOR:
        mode |= Mode.p
    if invocation.operands and "=" in invocation.operands[0]:
        mode |= Mode.e
    for group in _INCOMPATIBLE:
        present = mode & group
        if present and (present & (present - 1)):
            raise PostconfFatal(f"specify one of {_names(Mode(present))}")
    for major, allowed in _COMPATIBLE:
        if mode & major:
            excess = mode & ~(major | allowed)
            if excess:
                raise PostconfFatal(
                    f"with option {_names(major)}, do not specify {_names(Mode(excess))}"
                )
    if mode & Mode.e and not invocation.operands:
        raise PostconfFatal("-e requires name=value argument")
    if invocation.json and mode & _EDITS:
        raise PostconfFatal("--json applies to queries only")
    invocation.mode = mode
    return invocation


def _loadRegistry() -> None:
    # Importing the declarations fills the registry.  They are written in
    # parallel with this command; until they exist, the registry holds
    # whatever has been declared so far.
    for module in ("mtaguard.config.params", "mtaguard.config._compat"):
        try:
            __import__(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def _runMaster(
    directory: str,
    invocation: Invocation,
    action: str,
    out: TextIO,
    err: TextIO,
) -> int:
    from mtaguard.postconf._master import runMaster

    mode = invocation.mode
    letter = "M" if mode & Mode.M else "F" if mode & Mode.F else "P"
    keywords: dict[str, Any] = dict(
        fold=bool(mode & Mode.f),
        valuesOnly=bool(mode & Mode.h),
        namesOnly=bool(mode & Mode.H),
        json=invocation.json,
        out=out,
        err=err,
    )
    # -x and -o are valid with -M/-F/-P; pass them on if the master.cf
    # side takes them.
    accepted = inspect.signature(runMaster).parameters
    if "expand" in accepted:
        keywords["expand"] = bool(mode & Mode.x)
    if "overrides" in accepted:
        keywords["overrides"] = tuple(invocation.overrides)
    return int(runMaster(directory, letter, action, invocation.operands, **keywords))


def run(
    argv: Sequence[str],
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
    registry: Registry = _registry,
) -> int:
    """
    Run C{mtaguard-postconf}.

    @param argv: the arguments, without the program name.
    @param out: standard output.
    @param err: standard error.
    @param environ: the environment (for C{$MAIL_CONFIG}).
    @param registry: the parameter registry.
    @return: the exit status.
    """
    try:
        invocation = parseArguments(argv)
        mode = invocation.mode
        explicit = invocation.configDirectory is not None or "MAIL_CONFIG" in environ
        directory = invocation.configDirectory
        if directory is None:
            directory = environ.get("MAIL_CONFIG", DEFAULT_CONFIG_DIRECTORY)
        if mode & _MASTER and not mode & _EDITS:
            return _runMaster(directory, invocation, "show", out, err)
        if mode & _EDITS:
            if not invocation.operands:
                raise PostconfFatal("missing service argument")
            action = EDIT if mode & Mode.e else DELETE if mode & Mode.X else COMMENT
            if mode & _MASTER:
                return _runMaster(directory, invocation, action, out, err)
            return editMain(directory, action, invocation.operands, err)
        if registry is _registry:
            _loadRegistry()
        options = QueryOptions(
            defaults=bool(mode & Mode.d),
            nonDefault=bool(mode & Mode.n),
            expand=bool(mode & Mode.x),
            fold=bool(mode & Mode.f),
            valuesOnly=bool(mode & Mode.h),
            namesOnly=bool(mode & Mode.H),
            json=invocation.json,
            overrides=tuple(invocation.overrides),
            explicitDirectory=explicit,
        )
        return runQuery(directory, invocation.operands, options, out, err, registry)
    except UsageError as error:
        out.flush()
        err.write(f"{PROGRAM}: {error.complaint}\n")
        err.write(f"{PROGRAM}: fatal: {error}\n")
        return 1
    except PostconfFatal as error:
        out.flush()
        err.write(f"{PROGRAM}: fatal: {error}\n")
        return 1


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
    environ: Optional[Mapping[str, str]] = None,
    registry: Registry = _registry,
) -> int:
    """
    The C{mtaguard-postconf} command: Postfix's C{postconf} for main.cf and
    master.cf.  The configuration directory is C{-c DIR}, else
    C{$MAIL_CONFIG}, else C{/etc/mtaguard}.

    @param argv: the arguments without the program name; C{sys.argv[1:]}
        by default.
    @param out: standard output; C{sys.stdout} by default.
    @param err: standard error; C{sys.stderr} by default.
    @param environ: the environment; C{os.environ} by default.
    @param registry: the parameter registry (tests pass their own).
    @return: the exit status: 0, or 1 after a fatal error.
    """
    return run(
        sys.argv[1:] if argv is None else argv,
        sys.stdout if out is None else out,
        sys.stderr if err is None else err,
        os.environ if environ is None else environ,
        registry,
    )


__all__: Sequence[str] = [
    "DEFAULT_CONFIG_DIRECTORY",
    "Invocation",
    "Mode",
    "main",
    "parseArguments",
    "run",
]
