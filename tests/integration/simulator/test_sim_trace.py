"""The PDU trace holds every PDU on the wire, both ways, in order, with the sequence numbers the ESME
saw: checked against the raw bytes a TCP relay between the ESME and the simulator recorded."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path

import pytest

from simulator import Simulator
from smpp.aio import ESMESession
from smpp.codec import encode
from smpp.constants import CommandID, RegisteredDelivery
from smpp.pdu import EnquireLink, SubmitSM
from tests.integration.simulator.simharness import Inbox, esme_config, make_config
from tests.waiting import eventually

pytestmark = pytest.mark.integration

HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence_number
WirePDU = tuple[str, int]  # command name, sequence_number


class WireRecorder:
    """Relays one TCP connection to the simulator and keeps every byte it carried, each way."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.sent = bytearray()  # ESME -> simulator
        self.received = bytearray()  # simulator -> ESME
        self.simulator_side: str | None = None  # the relay's address as the simulator sees it
        self.finished = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> WireRecorder:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _relay(self, esme_reader: asyncio.StreamReader, esme_writer: asyncio.StreamWriter) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.target)
        host, port = writer.get_extra_info("sockname")[:2]
        self.simulator_side = f"{host}:{port}"
        await asyncio.gather(
            self._pipe(esme_reader, writer, self.sent), self._pipe(reader, esme_writer, self.received)
        )
        self.finished.set()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray) -> None:
        while data := await reader.read(65536):
            record += data
            writer.write(data)
            await writer.drain()
        writer.close()


def frames(data: bytes) -> list[WirePDU]:
    """The PDUs in a byte stream, read from their headers alone."""
    found: list[WirePDU] = []
    while data:
        length, command_id, _, sequence_number = HEADER.unpack_from(data)
        found.append((CommandID(command_id).name.lower(), sequence_number))
        data = data[length:]
    return found


async def test_the_trace_holds_every_pdu_both_ways_with_its_sequence_number(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "pdus.jsonl"
    inbox = Inbox()
    async with Simulator(make_config()) as simulator, WireRecorder(simulator.port("movistar")) as wire:
        simulator.set_trace(str(trace))
        async with ESMESession(esme_config(simulator, port=wire.port), inbox) as session:
            for text in (b"uno", b"dos", b"tres"):
                await session.submit(
                    SubmitSM(
                        source_addr="997745",
                        destination_addr="34600000001",
                        short_message=text,
                        registered_delivery=RegisteredDelivery.FINAL,
                    )
                )
            simulator.inject_mo("movistar", "34600111222", "997745", "Hola")
            simulator.inject_mo("movistar", "34600111222", "997745", "¿Qué tal? " * 30)  # two parts
            await inbox.wait_for(3 + 1 + 2)  # the receipts and the MO parts
            # the last deliver_sm_resp has left the ESME once the simulator counted it
            await eventually(lambda: simulator.carrier("movistar").counters.pdus_in.get(0x80000005) == 6)
        await wire.finished.wait()
        simulator.set_trace(None)

    assert wire.simulator_side is not None
    lines = [json.loads(line) for line in trace.read_text("utf-8").splitlines()]
    lines = [line for line in lines if line["peer"] == wire.simulator_side]
    traced_in = [(line["command"], line["sequence_number"]) for line in lines if line["dir"] == "in"]
    traced_out = [(line["command"], line["sequence_number"]) for line in lines if line["dir"] == "out"]
    assert traced_in == frames(bytes(wire.sent))
    assert traced_out == frames(bytes(wire.received))
    commands = {command for command, _ in traced_in + traced_out}
    assert {
        "bind_transceiver",
        "bind_transceiver_resp",
        "deliver_sm",
        "deliver_sm_resp",
        "unbind",
    } <= commands
    assert all(number > 0 for _, number in traced_out)
    [bind] = [line for line in lines if line["command"] == "bind_transceiver"]
    assert bind["password"] == "********"


async def test_the_trace_holds_what_the_session_answers_by_itself(tmp_path: Path) -> None:
    """Before a bind: the session answers enquire_link itself, and the state table refuses a submit_sm
    (an answer the SMPP connection writes on its own, never seen by the carrier's handler)."""
    trace = tmp_path / "pdus.jsonl"
    async with Simulator(make_config()) as simulator, WireRecorder(simulator.port("movistar")) as wire:
        simulator.set_trace(str(trace))
        reader, writer = await asyncio.open_connection("127.0.0.1", wire.port)
        writer.write(encode(EnquireLink(), 7) + encode(SubmitSM(destination_addr="34600000001"), 8))
        answers = await reader.readexactly(2 * HEADER.size)
        writer.close()
        await wire.finished.wait()
        simulator.set_trace(None)
    assert frames(answers) == [("enquire_link_resp", 7), ("submit_sm_resp", 8)]
    lines = [json.loads(line) for line in trace.read_text("utf-8").splitlines()]
    assert [(line["dir"], line["command"], line["sequence_number"]) for line in lines] == [
        ("in", "enquire_link", 7),
        ("out", "enquire_link_resp", 7),
        ("in", "submit_sm", 8),
        ("out", "submit_sm_resp", 8),
    ]
    assert lines[-1]["command_status"] == "ESME_RINVBNDSTS"
