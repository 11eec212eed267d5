"""MO / MT rules and the contexts they match: construction, validation, matching."""

from __future__ import annotations

from typing import Any

import pytest

from routing.context import MOContext, MTContext, normalise_carrier
from routing.errors import InvalidNumber, InvalidRule
from routing.rules import MORoute, MTRoute


def mo(
    text: str = "alias hola",
    *,
    short_code: str = "997745",
    carrier: str = "movistar",
    source: str = "+34600111222",
    country: str | None = None,
) -> MOContext:
    return MOContext(short_code=short_code, text=text, carrier=carrier, source_e164=source, country=country)


# --- contexts --------------------------------------------------------------------------------------


def test_mo_context_normalises_its_fields() -> None:
    ctx = mo("  ¡Álias! hola", short_code=" +997745 ", carrier=" Movistar ")
    assert ctx.short_code == "997745"
    assert ctx.carrier == "movistar"
    assert ctx.keyword == "ALIAS"
    assert ctx.country == "ES"  # from the subscriber's number
    assert mo(country="pt").country == "PT"
    assert mo("", source="+79123456789").country is None
    assert mo("").keyword is None


def test_a_normalised_mo_context_takes_its_fields_as_given() -> None:
    checked = mo("  ¡Álias! hola", short_code=" +997745 ", carrier=" Movistar ", country="es")
    trusted = MOContext.normalised(
        short_code="997745",
        text="  ¡Álias! hola",
        carrier="movistar",
        source_e164="+34600111222",
        country="ES",
        keyword="ALIAS",
    )
    assert trusted == checked
    # nothing is re-read: a keyword the text does not start with is kept, as the caller said
    other = MOContext.normalised(
        short_code="997745",
        text="hola",
        carrier="movistar",
        source_e164="+34600111222",
        country=None,
        keyword="ALIAS",
    )
    assert (other.keyword, other.country) == ("ALIAS", None)
    assert MORoute(name="alias", service="s", operator_pool="p", keyword="ALIAS").matches(other)


def test_mo_context_requires_an_e164_source() -> None:
    with pytest.raises(InvalidNumber, match="E.164"):
        mo(source="600111222")


def test_mt_context_normalises_its_fields() -> None:
    ctx = MTContext("+34600111222", short_code="+997745", carrier="Vodafone", inbound_bind="vf-1")
    assert (ctx.short_code, ctx.carrier, ctx.country) == ("997745", "vodafone", "ES")
    assert ctx.inbound_bind == "vf-1"
    bare = MTContext("+447700900123", country="es", carrier=" ", short_code=" ")
    assert (bare.carrier, bare.short_code, bare.country) == (None, None, "ES")
    with pytest.raises(InvalidNumber, match="MT destination"):
        MTContext("0034600111222")


def test_normalise_carrier() -> None:
    assert normalise_carrier("  MoviStar ") == "movistar"


# --- MO rules --------------------------------------------------------------------------------------


def test_mo_route_normalises_filters() -> None:
    rule = MORoute(
        name=" alias ",
        service="alias",
        operator_pool="pool-a",
        short_code="+997745",
        keyword="álias",
        carrier="Movistar",
        country="es",
        source_prefix="34 6",
    )
    assert rule.name == "alias"
    assert rule.filters == {
        "short_code": "997745",
        "keyword": "ALIAS",
        "carrier": "movistar",
        "country": "ES",
        "source_prefix": "+346",
    }


@pytest.mark.parametrize(
    ("filters", "failed"),
    [
        ({"short_code": "997745"}, None),
        ({"short_code": "997746"}, "short_code"),
        ({"keyword": "ALIAS"}, None),
        ({"keyword": "TAROT"}, "keyword"),
        ({"carrier": "movistar"}, None),
        ({"carrier": "orange"}, "carrier"),
        ({"country": "ES"}, None),
        ({"country": "PT"}, "country"),
        ({"source_prefix": "+346"}, None),
        ({"source_prefix": "+347"}, "source_prefix"),
        (
            {
                "short_code": "997745",
                "keyword": "ALIAS",
                "carrier": "movistar",
                "country": "ES",
                "source_prefix": "+34",
            },
            None,
        ),
        # AND: one failing filter is enough, and the first failing one is named
        ({"short_code": "997745", "keyword": "TAROT", "carrier": "orange"}, "keyword"),
    ],
)
def test_mo_filters_are_anded(filters: dict[str, Any], failed: str | None) -> None:
    rule = MORoute(name="r", service="s", operator_pool="p", **filters)
    assert rule.mismatch(mo()) == failed
    assert rule.matches(mo()) is (failed is None)


