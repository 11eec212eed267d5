"""A webhook receiver for the tests: a small asyncio HTTP/1.1 server on 127.0.0.1 that checks each
delivery's signature, answers with the status its ``answer`` callback chooses, and can be stopped and
started again on the same port: a receiver outage. Stopping cuts the idle connections and lets a request
being answered finish first, so an answer counted as given was written whole (a worker that saw it cut
would post that delivery again, legitimately)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatewayd.webhooks.signing import verify


@dataclass(frozen=True, slots=True)
class Received:
    delivery_id: int
    event: str
    payload: dict[str, Any]
    signed: bool
    #: The status answered (a 2xx acknowledges the delivery).
    status: int


@dataclass
class Receiver:
    secret: str = ""
    #: The status to answer a request with (default 200).
    answer: Callable[[Received], int] = lambda _: 200
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    #: Connections between a request's head and the end of its answer.
    _answering: set[asyncio.StreamWriter] = field(default_factory=set)
    _answered: asyncio.Condition = field(default_factory=asyncio.Condition)
    _stopping: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def acknowledged(self) -> list[Received]:
        return [item for item in self.received if 200 <= item.status < 300]

    async def start(self) -> None:
        self._stopping = False
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Down: no new connection, the idle ones cut, those being answered closed once answered."""
        assert self._server is not None
        self._stopping = True
        self._server.close()
        for writer in list(self._writers - self._answering):
            writer.transport.abort()
        async with self._answered:
            await self._answered.wait_for(lambda: not self._answering)
        await self._server.wait_closed()
        self._server = None

    async def _done_answering(self, writer: asyncio.StreamWriter) -> None:
        async with self._answered:
            self._answering.discard(writer)
            self._answered.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if self._stopping:
                    break
                self._answering.add(writer)
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                signed = verify(self.secret, headers.get("x-echat-signature", ""), body, int(time.time()))
                item = Received(
                    int(headers["x-echat-delivery"]), headers["x-echat-event"], json.loads(body), signed, 0
                )
                status = self.answer(item)
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
                self.received.append(Received(item.delivery_id, item.event, item.payload, signed, status))
                await self._done_answering(writer)
                if self._stopping:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            await self._done_answering(writer)
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
