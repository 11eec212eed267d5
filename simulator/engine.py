"""The SMSC engine: carriers on their SMPP ports, the shared MT store, event hub and timer wheel,
the clock, MO injection, live profile and fault changes, the PDU trace.

It knows nothing of the control API or the load generator, which sit above it (``simulator.core``
puts them together): the load generator joins the clock through :meth:`SMSCEngine.add_ticker` and
sees MTs through :meth:`SMSCEngine.add_mt_listener`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from functools import partial
from types import TracebackType
from typing import Any, Literal

from simulator.carrier import Carrier, DueItem
from simulator.errors import SettingsError
from simulator.events import EventHub
from simulator.faults import ActiveFaults, FaultPatch
from simulator.ledger import Ledger
from simulator.mo import MOMessage, mo_parts
from simulator.msisdn import normalize_msisdn
from simulator.mtstore import MTRecord, MTStore
from simulator.profiles import CarrierProfile, SimulatorConfig, default_config
from simulator.timerwheel import TimerWheel
from simulator.trace import PDUTracer, trace_file
from smpp.aio import SessionProtocol, SMSCServer
from smpp.pdu import PDU
from smpp.text import MAX_PARTS

log = logging.getLogger("simulator")

#: Called on every clock tick with the monotonic time (the load generator).
Ticker = Callable[[float], None]
#: Called for each MT a carrier accepted, while registered.
MTListener = Callable[[Carrier, MTRecord, float], None]


class UnknownCarrier(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.message = f"unknown carrier {name!r}; known carriers: {', '.join(known)}"

    def __str__(self) -> str:
        return self.message


class SMSCEngine:
    """An SMSC per carrier profile. Reusable after ``stop()``, not re-entrant."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or default_config()
        self.rng = random.Random(self.config.seed)
        self.clock = time.monotonic
        self.store = MTStore(self.config.mt_store_size)
        self.hub = EventHub()
        self.wheel: TimerWheel[DueItem] = TimerWheel(self.config.tick, self.clock())
        self.wheel.on_first = self.wake_clock
        #: Set while the clock sleeps with nothing scheduled; done when something needs it sooner.
        self._clock_wake: asyncio.Future[None] | None = None
        self.tracer: PDUTracer | None = None
        self.carriers: dict[str, Carrier] = {
            profile.name: Carrier(
                profile,
                index,
                store=self.store,
                hub=self.hub,
                wheel=self.wheel,
                rng=self.rng,
                clock=self.clock,
            )
            for index, profile in enumerate(self.config.carriers)
        }
        self.ledger: Ledger | None = None
        if self.config.ledger_path:
            self.ledger = Ledger(self.config.ledger_path)
            for carrier in self.carriers.values():
                carrier.keep_ledger(self.ledger)
        self._tickers: list[Ticker] = []
        self._mt_listeners: list[MTListener] = []
        self.started_at = 0.0
        self._servers: dict[str, SMSCServer] = {}
        self._tasks: list[asyncio.Task[None]] = []
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
                    session_init_timer=profile.session_init_timer,
                    name=profile.name,
                )
                server.wiretap = self._wiretap(carrier)
                await server.start()
                self._servers[profile.name] = server
            self._tasks.append(asyncio.create_task(self._clock_loop(), name="simulator.clock_loop"))
            await self._started()
        except BaseException:
            await self.stop()
            raise
        log.info("simulator up: %s", ", ".join(f"{name} on {self.port(name)}" for name in self._servers))

    async def _started(self) -> None:
        """The SMPP ports listen and the clock runs: what sits above starts here."""

    async def stop(self) -> None:
        self.stopping.set()
        servers, self._servers = list(self._servers.values()), {}
        await asyncio.gather(*(server.close(grace=1.0) for server in servers), return_exceptions=True)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.tracer is not None:
            self.tracer.flush()
        if self.ledger is not None:
            self.ledger.flush()

    async def close(self) -> None:
        """Stop and release the trace and ledger files."""
        await self.stop()
        self.set_trace(None)
        if self.ledger is not None:
            for carrier in self.carriers.values():
                carrier.ledger = None
            self.ledger.close()
            self.ledger = None

    async def __aenter__(self) -> SMSCEngine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    # --- the clock ----------------------------------------------------------------------------------

    def add_ticker(self, ticker: Ticker) -> None:
        """Call ``ticker`` on every clock tick until :meth:`remove_ticker`."""
        self._tickers.append(ticker)
        self.wake_clock()

    def remove_ticker(self, ticker: Ticker) -> None:
        self._tickers.remove(ticker)

    async def _clock_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self.config.tick
        next_sample = self.clock()
        while True:
            if not self.wheel and not self._tickers:
                await self._idle(loop, next_sample - self.clock())
            await asyncio.sleep(tick)
            now = self.clock()
            for action, argument in self.wheel.drain(now):
                try:
                    action(argument)
                except Exception:
                    log.exception("scheduled %s failed", getattr(action, "__name__", action))
            for ticker in self._tickers:
                ticker(now)
            if self.ledger is not None:
                self.ledger.flush()
            if now >= next_sample:
                next_sample = now + 1.0
                for carrier in self.carriers.values():
                    carrier.counters.sample(now)
                if self.tracer is not None:
                    self.tracer.flush()

    async def _idle(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        """Sleep up to ``seconds`` (the next counter sample) while nothing is scheduled: a hundred idle
        ticks a second cost 1-2 % of a core that the ESME and its database could use. Scheduling into
        the empty wheel or adding a ticker ends the sleep, and the clock ticks again from there."""
        wake = self._clock_wake = loop.create_future()
        timer = loop.call_later(max(0.0, seconds), self.wake_clock)
        try:
            await wake
        finally:
            timer.cancel()
            self._clock_wake = None

    def wake_clock(self) -> None:
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

    def carrier(self, name: str) -> Carrier:
        try:
            return self.carriers[name]
        except KeyError:
            raise UnknownCarrier(name, list(self.carriers)) from None

    def profile_dict(self, name: str) -> dict[str, Any]:
        """The profile of carrier ``name`` as the API shows it: password masked, the real port."""
        return {**self.carrier(name).profile.to_dict(), "port": self.port(name)}

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
            target.publish_mo(MOMessage(number, short_code, text, data_coding, parts))
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

    # --- MT -----------------------------------------------------------------------------------------

    def add_mt_listener(self, listener: MTListener) -> None:
        """Call ``listener`` with each MT accepted from now on, until :meth:`remove_mt_listener`."""
        self._mt_listeners.append(listener)
        self.refresh_observers()

    def remove_mt_listener(self, listener: MTListener) -> None:
        self._mt_listeners.remove(listener)
        self.refresh_observers()

    def _observe_mt(self, carrier: Carrier, record: MTRecord) -> None:
        """Called for each accepted MT while someone observes them (the event stream, listeners)."""
        carrier.publish_mt(record)
        if self._mt_listeners:
            now = self.clock()
            for listener in self._mt_listeners:
                listener(carrier, record, now)

    def refresh_observers(self) -> None:
        """Carriers report each MT only while someone must see it: checked once per MT."""
        observer = self._observe_mt if self.hub.listening or self._mt_listeners else None
        for carrier in self.carriers.values():
            carrier.mt_observer = observer

    # --- control ------------------------------------------------------------------------------------

    def update_profile(self, carrier: str, patch: Mapping[str, Any]) -> CarrierProfile:
        """Change a carrier's profile while it runs (the keys ``patch`` gives); its name, host and port
        cannot change. Raises ``SettingsError`` or pydantic's ``ValidationError``, changing nothing."""
        target = self.carrier(carrier)
        current = target.profile
        for fixed in ("host", "port", "name"):
            if fixed in patch and patch[fixed] != getattr(current, fixed):
                raise SettingsError(f"{fixed}: cannot change while the simulator runs")
        profile = current.patched(patch)
        target.apply_profile(profile)
        server = self._servers.get(carrier)
        if server is not None:
            server.session_init_timer = profile.session_init_timer
        return profile

    def set_faults(self, carrier: str, patch: FaultPatch | Mapping[str, Any]) -> ActiveFaults:
        """Set the faults ``patch`` gives (see ``simulator.faults``); the faults now active."""
        target = self.carrier(carrier)
        now = self.clock()
        if target.faults.apply(FaultPatch.model_validate(patch), now, target.profile.tps):
            target.drop_connections()
        return target.faults.to_dict(now)

    def clear_faults(self, carrier: str | None = None) -> None:
        targets = [self.carrier(carrier)] if carrier is not None else list(self.carriers.values())
        for target in targets:
            target.faults.clear()

    # --- the PDU trace --------------------------------------------------------------------------------

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
        for name, server in self._servers.items():
            server.wiretap = self._wiretap(self.carriers[name])

    def _wiretap(
        self, carrier: Carrier
    ) -> Callable[[SessionProtocol, Literal["in", "out"], PDU, int], None] | None:
        """What the carrier's sessions report every PDU to: the trace, while there is one."""
        return None if self.tracer is None else partial(self._trace, carrier.name)

    def _trace(
        self, carrier: str, session: SessionProtocol, direction: Literal["in", "out"], pdu: PDU, sequence: int
    ) -> None:
        if self.tracer is not None:
            self.tracer.pdu(direction, carrier, session.peer, pdu, sequence)

    # --- reading --------------------------------------------------------------------------------------

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

    def carrier_status(self, name: str) -> dict[str, Any]:
        """Carrier ``name`` as it runs: its port, binds, queued deliver_sm and active faults."""
        return {**self.carrier(name).status(self.clock()), "port": self.port(name)}

    def status(self) -> dict[str, Any]:
        return {
            "carriers": [self.carrier_status(name) for name in self.carriers],
            "trace": None if self.tracer is None else self.tracer.path,
        }
