"""Our ESMESession against a scripted raw-socket SMSC sending what real carriers send on bad days.

The session must survive each case (except lost framing, which closes) and report it: as an event
to the handler, a log record, or an exception to the one caller concerned.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator

import pytest

from smpp.aio import ESMEConfig, ESMESession
from smpp.constants import CommandID, CommandStatus, ESMClass
from smpp.errors import NegativeResponseError, RemoteProtocolError, SessionClosed
from smpp.pdu import DataSM, DeliverSM, SubmitSM
from tests.integration.smpp.smpp_peers import RawSMSC, raw_pdu, response
from tests.waiting import eventually

pytestmark = pytest.mark.integration

RECEIPT_12_DIGITS = (
    b"id:0A1B2C sub:001 dlvrd:001 submit date:240101120000 done date:240101120105 "
    b"stat:DELIVRD err:000 text:Hello"
)


def deliver_body(
    short_message: bytes, *, esm_class: int = 0, data_coding: int = 0, tlvs: bytes = b""
) -> bytes:
    """A deliver_sm body built by hand, field by field (SMPP 3.4 §4.6.1)."""
    return (
        b"\0"
        + b"\x01\x01"
        + b"33612345678\0"
        + b"\x00\x00"
        + b"4242\0"
        + bytes([esm_class, 0, 0])
        + b"\0"
        + b"\0"
        + bytes([0, 0, data_coding, 0, len(short_message)])
        + short_message
        + tlvs
    )


class Inbox:
    """The application's deliver_sm handler: keeps every message, answers ``status``."""

    def __init__(self) -> None:
        self.messages: list[DeliverSM | DataSM] = []
        self.status = 0

    async def __call__(self, pdu: DeliverSM | DataSM) -> int:
        self.messages.append(pdu)
        return self.status


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def session(raw_smsc: RawSMSC, inbox: Inbox) -> AsyncIterator[ESMESession]:
    config = ESMEConfig(
        host="127.0.0.1",
        port=raw_smsc.port,
        system_id="echat",
        password="secret",
        response_timeout=5.0,
        name="hostile",
    )
    async with ESMESession(config, inbox) as bound:
        yield bound


def answered(raw_smsc: RawSMSC, command_id: int, sequence: int) -> list[int]:
    """The command_status of every response our ESME sent to the request ``sequence``."""
    return [status for cid, status, seq, _ in raw_smsc.received if cid == command_id and seq == sequence]


async def still_works(session: ESMESession, raw_smsc: RawSMSC) -> None:
    raw_smsc.script = lambda command_id, sequence, body: response(command_id, sequence, body=b"OK1\0")
    result = await session.submit(SubmitSM(destination_addr="33612345678", short_message=b"ping"))
    assert result.command_status == 0
    assert session.bound


async def test_receipt_with_12_digit_dates_reaches_the_handler(
    session: ESMESession, raw_smsc: RawSMSC, inbox: Inbox
) -> None:
    raw_smsc.push(
        raw_pdu(
            CommandID.DELIVER_SM, 101, deliver_body(RECEIPT_12_DIGITS, esm_class=ESMClass.DELIVERY_RECEIPT)
        )
    )
    await eventually(lambda: answered(raw_smsc, CommandID.DELIVER_SM_RESP, 101) == [0])
    (receipt,) = inbox.messages
    assert receipt.short_message == RECEIPT_12_DIGITS
    assert receipt.esm_class & ESMClass.DELIVERY_RECEIPT


async def test_vendor_status_on_submit_sm_resp_fails_that_submit_only(
    session: ESMESession, raw_smsc: RawSMSC
) -> None:
    raw_smsc.script = lambda command_id, sequence, body: response(command_id, sequence, status=0x400)
    with pytest.raises(NegativeResponseError) as caught:
        await session.submit(SubmitSM(destination_addr="33612345678", short_message=b"x"))
    assert caught.value.status == 0x400
    assert "0x00000400" in str(caught.value)
    await still_works(session, raw_smsc)


async def test_data_coding_f5_and_binary_vendor_tlv(
    session: ESMESession, raw_smsc: RawSMSC, inbox: Inbox
) -> None:
    vendor_tlv = struct.pack(">HH", 0x1401, 4) + b"\x00\xff\x10\x80"
    raw_smsc.push(
        raw_pdu(CommandID.DELIVER_SM, 7, deliver_body(b"\x01\x02\xfe", data_coding=0xF5, tlvs=vendor_tlv))
    )
    await eventually(lambda: answered(raw_smsc, CommandID.DELIVER_SM_RESP, 7) == [0])
    (message,) = inbox.messages
    assert message.data_coding == 0xF5
    assert message.short_message == b"\x01\x02\xfe"
    assert isinstance(message, DeliverSM)
    assert message.tlvs.get_bytes(0x1401) == b"\x00\xff\x10\x80"


async def test_16_bit_concatenation_parts_out_of_order(
    session: ESMESession, raw_smsc: RawSMSC, inbox: Inbox
) -> None:
    def part(number: int, text: bytes) -> bytes:
        udh = bytes([6, 0x08, 4, 0x12, 0x34, 2, number])  # IEI 0x08: 16-bit reference 0x1234, 2 parts
        return deliver_body(udh + text, esm_class=ESMClass.UDHI)

    raw_smsc.push(
        raw_pdu(CommandID.DELIVER_SM, 21, part(2, b"world"))
        + raw_pdu(CommandID.DELIVER_SM, 20, part(1, b"hello "))
    )
    await eventually(lambda: len(inbox.messages) == 2)
    await eventually(
        lambda: (
            answered(raw_smsc, CommandID.DELIVER_SM_RESP, 20) == [0]
            and answered(raw_smsc, CommandID.DELIVER_SM_RESP, 21) == [0]
        )
    )
    assert [m.short_message[6] for m in inbox.messages] == [2, 1]
    assert all(m.short_message[1:5] == b"\x08\x04\x12\x34" for m in inbox.messages)


