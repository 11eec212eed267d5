"""The outbox's decisions, no database: who may receive an MT, which way it leaves, what its variables
are, which texts it takes; and that nothing but the outbox stores MTs."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from gatewayd.config import BindConfig, CarrierConfig, ServiceConfig
from gatewayd.outbox import (
    AnsweredMO,
    MTRequest,
    Outbox,
    OutboxError,
    OutboxSettings,
    Route,
    TextRefused,
    check_text,
)
from gatewayd.store.enums import MTKind
from gatewayd.store.errors import RefusalReason
from gatewayd.store.mt.recipients import Recipient, refusal

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 1, 15, 23, 30, 5, tzinfo=UTC)


def carrier(name: str, country: str, *short_codes: str) -> CarrierConfig:
    bind = BindConfig(
        name=f"{name}-1", host="127.0.0.1", port=2775, system_id="echat", password=SecretStr("pw")
    )
    return CarrierConfig(name=name, country=country, short_codes=short_codes, binds=(bind,))


SETTINGS = OutboxSettings(
    carriers=(carrier("movistar", "ES", "997745", "795500"), carrier("telcel", "MX", "4040")),
    services=(
        ServiceConfig(name="tarot", short_code="997745", keyword="TAROT", timezone="America/Mexico_City"),
        ServiceConfig(name="chat", short_code="997745", timezone="Atlantic/Canary"),
    ),
    timezone="Europe/Madrid",
)
OUTBOX = Outbox(SETTINGS)


def subscriber(carrier: str | None = "movistar", country: str | None = "ES") -> Recipient:
    return Recipient(7, "34600111222", carrier, country, opted_out=False, banned=False, ban_reason=None)


def mo(
    carrier: str = "movistar", short_code: str = "997745", service: str | None = "chat", text: str = "hola"
) -> AnsweredMO:
    return AnsweredMO(
        id=11,
        carrier=carrier,
        bind_name=f"{carrier}-2",
        short_code=short_code,
        text=text,
        received_at=datetime(2026, 1, 15, 23, 59, 58, tzinfo=UTC),
        country="ES",
        service=service,
    )


# --- the recipient rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [kind for kind in MTKind if kind is not MTKind.BAN_NOTICE])
def test_a_ban_stops_every_mt_but_its_notice_and_says_why(kind: MTKind) -> None:
    refused = refusal(kind, opted_out=False, banned=True, ban_reason="abuse")
    assert refused is not None and refused.reason is RefusalReason.BANNED
    assert refused.detail == "subscriber banned: abuse"
    assert refusal(kind, opted_out=True, banned=True) is not None


@pytest.mark.parametrize("kind", list(MTKind))
def test_an_opt_out_stops_every_mt_but_the_gateways_own(kind: MTKind) -> None:
    refused = refusal(kind, opted_out=True, banned=False)
    if kind is MTKind.SYSTEM:  # the answer to BAJA itself, ALTA, AYUDA
        assert refused is None
    else:
        assert refused is not None and refused.reason is RefusalReason.OPTED_OUT
    assert refusal(kind, opted_out=False, banned=False) is None


def test_the_ban_notice_reaches_a_banned_client() -> None:
    """``[[services]] banned_reply``: the one MT a ban lets through (the pipeline sends it at most
    once a day per client)."""
    assert refusal(MTKind.BAN_NOTICE, opted_out=False, banned=True, ban_reason="abuse") is None


def test_a_client_who_sent_baja_gets_no_ban_notice() -> None:
    """The notice is charged like any MT: an opt-out stops it too."""
    refused = refusal(MTKind.BAN_NOTICE, opted_out=True, banned=True)
    assert refused is not None and refused.reason is RefusalReason.OPTED_OUT


# --- the way out ----------------------------------------------------------------------------------


def test_a_reply_leaves_the_way_its_mo_came() -> None:
    request = MTRequest("34600111222", "x", kind=MTKind.REPLY, source="997745", mo=mo())
    assert OUTBOX.route(request, "34600111222", subscriber(), None) == Route(
        "movistar", "997745", "movistar-2"
    )


def test_another_short_code_than_the_mos_leaves_by_any_bind() -> None:
    request = MTRequest("34600111222", "x", source="795500", mo=mo())
    assert OUTBOX.route(request, "34600111222", subscriber(), None) == Route("movistar", "795500", None)


def test_a_push_leaves_the_way_the_subscriber_last_wrote() -> None:
    latest = mo(carrier="vodafone", short_code="795500")
    request = MTRequest("34600111222", "x")
    assert OUTBOX.route(request, "34600111222", subscriber(), latest) == Route(
        "vodafone", "795500", "vodafone-2"
    )


def test_without_an_mo_the_known_carrier_then_the_countrys_with_its_first_short_code() -> None:
    request = MTRequest("34600111222", "x")
    assert OUTBOX.route(request, "34600111222", subscriber(), None) == Route("movistar", "997745", None)
    assert OUTBOX.route(request, "5215512345678", None, None) == Route("telcel", "4040", None)
    named = MTRequest("34600111222", "x", carrier="movistar", source="795500")
    assert OUTBOX.route(named, "34600111222", None, mo(carrier="vodafone")) == Route(
        "movistar", "795500", None
    )


def test_no_way_out_is_an_error_that_says_what_to_give() -> None:
    with pytest.raises(OutboxError, match="no carrier serves"):
        OUTBOX.route(MTRequest("447700900123", "x"), "447700900123", None, None)
    with pytest.raises(OutboxError, match="unknown carrier 'orange'"):
        OUTBOX.route(MTRequest("34600111222", "x", carrier="orange"), "34600111222", None, None)
    with pytest.raises(OutboxError, match="short code 5555 is not one of carrier movistar's"):
        OUTBOX.route(MTRequest("34600111222", "x", source="5555"), "34600111222", subscriber(), None)
    # Answering an MO the way it came, its short code is the source even if the carrier no longer lists it.
    old_code = mo(short_code="5555")
    answered = OUTBOX.route(
        MTRequest("34600111222", "x", source="5555", mo=old_code), "34600111222", None, None
    )
    assert answered.source == "5555"
    bare = Outbox(OutboxSettings())
    assert bare.route(MTRequest("34600111222", "x", carrier="any", source="5555"), "34600111222", None, None)
    with pytest.raises(OutboxError, match="has no short code"):
        bare.route(MTRequest("34600111222", "x"), "34600111222", subscriber(), None)


def test_numbers_are_read_as_the_first_carriers_country_would() -> None:
    assert OUTBOX.destination(MTRequest("+34 600 111 222", "x")) == "34600111222"
    assert OUTBOX.destination(MTRequest("600111222", "x")) == "34600111222"
    with pytest.raises(OutboxError):
        OUTBOX.destination(MTRequest("not a number", "x"))


# --- the variables --------------------------------------------------------------------------------


def test_a_replys_variables_are_its_mos_in_the_mos_services_zone() -> None:
    request = MTRequest("34600111222", "x", kind=MTKind.REPLY, mo=mo(service="tarot", text="TAROT amor"))
    route = Route("movistar", "997745", None)
    assert OUTBOX.variables(request, "34600111222", subscriber(), route, NOW) == {
        "mensaje": "TAROT amor",
        "host": "997745",
        "operador": "movistar",
        "telefono": "34600111222",
        "hora": "17:59:58",  # 23:59:58 UTC in Mexico City
        "fecha": "15/01/2026",
        "pais": "ES",
    }


def test_the_short_codes_service_gives_the_zone_when_the_mo_names_none() -> None:
    assert SETTINGS.zone(None, "997745") == ZoneInfo("America/Mexico_City")  # the first on it
    assert SETTINGS.zone("chat", "997745") == ZoneInfo("Atlantic/Canary")
    assert SETTINGS.zone(None, "4040") == ZoneInfo("Europe/Madrid")  # no service: the default


def test_a_push_has_no_message_and_the_time_of_queueing() -> None:
    request = MTRequest("5215512345678", "x")
    route = Route("telcel", "4040", None)
    variables = OUTBOX.variables(request, "5215512345678", None, route, NOW)
    assert variables == {
        "mensaje": "",
        "host": "4040",
        "operador": "telcel",
        "telefono": "5215512345678",
        "hora": "00:30:05",  # 23:30:05 UTC in Madrid: the next day
        "fecha": "16/01/2026",
        "pais": "MX",  # from the number when the subscriber is unknown
    }


# --- the text -------------------------------------------------------------------------------------


def test_texts_that_cannot_be_sent_are_refused_with_the_reason() -> None:
    assert check_text("hola").segments == 1
    # what a phone shows as nothing: white space, a zero-width space, a byte-order mark, a direction
    # mark, a tag character
    invisible = (" \n", "\u200b", "\ufeff", " \u200e\r\n", "\U000e0001", "\x00\x1b")
    for text, reason in [*((text, "empty") for text in invisible), ("x" * 1531, "too_long")]:
        with pytest.raises(TextRefused) as refused:
            check_text(text)
        assert refused.value.reason == reason
    assert check_text("x" * 1530).segments == 10
    assert check_text("\u200bhola\n").segments == 1  # something shows


# --- one way in -----------------------------------------------------------------------------------


def test_nothing_but_the_outbox_stores_mts() -> None:
    """The store's ``queue_mts`` is called by the outbox alone among the packages (tests and benches
    load the store directly on purpose)."""
    callers: list[str] = []
    for package in ("gatewayd", "panel", "plugins", "echat", "routing", "smpp", "simulator", "settingsfile"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {
                alias.name
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)
                for alias in node.names
            }
            attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
            if {"queue_mts", "queue_mt"} & (names | attributes):
                callers.append(str(path.relative_to(ROOT)))
    assert callers == ["gatewayd/outbox.py"]
