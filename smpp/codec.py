"""SMPP 3.4 wire codec: PDU objects <-> bytes, and incremental framing. Sans-IO.

Hot path: every PDU class has a hand-written encoder and decoder picked by a dict lookup on
``command_id``; integers go through precompiled ``struct.Struct`` objects, C-octet strings are found
with ``bytes.find(b"\\0")`` and a PDU body is built with a single ``bytes.join``.

C-octet strings are Latin-1 both ways, so every byte value survives. The maximum sizes checked on
encode are SMPP 3.4's and include the terminating NUL (``system_id`` 16 means 15 characters).
The decoder is tolerant where that is safe (a C-string shorter than its fixed size, an
``sm_length`` of 255, unknown command_status values) and strict where accepting would corrupt
data (a C-string without its NUL, a length that runs past the PDU, trailing bytes that are not
whole TLVs).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any

from smpp._fastinit import positional_factory
from smpp.constants import HEADER_SIZE, MAX_PDU_SIZE, RESPONSE_BIT, CommandStatus
from smpp.errors import LocalProtocolError, RemoteProtocolError
from smpp.pdu import (
    PDU,
    PDU_CLASSES,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSM,
    CancelSMResp,
    DataSM,
    DataSMResp,
    DeliverSM,
    DeliverSMResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    QuerySM,
    QuerySMResp,
    ReplaceSM,
    ReplaceSMResp,
    SMEAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSM,
    SubmitSMResp,
    Unbind,
    UnbindResp,
    UnsuccessSME,
)
from smpp.tlv import EMPTY_TLVS, KINDS, Kind, TLVs, TLVValue

__all__ = ["Framer", "decode", "decode_header", "encode"]

Buffer = bytes | bytearray

_HEADER = struct.Struct(">IIII")
_TLV_HEAD = struct.Struct(">HH")
_U8X2 = struct.Struct(">BB")
_U8X3 = struct.Struct(">BBB")
_U8X4 = struct.Struct(">BBBB")
_U8X5 = struct.Struct(">BBBBB")
_UNSUCCESS_TAIL = struct.Struct(">I")
_NUL = b"\0"

#: The longest short_message SMPP 3.4 allows (sm_length 0-254); longer text goes in message_payload.
MAX_SHORT_MESSAGE = 254
#: number_of_dests in submit_multi: "a maximum of 254 destination addresses are allowed".
MAX_DESTINATIONS = 254
_MAX_TLV_VALUE = 0xFFFF

# Precomputed views of smpp.tlv.KINDS for the TLV codec: integer width per tag, and C-string tags.
_TLV_INT_WIDTHS: dict[int, int] = {
    int(tag): kind.value for tag, kind in KINDS.items() if kind in (Kind.INT1, Kind.INT2, Kind.INT4)
}
_TLV_CSTRING_TAGS: frozenset[int] = frozenset(int(tag) for tag, kind in KINDS.items() if kind is Kind.CSTRING)
_TLV_INT_STRUCTS: dict[int, struct.Struct] = {
    1: struct.Struct(">HHB"),
    2: struct.Struct(">HHH"),
    4: struct.Struct(">HHI"),
}
#: One look-up per TLV on decode: the integer width of an integer tag, _TLV_CSTRING for a C-string tag.
_TLV_CSTRING = -1
_TLV_DECODE_KINDS: dict[int, int] = {**_TLV_INT_WIDTHS, **dict.fromkeys(_TLV_CSTRING_TAGS, _TLV_CSTRING)}

#: What to answer when a mandatory C-string has no NUL within its maximum size (SMPP 3.4 §5.1.3).
_FIELD_STATUS: dict[str, int] = {
    "system_id": CommandStatus.ESME_RINVSYSID,
    "password": CommandStatus.ESME_RINVPASWD,
    "system_type": CommandStatus.ESME_RINVSYSTYP,
    "service_type": CommandStatus.ESME_RINVSERTYP,
    "source_addr": CommandStatus.ESME_RINVSRCADR,
    "destination_addr": CommandStatus.ESME_RINVDSTADR,
    "message_id": CommandStatus.ESME_RINVMSGID,
    "schedule_delivery_time": CommandStatus.ESME_RINVSCHED,
    "validity_period": CommandStatus.ESME_RINVEXPIRY,
    "dl_name": CommandStatus.ESME_RINVDLNAME,
}


# --- errors -----------------------------------------------------------------------------------------


class _BodyError(Exception):
    """Raised inside a body decoder; ``decode`` turns it into a RemoteProtocolError with context."""

    def __init__(self, field: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.status = status
        self.detail = detail


def _remote_error(
    message: str, *, status: int, sequence_number: int | None, command_id: int | None, consumed: int | None
) -> RemoteProtocolError:
    return RemoteProtocolError(
        message, status=status, sequence_number=sequence_number, command_id=command_id, consumed=consumed
    )


def _truncated(field: str) -> _BodyError:
    return _BodyError(field, CommandStatus.ESME_RINVMSGLEN, "body ends inside this mandatory parameter")


def _local_error(pdu: PDU, field: str, detail: str) -> LocalProtocolError:
    return LocalProtocolError(
        f"cannot encode {type(pdu).__name__}.{field}: {detail}",
        sequence_number=pdu.sequence_number,
        command_id=pdu.command_id,
    )


# --- header -----------------------------------------------------------------------------------------


def decode_header(buffer: Buffer | memoryview) -> tuple[int, int, int, int] | None:
    """``(command_length, command_id, command_status, sequence_number)``, or None under 16 bytes."""
    if len(buffer) < HEADER_SIZE:
        return None
    length, command_id, status, sequence = _HEADER.unpack_from(buffer, 0)
    return length, command_id, status, sequence


def _bad_length(length: int, command_id: int, sequence_number: int) -> RemoteProtocolError:
    return _remote_error(
        f"command_length {length} outside {HEADER_SIZE}..{MAX_PDU_SIZE} (command_id 0x{command_id:08X}); "
        "framing is lost",
        status=CommandStatus.ESME_RINVCMDLEN,
        sequence_number=sequence_number,
        command_id=command_id,
        consumed=None,
    )


# --- decoding primitives ----------------------------------------------------------------------------


def _cstr(data: Buffer, pos: int, end: int, size: int, field: str) -> tuple[str, int]:
    """The C-octet string at ``pos`` (at most ``size`` bytes with its NUL) and the position after it."""
    limit = pos + size
    if limit > end:
        limit = end
    nul = data.find(_NUL, pos, limit)
    if nul < 0:
        if end - pos < size:
            raise _truncated(field)
        raise _BodyError(
            field,
            _FIELD_STATUS.get(field, CommandStatus.ESME_RINVPARLEN),
            f"no NUL within its maximum size of {size} octets",
        )
    if nul == pos:
        return "", pos + 1  # empty fields are common (service_type, times): skip slice and decode
    return data[pos:nul].decode("latin-1"), nul + 1


def _short_message(data: Buffer, pos: int, end: int) -> tuple[bytes, int]:
    """sm_length followed by short_message."""
    if pos >= end:
        raise _truncated("sm_length")
    stop = pos + 1 + data[pos]
    if stop > end:
        raise _BodyError(
            "short_message",
            CommandStatus.ESME_RINVMSGLEN,
            f"sm_length {data[pos]} runs past the end of the PDU",
        )
    return bytes(data[pos + 1 : stop]), stop


def _tlvs(data: Buffer, pos: int, end: int) -> TLVs:
    """Every TLV from ``pos`` to ``end``, typed per ``KINDS`` when the wire length fits the kind."""
    if pos == end:
        return EMPTY_TLVS
    items: list[tuple[int, TLVValue]] = []
    index: dict[int, TLVValue] = {}
    kinds = _TLV_DECODE_KINDS
    while pos < end:
        if end - pos < 4:
            raise _BodyError(
                "tlvs",
                CommandStatus.ESME_RINVOPTPARSTREAM,
                f"{end - pos} trailing octets are not a whole TLV",
            )
        tag, length = _TLV_HEAD.unpack_from(data, pos)
        pos += 4
        stop = pos + length
        if stop > end:
            raise _BodyError(
                f"TLV 0x{tag:04X}",
                CommandStatus.ESME_RINVOPTPARSTREAM,
                f"length {length} runs past the end of the PDU",
            )
        kind = kinds.get(tag)
        value: TLVValue
        if kind == length:  # an integer tag whose length is its width
            value = data[pos] if length == 1 else int.from_bytes(data[pos:stop], "big")
        elif kind == _TLV_CSTRING and length and data.find(_NUL, pos, stop) == stop - 1:
            value = data[pos : stop - 1].decode("latin-1")
        else:
            # Vendor and unknown tags, and standard tags whose length does not fit their kind, stay raw.
            value = bytes(data[pos:stop])
        items.append((tag, value))
        if tag not in index:
            index[tag] = value
        pos = stop
    return TLVs._trusted(tuple(items), index)


def _no_tlvs(data: Buffer, pos: int, end: int) -> None:
    """The end of a PDU that has no optional parameters in SMPP 3.4.

    Some SMSCs append SMPP 5.0 TLVs (e.g. to submit_sm_resp); well-formed ones are skipped so the
    message_id is not lost, anything else is rejected.
    """
    if pos != end:
        _tlvs(data, pos, end)


# --- decoders: one per body layout ------------------------------------------------------------------
#
# A decoder's first argument is the PDU class, or for the hot layouts (short_message PDUs, message_id
# responses, empty bodies) a positional factory of it (smpp._fastinit): ``make(field values in order)``.

_Decoder = Callable[[Any, Buffer, int, int, int, int], PDU]


def _decode_empty(
    make: Callable[[int, int], PDU], data: Buffer, pos: int, end: int, seq: int, status: int
) -> PDU:
    _no_tlvs(data, pos, end)
    return make(seq, status)


def _decode_bind(
    cls: type[BindTransmitter | BindReceiver | BindTransceiver],
    data: Buffer,
    pos: int,
    end: int,
    seq: int,
    status: int,
) -> PDU:
    system_id, pos = _cstr(data, pos, end, 16, "system_id")
    password, pos = _cstr(data, pos, end, 9, "password")
    system_type, pos = _cstr(data, pos, end, 13, "system_type")
    if pos + 3 > end:
        raise _truncated("interface_version")
    interface_version, addr_ton, addr_npi = _U8X3.unpack_from(data, pos)
    address_range, pos = _cstr(data, pos + 3, end, 41, "address_range")
    _no_tlvs(data, pos, end)
    return cls(
        sequence_number=seq,
        command_status=status,
        system_id=system_id,
        password=password,
        system_type=system_type,
        interface_version=interface_version,
        addr_ton=addr_ton,
        addr_npi=addr_npi,
        address_range=address_range,
    )


def _decode_bind_resp(
    cls: type[BindTransmitterResp | BindReceiverResp | BindTransceiverResp],
    data: Buffer,
    pos: int,
    end: int,
    seq: int,
    status: int,
) -> PDU:
    system_id, pos = _cstr(data, pos, end, 16, "system_id")
    return cls(sequence_number=seq, command_status=status, system_id=system_id, tlvs=_tlvs(data, pos, end))


def _decode_outbind(cls: type[Outbind], data: Buffer, pos: int, end: int, seq: int, status: int) -> PDU:
    system_id, pos = _cstr(data, pos, end, 16, "system_id")
    password, pos = _cstr(data, pos, end, 9, "password")
    _no_tlvs(data, pos, end)
    return cls(sequence_number=seq, command_status=status, system_id=system_id, password=password)


class _Retry(Exception):
    """The one-pass reading of a PDU met something unusual: read it again field by field."""


def _decode_short_message_pdu(
    make: Callable[..., SubmitSM | DeliverSM], data: Buffer, pos: int, end: int, seq: int, status: int
) -> PDU:
    """submit_sm / deliver_sm. The well-formed PDU is read in one pass, each C-string with a single
    ``find`` bounded by its maximum size; on any doubt the field-by-field reading below runs again
    from the start and names what is wrong."""
    start = pos
    find = data.find
    try:
        nul = find(_NUL, pos, pos + 6)
        if nul < 0:
            raise _Retry
        service_type = data[pos:nul].decode("latin-1") if nul > pos else ""
        source_addr_ton, source_addr_npi = _U8X2.unpack_from(data, nul + 1)
        pos = nul + 3
        nul = find(_NUL, pos, pos + 21)
        if nul < 0:
            raise _Retry
        source_addr = data[pos:nul].decode("latin-1") if nul > pos else ""
        dest_addr_ton, dest_addr_npi = _U8X2.unpack_from(data, nul + 1)
        pos = nul + 3
        nul = find(_NUL, pos, pos + 21)
        if nul < 0:
            raise _Retry
        destination_addr = data[pos:nul].decode("latin-1") if nul > pos else ""
        esm_class, protocol_id, priority_flag = _U8X3.unpack_from(data, nul + 1)
        pos = nul + 4
        nul = find(_NUL, pos, pos + 17)
        if nul < 0:
            raise _Retry
        schedule_delivery_time = data[pos:nul].decode("latin-1") if nul > pos else ""
        pos = nul + 1
        nul = find(_NUL, pos, pos + 17)
        if nul < 0:
            raise _Retry
        validity_period = data[pos:nul].decode("latin-1") if nul > pos else ""
        registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id, sm_length = (
            _U8X5.unpack_from(data, nul + 1)
        )
        pos = nul + 6
        stop = pos + sm_length
        # Positions only grow, so every field read lies inside the PDU when the message does.
        if stop > end:
            raise _Retry
        short_message = bytes(data[pos:stop])
    except (_Retry, struct.error):
        return _decode_short_message_pdu_checked(make, data, start, end, seq, status)
    return make(
        seq,
        status,
        service_type,
        source_addr_ton,
        source_addr_npi,
        source_addr,
        dest_addr_ton,
        dest_addr_npi,
        destination_addr,
        esm_class,
        protocol_id,
        priority_flag,
        schedule_delivery_time,
        validity_period,
        registered_delivery,
        replace_if_present_flag,
        data_coding,
        sm_default_msg_id,
        short_message,
        _tlvs(data, stop, end),
    )


def _decode_short_message_pdu_checked(
    make: Callable[..., SubmitSM | DeliverSM], data: Buffer, pos: int, end: int, seq: int, status: int
) -> PDU:
    service_type, pos = _cstr(data, pos, end, 6, "service_type")
    if pos + 2 > end:
        raise _truncated("source_addr_ton")
    source_addr_ton, source_addr_npi = _U8X2.unpack_from(data, pos)
    source_addr, pos = _cstr(data, pos + 2, end, 21, "source_addr")
    if pos + 2 > end:
        raise _truncated("dest_addr_ton")
    dest_addr_ton, dest_addr_npi = _U8X2.unpack_from(data, pos)
    destination_addr, pos = _cstr(data, pos + 2, end, 21, "destination_addr")
    if pos + 3 > end:
        raise _truncated("esm_class")
    esm_class, protocol_id, priority_flag = _U8X3.unpack_from(data, pos)
    schedule_delivery_time, pos = _cstr(data, pos + 3, end, 17, "schedule_delivery_time")
    validity_period, pos = _cstr(data, pos, end, 17, "validity_period")
    if pos + 4 > end:
        raise _truncated("registered_delivery")
    registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id = _U8X4.unpack_from(
        data, pos
    )
    short_message, pos = _short_message(data, pos + 4, end)
    return make(
        seq,
        status,
        service_type,
        source_addr_ton,
        source_addr_npi,
        source_addr,
        dest_addr_ton,
        dest_addr_npi,
        destination_addr,
        esm_class,
        protocol_id,
        priority_flag,
        schedule_delivery_time,
        validity_period,
        registered_delivery,
        replace_if_present_flag,
        data_coding,
        sm_default_msg_id,
        short_message,
        _tlvs(data, pos, end),
    )


def _decode_message_id_resp(
    make: Callable[[int, int, str], SubmitSMResp | DeliverSMResp],
    data: Buffer,
    pos: int,
    end: int,
    seq: int,
    status: int,
) -> PDU:
    nul = data.find(_NUL, pos, pos + 65)
    if 0 <= nul < end:  # the usual case, read in one step
        message_id = data[pos:nul].decode("latin-1") if nul > pos else ""
        pos = nul + 1
    else:
        message_id, pos = _cstr(data, pos, end, 65, "message_id")
    if pos != end:
        _tlvs(data, pos, end)
    return make(seq, status, message_id)


def _decode_submit_multi(
    cls: type[SubmitMulti], data: Buffer, pos: int, end: int, seq: int, status: int
) -> PDU:
    service_type, pos = _cstr(data, pos, end, 6, "service_type")
    if pos + 2 > end:
        raise _truncated("source_addr_ton")
    source_addr_ton, source_addr_npi = _U8X2.unpack_from(data, pos)
    source_addr, pos = _cstr(data, pos + 2, end, 21, "source_addr")
    if pos >= end:
        raise _truncated("number_of_dests")
    count = data[pos]
    pos += 1
    destinations: list[SMEAddress | DistributionList] = []
    for _ in range(count):
        if pos >= end:
            raise _truncated("dest_flag")
        flag = data[pos]
        if flag == 1:
            if pos + 3 > end:
                raise _truncated("dest_addr_ton")
            ton, npi = _U8X2.unpack_from(data, pos + 1)
            address, pos = _cstr(data, pos + 3, end, 21, "destination_addr")
            destinations.append(SMEAddress(ton, npi, address))
        elif flag == 2:
            name, pos = _cstr(data, pos + 1, end, 21, "dl_name")
            destinations.append(DistributionList(name))
        else:
            raise _BodyError(
                "dest_flag", CommandStatus.ESME_RINVDESTFLAG, f"dest_flag {flag} is neither 1 nor 2"
            )
    if pos + 3 > end:
        raise _truncated("esm_class")
    esm_class, protocol_id, priority_flag = _U8X3.unpack_from(data, pos)
    schedule_delivery_time, pos = _cstr(data, pos + 3, end, 17, "schedule_delivery_time")
    validity_period, pos = _cstr(data, pos, end, 17, "validity_period")
    if pos + 4 > end:
        raise _truncated("registered_delivery")
    registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id = _U8X4.unpack_from(
        data, pos
    )
    short_message, pos = _short_message(data, pos + 4, end)
    return cls(
        sequence_number=seq,
        command_status=status,
        service_type=service_type,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        source_addr=source_addr,
        dest_addresses=tuple(destinations),
        esm_class=esm_class,
        protocol_id=protocol_id,
        priority_flag=priority_flag,
        schedule_delivery_time=schedule_delivery_time,
        validity_period=validity_period,
        registered_delivery=registered_delivery,
        replace_if_present_flag=replace_if_present_flag,
        data_coding=data_coding,
        sm_default_msg_id=sm_default_msg_id,
        short_message=short_message,
        tlvs=_tlvs(data, pos, end),
    )


def _decode_submit_multi_resp(
    cls: type[SubmitMultiResp], data: Buffer, pos: int, end: int, seq: int, status: int
) -> PDU:
    message_id, pos = _cstr(data, pos, end, 65, "message_id")
    if pos >= end:
        raise _truncated("no_unsuccess")
    count = data[pos]
    pos += 1
    failures: list[UnsuccessSME] = []
    for _ in range(count):
        if pos + 2 > end:
            raise _truncated("dest_addr_ton")
        ton, npi = _U8X2.unpack_from(data, pos)
        address, pos = _cstr(data, pos + 2, end, 21, "destination_addr")
        if pos + 4 > end:
            raise _truncated("error_status_code")
        (error_status_code,) = _UNSUCCESS_TAIL.unpack_from(data, pos)
        pos += 4
        failures.append(UnsuccessSME(ton, npi, address, error_status_code))
    _no_tlvs(data, pos, end)
    return cls(
        sequence_number=seq, command_status=status, message_id=message_id, unsuccess_smes=tuple(failures)
    )


def _decode_data_sm(cls: type[DataSM], data: Buffer, pos: int, end: int, seq: int, status: int) -> PDU:
    service_type, pos = _cstr(data, pos, end, 6, "service_type")
    if pos + 2 > end:
        raise _truncated("source_addr_ton")
    source_addr_ton, source_addr_npi = _U8X2.unpack_from(data, pos)
    source_addr, pos = _cstr(data, pos + 2, end, 65, "source_addr")
    if pos + 2 > end:
        raise _truncated("dest_addr_ton")
    dest_addr_ton, dest_addr_npi = _U8X2.unpack_from(data, pos)
    destination_addr, pos = _cstr(data, pos + 2, end, 65, "destination_addr")
    if pos + 3 > end:
        raise _truncated("esm_class")
    esm_class, registered_delivery, data_coding = _U8X3.unpack_from(data, pos)
    return cls(
        sequence_number=seq,
        command_status=status,
        service_type=service_type,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        source_addr=source_addr,
        dest_addr_ton=dest_addr_ton,
        dest_addr_npi=dest_addr_npi,
        destination_addr=destination_addr,
        esm_class=esm_class,
        registered_delivery=registered_delivery,
        data_coding=data_coding,
        tlvs=_tlvs(data, pos + 3, end),
    )


def _decode_data_sm_resp(
    cls: type[DataSMResp], data: Buffer, pos: int, end: int, seq: int, status: int
) -> PDU:
    message_id, pos = _cstr(data, pos, end, 65, "message_id")
    return cls(sequence_number=seq, command_status=status, message_id=message_id, tlvs=_tlvs(data, pos, end))


def _decode_query_sm(cls: type[QuerySM], data: Buffer, pos: int, end: int, seq: int, status: int) -> PDU:
    message_id, pos = _cstr(data, pos, end, 65, "message_id")
    if pos + 2 > end:
        raise _truncated("source_addr_ton")
    source_addr_ton, source_addr_npi = _U8X2.unpack_from(data, pos)
    source_addr, pos = _cstr(data, pos + 2, end, 21, "source_addr")
    _no_tlvs(data, pos, end)
    return cls(
        sequence_number=seq,
        command_status=status,
        message_id=message_id,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        source_addr=source_addr,
    )


def _decode_query_sm_resp(
    cls: type[QuerySMResp], data: Buffer, pos: int, end: int, seq: int, status: int
) -> PDU:
    message_id, pos = _cstr(data, pos, end, 65, "message_id")
    final_date, pos = _cstr(data, pos, end, 17, "final_date")
    if pos + 2 > end:
        raise _truncated("message_state")
    message_state, error_code = _U8X2.unpack_from(data, pos)
    _no_tlvs(data, pos + 2, end)
    return cls(
        sequence_number=seq,
        command_status=status,
        message_id=message_id,
        final_date=final_date,
        message_state=message_state,
        error_code=error_code,
    )


def _decode_cancel_sm(cls: type[CancelSM], data: Buffer, pos: int, end: int, seq: int, status: int) -> PDU:
    service_type, pos = _cstr(data, pos, end, 6, "service_type")
    message_id, pos = _cstr(data, pos, end, 65, "message_id")
    if pos + 2 > end:
        raise _truncated("source_addr_ton")
    source_addr_ton, source_addr_npi = _U8X2.unpack_from(data, pos)
    source_addr, pos = _cstr(data, pos + 2, end, 21, "source_addr")
    if pos + 2 > end:
        raise _truncated("dest_addr_ton")
    dest_addr_ton, dest_addr_npi = _U8X2.unpack_from(data, pos)
    destination_addr, pos = _cstr(data, pos + 2, end, 21, "destination_addr")
    _no_tlvs(data, pos, end)
    return cls(
        sequence_number=seq,
        command_status=status,
        service_type=service_type,
        message_id=message_id,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        source_addr=source_addr,
        dest_addr_ton=dest_addr_ton,
        dest_addr_npi=dest_addr_npi,
        destination_addr=destination_addr,
    )


def _decode_replace_sm(cls: type[ReplaceSM], data: Buffer, pos: int, end: int, seq: int, status: int) -> PDU:
    message_id, pos = _cstr(data, pos, end, 65, "message_id")
    if pos + 2 > end:
        raise _truncated("source_addr_ton")
    source_addr_ton, source_addr_npi = _U8X2.unpack_from(data, pos)
    source_addr, pos = _cstr(data, pos + 2, end, 21, "source_addr")
    schedule_delivery_time, pos = _cstr(data, pos, end, 17, "schedule_delivery_time")
    validity_period, pos = _cstr(data, pos, end, 17, "validity_period")
    if pos + 2 > end:
        raise _truncated("registered_delivery")
    registered_delivery, sm_default_msg_id = _U8X2.unpack_from(data, pos)
    short_message, pos = _short_message(data, pos + 2, end)
    _no_tlvs(data, pos, end)
    return cls(
        sequence_number=seq,
        command_status=status,
        message_id=message_id,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        source_addr=source_addr,
        schedule_delivery_time=schedule_delivery_time,
        validity_period=validity_period,
        registered_delivery=registered_delivery,
        sm_default_msg_id=sm_default_msg_id,
        short_message=short_message,
    )


def _decode_alert_notification(
    cls: type[AlertNotification], data: Buffer, pos: int, end: int, seq: int, status: int
) -> PDU:
    if pos + 2 > end:
        raise _truncated("source_addr_ton")
    source_addr_ton, source_addr_npi = _U8X2.unpack_from(data, pos)
    source_addr, pos = _cstr(data, pos + 2, end, 65, "source_addr")
    if pos + 2 > end:
        raise _truncated("esme_addr_ton")
    esme_addr_ton, esme_addr_npi = _U8X2.unpack_from(data, pos)
    esme_addr, pos = _cstr(data, pos + 2, end, 65, "esme_addr")
    return cls(
        sequence_number=seq,
        command_status=status,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        source_addr=source_addr,
        esme_addr_ton=esme_addr_ton,
        esme_addr_npi=esme_addr_npi,
        esme_addr=esme_addr,
        tlvs=_tlvs(data, pos, end),
    )


#: Decoders whose first argument is a positional factory of the class instead of the class.
_POSITIONAL = frozenset({_decode_empty, _decode_short_message_pdu, _decode_message_id_resp})

#: command_id -> (PDU class, decoder, the decoder's first argument).
_DECODERS: dict[int, tuple[type[PDU], _Decoder, Any]] = {
    cls.command_id: (cls, decoder, positional_factory(cls) if decoder in _POSITIONAL else cls)
    for cls, decoder in (
        (BindTransmitter, _decode_bind),
        (BindReceiver, _decode_bind),
        (BindTransceiver, _decode_bind),
        (BindTransmitterResp, _decode_bind_resp),
        (BindReceiverResp, _decode_bind_resp),
        (BindTransceiverResp, _decode_bind_resp),
        (Outbind, _decode_outbind),
        (Unbind, _decode_empty),
        (UnbindResp, _decode_empty),
        (GenericNack, _decode_empty),
        (EnquireLink, _decode_empty),
        (EnquireLinkResp, _decode_empty),
        (SubmitSM, _decode_short_message_pdu),
        (DeliverSM, _decode_short_message_pdu),
        (SubmitSMResp, _decode_message_id_resp),
        (DeliverSMResp, _decode_message_id_resp),
        (SubmitMulti, _decode_submit_multi),
        (SubmitMultiResp, _decode_submit_multi_resp),
        (DataSM, _decode_data_sm),
        (DataSMResp, _decode_data_sm_resp),
        (QuerySM, _decode_query_sm),
        (QuerySMResp, _decode_query_sm_resp),
        (CancelSM, _decode_cancel_sm),
        (CancelSMResp, _decode_empty),
        (ReplaceSM, _decode_replace_sm),
        (ReplaceSMResp, _decode_empty),
        (AlertNotification, _decode_alert_notification),
    )
}


def _decode_pdu(data: Buffer, start: int, end: int, command_id: int, status: int, seq: int) -> PDU:
    """The PDU in ``data[start:end]`` whose header was already read and its length checked."""
    entry = _DECODERS.get(command_id)
    if entry is None:
        raise _remote_error(
            f"unknown command_id 0x{command_id:08X}",
            status=CommandStatus.ESME_RINVCMDID,
            sequence_number=seq,
            command_id=command_id,
            consumed=end - start,
        )
    cls, decoder, target = entry
    pos = start + HEADER_SIZE
    if pos == end and command_id & RESPONSE_BIT:
        # SMPP 3.4 leaves the body out of a response with a non-zero command_status; some SMSCs do it
        # with status 0 too. All response fields have defaults, so nothing is lost by accepting it.
        return cls(sequence_number=seq, command_status=status)
    try:
        return decoder(target, data, pos, end, seq, status)
    except _BodyError as error:
        raise _remote_error(
            f"malformed {cls.__name__}: {error.field}: {error.detail}",
            status=error.status,
            sequence_number=seq,
            command_id=command_id,
            consumed=end - start,
        ) from None


def decode(buffer: Buffer | memoryview) -> tuple[PDU, int] | None:
    """One PDU from the start of ``buffer`` and the number of bytes it used; None if more are needed.

    Raises ``RemoteProtocolError``: status ESME_RINVCMDLEN for an impossible command_length (framing is
    lost, ``consumed`` is None); otherwise the PDU is skippable and ``consumed`` is its length.
    """
    available = len(buffer)
    if available < HEADER_SIZE:
        return None
    length, command_id, status, seq = _HEADER.unpack_from(buffer, 0)
    if length < HEADER_SIZE or length > MAX_PDU_SIZE:
        raise _bad_length(length, command_id, seq)
    if available < length:
        return None
    data = bytes(buffer[:length]) if isinstance(buffer, memoryview) else buffer
    return _decode_pdu(data, 0, length, command_id, status, seq), length


# --- encoding primitives ----------------------------------------------------------------------------


def _cstr_bytes(pdu: PDU, value: str, size: int, field: str) -> bytes:
    """``value`` as a C-octet string of at most ``size`` octets including its NUL."""
    if not value and isinstance(value, str):
        return _NUL
    try:
        raw = value.encode("latin-1")
    except (UnicodeEncodeError, AttributeError):
        raise _local_error(pdu, field, f"{value!r} is not a Latin-1 string") from None
    if len(raw) >= size:
        raise _local_error(pdu, field, f"{len(raw)} characters, at most {size - 1} fit")
    if _NUL in raw:
        raise _local_error(pdu, field, "contains a NUL character")
    return raw + _NUL


def _short_message_bytes(pdu: PDU, value: bytes) -> bytes:
    if not isinstance(value, bytes):
        raise _local_error(pdu, "short_message", f"must be bytes, not {type(value).__name__}")
    if len(value) > MAX_SHORT_MESSAGE:
        raise _local_error(
            pdu,
            "short_message",
            f"{len(value)} octets, at most {MAX_SHORT_MESSAGE} fit (use message_payload)",
        )
    return value


def _tlv_field(tag: object) -> str:
    return f"tlvs[0x{tag:04X}]" if isinstance(tag, int) else f"tlvs[{tag!r}]"


def _append_tlvs(pdu: PDU, parts: list[bytes], tlvs: TLVs) -> None:
    """Write each TLV by its Python type: int by the tag's width, str as a C-string, bytes raw."""
    if not isinstance(tlvs, TLVs):
        raise _local_error(pdu, "tlvs", f"must be TLVs, not {type(tlvs).__name__}")
    for tag, value in tlvs:
        try:
            if isinstance(value, bytes):
                if len(value) > _MAX_TLV_VALUE:
                    raise _local_error(
                        pdu, _tlv_field(tag), f"{len(value)} octets, at most {_MAX_TLV_VALUE} fit"
                    )
                parts.append(_TLV_HEAD.pack(tag, len(value)))
                parts.append(value)
            elif isinstance(value, int):
                width = _TLV_INT_WIDTHS.get(tag)
                if width is None:
                    raise _local_error(
                        pdu, _tlv_field(tag), "an int value needs an integer tag; give bytes instead"
                    )
                parts.append(_TLV_INT_STRUCTS[width].pack(tag, width, value))
            elif isinstance(value, str):
                if tag not in _TLV_CSTRING_TAGS:
                    raise _local_error(
                        pdu, _tlv_field(tag), "a str value needs a C-string tag; give bytes instead"
                    )
                raw = _cstr_bytes(pdu, value, _MAX_TLV_VALUE, _tlv_field(tag))
                parts.append(_TLV_HEAD.pack(tag, len(raw)))
                parts.append(raw)
            else:
                raise _local_error(
                    pdu, _tlv_field(tag), f"value must be int, str or bytes, not {type(value).__name__}"
                )
        except struct.error as error:
            raise _local_error(pdu, _tlv_field(tag), f"{value!r} does not fit: {error}") from None