def test_mo_default_matches_everything() -> None:
    default = MORoute(name="default", service="s", operator_pool="p", default=True)
    assert default.matches(mo())
    assert default.matches(mo("", carrier="x", source="+79123456789"))


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"short_code": "99"}, "short_code", "3-15 digits"),
        ({"short_code": "99a745"}, "short_code", "3-15 digits"),
        ({"keyword": "baja alias"}, "keyword", "one word"),
        ({"keyword": "¿?"}, "keyword", "one word"),
        ({"carrier": "  "}, "carrier", "a carrier name"),
        ({"country": "ESP"}, "country", "two-letter"),
        ({"source_prefix": "+34a"}, "source_prefix", "E.164 prefix"),
        ({"source_prefix": "+"}, "source_prefix", "E.164 prefix"),
        ({"short_code": "997745", "service": " "}, "service", "non-empty"),
        ({"short_code": "997745", "operator_pool": ""}, "operator_pool", "non-empty"),
        ({}, "default", "at least one filter"),
        ({"default": True, "carrier": "movistar"}, "carrier", "cannot have filters"),
        ({"short_code": "997745", "order": True}, "order", "must be an integer"),
    ],
)
def test_mo_route_validation_names_rule_and_field(kwargs: dict[str, object], field: str, reason: str) -> None:
    values: dict[str, object] = {"name": "alias-es", "service": "s", "operator_pool": "p", **kwargs}
    with pytest.raises(InvalidRule) as caught:
        MORoute(**values)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"MO rule 'alias-es', field {field!r}: ")


def test_mo_route_needs_a_name() -> None:
    with pytest.raises(InvalidRule) as caught:
        MORoute(name=" ", service="s", operator_pool="p", short_code="997745")
    assert caught.value.field == "name"


def test_mo_route_from_dict() -> None:
    rule = MORoute.from_dict(
        {
            "name": "alias",
            "service": "alias",
            "operator_pool": "pool-a",
            "callcentre": 1,
            "order": 10,
            "keyword": "alias",
            "short_code": "997745",
            "carrier": None,
            "country": "",
        }
    )
    assert rule == MORoute(
        name="alias",
        service="alias",
        operator_pool="pool-a",
        callcentre=True,
        order=10,
        keyword="ALIAS",
        short_code="997745",
    )
    default = MORoute.from_dict(
        {"name": "default", "service": "general", "operator_pool": "all", "default": True}
    )
    assert default.default and not default.callcentre and default.order == 0


@pytest.mark.parametrize(
    ("data", "subject", "field", "reason"),
    [
        ({"service": "s", "operator_pool": "p", "keyword": "x"}, "MO rule #3", "name", "is required"),
        ({"name": 5, "service": "s", "operator_pool": "p"}, "MO rule #3", "name", "must be a string"),
        ({"name": "n", "operator_pool": "p", "keyword": "x"}, "MO rule 'n'", "service", "is required"),
        (
            {"name": "n", "service": "s", "operator_pool": "p", "keyword": 7},
            "MO rule 'n'",
            "keyword",
            "must be a string",
        ),
        (
            {"name": "n", "service": "s", "operator_pool": "p", "keyword": "x", "order": "1"},
            "MO rule 'n'",
            "order",
            "must be an integer",
        ),
        (
            {"name": "n", "service": "s", "operator_pool": "p", "keyword": "x", "callcentre": "yes"},
            "MO rule 'n'",
            "callcentre",
            "true or false",
        ),
        (
            {"name": "n", "service": "s", "operator_pool": "p", "keyword": "x", "prefix": "+34"},
            "MO rule 'n'",
            "prefix",
            "unknown field",
        ),
        (
            {"name": "n", "service": "s", "operator_pool": "p", "country": "Spain"},
            "MO rule 'n'",
            "country",
            "two-letter",
        ),
    ],
)
def test_mo_route_from_dict_names_the_field(
    data: dict[str, object], subject: str, field: str, reason: str
) -> None:
    with pytest.raises(InvalidRule) as caught:
        MORoute.from_dict(data, position=3)
    assert (caught.value.subject, caught.value.field) == (subject, field)
    assert reason in caught.value.reason


