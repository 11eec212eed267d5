"""A scripted SMSC for the daemon's hostile-input tests: raw bytes out, every answer recorded with its time.

It accepts any number of binds (the daemon's binds of one carrier), answers binds, enquire_link, unbind
and submit_sm itself (with the statuses a test scripts), and lets the test push whatever it likes to one
connection or all of them: well formed deliver_sm with hostile content, truncated or oversized PDUs,
requests an SMSC never sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gatewayd.daemon import Daemon
from gatewayd.schema import upgrade
from gatewayd.store.engine import create_engine
from simulator.core import Simulator
from smpp.codec import encode
from smpp.constants import TON, CommandID, ESMClass
from smpp.pdu import DeliverSM
from smpp.tlv import TLVs
from tests.integration.gatewayd.helpers import MOVISTAR, make_config, running_daemon

HEADER = struct.Struct(">IIII")
_BINDS = (CommandID.BIND_TRANSMITTER, CommandID.BIND_RECEIVER, CommandID.BIND_TRANSCEIVER)


@dataclass(slots=True)
class Connection:
    """One bind of the daemon to this SMSC."""

    writer: asyncio.StreamWriter
    bound: bool = False
    closed: bool = False


@dataclass(slots=True)
class Answer:
    command_id: int
    status: int
    sequence: int
    at: float


class HostileSMSC:
    """``deliver(...)`` sends a deliver_sm and returns its sequence number; ``answer_to(sequence)`` is the
    daemon's answer once it came (``None`` before); ``latency(sequence)`` how long it took."""

    def __init__(self) -> None:
        self.port = 0
        self.connections: list[Connection] = []
        self.answers: dict[int, Answer] = {}
        #: sequence -> time.monotonic() when the deliver_sm went out
        self.sent: dict[int, float] = {}
        #: Called with (connection index, sequence) when a deliver_sm answer arrives, before it is recorded.
        self.on_answer: Callable[[int, int], None] | None = None
        #: command_status of the next submit_sm answers, in order (a bare header); then success with an id
        self.submit_statuses: deque[int] = deque()
        #: The id the n-th accepted submit_sm gets (``h1``, ``h2``... by default)
        self.message_id_of: Callable[[int], str] = lambda number: f"h{number}"
        #: (message id or None, status) of every submit_sm answered, in order
        self.submits: list[tuple[str | None, int]] = []
        self._sequence = 1000
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()
        self._message_ids = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> HostileSMSC:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for connection in self.connections:
            connection.writer.transport.abort()
        await self._server.wait_closed()

    # --- what the test does -------------------------------------------------------------------------------

    def bound(self) -> list[int]:
        """Indexes of the connections bound and still open."""
        return [index for index, c in enumerate(self.connections) if c.bound and not c.closed]

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def push(self, data: bytes, connection: int | None = None) -> None:
        """Raw bytes to one connection (the first bound one by default)."""
        index = self.bound()[0] if connection is None else connection
        self.connections[index].writer.write(data)

    def deliver(
        self,
        source: str,
        body: bytes,
        *,
        data_coding: int = 0,
        destination: str = "997745",
        esm_class: int = 0,
        tlvs: TLVs | None = None,
        connection: int | None = None,
        sequence: int | None = None,
    ) -> int:
        """Send one deliver_sm (``sequence`` again for a redelivery); returns its sequence number."""
        index = self.bound()[0] if connection is None else connection
        sequence = self.next_sequence() if sequence is None else sequence
        pdu = DeliverSM(
            source_addr_ton=TON.INTERNATIONAL,
            source_addr_npi=1,
            source_addr=source,
            destination_addr=destination,
            esm_class=esm_class,
            data_coding=data_coding,
            short_message=body,
            tlvs=tlvs if tlvs is not None else TLVs(),
        )
        self.answers.pop(sequence, None)
        self.sent[sequence] = time.monotonic()
        self.connections[index].writer.write(encode(pdu, sequence_number=sequence))
        return sequence

    def deliver_burst(
        self, messages: Sequence[tuple[str, bytes]], connection: int | None = None
    ) -> list[int]:
        """One deliver_sm per (source, body), all in one write (a window's burst, read in one go); returns
        their sequence numbers."""
        index = self.bound()[0] if connection is None else connection
        sequences = [self.next_sequence() for _ in messages]
        blob = b"".join(
            encode(
                DeliverSM(
                    source_addr_ton=TON.INTERNATIONAL,
                    source_addr_npi=1,
                    source_addr=source,
                    destination_addr="997745",
                    short_message=body,
                ),
                sequence_number=sequence,
            )
            for sequence, (source, body) in zip(sequences, messages, strict=True)
        )
        now = time.monotonic()
        self.sent.update(dict.fromkeys(sequences, now))
        self.connections[index].writer.write(blob)
        return sequences

    def deliver_part(
        self, source: str, body: bytes, reference: int, total: int, number: int, **options: object
    ) -> int:
        """One part of a long MO: an 8-bit concatenation UDH before ``body``."""
        udh = bytes([5, 0, 3, reference, total, number])
        return self.deliver(source, udh + body, esm_class=ESMClass.UDHI, **options)  # type: ignore[arg-type]

    def answer_to(self, sequence: int) -> Answer | None:
        return self.answers.get(sequence)

    def latency(self, sequence: int) -> float:
        answer = self.answers[sequence]
        return answer.at - self.sent[sequence]

    def drop(self, connection: int) -> None:
        """Reset one connection at once: whatever the daemon writes to it now is lost."""
        self.connections[connection].closed = True
        self.connections[connection].writer.transport.abort()

    def hang_up(self, connection: int) -> None:
        """Close one connection after what was written to it: the daemon reads it all, then the end."""
        self.connections[connection].closed = True
        self.connections[connection].writer.close()

    async def wait_for(self, condition: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_answered(self, *sequences: int, within: float = 15.0) -> list[Answer]:
        await self.wait_for(lambda: all(sequence in self.answers for sequence in sequences), within)
        return [self.answers[sequence] for sequence in sequences]

    # --- the SMSC side ------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(writer)
        self.connections.append(connection)
        index = len(self.connections) - 1
        self._changed.set()
        try:
            while True:
                length, command_id, status, sequence = HEADER.unpack(await reader.readexactly(16))
                body = await reader.readexactly(length - 16)
                self._received(index, connection, command_id, status, sequence, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            connection.closed = True
            with contextlib.suppress(Exception):
                writer.close()
            self._changed.set()

    def _received(
        self, index: int, connection: Connection, command_id: int, status: int, sequence: int, body: bytes
    ) -> None:
        writer = connection.writer
        if command_id & 0x80000000:
            if command_id in (CommandID.DELIVER_SM_RESP, CommandID.DATA_SM_RESP, CommandID.GENERIC_NACK):
                if self.on_answer is not None:
                    self.on_answer(index, sequence)
                if not connection.closed:
                    self.answers[sequence] = Answer(command_id, status, sequence, time.monotonic())
            self._changed.set()
            return
        if command_id in _BINDS:
            writer.write(response(command_id, sequence, body=b"HOSTILE\0"))
            connection.bound = True
        elif command_id == CommandID.UNBIND:
            writer.write(response(command_id, sequence))
        elif command_id == CommandID.SUBMIT_SM and self.submit_statuses:
            status = self.submit_statuses.popleft()
            writer.write(response(command_id, sequence, status=status))
            self.submits.append((None, status))
        elif command_id == CommandID.SUBMIT_SM:
            self._message_ids += 1
            message_id = self.message_id_of(self._message_ids)
            writer.write(response(command_id, sequence, body=f"{message_id}\0".encode()))
            self.submits.append((message_id, 0))
        else:
            writer.write(response(command_id, sequence))
        self._changed.set()


def response(request_command_id: int, sequence: int, status: int = 0, body: bytes = b"") -> bytes:
    return HEADER.pack(16 + len(body), request_command_id | 0x80000000, status, sequence) + body


def raw_pdu(command_id: int, sequence: int, body: bytes = b"", *, length: int | None = None) -> bytes:
    """A PDU as bytes; ``length`` overrides the command_length written in the header."""
    return HEADER.pack(16 + len(body) if length is None else length, command_id, 0, sequence) + body


@contextlib.asynccontextmanager
async def daemon_on(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC, **options: object
) -> AsyncIterator[Daemon]:
    """A daemon whose two movistar binds talk to ``smsc`` (vodafone stays on the simulator)."""
    config = make_config(
        tmp_path, database_url, simulator, binds_per_carrier=2, ports={MOVISTAR: smsc.port}, **options
    )
    async with running_daemon(config, binds_up=4) as daemon:
        await smsc.wait_for(lambda: len(smsc.bound()) == 2)
        yield daemon


async def migrated_with(database_url: str, statements: Mapping[str, Sequence[str]]) -> None:
    """The database migrated, then the statements of its dialect run (a trigger that makes it refuse a
    row, as it would a value it cannot store)."""
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for statement in statements[engine.dialect.name]:
                await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()
