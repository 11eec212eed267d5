"""The panel's server against slow and surplus connections, request by request (``gatewayd.webserver``):
late headers are cut on a fresh and on a kept-alive connection, a stalled body is cut, a new
connection past the limit pushes out the oldest one still sending its headers, and is itself closed
when every connection is busy with a request. The flood under a lowered open-files limit is in
``tests/integration/test_slow_clients.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from gatewayd.config import HTTPServerConfig
from gatewayd.webserver import MIN_CONNECTIONS, listening_socket
from panel.serve import panel_server
from panel.settings import PanelSettings
from plugins import auth, home

from .conftest import FAST_ARGON2, prepare_store

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
HEAD = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
# A bound on how long the server may take to cut a connection, far above the timeouts used here.
CUT_WITHIN = 10.0


class Clients:
    """Raw connections to the server, closed at the end of the test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.opened: list[Connection] = []

    async def connect(self, first: bytes = b"") -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.opened.append((reader, writer))
        writer.write(first)
        await writer.drain()
        return reader, writer

    async def close(self) -> None:
        for _, writer in self.opened:
            writer.close()
        for _, writer in self.opened:
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass


@asynccontextmanager
async def served(url: str, http: HTTPServerConfig) -> AsyncIterator[Clients]:
    """``panel_server`` (what ``gatewayd panel`` runs) on an ephemeral 127.0.0.1 port."""
    await prepare_store(url)
    settings = PanelSettings(database_url=url, secure_cookies=False, argon2=FAST_ARGON2)
    sock = listening_socket("127.0.0.1", 0)
    server = panel_server(settings, plugins=[auth.plugin, home.plugin], http=http)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="test.panel.server")
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done()
                await asyncio.sleep(0.01)
        clients = Clients(int(sock.getsockname()[1]))
        try:
            yield clients
        finally:
            await clients.close()
    finally:
        server.should_exit = True
        await task
        sock.close()


async def cut(connection: Connection) -> bytes:
    """What the server sent until it closed the connection."""
    reader, _ = connection
    async with asyncio.timeout(CUT_WITHIN):
        return await reader.read()


def still_open(connection: Connection) -> bool:
    reader, _ = connection
    return not reader.at_eof()


async def test_late_headers_are_cut_on_a_fresh_and_on_a_kept_alive_connection(
    sqlite_url: str, example_on_path: None
) -> None:
    async with served(sqlite_url, HTTPServerConfig(header_timeout=0.5, keep_alive_timeout=30)) as clients:
        assert await cut(await clients.connect(HEAD)) == b""
        kept = await clients.connect(HEAD + b"\r\n")
        reader, writer = kept
        status = await reader.readline()
        assert status.startswith(b"HTTP/1.1 200")
        writer.write(HEAD)  # the next request on the kept-alive connection never ends its headers
        answered = await cut(kept)
        assert answered.count(b"HTTP/1.1") == 0  # the rest of the first response, then nothing


async def test_a_stalled_body_is_cut(sqlite_url: str, example_on_path: None) -> None:
    async with served(sqlite_url, HTTPServerConfig(header_timeout=0.5)) as clients:
        post = b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
        post += b"Content-Type: application/x-www-form-urlencoded\r\n\r\nusername=ana&"
        assert await cut(await clients.connect(post)) == b""


async def test_past_the_limit_the_oldest_connection_still_sending_headers_makes_room(
    sqlite_url: str, example_on_path: None
) -> None:
    limit = HTTPServerConfig(max_connections=MIN_CONNECTIONS, header_timeout=60)
    async with served(sqlite_url, limit) as clients:
        slow = [await clients.connect(HEAD) for _ in range(MIN_CONNECTIONS)]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{clients.port}", timeout=10) as client:
            assert (await client.get("/login")).status_code == 200
        assert await cut(slow[0]) == b""  # long before its 60 s
        assert all(still_open(connection) for connection in slow[1:])


async def test_past_the_limit_a_new_connection_is_closed_when_all_are_busy(
    sqlite_url: str, example_on_path: None
) -> None:
    limit = HTTPServerConfig(max_connections=MIN_CONNECTIONS, header_timeout=60)
    async with served(sqlite_url, limit) as clients:
        # Requests whose bodies the panel is waiting for: busy, not waiting for headers. "100 Continue"
        # says the server has the headers and the panel asked for the body.
        post = b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
        post += b"Expect: 100-continue\r\n\r\n"
        busy = [await clients.connect(post) for _ in range(MIN_CONNECTIONS)]
        for reader, _ in busy:
            async with asyncio.timeout(10):
                assert (await reader.readline()).startswith(b"HTTP/1.1 100")
        assert await cut(await clients.connect(HEAD + b"\r\n")) == b""
        assert all(still_open(connection) for connection in busy)
