"""Peers for the SMPP integration tests, all on 127.0.0.1 with ephemeral ports:

- ``RecordingHandler`` behind our ``SMSCServer``;
- ``RawSMSC``: a scripted SMSC that speaks raw bytes, to send what a well-behaved peer never would.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from smpp.aio import BindRequest, SMSCSession
from smpp.constants import CommandID, CommandStatus
from smpp.pdu import PDU, SubmitSMResp

HEADER = struct.Struct(">IIII")
PASSWORD = "secret"


class RecordingHandler:
    """Accepts ``PASSWORD``, records every request, answers submit_sm with message ids m1, m2, ..."""

    def __init__(self) -> None:
        self.binds: list[BindRequest] = []
        self.requests: list[PDU] = []
        self.bound: list[SMSCSession] = []
        self.closed: list[SMSCSession] = []
        self.answer: Callable[[SMSCSession, PDU], PDU | None] = self.accept
        self._changed = asyncio.Event()

    def accept(self, session: SMSCSession, pdu: PDU) -> PDU | None:
        response_class = pdu.response_class
        assert response_class is not None
        if response_class is SubmitSMResp:
            return SubmitSMResp(message_id=f"m{len(self.requests)}")
        return response_class()

    def authenticate(self, session: SMSCSession, bind: BindRequest) -> int:
        self.binds.append(bind)
        self._changed.set()
        return 0 if bind.password == PASSWORD else CommandStatus.ESME_RINVPASWD

    def on_request(self, session: SMSCSession, pdu: PDU) -> PDU | None:
        self.requests.append(pdu)
        self._changed.set()
        return self.answer(session, pdu)

    def on_bound(self, session: SMSCSession) -> None:
        self.bound.append(session)
        self._changed.set()

    def on_closed(self, session: SMSCSession) -> None:
        self.closed.append(session)
        self._changed.set()

    async def wait_for(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


class RawSMSC:
    """A test-only SMSC that frames PDUs by their header and answers through a script.

    Binds and unbinds are answered with status 0; every other PDU goes to ``script(command_id,
    sequence_number, body)``, whose return value (raw bytes or None) is written back as is.
    ``push(data)`` writes raw bytes to the connected ESME at any time.
    """

    def __init__(self) -> None:
        self.received: list[tuple[int, int, int, bytes]] = []  # command_id, status, sequence, body
        self.script: Callable[[int, int, bytes], bytes | None] = lambda command_id, sequence, body: None
        self.port = 0
        self.connections = 0
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        if self._writer is not None:
            self._writer.close()
        await self._server.wait_closed()

    def push(self, data: bytes) -> None:
        assert self._writer is not None, "no ESME connected"
        self._writer.write(data)

    def drop(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()

    def of(self, command_id: int) -> list[tuple[int, int, int, bytes]]:
        return [entry for entry in self.received if entry[0] == command_id]

    async def wait_for(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.connections += 1
        self._changed.set()
        try:
            while True:
                length, command_id, status, sequence = HEADER.unpack(await reader.readexactly(16))
                body = await reader.readexactly(length - 16)
                self.received.append((command_id, status, sequence, body))
                self._changed.set()
                if command_id in (
                    CommandID.BIND_TRANSMITTER,
                    CommandID.BIND_RECEIVER,
                    CommandID.BIND_TRANSCEIVER,
                ):
                    writer.write(response(command_id, sequence, body=b"RAW\0"))
                elif command_id == CommandID.UNBIND:
                    writer.write(response(command_id, sequence))
                else:
                    answer = self.script(command_id, sequence, body)
                    if answer:
                        writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._changed.set()


def response(request_command_id: int, sequence: int, status: int = 0, body: bytes = b"") -> bytes:
    """Raw bytes of the response to a request."""
    return HEADER.pack(16 + len(body), request_command_id | 0x80000000, status, sequence) + body


def raw_pdu(command_id: int, sequence: int, body: bytes = b"", status: int = 0) -> bytes:
    return HEADER.pack(16 + len(body), command_id, status, sequence) + body
