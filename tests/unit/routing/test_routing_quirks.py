"""Carrier quirks: validation, presets, submit_sm rewriting and incoming address normalisation."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing import quirks as quirks_module
from routing.errors import InvalidAddress, InvalidNumber, InvalidQuirks, RoutingError
from routing.numbers import NumberStyle, format_for_carrier, normalise_msisdn
from routing.quirks import (
    PRESETS,
    CarrierQuirks,
    MTHeader,
    ReceiptIdForm,
    SourceKind,
    apply_mt,
    classify_source,
    mt_header,
    normalise_mo_short_code,
    normalise_mo_source,
    outgoing_source,
    preset,
    receipt_id_as_submitted,
)
from smpp.constants import NPI, TON
from smpp.pdu import SubmitSM
from smpp.tlv import Tag, TLVs

PLAIN = CarrierQuirks(name="plain")


def submit(source: str = "997745", destination: str = "+34600111222", **kwargs: object) -> SubmitSM:
    return SubmitSM(source_addr=source, destination_addr=destination, short_message=b"hola", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("997745", SourceKind.SHORT_CODE),
        (" 25521 ", SourceKind.SHORT_CODE),
        ("12345678", SourceKind.SHORT_CODE),
        ("123456789", SourceKind.NUMBER),
        ("+34600111222", SourceKind.NUMBER),
        ("+997", SourceKind.NUMBER),
        ("+34 600 111 222", SourceKind.NUMBER),
        ("eChat", SourceKind.ALPHANUMERIC),
        ("Info 24", SourceKind.ALPHANUMERIC),
        ("٩٩٧٧٤٥", SourceKind.ALPHANUMERIC),
    ],
)
def test_classify_source(address: str, kind: SourceKind) -> None:
    assert classify_source(address) is kind


def test_classify_source_refuses_empty() -> None:
    with pytest.raises(InvalidAddress, match="cannot be empty"):
        classify_source("  ")


def test_outgoing_source_ton_npi() -> None:
    assert outgoing_source(PLAIN, "997745") == ("997745", TON.NETWORK_SPECIFIC, NPI.UNKNOWN)
    unknown = CarrierQuirks(name="u", short_code_ton=TON.UNKNOWN, short_code_npi=NPI.ISDN)
    assert outgoing_source(unknown, "997745") == ("997745", TON.UNKNOWN, NPI.ISDN)
    assert outgoing_source(PLAIN, "+34 600 111 222") == ("34600111222", TON.INTERNATIONAL, NPI.ISDN)
    assert outgoing_source(PLAIN, "34600111222") == ("34600111222", TON.INTERNATIONAL, NPI.ISDN)
    assert outgoing_source(PLAIN, "eChat") == ("eChat", TON.ALPHANUMERIC, NPI.UNKNOWN)
    with pytest.raises(InvalidAddress, match="at most 11"):
        outgoing_source(PLAIN, "eChatGateway1")
    with pytest.raises(InvalidAddress, match="printable ASCII"):
        outgoing_source(PLAIN, "eChat\u00e9")
    with pytest.raises(InvalidNumber):
        outgoing_source(PLAIN, "+34 100")


def test_apply_mt_with_defaults_only_fixes_addresses() -> None:
    pdu = submit(registered_delivery=0x11, service_type="XYZ")
    out = apply_mt(PLAIN, pdu)
    assert (out.source_addr, out.source_addr_ton, out.source_addr_npi) == ("997745", 3, 0)
    assert (out.destination_addr, out.dest_addr_ton, out.dest_addr_npi) == ("34600111222", 1, 1)
    assert out.registered_delivery == 0x11
    assert out.service_type == "XYZ"
    assert out.short_message == b"hola" and out.tlvs == pdu.tlvs
    assert pdu.destination_addr == "+34600111222"  # the input is untouched


def test_apply_mt_with_every_quirk() -> None:
    quirks = CarrierQuirks(
        name="all",
        service_type="CMT",
        short_code_ton=TON.UNKNOWN,
        short_code_npi=NPI.ISDN,
        destination_style=NumberStyle.NATIONAL,
        max_registered_delivery=1,
        extra_tlvs=TLVs([(0x1401, b"\x0a\x0b"), (0x1402, b"")]),
    )
    pdu = submit(
        destination="34600111222",
        registered_delivery=0x11,
        tlvs=TLVs([(Tag.USER_MESSAGE_REFERENCE, 7), (0x1401, b"\xff")]),
    )
    out = apply_mt(quirks, pdu)
    assert out.service_type == "CMT"
    assert (out.source_addr_ton, out.source_addr_npi) == (TON.UNKNOWN, NPI.ISDN)
    assert (out.destination_addr, out.dest_addr_ton) == ("600111222", TON.NATIONAL)
    assert out.dest_addr_npi == NPI.ISDN
    assert out.registered_delivery == 1
    assert list(out.tlvs) == [(Tag.USER_MESSAGE_REFERENCE, 7), (0x1401, b"\x0a\x0b"), (0x1402, b"")]
    assert apply_mt(quirks, submit(registered_delivery=0)).registered_delivery == 0


def test_apply_mt_refuses_a_destination_that_is_not_a_number() -> None:
    with pytest.raises(InvalidNumber):
        apply_mt(PLAIN, submit(destination="hello"))


@pytest.mark.parametrize("style", list(NumberStyle))
def test_destination_ton_follows_style_unless_overridden(style: NumberStyle) -> None:
    quirks = CarrierQuirks(name="q", destination_style=style)
    expected_ton = TON.NATIONAL if style is NumberStyle.NATIONAL else TON.INTERNATIONAL
    assert quirks.destination_ton_npi == (expected_ton, NPI.ISDN)
    forced = CarrierQuirks(name="q", destination_style=style, destination_ton=0, destination_npi=0)
    assert forced.destination_ton_npi == (0, 0)


def test_presets_transform_differently() -> None:
    pdu = submit(registered_delivery=0x11)
    movistar, vodafone, orange = (apply_mt(preset(name), pdu) for name in ("movistar", "vodafone", "orange"))
    assert (movistar.source_addr_ton, movistar.destination_addr, movistar.registered_delivery) == (
        TON.NETWORK_SPECIFIC,
        "34600111222",
        1,
    )
    assert (vodafone.service_type, vodafone.source_addr_ton, vodafone.source_addr_npi) == ("CMT", 0, 1)
    assert (orange.destination_addr, orange.dest_addr_ton) == ("600111222", TON.UNKNOWN)
    assert orange.source_addr_npi == NPI.PRIVATE
    assert orange.tlvs.get(0x1400) == b"\x01"
    assert preset(" Movistar ") is PRESETS["movistar"]
    with pytest.raises(KeyError, match="known: movistar, orange, vodafone"):
        preset("telefonica")


def test_normalise_mo_source() -> None:
    assert normalise_mo_source(PLAIN, "600111222", TON.NATIONAL, NPI.ISDN, "ES") == "+34600111222"
    assert normalise_mo_source(PLAIN, "+34600111222", TON.UNKNOWN, NPI.UNKNOWN, "ES") == "+34600111222"
    # an Italian mobile sent with TON 0 but with its country code: ambiguous unless the carrier says so
    assert normalise_mo_source(PLAIN, "3931234567", TON.UNKNOWN, NPI.ISDN, "IT") == "+393931234567"
    international = CarrierQuirks(name="intl", mo_source_international=True)
    assert normalise_mo_source(international, "393312345678", TON.UNKNOWN, NPI.ISDN, "IT") == "+393312345678"
    assert normalise_mo_source(international, "3931234567", TON.NATIONAL, NPI.ISDN, "IT") == "+393931234567"
    with pytest.raises(InvalidNumber, match="alphanumeric"):
        normalise_mo_source(PLAIN, "Promo", TON.ALPHANUMERIC, NPI.UNKNOWN, "ES")


def test_normalise_mo_short_code() -> None:
    assert normalise_mo_short_code(PLAIN, " +997745 ") == "997745"
    assert normalise_mo_short_code(preset("orange"), "34997745") == "997745"
    assert normalise_mo_short_code(preset("orange"), "997745") == "997745"
    assert normalise_mo_short_code(preset("orange"), "34") == "34"
    with pytest.raises(InvalidAddress, match="cannot be empty"):
        normalise_mo_short_code(PLAIN, "+")


# --- construction and from_dict -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": " "}, "name"),
        ({"service_type": "TOOLONG"}, "service_type"),
        ({"service_type": "C\u00d1T"}, "service_type"),
        ({"short_code_ton": 9}, "short_code_ton"),
        ({"short_code_npi": 2}, "short_code_npi"),
        ({"destination_ton": True}, "destination_ton"),
        ({"short_code_max_digits": 0}, "short_code_max_digits"),
        ({"max_registered_delivery": 0x20}, "max_registered_delivery"),
        ({"extra_tlvs": TLVs([(Tag.USER_MESSAGE_REFERENCE, b"\x00\x01")])}, "extra_tlvs"),
        ({"extra_tlvs": TLVs([(0x1400, 1)])}, "extra_tlvs"),
        ({"mo_short_code_prefix": "+34"}, "mo_short_code_prefix"),
    ],
)
def test_constructor_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"name": "movistar-es", **kwargs}
    with pytest.raises(InvalidQuirks) as caught:
        CarrierQuirks(**values)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_from_dict_reads_every_field() -> None:
    quirks = CarrierQuirks.from_dict(
        {
            "service_type": "WAP",
            "short_code_ton": "network_specific",
            "short_code_npi": 9,
            "short_code_max_digits": 6,
            "destination_style": "National",
            "destination_ton": 0,
            "destination_npi": "isdn",
            "max_registered_delivery": 1,
            "extra_tlvs": {"0x1401": "0a 0b", 0x1402: ""},
            "mo_source_international": True,
            "mo_short_code_prefix": "34",
            "receipt_message_id": "Hex",
        },
        name="acme",
    )
    assert quirks == CarrierQuirks(
        name="acme",
        service_type="WAP",
        short_code_ton=TON.NETWORK_SPECIFIC,
        short_code_npi=NPI.PRIVATE,
        short_code_max_digits=6,
        destination_style=NumberStyle.NATIONAL,
        destination_ton=0,
        destination_npi=1,
        max_registered_delivery=1,
        extra_tlvs=TLVs([(0x1401, b"\x0a\x0b"), (0x1402, b"")]),
        mo_source_international=True,
        mo_short_code_prefix="34",
        receipt_message_id=ReceiptIdForm.HEX,
    )


@pytest.mark.parametrize(
    ("form", "in_receipt", "as_submitted"),
    [
        (ReceiptIdForm.AS_GIVEN, "1A2B", "1A2B"),
        (ReceiptIdForm.HEX, "1A2B", "6699"),  # submit_sm_resp gave 6699, the receipt 0x1A2B
        (ReceiptIdForm.HEX, "001a2b", "6699"),
        (ReceiptIdForm.HEX, "9502F9001", "40000000001"),
        (ReceiptIdForm.DECIMAL, "6699", "1a2b"),  # submit_sm_resp gave 1a2b, the receipt 6699
        (ReceiptIdForm.DECIMAL, "0006699", "1a2b"),
        # not a number in the form announced: left as it is
        (ReceiptIdForm.HEX, "not-hex", "not-hex"),
        (ReceiptIdForm.HEX, "xyz", "xyz"),
        (ReceiptIdForm.DECIMAL, "1a2b", "1a2b"),
        (ReceiptIdForm.DECIMAL, "\u0663\u0664", "\u0663\u0664"),  # Arabic-Indic digits are no decimal id
    ],
)
def test_receipt_id_as_submitted(form: ReceiptIdForm, in_receipt: str, as_submitted: str) -> None:
    quirks = CarrierQuirks(name="x", receipt_message_id=form)
    assert receipt_id_as_submitted(quirks, in_receipt) == as_submitted


def test_from_dict_starts_from_a_preset() -> None:
    quirks = CarrierQuirks.from_dict({"name": "orange-es", "base": "orange", "service_type": ""})
    assert quirks.name == "orange-es"
    assert quirks.service_type == ""  # explicitly emptied
    assert quirks.extra_tlvs == PRESETS["orange"].extra_tlvs
    assert quirks.destination_style is NumberStyle.NATIONAL
    assert CarrierQuirks.from_dict({"name": "x"}) == CarrierQuirks(name="x")


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({}, "name", "is required"),
        ({"name": "x", "base": "telefonica"}, "base", "unknown preset 'telefonica'"),
        ({"name": "x", "sevice_type": "CMT"}, "sevice_type", "unknown field"),
        ({"name": "x", "short_code_ton": "short"}, "short_code_ton", "unknown name 'short'"),
        ({"name": "x", "short_code_ton": 1.5}, "short_code_ton", "must be an integer"),
        ({"name": "x", "short_code_ton": 8}, "short_code_ton", "must be one of 0 (unknown)"),
        ({"name": "x", "destination_style": "e.164"}, "destination_style", "must be one of e164"),
        ({"name": "x", "max_registered_delivery": 99}, "max_registered_delivery", "must be <= 31"),
        ({"name": "x", "short_code_max_digits": 16}, "short_code_max_digits", "must be <= 15"),
        ({"name": "x", "service_type": "CMTCMT"}, "service_type", "at most 5"),
        ({"name": "x", "extra_tlvs": ["1401", "0a"]}, "extra_tlvs", "must be a table"),
        ({"name": "x", "extra_tlvs": {"zz": "0a"}}, "extra_tlvs", "tag 'zz' is not a hex number"),
        ({"name": "x", "extra_tlvs": {"0x0204": "0001"}}, "extra_tlvs", "0x0204 is not a vendor tag"),
        ({"name": "x", "extra_tlvs": {"0x1401": 10}}, "extra_tlvs", "must be a hex string"),
        ({"name": "x", "extra_tlvs": {"0x1401": "0g"}}, "extra_tlvs", "is not hex"),
        ({"name": "x", "extra_tlvs": {"0x1401": "00" * 0x10000}}, "extra_tlvs", "longer than 65535"),
        ({"name": "x", "mo_source_international": "yes"}, "mo_source_international", "true or false"),
        ({"name": "x", "mo_short_code_prefix": "+34"}, "mo_short_code_prefix", "must be digits"),
        ({"name": "x", "receipt_message_id": "octal"}, "receipt_message_id", "must be one of as_given"),
    ],
)
def test_from_dict_errors_name_the_field(data: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(InvalidQuirks) as caught:
        CarrierQuirks.from_dict(data)
    assert caught.value.field == field
    assert reason in caught.value.reason
    if "name" in data:
        assert caught.value.subject == "carrier quirks 'x'"


@given(
    st.sampled_from(sorted(PRESETS)),
    st.sampled_from(["997745", "+34600111222", "eChat", "34600111222"]),
    st.sampled_from(["+34600111222", "34600111222", "+33612345678"]),
    st.integers(0, 0x1F),
)
def test_apply_mt_is_stable_for_international_carriers(
    name: str, source: str, destination: str, registered_delivery: int
) -> None:
    quirks = PRESETS[name]
    once = apply_mt(quirks, submit(source, destination, registered_delivery=registered_delivery))
    assert once.source_addr_ton in (quirks.short_code_ton, TON.INTERNATIONAL, TON.ALPHANUMERIC)
    assert not once.destination_addr.startswith("+")
    if quirks.max_registered_delivery is not None:
        assert once.registered_delivery <= quirks.max_registered_delivery
    if quirks.destination_style is not NumberStyle.NATIONAL:
        assert apply_mt(quirks, once) == once


# --- the MT hot path: mt_header, the explicit copy in apply_mt, the source cache -------------------------

QUIRK_SETS = [
    PLAIN,
    *PRESETS.values(),
    CarrierQuirks(
        name="all",
        service_type="CMT",
        short_code_ton=TON.UNKNOWN,
        short_code_npi=NPI.ISDN,
        short_code_max_digits=5,
        destination_style=NumberStyle.E164,
        destination_ton=TON.UNKNOWN,
        max_registered_delivery=0x10,
        extra_tlvs=TLVs([(0x1401, b"\x0a"), (0x1402, b"")]),
    ),
]


def apply_mt_by_replace(quirks: CarrierQuirks, pdu: SubmitSM) -> SubmitSM:
    """apply_mt as first written: dataclasses.replace over the input PDU."""
    source, source_ton, source_npi = outgoing_source(quirks, pdu.source_addr)
    destination = pdu.destination_addr.strip()
    e164 = normalise_msisdn(destination, ton=None if destination.startswith("+") else TON.INTERNATIONAL)
    dest_ton, dest_npi = quirks.destination_ton_npi
    tlvs = pdu.tlvs
    for tag, value in quirks.extra_tlvs:
        tlvs = tlvs.with_tlv(tag, value)
    registered_delivery = pdu.registered_delivery
    if quirks.max_registered_delivery is not None:
        registered_delivery = min(registered_delivery, quirks.max_registered_delivery)
    return dataclasses.replace(
        pdu,
        service_type=quirks.service_type if quirks.service_type is not None else pdu.service_type,
        source_addr=source,
        source_addr_ton=source_ton,
        source_addr_npi=source_npi,
        destination_addr=format_for_carrier(e164, quirks.destination_style),
        dest_addr_ton=dest_ton,
        dest_addr_npi=dest_npi,
        registered_delivery=registered_delivery,
        tlvs=tlvs,
    )


octets = st.integers(0, 0xFF)
plain_submits = st.builds(
    SubmitSM,
    sequence_number=st.integers(0, 10),
    service_type=st.sampled_from(["", "WAP"]),
    source_addr=st.sampled_from(["997745", " 25521 ", "123456", "+34600111222", "34600111222", "eChat"]),
    destination_addr=st.sampled_from(["+34600111222", "34600111222", " +33612345678 ", "+1 202 555 0143"]),
    esm_class=st.sampled_from([0, 0x40]),
    protocol_id=octets,
    priority_flag=octets,
    schedule_delivery_time=st.sampled_from(["", "000001000000000R"]),
    validity_period=st.just(""),
    registered_delivery=st.integers(0, 0x1F),
    replace_if_present_flag=st.integers(0, 1),
    data_coding=st.sampled_from([0, 8]),
    sm_default_msg_id=octets,
    short_message=st.binary(max_size=20),
    tlvs=st.sampled_from([TLVs(), TLVs([(Tag.USER_MESSAGE_REFERENCE, 7), (0x1401, b"\xff")])]),
)


@given(st.sampled_from(QUIRK_SETS), plain_submits)
def test_apply_mt_and_mt_header_give_what_replace_gave(quirks: CarrierQuirks, pdu: SubmitSM) -> None:
    try:
        expected = apply_mt_by_replace(quirks, pdu)
    except RoutingError as error:  # the same refusal, word for word
        with pytest.raises(type(error)) as info:
            apply_mt(quirks, pdu)
        assert str(info.value) == str(error)
        with pytest.raises(type(error)):
            mt_header(quirks, pdu.source_addr, pdu.destination_addr)
        return
    assert apply_mt(quirks, pdu) == expected
    header = mt_header(
        quirks,
        pdu.source_addr,
        pdu.destination_addr,
        registered_delivery=pdu.registered_delivery,
        service_type=pdu.service_type,
    )
    built = header.submit_sm(pdu.short_message, pdu.data_coding, pdu.esm_class, pdu.tlvs)
    plain = dataclasses.replace(
        pdu,
        sequence_number=0,
        protocol_id=0,
        priority_flag=0,
        schedule_delivery_time="",
        replace_if_present_flag=0,
        sm_default_msg_id=0,
    )
    assert built == apply_mt_by_replace(quirks, plain)


def test_mt_header_defaults_and_errors() -> None:
    header = mt_header(PLAIN, "997745", "34600111222")
    assert header == MTHeader("", "997745", TON.NETWORK_SPECIFIC, NPI.UNKNOWN, "34600111222", 1, 1, 0, TLVs())
    assert header.submit_sm(b"hola", 0) == apply_mt(PLAIN, submit(destination="34600111222"))
    with pytest.raises(InvalidNumber):
        mt_header(PLAIN, "997745", "hello")
    with pytest.raises(InvalidAddress):
        mt_header(PLAIN, "eChatGateway1", "34600111222")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TaggedSubmit(SubmitSM):
    note: str = ""


def test_apply_mt_keeps_the_fields_of_a_submit_sm_subclass() -> None:
    out = apply_mt(
        PRESETS["orange"],
        TaggedSubmit(
            source_addr="997745", destination_addr="+34600111222", note="kept", registered_delivery=0x11
        ),
    )
    assert isinstance(out, TaggedSubmit)
    assert (out.note, out.destination_addr, out.registered_delivery) == ("kept", "600111222", 1)


def test_sources_are_cached_per_address_and_digit_limit_errors_never(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quirks_module, "_SOURCES", {})
    monkeypatch.setattr(quirks_module, "_SOURCES_SIZE", 2)
    short = CarrierQuirks(name="short", short_code_max_digits=5)
    assert outgoing_source(PLAIN, "8881234") == ("8881234", TON.NETWORK_SPECIFIC, NPI.UNKNOWN)
    assert outgoing_source(short, "8881234") == ("8881234", TON.INTERNATIONAL, NPI.ISDN)  # now a number
    assert outgoing_source(PLAIN, "eChat") == ("eChat", TON.ALPHANUMERIC, NPI.UNKNOWN)
    assert len(quirks_module._SOURCES) <= 2
    for _ in range(2):
        with pytest.raises(InvalidAddress):
            outgoing_source(PLAIN, "eChatGateway1")
    assert ("eChatGateway1", 8) not in quirks_module._SOURCES
    assert outgoing_source(PLAIN, "997745") == ("997745", TON.NETWORK_SPECIFIC, NPI.UNKNOWN)
