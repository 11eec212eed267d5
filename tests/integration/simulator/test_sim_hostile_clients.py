"""Clients that would make the simulator hold memory or log lines without limit: one that sends and
never reads has its reading paused while its answers wait, one that never binds is closed after the
carrier's ``session_init_timer``, one that sends garbage in a loop gets a bounded number of log lines."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from simulator import Simulator, SimulatorConfig
from smpp.aio import ESMESession
from smpp.codec import encode
from smpp.pdu import BindTransceiver, EnquireLink
from tests.integration.simulator.simharness import esme_config, make_config
from tests.waiting import eventually

pytestmark = pytest.mark.integration

PDU_SIZE = 16  # an enquire_link and its answer: a bare header
#: One read of the transport (256 KiB) answered at once may overshoot the 64 KiB high-water mark.
WRITE_BUFFER_BOUND = 1 << 20
#: Bytes a client may send before the test calls the simulator's reading unbounded.
SEND_CAP = 64 << 20


def config_with(**profile: object) -> SimulatorConfig:
    config = make_config()
    carriers = tuple(carrier.model_copy(update=profile) for carrier in config.carriers)
    return config.model_copy(update={"carriers": carriers})


@asynccontextmanager
async def raw_client(port: int) -> AsyncIterator[socket.socket]:
    """A non-blocking TCP socket to ``port`` with small buffers, so that not reading shows soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        yield sock
    finally:
        sock.close()


async def read_exactly(sock: socket.socket, count: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while len(data) < count:
        chunk = await loop.sock_recv(sock, min(1 << 16, count - len(data)))
        if not chunk:
            raise AssertionError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


async def read_to_end(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    try:
        while await loop.sock_recv(sock, 1 << 16):
            pass
    except ConnectionResetError:
        pass  # an abort


async def bind(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, encode(BindTransceiver(system_id="echat", password="secret1"), 1))
    (length,) = struct.unpack(">I", await read_exactly(sock, 4))
    header = await read_exactly(sock, length - 4)
    assert struct.unpack(">II", header[4:12])[0] == 0, "bind refused"


async def test_a_client_that_never_reads_is_paused_not_buffered_for() -> None:
    loop = asyncio.get_running_loop()
    async with Simulator(make_config()) as simulator, raw_client(simulator.port("movistar")) as sock:
        await bind(sock)
        carrier = simulator.carrier("movistar")
        (session,) = carrier.sessions
        transport = session._transport
        assert transport is not None
        burst = b"".join(encode(EnquireLink(), n) for n in range(2, 4098))  # 64 KiB
        pending = memoryview(burst)
        sent = 0
        while transport.is_reading():
            assert transport.get_write_buffer_size() <= WRITE_BUFFER_BOUND, "answers pile up"
            assert sent < SEND_CAP, "the simulator never stopped reading"
            try:
                count = sock.send(pending)
            except BlockingIOError:
                count = 0
            sent += count
            pending = pending[count:] or memoryview(burst)
            await asyncio.sleep(0)  # the simulator's turn to read
        assert transport.get_write_buffer_size() <= WRITE_BUFFER_BOUND
        # Reading again drains its buffer, the simulator reads again, and every request is answered.
        remainder = (-sent) % PDU_SIZE
        await asyncio.gather(
            loop.sock_sendall(sock, bytes(pending[:remainder])),
            read_exactly(sock, (sent + remainder) // PDU_SIZE * PDU_SIZE),
        )
        assert session.bound and transport.is_reading()


async def test_a_connection_never_bound_is_closed_after_the_session_init_timer() -> None:
    # a second: the bound session must bind within it even on a loaded machine
    async with Simulator(config_with(session_init_timer=1.0)) as simulator:
        port = simulator.port("movistar")
        async with ESMESession(esme_config(simulator)) as bound, raw_client(port) as idle:
            async with asyncio.timeout(10):
                await read_to_end(idle)  # closed by the simulator
            # the bound session connected first: its timer would have run out first
            assert bound.bound


async def test_protocol_errors_of_one_connection_are_logged_a_bounded_number_of_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unknown = struct.pack(">IIII", 16, 0x00000077, 0, 0)  # an unknown command_id, answered generic_nack
    async with Simulator(make_config()) as simulator:
        with caplog.at_level(logging.WARNING, logger="smpp"):
            async with raw_client(simulator.port("movistar")) as sock:
                await bind(sock)
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(sock, unknown * 500 + encode(EnquireLink(), 2))
                await read_exactly(sock, 501 * PDU_SIZE)  # 500 generic_nack and the enquire_link_resp
            await eventually(lambda: not simulator.carrier("movistar").sessions)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("smpp")]
    assert sum("protocol error from" in line for line in logged) == 10
    assert sum("490 more protocol errors" in line for line in logged) == 1
    assert len(logged) <= 12
