"""MO normalisation: E.164, short code, reserved keywords, the stored text, content keys, parts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gatewayd.mo_message import (
    BindInfo,
    InboundMO,
    UnusableMO,
    build_inbound,
    build_part,
    dedup_key,
    inbound_mo,
    keyword_set,
    part_set_key,
    short_code_of,
    stored_text,
)
from routing.keywords import KeywordKind
from smpp.concat import ConcatInfo, ConcatMode
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
    assert mo.msisdn == "34600111222"  # E.164 digits, as the daemon and the store hold numbers
    assert mo.country == "ES" and mo.carrier == "movistar" and mo.bind == "movistar-1"
    assert mo.text == "hola" and not mo.is_reserved


def test_international_number_keeps_its_country_code() -> None:
    mo = build_inbound(BIND, deliver("447700900123", b"hi", ton=TON.INTERNATIONAL), b"hi", 0, KEYWORDS, AT)
    assert mo.msisdn == "447700900123"


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


def assembled(payload: bytes, *, received: int, total: int = 3) -> InboundMO:
    return inbound_mo(
        "movistar",
        "movistar-1",
        "ES",
        "34600111222",
        "997745",
        payload,
        0,
        KEYWORDS,
        AT,
        reference=7,
        parts_total=total,
        parts_received=received,
    )


def test_an_incomplete_long_mo_never_counts_as_a_command() -> None:
    mo = assembled(b"baja", received=2)
    assert mo.incomplete and mo.keyword is None


def test_ucs2_text_is_decoded() -> None:
    body = "¿Qué tal? 😀".encode("utf-16-be")
    mo = build_inbound(
        BIND, deliver("600111222", body, coding=DataCoding.UCS2), body, DataCoding.UCS2, KEYWORDS, AT
    )
    assert mo.text == "¿Qué tal? 😀"


def test_dedup_key_is_stable_and_tells_messages_apart() -> None:
    first = dedup_key("movistar", "34600111222", "997745", 0, b"hola")
    assert first == dedup_key("movistar", "34600111222", "997745", 0, b"hola")
    assert first != dedup_key("movistar", "34600111222", "997745", 0, b"hola!")
    assert first != dedup_key("vodafone", "34600111222", "997745", 0, b"hola")
    assert first != dedup_key("movistar", "34600111222", "997745", 0, b"hola", reference=3)


def test_dedup_key_format_is_fixed_so_redeliveries_across_a_restart_still_match() -> None:
    # blake2b-128 over each field then 0x1f (the number as E.164, '+' and digits, as it was keyed when
    # the daemon held it so), then the payload: keys already stored must keep matching
    key = dedup_key("movistar", "34600111222", "997745", 0, b"hola", 7)
    assert key == "1ce04754b56bc40651e3dec7f3f9ab75"
    assert part_set_key("movistar", "34600111222", "997745", 7, 3) == "2dd985234829d15e9218cda8dc0b9e66"


def test_the_same_content_has_the_same_key_whenever_it_comes() -> None:
    first = build_inbound(BIND, deliver("600111222", b"hola"), b"hola", 0, KEYWORDS, AT)
    later = build_inbound(
        BIND, deliver("600111222", b"hola"), b"hola", 0, KEYWORDS, datetime(2026, 11, 28, tzinfo=UTC)
    )
    # no time in the key: whether it is a redelivery is the store's question (was its answer confirmed?)
    assert first.dedup_key == later.dedup_key and len(first.dedup_key) == 32


@pytest.mark.parametrize(
    ("payload", "coding", "text"),
    [
        ("hola\0mundo".encode("utf-16-be"), DataCoding.UCS2, "hola\ufffdmundo"),
        (b"caf\xe9\x00", DataCoding.LATIN1, "café\ufffd"),
        (b"ring\x07bell\x1b", DataCoding.IA5, "ring\ufffdbell\ufffd"),
        (b"\x00h\x00o\x00", DataCoding.UCS2, "ho\ufffd"),
        (b"\xd8\x3d\x00h", DataCoding.UCS2, "\ufffdh"),
        (b"\x00h\xdc\x00", DataCoding.UCS2, "h\ufffd"),
        (b"x\x00y", 0x05, "x\ufffdy"),
        (b"\x00\x01\xff", DataCoding.BINARY, "\ufffd\ufffdÿ"),
    ],
)
def test_what_text_cannot_say_becomes_u_fffd_and_the_octets_are_kept(
    payload: bytes, coding: int, text: str
) -> None:
    assert stored_text(payload, coding) == (text, payload)


@pytest.mark.parametrize(
    ("payload", "coding", "text"),
    [
        (b"hola\nque tal\r\n\tadios", DataCoding.IA5, "hola\nque tal\r\n\tadios"),
        ("¿Qué tal? 😀".encode("utf-16-be"), DataCoding.UCS2, "¿Qué tal? 😀"),
        (b"caf\xe9", DataCoding.LATIN1, "café"),
    ],
)
def test_plain_text_is_kept_as_it_is_without_octets(payload: bytes, coding: int, text: str) -> None:
    assert stored_text(payload, coding) == (text, None)


def test_nul_in_an_mo_is_stored_as_u_fffd_with_its_octets() -> None:
    payload = "hola\0".encode("utf-16-be")
    mo = build_inbound(BIND, deliver("600111222", payload, coding=8), payload, 8, KEYWORDS, AT)
    assert mo.text == "hola\ufffd" and mo.raw == payload


def test_a_destination_too_long_for_a_short_code_is_refused() -> None:
    with pytest.raises(UnusableMO) as refused:
        build_inbound(BIND, deliver("600111222", b"x", destination="1" * 21), b"x", 0, KEYWORDS, AT)
    assert refused.value.status == CommandStatus.ESME_RINVDSTADR


def test_a_refused_source_does_not_name_the_number() -> None:
    with pytest.raises(UnusableMO) as refused:
        build_inbound(BIND, deliver("60011122x", b"x"), b"x", 0, KEYWORDS, AT)
    assert "60011122" not in str(refused.value) and "TON 0" in str(refused.value)


def test_parts_of_one_message_share_its_set_and_differ_in_content() -> None:
    one = build_part(BIND, deliver("600111222", b"a"), ConcatInfo(7, 3, 1, ConcatMode.UDH8), b"first", AT)
    two = build_part(BIND, deliver("600111222", b"a"), ConcatInfo(7, 3, 2, ConcatMode.SAR), b"second", AT)
    other = build_part(BIND, deliver("600111222", b"a"), ConcatInfo(8, 3, 1, ConcatMode.UDH8), b"first", AT)
    assert one.set_key == two.set_key != other.set_key
    assert len({one.dedup_key, two.dedup_key, other.dedup_key}) == 3
    assert (one.msisdn, one.short_code, one.part_number, one.total) == ("34600111222", "997745", 1, 3)


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
    mo = assembled(b"baja", received=2)
    assert mo.keyword is None and mo.service_keyword == "BAJA"
