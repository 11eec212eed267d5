"""Slow clients against the real commands (issue 9, item 4): ``gatewayd panel`` and the metrics
endpoint of ``gatewayd run``, each in a process whose open-files limit is lowered to 1,024.

1,100 connections (more than the server may open files) send half a request head and wait. The
server goes on answering real requests meanwhile, closes every half-sent one (the oldest to make
room, the rest when their headers are late), and writes a bounded number of log lines, none with a
traceback. Before, the process ran out of descriptors, stopped accepting and logged an ``accept()``
traceback per attempt (tens of megabytes within seconds).
"""

from __future__ import annotations

import asyncio
import resource
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from gatewayd.schema import upgrade
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import simulator_config, write_config

GATEWAYD = str(Path(sys.executable).with_name("gatewayd"))
OPEN_FILES = 1024
HALF_SENT = 1100  # more than the server may open files
HEADER_TIMEOUT = 3.0
#: Log lines a run may write at most (start-up, shutdown and a few summaries of what was closed).
LOG_LINES = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def lowered_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


@asynccontextmanager
async def gatewayd(command: str, config: Path, log: Path, ready_url: str) -> AsyncIterator[None]:
    """``gatewayd <command> --config <config>`` with 1,024 open files at most, its log in ``log``,
    until its endpoint at ``ready_url`` answers; stopped with SIGTERM after."""
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            GATEWAYD,
            command,
            "--config",
            str(config),
            stdout=stderr,
            stderr=stderr,
            preexec_fn=lowered_open_files,
        )
    try:
        async with asyncio.timeout(30), httpx.AsyncClient(timeout=2) as client:
            while True:
                if process.returncode is not None:
                    raise AssertionError((await asyncio.to_thread(log.read_text, errors="replace"))[-2000:])
                try:
                    await client.get(ready_url)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def half_sent(port: int, path: str) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Connections that sent the start of a request head and stop there."""
    opened = []
    for _ in range(HALF_SENT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow".encode())
        opened.append((reader, writer))
    return opened


async def closed_by_the_server(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except ConnectionResetError:
        pass


async def slow_clients_change_nothing(base_url: str, port: int, path: str, log: Path) -> None:
    slow = await half_sent(port, path)
    try:
        # Each real request on a new connection, while the half-sent ones are held.
        async with httpx.AsyncClient(
            base_url=base_url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
        ) as client:
            for _ in range(5):
                assert (await client.get(path)).status_code == 200
            async with asyncio.timeout(HEADER_TIMEOUT + 30):
                await asyncio.gather(*(closed_by_the_server(reader) for reader, _ in slow))
            assert (await client.get(path)).status_code == 200
    finally:
        for _, writer in slow:
            writer.close()
    text = await asyncio.to_thread(log.read_text, errors="replace")
    assert "Traceback" not in text, text[:2000]
    assert len(text.splitlines()) <= LOG_LINES, text[:4000]


@pytest.fixture(autouse=True)
def enough_open_files_here() -> None:
    """This process holds the slow connections: it needs more descriptors than the server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 4 * HALF_SENT
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 2 * HALF_SENT + 256


async def test_the_panel_outlasts_a_flood_of_half_sent_requests(tmp_path: Path, sqlite_url: str) -> None:
    await upgrade(sqlite_url)
    port = free_port()
    config = tmp_path / "gatewayd.toml"
    config.write_text(
        f"""
[database]
url = "{sqlite_url}"

[panel]
listen = "127.0.0.1:{port}"
header_timeout = {HEADER_TIMEOUT}

[[carriers]]
name = "movistar"
country = "ES"
short_codes = ["997745"]
system_id = "echat"
password = "secret1"

[[carriers.binds]]
host = "127.0.0.1"
port = {free_port()}

[[services]]
name = "chat"
short_code = "997745"
""",
        encoding="utf-8",
    )
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "panel.log"
    async with gatewayd("panel", config, log, f"{url}/login"):
        await slow_clients_change_nothing(url, port, "/login", log)


async def test_the_metrics_endpoint_outlasts_a_flood_of_half_sent_requests(
    tmp_path: Path, sqlite_url: str
) -> None:
    await upgrade(sqlite_url)
    port = free_port()
    async with Simulator(simulator_config()) as simulator:
        config = write_config(tmp_path / "gatewayd.toml", sqlite_url, simulator)
        text = config.read_text(encoding="utf-8")
        metrics = f'[metrics]\nlisten = "127.0.0.1:{port}"\nheader_timeout = {HEADER_TIMEOUT}\n'
        config.write_text(text.replace("[metrics]\nenabled = false\n", metrics), encoding="utf-8")
        url = f"http://127.0.0.1:{port}"
        log = tmp_path / "daemon.log"
        async with gatewayd("run", config, log, f"{url}/metrics"):
            await slow_clients_change_nothing(url, port, "/metrics", log)