# --- encoders: one per body layout ------------------------------------------------------------------


def _encode_empty(pdu: PDU) -> bytes:
    return b""


def _encode_bind(pdu: BindTransmitter | BindReceiver | BindTransceiver) -> bytes:
    return b"".join(
        (
            _cstr_bytes(pdu, pdu.system_id, 16, "system_id"),
            _cstr_bytes(pdu, pdu.password, 9, "password"),
            _cstr_bytes(pdu, pdu.system_type, 13, "system_type"),
            _U8X3.pack(pdu.interface_version, pdu.addr_ton, pdu.addr_npi),
            _cstr_bytes(pdu, pdu.address_range, 41, "address_range"),
        )
    )


def _encode_bind_resp(pdu: BindTransmitterResp | BindReceiverResp | BindTransceiverResp) -> bytes:
    parts = [_cstr_bytes(pdu, pdu.system_id, 16, "system_id")]
    if pdu.tlvs:
        _append_tlvs(pdu, parts, pdu.tlvs)
    return b"".join(parts)


def _encode_outbind(pdu: Outbind) -> bytes:
    return b"".join(
        (
            _cstr_bytes(pdu, pdu.system_id, 16, "system_id"),
            _cstr_bytes(pdu, pdu.password, 9, "password"),
        )
    )


