"""Long messages: split for sending (UDH 8/16-bit, SAR TLVs, message_payload) and reassemble on receipt.

The ``Reassembler`` is sans-IO: the caller passes the time in and calls ``expire`` on its own timer
(``next_deadline`` tells when). Parts of a message that never completes come back flagged incomplete,
with the caller's per-part handles, so nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from smpp._fastinit import fast_init
from smpp.constants import ESMClass
from smpp.errors import LocalProtocolError
from smpp.pdu import DataSM, DeliverSM, SubmitSM
from smpp.text import (
    MAX_PARTS,
    MAX_PAYLOAD_OCTETS,
    MULTIBYTE_ALPHABETS,
    Alphabet,
    ConcatMode,
    alphabet_for,
    cut_points,
    decode_text,
    encode_text,
    segment_capacity,
    split_text_by_chars,
    unit_size,
)
from smpp.tlv import EMPTY_TLVS, Tag, TLVs

__all__ = [
    "ConcatInfo",
    "ConcatMode",
    "FlushReason",
    "InformationElement",
    "Ports",
    "Reassembled",
    "Reassembler",
    "Segment",
    "UDH",
    "concat_info",
    "parse_udh",
    "split_message",
    "user_data",
]

IEI_CONCAT_8BIT = 0x00
IEI_PORTS_8BIT = 0x04
IEI_PORTS_16BIT = 0x05
IEI_CONCAT_16BIT = 0x08

_MAX_REFERENCE = {
    ConcatMode.UDH8: 0xFF,
    ConcatMode.UDH16: 0xFFFF,
    ConcatMode.SAR: 0xFFFF,
    ConcatMode.PAYLOAD: 0xFFFF,
}
#: Octets of unpacked short_message that one SMS without UDH holds, per alphabet (the mode plays no part).
_SINGLE_OCTETS = {
    alphabet: segment_capacity(alphabet, ConcatMode.UDH8, multipart=False) * unit_size(alphabet)
    for alphabet in Alphabet
}


@dataclass(frozen=True, slots=True)
class ConcatInfo:
    """Where one part belongs: message reference, number of parts, this part's number (1-based)."""

    reference: int
    total: int
    part_number: int
    #: How the part said so: UDH8, UDH16 or SAR.
    scheme: ConcatMode

    def __post_init__(self) -> None:
        if not 0 <= self.reference <= 0xFFFF:
            raise LocalProtocolError(f"concatenation reference {self.reference} is not 0-65535")
        if not 1 <= self.part_number <= self.total <= MAX_PARTS:
            raise LocalProtocolError(f"part {self.part_number} of {self.total} is not a valid part")


@fast_init
@dataclass(frozen=True, slots=True)
class Segment:
    """One submit PDU's worth of a message: put these fields into the PDU as they are."""

    short_message: bytes
    #: OR into esm_class: UDHI (0x40) when short_message starts with a UDH, else 0.
    esm_class_flags: int
    #: SAR TLVs, or message_payload; empty otherwise.
    tlvs: TLVs
    part_number: int
    total_parts: int


