"""Independent SMPP clients (smpplib, aiosmpplib) against our SMSCServer over 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

import aiosmpplib
import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm

from smpp.aio import SMSCServer
from smpp.constants import CommandStatus, DataCoding, ESMClass
from smpp.pdu import DeliverSM, SubmitSM
from smpp.tlv import Tag
from tests.integration.smpp.smpp_peers import PASSWORD, RecordingHandler
from tests.waiting import eventually

pytestmark = pytest.mark.integration

LONG_TEXT = "This message is long enough to need several parts. " * 5
RECEIPT = (
    b"id:m1 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:Hello"
)


def _smpplib_session(port: int, password: str, texts: list[str], inbound: int) -> dict[str, list[Any]]:
    """Blocking smpplib run: bind, submit every part of ``texts``, read ``inbound`` deliver_sm, unbind."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    seen: dict[str, list[Any]] = {"sent": [], "received": [], "parts": []}
    client.set_message_sent_handler(lambda pdu: seen["sent"].append(pdu))
    client.set_message_received_handler(lambda pdu: seen["received"].append(pdu))
    client.connect()
    try:
        client.bind_transceiver(system_id="smpplib", password=password)
        for text in texts:
            parts, coding, esm_class = smpplib.gsm.make_parts(text)
            for part in parts:
                seen["parts"].append((part, coding, esm_class))
                client.send_message(
                    source_addr="4242",
                    destination_addr="33612345678",
                    short_message=part,
                    data_coding=coding,
                    esm_class=esm_class,
                    registered_delivery=1,
                )
                client.read_once()
        while len(seen["received"]) < inbound:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    return seen


