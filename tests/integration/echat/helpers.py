"""Running ``gatewayd`` as operators do, in a child process, against a configuration of the test's."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

#: ``gatewayd`` (the console script runs `echat.cli.main`, as ``python -m echat`` does).
GATEWAYD = (sys.executable, "-m", "echat")
#: Seconds any one command may take.
DEADLINE = 60.0


def environment() -> dict[str, str]:
    """The test's environment without a $GATEWAYD_CONFIG that would name another configuration."""
    return {key: value for key, value in os.environ.items() if key != "GATEWAYD_CONFIG"}


def gatewayd(*argv: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GATEWAYD, *argv],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=environment(),
    )


def closed_port() -> int:
    """A local port nothing listens on (a carrier that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write_config(
    folder: Path,
    database_url: str,
    *,
    bus_url: str = "memory://",
    panel_listen: str = "127.0.0.1:0",
    metrics_listen: str = "127.0.0.1:0",
    log_json: bool = False,
) -> Path:
    path = folder / "gatewayd.toml"
    path.write_text(
        f"""
[database]
url = "{database_url}"

[bus]
url = "{bus_url}"
client_id = "gatewayd-test"

[log]
json = {"true" if log_json else "false"}

[metrics]
listen = "{metrics_listen}"

# a push leaves at any hour here (quiet hours: tests/integration/gatewayd/test_daemon_cli.py)
[quiet_hours]
default = "off"

[panel]
listen = "{panel_listen}"
public_url = "http://127.0.0.1:8080"
secret_key = "a test secret of thirty-two chars"

[[carriers]]
name = "movistar"
country = "ES"
short_codes = ["997745"]
system_id = "echat"
password = "secret1"

[[carriers.binds]]
host = "127.0.0.1"
port = {closed_port()}
""",
        encoding="utf-8",
    )
    return path


class Lines:
    """A child's output stream read line by line on a thread, so a test waits on a line with a
    deadline instead of blocking on a pipe that may stay silent."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def join(self, within: float = 30.0) -> None:
        """Waits for the end of the stream (it is closed then)."""
        self._thread.join(within)
        assert not self._thread.is_alive(), "the stream did not end"

    def next(self, within: float = 30.0) -> str:
        """The next line; AssertionError when none comes within ``within`` seconds or the stream ended."""
        try:
            line = self._lines.get(timeout=within)
        except queue.Empty:
            raise AssertionError(f"no line within {within:g} s; so far: {self.seen}") from None
        if line is None:
            raise AssertionError(f"the stream ended; it wrote: {self.seen}")
        self.seen.append(line)
        return line

    def until(self, needle: str, within: float = 30.0) -> str:
        """Reads up to the first line holding ``needle`` (within ``within`` seconds in all)."""
        deadline = time.monotonic() + within
        while True:
            line = self.next(max(0.0, deadline - time.monotonic()))
            if needle in line:
                return line

    def rest(self, within: float = 30.0) -> list[str]:
        """Every line up to the end of the stream (the child has exited or is exiting)."""
        while True:
            try:
                line = self._lines.get(timeout=within)
            except queue.Empty:
                raise AssertionError(f"the stream did not end within {within:g} s") from None
            if line is None:
                return self.seen
            self.seen.append(line)


class Child:
    """``gatewayd`` as a long-running child process, its output read line by line; leaving the block
    sends SIGTERM (SIGKILL if it has not ended 30 s later) and waits for it."""

    def __init__(self, *argv: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*GATEWAYD, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env if env is not None else environment(),
        )
        self.stdout = Lines(self.process.stdout)
        self.stderr = Lines(self.process.stderr)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stdout.join()
        self.stderr.join()


MQTT_SUBSCRIBE = 8  # control packet type


def mqtt_packet_types(buffer: bytearray) -> list[int]:
    """Takes the whole MQTT packets off the front of ``buffer``; returns their types."""
    types: list[int] = []
    while len(buffer) >= 2:
        length, shift, index = 0, 0, 1
        while index < len(buffer) and buffer[index] & 0x80:
            length |= (buffer[index] & 0x7F) << shift
            shift, index = shift + 7, index + 1
        if index >= len(buffer):
            break
        length |= buffer[index] << shift
        end = index + 1 + length
        if end > len(buffer):
            break
        types.append(buffer[0] >> 4)
        del buffer[:end]
    return types


class MuteBroker:
    """A front for the MQTT broker that can go silent the way a dead link does: connections stay open,
    what the client sends is still taken, but nothing comes back (no reset, no answer). With
    ``answer_connect_only`` it lets each connection's first answer (CONNACK) through and then falls
    silent: the client is connected and its SUBSCRIBE is never confirmed. ``subscribed`` is set once a
    client has sent a SUBSCRIBE."""

    def __init__(self, broker_host: str, broker_port: int, *, answer_connect_only: bool = False) -> None:
        self.broker = (broker_host, broker_port)
        self.answer_connect_only = answer_connect_only
        self.silent = False
        self.port = 0
        self.subscribed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> MuteBroker:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection(*self.broker)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, broker_writer))
        await asyncio.gather(
            self._pipe(reader, broker_writer, answers=False),
            self._pipe(broker_reader, writer, answers=True),
            return_exceptions=True,
        )
        for each in (writer, broker_writer):
            self._writers.discard(each)
            each.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, answers: bool
    ) -> None:
        first = True
        sent = bytearray()
        while data := await reader.read(65536):
            if answers and (self.silent or (self.answer_connect_only and not first)):
                continue  # swallowed: the client waits for an answer that never comes
            first = False
            writer.write(data)
            await writer.drain()
            if not answers:
                sent += data
                if MQTT_SUBSCRIBE in mqtt_packet_types(sent):
                    self.subscribed.set()
