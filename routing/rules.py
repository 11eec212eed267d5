"""Routing rules: immutable, typed, built from code or from plain dicts (TOML tables, database rows).

A rule has filters, AND-ed: every filter that is set must match, unset filters match anything.
A *default* rule has no filter at all and matches everything; a table holds exactly one and tries it
last. A non-default rule without filters would silently shadow every rule after it, so it is refused.
Values are validated and normalised at construction; errors name the rule and the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from routing._fields import FieldReader
from routing.context import MOContext, MTContext, normalise_carrier, normalise_country
from routing.errors import InvalidRule
from routing.keywords import normalise_keyword

_SHORT_CODE = re.compile(r"\d{3,15}", re.ASCII)
_COUNTRY = re.compile(r"[A-Z]{2}")
_PREFIX = re.compile(r"\+\d{1,15}", re.ASCII)
_SENDER_MAX = 15  # an alphanumeric sender has at most 11 characters, a number at most 15 digits


def _set(rule: object, name: str, value: object) -> None:
    object.__setattr__(rule, name, value)


def _check_common(rule: MORoute | MTRoute, subject: str, filters: dict[str, str | None]) -> None:
    if not rule.name.strip():
        raise InvalidRule(subject, "must be a non-empty string", field="name")
    _set(rule, "name", rule.name.strip())
    if isinstance(rule.order, bool) or not isinstance(rule.order, int):
        raise InvalidRule(subject, f"must be an integer, got {rule.order!r}", field="order")
    present = [key for key, value in filters.items() if value is not None]
    if rule.default and present:
        raise InvalidRule(
            subject,
            "a default route matches everything and cannot have filters (remove it, or set default = false)",
            field=present[0],
        )
    if not rule.default and not present:
        raise InvalidRule(
            subject,
            f"a rule needs at least one filter ({', '.join(filters)}); "
            "a rule matching everything must be the default route",
            field="default",
        )


@dataclass(frozen=True, slots=True)
class _FilterSpec:
    """How one filter value is normalised and what a valid one looks like."""

    normalise: Callable[[str], str]
    is_valid: Callable[[str], bool]
    expected: str


def _prefix(text: str) -> str:
    return "+" + text.replace(" ", "").removeprefix("+")


_CARRIER_FILTER = _FilterSpec(normalise_carrier, bool, "a carrier name")
_COUNTRY_FILTER = _FilterSpec(
    normalise_country,
    lambda v: _COUNTRY.fullmatch(v) is not None,
    "an ISO 3166 two-letter country code such as 'ES'",
)
_PREFIX_FILTER = _FilterSpec(
    _prefix,
    lambda v: _PREFIX.fullmatch(v) is not None,
    "an E.164 prefix: '+' and 1-15 digits, such as '+346'",
)
_MO_FILTERS: Mapping[str, _FilterSpec] = {
    "short_code": _FilterSpec(
        lambda v: v.removeprefix("+"), lambda v: _SHORT_CODE.fullmatch(v) is not None, "3-15 digits"
    ),
    "keyword": _FilterSpec(normalise_keyword, lambda v: bool(v) and len(v.split()) == 1, "one word"),
    "carrier": _CARRIER_FILTER,
    "country": _COUNTRY_FILTER,
    "source_prefix": _PREFIX_FILTER,
}
_MT_FILTERS: Mapping[str, _FilterSpec] = {
    "carrier": _CARRIER_FILTER,
    "destination_prefix": _PREFIX_FILTER,
    "country": _COUNTRY_FILTER,
    # an MT source address: short code, long number or alphanumeric sender id
    "short_code": _FilterSpec(
        lambda v: v.removeprefix("+"),
        lambda v: 0 < len(v) <= _SENDER_MAX,
        f"a source address of 1-{_SENDER_MAX} characters",
    ),
}


def _normalise_filters(rule: object, subject: str, specs: Mapping[str, _FilterSpec]) -> None:
    """Store the canonical form of every filter set on ``rule``; errors name the field."""
    for key, spec in specs.items():
        value = getattr(rule, key)
        if value is None:
            continue
        normalised = spec.normalise(value.strip())
        if not spec.is_valid(normalised):
            raise InvalidRule(subject, f"must be {spec.expected}, got {value!r}", field=key)
        _set(rule, key, normalised)


def _reader(
    cls: type[MORoute] | type[MTRoute], data: Mapping[str, object], kind: str, position: int | None
) -> FieldReader:
    name = data.get("name") if isinstance(data, Mapping) else None
    if isinstance(name, str) and name.strip():
        subject = f"{kind} rule {name.strip()!r}"
    else:
        subject = f"{kind} rule #{position}" if position is not None else f"{kind} rule"
    return FieldReader(data, subject=subject, error=InvalidRule, allowed=[f.name for f in fields(cls)])


@dataclass(frozen=True, slots=True, kw_only=True)
class MORoute:
    """Where an MO goes: which service handles it and which operators answer it."""

    name: str
    #: The service (chat product) the MO belongs to.
    service: str
    #: The pool of chat operators that answers it.
    operator_pool: str
    #: Answered by the call centre instead of the customer's own operators.
    callcentre: bool = False
    #: Rules are tried by ascending ``order``, then in the order given; the default route always last.
    order: int = 0
    default: bool = False
    # --- filters (None = any) ---
    #: The short code the MO was sent to.
    short_code: str | None = None
    #: The MO's first word, normalised ('ALIAS').
    keyword: str | None = None
    #: The carrier that delivered it.
    carrier: str | None = None
    #: The carrier's country (ISO).
    country: str | None = None
    #: A prefix of the subscriber's E.164 number ('+346').
    source_prefix: str | None = None

    FILTERS: ClassVar[tuple[str, ...]] = tuple(_MO_FILTERS)

    def __post_init__(self) -> None:
        subject = f"MO rule {self.name.strip()!r}"
        _normalise_filters(self, subject, _MO_FILTERS)
        for key in ("service", "operator_pool"):
            value = getattr(self, key).strip()
            if not value:
                raise InvalidRule(subject, "must be a non-empty string", field=key)
            _set(self, key, value)
        _check_common(self, subject, self.filters)

    @property
    def filters(self) -> dict[str, str | None]:
        return {key: getattr(self, key) for key in self.FILTERS}

    def mismatch(self, ctx: MOContext) -> str | None:
        """The first filter that rejects ``ctx``, or ``None`` when the rule matches."""
        if self.short_code is not None and ctx.short_code != self.short_code:
            return "short_code"
        if self.keyword is not None and ctx.keyword != self.keyword:
            return "keyword"
        if self.carrier is not None and ctx.carrier != self.carrier:
            return "carrier"
        if self.country is not None and ctx.country != self.country:
            return "country"
        if self.source_prefix is not None and not ctx.source_e164.startswith(self.source_prefix):
            return "source_prefix"
        return None

    def matches(self, ctx: MOContext) -> bool:
        return self.mismatch(ctx) is None

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, position: int | None = None) -> MORoute:
        """A rule from a plain mapping; ``position`` names it in errors when it has no usable name."""
        read = _reader(cls, data, "MO", position)
        values: dict[str, Any] = {
            "name": read.required_str("name"),
            "service": read.required_str("service"),
            "operator_pool": read.required_str("operator_pool"),
            "callcentre": read.boolean("callcentre", False),
            "order": read.integer("order", 0),
            "default": read.boolean("default", False),
        }
        for key in cls.FILTERS:
            values[key] = read.optional_str(key)
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class MTRoute:
    """Which binds an MT may leave by: preferred first, failover after."""

    name: str
    #: Bind names in order of preference.
    binds: tuple[str, ...] = ()
    #: Put the binds of the subscriber's carrier (from the table's carrier map) ahead of ``binds``:
    #: premium MTs are billed by the subscriber's carrier, so they must leave through it.
    carrier_binds: bool = False
    order: int = 0
    default: bool = False
    # --- filters (None = any) ---
    #: The subscriber's carrier.
    carrier: str | None = None
    #: A prefix of the destination's E.164 number ('+3460').
    destination_prefix: str | None = None
    #: The destination's country (ISO).
    country: str | None = None
    #: The source address (short code) the MT leaves from.
    short_code: str | None = None

    FILTERS: ClassVar[tuple[str, ...]] = tuple(_MT_FILTERS)

    def __post_init__(self) -> None:
        subject = f"MT rule {self.name.strip()!r}"
        _normalise_filters(self, subject, _MT_FILTERS)
        binds = tuple(bind.strip() for bind in self.binds)
        if any(not bind for bind in binds):
            raise InvalidRule(subject, "bind names must be non-empty strings", field="binds")
        duplicates = sorted({bind for bind in binds if binds.count(bind) > 1})
        if duplicates:
            raise InvalidRule(subject, f"lists bind {duplicates[0]!r} twice", field="binds")
        if not binds and not self.carrier_binds:
            raise InvalidRule(subject, "needs at least one bind, or carrier_binds = true", field="binds")
        _set(self, "binds", binds)
        _check_common(self, subject, self.filters)

    @property
    def filters(self) -> dict[str, str | None]:
        return {key: getattr(self, key) for key in self.FILTERS}

    def mismatch(self, ctx: MTContext) -> str | None:
        """The first filter that rejects ``ctx``, or ``None`` when the rule matches."""
        if self.carrier is not None and ctx.carrier != self.carrier:
            return "carrier"
        prefix = self.destination_prefix
        if prefix is not None and not ctx.destination_e164.startswith(prefix):
            return "destination_prefix"
        if self.country is not None and ctx.country != self.country:
            return "country"
        if self.short_code is not None and ctx.short_code != self.short_code:
            return "short_code"
        return None

    def matches(self, ctx: MTContext) -> bool:
        return self.mismatch(ctx) is None

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, position: int | None = None) -> MTRoute:
        """A rule from a plain mapping; ``binds`` is a list of names (or one name)."""
        read = _reader(cls, data, "MT", position)
        values: dict[str, Any] = {
            "name": read.required_str("name"),
            "binds": read.strings("binds"),
            "carrier_binds": read.boolean("carrier_binds", False),
            "order": read.integer("order", 0),
            "default": read.boolean("default", False),
        }
        for key in cls.FILTERS:
            values[key] = read.optional_str(key)
        return cls(**values)
