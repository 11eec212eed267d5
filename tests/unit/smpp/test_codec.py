"""smpp.codec: explicit examples, hand-written wire captures, encode and decode errors, Framer."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

import pytest

from smpp.codec import Framer, decode, decode_header, encode
from smpp.constants import MAX_PDU_SIZE, CommandStatus
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
from smpp.tlv import Tag, TLVs

# One realistic instance of every PDU class.
EXAMPLES: list[PDU] = [
    BindTransmitter(
        sequence_number=1,
        system_id="echat",
        password="s3cret",
        system_type="CHAT",
        addr_ton=1,
        addr_npi=1,
        address_range="^4477",
    ),
    BindReceiver(sequence_number=2, system_id="echat-rx", password="pw", interface_version=0x34),
    BindTransceiver(sequence_number=3, system_id="SMPP3TEST", password="secret08", system_type="SUBMIT1"),
    BindTransmitterResp(sequence_number=1, system_id="SMSC-A", tlvs=TLVs([(Tag.SC_INTERFACE_VERSION, 0x34)])),
    BindReceiverResp(sequence_number=2, system_id="SMSC-B"),
    BindTransceiverResp(sequence_number=3, system_id="SMSC"),
    Outbind(sequence_number=4, system_id="smsc", password="letmein"),
    Unbind(sequence_number=5),
    UnbindResp(sequence_number=5),
    GenericNack(sequence_number=6, command_status=CommandStatus.ESME_RINVCMDID),
    EnquireLink(sequence_number=7),
    EnquireLinkResp(sequence_number=7),
    SubmitSM(
        sequence_number=8,
        service_type="WAP",
        source_addr_ton=5,
        source_addr="eChat",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        esm_class=0x40,
        protocol_id=0,
        priority_flag=1,
        schedule_delivery_time="260102150000000+",
        validity_period="000001000000000R",
        registered_delivery=1,
        data_coding=8,
        short_message="Привет".encode("utf-16-be"),
        tlvs=TLVs([(Tag.USER_MESSAGE_REFERENCE, 77), (0x1401, b"\x01\x02vendor")]),
    ),
    SubmitSMResp(sequence_number=8, message_id="0A1B2C3D"),
    DeliverSM(
        sequence_number=9,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="447700900123",
        destination_addr="80888",
        esm_class=0x04,
        short_message=b"id:0A1B2C3D sub:001 dlvrd:001 submit date:2601021500 done date:2601021501 "
        b"stat:DELIVRD err:000 text:Hi",
        tlvs=TLVs(
            [
                (Tag.RECEIPTED_MESSAGE_ID, "0A1B2C3D"),
                (Tag.MESSAGE_STATE, 2),
                (Tag.NETWORK_ERROR_CODE, b"\x03\x00\x00"),
            ]
        ),
    ),
    DeliverSMResp(sequence_number=9),
    SubmitMulti(
        sequence_number=10,
        source_addr="80888",
        dest_addresses=(
            SMEAddress(1, 1, "447700900001"),
            DistributionList("vip-list"),
            SMEAddress(2, 8, "07700900002"),
        ),
        esm_class=3,
        registered_delivery=1,
        data_coding=3,
        short_message=b"caf\xe9",
        tlvs=TLVs([(Tag.SOURCE_PORT, 5000)]),
    ),
    SubmitMultiResp(
        sequence_number=10,
        message_id="m-77",
        unsuccess_smes=(UnsuccessSME(2, 8, "07700900002", CommandStatus.ESME_RINVDSTADR),),
    ),
    DataSM(
        sequence_number=11,
        service_type="USSD",
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="4" * 64,
        destination_addr="80888",
        esm_class=0,
        registered_delivery=1,
        data_coding=0,
        tlvs=TLVs(
            [(Tag.MESSAGE_PAYLOAD, b"x" * 300), (Tag.USSD_SERVICE_OP, 1), (Tag.QOS_TIME_TO_LIVE, 3600)]
        ),
    ),
    DataSMResp(
        sequence_number=11,
        message_id="d-1",
        tlvs=TLVs([(Tag.ADDITIONAL_STATUS_INFO_TEXT, "queued"), (Tag.DELIVERY_FAILURE_REASON, 0)]),
    ),
    QuerySM(sequence_number=12, message_id="0A1B2C3D", source_addr_ton=5, source_addr="eChat"),
    QuerySMResp(
        sequence_number=12,
        message_id="0A1B2C3D",
        final_date="260102150100000+",
        message_state=2,
        error_code=0,
    ),
    CancelSM(
        sequence_number=13,
        service_type="",
        message_id="0A1B2C3D",
        source_addr="eChat",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
    ),
    CancelSMResp(sequence_number=13),
    ReplaceSM(
        sequence_number=14,
        message_id="0A1B2C3D",
        source_addr="eChat",
        schedule_delivery_time="",
        validity_period="000002000000000R",
        registered_delivery=1,
        sm_default_msg_id=0,
        short_message=b"updated",
    ),
    ReplaceSMResp(sequence_number=14),
    AlertNotification(
        sequence_number=15,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="447700900123",
        esme_addr_ton=0,
        esme_addr_npi=0,
        esme_addr="echat",
        tlvs=TLVs([(Tag.MS_AVAILABILITY_STATUS, 0)]),
    ),
]


def header(length: int, command_id: int, status: int, sequence: int) -> bytes:
    return struct.pack(">IIII", length, command_id, status, sequence)


def with_length(body_and_header: bytes) -> bytes:
    """Rewrite command_length to the real length (for hand-made malformed PDUs)."""
    return struct.pack(">I", len(body_and_header)) + body_and_header[4:]


def remote_error(data: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode(data)
    return info.value


# --- round trips and wire captures -------------------------------------------------------------------


def test_examples_cover_every_pdu_class() -> None:
    assert {type(pdu) for pdu in EXAMPLES} == set(PDU_CLASSES.values())


@pytest.mark.parametrize("pdu", EXAMPLES, ids=lambda pdu: type(pdu).__name__)
def test_every_pdu_round_trips(pdu: PDU) -> None:
    wire = encode(pdu)
    assert struct.unpack(">I", wire[:4])[0] == len(wire)
    assert decode(wire) == (pdu, len(wire))
    assert encode(decode(wire + b"trailing next pdu")[0]) == wire  # type: ignore[index]


@pytest.mark.parametrize("pdu", EXAMPLES, ids=lambda pdu: type(pdu).__name__)
def test_decode_accepts_bytearray_and_memoryview(pdu: PDU) -> None:
    wire = encode(pdu)
    assert decode(bytearray(wire)) == (pdu, len(wire))
    assert decode(memoryview(wire + b"\0" * 3)) == (pdu, len(wire))


def test_enquire_link_capture() -> None:
    wire = bytes.fromhex("00000010 00000015 00000000 00000001")
    assert encode(EnquireLink(sequence_number=1)) == wire
    assert decode(wire) == (EnquireLink(sequence_number=1), 16)


def test_bind_transceiver_capture() -> None:
    wire = bytes.fromhex(
        "0000002f 00000009 00000000 00000003"
        "534d50503354455354 00"  # system_id "SMPP3TEST"
        "7365637265743038 00"  # password "secret08"
        "5355424d495431 00"  # system_type "SUBMIT1"
        "34 01 01"  # interface_version 3.4, addr_ton, addr_npi
        "00"  # address_range ""
    )
    pdu = BindTransceiver(
        sequence_number=3,
        system_id="SMPP3TEST",
        password="secret08",
        system_type="SUBMIT1",
        addr_ton=1,
        addr_npi=1,
    )
    assert encode(pdu) == wire
    assert decode(wire) == (pdu, 47)


def test_bind_transceiver_resp_capture_with_sc_interface_version() -> None:
    wire = bytes.fromhex("0000001a 80000009 00000000 00000003 534d534300 0210 0001 34")
    pdu = BindTransceiverResp(
        sequence_number=3, system_id="SMSC", tlvs=TLVs([(Tag.SC_INTERFACE_VERSION, 0x34)])
    )
    assert encode(pdu) == wire
    decoded, _ = decode(wire)  # type: ignore[misc]
    assert decoded == pdu
    assert isinstance(decoded, BindTransceiverResp)
    assert decoded.tlvs.get_int(Tag.SC_INTERFACE_VERSION) == 0x34


def test_submit_sm_capture_with_sar_tlvs() -> None:
    wire = bytes.fromhex(
        "00000044 00000004 00000000 0000002a"
        "00"  # service_type ""
        "05 00 6543686174 00"  # source ton/npi/addr "eChat"
        "01 01 343437373030393030313233 00"  # dest ton/npi/addr "447700900123"
        "00 00 00"  # esm_class, protocol_id, priority_flag
        "00 00"  # schedule_delivery_time, validity_period
        "01 00 00 00"  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        "02 4869"  # sm_length, "Hi"
        "020c 0002 1234"  # sar_msg_ref_num
        "020e 0001 02"  # sar_total_segments
        "020f 0001 01"  # sar_segment_seqnum
    )
    pdu = SubmitSM(
        sequence_number=42,
        source_addr_ton=5,
        source_addr="eChat",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        registered_delivery=1,
        short_message=b"Hi",
        tlvs=TLVs([(Tag.SAR_MSG_REF_NUM, 0x1234), (Tag.SAR_TOTAL_SEGMENTS, 2), (Tag.SAR_SEGMENT_SEQNUM, 1)]),
    )
    assert encode(pdu) == wire
    assert decode(wire) == (pdu, 0x44)


def test_submit_sm_resp_capture() -> None:
    wire = bytes.fromhex("00000017 80000004 00000000 00000002 616263313233 00")
    assert encode(SubmitSMResp(sequence_number=2, message_id="abc123")) == wire
    assert decode(wire) == (SubmitSMResp(sequence_number=2, message_id="abc123"), 23)


def test_submit_multi_capture() -> None:
    wire = bytes.fromhex(
        "00000030 00000021 00000000 00000005"
        "00 00 00 3830383838 00"  # service_type, source ton/npi/addr "80888"
        "02"  # number_of_dests
        "01 01 01 343437 00"  # SME address 1/1 "447"
        "02 766970 00"  # distribution list "vip"
        "00 00 00  00 00"  # esm_class, protocol_id, priority_flag, schedule/validity ""
        "00 00 00 00  00"  # registered_delivery..sm_default_msg_id, sm_length 0
    )
    pdu = SubmitMulti(
        sequence_number=5,
        source_addr="80888",
        dest_addresses=(SMEAddress(1, 1, "447"), DistributionList("vip")),
    )
    assert encode(pdu) == wire
    assert decode(wire) == (pdu, 0x30)


def test_submit_multi_resp_capture() -> None:
    wire = bytes.fromhex(
        "0000001e 80000021 00000000 00000005"
        "6d3100 01"  # message_id "m1", no_unsuccess
        "01 01 343437 00 0000000b"  # ton, npi, "447", error_status_code ESME_RINVDSTADR
    )
    pdu = SubmitMultiResp(
        sequence_number=5,
        message_id="m1",
        unsuccess_smes=(UnsuccessSME(1, 1, "447", CommandStatus.ESME_RINVDSTADR),),
    )
    assert encode(pdu) == wire
    assert decode(wire) == (pdu, 0x1E)


def test_strings_are_latin1_both_ways() -> None:
    pdu = SubmitSM(source_addr="\xff\xe9\x01", short_message=bytes(range(254)))
    wire = encode(pdu)
    assert b"\xff\xe9\x01\x00" in wire
    assert decode(wire) == (pdu, len(wire))


def test_sequence_number_argument_overrides_the_pdu() -> None:
    wire = encode(EnquireLink(sequence_number=1), sequence_number=0x7FFFFFFF)
    assert decode_header(wire) == (16, 0x15, 0, 0x7FFFFFFF)


def test_decode_header() -> None:
    assert decode_header(b"\0" * 15) is None
    assert decode_header(bytes.fromhex("00000010 80000004 00000058 00000009")) == (16, 0x80000004, 0x58, 9)


# --- response bodies and status values ---------------------------------------------------------------


RESPONSE_CLASSES = [cls for cls in PDU_CLASSES.values() if cls.command_id & 0x80000000]


@pytest.mark.parametrize("cls", RESPONSE_CLASSES, ids=lambda cls: cls.__name__)
def test_error_response_with_empty_body_decodes(cls: type[PDU]) -> None:
    wire = header(16, cls.command_id, CommandStatus.ESME_RTHROTTLED, 99)
    assert decode(wire) == (cls(sequence_number=99, command_status=CommandStatus.ESME_RTHROTTLED), 16)
    # and is what we write for an error response with nothing in it, as SMPP 3.4 asks
    assert encode(cls(sequence_number=99, command_status=CommandStatus.ESME_RTHROTTLED)) == wire


def test_ok_submit_sm_resp_with_empty_body_is_tolerated() -> None:
    assert decode(header(16, 0x80000004, 0, 3)) == (SubmitSMResp(sequence_number=3), 16)


def test_error_response_with_a_body_keeps_it() -> None:
    pdu = SubmitSMResp(sequence_number=4, command_status=CommandStatus.ESME_RSUBMITFAIL, message_id="x1")
    wire = encode(pdu)
    assert len(wire) == 19
    assert decode(wire) == (pdu, 19)


def test_vendor_command_status_stays_an_int() -> None:
    wire = header(16, 0x80000004, 0x400, 5)
    pdu, _ = decode(wire)  # type: ignore[misc]
    assert pdu.command_status == 0x400
    assert type(pdu.command_status) is int
    assert encode(pdu) == wire


# --- TLVs --------------------------------------------------------------------------------------------


def submit_with_tlv_bytes(tlv_bytes: bytes) -> bytes:
    return encode(SubmitSM(sequence_number=1, destination_addr="1")) + tlv_bytes


def decoded_tlvs(tlv_bytes: bytes) -> TLVs:
    pdu, _ = decode(with_length(submit_with_tlv_bytes(tlv_bytes)))  # type: ignore[misc]
    assert isinstance(pdu, SubmitSM)
    return pdu.tlvs


def test_tlvs_are_typed_by_kind() -> None:
    tlvs = decoded_tlvs(
        bytes.fromhex("0005 0001 07  0008 0002 0102  0017 0004 00000e10  001e 0004 616263000202 0002 a0b1")
    )
    assert list(tlvs) == [
        (Tag.DEST_ADDR_SUBUNIT, 7),
        (Tag.DEST_TELEMATICS_ID, 0x0102),
        (Tag.QOS_TIME_TO_LIVE, 3600),
        (Tag.RECEIPTED_MESSAGE_ID, "abc"),
        (Tag.SOURCE_SUBADDRESS, b"\xa0\xb1"),
    ]


@pytest.mark.parametrize(
    "tlv_hex",
    [
        "0005 0002 0007",  # INT1 tag with two octets
        "0204 0001 07",  # INT2 tag with one octet
        "0017 0000",  # INT4 tag with no octets
        "001e 0003 616263",  # C-string without its NUL
        "001e 0004 61006300",  # C-string with a NUL inside
        "001e 0000",  # empty C-string value (not even the NUL)
    ],
)
def test_standard_tlv_with_wrong_length_stays_raw_and_round_trips(tlv_hex: str) -> None:
    raw = bytes.fromhex(tlv_hex)
    tlvs = decoded_tlvs(raw)
    assert list(tlvs) == [(int.from_bytes(raw[:2], "big"), raw[4:])]
    wire = with_length(submit_with_tlv_bytes(raw))
    assert encode(decode(wire)[0]) == wire  # type: ignore[index]


def test_vendor_and_unknown_tlvs_round_trip_in_order_with_duplicates() -> None:
    raw = bytes.fromhex("1401 0003 010203  0424 0002 6869  3fff 0000  1401 0001 ff  0099 0001 00")
    tlvs = decoded_tlvs(raw)
    assert list(tlvs) == [
        (0x1401, b"\x01\x02\x03"),
        (Tag.MESSAGE_PAYLOAD, b"hi"),
        (0x3FFF, b""),
        (0x1401, b"\xff"),
        (0x0099, b"\x00"),
    ]
    wire = with_length(submit_with_tlv_bytes(raw))
    assert encode(decode(wire)[0]) == wire  # type: ignore[index]


def test_tlv_values_are_written_by_python_type() -> None:
    pdu = DataSM(
        tlvs=TLVs(
            [
                (Tag.SAR_MSG_REF_NUM, 0x0102),
                (Tag.RECEIPTED_MESSAGE_ID, "id"),
                (Tag.SAR_TOTAL_SEGMENTS, b"\x02"),
                (0x1500, b"raw"),
            ]
        )
    )
    expected = bytes.fromhex("020c 0002 0102  001e 0003 696400  020e 0001 02  1500 0003 726177")
    assert encode(pdu).endswith(expected)


# --- decode errors ----------------------------------------------------------------------------------


def test_fewer_than_header_bytes_need_more() -> None:
    assert decode(b"") is None
    assert decode(encode(EnquireLink())[:15]) is None


def test_partial_body_needs_more() -> None:
    wire = encode(EXAMPLES[12])
    for cut in range(16, len(wire)):
        assert decode(wire[:cut]) is None


@pytest.mark.parametrize("length", [0, 15, MAX_PDU_SIZE + 1, 0xFFFFFFFF])
def test_bad_command_length(length: int) -> None:
    error = remote_error(header(length, 0x15, 0, 9) + b"\0" * 32)
    assert error.status == CommandStatus.ESME_RINVCMDLEN
    assert error.sequence_number == 9
    assert error.consumed is None  # type: ignore[attr-defined]


def test_unknown_command_id_is_skippable() -> None:
    wire = header(20, 0x00000042, 0, 77) + b"\x01\x02\x03\x04"
    assert decode(wire[:19]) is None  # the whole PDU must be there before it can be skipped
    error = remote_error(wire)
    assert error.status == CommandStatus.ESME_RINVCMDID
    assert error.command_id == 0x42
    assert error.sequence_number == 77
    assert error.consumed == 20  # type: ignore[attr-defined]


def mutate_body(pdu: PDU, body: bytes) -> bytes:
    return with_length(encode(pdu)[:16] + body)


@pytest.mark.parametrize(
    ("wire", "status", "field"),
    [
        # source_addr of submit_sm: 21 octets without a NUL
        (
            mutate_body(SubmitSM(), b"\0\1\1" + b"9" * 21 + b"\0" * 40),
            CommandStatus.ESME_RINVSRCADR,
            "source_addr",
        ),
        (mutate_body(BindTransmitter(), b"A" * 16 + b"\0" * 20), CommandStatus.ESME_RINVSYSID, "system_id"),
        (
            mutate_body(BindTransmitter(), b"\0" + b"p" * 9 + b"\0" * 20),
            CommandStatus.ESME_RINVPASWD,
            "password",
        ),
        (
            mutate_body(BindTransmitter(), b"\0\0" + b"a" * 41 + b"\0" * 50),
            CommandStatus.ESME_RINVSYSTYP,
            "system_type",
        ),
        (
            mutate_body(BindTransmitter(), b"\0\0\0\x34\0\0" + b"r" * 41 + b"\0"),
            CommandStatus.ESME_RINVPARLEN,
            "address_range",
        ),
        (mutate_body(SubmitSMResp(), b"m" * 65 + b"\0"), CommandStatus.ESME_RINVMSGID, "message_id"),
        # the body ends inside a C-string
        (mutate_body(SubmitSM(), b"\0\1\1" + b"44"), CommandStatus.ESME_RINVMSGLEN, "source_addr"),
        # sm_length 200 with 2 octets of short_message
        (with_length(encode(SubmitSM())[:-1] + b"\xc8hi"), CommandStatus.ESME_RINVMSGLEN, "short_message"),
        # a TLV header cut short, and a TLV value cut short
        (with_length(encode(SubmitSM()) + b"\x02\x04\x00"), CommandStatus.ESME_RINVOPTPARSTREAM, "tlvs"),
        (
            with_length(encode(SubmitSM()) + b"\x02\x04\x00\x02\x00"),
            CommandStatus.ESME_RINVOPTPARSTREAM,
            "0x0204",
        ),
        # garbage after a PDU type that has no TLVs
        (with_length(encode(QuerySM()) + b"\x01"), CommandStatus.ESME_RINVOPTPARSTREAM, "tlvs"),
        (mutate_body(SubmitMulti(), b"\0\0\0\0\x01\x03"), CommandStatus.ESME_RINVDESTFLAG, "dest_flag"),
    ],
)
def test_malformed_body(wire: bytes, status: int, field: str) -> None:
    command_id, sequence = struct.unpack(">I4xI", wire[4:16])
    error = remote_error(wire)
    assert error.status == status
    assert field in str(error)
    assert PDU_CLASSES[command_id].__name__ in str(error)
    assert error.command_id == command_id
    assert error.sequence_number == sequence
    assert error.consumed == len(wire)  # type: ignore[attr-defined]


@pytest.mark.parametrize("pdu", EXAMPLES, ids=lambda pdu: type(pdu).__name__)
def test_every_truncation_of_a_body_is_an_error_or_a_shorter_valid_pdu(pdu: PDU) -> None:
    wire = encode(pdu)
    for cut in range(16, len(wire)):
        short = with_length(wire[:cut])
        try:
            result = decode(short)
        except RemoteProtocolError as error:
            assert error.consumed == cut  # type: ignore[attr-defined]
            assert error.status in (CommandStatus.ESME_RINVMSGLEN, CommandStatus.ESME_RINVOPTPARSTREAM)
        else:
            # only a cut at a TLV boundary, or an empty response body, leaves a valid PDU
            assert result is not None
            assert result[1] == cut


def test_well_formed_trailing_tlvs_on_a_pdu_without_tlvs_are_ignored() -> None:
    pdu = SubmitSMResp(sequence_number=3, message_id="abc")
    wire = with_length(encode(pdu) + bytes.fromhex("0425 0001 00"))
    assert decode(wire) == (pdu, len(wire))


# --- encode errors -----------------------------------------------------------------------------------


class Unregistered(PDU):
    command_id: ClassVar[int] = 0x00000042


@dataclass(frozen=True, slots=True)
class NotADestination:
    address: str = ""


@pytest.mark.parametrize(
    ("pdu", "field"),
    [
        (BindTransmitter(system_id="x" * 16), "system_id"),
        (BindTransceiver(password="x" * 9), "password"),
        (BindReceiver(system_type="x" * 13), "system_type"),
        (BindReceiver(address_range="x" * 41), "address_range"),
        (SubmitSM(source_addr="1" * 21), "source_addr"),
        (DeliverSM(destination_addr="1" * 21), "destination_addr"),
        (SubmitSM(service_type="x" * 6), "service_type"),
        (SubmitSM(schedule_delivery_time="1" * 17), "schedule_delivery_time"),
        (SubmitSMResp(message_id="m" * 65), "message_id"),
        (DataSM(source_addr="4" * 65), "source_addr"),
        (SubmitSM(short_message=b"x" * 255), "short_message"),
        (SubmitSM(short_message="text"), "short_message"),  # type: ignore[arg-type]
        (SubmitSM(source_addr="€uro"), "source_addr"),
        (SubmitSM(source_addr=None), "source_addr"),  # type: ignore[arg-type]
        (SubmitSM(destination_addr="12\x0034"), "destination_addr"),
        (SubmitSM(esm_class=256), "esm_class"),
        (SubmitSM(source_addr_ton=-1), "source_addr_ton"),
        (SubmitSM(data_coding="8"), "data_coding"),  # type: ignore[arg-type]
        (SubmitSM(sequence_number=1 << 32), "sequence_number"),
        (GenericNack(command_status=-1), "command_status"),
        (SubmitMulti(dest_addresses=(SMEAddress(300, 1, "1"),)), "dest_addresses[0].ton"),
        (SubmitMulti(dest_addresses=(SMEAddress(1, 1, "1" * 21),)), "dest_addresses.address"),
        (SubmitMulti(dest_addresses=(DistributionList("d" * 21),)), "dest_addresses.name"),
        (SubmitMulti(dest_addresses=(SMEAddress(),) * 255), "dest_addresses"),
        (SubmitMulti(dest_addresses=(NotADestination(),)), "dest_addresses"),  # type: ignore[arg-type]
        (
            SubmitMultiResp(unsuccess_smes=(UnsuccessSME(error_status_code=-5),)),
            "unsuccess_smes[0].error_status_code",
        ),
        (SubmitMultiResp(unsuccess_smes=(UnsuccessSME(),) * 256), "unsuccess_smes"),
        (SubmitMultiResp(unsuccess_smes=(SMEAddress(),)), "unsuccess_smes"),  # type: ignore[arg-type]
        (SubmitSM(tlvs=TLVs([(0x1401, 5)])), "tlvs[0x1401]"),  # int for a vendor (octets) tag
        (SubmitSM(tlvs=TLVs([(Tag.MESSAGE_PAYLOAD, "text")])), "tlvs[0x0424]"),  # str for an octets tag
        (SubmitSM(tlvs=TLVs([(Tag.SAR_TOTAL_SEGMENTS, 256)])), "tlvs[0x020E]"),
        (SubmitSM(tlvs=TLVs([(Tag.RECEIPTED_MESSAGE_ID, "a\0b")])), "tlvs[0x001E]"),
        (SubmitSM(tlvs=TLVs([(Tag.MESSAGE_PAYLOAD, 1.5)])), "tlvs[0x0424]"),  # type: ignore[list-item]
        (SubmitSM(tlvs=TLVs([(0x10000, b"")])), "tlvs[0x10000]"),
        (SubmitSM(tlvs=TLVs([("5", b"")])), "tlvs['5']"),  # type: ignore[list-item]
        (SubmitSM(tlvs={0x1401: b""}), "tlvs"),  # type: ignore[arg-type]
        (DataSM(tlvs=TLVs([(Tag.MESSAGE_PAYLOAD, b"x" * 0x10000)])), "tlvs[0x0424]"),
        (DataSM(tlvs=TLVs([(Tag.MESSAGE_PAYLOAD, b"x" * 0xFFFF)])), "command_length"),
        (Unregistered(), "Unregistered"),
    ],
)
def test_unencodable_values_name_the_field(pdu: PDU, field: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(pdu)
    assert field in str(info.value)


def test_sequence_number_argument_out_of_range() -> None:
    with pytest.raises(LocalProtocolError, match="sequence_number"):
        encode(EnquireLink(), sequence_number=-1)


def test_longest_legal_values_encode() -> None:
    pdu = BindTransmitter(system_id="x" * 15, password="p" * 8, system_type="t" * 12, address_range="r" * 40)
    assert decode(encode(pdu))[0] == pdu  # type: ignore[index]
    submit = SubmitSM(
        source_addr="1" * 20,
        destination_addr="2" * 20,
        short_message=b"m" * 254,
        tlvs=TLVs([(Tag.QOS_TIME_TO_LIVE, 0xFFFFFFFF)]),
    )
    assert decode(encode(submit))[0] == submit  # type: ignore[index]


# --- Framer -----------------------------------------------------------------------------------------


def drain(framer: Framer) -> list[PDU]:
    pdus = []
    while (pdu := framer.next_pdu()) is not None:
        pdus.append(pdu)
    return pdus


def test_framer_yields_pdus_fed_at_once() -> None:
    framer = Framer()
    framer.feed(b"".join(encode(pdu) for pdu in EXAMPLES))
    assert drain(framer) == EXAMPLES
    assert framer.buffered == 0
    assert not framer.broken


def test_framer_split_at_every_byte() -> None:
    stream = b"".join(encode(pdu) for pdu in EXAMPLES)
    framer = Framer()
    received: list[PDU] = []
    for index in range(len(stream)):
        framer.feed(stream[index : index + 1])
        received += drain(framer)
    assert received == EXAMPLES
    assert framer.buffered == 0


def test_framer_split_at_each_position_in_two() -> None:
    stream = encode(EXAMPLES[12]) + encode(EXAMPLES[13])
    for cut in range(len(stream) + 1):
        framer = Framer()
        framer.feed(stream[:cut])
        received = drain(framer)
        framer.feed(memoryview(stream)[cut:])
        received += drain(framer)
        assert received == [EXAMPLES[12], EXAMPLES[13]]


def test_framer_skips_a_malformed_pdu_and_goes_on() -> None:
    bad = mutate_body(SubmitSM(sequence_number=5), b"\0\1\1" + b"9" * 30)
    unknown = header(20, 0x00000042, 0, 6) + b"abcd"
    framer = Framer()
    framer.feed(
        encode(EnquireLink(sequence_number=4)) + bad + unknown + encode(EnquireLink(sequence_number=7))
    )
    assert framer.next_pdu() == EnquireLink(sequence_number=4)
    with pytest.raises(RemoteProtocolError) as body_error:
        framer.next_pdu()
    assert body_error.value.sequence_number == 5
    with pytest.raises(RemoteProtocolError) as id_error:
        framer.next_pdu()
    assert id_error.value.status == CommandStatus.ESME_RINVCMDID
    assert framer.next_pdu() == EnquireLink(sequence_number=7)
    assert framer.next_pdu() is None
    assert not framer.broken


def test_framer_bad_length_breaks_for_good() -> None:
    framer = Framer()
    framer.feed(encode(EnquireLink(sequence_number=1)) + header(8, 0x15, 0, 2) + encode(EnquireLink()))
    assert framer.next_pdu() == EnquireLink(sequence_number=1)
    with pytest.raises(RemoteProtocolError) as first:
        framer.next_pdu()
    assert first.value.status == CommandStatus.ESME_RINVCMDLEN
    assert framer.broken
    framer.feed(encode(EnquireLink()))  # ignored: nothing can be framed any more
    assert framer.buffered == 0
    with pytest.raises(RemoteProtocolError) as again:
        framer.next_pdu()
    assert again.value is first.value


def test_framer_refuses_to_grow_without_draining() -> None:
    framer = Framer()
    big = encode(DataSM(tlvs=TLVs([(Tag.MESSAGE_PAYLOAD, b"x" * 60_000)])))
    framer.feed(big + big)  # one chunk may be large
    with pytest.raises(LocalProtocolError, match="next_pdu"):
        framer.feed(b"more")
    assert len(drain(framer)) == 2
    framer.feed(big[:100])  # after draining, feeding works again
    assert framer.buffered == 100


def test_framer_compacts_consumed_bytes() -> None:
    framer = Framer()
    one = encode(EnquireLink(sequence_number=1))
    framer.feed(one + one[:10])
    assert drain(framer) == [EnquireLink(sequence_number=1)]
    framer.feed(one[10:])
    assert framer.buffered == 16
    assert drain(framer) == [EnquireLink(sequence_number=1)]