def _encode_short_message_pdu(pdu: SubmitSM | DeliverSM) -> bytes:
    parts = _short_message_parts_unchecked(pdu) or _short_message_parts(pdu)
    if pdu.tlvs:
        _append_tlvs(pdu, parts, pdu.tlvs)
    return b"".join(parts)


def _short_message_parts_unchecked(pdu: SubmitSM | DeliverSM) -> list[bytes] | None:
    """The mandatory part of a submit_sm / deliver_sm whose strings are plain, short enough and free of
    NULs, checked all at once; None for anything else (``_short_message_parts`` then names the fault)."""
    service_type = pdu.service_type
    source_addr = pdu.source_addr
    destination_addr = pdu.destination_addr
    schedule_delivery_time = pdu.schedule_delivery_time
    validity_period = pdu.validity_period
    short_message = pdu.short_message
    if not (
        type(service_type) is str
        and type(source_addr) is str
        and type(destination_addr) is str
        and type(schedule_delivery_time) is str
        and type(validity_period) is str
        and type(short_message) is bytes
    ):
        return None
    # A Latin-1 string has one octet per character; each size leaves room for the NUL.
    if (
        len(service_type) >= 6
        or len(source_addr) >= 21
        or len(destination_addr) >= 21
        or len(schedule_delivery_time) >= 17
        or len(validity_period) >= 17
        or len(short_message) > MAX_SHORT_MESSAGE
    ):
        return None
    if "\0" in f"{service_type}{source_addr}{destination_addr}{schedule_delivery_time}{validity_period}":
        return None
    try:
        return [
            service_type.encode("latin-1"),
            _NUL,
            _U8X2.pack(pdu.source_addr_ton, pdu.source_addr_npi),
            source_addr.encode("latin-1"),
            _NUL,
            _U8X2.pack(pdu.dest_addr_ton, pdu.dest_addr_npi),
            destination_addr.encode("latin-1"),
            _NUL,
            _U8X3.pack(pdu.esm_class, pdu.protocol_id, pdu.priority_flag),
            schedule_delivery_time.encode("latin-1"),
            _NUL,
            validity_period.encode("latin-1"),
            _NUL,
            _U8X5.pack(
                pdu.registered_delivery,
                pdu.replace_if_present_flag,
                pdu.data_coding,
                pdu.sm_default_msg_id,
                len(short_message),
            ),
            short_message,
        ]
    except (struct.error, UnicodeEncodeError):
        return None


