"""smpp.codec properties: generated PDUs round-trip; hostile bytes only ever raise RemoteProtocolError."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from smpp.codec import MAX_SHORT_MESSAGE, Framer, decode, encode
from smpp.errors import LocalProtocolError, RemoteProtocolError
from smpp.pdu import (
    PDU,
    PDU_CLASSES,
    AlertNotification,
    DataSM,
    DistributionList,
    SMEAddress,
    SubmitSM,
    UnsuccessSME,
)
from smpp.tlv import KINDS, Kind, TLVs, TLVValue

# SMPP 3.4 maximum sizes, NUL included.
CSTRING_SIZES = {
    "system_id": 16,
    "password": 9,
    "system_type": 13,
    "address_range": 41,
    "service_type": 6,
    "source_addr": 21,
    "destination_addr": 21,
    "schedule_delivery_time": 17,
    "validity_period": 17,
    "message_id": 65,
    "final_date": 17,
    "esme_addr": 65,
}
WIDE_ADDRESS_CLASSES = (DataSM, AlertNotification)  # their addresses may be 65 octets


def cstrings(size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=size - 1)


octet = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)


def typed_tlv() -> st.SearchStrategy[tuple[int, TLVValue]]:
    """A standard tag with a value of its kind, or a vendor/unknown tag with bytes."""

    def value_for(tag: int) -> st.SearchStrategy[tuple[int, TLVValue]]:
        kind = KINDS[tag]
        values: st.SearchStrategy[TLVValue]
        if kind is Kind.CSTRING:
            values = cstrings(200)
        elif kind is Kind.OCTETS:
            values = st.binary(max_size=40)
        else:
            values = st.integers(0, (1 << (8 * kind.value)) - 1)
        return values.map(lambda value: (tag, value))

    standard = st.sampled_from(sorted(KINDS)).flatmap(value_for)
    vendor = st.tuples(st.integers(0, 0xFFFF).filter(lambda tag: tag not in KINDS), st.binary(max_size=40))
    return st.one_of(standard, vendor)


tlv_lists = st.lists(typed_tlv(), max_size=6).map(TLVs)
destinations = st.one_of(
    st.builds(SMEAddress, octet, octet, cstrings(21)),
    st.builds(DistributionList, cstrings(21)),
)
unsuccess = st.builds(UnsuccessSME, octet, octet, cstrings(21), u32)


def pdu_strategy(cls: type[PDU]) -> st.SearchStrategy[PDU]:
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in dataclasses.fields(cls):
        name = field.name
        if name in ("sequence_number", "command_status"):
            fields[name] = st.one_of(st.just(0), u32)
        elif name in CSTRING_SIZES:
            wide = cls in WIDE_ADDRESS_CLASSES and name in ("source_addr", "destination_addr")
            fields[name] = cstrings(65 if wide else CSTRING_SIZES[name])
        elif name == "short_message":
            fields[name] = st.binary(max_size=MAX_SHORT_MESSAGE)
        elif name == "tlvs":
            fields[name] = tlv_lists
        elif name == "dest_addresses":
            fields[name] = st.lists(destinations, max_size=8).map(tuple)
        elif name == "unsuccess_smes":
            fields[name] = st.lists(unsuccess, max_size=8).map(tuple)
        else:
            assert isinstance(field.default, int), name
            fields[name] = octet
    return st.builds(cls, **fields)


any_pdu = st.sampled_from(sorted(PDU_CLASSES.values(), key=lambda cls: cls.command_id)).flatmap(pdu_strategy)


def drain_tolerantly(framer: Framer) -> list[PDU]:
    """Every PDU the framer yields; skippable errors are stepped over, a broken framer ends it."""
    pdus: list[PDU] = []
    while True:
        try:
            pdu = framer.next_pdu()
        except RemoteProtocolError:
            if framer.broken:
                return pdus
            continue
        if pdu is None:
            return pdus
        pdus.append(pdu)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:stop] for start, stop in zip(points, points[1:], strict=False)]


@given(any_pdu)
def test_generated_pdus_round_trip(pdu: PDU) -> None:
    wire = encode(pdu)
    assert decode(wire) == (pdu, len(wire))
    assert decode(wire + b"\x00\x00\x00\x10") == (pdu, len(wire))


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=30)), max_size=6))
def test_any_tlv_bytes_round_trip_byte_for_byte(raw_tlvs: list[tuple[int, bytes]]) -> None:
    wire = encode(
        SubmitSM(
            sequence_number=1,
            destination_addr="447700900123",
            tlvs=TLVs(list[tuple[int, TLVValue]](raw_tlvs)),
        )
    )
    decoded, _ = decode(wire)  # type: ignore[misc]
    assert isinstance(decoded, SubmitSM)
    assert encode(decoded) == wire
    assert [tag for tag, _ in decoded.tlvs] == [tag for tag, _ in raw_tlvs]


@given(st.lists(any_pdu, min_size=1, max_size=5), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_chunking_gives_the_same_pdus(pdus: list[PDU], cuts: list[int]) -> None:
    stream = b"".join(encode(pdu) for pdu in pdus)
    framer = Framer()
    received: list[PDU] = []
    for chunk in chunked(stream, cuts):
        framer.feed(chunk)
        while (pdu := framer.next_pdu()) is not None:
            received.append(pdu)
    assert received == pdus
    assert framer.buffered == 0


@given(st.binary(max_size=600), st.lists(st.integers(0, 10_000), max_size=10))
def test_random_bytes_only_raise_remote_protocol_error(data: bytes, cuts: list[int]) -> None:
    framer = Framer()
    for chunk in chunked(data, cuts):
        framer.feed(chunk)
        drain_tolerantly(framer)
    try:
        decode(data)
    except RemoteProtocolError:
        pass


def mutations() -> st.SearchStrategy[tuple[str, int, int]]:
    return st.tuples(
        st.sampled_from(["flip", "insert", "delete", "set", "truncate", "length"]),
        st.integers(0, 10_000),
        st.integers(0, 255),
    )


def mutate(data: bytes, operations: list[tuple[str, int, int]]) -> bytes:
    buffer = bytearray(data)
    for operation, where, value in operations:
        position = where % (len(buffer) + 1)
        if operation == "flip" and position < len(buffer):
            buffer[position] ^= 1 << (value % 8)
        elif operation == "insert":
            buffer.insert(position, value)
        elif operation == "delete" and position < len(buffer):
            del buffer[position]
        elif operation == "set" and position < len(buffer):
            buffer[position] = value
        elif operation == "truncate":
            del buffer[position:]
        elif operation == "length" and len(buffer) >= 4:
            # nudge the first command_length by a small amount either way
            length = int.from_bytes(buffer[:4], "big") + (value % 9) - 4
            buffer[:4] = (length % (1 << 32)).to_bytes(4, "big")
    return bytes(buffer)


@given(
    st.lists(any_pdu, min_size=1, max_size=3),
    st.lists(mutations(), min_size=1, max_size=4),
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_mutated_encodings_only_raise_remote_protocol_error(
    pdus: list[PDU], operations: list[tuple[str, int, int]], cuts: list[int]
) -> None:
    data = mutate(b"".join(encode(pdu) for pdu in pdus), operations)
    framer = Framer()
    received: list[PDU] = []
    for chunk in chunked(data, cuts):
        framer.feed(chunk)
        received += drain_tolerantly(framer)
    # whatever was accepted can be written back and reads the same
    for pdu in received:
        short_message = getattr(pdu, "short_message", b"")
        if len(short_message) > MAX_SHORT_MESSAGE:
            try:
                encode(pdu)
            except LocalProtocolError as error:
                assert "short_message" in str(error)
            continue
        assert decode(encode(pdu))[0] == pdu  # type: ignore[index]


@given(any_pdu, st.binary(max_size=40))
def test_a_pdu_followed_by_anything_decodes_alone(pdu: PDU, tail: bytes) -> None:
    wire = encode(pdu)
    assert decode(wire + tail) == (pdu, len(wire))
