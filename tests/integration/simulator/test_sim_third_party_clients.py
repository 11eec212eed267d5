"""The simulator driven by independent SMPP clients: smpplib (blocking, in a thread) and aiosmpplib."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiosmpplib
import pytest
import smpplib.client
import smpplib.exceptions
from aiosmpplib.broker import SimpleBroker
from aiosmpplib.hook import AbstractHook

from simulator import Simulator
from smpp.constants import CommandStatus
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def _smpplib_session(port: int, password: str, texts: list[bytes], data_coding: int = 0) -> list[int]:
    """Bind, submit ``texts`` back to back, return the command_status of each submit_sm_resp."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    try:
        client.bind_transceiver(system_id="echat", password=password)
        for text in texts:
            client.send_message(
                source_addr="997745",
                destination_addr="34600111222",
                short_message=text,
                data_coding=data_coding,
            )
        statuses = []
        while len(statuses) < len(texts):
            pdu = client.read_pdu()
            if pdu.command == "submit_sm_resp":
                statuses.append(int(pdu.status))
        client.unbind()
        return statuses
    finally:
        client.disconnect()


async def test_smpplib_binds_and_submits(simulator: Simulator) -> None:
    port = simulator.port("movistar")
    statuses = await asyncio.to_thread(_smpplib_session, port, "secret1", [b"Hola desde smpplib"])
    assert statuses == [0]
    [record] = simulator.store.query()
    assert record.to_dict()["text"] == "Hola desde smpplib"


async def test_smpplib_bad_password_is_refused(simulator: Simulator) -> None:
    with pytest.raises(smpplib.exceptions.PDUError) as refused:
        await asyncio.to_thread(_smpplib_session, simulator.port("movistar"), "nope", [])
    assert refused.value.args[1] == CommandStatus.ESME_RINVPASWD


async def test_smpplib_sees_throttling_above_the_fault_tps(simulator: Simulator) -> None:
    simulator.set_faults("movistar", {"throttle": {"tps": 1}})
    statuses = await asyncio.to_thread(
        _smpplib_session, simulator.port("movistar"), "secret1", [b"uno", b"dos", b"tres"]
    )
    assert statuses[0] == 0
    assert CommandStatus.ESME_RTHROTTLED in statuses[1:]
    assert simulator.carrier("movistar").counters.mt_rejected == statuses.count(CommandStatus.ESME_RTHROTTLED)


async def test_smpplib_sees_msgqful_for_the_next_n_submits(simulator: Simulator) -> None:
    simulator.set_faults("movistar", {"msgqful": {"count": 2}})
    statuses = await asyncio.to_thread(
        _smpplib_session, simulator.port("movistar"), "secret1", [b"uno", b"dos", b"tres"]
    )
    assert statuses == [CommandStatus.ESME_RMSGQFUL, CommandStatus.ESME_RMSGQFUL, 0]


async def test_profile_tps_throttles_without_a_fault(simulator: Simulator) -> None:
    simulator.update_profile("movistar", {"tps": 1})
    statuses = await asyncio.to_thread(
        _smpplib_session, simulator.port("movistar"), "secret1", [b"a", b"b", b"c"]
    )
    assert statuses[0] == 0 and CommandStatus.ESME_RTHROTTLED in statuses


class RecordingHook(AbstractHook):
    def __init__(self) -> None:
        self.received_messages: list[Any] = []

    async def sending(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
        return None

    async def received(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
        if smpp_message is not None:
            self.received_messages.append(smpp_message)

    async def send_error(self, smpp_message: Any, error: Exception, client_id: str) -> None:
        return None


def mos(hook: RecordingHook) -> list[Any]:
    """deliver_sm that are not receipts (aiosmpplib asks for a receipt by default)."""
    return [
        m for m in hook.received_messages if isinstance(m, aiosmpplib.DeliverSm) and not m.esm_class & 0x04
    ]


def _aiosmpplib_esme(port: int, password: str, hook: RecordingHook, broker: SimpleBroker) -> aiosmpplib.ESME:
    return aiosmpplib.ESME(
        smsc_host="127.0.0.1",
        smsc_port=port,
        system_id="echat",
        password=password,
        hook=hook,
        broker=broker,
        log_level=logging.WARNING,
        socket_timeout=5.0,
    )


async def _close_writer(writer: asyncio.StreamWriter | None) -> None:
    """aiosmpplib only half-closes its socket (write_eof) and never closes the StreamWriter."""
    if writer is not None:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


async def test_aiosmpplib_bad_password_is_refused(simulator: Simulator) -> None:
    esme = _aiosmpplib_esme(simulator.port("movistar"), "nope", RecordingHook(), SimpleBroker())
    try:
        with pytest.raises(aiosmpplib.SmppError):
            await esme.connect()
    finally:
        await _close_writer(esme._writer)
    assert simulator.carrier("movistar").counters.binds_refused == 1


async def test_aiosmpplib_submits_and_receives_an_injected_mo(simulator: Simulator) -> None:
    hook, broker = RecordingHook(), SimpleBroker()
    esme = _aiosmpplib_esme(simulator.port("vodafone"), "secret2", hook, broker)
    task = asyncio.create_task(esme.start(), name="test.aiosmpplib")
    try:
        await eventually(lambda: bool(simulator.carrier("vodafone").receivers))
        await broker.enqueue(
            aiosmpplib.SubmitSm(
                short_message="Hola desde aiosmpplib",
                source=aiosmpplib.PhoneNumber("795500"),
                destination=aiosmpplib.PhoneNumber("34600111222"),
                log_id="mt-1",
            )
        )
        await eventually(lambda: any(isinstance(m, aiosmpplib.SubmitSmResp) for m in hook.received_messages))
        simulator.inject_mo("vodafone", "34600111222", "795500", "Hola, soy un MO")
        await eventually(lambda: len(mos(hook)) == 1)
    finally:
        writer = esme._writer
        await esme.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await _close_writer(writer)
    [record] = simulator.store.query(carrier="vodafone")
    assert record.to_dict()["text"] == "Hola desde aiosmpplib"
    [mo] = mos(hook)
    assert mo.short_message == "Hola, soy un MO"
    assert mo.source.number == "34600111222"
