"""PDUs as JSON-ready dicts: every field by name, TLVs by tag name, text decoded, UDH explained.

Used by the PDU trace and the MT list; never on the hot path unless tracing is on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from typing_extensions import TypedDict  # pydantic reads its annotations on Python 3.11

from smpp.concat import UDH, ConcatInfo, parse_udh, user_data
from smpp.constants import CommandID, ESMClass, status_name
from smpp.pdu import PDU, DataSM, DeliverSM, DistributionList, SMEAddress, SubmitMulti, SubmitSM
from smpp.text import alphabet_for, decode_text
from smpp.tlv import Tag, TLVs


def command_name(pdu: PDU) -> str:
    """``submit_sm_resp`` for a ``SubmitSMResp``: the SMPP name of its command_id."""
    try:
        return CommandID(pdu.command_id).name.lower()
    except ValueError:
        return f"0x{pdu.command_id:08x}"


def tag_name(tag: int) -> str:
    try:
        return Tag(tag).name.lower()
    except ValueError:
        return f"0x{tag:04x}"


def tlvs_to_dict(tlvs: TLVs) -> dict[str, Any]:
    return {tag_name(tag): value.hex() if isinstance(value, bytes) else value for tag, value in tlvs}


def udh_to_dict(udh: UDH) -> dict[str, Any]:
    concat = udh.concat
    return {
        "elements": [{"iei": element.iei, "data": element.data.hex()} for element in udh.elements],
        "concat": None if concat is None else concat_to_dict(concat),
    }


def concat_to_dict(info: ConcatInfo) -> dict[str, Any]:
    return {
        "reference": info.reference,
        "total": info.total,
        "part_number": info.part_number,
        "scheme": str(info.scheme),
    }


def as_message(pdu: SubmitSM | DeliverSM | DataSM | SubmitMulti) -> SubmitSM | DeliverSM | DataSM:
    """submit_multi's message fields in a submit_sm, so one text decoder serves every PDU."""
    if isinstance(pdu, SubmitMulti):
        return SubmitSM(
            esm_class=pdu.esm_class,
            data_coding=pdu.data_coding,
            short_message=pdu.short_message,
            tlvs=pdu.tlvs,
        )
    return pdu


class MessageContent(TypedDict):
    data_coding: int
    encoding: str
    text: str
    udh: dict[str, Any] | None
    concat: dict[str, Any] | None
    segments: int


def message_content(pdu: SubmitSM | DeliverSM | DataSM | SubmitMulti) -> MessageContent:
    """Text, coding, UDH and concatenation info of a message-carrying PDU."""
    message = as_message(pdu)
    info, body = user_data(message)
    udh = None
    if message.esm_class & ESMClass.UDHI:
        raw = message.short_message if not isinstance(message, DataSM) else b""
        raw = raw or (message.tlvs.get_bytes(Tag.MESSAGE_PAYLOAD) or b"")
        udh, _ = parse_udh(raw)
    alphabet = alphabet_for(message.data_coding)
    return {
        "data_coding": message.data_coding,
        "encoding": alphabet.value if alphabet is not None else f"unknown (0x{message.data_coding:02x})",
        "text": decode_text(body, message.data_coding),
        "udh": None if udh is None else udh_to_dict(udh),
        "concat": None if info is None else concat_to_dict(info),
        "segments": 1 if info is None else info.total,
    }


def pdu_to_dict(pdu: PDU) -> dict[str, Any]:
    """Every field of ``pdu``; bytes as hex, TLVs by name, and the decoded text of messages."""
    out: dict[str, Any] = {
        "command": command_name(pdu),
        "command_status": status_name(pdu.command_status),
        "sequence_number": pdu.sequence_number,
    }
    for field in dataclasses.fields(pdu):
        if field.name in ("sequence_number", "command_status"):
            continue
        value = getattr(pdu, field.name)
        if field.name == "password":
            value = "********"
        elif isinstance(value, TLVs):
            value = tlvs_to_dict(value)
        elif isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, tuple):
            value = [_address(item) for item in value]
        out[field.name] = value
    if isinstance(pdu, SubmitSM | DeliverSM | DataSM | SubmitMulti):
        content = message_content(pdu)
        out["text"] = content["text"]
        out["encoding"] = content["encoding"]
        if content["udh"] is not None:
            out["udh"] = content["udh"]
    return out


def _address(item: object) -> object:
    if isinstance(item, SMEAddress):
        return {"ton": item.ton, "npi": item.npi, "address": item.address}
    if isinstance(item, DistributionList):
        return {"distribution_list": item.name}
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    return item