def _short_message_parts(pdu: SubmitSM | DeliverSM) -> list[bytes]:
    short_message = _short_message_bytes(pdu, pdu.short_message)
    return [
        _cstr_bytes(pdu, pdu.service_type, 6, "service_type"),
        _U8X2.pack(pdu.source_addr_ton, pdu.source_addr_npi),
        _cstr_bytes(pdu, pdu.source_addr, 21, "source_addr"),
        _U8X2.pack(pdu.dest_addr_ton, pdu.dest_addr_npi),
        _cstr_bytes(pdu, pdu.destination_addr, 21, "destination_addr"),
        _U8X3.pack(pdu.esm_class, pdu.protocol_id, pdu.priority_flag),
        _cstr_bytes(pdu, pdu.schedule_delivery_time, 17, "schedule_delivery_time"),
        _cstr_bytes(pdu, pdu.validity_period, 17, "validity_period"),
        _U8X5.pack(
            pdu.registered_delivery,
            pdu.replace_if_present_flag,
            pdu.data_coding,
            pdu.sm_default_msg_id,
            len(short_message),
        ),
        short_message,
    ]


def _encode_message_id_resp(pdu: SubmitSMResp | DeliverSMResp) -> bytes:
    return _cstr_bytes(pdu, pdu.message_id, 65, "message_id")


