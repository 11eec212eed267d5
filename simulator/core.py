"""The simulator: the SMSC engine with its control API and its load generators.

async with Simulator(config) as simulator:
    simulator.port("movistar")          # the real port when 0 was configured
    simulator.inject_mo("movistar", "34600111222", "997745", "Hola")
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any

import uvicorn

from simulator.api import create_app
from simulator.engine import SMSCEngine, UnknownCarrier
from simulator.loadgen import LoadGenerators, LoadSpec
from simulator.profiles import SimulatorConfig

__all__ = ["Simulator", "UnknownCarrier"]


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our event loop: signals belong to the host program, not to the API server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Simulator(SMSCEngine):
    """An SMSC per carrier profile plus the HTTP control API and the load generators. Reusable after
    ``stop()``, not re-entrant."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        super().__init__(config)
        self.loads = LoadGenerators(self)
        self._api: _EmbeddedServer | None = None
        self._api_task: asyncio.Task[None] | None = None
        self._api_port: int | None = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def _started(self) -> None:
        if self.config.control_port is not None:
            await self._start_api()

    async def _start_api(self) -> None:
        # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto
        # says TCP, and without it every response after the first on a kept-alive connection waits
        # for the client's delayed ACK (~40 ms).
        family = socket.AF_INET6 if ":" in self.config.control_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.control_host, self.config.control_port or 0))
        self._api_port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self, self.loads),
            log_level="warning",
            log_config=None,  # the host program's logging, with its timestamps
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        api = self._api = _EmbeddedServer(config)
        task = self._api_task = asyncio.create_task(api.serve(sockets=[sock]), name="simulator.api")
        while not api.started:
            if task.done():
                task.result()  # raises why it stopped
                raise RuntimeError("the control API did not start")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self.loads.stop()
        if self._api is not None:
            self._api.should_exit = True  # its graceful shutdown runs while the SMPP side closes
        await super().stop()
        if self._api_task is not None:
            await asyncio.gather(self._api_task, return_exceptions=True)
        self._api = self._api_task = None
        self._api_port = None

    # --- addresses ----------------------------------------------------------------------------------

    @property
    def control_port(self) -> int | None:
        return self._api_port

    @property
    def control_url(self) -> str | None:
        if self._api_port is None:
            return None
        host = self.config.control_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self._api_port}"

    def status(self) -> dict[str, Any]:
        return {**super().status(), "control_url": self.control_url}

    # --- load ---------------------------------------------------------------------------------------

    def start_load(self, spec: LoadSpec | Mapping[str, Any]) -> dict[str, Any]:
        return self.loads.start(LoadSpec.model_validate(spec))

    def stop_load(self, carrier: str | None = None) -> list[dict[str, Any]]:
        return self.loads.stop(carrier)

    def load_status(self) -> list[dict[str, Any]]:
        return self.loads.status()