def test_from_dict_refuses_what_is_not_a_mapping() -> None:
    with pytest.raises(InvalidRule, match="expected a mapping"):
        MORoute.from_dict(["name", "x"])  # type: ignore[arg-type]
    with pytest.raises(InvalidRule) as caught:
        MTRoute.from_dict({"binds": ["a"], "carrier": "x"})
    assert caught.value.subject == "MT rule"


# --- MT rules --------------------------------------------------------------------------------------


def mt(destination: str = "+34600111222", **kwargs: str) -> MTContext:
    return MTContext(destination, **kwargs)


@pytest.mark.parametrize(
    ("filters", "ctx", "failed"),
    [
        ({"carrier": "movistar"}, mt(carrier="Movistar"), None),
        ({"carrier": "movistar"}, mt(carrier="orange"), "carrier"),
        ({"carrier": "movistar"}, mt(), "carrier"),
        ({"destination_prefix": "+346"}, mt(), None),
        ({"destination_prefix": "+351"}, mt(), "destination_prefix"),
        ({"country": "ES"}, mt(), None),
        ({"country": "PT"}, mt(), "country"),
        ({"short_code": "997745"}, mt(short_code="997745"), None),
        ({"short_code": "eChat"}, mt(short_code="997745"), "short_code"),
        ({"carrier": "movistar", "country": "PT"}, mt(carrier="movistar"), "country"),
    ],
)
def test_mt_filters_are_anded(filters: dict[str, Any], ctx: MTContext, failed: str | None) -> None:
    rule = MTRoute(name="r", binds=("a",), **filters)
    assert rule.mismatch(ctx) == failed
    assert rule.matches(ctx) is (failed is None)


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"carrier": "x"}, "binds", "at least one bind"),
        ({"binds": ("a", " "), "carrier": "x"}, "binds", "non-empty"),
        ({"binds": ("a", "b", "a"), "carrier": "x"}, "binds", "'a' twice"),
        ({"binds": ("a",), "short_code": "a-very-long-sender"}, "short_code", "1-15 characters"),
        ({"binds": ("a",), "destination_prefix": "34x"}, "destination_prefix", "E.164 prefix"),
        ({"binds": ("a",)}, "default", "at least one filter"),
    ],
)
def test_mt_route_validation(kwargs: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(InvalidRule) as caught:
        MTRoute(name="mt-es", **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_mt_route_from_dict() -> None:
    rule = MTRoute.from_dict(
        {"name": "movistar", "carrier": "Movistar", "binds": ["mv-1", "mv-2"], "order": 5}
    )
    assert rule == MTRoute(name="movistar", carrier="movistar", binds=("mv-1", "mv-2"), order=5)
    single = MTRoute.from_dict({"name": "pt", "country": "pt", "binds": "pt-1"})
    assert single.binds == ("pt-1",) and single.country == "PT"
    follow = MTRoute.from_dict({"name": "default", "default": True, "carrier_binds": True})
    assert follow.carrier_binds and follow.binds == ()
    with pytest.raises(InvalidRule) as caught:
        MTRoute.from_dict({"name": "x", "carrier": "y", "binds": [1]})
    assert caught.value.field == "binds" and "item 0 must be a non-empty string" in caught.value.reason
    with pytest.raises(InvalidRule, match="must be a list of strings, got int"):
        MTRoute.from_dict({"name": "x", "carrier": "y", "binds": 7})