def split_message(
    content: str | bytes, data_coding: int, *, mode: ConcatMode | str, reference: int
) -> list[Segment]:
    """Split a message into segments to submit.

    ``content`` is text (encoded for ``data_coding``) or octets already encoded (unpacked septets for
    GSM-7). A message that fits one SMS is one segment with neither UDH nor TLVs. Otherwise parts
    never split a GSM escape pair or a UTF-16 surrogate pair; ``reference`` (0-255 for UDH8, 0-65535
    otherwise) is the caller's per-destination counter. PAYLOAD mode gives one segment carrying the
    whole message in message_payload. Raises ``LocalProtocolError`` for a bad reference, an unknown
    data_coding, text the coding cannot carry, or a message too long for its mode.
    """
    if type(mode) is not ConcatMode:
        mode = ConcatMode(mode)
    if not 0 <= reference <= _MAX_REFERENCE[mode]:
        raise LocalProtocolError(f"reference {reference} out of range 0-{_MAX_REFERENCE[mode]} for {mode}")
    alphabet = alphabet_for(data_coding)
    if alphabet is None:
        raise LocalProtocolError(f"cannot split a message with data_coding 0x{data_coding:02X}")
    data = encode_text(content, data_coding) if isinstance(content, str) else content
    if len(data) <= _SINGLE_OCTETS[alphabet]:
        return [Segment(data, 0, EMPTY_TLVS, 1, 1)]
    if mode is ConcatMode.PAYLOAD:
        if len(data) > MAX_PAYLOAD_OCTETS:
            raise LocalProtocolError(f"{len(data)} octets exceed the payload limit of {MAX_PAYLOAD_OCTETS}")
        return [
            Segment(
                short_message=b"",
                esm_class_flags=0,
                tlvs=TLVs([(Tag.MESSAGE_PAYLOAD, data)]),
                part_number=1,
                total_parts=1,
            )
        ]
    capacity = segment_capacity(alphabet, mode, multipart=True)
    if isinstance(content, str) and alphabet in MULTIBYTE_ALPHABETS:
        chunks = split_text_by_chars(content, alphabet, capacity)
    else:
        ends = cut_points(data, alphabet, capacity)
        chunks = [data[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]
    total = len(chunks)
    if total > MAX_PARTS:
        raise LocalProtocolError(f"message needs {total} parts; concatenation allows {MAX_PARTS}")
    return [_segment(chunk, mode, reference, number, total) for number, chunk in enumerate(chunks, start=1)]


def _segment(chunk: bytes, mode: ConcatMode, reference: int, number: int, total: int) -> Segment:
    if mode is ConcatMode.SAR:
        tlvs = TLVs(
            [
                (Tag.SAR_MSG_REF_NUM, reference),
                (Tag.SAR_TOTAL_SEGMENTS, total),
                (Tag.SAR_SEGMENT_SEQNUM, number),
            ]
        )
        return Segment(
            short_message=chunk, esm_class_flags=0, tlvs=tlvs, part_number=number, total_parts=total
        )
    if mode is ConcatMode.UDH8:
        udh = bytes([5, IEI_CONCAT_8BIT, 3, reference, total, number])
    else:
        udh = bytes([6, IEI_CONCAT_16BIT, 4, reference >> 8, reference & 0xFF, total, number])
    return Segment(
        short_message=udh + chunk,
        esm_class_flags=ESMClass.UDHI,
        tlvs=EMPTY_TLVS,
        part_number=number,
        total_parts=total,
    )


# --- user data header -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InformationElement:
    iei: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Ports:
    """Application port addressing (IEI 0x04 / 0x05)."""

    destination: int
    source: int


@dataclass(frozen=True, slots=True)
class UDH:
    """A parsed user data header: every information element, in order, plus the ones we interpret."""

    elements: tuple[InformationElement, ...]

    @property
    def concat(self) -> ConcatInfo | None:
        """The first well-formed concatenation element (8- or 16-bit reference), if any."""
        for element in self.elements:
            data = element.data
            if element.iei == IEI_CONCAT_8BIT and len(data) == 3:
                reference, total, number = data[0], data[1], data[2]
                scheme = ConcatMode.UDH8
            elif element.iei == IEI_CONCAT_16BIT and len(data) == 4:
                reference, total, number = (data[0] << 8) | data[1], data[2], data[3]
                scheme = ConcatMode.UDH16
            else:
                continue
            if 1 <= number <= total:
                return ConcatInfo(reference=reference, total=total, part_number=number, scheme=scheme)
        return None

    @property
    def ports(self) -> Ports | None:
        for element in self.elements:
            data = element.data
            if element.iei == IEI_PORTS_8BIT and len(data) == 2:
                return Ports(destination=data[0], source=data[1])
            if element.iei == IEI_PORTS_16BIT and len(data) == 4:
                return Ports(destination=(data[0] << 8) | data[1], source=(data[2] << 8) | data[3])
        return None

    def encode(self) -> bytes:
        """The header as it starts short_message: UDHL, then each IEI, length and data."""
        body = b"".join(bytes([e.iei, len(e.data)]) + e.data for e in self.elements)
        return bytes([len(body)]) + body


def parse_udh(short_message: bytes) -> tuple[UDH | None, bytes]:
    """Split a UDH off ``short_message``: ``(udh, payload)``. Never raises.

    A header whose lengths run past the data is malformed: ``(None, short_message)`` unchanged.
    """
    if not short_message:
        return None, short_message
    end = 1 + short_message[0]
    if end > len(short_message):
        return None, short_message
    elements: list[InformationElement] = []
    position = 1
    while position < end:
        if position + 2 > end:
            return None, short_message
        iei, length = short_message[position], short_message[position + 1]
        data_end = position + 2 + length
        if data_end > end:
            return None, short_message
        elements.append(InformationElement(iei=iei, data=short_message[position + 2 : data_end]))
        position = data_end
    return UDH(elements=tuple(elements)), short_message[end:]


def user_data(pdu: DeliverSM | DataSM | SubmitSM) -> tuple[ConcatInfo | None, bytes]:
    """A PDU's concatenation info and message octets, UDH removed.

    The octets come from short_message, or from message_payload when short_message is empty (always
    for data_sm). Concatenation comes from the UDH when esm_class has UDHI, else from the SAR TLVs.
    A "part 1 of 1" is a whole message: no info.
    """
    body = b"" if isinstance(pdu, DataSM) else pdu.short_message
    if not body:
        body = pdu.tlvs.get_bytes(Tag.MESSAGE_PAYLOAD) or b""
    info: ConcatInfo | None = None
    if pdu.esm_class & ESMClass.UDHI:
        udh, rest = parse_udh(body)
        if udh is not None:
            body, info = rest, udh.concat
    if info is None:
        info = _sar_info(pdu.tlvs)
    if info is not None and info.total == 1:
        info = None
    return info, body


def concat_info(pdu: DeliverSM | DataSM | SubmitSM) -> ConcatInfo | None:
    """Concatenation info from the UDH (esm_class with UDHI) or SAR TLVs; ``None`` for a whole message."""
    return user_data(pdu)[0]


def _sar_info(tlvs: TLVs) -> ConcatInfo | None:
    reference = tlvs.get_int(Tag.SAR_MSG_REF_NUM)
    total = tlvs.get_int(Tag.SAR_TOTAL_SEGMENTS)
    number = tlvs.get_int(Tag.SAR_SEGMENT_SEQNUM)
    if reference is None or total is None or number is None:
        return None
    if not (0 <= reference <= 0xFFFF and 1 <= number <= total <= MAX_PARTS):
        return None
    return ConcatInfo(reference=reference, total=total, part_number=number, scheme=ConcatMode.SAR)


# --- reassembly ---------------------------------------------------------------------------------------------

ItemT = TypeVar("ItemT")


class FlushReason(Enum):
    COMPLETE = "complete"
    #: The first part is older than the timeout.
    TIMEOUT = "timeout"
    #: More messages were pending than ``max_pending`` allows; the oldest went out.
    EVICTED = "evicted"
    #: ``drain()`` emptied the reassembler (shutdown).
    DRAINED = "drained"


@dataclass(frozen=True, slots=True)
class Reassembled(Generic[ItemT]):
    """A message out of the reassembler: whole, or incomplete with what arrived."""

    key: Hashable
    reference: int
    total_parts: int
    #: Part numbers that arrived, ascending.
    received_parts: tuple[int, ...]
    #: Part numbers that never arrived, ascending (empty when complete).
    missing_parts: tuple[int, ...]
    #: Payloads of the received parts joined in part order (missing parts are simply absent).
    payload: bytes
    data_coding: int
    #: The caller's handle of every part received, duplicates included, in arrival order.
    items: tuple[ItemT, ...]
    reason: FlushReason
    #: ``now`` when the first part arrived.
    first_seen: float

    @property
    def complete(self) -> bool:
        return not self.missing_parts

    @property
    def text(self) -> str:
        """The joined payload decoded (after joining, so a pair split across parts survives)."""
        return decode_text(self.payload, self.data_coding)


@dataclass(slots=True)
class _Pending(Generic[ItemT]):
    key: Hashable
    reference: int
    total: int
    first_seen: float
    parts: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    items: list[ItemT] = field(default_factory=list)


class Reassembler(Generic[ItemT]):
    """Joins message parts that arrive in any order, interleaved across senders.

    Parts belong together when they share the caller's ``key`` (e.g. source, destination, carrier),
    the reference and the number of parts. A repeated part number is ignored (its item is kept, so
    the caller can still acknowledge it).
    """

    def __init__(self, timeout: float, max_pending: int) -> None:
        if timeout <= 0:
            raise LocalProtocolError(f"timeout must be positive, not {timeout}")
        if max_pending < 1:
            raise LocalProtocolError(f"max_pending must be at least 1, not {max_pending}")
        self.timeout = timeout
        self.max_pending = max_pending
        # Insertion order is arrival order of first parts, so the oldest pending is always first.
        self._pending: dict[tuple[Hashable, int, int], _Pending[ItemT]] = {}

    def __len__(self) -> int:
        """Messages waiting for parts."""
        return len(self._pending)

    def add(
        self, key: Hashable, info: ConcatInfo, payload: bytes, data_coding: int, now: float, item: ItemT
    ) -> list[Reassembled[ItemT]]:
        """Take one part. Returns what leaves the reassembler because of it: the whole message when
        this was its last missing part, and any oldest pending messages evicted (incomplete) because
        more than ``max_pending`` are waiting. Usually an empty list or one complete message."""
        slot = (key, info.reference, info.total)
        pending = self._pending.get(slot)
        if pending is None:
            pending = _Pending(key=key, reference=info.reference, total=info.total, first_seen=now)
            self._pending[slot] = pending
        pending.items.append(item)
        pending.parts.setdefault(info.part_number, (payload, data_coding))
        out: list[Reassembled[ItemT]] = []
        if len(pending.parts) == pending.total:
            del self._pending[slot]
            out.append(self._flush(pending, FlushReason.COMPLETE))
        while len(self._pending) > self.max_pending:
            oldest = next(iter(self._pending))
            out.append(self._flush(self._pending.pop(oldest), FlushReason.EVICTED))
        return out

    def expire(self, now: float) -> list[Reassembled[ItemT]]:
        """Flush, incomplete, every message whose first part arrived ``timeout`` or more seconds ago."""
        out: list[Reassembled[ItemT]] = []
        while self._pending:
            slot, pending = next(iter(self._pending.items()))
            if now - pending.first_seen < self.timeout:
                break
            del self._pending[slot]
            out.append(self._flush(pending, FlushReason.TIMEOUT))
        return out

    def next_deadline(self) -> float | None:
        """When the oldest pending message times out (same clock as ``now``), or ``None`` if none wait."""
        for pending in self._pending.values():
            return pending.first_seen + self.timeout
        return None

    def drain(self) -> list[Reassembled[ItemT]]:
        """Flush every pending message as incomplete (at shutdown), oldest first."""
        out = [self._flush(pending, FlushReason.DRAINED) for pending in self._pending.values()]
        self._pending.clear()
        return out

    @staticmethod
    def _flush(pending: _Pending[ItemT], reason: FlushReason) -> Reassembled[ItemT]:
        received = tuple(sorted(pending.parts))
        missing = tuple(n for n in range(1, pending.total + 1) if n not in pending.parts)
        # The coding of part 1 when it arrived, else of the first part that did.
        first = pending.parts.get(1) or next(iter(pending.parts.values()))
        return Reassembled(
            key=pending.key,
            reference=pending.reference,
            total_parts=pending.total,
            received_parts=received,
            missing_parts=missing,
            payload=b"".join(pending.parts[n][0] for n in received),
            data_coding=first[1],
            items=tuple(pending.items),
            reason=reason,
            first_seen=pending.first_seen,
        )
