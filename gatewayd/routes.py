"""The daemon's routing tables, built from the configuration with ``routing``'s pure tables.

MO table, tried in this order (first match wins):

1. the explicit ``[[routes.mo]]`` rules, by their ``order`` then as written;
2. one rule per ``[[services]]`` entry that has a keyword (short code + first word);
3. one rule per ``[[services]]`` entry without a keyword (the short code alone);
4. the default route: the ``[[routes.mo]]`` rule with ``default = true``, else the built-in one sending
   the MO to service :data:`DEFAULT_SERVICE`. An MO is always stored, never dropped for want of a rule.

MT table: the explicit ``[[routes.mt]]`` rules, then the default route (the explicit one, else "by the
subscriber's carrier's binds"). A reply prefers the bind the subscriber's MO came in on; when it is
down, another bind of the rule takes it. Binds opened ``count`` times are routed as one: their copies
(``name#k``) share its traffic.

Tables are immutable; a reload builds new ones and swaps them in.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from gatewayd.config import BindConfig, CarrierConfig, Config, ServiceConfig
from gatewayd.mo_message import InboundMO
from routing.context import MOContext, MTContext, normalise_carrier, normalise_country
from routing.errors import InvalidNumber, NoRoute
from routing.rules import MORoute, MTRoute
from routing.table import MORoutingTable, MTDecision, MTRoutingTable

#: The service of an MO that no rule claims (unknown short code, or no service for it).
DEFAULT_SERVICE = "default"
#: The operator pool of the built-in default route; also the pool of an operator listed in no pool
#: and of a conversation opened before pools were stored (``gatewayd.assignment``).
DEFAULT_POOL = "default"
#: Names of the rules made here; brackets keep them apart from names written in the configuration.
DEFAULT_RULE = "[default]"


def bind_copies(bind: BindConfig) -> tuple[str, ...]:
    """The session names of one configured bind: its name, or ``name#1`` .. ``name#count``."""
    if bind.count == 1:
        return (bind.name,)
    return tuple(f"{bind.name}#{copy}" for copy in range(1, bind.count + 1))


# --- MO ---------------------------------------------------------------------------------------------


def _service_rule(service: ServiceConfig, order: int) -> MORoute:
    keyword = f"/{service.keyword}" if service.keyword else ""
    return MORoute(
        name=f"[services] {service.name} {service.short_code}{keyword}",
        service=service.name,
        operator_pool=service.operator_pool,
        callcentre=service.callcentre,
        order=order,
        short_code=service.short_code,
        keyword=service.keyword,
    )


def _default_mo_route() -> MORoute:
    return MORoute(name=DEFAULT_RULE, service=DEFAULT_SERVICE, operator_pool=DEFAULT_POOL, default=True)


def mo_table(config: Config) -> MORoutingTable:
    """The MO rules of ``config`` (see the module's docstring for the order)."""
    explicit = config.routes.mo
    after = max((rule.order for rule in explicit if not rule.default), default=0) + 1
    rules = list(explicit)
    rules.extend(_service_rule(service, after) for service in config.services if service.keyword)
    rules.extend(_service_rule(service, after + 1) for service in config.services if not service.keyword)
    if not any(rule.default for rule in explicit):
        rules.append(_default_mo_route())
    return MORoutingTable(rules)


def routed_pools(config: Config) -> frozenset[str]:
    """The operator pools the MO table of ``config`` gives conversations (the default route's too)."""
    return frozenset(rule.operator_pool for rule in mo_table(config).rules)


class MORouter:
    """The service of each MO, by the MO table; swap the table on reload with :meth:`update`."""

    __slots__ = ("_table",)

    def __init__(self, table: MORoutingTable | None = None) -> None:
        self._table = table if table is not None else MORoutingTable([_default_mo_route()])

    @property
    def table(self) -> MORoutingTable:
        return self._table

    def update(self, table: MORoutingTable) -> None:
        self._table = table

    def service(self, *, short_code: str, text: str, carrier: str, msisdn: str, country: str | None) -> str:
        """The service that handles the MO from ``msisdn`` (E.164 digits without '+'); the default
        route's when its sender is no E.164 number."""
        try:
            ctx = MOContext(
                short_code=short_code, text=text, carrier=carrier, source_e164="+" + msisdn, country=country
            )
        except InvalidNumber:
            return self._table.default.service
        return self._table.route(ctx).service

    def service_of(self, mo: InboundMO) -> str:
        """The service of an MO the pipeline has normalised (see :meth:`route_of`)."""
        return self.route_of(mo).service

    def route_of(self, mo: InboundMO) -> MORoute:
        """The rule that routes an MO the pipeline has normalised: its number is E.164 digits and its
        first word already read, so only the carrier and country (configuration spellings) are folded
        here. The rule carries the decision: service, operator pool, call-centre flag."""
        ctx = MOContext.normalised(
            short_code=mo.short_code,
            text=mo.text,
            carrier=normalise_carrier(mo.carrier),
            source_e164="+" + mo.msisdn,  # routing speaks E.164
            country=normalise_country(mo.country),
            keyword=mo.service_keyword,
        )
        return self._table.match(ctx)


# --- MT ---------------------------------------------------------------------------------------------


def sending_binds(carriers: Sequence[CarrierConfig]) -> dict[str, tuple[str, ...]]:
    """Each carrier's sessions that can send (not receiver-only), in configuration order."""
    return {
        carrier.name: tuple(name for bind in carrier.binds if bind.can_send for name in bind_copies(bind))
        for carrier in carriers
    }


