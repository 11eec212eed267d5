"""smpp.concat: splitting for submit, UDH parsing, concatenation info of PDUs, and reassembly."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpp.concat import (
    UDH,
    ConcatInfo,
    ConcatMode,
    FlushReason,
    InformationElement,
    Ports,
    Reassembler,
    Segment,
    concat_info,
    parse_udh,
    split_message,
    user_data,
)
from smpp.errors import LocalProtocolError
from smpp.pdu import DataSM, DeliverSM, SubmitSM
from smpp.text import GSM_CHARS, decode_text, draft_info, encode_text
from smpp.tlv import EMPTY_TLVS, Tag, TLVs

GSM_TEXT = st.text(alphabet=sorted(GSM_CHARS), max_size=800)
ANY_TEXT = st.text(max_size=400)


def join_segments(segments: list[Segment]) -> bytes:
    """The message octets back from submit segments, as an SMSC would see them."""
    out = b""
    for segment in segments:
        body = segment.short_message or (segment.tlvs.get_bytes(Tag.MESSAGE_PAYLOAD) or b"")
        if segment.esm_class_flags & 0x40:
            udh, body = parse_udh(body)
            assert udh is not None
        out += body
    return out


# --- split_message ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(ConcatMode))
def test_a_message_that_fits_is_one_plain_segment(mode: ConcatMode) -> None:
    segments = split_message("a" * 160, 0, mode=mode, reference=7)
    assert segments == [
        Segment(short_message=b"a" * 160, esm_class_flags=0, tlvs=EMPTY_TLVS, part_number=1, total_parts=1)
    ]


def test_udh8_segments() -> None:
    segments = split_message("a" * 200, 0, mode=ConcatMode.UDH8, reference=0xAB)
    assert [s.short_message[:6] for s in segments] == [
        bytes([5, 0, 3, 0xAB, 2, 1]),
        bytes([5, 0, 3, 0xAB, 2, 2]),
    ]
    assert [len(s.short_message) - 6 for s in segments] == [153, 47]
    assert all(s.esm_class_flags == 0x40 and not s.tlvs for s in segments)
    assert [(s.part_number, s.total_parts) for s in segments] == [(1, 2), (2, 2)]


def test_udh16_segments() -> None:
    segments = split_message("ñ" * 100, 8, mode="udh16", reference=0x1234)
    assert [s.short_message[:7] for s in segments] == [
        bytes([6, 8, 4, 0x12, 0x34, 2, 1]),
        bytes([6, 8, 4, 0x12, 0x34, 2, 2]),
    ]
    assert [len(s.short_message) - 7 for s in segments] == [132, 68]


def test_sar_segments() -> None:
    segments = split_message("a" * 400, 0, mode=ConcatMode.SAR, reference=0xBEEF)
    assert [len(s.short_message) for s in segments] == [152, 152, 96]
    assert all(s.esm_class_flags == 0 for s in segments)
    assert segments[2].tlvs == TLVs(
        [(Tag.SAR_MSG_REF_NUM, 0xBEEF), (Tag.SAR_TOTAL_SEGMENTS, 3), (Tag.SAR_SEGMENT_SEQNUM, 3)]
    )


def test_payload_mode_is_one_pdu() -> None:
    segments = split_message("a" * 400, 0, mode=ConcatMode.PAYLOAD, reference=0)
    assert segments == [
        Segment(
            short_message=b"",
            esm_class_flags=0,
            tlvs=TLVs([(Tag.MESSAGE_PAYLOAD, b"a" * 400)]),
            part_number=1,
            total_parts=1,
        )
    ]


def test_binary_octets_split_as_they_are() -> None:
    data = bytes(range(256)) + bytes(44)
    segments = split_message(data, 4, mode=ConcatMode.UDH8, reference=1)
    assert [len(s.short_message) - 6 for s in segments] == [134, 134, 32]
    assert join_segments(segments) == data


def test_escape_pair_is_never_split() -> None:
    segments = split_message("a" * 152 + "€" + "b" * 10, 0, mode=ConcatMode.UDH8, reference=1)
    first, second = (s.short_message[6:] for s in segments)
    assert first == b"a" * 152
    assert second == b"\x1b\x65" + b"b" * 10


def test_surrogate_pair_is_never_split() -> None:
    segments = split_message("a" * 66 + "😀" + "b" * 10, 8, mode=ConcatMode.UDH8, reference=1)
    first, second = (s.short_message[6:] for s in segments)
    assert decode_text(first, 8) == "a" * 66
    assert decode_text(second, 8) == "😀" + "b" * 10


def test_multibyte_coding_parts_are_self_contained() -> None:
    text = "日本語のテキスト" * 30
    segments = split_message(text, 0x0A, mode=ConcatMode.UDH8, reference=3)
    assert len(segments) > 1
    parts = [decode_text(s.short_message[6:], 0x0A) for s in segments]
    assert "".join(parts) == text
    assert all(len(s.short_message) <= 140 for s in segments)


@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        ("udh8", 256),
        ("udh8", -1),
        ("udh16", 65536),
        ("sar", 65536),
        ("payload", -1),
    ],
)
def test_reference_range_is_checked(mode: str, reference: int) -> None:
    with pytest.raises(LocalProtocolError):
        split_message("x", 0, mode=mode, reference=reference)


def test_split_refusals() -> None:
    with pytest.raises(LocalProtocolError):
        split_message("x", 0x05, mode="udh8", reference=0)
    with pytest.raises(LocalProtocolError):
        split_message("😀", 0, mode="udh8", reference=0)
    with pytest.raises(LocalProtocolError, match="255"):
        split_message("a" * (153 * 255 + 1), 0, mode="udh8", reference=0)
    with pytest.raises(LocalProtocolError, match="payload"):
        split_message(b"a" * 64_001, 4, mode="payload", reference=0)
    assert len(split_message("a" * (153 * 255), 0, mode="udh8", reference=0)) == 255


@settings(deadline=None)
@given(GSM_TEXT, st.sampled_from(list(ConcatMode)), st.integers(0, 255))
def test_gsm_split_then_join_is_the_original(text: str, mode: ConcatMode, reference: int) -> None:
    segments = split_message(text, 0, mode=mode, reference=reference)
    assert decode_text(join_segments(segments), 0) == text
    for segment in segments:
        body = segment.short_message[6:] if segment.esm_class_flags else segment.short_message
        assert not body.endswith(b"\x1b")  # an escape pair is never split
    info = draft_info(text, data_coding=0, concat=mode)
    assert len(segments) == info.pdus
    if mode is not ConcatMode.PAYLOAD:
        assert info.segments == len(segments)


@settings(deadline=None)
@given(ANY_TEXT, st.sampled_from(list(ConcatMode)), st.integers(0, 65535))
def test_ucs2_split_then_join_is_the_original(text: str, mode: ConcatMode, reference: int) -> None:
    reference = reference & 0xFF if mode is ConcatMode.UDH8 else reference
    segments = split_message(text, 8, mode=mode, reference=reference)
    assert decode_text(join_segments(segments), 8) == text
    for segment in segments:
        body = parse_udh(segment.short_message)[1] if segment.esm_class_flags else segment.short_message
        # Every part decodes on its own: no surrogate pair is split across parts.
        assert encode_text(decode_text(body, 8), 8) == body
    info = draft_info(text, data_coding=8, concat=mode)
    assert len(segments) == info.pdus
    if mode is not ConcatMode.PAYLOAD:
        assert info.segments == len(segments)
    else:
        assert info.segments == draft_info(text, data_coding=8, concat="udh8").segments


# --- parse_udh --------------------------------------------------------------------------------------------


def test_parse_udh_8bit_concat() -> None:
    udh, payload = parse_udh(bytes([5, 0, 3, 9, 3, 2]) + b"hello")
    assert payload == b"hello"
    assert udh is not None
    assert udh.concat == ConcatInfo(reference=9, total=3, part_number=2, scheme=ConcatMode.UDH8)
    assert udh.ports is None


def test_parse_udh_16bit_concat_with_ports_and_unknown_elements() -> None:
    header = bytes([0x10, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0, 0x08, 4, 0x01, 0x02, 5, 5, 0x70, 2, 0xAA, 0xBB])
    udh, payload = parse_udh(header + b"data")
    assert payload == b"data"
    assert udh is not None
    assert udh.ports == Ports(destination=0x0B84, source=0x23F0)
    assert udh.concat == ConcatInfo(reference=0x0102, total=5, part_number=5, scheme=ConcatMode.UDH16)
    assert udh.elements[2] == InformationElement(iei=0x70, data=b"\xaa\xbb")
    assert udh.encode() == header


def test_parse_udh_8bit_ports() -> None:
    udh, _ = parse_udh(bytes([4, 4, 2, 0x10, 0x20]))
    assert udh is not None
    assert udh.ports == Ports(destination=0x10, source=0x20)


@pytest.mark.parametrize(
    "header",
    [
        bytes([5, 0, 3, 1, 2, 0]),  # part 0
        bytes([5, 0, 3, 1, 2, 3]),  # part beyond total
        bytes([5, 0, 3, 1, 0, 0]),  # no parts
        bytes([4, 0, 2, 1, 2]),  # concat element of the wrong length
        bytes([3, 4, 1, 1]),  # ports element of the wrong length
    ],
)
def test_udh_elements_that_do_not_make_sense_are_kept_but_not_interpreted(header: bytes) -> None:
    udh, payload = parse_udh(header + b"x")
    assert udh is not None
    assert payload == b"x"
    assert udh.concat is None
    assert udh.ports is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes([9, 0, 3, 1]),
        bytes([5, 0, 9, 1, 2, 1]),
        bytes([1, 0]),
        bytes([3, 0, 3, 1]),
    ],
)
def test_malformed_udh_returns_the_raw_bytes(data: bytes) -> None:
    assert parse_udh(data) == (None, data)


def test_empty_udh_is_a_udh_without_elements() -> None:
    assert parse_udh(b"\x00abc") == (UDH(elements=()), b"abc")


@given(st.binary(max_size=60))
def test_parse_udh_never_raises(data: bytes) -> None:
    udh, payload = parse_udh(data)
    if udh is None:
        assert payload == data
    else:
        assert udh.encode() + payload == data


# --- concat_info / user_data ----------------------------------------------------------------------------


def test_concat_info_from_udh() -> None:
    pdu = DeliverSM(esm_class=0x40, short_message=bytes([5, 0, 3, 7, 2, 1]) + b"hi")
    assert user_data(pdu) == (ConcatInfo(7, 2, 1, ConcatMode.UDH8), b"hi")
    assert concat_info(pdu) == ConcatInfo(7, 2, 1, ConcatMode.UDH8)


def test_udh_is_read_only_when_udhi_is_set() -> None:
    raw = bytes([5, 0, 3, 7, 2, 1]) + b"hi"
    assert user_data(DeliverSM(esm_class=0, short_message=raw)) == (None, raw)


def test_concat_info_from_sar_tlvs() -> None:
    tlvs = TLVs([(Tag.SAR_MSG_REF_NUM, 300), (Tag.SAR_TOTAL_SEGMENTS, 3), (Tag.SAR_SEGMENT_SEQNUM, 2)])
    pdu = SubmitSM(short_message=b"part", tlvs=tlvs)
    assert user_data(pdu) == (ConcatInfo(300, 3, 2, ConcatMode.SAR), b"part")


@pytest.mark.parametrize(
    "tlvs",
    [
        TLVs([(Tag.SAR_MSG_REF_NUM, 1), (Tag.SAR_TOTAL_SEGMENTS, 3)]),
        TLVs([(Tag.SAR_MSG_REF_NUM, 1), (Tag.SAR_TOTAL_SEGMENTS, 3), (Tag.SAR_SEGMENT_SEQNUM, 4)]),
        TLVs([(Tag.SAR_MSG_REF_NUM, 1), (Tag.SAR_TOTAL_SEGMENTS, 0), (Tag.SAR_SEGMENT_SEQNUM, 0)]),
        TLVs([(Tag.SAR_MSG_REF_NUM, b"\x00"), (Tag.SAR_TOTAL_SEGMENTS, 3), (Tag.SAR_SEGMENT_SEQNUM, 1)]),
        TLVs([(Tag.SAR_MSG_REF_NUM, 1), (Tag.SAR_TOTAL_SEGMENTS, 1), (Tag.SAR_SEGMENT_SEQNUM, 1)]),
    ],
)
def test_incomplete_or_invalid_sar_means_a_whole_message(tlvs: TLVs) -> None:
    assert concat_info(DeliverSM(short_message=b"x", tlvs=tlvs)) is None


def test_one_part_of_one_is_a_whole_message() -> None:
    pdu = DeliverSM(esm_class=0x40, short_message=bytes([5, 0, 3, 7, 1, 1]) + b"x")
    assert user_data(pdu) == (None, b"x")


def test_malformed_udh_falls_back_to_sar_and_keeps_the_raw_bytes() -> None:
    tlvs = TLVs([(Tag.SAR_MSG_REF_NUM, 5), (Tag.SAR_TOTAL_SEGMENTS, 2), (Tag.SAR_SEGMENT_SEQNUM, 1)])
    pdu = DeliverSM(esm_class=0x40, short_message=b"\x30abc", tlvs=tlvs)
    assert user_data(pdu) == (ConcatInfo(5, 2, 1, ConcatMode.SAR), b"\x30abc")


def test_data_sm_and_message_payload() -> None:
    payload = bytes([6, 8, 4, 0, 9, 2, 2]) + b"tail"
    pdu = DataSM(esm_class=0x43, tlvs=TLVs([(Tag.MESSAGE_PAYLOAD, payload)]))
    assert user_data(pdu) == (ConcatInfo(9, 2, 2, ConcatMode.UDH16), b"tail")
    deliver = DeliverSM(tlvs=TLVs([(Tag.MESSAGE_PAYLOAD, b"long text")]))
    assert user_data(deliver) == (None, b"long text")
    assert user_data(DataSM()) == (None, b"")


def test_concat_info_is_validated() -> None:
    with pytest.raises(LocalProtocolError):
        ConcatInfo(reference=70000, total=2, part_number=1, scheme=ConcatMode.SAR)
    with pytest.raises(LocalProtocolError):
        ConcatInfo(reference=1, total=2, part_number=3, scheme=ConcatMode.UDH8)
    with pytest.raises(LocalProtocolError):
        ConcatInfo(reference=1, total=256, part_number=1, scheme=ConcatMode.SAR)


# --- Reassembler ------------------------------------------------------------------------------------------


def part(reference: int, total: int, number: int) -> ConcatInfo:
    return ConcatInfo(reference=reference, total=total, part_number=number, scheme=ConcatMode.UDH8)


def test_parts_in_any_order_make_the_message() -> None:
    reassembler: Reassembler[str] = Reassembler(timeout=60, max_pending=10)
    assert reassembler.add("k", part(1, 3, 3), b"c", 0, 1.0, "pdu3") == []
    assert reassembler.add("k", part(1, 3, 1), b"a", 0, 2.0, "pdu1") == []
    assert len(reassembler) == 1
    [message] = reassembler.add("k", part(1, 3, 2), b"b", 0, 3.0, "pdu2")
    assert message.complete
    assert message.reason is FlushReason.COMPLETE
    assert (message.payload, message.text, message.items) == (b"abc", "abc", ("pdu3", "pdu1", "pdu2"))
    assert (message.received_parts, message.missing_parts, message.first_seen) == ((1, 2, 3), (), 1.0)
    assert (message.key, message.reference, message.total_parts) == ("k", 1, 3)
    assert len(reassembler) == 0
    assert reassembler.next_deadline() is None


def test_duplicate_parts_are_ignored_but_their_items_kept() -> None:
    reassembler: Reassembler[int] = Reassembler(timeout=60, max_pending=10)
    reassembler.add("k", part(1, 2, 1), b"first", 0, 0.0, 1)
    reassembler.add("k", part(1, 2, 1), b"again", 0, 0.5, 2)
    [message] = reassembler.add("k", part(1, 2, 2), b"-end", 0, 1.0, 3)
    assert message.payload == b"first-end"
    assert message.items == (1, 2, 3)


def test_same_reference_from_different_senders_stays_apart() -> None:
    reassembler: Reassembler[None] = Reassembler(timeout=60, max_pending=10)
    reassembler.add(("A", "5555"), part(4, 2, 1), b"A1", 0, 0.0, None)
    reassembler.add(("B", "5555"), part(4, 2, 1), b"B1", 0, 0.0, None)
    [b] = reassembler.add(("B", "5555"), part(4, 2, 2), b"B2", 0, 0.0, None)
    [a] = reassembler.add(("A", "5555"), part(4, 2, 2), b"A2", 0, 0.0, None)
    assert (a.payload, b.payload) == (b"A1A2", b"B1B2")


def test_single_part_message_completes_at_once() -> None:
    reassembler: Reassembler[None] = Reassembler(timeout=60, max_pending=10)
    [message] = reassembler.add("k", part(1, 1, 1), b"whole", 0, 0.0, None)
    assert message.complete and message.payload == b"whole"


def test_ucs2_pair_split_by_the_carrier_across_parts_survives() -> None:
    reassembler: Reassembler[None] = Reassembler(timeout=60, max_pending=10)
    data = encode_text("hi 😀", 8)
    reassembler.add("k", part(2, 2, 2), data[7:], 8, 0.0, None)
    [message] = reassembler.add("k", part(2, 2, 1), data[:7], 8, 0.0, None)
    assert message.text == "hi 😀"
    assert message.data_coding == 8


def test_data_coding_is_part_ones_or_else_the_first_arrived() -> None:
    reassembler: Reassembler[None] = Reassembler(timeout=60, max_pending=10)
    reassembler.add("k", part(1, 3, 2), b"b", 3, 0.0, None)
    reassembler.add("k", part(1, 3, 3), b"c", 4, 0.0, None)
    [message] = reassembler.add("k", part(1, 3, 1), b"a", 0, 0.0, None)
    assert message.data_coding == 0
    reassembler.add("j", part(1, 3, 3), b"c", 4, 0.0, None)
    reassembler.add("j", part(1, 3, 2), b"b", 3, 0.0, None)
    [incomplete] = reassembler.expire(100.0)
    assert incomplete.data_coding == 4


def test_expiry_flags_incomplete_messages_with_what_arrived() -> None:
    reassembler: Reassembler[str] = Reassembler(timeout=30, max_pending=10)
    reassembler.add("old", part(1, 4, 2), b"B", 0, 10.0, "o2")
    reassembler.add("old", part(1, 4, 4), b"D", 0, 15.0, "o4")
    reassembler.add("new", part(1, 2, 1), b"x", 0, 20.0, "n1")
    assert reassembler.next_deadline() == 40.0
    assert reassembler.expire(39.9) == []
    [old] = reassembler.expire(40.0)
    assert not old.complete
    assert old.reason is FlushReason.TIMEOUT
    assert (old.received_parts, old.missing_parts) == ((2, 4), (1, 3))
    assert (old.payload, old.items) == (b"BD", ("o2", "o4"))
    assert reassembler.next_deadline() == 50.0
    [new] = reassembler.expire(1000.0)
    assert new.missing_parts == (2,)
    assert reassembler.expire(2000.0) == []


def test_max_pending_evicts_the_oldest_as_incomplete() -> None:
    reassembler: Reassembler[str] = Reassembler(timeout=60, max_pending=2)
    reassembler.add("a", part(1, 2, 1), b"a", 0, 1.0, "a1")
    reassembler.add("b", part(1, 2, 1), b"b", 0, 2.0, "b1")
    [evicted] = reassembler.add("c", part(1, 2, 1), b"c", 0, 3.0, "c1")
    assert (evicted.key, evicted.reason, evicted.items) == ("a", FlushReason.EVICTED, ("a1",))
    assert not evicted.complete
    assert len(reassembler) == 2
    [done] = reassembler.add("b", part(1, 2, 2), b"!", 0, 4.0, "b2")
    assert done.payload == b"b!"


def test_drain_flushes_everything_oldest_first() -> None:
    reassembler: Reassembler[str] = Reassembler(timeout=60, max_pending=5)
    reassembler.add("a", part(1, 2, 2), b"a", 0, 1.0, "a2")
    reassembler.add("b", part(1, 3, 1), b"b", 0, 2.0, "b1")
    drained = reassembler.drain()
    assert [(m.key, m.reason, m.missing_parts) for m in drained] == [
        ("a", FlushReason.DRAINED, (1,)),
        ("b", FlushReason.DRAINED, (2, 3)),
    ]
    assert len(reassembler) == 0


@pytest.mark.parametrize(("timeout", "max_pending"), [(0, 1), (-1, 1), (1, 0)])
def test_reassembler_arguments_are_checked(timeout: float, max_pending: int) -> None:
    with pytest.raises(LocalProtocolError):
        Reassembler(timeout=timeout, max_pending=max_pending)


@settings(deadline=None)
@given(
    st.lists(st.tuples(GSM_TEXT.filter(bool), st.integers(0, 255)), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
)
def test_random_interleavings_across_senders_reassemble(
    messages: list[tuple[str, int]], rng: random.Random
) -> None:
    reassembler: Reassembler[tuple[int, int]] = Reassembler(timeout=60, max_pending=100)
    arrivals: list[tuple[int, Segment]] = []
    for sender, (text, reference) in enumerate(messages):
        arrivals += [(sender, s) for s in split_message(text * 3, 0, mode="udh8", reference=reference)]
    rng.shuffle(arrivals)
    done: dict[int, str] = {}
    for clock, (sender, segment) in enumerate(arrivals):
        pdu = DeliverSM(
            source_addr=str(sender), esm_class=segment.esm_class_flags, short_message=segment.short_message
        )
        info, payload = user_data(pdu)
        if info is None:
            done[sender] = decode_text(payload, 0)
            continue
        for message in reassembler.add(
            pdu.source_addr, info, payload, 0, float(clock), (sender, segment.part_number)
        ):
            assert message.complete
            assert sorted(message.items) == [(sender, n) for n in range(1, message.total_parts + 1)]
            done[int(str(message.key))] = message.text
    assert done == {sender: text * 3 for sender, (text, _) in enumerate(messages)}
    assert len(reassembler) == 0


@settings(deadline=None)
@given(st.integers(2, 8), st.data())
def test_expiry_lists_exactly_the_missing_parts(total: int, data: st.DataObject) -> None:
    arrived = data.draw(st.lists(st.integers(1, total), min_size=1, max_size=total - 1, unique=True))
    reassembler: Reassembler[int] = Reassembler(timeout=5, max_pending=10)
    for number in arrived:
        assert reassembler.add("k", part(9, total, number), bytes([number]), 4, 0.0, number) == []
    [message] = reassembler.expire(5.0)
    assert not message.complete
    assert message.received_parts == tuple(sorted(arrived))
    assert set(message.missing_parts) == set(range(1, total + 1)) - set(arrived)
    assert message.payload == bytes(sorted(arrived))