def _encode_submit_multi(pdu: SubmitMulti) -> bytes:
    short_message = _short_message_bytes(pdu, pdu.short_message)
    destinations = pdu.dest_addresses
    if len(destinations) > MAX_DESTINATIONS:
        raise _local_error(pdu, "dest_addresses", f"{len(destinations)} entries, at most {MAX_DESTINATIONS}")
    parts = [
        _cstr_bytes(pdu, pdu.service_type, 6, "service_type"),
        _U8X2.pack(pdu.source_addr_ton, pdu.source_addr_npi),
        _cstr_bytes(pdu, pdu.source_addr, 21, "source_addr"),
        bytes((len(destinations),)),
    ]
    for destination in destinations:
        if isinstance(destination, SMEAddress):
            parts.append(_U8X3.pack(1, destination.ton, destination.npi))
            parts.append(_cstr_bytes(pdu, destination.address, 21, "dest_addresses.address"))
        elif isinstance(destination, DistributionList):
            parts.append(b"\x02")
            parts.append(_cstr_bytes(pdu, destination.name, 21, "dest_addresses.name"))
        else:
            raise _local_error(
                pdu,
                "dest_addresses",
                f"entries must be SMEAddress or DistributionList, not {type(destination).__name__}",
            )
    parts += (
        _U8X3.pack(pdu.esm_class, pdu.protocol_id, pdu.priority_flag),
        _cstr_bytes(pdu, pdu.schedule_delivery_time, 17, "schedule_delivery_time"),
        _cstr_bytes(pdu, pdu.validity_period, 17, "validity_period"),
        _U8X5.pack(
            pdu.registered_delivery,
            pdu.replace_if_present_flag,
            pdu.data_coding,
            pdu.sm_default_msg_id,
            len(short_message),
        ),
        short_message,
    )
    if pdu.tlvs:
        _append_tlvs(pdu, parts, pdu.tlvs)
    return b"".join(parts)


