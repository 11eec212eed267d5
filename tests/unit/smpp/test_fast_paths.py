"""The hot-path shortcuts of smpp give exactly what the general code gives, and step aside for the rest.

Each shortcut (slot-descriptor constructors, one-pass decode and encode of submit_sm / deliver_sm,
the zero-copy Framer, GSM-7 through Latin-1, the single-SMS split, cached receipt dates) is checked
against the general path it skips, on generated input as well as on the edge cases that must fall
back to it.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp import receipt as receipt_module
from smpp._fastinit import fast_init, positional_factory
from smpp.codec import (
    _DECODERS,
    Framer,
    _decode_short_message_pdu_checked,
    _short_message_parts,
    _short_message_parts_unchecked,
    decode,
    encode,
)
from smpp.concat import Segment, split_message
from smpp.constants import CommandStatus, MessageState
from smpp.errors import LocalProtocolError, RemoteProtocolError
from smpp.pdu import PDU_CLASSES, DeliverSM, EnquireLink, SMEAddress, SubmitSM, SubmitSMResp
from smpp.receipt import normalise_message_id, parse_receipt, parse_receipt_date
from smpp.text import (
    _GSM_ENCODE_TABLE,
    GSM_BASIC_CHARS,
    GSM_CHARS,
    ConcatMode,
    _basic_septets,
    _draft_info,
    choose_encoding,
    draft_info,
    encode_text,
)
from smpp.tlv import Tag, TLVs
from tests.unit.smpp.test_codec_properties import pdu_strategy

# --- constructors through slot descriptors -------------------------------------------------------------


def reference_instance(cls: type[Any], values: dict[str, Any]) -> Any:
    """What the dataclass-generated __init__ does: object.__setattr__ for every field."""
    instance = object.__new__(cls)
    for field in dataclasses.fields(cls):
        object.__setattr__(instance, field.name, values[field.name])
    return instance


@pytest.mark.parametrize("cls", [*PDU_CLASSES.values(), SMEAddress], ids=lambda cls: cls.__name__)
def test_fast_init_keeps_the_dataclass_signature(cls: type[Any]) -> None:
    parameters = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in parameters] == [f.name for f in fields]
    assert [p.default for p in parameters] == [f.default for f in fields]
    kinds = {
        inspect.Parameter.KEYWORD_ONLY if f.kw_only else inspect.Parameter.POSITIONAL_OR_KEYWORD
        for f in fields
    }
    assert {p.kind for p in parameters} == kinds


@pytest.mark.parametrize("cls", list(PDU_CLASSES.values()), ids=lambda cls: cls.__name__)
def test_fast_init_and_positional_factory_build_the_same_instance(cls: type[Any]) -> None:
    defaults = cls()
    values = {field.name: getattr(defaults, field.name) for field in dataclasses.fields(cls)}
    values["sequence_number"] = 7
    reference = reference_instance(cls, values)
    assert cls(**values) == reference
    made = positional_factory(cls)(*values.values())
    assert made == reference
    assert type(made) is cls
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.sequence_number = 8


def test_positional_arguments_work_where_the_dataclass_allows_them() -> None:
    assert SMEAddress(1, 1, "336") == SMEAddress(ton=1, npi=1, address="336")
    with pytest.raises(TypeError):
        constructor: Any = SubmitSM
        constructor("not", "keyword")


@dataclasses.dataclass(slots=True)
class NotFrozen:
    value: int = 0


@dataclasses.dataclass(frozen=True)
class NotSlotted:
    value: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class WithPostInit:
    value: int = 0

    def __post_init__(self) -> None:
        pass


@dataclasses.dataclass(frozen=True, slots=True)
class WithFactory:
    values: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class Required:
    first: int
    second: str = "x"


@dataclasses.dataclass(frozen=True, slots=True)
class Slotted:
    value: int = 0


class Shadowed(Slotted):
    __slots__ = ()
    value = property(lambda self: 1)


@pytest.mark.parametrize("cls", [NotFrozen, NotSlotted, WithPostInit, WithFactory, Shadowed, int])
def test_fast_init_refuses_classes_whose_init_does_more(cls: type[Any]) -> None:
    with pytest.raises(TypeError):
        fast_init(cls)
    with pytest.raises(TypeError):
        positional_factory(cls)


def test_fast_init_handles_required_fields() -> None:
    fast_init(Required)
    assert Required(1) == reference_instance(Required, {"first": 1, "second": "x"})
    with pytest.raises(TypeError):
        Required()  # type: ignore[call-arg]


# --- one-pass decode of submit_sm / deliver_sm -----------------------------------------------------------


@given(st.one_of(pdu_strategy(SubmitSM), pdu_strategy(DeliverSM)))
def test_one_pass_decode_equals_the_field_by_field_reading(pdu: SubmitSM | DeliverSM) -> None:
    wire = encode(pdu)
    _, _, make = _DECODERS[pdu.command_id]
    checked = _decode_short_message_pdu_checked(
        make, wire, 16, len(wire), pdu.sequence_number, pdu.command_status
    )
    assert decode(wire) == (checked, len(wire))
    assert checked == pdu


def receipt(message_id: str = "1234") -> DeliverSM:
    return DeliverSM(
        sequence_number=5,
        source_addr="33612345678",
        destination_addr="4242",
        esm_class=4,
        short_message=b"id:1234 stat:DELIVRD",
        tlvs=TLVs(
            [
                (Tag.RECEIPTED_MESSAGE_ID, message_id),
                (Tag.MESSAGE_STATE, 2),
                (Tag.SAR_MSG_REF_NUM, 513),
                (Tag.QOS_TIME_TO_LIVE, 70000),
            ]
        ),
    )


def test_a_pdu_cut_inside_a_string_is_refused_even_when_the_next_pdu_has_the_nul() -> None:
    # The first PDU ends inside destination_addr; the NUL the one-pass reading finds belongs to the
    # next PDU in the same read. The error must name the field, and the next PDU must still decode.
    whole = encode(receipt())
    cut = whole[: 16 + 1 + 2 + 12 + 2 + 2]  # service_type, TON/NPI, source_addr, TON/NPI, "42"
    first = len(cut).to_bytes(4, "big") + cut[4:]
    framer = Framer()
    framer.feed(first + whole)
    with pytest.raises(RemoteProtocolError) as info:
        framer.next_pdu()
    assert "destination_addr" in str(info.value)
    assert info.value.status == CommandStatus.ESME_RINVMSGLEN
    assert framer.next_pdu() == receipt()


def test_a_short_message_running_past_the_pdu_is_refused_even_with_bytes_after_it() -> None:
    whole = encode(DeliverSM(short_message=b"hello"))
    shorter = (len(whole) - 3).to_bytes(4, "big") + whole[4:-3]
    framer = Framer()
    framer.feed(shorter + encode(EnquireLink(sequence_number=9)))
    with pytest.raises(RemoteProtocolError, match="short_message"):
        framer.next_pdu()
    assert framer.next_pdu() == EnquireLink(sequence_number=9)


def test_a_message_id_whose_nul_lies_in_the_next_pdu_is_refused() -> None:
    body = b"abc"  # no NUL: the next PDU's header supplies zeros
    framer = Framer()
    framer.feed(
        (16 + len(body)).to_bytes(4, "big")
        + encode(SubmitSMResp())[4:16]
        + body
        + encode(EnquireLink(sequence_number=3))
    )
    with pytest.raises(RemoteProtocolError, match="message_id"):
        framer.next_pdu()
    assert framer.next_pdu() == EnquireLink(sequence_number=3)


def test_tlvs_decode_typed_with_the_first_of_a_repeated_tag_winning() -> None:
    pdu = receipt()
    wire = encode(pdu)
    tlv = encode(DeliverSM(tlvs=TLVs([(Tag.MESSAGE_STATE, 5)])))[-5:]
    result = decode((len(wire) + 5).to_bytes(4, "big") + wire[4:] + tlv)
    assert result is not None
    decoded = result[0]
    assert isinstance(decoded, DeliverSM)
    assert decoded.tlvs.get(Tag.MESSAGE_STATE) == 2
    assert list(decoded.tlvs)[-1] == (Tag.MESSAGE_STATE, 5)
    assert decoded.tlvs == TLVs([*pdu.tlvs, (Tag.MESSAGE_STATE, 5)])
    assert decoded.tlvs.get(Tag.SAR_MSG_REF_NUM) == 513
    assert decoded.tlvs.get(Tag.QOS_TIME_TO_LIVE) == 70000


@pytest.mark.parametrize(
    "items",
    [
        [(Tag.MESSAGE_STATE, 2), (Tag.MESSAGE_STATE, 3)],
        ((Tag.MESSAGE_STATE, 2),),
        {Tag.MESSAGE_STATE: 2},
        iter([(Tag.MESSAGE_STATE, 2)]),
    ],
)
def test_tlvs_accept_every_kind_of_collection(items: Any) -> None:
    tlvs = TLVs(items)
    assert tlvs.get(Tag.MESSAGE_STATE) == 2
    assert list(tlvs)[0] == (Tag.MESSAGE_STATE, 2)


# --- one-pass encode -------------------------------------------------------------------------------------


@given(st.one_of(pdu_strategy(SubmitSM), pdu_strategy(DeliverSM)))
def test_one_pass_encode_equals_the_field_by_field_encoding(pdu: SubmitSM | DeliverSM) -> None:
    fast = _short_message_parts_unchecked(pdu)
    assert fast is not None
    assert b"".join(fast) == b"".join(_short_message_parts(pdu))


class Octets(bytes):
    pass


@pytest.mark.parametrize(
    ("pdu", "field"),
    [
        (SubmitSM(service_type="CMTXYZ"), "service_type"),
        (SubmitSM(source_addr="1" * 21), "source_addr"),
        (SubmitSM(destination_addr="1\0"), "destination_addr"),
        (SubmitSM(validity_period="1" * 17), "validity_period"),
        (SubmitSM(schedule_delivery_time=5), "schedule_delivery_time"),  # type: ignore[arg-type]
        (SubmitSM(source_addr="€"), "source_addr"),
        (SubmitSM(short_message=Octets(b"x")), None),  # a bytes subclass: the general path accepts it
        (SubmitSM(short_message=b"x" * 255), "short_message"),
        (SubmitSM(priority_flag=300), "priority_flag"),
        (SubmitSM(registered_delivery=1.0), "registered_delivery"),  # type: ignore[arg-type]
    ],
)
def test_anything_unusual_goes_the_field_by_field_way(pdu: SubmitSM, field: str | None) -> None:
    assert _short_message_parts_unchecked(pdu) is None
    if field is None:
        assert decode(encode(pdu))[0] == SubmitSM(short_message=b"x")  # type: ignore[index]
    else:
        with pytest.raises(LocalProtocolError, match=field):
            encode(pdu)


# --- Framer: bytes kept as they are -------------------------------------------------------------------


def test_framer_decodes_from_the_bytes_it_was_fed_and_copies_anything_mutable() -> None:
    wire = encode(receipt())
    framer = Framer()
    framer.feed(wire)
    assert framer.next_pdu() == receipt()
    mutable = bytearray(wire)
    framer.feed(memoryview(mutable))
    mutable[:] = b"\0" * len(mutable)  # the caller reuses its buffer
    assert framer.next_pdu() == receipt()
    assert framer.next_pdu() is None
    assert framer.buffered == 0


def test_framer_gathers_a_pdu_split_across_many_reads() -> None:
    wire = encode(receipt()) * 3
    framer = Framer()
    received = []
    for start in range(0, len(wire), 7):
        framer.feed(wire[start : start + 7])
        while (pdu := framer.next_pdu()) is not None:
            received.append(pdu)
    assert received == [receipt()] * 3
    assert framer.buffered == 0


# --- text: GSM-7 through Latin-1 ------------------------------------------------------------------------

LATIN1 = "".join(chr(code) for code in range(0x100))


@pytest.mark.parametrize("char", [*LATIN1, "€", "Δ", "Ω", "😀", "ĳ"])
def test_basic_septets_take_exactly_the_gsm_basic_characters_of_latin1(char: str) -> None:
    septets = _basic_septets(f"ab{char}c")
    if char in GSM_BASIC_CHARS and ord(char) <= 0xFF:
        assert septets == f"ab{char}c".translate(_GSM_ENCODE_TABLE).encode("latin-1")
    else:
        assert septets is None
    assert choose_encoding(char) == (0x00 if char in GSM_CHARS else 0x08)


@given(st.text(st.sampled_from(sorted(GSM_CHARS | {"á", "€", "`"})), max_size=200))
def test_gsm_encoding_equals_the_character_table(text: str) -> None:
    expected = text.translate(_GSM_ENCODE_TABLE)
    if set(text) <= GSM_CHARS:
        assert encode_text(text, 0) == expected.encode("latin-1")
        assert choose_encoding(text) == 0x00
    else:
        with pytest.raises(LocalProtocolError):
            encode_text(text, 0)
        assert choose_encoding(text) in (0x03, 0x08)


@pytest.mark.parametrize(
    ("text", "data_coding", "parts"),
    [
        ("a" * 160, 0x00, 1),
        ("a" * 161, 0x00, 2),
        ("€" * 80, 0x00, 1),
        ("€" * 81, 0x00, 2),
        ("é" * 140, 0x03, 1),
        ("é" * 141, 0x03, 2),
        ("Ω" * 70, 0x08, 1),
        ("Ω" * 71, 0x08, 2),
    ],
)
def test_single_sms_limits_per_alphabet(text: str, data_coding: int, parts: int) -> None:
    for mode in ("udh8", "udh16", "sar"):
        segments = split_message(text, data_coding, mode=mode, reference=1)
        assert len(segments) == parts
    if parts == 1:
        (segment,) = split_message(text, data_coding, mode="udh8", reference=1)
        assert segment == Segment(
            short_message=encode_text(text, data_coding),
            esm_class_flags=0,
            tlvs=TLVs(),
            part_number=1,
            total_parts=1,
        )


@given(
    st.text(st.sampled_from(sorted(GSM_CHARS | {"á", "é", "€", "Ω", "😀"})), max_size=170),
    st.sampled_from(["udh8", "udh16", "sar", "payload"]),
    st.sampled_from([None, 1, 10]),
    st.booleans(),
)
def test_draft_info_of_one_basic_gsm_sms_equals_the_general_count(
    text: str, concat: str, max_segments: int | None, allow_latin1: bool
) -> None:
    """The outbox checks every MT with ``draft_info``: one SMS of basic-table characters is counted
    without the general path, and the count is the same."""
    general = _draft_info(text, None, max_segments, ConcatMode(concat), allow_latin1)
    assert draft_info(text, max_segments=max_segments, concat=concat, allow_latin1=allow_latin1) == general


@pytest.mark.parametrize("text", ["a" * 160, "a" * 161, "a" * 159 + "€", "", "Hola +34600000001"])
def test_draft_info_shortcut_edges(text: str) -> None:
    assert draft_info(text, max_segments=10) == _draft_info(text, None, 10, ConcatMode.UDH8, False)


# --- receipts -------------------------------------------------------------------------------------------


def test_receipt_dates_are_cached_without_changing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receipt_module, "_DATE_CACHE", {})
    monkeypatch.setattr(receipt_module, "_DATE_CACHE_SIZE", 3)
    values = ["2406011200", "2406011201", "bad", "", "2406011200"]
    first = [parse_receipt_date(value) for value in values]
    assert first == [receipt_module._read_receipt_date(value) for value in values]
    assert len(receipt_module._DATE_CACHE) <= 3
    assert [parse_receipt_date(value) for value in values] == first


def test_receipt_without_tlvs_and_with_an_unknown_message_state() -> None:
    text = "id:77 sub:001 dlvrd:001 submit date:2406011200 done date:2406011201 stat:DELIVRD err:000 text:x"
    assert parse_receipt(text).state is MessageState.DELIVERED
    odd = parse_receipt(text, TLVs([(Tag.MESSAGE_STATE, 99)]))
    assert odd.state is MessageState.DELIVERED
    assert odd.stat == "DELIVRD"
    assert parse_receipt("id:77", TLVs([(Tag.MESSAGE_STATE, 5)])).stat == "UNDELIV"


@pytest.mark.parametrize(
    ("message_id", "normal"),
    [
        ("00123", "123"),
        ("000", "0"),
        (" 42\0", "42"),
        ("٤٢", "٤٢"),
        ("0A1b", "a1b"),
        ("", ""),
    ],
)
def test_normalise_message_id_decimal_shortcut(message_id: str, normal: str) -> None:
    assert normalise_message_id(message_id) == normal