async def test_smpplib_wrong_password_is_refused(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    with pytest.raises(smpplib.exceptions.PDUError) as caught:
        await asyncio.to_thread(_smpplib_session, server.port, "wrong", [], 0)
    assert caught.value.args[1] == CommandStatus.ESME_RINVPASWD
    assert handler.binds[0].system_id == "smpplib"
    assert server.sessions == []


async def test_smpplib_submits_receives_mo_and_receipt_and_unbinds(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, handler = smsc
    texts = ["Hello GSM @£$", "Привет, мир", LONG_TEXT]
    run = asyncio.create_task(asyncio.to_thread(_smpplib_session, server.port, PASSWORD, texts, 2))

    expected = sum(len(smpplib.gsm.make_parts(text)[0]) for text in texts)
    assert expected >= 4  # the long one is split
    await handler.wait_for(lambda: len([p for p in handler.requests if isinstance(p, SubmitSM)]) >= expected)
    (session,) = server.sessions
    assert session.system_id == "smpplib"
    mo = await session.deliver(
        DeliverSM(source_addr="33612345678", destination_addr="4242", short_message=b"STOP")
    )
    assert mo.command_status == 0
    receipt = await session.deliver(
        DeliverSM(
            source_addr="33612345678",
            destination_addr="4242",
            esm_class=ESMClass.DELIVERY_RECEIPT,
            short_message=RECEIPT,
        )
    )
    assert receipt.command_status == 0
    seen = await run

    submits = [pdu for pdu in handler.requests if isinstance(pdu, SubmitSM)]
    assert [(p.short_message, p.data_coding, p.esm_class) for p in submits] == [
        (part, coding, esm_class) for part, coding, esm_class in seen["parts"]
    ]
    assert submits[1].data_coding == DataCoding.UCS2
    assert submits[1].short_message.decode("utf-16-be") == texts[1]
    long_parts = [p for p in submits if p.esm_class & ESMClass.UDHI]
    assert len(long_parts) >= 2
    assert all(p.short_message[:3] == b"\x05\x00\x03" for p in long_parts)
    assert [p.short_message[5] for p in long_parts] == list(range(1, len(long_parts) + 1))
    assert [pdu.message_id for pdu in seen["sent"]] == [f"m{i}".encode() for i in range(1, len(submits) + 1)]
    assert seen["received"][0].short_message == b"STOP"
    assert seen["received"][1].short_message == RECEIPT
    await handler.wait_for(lambda: len(handler.closed) == 1)
    assert server.sessions == []


class _Recorder(aiosmpplib.AbstractHook):
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.errors: list[Exception] = []
        self.changed = asyncio.Event()

    async def sending(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
        pass

    async def received(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:  # type: ignore[override]
        self.messages.append(smpp_message)
        self.changed.set()

    async def send_error(self, smpp_message: Any, error: Exception, client_id: str) -> None:
        self.errors.append(error)
        self.changed.set()

    async def wait_for(self, kind: type, count: int) -> list[Any]:
        async with asyncio.timeout(10):
            while len(found := [m for m in self.messages if isinstance(m, kind)]) < count:
                self.changed.clear()
                await self.changed.wait()
        return found


def _aiosmpplib_esme(port: int, password: str, hook: _Recorder) -> aiosmpplib.ESME:
    return aiosmpplib.ESME(
        smsc_host="127.0.0.1",
        smsc_port=port,
        system_id="aiosmpplib",
        password=password,
        hook=hook,
        socket_timeout=10.0,
        log_level="ERROR",
    )


async def test_aiosmpplib_wrong_password_is_refused(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    esme = _aiosmpplib_esme(server.port, "wrong", _Recorder())
    with pytest.raises(aiosmpplib.SmppError) as caught:
        await esme.connect()
    assert caught.value.command_status == CommandStatus.ESME_RINVPASWD
    # aiosmpplib leaves the socket of a refused bind open (stop() only disconnects a bound ESME).
    writer = esme._writer
    assert writer is not None
    writer.close()
    await writer.wait_closed()
    await eventually(lambda: server.connections == 0)


async def test_aiosmpplib_submits_receives_mo_and_receipt_and_unbinds(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, handler = smsc
    hook = _Recorder()
    esme = _aiosmpplib_esme(server.port, PASSWORD, hook)
    running = asyncio.create_task(esme.start())
    try:
        destination = aiosmpplib.PhoneNumber("33612345678")
        source = aiosmpplib.PhoneNumber("4242")
        for log_id, text, encoding in [
            ("gsm", "Hello GSM", None),
            ("ucs2", "Привет", "ucs2"),
            ("long", LONG_TEXT * 2, None),
        ]:
            await esme.broker.enqueue(
                aiosmpplib.SubmitSm(
                    short_message=text,
                    source=source,
                    log_id=log_id,
                    destination=destination,
                    encoding=encoding,
                )
            )
        responses = await hook.wait_for(aiosmpplib.SubmitSmResp, 3)
        assert sorted(r.log_id for r in responses) == ["gsm", "long", "ucs2"]
        assert all(r.message_id.startswith("m") for r in responses)

        submits = [pdu for pdu in handler.requests if isinstance(pdu, SubmitSM)]
        assert submits[0].short_message == b"Hello GSM"
        assert submits[1].data_coding == DataCoding.UCS2
        assert submits[1].short_message.decode("utf-16-be") == "Привет"
        long_text = submits[2].short_message or submits[2].tlvs.get_bytes(Tag.MESSAGE_PAYLOAD) or b""
        assert long_text == (LONG_TEXT * 2).encode()

        (session,) = server.sessions
        mo = await session.deliver(
            DeliverSM(source_addr="33612345678", destination_addr="4242", short_message=b"HELP")
        )
        receipt = await session.deliver(
            DeliverSM(
                source_addr="33612345678",
                destination_addr="4242",
                esm_class=ESMClass.DELIVERY_RECEIPT,
                short_message=RECEIPT,
            )
        )
        assert mo.command_status == receipt.command_status == 0
        delivered = await hook.wait_for(aiosmpplib.DeliverSm, 2)
        assert delivered[0].short_message == "HELP"
        assert delivered[1].is_receipt()
    finally:
        writer = esme._writer
        await esme.stop()
        await asyncio.wait_for(running, 10)
        if writer is not None:  # aiosmpplib half-closes (write_eof) and forgets its writer
            writer.close()
            await writer.wait_closed()
    await handler.wait_for(lambda: len(handler.closed) == 1)
    assert server.sessions == []
