"""The simulator: carriers on their SMPP ports, the shared MT store and timer wheel, the control API.

async with Simulator(config) as simulator:
    simulator.port("movistar")          # the real port when 0 was configured
    simulator.inject_mo("movistar", "34600111222", "997745", "Hola")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Generator, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any

import uvicorn

from simulator.carrier import Carrier, DueItem
from simulator.events import EventHub
from simulator.loadgen import LoadGenerator, parse_load_spec
from simulator.mo import MOMessage, mo_parts
from simulator.msisdn import normalize_msisdn
from simulator.mtstore import MTRecord, MTStore
from simulator.pdu_json import message_content
from simulator.profiles import CarrierProfile, SimulatorConfig, default_config, parse_carrier
from simulator.settings import Reader, SettingsError
from simulator.timerwheel import TimerWheel
from simulator.trace import PDUTracer, trace_file
from smpp.aio import SMSCServer
from smpp.text import MAX_PARTS

log = logging.getLogger("simulator")


class UnknownCarrier(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.message = f"unknown carrier {name!r}; known carriers: {', '.join(known)}"

    def __str__(self) -> str:
        return self.message


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our event loop: signals belong to the host program, not to the API server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Simulator:
    """An SMSC per carrier profile plus the HTTP control API. Reusable after ``stop()``, not re-entrant."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or default_config()
        self.rng = random.Random(self.config.seed)
        self.clock = time.monotonic
        self.store = MTStore(self.config.mt_store_size)
        self.hub = EventHub()
        self.wheel: TimerWheel[DueItem] = TimerWheel(self.config.tick, self.clock())
        self.wheel.on_first = self._wake_clock
        #: Set while the clock sleeps with nothing scheduled; done when something needs it sooner.
        self._clock_wake: asyncio.Future[None] | None = None
        self.tracer: PDUTracer | None = None
        self.carriers: dict[str, Carrier] = {
            profile.name: Carrier(profile, self, index) for index, profile in enumerate(self.config.carriers)
        }
        self.loads: dict[str, LoadGenerator] = {}
        #: True when someone must see each MT (event listeners, load generators): checked per MT.
        self.mt_observed = False
        self.started_at = 0.0
        self._servers: dict[str, SMSCServer] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._api: _EmbeddedServer | None = None
        self._api_port: int | None = None
        self.stopping = asyncio.Event()
        if self.config.trace_path:
            self.set_trace(self.config.trace_path)

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._servers:
            raise RuntimeError("the simulator is already running")
        self.stopping = asyncio.Event()
        self.started_at = time.time()
        try:
            for carrier in self.carriers.values():
                profile = carrier.profile
                server = SMSCServer(
                    carrier,
                    host=profile.host,
                    port=profile.port,
                    deliver_window=profile.deliver_window,
                    name=profile.name,
                )
                await server.start()
                self._servers[profile.name] = server
            self._tasks.append(asyncio.create_task(self._clock_loop(), name="simulator.clock_loop"))
            if self.config.control_port is not None:
                await self._start_api()
        except BaseException:
            await self.stop()
            raise
        log.info("simulator up: %s", ", ".join(f"{name} on {self.port(name)}" for name in self._servers))

    async def _start_api(self) -> None:
        from simulator.api import create_app

        # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto
        # says TCP, and without it every response after the first on a kept-alive connection waits
        # for the client's delayed ACK (~40 ms).
        family = socket.AF_INET6 if ":" in self.config.control_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.control_host, self.config.control_port or 0))
        self._api_port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self),
            log_level="warning",
            log_config=None,  # the host program's logging, with its timestamps
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._api = _EmbeddedServer(config)
        self._tasks.append(asyncio.create_task(self._api.serve(sockets=[sock]), name="simulator.api"))
        while not self._api.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()  # raises why it stopped
                raise RuntimeError("the control API did not start")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self.stopping.set()
        for load in self.loads.values():
            load.running = False
        if self._api is not None:
            self._api.should_exit = True
        servers, self._servers = list(self._servers.values()), {}
        await asyncio.gather(*(server.close(grace=1.0) for server in servers), return_exceptions=True)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if task.get_name() != "simulator.api":
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._api = None
        self._api_port = None
        if self.tracer is not None:
            self.tracer.flush()

    async def close(self) -> None:
        """Stop and release the trace file."""
        await self.stop()
        self.set_trace(None)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def _clock_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self.config.tick
        next_sample = self.clock()
        while True:
            if not self.wheel and not self.loads:
                await self._idle(loop, next_sample - self.clock())
            await asyncio.sleep(tick)
            now = self.clock()
            for action, argument in self.wheel.drain(now):
                try:
                    action(argument)
                except Exception:
                    log.exception("scheduled %s failed", getattr(action, "__name__", action))
            for load in self.loads.values():
                load.tick(now)
            if now >= next_sample:
                next_sample = now + 1.0
                for carrier in self.carriers.values():
                    carrier.counters.sample(now)
                if self.tracer is not None:
                    self.tracer.flush()

    async def _idle(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        """Sleep up to ``seconds`` (the next counter sample) while nothing is scheduled: a hundred idle
        ticks a second cost 1-2 % of a core that the ESME and its database could use. Scheduling into
        the empty wheel or starting a load ends the sleep, and the clock ticks again from there."""
        wake = self._clock_wake = loop.create_future()
        timer = loop.call_later(max(0.0, seconds), self._wake_clock)
        try:
            await wake
        finally:
            timer.cancel()
            self._clock_wake = None

    def _wake_clock(self) -> None:
        wake = self._clock_wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # --- addresses ----------------------------------------------------------------------------------

    def port(self, carrier: str) -> int:
        """The SMPP port ``carrier`` listens on (the real one once started)."""
        server = self._servers.get(carrier)
        if server is not None:
            return server.port
        return self.carrier(carrier).profile.port

    @property
    def control_port(self) -> int | None:
        return self._api_port

    @property
    def control_url(self) -> str | None:
        if self._api_port is None:
            return None
        host = self.config.control_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self._api_port}"

    def carrier(self, name: str) -> Carrier:
        try:
            return self.carriers[name]
        except KeyError:
            raise UnknownCarrier(name, list(self.carriers)) from None

    # --- MO -----------------------------------------------------------------------------------------

    def inject_mo(
        self,
        carrier: str,
        msisdn: str,
        short_code: str,
        text: str,
        *,
        encoding: str = "auto",
        order: str = "in_order",
        max_parts: int = MAX_PARTS,
    ) -> dict[str, Any]:
        """Send one MO from ``msisdn`` to ``short_code``; queued when no receiver is bound.

        Raises ``UnknownCarrier``, ``InvalidMSISDN`` or ``MOError`` / ``SettingsError`` (bad short code).
        """
        target = self.carrier(carrier)
        profile = target.profile
        number = normalize_msisdn(msisdn, profile.country)
        if profile.short_codes and short_code not in profile.short_codes:
            raise SettingsError(
                f"to: {short_code!r} is not a short code of {profile.name} ({', '.join(profile.short_codes)})"
            )
        data_coding, parts = mo_parts(
            number,
            short_code,
            text,
            encoding=encoding,
            order=order,
            max_parts=max_parts,
            reference=target.next_mo_reference(),
            rng=self.rng,
        )
        target.counters.mo_injected += 1
        queued = not target.receivers
        if self.hub.listening:  # the message object is only for the event stream
            self.publish_mo(target, MOMessage(number, short_code, text, data_coding, parts))
        for part in parts:
            target.enqueue(part)
        return {
            "carrier": profile.name,
            "from": number,
            "to": short_code,
            "data_coding": data_coding,
            "parts": len(parts),
            "queued": queued,
        }

    def publish_mo(self, carrier: Carrier, message: MOMessage) -> None:
        if self.hub.listening:
            self.hub.publish(
                {
                    "type": "mo",
                    "carrier": carrier.name,
                    "msisdn": message.msisdn,
                    "short_code": message.short_code,
                    "text": message.text,
                    "at": time.time(),
                }
            )

    def observe_mt(self, carrier: Carrier, record: MTRecord) -> None:
        """Called for each accepted MT while ``mt_observed``."""
        if self.hub.listening:
            content = message_content(record.pdu)
            for destination in record.destinations:
                self.hub.publish(
                    {
                        "type": "mt",
                        "carrier": carrier.name,
                        "msisdn": destination,
                        "short_code": record.pdu.source_addr,
                        "text": content["text"],
                        "concat": content["concat"],
                        "message_id": record.message_id,
                        "id": record.id,
                        "at": record.received_at,
                    }
                )
        load = self.loads.get(carrier.name)
        if load is not None:
            load.on_mt(record, self.clock())

    def refresh_observers(self) -> None:
        self.mt_observed = self.hub.listening or bool(self.loads)

    # --- control ------------------------------------------------------------------------------------

    def update_profile(self, carrier: str, patch: Mapping[str, Any]) -> CarrierProfile:
        """Change a carrier's profile while it runs; host and port cannot change."""
        target = self.carrier(carrier)
        current = target.profile
        reader = Reader(patch, "profile")
        for fixed in ("host", "port", "name"):
            if reader.has(fixed) and patch[fixed] != getattr(current, fixed):
                raise SettingsError(f"profile.{fixed}: cannot change while the simulator runs")
        profile = parse_carrier(reader, current.name, base=current)
        if profile.port != current.port:
            profile = replace(profile, port=current.port)
        target.apply_profile(profile)
        return profile

    def set_faults(self, carrier: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        target = self.carrier(carrier)
        now = self.clock()
        if target.faults.apply(Reader(patch, "faults"), now, target.profile.tps):
            target.drop_connections()
        return target.faults.to_dict(now)

    def clear_faults(self, carrier: str | None = None) -> None:
        targets = [self.carrier(carrier)] if carrier is not None else list(self.carriers.values())
        for target in targets:
            target.faults.clear()

    def trace_to(self, name: str | None) -> None:
        """Trace into the file ``name`` in the configured trace directory, or stop with None (the control
        API's way: ``set_trace`` takes any path). Raises ``SettingsError`` for a bad name or a file that
        cannot be opened."""
        if name is None:
            self.set_trace(None)
            return
        path = trace_file(self.config.trace_dir, name)
        try:
            self.set_trace(path)
        except OSError as exc:
            raise SettingsError(f"name: cannot open {path}: {exc.strerror or exc}") from None

    def set_trace(self, path: str | None) -> None:
        if self.tracer is not None:
            self.tracer.close()
            self.tracer = None
        if path:
            self.tracer = PDUTracer(path)

    def reset(self) -> None:
        """Zero the counters and forget stored MTs."""
        self.store.clear()
        for carrier in self.carriers.values():
            carrier.reset()

    def counters(self) -> dict[str, Any]:
        now = self.clock()
        carriers = {name: carrier.counters.to_dict(now) for name, carrier in self.carriers.items()}
        return {
            "uptime": round(time.time() - self.started_at, 3) if self.started_at else 0.0,
            "mts_stored": len(self.store),
            "last_mt_id": self.store.last_id,
            "pending_timers": len(self.wheel),
            "events_dropped": self.hub.dropped,
            "carriers": carriers,
        }

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "carriers": [carrier.status(now) for carrier in self.carriers.values()],
            "control_url": self.control_url,
            "trace": None if self.tracer is None else self.tracer.path,
        }

    # --- load -----------------------------------------------------------------------------------------

    def start_load(self, spec_data: Mapping[str, Any]) -> dict[str, Any]:
        spec = parse_load_spec(Reader(spec_data, "load"))
        target = self.carrier(spec.carrier)
        old = self.loads.pop(spec.carrier, None)
        if old is not None:
            old.running = False
        now = self.clock()
        load = LoadGenerator(spec, target, now, self.wheel.schedule)
        self.loads[spec.carrier] = load
        self.refresh_observers()
        self._wake_clock()
        return load.status(now)

    def stop_load(self, carrier: str | None = None) -> list[dict[str, Any]]:
        if carrier is not None:
            self.carrier(carrier)
            names = [carrier] if carrier in self.loads else []
        else:
            names = list(self.loads)
        now = self.clock()
        stopped = []
        for name in names:
            load = self.loads.pop(name)
            load.running = False
            stopped.append(load.status(now))
        self.refresh_observers()
        return stopped

    def load_status(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [load.status(now) for load in self.loads.values()]