def _encode_submit_multi_resp(pdu: SubmitMultiResp) -> bytes:
    failures = pdu.unsuccess_smes
    if len(failures) > 255:
        raise _local_error(pdu, "unsuccess_smes", f"{len(failures)} entries, at most 255 fit")
    parts = [_cstr_bytes(pdu, pdu.message_id, 65, "message_id"), bytes((len(failures),))]
    for failure in failures:
        if not isinstance(failure, UnsuccessSME):
            raise _local_error(
                pdu, "unsuccess_smes", f"entries must be UnsuccessSME, not {type(failure).__name__}"
            )
        parts.append(_U8X2.pack(failure.ton, failure.npi))
        parts.append(_cstr_bytes(pdu, failure.address, 21, "unsuccess_smes.address"))
        parts.append(_UNSUCCESS_TAIL.pack(failure.error_status_code))
    return b"".join(parts)


def _encode_data_sm(pdu: DataSM) -> bytes:
    parts = [
        _cstr_bytes(pdu, pdu.service_type, 6, "service_type"),
        _U8X2.pack(pdu.source_addr_ton, pdu.source_addr_npi),
        _cstr_bytes(pdu, pdu.source_addr, 65, "source_addr"),
        _U8X2.pack(pdu.dest_addr_ton, pdu.dest_addr_npi),
        _cstr_bytes(pdu, pdu.destination_addr, 65, "destination_addr"),
        _U8X3.pack(pdu.esm_class, pdu.registered_delivery, pdu.data_coding),
    ]
    if pdu.tlvs:
        _append_tlvs(pdu, parts, pdu.tlvs)
    return b"".join(parts)


