"""MO normalisation: E.164, short code, reserved keywords, duplicate keys, service routing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gatewayd.mo import DEDUP_WINDOW, _window_keys
from gatewayd.mo_message import BindInfo, UnusableMO, build_inbound, dedup_key, keyword_set, short_code_of
from routing.keywords import KeywordKind
from smpp.constants import TON, CommandStatus, DataCoding
from smpp.pdu import DeliverSM

BIND = BindInfo(carrier="movistar", bind="movistar-1", country="ES", short_codes=("997745", "7745"))
KEYWORDS = keyword_set(("BAJA", "STOP"), ("ALTA",), ("AYUDA",))
AT = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)


def deliver(
    source: str,
    text: bytes,
    *,
    ton: int = TON.UNKNOWN,
    destination: str = "997745",
    coding: int = DataCoding.DEFAULT,
) -> DeliverSM:
    return DeliverSM(
        source_addr=source,
        source_addr_ton=ton,
        destination_addr=destination,
        data_coding=coding,
        short_message=text,
    )


def test_national_number_becomes_e164_with_the_carrier_country() -> None:
    mo = build_inbound(BIND, deliver("600111222", b"hola"), b"hola", 0, KEYWORDS, AT)
    assert mo.msisdn == "+34600111222"
    assert mo.country == "ES" and mo.carrier == "movistar" and mo.bind == "movistar-1"
    assert mo.text == "hola" and not mo.is_reserved


def test_international_number_keeps_its_country_code() -> None:
    mo = build_inbound(BIND, deliver("447700900123", b"hi", ton=TON.INTERNATIONAL), b"hi", 0, KEYWORDS, AT)
    assert mo.msisdn == "+447700900123"


def test_unreadable_source_is_refused_with_invalid_source_status() -> None:
    with pytest.raises(UnusableMO) as refused:
        build_inbound(BIND, deliver("MOVISTAR", b"x", ton=TON.ALPHANUMERIC), b"x", 0, KEYWORDS, AT)
    assert refused.value.status == CommandStatus.ESME_RINVSRCADR


def test_short_code_with_country_prefix_is_recognised() -> None:
    assert short_code_of("34997745", BIND) == "997745"
    assert short_code_of(" 997745 ", BIND) == "997745"
    assert short_code_of("7745", BIND) == "7745"
    assert short_code_of("997746", BIND) == "997746"
    assert short_code_of("+997745", BIND) == "997745"
    assert short_code_of("5555", BIND) == "5555"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("baja", KeywordKind.OPT_OUT),
        ("STOP", KeywordKind.OPT_OUT),
        ("Alta", KeywordKind.OPT_IN),
        ("ayuda", KeywordKind.HELP),
    ],
)
def test_reserved_keywords_are_detected(text: str, kind: KeywordKind) -> None:
    mo = build_inbound(BIND, deliver("600111222", text.encode()), text.encode(), 0, KEYWORDS, AT)
    assert mo.keyword is not None and mo.keyword.kind is kind
    assert mo.is_reserved
    assert mo.opt_out is (kind is KeywordKind.OPT_OUT)
    assert mo.opt_in is (kind is KeywordKind.OPT_IN)


def test_a_keyword_inside_a_chat_is_not_a_command() -> None:
    text = b"no me des de baja por favor"
    assert build_inbound(BIND, deliver("600111222", text), text, 0, KEYWORDS, AT).keyword is None


def test_an_incomplete_long_mo_never_counts_as_a_command() -> None:
    mo = build_inbound(
        BIND,
        deliver("600111222", b"baja"),
        b"baja",
        0,
        KEYWORDS,
        AT,
        reference=7,
        parts_total=3,
        parts_received=2,
    )
    assert mo.incomplete and mo.keyword is None


def test_ucs2_text_is_decoded() -> None:
    body = "¿Qué tal? 😀".encode("utf-16-be")
    mo = build_inbound(
        BIND, deliver("600111222", body, coding=DataCoding.UCS2), body, DataCoding.UCS2, KEYWORDS, AT
    )
    assert mo.text == "¿Qué tal? 😀"


def test_dedup_key_is_stable_and_tells_messages_apart() -> None:
    first = dedup_key("movistar", "+34600111222", "997745", 0, b"hola")
    assert first == dedup_key("movistar", "+34600111222", "997745", 0, b"hola")
    assert first != dedup_key("movistar", "+34600111222", "997745", 0, b"hola!")
    assert first != dedup_key("vodafone", "+34600111222", "997745", 0, b"hola")
    assert first != dedup_key("movistar", "+34600111222", "997745", 0, b"hola", reference=3)


def test_dedup_key_format_is_fixed_so_redeliveries_across_a_restart_still_match() -> None:
    # blake2b-128 over each field then 0x1f, then the payload: keys already stored must keep matching
    key = dedup_key("movistar", "+34600111222", "997745", 0, b"hola", 7)
    assert key == "1ce04754b56bc40651e3dec7f3f9ab75"


def test_window_keys_cover_the_previous_bucket() -> None:
    mo = build_inbound(BIND, deliver("600111222", b"hola"), b"hola", 0, KEYWORDS, AT)
    current, previous = _window_keys(mo)
    later = build_inbound(
        BIND,
        deliver("600111222", b"hola"),
        b"hola",
        0,
        KEYWORDS,
        datetime.fromtimestamp(AT.timestamp() + DEDUP_WINDOW, UTC),
    )
    # a redelivery one window later finds the first delivery under its "previous" key
    assert _window_keys(later)[1] == current
    assert previous != current and len(current) <= 64


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("Álias hola", "ALIAS"),
        ("  baja ", "BAJA"),
        ("", None),
        ("¡! hola", None),
        ("baja de todo esto", "BAJA"),
        ("Stop.", "STOP"),
        ("ﬁn", "FIN"),
        ("Ayuda2 x", "AYUDA2"),
    ],
)
def test_the_first_word_is_kept_for_routing(text: str, word: str | None) -> None:
    payload = text.encode("utf-16-be")
    mo = build_inbound(
        BIND, deliver("600111222", payload, coding=DataCoding.UCS2), payload, DataCoding.UCS2, KEYWORDS, AT
    )
    assert mo.service_keyword == word


def test_an_incomplete_mo_keeps_its_first_word_for_routing() -> None:
    mo = build_inbound(
        BIND,
        deliver("600111222", b"baja"),
        b"baja",
        0,
        KEYWORDS,
        AT,
        reference=7,
        parts_total=3,
        parts_received=2,
    )
    assert mo.keyword is None and mo.service_keyword == "BAJA"