def _expand_copies(rule: MTRoute, carriers: Sequence[CarrierConfig]) -> MTRoute:
    copies = {bind.name: bind_copies(bind) for carrier in carriers for bind in carrier.binds}
    binds = tuple(name for bind in rule.binds for name in copies.get(bind, (bind,)))
    return rule if binds == rule.binds else dataclasses.replace(rule, binds=binds)


def _mt_table(explicit: Sequence[MTRoute], carriers: Sequence[CarrierConfig]) -> MTRoutingTable | None:
    if not carriers:
        return None
    rules = [_expand_copies(rule, carriers) for rule in explicit]
    if not any(rule.default for rule in rules):
        rules.append(MTRoute(name=DEFAULT_RULE, carrier_binds=True, default=True))
    return MTRoutingTable(rules, sending_binds(carriers))


def mt_table(config: Config) -> MTRoutingTable | None:
    """The MT rules of ``config``; ``None`` when no carrier is configured (nothing can be sent)."""
    return _mt_table(config.routes.mt, config.carriers)


class MTRouter:
    """Picks the session an MT leaves by from the MT table and the binds that are up.

    The table decides which binds may carry the MT and in which preference; among equally preferred
    binds that are up (the carrier's binds, or the copies of one bind) MTs take turns, so a carrier
    with several binds spreads its traffic. A reply goes back by the bind its MO came in on.
    """

    __slots__ = ("_table", "_carrier_binds", "_copies", "_turns")

    def __init__(self, table: MTRoutingTable | None, carriers: Sequence[CarrierConfig]) -> None:
        self._table = table
        self._carrier_binds: Mapping[str, tuple[str, ...]] = table.carrier_binds if table is not None else {}
        self._copies = {
            name: copies
            for carrier in carriers
            for bind in carrier.binds
            for copies in (bind_copies(bind),)
            for name in copies
        }
        self._turns: dict[tuple[str, ...], itertools.count[int]] = {}

    @classmethod
    def from_config(cls, config: Config) -> MTRouter:
        return cls(mt_table(config), config.carriers)

    @classmethod
    def from_carriers(cls, carriers: Sequence[CarrierConfig]) -> MTRouter:
        """The default routing alone: every MT by its subscriber's carrier's binds."""
        return cls(_mt_table((), carriers), carriers)

    @property
    def table(self) -> MTRoutingTable | None:
        return self._table

    def select(
        self,
        binds_up: Collection[str],
        *,
        carrier: str | None,
        destination: str | None = None,
        source: str | None = None,
        inbound_bind: str | None = None,
    ) -> str:
        """The bind to submit by now. ``destination`` is the subscriber's number (E.164 digits without
        '+', as the store holds it). Raises :class:`NoRoute` when no bind the matching rule allows is up."""
        if self._table is None:
            raise NoRoute("no carrier is configured")
        ctx = self._context(carrier, destination, source, inbound_bind)
        if ctx is None:
            return self._by_carrier(binds_up, carrier, inbound_bind)
        decision = self._table.select(ctx, binds_up)
        return self._take_turns(ctx.inbound_bind, ctx.carrier, decision)

    @staticmethod
    def _context(
        carrier: str | None, destination: str | None, source: str | None, inbound_bind: str | None
    ) -> MTContext | None:
        if destination is None:
            return None
        try:
            return MTContext(
                destination_e164="+" + destination,  # routing speaks E.164
                short_code=source,
                carrier=carrier,
                inbound_bind=inbound_bind,
            )
        except InvalidNumber:
            return None

    def _by_carrier(self, binds_up: Collection[str], carrier: str | None, inbound_bind: str | None) -> str:
        """An MT whose destination routing cannot read: the subscriber's carrier's binds."""
        key = normalise_carrier(carrier) if carrier else ""
        candidates = self._carrier_binds.get(key, ())
        up = [bind for bind in candidates if bind in binds_up]
        if not up:
            raise NoRoute(f"MT by carrier {carrier!r}: no bind of it is up", candidates=candidates)
        if inbound_bind in up:
            return str(inbound_bind)
        return self._turn(tuple(up))

    def _take_turns(self, inbound_bind: str | None, carrier: str | None, decision: MTDecision) -> str:
        if decision.bind == inbound_bind:
            return decision.bind
        up = (decision.bind, *decision.fallbacks)
        carrier_binds = self._carrier_binds.get(carrier or "", ())
        if decision.rule.carrier_binds and decision.bind in carrier_binds:
            peers = carrier_binds
        else:
            peers = self._copies.get(decision.bind, (decision.bind,))
        return self._turn(tuple(bind for bind in up if bind in peers))

    def _turn(self, peers: tuple[str, ...]) -> str:
        if len(peers) == 1:
            return peers[0]
        turn = next(self._turns.setdefault(peers, itertools.count()))
        return peers[turn % len(peers)]


@dataclass(frozen=True, slots=True)
class RouteTables:
    """Both tables of one configuration, built together so a reload applies both or neither."""

    mo: MORoutingTable
    mt: MTRoutingTable | None


def build_routes(config: Config) -> RouteTables:
    """Raises ``routing.InvalidRule`` when the rules do not make a valid table."""
    return RouteTables(mo_table(config), mt_table(config))