async def test_unknown_command_id_gets_generic_nack(
    session: ESMESession, raw_smsc: RawSMSC, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="smpp.esme"):
        raw_smsc.push(raw_pdu(0x00000222, 33, b"whatever"))
        await eventually(
            lambda: answered(raw_smsc, CommandID.GENERIC_NACK, 33) == [CommandStatus.ESME_RINVCMDID]
        )
    assert any("0x00000222" in record.getMessage() for record in caplog.records)
    await still_works(session, raw_smsc)


async def test_body_too_short_is_nacked_and_the_session_goes_on(
    session: ESMESession, raw_smsc: RawSMSC, inbox: Inbox
) -> None:
    broken = raw_pdu(CommandID.DELIVER_SM, 40, b"\x00\x01\x0133612")  # the address has no NUL
    valid = raw_pdu(CommandID.DELIVER_SM, 41, deliver_body(b"after"))
    raw_smsc.push(broken + valid)
    await eventually(lambda: answered(raw_smsc, CommandID.DELIVER_SM_RESP, 41) == [0])
    nacks = answered(raw_smsc, CommandID.GENERIC_NACK, 40)
    assert len(nacks) == 1 and nacks[0] != 0
    assert [m.short_message for m in inbox.messages] == [b"after"]
    await still_works(session, raw_smsc)


@pytest.mark.parametrize("length", [12, 0x7FFFFFFF])
async def test_impossible_length_loses_framing_and_closes(
    session: ESMESession, raw_smsc: RawSMSC, length: int
) -> None:
    raw_smsc.push(struct.pack(">IIII", length, CommandID.DELIVER_SM, 0, 50) + b"garbage")
    async with asyncio.timeout(10):
        await session.wait_closed()
    assert session.close_reason is not None and "framing lost" in session.close_reason
    await eventually(
        lambda: answered(raw_smsc, CommandID.GENERIC_NACK, 50) == [CommandStatus.ESME_RINVCMDLEN]
    )
    assert not session.bound


async def test_response_to_a_sequence_never_sent_is_logged_and_dropped(
    session: ESMESession, raw_smsc: RawSMSC, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="smpp.esme"):
        raw_smsc.push(response(CommandID.SUBMIT_SM, 987654, body=b"ghost\0"))
        await eventually(lambda: any("987654" in record.getMessage() for record in caplog.records))
    assert not raw_smsc.of(CommandID.GENERIC_NACK)  # a response is never answered
    await still_works(session, raw_smsc)


async def test_malformed_submit_sm_resp_fails_that_submit(session: ESMESession, raw_smsc: RawSMSC) -> None:
    raw_smsc.script = lambda command_id, sequence, body: response(command_id, sequence, body=b"no-nul")
    with pytest.raises(RemoteProtocolError) as caught:
        await session.submit(SubmitSM(destination_addr="33612345678", short_message=b"x"))
    assert caught.value.command_id == CommandID.SUBMIT_SM_RESP
    await still_works(session, raw_smsc)


async def test_enquire_link_from_the_smsc_is_answered(session: ESMESession, raw_smsc: RawSMSC) -> None:
    raw_smsc.push(raw_pdu(CommandID.ENQUIRE_LINK, 61))
    await eventually(lambda: answered(raw_smsc, CommandID.ENQUIRE_LINK_RESP, 61) == [0])
    assert session.bound


async def test_unbind_from_the_smsc_is_answered_and_closes(session: ESMESession, raw_smsc: RawSMSC) -> None:
    raw_smsc.push(raw_pdu(CommandID.UNBIND, 60))
    async with asyncio.timeout(10):
        await session.wait_closed()
    assert answered(raw_smsc, CommandID.UNBIND_RESP, 60) == [0]
    assert session.close_reason == "unbound by the SMSC"
    with pytest.raises(SessionClosed):
        await session.submit(SubmitSM(short_message=b"too late"))


async def test_handler_failure_answers_rx_t_appn(
    session: ESMESession, raw_smsc: RawSMSC, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    async def failing(pdu: DeliverSM | DataSM) -> int:
        raise RuntimeError("database down")

    session._on_message = failing
    with caplog.at_level(logging.ERROR, logger="smpp.esme"):
        raw_smsc.push(raw_pdu(CommandID.DELIVER_SM, 70, deliver_body(b"MO")))
        await eventually(
            lambda: answered(raw_smsc, CommandID.DELIVER_SM_RESP, 70) == [CommandStatus.ESME_RX_T_APPN]
        )
    assert any("database down" in (record.exc_text or "") or record.exc_info for record in caplog.records)
    inbox.status = CommandStatus.ESME_RX_P_APPN
    session._on_message = inbox
    raw_smsc.push(raw_pdu(CommandID.DELIVER_SM, 71, deliver_body(b"MO2")))
    await eventually(
        lambda: answered(raw_smsc, CommandID.DELIVER_SM_RESP, 71) == [CommandStatus.ESME_RX_P_APPN]
    )
