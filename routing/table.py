"""Routing tables: ordered rules, first match wins, exactly one default route tried last.

Tables are immutable and cheap to build; reloading configuration means building a new table and
swapping the reference, so a message is always routed by one consistent set of rules.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from routing.context import MOContext, MTContext, normalise_carrier
from routing.errors import InvalidRule, NoRoute
from routing.rules import MORoute, MTRoute

_Ctx = TypeVar("_Ctx", contravariant=True)


class _Rule(Protocol[_Ctx]):
    """What a table needs of a rule: MORoute and MTRoute both are one."""

    @property
    def name(self) -> str: ...

    @property
    def default(self) -> bool: ...

    @property
    def order(self) -> int: ...

    def mismatch(self, ctx: _Ctx) -> str | None: ...


_R = TypeVar("_R", bound=_Rule[Any])
_C = TypeVar("_C")


@dataclass(frozen=True, slots=True)
class TraceStep(Generic[_R]):
    """One rule tried while routing: ``failed`` names the filter that rejected the message, or is None."""

    rule: _R
    failed: str | None


def _ordered(rules: Iterable[_R], table: str) -> tuple[tuple[_R, ...], _R]:
    """The rules by (default last, order), stable; checks names are unique and there is one default."""
    given = tuple(rules)
    names: set[str] = set()
    for rule in given:
        if rule.name in names:
            raise InvalidRule(table, f"two rules are named {rule.name!r}", field="name")
        names.add(rule.name)
    defaults = [rule.name for rule in given if rule.default]
    if not defaults:
        raise InvalidRule(table, "has no default route; add one rule with default = true", field="default")
    if len(defaults) > 1:
        raise InvalidRule(
            table,
            f"has {len(defaults)} default routes ({', '.join(map(repr, defaults))}); keep exactly one",
            field="default",
        )
    ordered = tuple(sorted(given, key=lambda rule: (rule.default, rule.order)))
    return ordered, ordered[-1]


def _rows(rows: Iterable[Mapping[str, object]], table: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    for position, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InvalidRule(table, f"row #{position} is a {type(row).__name__}, not a mapping of fields")
        yield position, row


class _RuleTable(Generic[_R, _C]):
    """Rules in evaluation order, the default last; what the MO and MT tables share."""

    __slots__ = ("_rules", "_default")

    def __init__(self, rules: Iterable[_R], table: str) -> None:
        self._rules, self._default = _ordered(rules, table)

    @property
    def rules(self) -> tuple[_R, ...]:
        """The rules in the order they are tried."""
        return self._rules

    @property
    def default(self) -> _R:
        return self._default

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[_R]:
        return iter(self._rules)

    def match(self, ctx: _C) -> _R:
        # The default route is last and has no filters: whatever the others miss, it takes.
        for rule in self._rules[:-1]:
            if rule.mismatch(ctx) is None:
                return rule
        return self._default

    def trace(self, ctx: _C) -> tuple[TraceStep[_R], ...]:
        """Every rule tried for ``ctx`` up to the one that matched, and why the others did not."""
        steps = []
        for rule in self._rules:
            steps.append(TraceStep(rule, rule.mismatch(ctx)))
            if steps[-1].failed is None:
                break
        return tuple(steps)


# --- MO -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MODecision:
    """Where an MO goes."""

    service: str
    operator_pool: str
    callcentre: bool
    rule: MORoute


class MORoutingTable(_RuleTable[MORoute, MOContext]):
    """MO rules in evaluation order; ``route`` always finds one (the default route matches everything)."""

    __slots__ = ()

    def __init__(self, rules: Iterable[MORoute]) -> None:
        super().__init__(rules, "MO routing table")

    @classmethod
    def from_dicts(cls, rows: Iterable[Mapping[str, object]]) -> MORoutingTable:
        """A table from plain rows (TOML array of tables, database rows)."""
        rows_read = _rows(rows, "MO routing table")
        return cls(MORoute.from_dict(row, position=position) for position, row in rows_read)

    def route(self, ctx: MOContext) -> MODecision:
        rule = self.match(ctx)
        return MODecision(rule.service, rule.operator_pool, rule.callcentre, rule)


# --- MT -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MTDecision:
    """The bind to submit by now, and the binds to fail over to, in order; all of them up."""

    bind: str
    fallbacks: tuple[str, ...]
    rule: MTRoute


class MTRoutingTable(_RuleTable[MTRoute, MTContext]):
    """MT rules in evaluation order plus the binds of each carrier.

    ``carrier_binds`` maps a carrier name to its binds in order of preference; rules with
    ``carrier_binds = true`` send through the subscriber's carrier with them.
    """

    __slots__ = ("_carrier_binds",)

    def __init__(
        self, rules: Iterable[MTRoute], carrier_binds: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        super().__init__(rules, "MT routing table")
        self._carrier_binds = _check_carrier_binds(carrier_binds or {})
        if not self._carrier_binds:
            for rule in self._rules:
                if rule.carrier_binds and not rule.binds:
                    raise InvalidRule(
                        f"MT rule {rule.name!r}",
                        "sends by the subscriber's carrier binds, but no carrier has binds configured",
                        field="carrier_binds",
                    )

    @classmethod
    def from_dicts(
        cls, rows: Iterable[Mapping[str, object]], carrier_binds: Mapping[str, Sequence[str]] | None = None
    ) -> MTRoutingTable:
        """A table from plain rows (TOML array of tables, database rows)."""
        rows_read = _rows(rows, "MT routing table")
        return cls((MTRoute.from_dict(row, position=position) for position, row in rows_read), carrier_binds)

    @property
    def carrier_binds(self) -> Mapping[str, tuple[str, ...]]:
        return dict(self._carrier_binds)

    def candidates(self, ctx: MTContext, rule: MTRoute) -> tuple[str, ...]:
        """The binds ``rule`` allows for ``ctx``, most preferred first, up or not.

        The subscriber's carrier binds come first when the rule asks for them, then the rule's own
        binds; the bind the subscriber's MO came in on moves to the front when it is one of them.
        """
        ordered: list[str] = []
        if rule.carrier_binds and ctx.carrier is not None:
            ordered.extend(self._carrier_binds.get(ctx.carrier, ()))
        ordered.extend(bind for bind in rule.binds if bind not in ordered)
        if ctx.inbound_bind is not None and ctx.inbound_bind in ordered:
            ordered.remove(ctx.inbound_bind)
            ordered.insert(0, ctx.inbound_bind)
        return tuple(ordered)

    def select(self, ctx: MTContext, binds_up: Collection[str]) -> MTDecision:
        """The bind to send ``ctx`` by now. First match wins: when the matching rule's binds are all
        down the MT waits (``NoRoute``) rather than leave by a bind another rule meant for other traffic.
        """
        rule = self.match(ctx)
        candidates = self.candidates(ctx, rule)
        if not candidates:
            raise NoRoute(
                f"MT to {ctx.destination_e164}: rule {rule.name!r} sends by the subscriber's "
                f"carrier, and carrier {ctx.carrier!r} has no binds",
                rule=rule.name,
            )
        up = [bind for bind in candidates if bind in binds_up]
        if not up:
            raise NoRoute(
                f"MT to {ctx.destination_e164}: no bind of rule {rule.name!r} is up "
                f"(tried {', '.join(candidates)})",
                rule=rule.name,
                candidates=candidates,
            )
        return MTDecision(up[0], tuple(up[1:]), rule)


def _check_carrier_binds(carrier_binds: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    checked: dict[str, tuple[str, ...]] = {}
    for carrier, binds in carrier_binds.items():
        key = normalise_carrier(carrier)
        if not key:
            raise InvalidRule("MT routing table", "carrier names must be non-empty", field="carrier_binds")
        if isinstance(binds, str) or not all(isinstance(b, str) and b.strip() for b in binds):
            raise InvalidRule(
                "MT routing table",
                f"binds of carrier {carrier!r} must be a list of names",
                field="carrier_binds",
            )
        names = tuple(dict.fromkeys(bind.strip() for bind in binds))
        if key in checked:
            raise InvalidRule(
                "MT routing table", f"carrier {carrier!r} is listed twice", field="carrier_binds"
            )
        checked[key] = names
    return checked
