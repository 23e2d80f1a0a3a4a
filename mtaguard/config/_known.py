# -*- test-case-name: tests.test_postconf_main -*-
"""
Which main.cf parameter names are "known", the way Postfix 3.7's postconf
decides it (postconf_service.c, postconf_user.c, postconf_unused.c).

A name is known when it is:

  1. declared in the parameter registry (a built-in parameter);
  2. service-derived: master.cf runs a delivery agent (C{local}, C{error},
     C{virtual}, C{smtp}, C{lmtp}, C{pipe}) or C{spawn} under some service
     name, and the name is that service name plus one of Postfix's
     per-transport suffixes (C{relay_destination_concurrency_limit}, ...).
     These names are always known, whether or not main.cf sets them, and
     they appear in the full C{postconf} listing with a default of
     C{$default_...};
  3. user-defined: main.cf (or a C{postconf -o}) gives it a value, I{and}
     some value mentions it as C{$name} or C{${name...}}: a main.cf value,
     a master.cf C{-o} value, the default of a built-in parameter that
     main.cf leaves alone, or it is listed in C{smtpd_restriction_classes}.

A main.cf name that is none of these is "unused": Postfix warns about it on
every invocation, and so does mtaguard (L{unusedParameters}).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Optional, Protocol, Sequence

import attr

from ._expand import (
    Conditional,
    Expander,
    ExpansionError,
    Reference,
    Relation,
    Template,
    compileTemplate,
)
from ._maincf import Setting
from ._registry import Registry, registry as _registry


class ServiceEntry(Protocol):
    """
    What this module needs from a master.cf entry: the service name, the
    command (program name, field 8) and the C{-o name=value} overrides.
    """

    @property
    def name(self) -> str:
        """
        The service name, field 1.
        """

    @property
    def command(self) -> str:
        """
        The program name, field 8.
        """

    @property
    def overrides(self) -> object:
        """
        The C{-o} settings: a mapping, or pairs, or C{name=value} strings.
        """


#: Obsolete names that Postfix still knows because some built-in default
#: mentions them (C{virtual_alias_maps = $virtual_maps}): a query by name
#: answers (with an empty default), but full listings leave them out unless
#: main.cf sets them.  Found by asking the real C{postconf} for every
#: C{$name} in its defaults that it does not list.
LEGACY_PARAMETERS = frozenset(
    {
        "authorized_verp_clients",
        "fallback_relay",
        "lmtp_per_record_deadline",
        "postscreen_blacklist_action",
        "postscreen_dnsbl_ttl",
        "postscreen_dnsbl_whitelist_threshold",
        "postscreen_whitelist_interfaces",
        "smtp_per_record_deadline",
        "smtpd_client_connection_limit_exceptions",
        "smtpd_per_record_deadline",
        "tlsproxy_client_level",
        "tlsproxy_client_policy",
        "virtual_maps",
    }
)

#: Parameters that main.cf cannot set: Postfix warns
#: C{read-only parameter assignment: name=value} and ignores the setting.
READ_ONLY_PARAMETERS = frozenset({"process_id", "process_name", "service_name"})

#: Per-transport suffixes of a delivery agent and the built-in parameter
#: that supplies each default (Postfix 3.7; the list printed by the real
#: C{postconf} for C{relay} and C{bsmtp} in Debian's master.cf).
_DELIVERY_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_delivery_slot_cost", "default_delivery_slot_cost"),
    ("_delivery_slot_discount", "default_delivery_slot_discount"),
    ("_delivery_slot_loan", "default_delivery_slot_loan"),
    (
        "_destination_concurrency_failed_cohort_limit",
        "default_destination_concurrency_failed_cohort_limit",
    ),
    ("_destination_concurrency_limit", "default_destination_concurrency_limit"),
    (
        "_destination_concurrency_negative_feedback",
        "default_destination_concurrency_negative_feedback",
    ),
    (
        "_destination_concurrency_positive_feedback",
        "default_destination_concurrency_positive_feedback",
    ),
    ("_destination_rate_delay", "default_destination_rate_delay"),
    ("_destination_recipient_limit", "default_destination_recipient_limit"),
    ("_extra_recipient_limit", "default_extra_recipient_limit"),
    ("_initial_destination_concurrency", "initial_destination_concurrency"),
    ("_minimum_delivery_slots", "default_minimum_delivery_slots"),
    ("_recipient_limit", "default_recipient_limit"),
    ("_recipient_refill_delay", "default_recipient_refill_delay"),
    ("_recipient_refill_limit", "default_recipient_refill_limit"),
    ("_transport_rate_delay", "default_transport_rate_delay"),
)
_TIME_LIMIT: tuple[tuple[str, str], ...] = (("_time_limit", "command_time_limit"),)

#: Which programs get which suffixes.  Postfix compares field 8 of the
#: master.cf entry literally (no basename), so C{/usr/lib/postfix/smtp}
#: does not count.
SERVICE_PROGRAMS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "local": _DELIVERY_SUFFIXES,
    "error": _DELIVERY_SUFFIXES,
    "virtual": _DELIVERY_SUFFIXES,
    "smtp": _DELIVERY_SUFFIXES,
    "lmtp": _DELIVERY_SUFFIXES,
    "pipe": _DELIVERY_SUFFIXES + _TIME_LIMIT,
    "spawn": _TIME_LIMIT,
}

#: The parameter whose (expanded) value lists restriction class names.
RESTRICTION_CLASSES = "smtpd_restriction_classes"


def overridePairs(entry: object) -> list[tuple[str, str]]:
    """
    The C{-o name=value} settings of a master.cf entry as pairs, whatever
    shape the entry keeps them in (a mapping, pairs, or C{name=value}
    strings).

    @param entry: a master.cf entry with an C{overrides} attribute.
    """
    raw = getattr(entry, "overrides", None)
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        return [(str(k), str(v)) for k, v in raw.items()]
    pairs: list[tuple[str, str]] = []
    for item in raw:
        if isinstance(item, str):
            name, sep, value = item.partition("=")
            if sep:
                pairs.append((name.strip(), value.strip()))
        else:
            name, value = item
            pairs.append((str(name), str(value)))
    return pairs


def serviceParameters(
    services: Iterable[ServiceEntry], registry: Registry = _registry
) -> dict[str, str]:
    """
    The service-derived parameters of a master.cf: name to default text
    (C{$default_...}), in master.cf order.  Names that the registry
    declares itself (such as C{local_destination_concurrency_limit}, whose
    built-in default is C{2}) keep their built-in default and are left out.

    @param services: the master.cf entries.
    @param registry: the parameter registry.
    """
    found: dict[str, str] = {}
    for service in services:
        suffixes = SERVICE_PROGRAMS.get(service.command)
        if suffixes is None:
            continue
        for suffix, defaultName in suffixes:
            name = service.name + suffix
            if name not in registry and name not in found:
                found[name] = "$" + defaultName
    return found


def orderedReferences(template: Template) -> Iterator[str]:
    """
    Every name a compiled value mentions, in textual order (repeats
    included), so that warnings come out in the order Postfix prints them.

    @param template: a compiled value.
    """
    for node in template:
        if isinstance(node, Reference):
            yield node.name
        elif isinstance(node, Conditional):
            yield node.name
            for branch in (node.ifSet, node.ifEmpty):
                if branch is not None:
                    yield from orderedReferences(branch)
        elif isinstance(node, Relation):
            for branch in (node.left, node.right, node.ifTrue, node.ifFalse):
                if branch is not None:
                    yield from orderedReferences(branch)


def _referencesOf(value: str) -> list[str]:
    try:
        return list(orderedReferences(compileTemplate(value)))
    except ExpansionError:
        # Postfix's scan does not stop on a malformed value either; the
        # error surfaces when the value is expanded.
        return []


@attr.s(frozen=True, slots=True, auto_attribs=True)
class KnownNames:
    """
    The outcome of the known-name rule.

    @ivar defaults: every known name and its default text, built-in,
        service-derived and user-defined (user-defined names have an
        empty default: they only ever show their main.cf value).
    @ivar user: the user-defined names among them.
    @ivar undefined: C{(source, name)} for each C{$name} that has no value
        anywhere, in the order met; C{source} is C{"main.cf"} or
        C{"master.cf"}.  Postfix warns
        C{<config_directory>/<source>: undefined parameter: name}.
    """

    defaults: dict[str, str]
    user: frozenset[str]
    undefined: tuple[tuple[str, str], ...]

    def __contains__(self, name: object) -> bool:
        return name in self.defaults


def knownNames(
    mainValues: Mapping[str, str],
    services: Iterable[ServiceEntry],
    registry: Registry = _registry,
    extraDefaults: Optional[Mapping[str, str]] = None,
) -> KnownNames:
    """
    Apply Postfix's rule for known names.

    @param mainValues: the effective main.cf values (with any
        C{postconf -o} overrides, without read-only names).
    @param services: the master.cf entries.
    @param registry: the parameter registry.
    @param extraDefaults: built-in names whose default the caller computes
        itself (C{config_directory}, C{process_id}), if any.
    @return: the known names with their defaults.
    """
    services = list(services)
    defaults: dict[str, str] = {}
    for parameter in registry:
        defaults[parameter.name] = parameter.defaultText()
    if extraDefaults:
        defaults.update(extraDefaults)
    for name, default in serviceParameters(services, registry).items():
        defaults.setdefault(name, default)
    builtin = set(defaults)

    masterNames: set[str] = set()
    for service in services:
        masterNames.update(name for name, _ in overridePairs(service))

    user: set[str] = set()
    undefined: list[tuple[str, str]] = []

    def flag(name: str, source: str) -> None:
        # A $name validates a user-defined name only if it has a value; a
        # name with neither value nor default is worth a warning.
        supplied = False
        if name in mainValues:
            supplied = True
            if name not in builtin:
                user.add(name)
        if name in masterNames:
            supplied = True
        if not supplied and name not in builtin:
            undefined.append((source, name))

    def scan(value: str, source: str) -> None:
        for name in _referencesOf(value):
            flag(name, source)

    # Same order as Postfix: restriction classes, master.cf -o values,
    # defaults left alone, then the main.cf values themselves.
    classes = mainValues.get(RESTRICTION_CLASSES)
    if classes is not None:
        def lookup(name: str) -> Optional[str]:
            if name in mainValues:
                return mainValues[name]
            return defaults.get(name)

        try:
            expanded = Expander(lookup).name(RESTRICTION_CLASSES)
        except ExpansionError:
            expanded = classes
        for className in expanded.replace(",", " ").split():
            flag(className, "main.cf")
    # Postfix never expands (nor scans for $name) a few values; the
    # registry knows which.
    raw = registry.rawNames
    for service in services:
        for name, value in overridePairs(service):
            if name not in raw:
                scan(value, "master.cf")
    for name in sorted(builtin):
        if name in raw or name in mainValues:
            continue
        scan(defaults[name], "main.cf")
    for name, value in mainValues.items():
        if name in raw:
            continue
        scan(value, "main.cf")

    for name in user:
        defaults[name] = ""
    return KnownNames(defaults, frozenset(user), tuple(undefined))


def unusedParameters(
    settings: Iterable[Setting],
    services: Iterable[ServiceEntry],
    registry: Registry = _registry,
) -> list[Setting]:
    """
    The main.cf settings that no known parameter accounts for, in file
    order (the last definition of each name), for the start-up warning
    C{<file>: unused parameter: name=value}.  Read-only names
    (C{process_id}, ...) are not included: they get their own warning.

    @param settings: the main.cf settings in file order (overrides may be
        appended as extra settings).
    @param services: the master.cf entries.
    @param registry: the parameter registry.
    """
    effective: dict[str, Setting] = {}
    for setting in settings:
        effective.pop(setting.name, None)
        effective[setting.name] = setting
    values = {
        name: setting.value
        for name, setting in effective.items()
        if name not in READ_ONLY_PARAMETERS
    }
    known = knownNames(values, services, registry)
    return [
        setting
        for name, setting in effective.items()
        if name not in READ_ONLY_PARAMETERS and name not in known
    ]


__all__: Sequence[str] = [
    "KnownNames",
    "LEGACY_PARAMETERS",
    "READ_ONLY_PARAMETERS",
    "SERVICE_PROGRAMS",
    "ServiceEntry",
    "knownNames",
    "orderedReferences",
    "overridePairs",
    "serviceParameters",
    "unusedParameters",
]
