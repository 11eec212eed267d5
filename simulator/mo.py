"""MO messages as a handset sends them: text -> data_coding -> deliver_sm parts (UDH 8-bit), any order."""

from __future__ import annotations

import random
from dataclasses import dataclass

from smpp.concat import split_message
from smpp.constants import NPI, TON, DataCoding
from smpp.errors import LocalProtocolError
from smpp.pdu import DeliverSM
from smpp.text import (
    MAX_PARTS,
    ConcatMode,
    UnencodableTextError,
    alphabet_for,
    choose_encoding,
    encode_text,
    segment_capacity,
    unit_size,
)

ENCODINGS: dict[str, int | None] = {
    "auto": None,
    "gsm7": DataCoding.DEFAULT,
    "ucs2": DataCoding.UCS2,
    "latin1": DataCoding.LATIN1,
}
ORDERS = ("in_order", "reverse", "shuffle")


def _single_part_octets(data_coding: int) -> int:
    alphabet = alphabet_for(data_coding)
    assert alphabet is not None
    return segment_capacity(alphabet, ConcatMode.UDH8, multipart=False) * unit_size(alphabet)


#: Octets of encoded text that still fit one SMS, by data_coding: such an MO is one part without UDH.
_SINGLE_PART_OCTETS = {
    int(coding): _single_part_octets(coding) for coding in ENCODINGS.values() if coding is not None
}
# Enum members read once: a class attribute look-up on an Enum costs as much as a small function call.
_INTERNATIONAL = TON.INTERNATIONAL
_UNKNOWN_TON = TON.UNKNOWN
_ISDN = NPI.ISDN


class MOError(ValueError):
    """An MO that cannot be built; the message says why (it goes back to the API caller as a 400)."""


@dataclass(frozen=True, slots=True)
class MOMessage:
    msisdn: str
    short_code: str
    text: str
    data_coding: int
    #: The deliver_sm PDUs in the order they will be sent.
    parts: tuple[DeliverSM, ...]


def build_mo(
    msisdn: str,
    short_code: str,
    text: str,
    *,
    encoding: str = "auto",
    order: str = "in_order",
    max_parts: int = MAX_PARTS,
    reference: int = 0,
    rng: random.Random | None = None,
) -> MOMessage:
    """The deliver_sm parts of one MO. Raises :class:`MOError` for empty text, a coding that cannot carry
    the text, or a text needing more than ``max_parts`` parts."""
    data_coding, parts = mo_parts(
        msisdn,
        short_code,
        text,
        encoding=encoding,
        order=order,
        max_parts=max_parts,
        reference=reference,
        rng=rng,
    )
    return MOMessage(msisdn=msisdn, short_code=short_code, text=text, data_coding=data_coding, parts=parts)


def mo_parts(
    msisdn: str,
    short_code: str,
    text: str,
    *,
    encoding: str = "auto",
    order: str = "in_order",
    max_parts: int = MAX_PARTS,
    reference: int = 0,
    rng: random.Random | None = None,
) -> tuple[int, tuple[DeliverSM, ...]]:
    """:func:`build_mo` without the :class:`MOMessage` (for callers that only send the parts): the
    data_coding and the deliver_sm parts in sending order. Raises :class:`MOError` like it."""
    if not text:
        raise MOError("text: must not be empty")
    if encoding not in ENCODINGS:
        raise MOError(f"encoding: {encoding!r} is not one of {', '.join(ENCODINGS)}")
    if order not in ORDERS:
        raise MOError(f"order: {order!r} is not one of {', '.join(ORDERS)}")
    if not 1 <= max_parts <= MAX_PARTS:
        raise MOError(f"max_parts: must be 1-{MAX_PARTS}, got {max_parts}")
    data_coding = ENCODINGS[encoding]
    if data_coding is None:
        data_coding = choose_encoding(text)
    try:
        encoded = encode_text(text, data_coding)
        if len(encoded) <= _SINGLE_PART_OCTETS.get(data_coding, 0):
            # Most MOs: one part with neither UDH nor TLVs, as split_message would give, and no order.
            return data_coding, (
                DeliverSM(
                    source_addr_ton=_INTERNATIONAL,
                    source_addr_npi=_ISDN,
                    source_addr=msisdn,
                    dest_addr_ton=_UNKNOWN_TON,
                    dest_addr_npi=_ISDN,
                    destination_addr=short_code,
                    data_coding=data_coding,
                    short_message=encoded,
                ),
            )
        segments = split_message(encoded, data_coding, mode=ConcatMode.UDH8, reference=reference & 0xFF)
    except UnencodableTextError as exc:
        raise MOError(f"text: {exc} (encoding {encoding})") from None
    except LocalProtocolError as exc:
        raise MOError(f"text: too long: {exc}") from None
    if len(segments) > max_parts:
        raise MOError(f"text: too long: needs {len(segments)} parts, at most {max_parts} allowed")
    parts = [
        DeliverSM(
            source_addr_ton=_INTERNATIONAL,
            source_addr_npi=_ISDN,
            source_addr=msisdn,
            dest_addr_ton=_UNKNOWN_TON,
            dest_addr_npi=_ISDN,
            destination_addr=short_code,
            esm_class=segment.esm_class_flags,
            data_coding=data_coding,
            short_message=segment.short_message,
            tlvs=segment.tlvs,
        )
        for segment in segments
    ]
    if order == "reverse":
        parts.reverse()
    elif order == "shuffle":
        (rng or random.Random()).shuffle(parts)
    return data_coding, tuple(parts)