def _encode_data_sm_resp(pdu: DataSMResp) -> bytes:
    parts = [_cstr_bytes(pdu, pdu.message_id, 65, "message_id")]
    if pdu.tlvs:
        _append_tlvs(pdu, parts, pdu.tlvs)
    return b"".join(parts)


def _encode_query_sm(pdu: QuerySM) -> bytes:
    return b"".join(
        (
            _cstr_bytes(pdu, pdu.message_id, 65, "message_id"),
            _U8X2.pack(pdu.source_addr_ton, pdu.source_addr_npi),
            _cstr_bytes(pdu, pdu.source_addr, 21, "source_addr"),
        )
    )


def _encode_query_sm_resp(pdu: QuerySMResp) -> bytes:
    return b"".join(
        (
            _cstr_bytes(pdu, pdu.message_id, 65, "message_id"),
            _cstr_bytes(pdu, pdu.final_date, 17, "final_date"),
            _U8X2.pack(pdu.message_state, pdu.error_code),
        )
    )


def _encode_cancel_sm(pdu: CancelSM) -> bytes:
    return b"".join(
        (
            _cstr_bytes(pdu, pdu.service_type, 6, "service_type"),
            _cstr_bytes(pdu, pdu.message_id, 65, "message_id"),
            _U8X2.pack(pdu.source_addr_ton, pdu.source_addr_npi),
            _cstr_bytes(pdu, pdu.source_addr, 21, "source_addr"),
            _U8X2.pack(pdu.dest_addr_ton, pdu.dest_addr_npi),
            _cstr_bytes(pdu, pdu.destination_addr, 21, "destination_addr"),
        )
    )


def _encode_replace_sm(pdu: ReplaceSM) -> bytes:
    short_message = _short_message_bytes(pdu, pdu.short_message)
    return b"".join(
        (
            _cstr_bytes(pdu, pdu.message_id, 65, "message_id"),
            _U8X2.pack(pdu.source_addr_ton, pdu.source_addr_npi),
            _cstr_bytes(pdu, pdu.source_addr, 21, "source_addr"),
            _cstr_bytes(pdu, pdu.schedule_delivery_time, 17, "schedule_delivery_time"),
            _cstr_bytes(pdu, pdu.validity_period, 17, "validity_period"),
            _U8X3.pack(pdu.registered_delivery, pdu.sm_default_msg_id, len(short_message)),
            short_message,
        )
    )


def _encode_alert_notification(pdu: AlertNotification) -> bytes:
    parts = [
        _U8X2.pack(pdu.source_addr_ton, pdu.source_addr_npi),
        _cstr_bytes(pdu, pdu.source_addr, 65, "source_addr"),
        _U8X2.pack(pdu.esme_addr_ton, pdu.esme_addr_npi),
        _cstr_bytes(pdu, pdu.esme_addr, 65, "esme_addr"),
    ]
    if pdu.tlvs:
        _append_tlvs(pdu, parts, pdu.tlvs)
    return b"".join(parts)


