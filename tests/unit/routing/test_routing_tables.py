"""Routing tables: ordering, first match wins, the default route, MT bind selection and failover."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.context import MOContext, MTContext
from routing.errors import InvalidRule, NoRoute
from routing.rules import MORoute, MTRoute
from routing.table import MODecision, MORoutingTable, MTDecision, MTRoutingTable, TraceStep

DEFAULT_MO = MORoute(name="default", service="general", operator_pool="all", default=True)


def mo(
    text: str = "alias hola",
    *,
    short_code: str = "997745",
    carrier: str = "movistar",
    source: str = "+34600111222",
) -> MOContext:
    return MOContext(short_code=short_code, text=text, carrier=carrier, source_e164=source)


MO_ROWS: list[dict[str, object]] = [
    {"name": "default", "service": "general", "operator_pool": "all", "default": True},
    {"name": "tarot", "service": "tarot", "operator_pool": "tarot-team", "keyword": "tarot", "order": 10},
    {
        "name": "alias-movistar",
        "service": "alias",
        "operator_pool": "cc",
        "keyword": "alias",
        "carrier": "movistar",
        "callcentre": True,
        "order": 5,
    },
    {"name": "alias", "service": "alias", "operator_pool": "alias-team", "keyword": "alias", "order": 5},
    {"name": "short-997746", "service": "amistad", "operator_pool": "amistad", "short_code": "997746"},
]


def test_mo_rules_are_ordered_by_order_then_as_given_default_last() -> None:
    table = MORoutingTable.from_dicts(MO_ROWS)
    assert [rule.name for rule in table] == ["short-997746", "alias-movistar", "alias", "tarot", "default"]
    assert table.rules == tuple(table)
    assert len(table) == 5
    assert table.default.name == "default"


def test_mo_first_match_wins() -> None:
    table = MORoutingTable.from_dicts(MO_ROWS)
    decision = table.route(mo("ALIAS hola"))
    assert decision == MODecision("alias", "cc", True, table.rules[1])
    assert table.route(mo("alias hola", carrier="orange")).operator_pool == "alias-team"
    assert table.route(mo("Tarot?")).service == "tarot"
    assert table.route(mo("alias", short_code="997746")).service == "amistad"
    fallback = table.route(mo("hola guapa"))
    assert fallback.rule is table.default
    assert (fallback.service, fallback.operator_pool, fallback.callcentre) == ("general", "all", False)


def test_mo_trace_explains_every_rule_tried() -> None:
    table = MORoutingTable.from_dicts(MO_ROWS)
    steps = table.trace(mo("alias", carrier="orange"))
    assert [(step.rule.name, step.failed) for step in steps] == [
        ("short-997746", "short_code"),
        ("alias-movistar", "carrier"),
        ("alias", None),
    ]
    last = table.trace(mo("hola"))[-1]
    assert last == TraceStep(table.default, None)


def test_mo_table_requires_exactly_one_default() -> None:
    alias = MORoute(name="alias", service="s", operator_pool="p", keyword="alias")
    with pytest.raises(InvalidRule, match="has no default route") as caught:
        MORoutingTable([alias])
    assert caught.value.subject == "MO routing table" and caught.value.field == "default"
    second = MORoute(name="other-default", service="s", operator_pool="p", default=True)
    with pytest.raises(InvalidRule, match="2 default routes \\('default', 'other-default'\\)"):
        MORoutingTable([DEFAULT_MO, alias, second])


def test_mo_table_requires_unique_names() -> None:
    first = MORoute(name="alias", service="s", operator_pool="p", keyword="alias")
    again = MORoute(name="alias", service="s", operator_pool="p", keyword="tarot")
    with pytest.raises(InvalidRule, match="two rules are named 'alias'") as caught:
        MORoutingTable([first, again, DEFAULT_MO])
    assert caught.value.field == "name"


def test_from_dicts_names_the_row() -> None:
    with pytest.raises(InvalidRule) as caught:
        MORoutingTable.from_dicts([MO_ROWS[0], {"service": "s", "operator_pool": "p"}])
    assert caught.value.subject == "MO rule #2" and caught.value.field == "name"
    with pytest.raises(InvalidRule, match="row #1 is a str"):
        MORoutingTable.from_dicts(["default"])  # type: ignore[list-item]


_filters = st.fixed_dictionaries(
    {},
    optional={
        "short_code": st.sampled_from(["997745", "997746"]),
        "keyword": st.sampled_from(["ALIAS", "TAROT"]),
        "carrier": st.sampled_from(["movistar", "orange"]),
        "country": st.sampled_from(["ES", "PT"]),
        "source_prefix": st.sampled_from(["+346", "+3460", "+351"]),
    },
).filter(bool)
_contexts = st.builds(
    mo,
    text=st.sampled_from(["alias hola", "tarot", "hola", ""]),
    short_code=st.sampled_from(["997745", "997746"]),
    carrier=st.sampled_from(["movistar", "orange", "vodafone"]),
    source=st.sampled_from(["+34600111222", "+34700111222", "+351912345678"]),
)


@given(st.lists(st.tuples(_filters, st.integers(-3, 3)), max_size=8), _contexts)
def test_route_is_the_first_matching_rule_in_order(
    specs: list[tuple[dict[str, Any], int]], ctx: MOContext
) -> None:
    rules = [
        MORoute(name=f"r{i}", service=f"s{i}", operator_pool="p", order=order, **filters)
        for i, (filters, order) in enumerate(specs)
    ]
    table = MORoutingTable([*rules, DEFAULT_MO])
    decision = table.route(ctx)
    by_order = sorted(rules, key=lambda rule: rule.order)  # stable: ties keep the given order
    expected = next((rule for rule in by_order if rule.matches(ctx)), DEFAULT_MO)
    assert decision.rule is expected
    assert table.trace(ctx)[-1].rule is expected
    assert DEFAULT_MO.matches(ctx)


# --- MT ------------------------------------------------------------------------------------------------

CARRIER_BINDS = {"Movistar": ["mv-1", "mv-2"], "orange": ["or-1"]}
MT_RULES = [
    MTRoute(name="default", default=True, carrier_binds=True, binds=("aggregator",)),
    MTRoute(name="portugal", country="PT", binds=("pt-1", "pt-2")),
    MTRoute(name="echat-sender", short_code="eChat", binds=("alpha",), order=-1),
]


def table() -> MTRoutingTable:
    return MTRoutingTable(MT_RULES, CARRIER_BINDS)


def test_mt_reply_leaves_by_the_inbound_bind_of_the_subscribers_carrier() -> None:
    ctx = MTContext("+34600111222", carrier="movistar", inbound_bind="mv-2")
    decision = table().select(ctx, {"mv-1", "mv-2", "aggregator"})
    assert decision == MTDecision("mv-2", ("mv-1", "aggregator"), MT_RULES[0])


def test_mt_fails_over_to_another_bind_of_the_same_carrier() -> None:
    ctx = MTContext("+34600111222", carrier="movistar", inbound_bind="mv-2")
    assert table().select(ctx, {"mv-1", "aggregator"}) == MTDecision("mv-1", ("aggregator",), MT_RULES[0])
    assert table().select(ctx, ["aggregator"]).bind == "aggregator"


def test_mt_inbound_bind_outside_the_rule_is_ignored() -> None:
    ctx = MTContext("+34600111222", carrier="orange", inbound_bind="mv-1")
    assert table().candidates(ctx, table().match(ctx)) == ("or-1", "aggregator")


def test_mt_rule_binds_in_order() -> None:
    ctx = MTContext("+351912345678", carrier="movistar")
    assert table().select(ctx, {"pt-1", "pt-2", "mv-1"}) == MTDecision("pt-1", ("pt-2",), MT_RULES[1])
    assert table().select(ctx, {"pt-2"}) == MTDecision("pt-2", (), MT_RULES[1])
    sender = MTContext("+34600111222", short_code="eChat", carrier="movistar")
    assert table().select(sender, {"alpha", "mv-1"}).rule.name == "echat-sender"


def test_mt_no_route_when_every_candidate_is_down() -> None:
    ctx = MTContext("+351912345678")
    with pytest.raises(NoRoute) as caught:
        table().select(ctx, {"mv-1", "aggregator"})  # first match wins: no leaking to other rules' binds
    assert caught.value.rule == "portugal"
    assert caught.value.candidates == ("pt-1", "pt-2")
    assert "no bind of rule 'portugal' is up (tried pt-1, pt-2)" in str(caught.value)


def test_mt_no_route_when_the_carrier_has_no_binds() -> None:
    only_carrier = MTRoutingTable([MTRoute(name="default", default=True, carrier_binds=True)], CARRIER_BINDS)
    with pytest.raises(NoRoute, match="carrier 'vodafone' has no binds"):
        only_carrier.select(MTContext("+34600111222", carrier="vodafone"), {"mv-1"})
    with pytest.raises(NoRoute, match="carrier None has no binds"):
        only_carrier.select(MTContext("+34600111222"), {"mv-1"})


def test_mt_table_properties_and_trace() -> None:
    mt_table = table()
    assert [rule.name for rule in mt_table] == ["echat-sender", "portugal", "default"]
    assert len(mt_table) == 3 and mt_table.rules[-1] is mt_table.default
    assert mt_table.carrier_binds == {"movistar": ("mv-1", "mv-2"), "orange": ("or-1",)}
    steps = mt_table.trace(MTContext("+34600111222", carrier="orange"))
    assert [(s.rule.name, s.failed) for s in steps] == [
        ("echat-sender", "short_code"),
        ("portugal", "country"),
        ("default", None),
    ]


def test_mt_table_validation() -> None:
    with pytest.raises(InvalidRule, match="no carrier has binds configured") as caught:
        MTRoutingTable([MTRoute(name="default", default=True, carrier_binds=True)])
    assert caught.value.subject == "MT rule 'default'"
    with pytest.raises(InvalidRule, match="must be a list of names"):
        MTRoutingTable(MT_RULES, {"movistar": "mv-1"})
    with pytest.raises(InvalidRule, match="must be a list of names"):
        MTRoutingTable(MT_RULES, {"movistar": ["mv-1", ""]})
    with pytest.raises(InvalidRule, match="carrier names must be non-empty"):
        MTRoutingTable(MT_RULES, {" ": ["mv-1"]})
    with pytest.raises(InvalidRule, match="listed twice"):
        MTRoutingTable(MT_RULES, {"movistar": ["mv-1"], "MOVISTAR": ["mv-2"]})
    with pytest.raises(InvalidRule, match="has no default route"):
        MTRoutingTable(MT_RULES[1:], CARRIER_BINDS)


def test_mt_table_from_dicts() -> None:
    rows: list[dict[str, object]] = [
        {"name": "default", "default": True, "carrier_binds": True},
        {"name": "pt", "country": "PT", "binds": ["pt-1"]},
    ]
    mt_table = MTRoutingTable.from_dicts(rows, {"movistar": ["mv-1", "mv-1"]})
    assert mt_table.carrier_binds == {"movistar": ("mv-1",)}  # duplicates collapse, order kept
    assert mt_table.select(MTContext("+34600111222", carrier="movistar"), {"mv-1"}).bind == "mv-1"
    with pytest.raises(InvalidRule) as caught:
        MTRoutingTable.from_dicts([{"name": "x", "binds": ["a"], "carrier": 3}])
    assert (caught.value.subject, caught.value.field) == ("MT rule 'x'", "carrier")


@given(
    st.lists(st.sampled_from(["mv-1", "mv-2", "or-1", "aggregator", "pt-1"]), unique=True),
    st.sampled_from(["movistar", "orange", "vodafone"]),
    st.sampled_from([None, "mv-1", "mv-2", "or-1"]),
)
def test_mt_selection_only_returns_candidates_that_are_up(
    up: list[str], carrier: str, inbound: str | None
) -> None:
    ctx = MTContext("+34600111222", carrier=carrier, inbound_bind=inbound)
    mt_table = table()
    candidates = mt_table.candidates(ctx, mt_table.match(ctx))
    try:
        decision = mt_table.select(ctx, up)
    except NoRoute:
        assert not set(candidates) & set(up)
        return
    chosen = (decision.bind, *decision.fallbacks)
    assert chosen == tuple(bind for bind in candidates if bind in up)
    if inbound in up and inbound in candidates:
        assert decision.bind == inbound
