"""Every MT the simulated carriers accepted, in a bounded ring buffer, decoded only when someone looks.

The hot path appends one small record; text decoding, UDH parsing and reassembly happen when the
control API lists messages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import (
    Any,
    NotRequired,  # pydantic reads them on Python 3.11
)

from typing_extensions import TypedDict

from simulator.pdu_json import MessageContent, as_message, command_name, message_content, tlvs_to_dict
from smpp.concat import Reassembler, user_data
from smpp.pdu import DataSM, SMEAddress, SubmitMulti, SubmitSM

MTPDU = SubmitSM | DataSM | SubmitMulti


class MT(MessageContent):
    """One MT part as the control API lists it: the PDU's fields and its decoded content."""

    id: int
    carrier: str
    system_id: str
    received_at: float
    command: str
    message_id: str
    source: str
    destinations: list[str]
    esm_class: int
    registered_delivery: int
    tlvs: dict[str, Any]


class Message(TypedDict):
    """An MT as people read it: its parts joined; an incomplete one says which parts are missing."""

    carrier: str
    source: str
    destinations: list[str]
    received_at: float
    text: str
    encoding: str
    segments: int
    complete: bool
    missing_parts: list[int]
    part_ids: list[int]
    message_ids: list[str]


class MTList(TypedDict):
    """``GET /api/mts``: the parts (``view=parts``) or the messages (``view=messages``)."""

    last_id: int
    mts: NotRequired[list[MT]]
    messages: NotRequired[list[Message]]


class MTRecord:
    __slots__ = ("id", "carrier", "system_id", "received_at", "pdu", "message_id")

    def __init__(
        self, record_id: int, carrier: str, system_id: str, received_at: float, pdu: MTPDU, message_id: str
    ) -> None:
        self.id = record_id
        self.carrier = carrier
        self.system_id = system_id
        #: Wall-clock time (Unix seconds).
        self.received_at = received_at
        self.pdu = pdu
        self.message_id = message_id

    @property
    def destinations(self) -> tuple[str, ...]:
        pdu = self.pdu
        if isinstance(pdu, SubmitMulti):
            return tuple(d.address for d in pdu.dest_addresses if isinstance(d, SMEAddress))
        return (pdu.destination_addr,)

    def to_dict(self) -> MT:
        pdu = self.pdu
        return {
            "id": self.id,
            "carrier": self.carrier,
            "system_id": self.system_id,
            "received_at": self.received_at,
            "command": command_name(pdu),
            "message_id": self.message_id,
            "source": pdu.source_addr,
            "destinations": list(self.destinations),
            "esm_class": pdu.esm_class,
            "registered_delivery": pdu.registered_delivery,
            "tlvs": tlvs_to_dict(pdu.tlvs),
            **message_content(pdu),
        }


class MTStore:
    def __init__(self, size: int) -> None:
        self._records: deque[MTRecord] = deque(maxlen=size)
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._records)

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    def add(self, carrier: str, system_id: str, received_at: float, pdu: MTPDU, message_id: str) -> MTRecord:
        record = MTRecord(self._next_id, carrier, system_id, received_at, pdu, message_id)
        self._next_id += 1
        self._records.append(record)
        return record

    def clear(self) -> None:
        """Forget every MT; ids keep growing so a client polling with ``since_id`` sees no reuse."""
        self._records.clear()

    def query(
        self,
        *,
        carrier: str | None = None,
        destination: str | None = None,
        source: str | None = None,
        since_id: int | None = None,
        since_time: float | None = None,
        limit: int = 100,
    ) -> list[MTRecord]:
        """The oldest ``limit`` records matching every filter (newer than ``since_id`` / ``since_time``)."""
        out: list[MTRecord] = []
        records: Iterable[MTRecord] = self._records
        if since_id is not None and self._records:
            skip = since_id - self._records[0].id + 1
            if skip > 0:
                records = list(self._records)[skip:]
        for record in records:
            if since_id is not None and record.id <= since_id:
                continue
            if since_time is not None and record.received_at < since_time:
                continue
            if carrier is not None and record.carrier != carrier:
                continue
            if destination is not None and destination not in record.destinations:
                continue
            if source is not None and record.pdu.source_addr != source:
                continue
            out.append(record)
            if len(out) >= limit:
                break
        return out


def assemble(records: list[MTRecord]) -> list[Message]:
    """Messages as people read them: concatenated parts joined (in any arrival order), singles as they are.

    Each message lists its part record ids; an incomplete one says which parts are missing.
    """
    reassembler: Reassembler[MTRecord] = Reassembler(timeout=float("inf"), max_pending=max(1, len(records)))
    messages: list[tuple[int, Message]] = []
    for record in records:
        message = as_message(record.pdu)
        info, body = user_data(message)
        if info is None:
            content = message_content(record.pdu)
            messages.append(
                (record.id, _message(record, [record], content["text"], content["encoding"], 1, ()))
            )
            continue
        key = (record.carrier, record.pdu.source_addr, record.destinations)
        for done in reassembler.add(key, info, body, message.data_coding, 0.0, record):
            messages.append(
                _assembled(done.items, done.text, done.data_coding, done.total_parts, done.missing_parts)
            )
    for pending in reassembler.drain():
        messages.append(
            _assembled(
                pending.items, pending.text, pending.data_coding, pending.total_parts, pending.missing_parts
            )
        )
    messages.sort(key=lambda item: item[0])
    return [message for _, message in messages]


def _assembled(
    items: tuple[MTRecord, ...], text: str, data_coding: int, total: int, missing: tuple[int, ...]
) -> tuple[int, Message]:
    parts = sorted(items, key=lambda r: r.id)
    encoding = message_content(parts[0].pdu)["encoding"]
    del data_coding
    return parts[0].id, _message(parts[0], parts, text, encoding, total, missing)


def _message(
    first: MTRecord, parts: list[MTRecord], text: str, encoding: str, total: int, missing: tuple[int, ...]
) -> Message:
    return {
        "carrier": first.carrier,
        "source": first.pdu.source_addr,
        "destinations": list(first.destinations),
        "received_at": first.received_at,
        "text": text,
        "encoding": encoding,
        "segments": total,
        "complete": not missing,
        "missing_parts": list(missing),
        "part_ids": [record.id for record in parts],
        "message_ids": [record.message_id for record in parts],
    }