_ENCODERS: dict[int, Callable[[Any], bytes]] = {
    BindTransmitter.command_id: _encode_bind,
    BindReceiver.command_id: _encode_bind,
    BindTransceiver.command_id: _encode_bind,
    BindTransmitterResp.command_id: _encode_bind_resp,
    BindReceiverResp.command_id: _encode_bind_resp,
    BindTransceiverResp.command_id: _encode_bind_resp,
    Outbind.command_id: _encode_outbind,
    Unbind.command_id: _encode_empty,
    UnbindResp.command_id: _encode_empty,
    GenericNack.command_id: _encode_empty,
    EnquireLink.command_id: _encode_empty,
    EnquireLinkResp.command_id: _encode_empty,
    SubmitSM.command_id: _encode_short_message_pdu,
    DeliverSM.command_id: _encode_short_message_pdu,
    SubmitSMResp.command_id: _encode_message_id_resp,
    DeliverSMResp.command_id: _encode_message_id_resp,
    SubmitMulti.command_id: _encode_submit_multi,
    SubmitMultiResp.command_id: _encode_submit_multi_resp,
    DataSM.command_id: _encode_data_sm,
    DataSMResp.command_id: _encode_data_sm_resp,
    QuerySM.command_id: _encode_query_sm,
    QuerySMResp.command_id: _encode_query_sm_resp,
    CancelSM.command_id: _encode_cancel_sm,
    CancelSMResp.command_id: _encode_empty,
    ReplaceSM.command_id: _encode_replace_sm,
    ReplaceSMResp.command_id: _encode_empty,
    AlertNotification.command_id: _encode_alert_notification,
}

#: Body of each response class with every field at its default. SMPP 3.4 leaves the body out of a
#: response with a non-zero command_status (§4.4.2 submit_sm_resp), so such a body is not written.
_DEFAULT_RESPONSE_BODIES: dict[int, bytes] = {
    command_id: _ENCODERS[command_id](cls())
    for command_id, cls in PDU_CLASSES.items()
    if command_id & RESPONSE_BIT
}

# Integer widths for naming the culprit when struct refuses a value; every other int field is one octet.
_FOUR_OCTET_FIELDS = frozenset({"sequence_number", "command_status", "error_status_code"})


def _integer_fields(name: str, obj: object) -> list[tuple[str, object]]:
    """``(path, value)`` of each int-declared field of dataclass ``obj`` and of dataclasses in its tuples."""
    found: list[tuple[str, object]] = []
    for field in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, field.name)
        if isinstance(field.default, int):
            found.append((f"{name}{field.name}", value))
        elif isinstance(value, tuple):
            for index, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    found += _integer_fields(f"{name}{field.name}[{index}].", item)
    return found


def _explain_struct_error(pdu: PDU, sequence_number: int, error: struct.error) -> LocalProtocolError:
    """Slow path after ``struct.error``: which integer field of ``pdu`` does not fit its width?"""
    candidates = [("sequence_number", sequence_number), *_integer_fields("", pdu)]
    for name, value in candidates:
        bits = 32 if name.rsplit(".", 1)[-1] in _FOUR_OCTET_FIELDS else 8
        if not isinstance(value, int) or not 0 <= value < 1 << bits:
            return _local_error(pdu, name, f"{value!r} is not an integer in 0..{(1 << bits) - 1}")
    return _local_error(pdu, "?", str(error))


def encode(pdu: PDU, sequence_number: int | None = None) -> bytes:
    """The whole PDU, header included, using ``pdu.sequence_number`` unless ``sequence_number`` is given.

    Raises ``LocalProtocolError`` naming the field when a value cannot be encoded.
    """
    command_id = pdu.command_id
    if sequence_number is None:
        sequence_number = pdu.sequence_number
    try:
        encoder = _ENCODERS[command_id]
    except KeyError:
        raise LocalProtocolError(
            f"no encoder for {type(pdu).__name__} (command_id {command_id!r})", command_id=command_id
        ) from None
    status = pdu.command_status
    try:
        body = encoder(pdu)
        if status and command_id & RESPONSE_BIT and body == _DEFAULT_RESPONSE_BODIES[command_id]:
            body = b""
        length = HEADER_SIZE + len(body)
        if length > MAX_PDU_SIZE:
            raise _local_error(pdu, "command_length", f"{length} octets, at most {MAX_PDU_SIZE}")
        return _HEADER.pack(length, command_id, status, sequence_number) + body
    except struct.error as error:
        raise _explain_struct_error(pdu, sequence_number, error) from error


# --- incremental framing ----------------------------------------------------------------------------


class Framer:
    """Cuts a byte stream into PDUs.

    ``feed`` bytes as they arrive, then call ``next_pdu`` until it returns None. A PDU whose body does
    not parse is skipped and its ``RemoteProtocolError`` raised, so the next call goes on with the
    following PDU. An impossible command_length loses the framing for good: the error is raised on
    every later call and ``broken`` is True.

    At most one maximum-size PDU plus the chunk being fed is ever buffered: feeding again before
    draining with ``next_pdu`` raises ``LocalProtocolError``.

    A chunk fed while nothing is buffered is kept as it is when it is ``bytes`` (what a socket read
    gives): no copy, and the PDUs are decoded from it directly. Only a PDU split across reads is
    gathered in a ``bytearray``.
    """

    __slots__ = ("_buffer", "_offset", "_error")

    def __init__(self) -> None:
        self._buffer: bytes | bytearray = b""
        self._offset = 0
        self._error: RemoteProtocolError | None = None

    @property
    def broken(self) -> bool:
        return self._error is not None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as PDUs."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            return  # nothing can be framed any more; keep memory flat until the caller closes
        buffer = self._buffer
        offset = self._offset
        remaining = len(buffer) - offset
        if not remaining:
            # Everything before was consumed: decode straight from the caller's (immutable) bytes.
            self._buffer = data if type(data) is bytes else bytes(data)
            self._offset = 0
            return
        if remaining >= MAX_PDU_SIZE:
            raise LocalProtocolError(
                f"{remaining} bytes buffered: call next_pdu() until it returns None before feeding more"
            )
        if type(buffer) is bytearray:
            if offset:
                del buffer[:offset]  # deleting a bytearray's head is cheap in CPython
        else:
            buffer = bytearray(memoryview(buffer)[offset:])  # a PDU split across reads: gather it
        buffer += data
        self._buffer = buffer
        self._offset = 0

    def next_pdu(self) -> PDU | None:
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        start = self._offset
        if len(buffer) - start < HEADER_SIZE:
            return None
        length, command_id, status, seq = _HEADER.unpack_from(buffer, start)
        if length < HEADER_SIZE or length > MAX_PDU_SIZE:
            self._error = _bad_length(length, command_id, seq)
            self._buffer = b""
            self._offset = 0
            raise self._error
        end = start + length
        if len(buffer) < end:
            return None
        self._offset = end  # consumed even if the body turns out malformed
        return _decode_pdu(buffer, start, end, command_id, status, seq)
