"""The bind supervisor: one ``ESMEClient`` per configured bind, each a named task, reloadable.

It reports every bind going up or down (an event on ``bind/<carrier>/state``, the metrics, the log)
and tells the MT pipeline which bound session a message may leave by: the bind the subscriber
came in on when it is up, otherwise another bind of the same carrier (round robin).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gatewayd.config import BindConfig, BindType, CarrierConfig
from gatewayd.events import EventPublisher
from gatewayd.logging import log_event, register_secret
from gatewayd.mo_message import BindInfo
from smpp.aio import ESMEClient, ESMEConfig, ESMESession, MessageHandler
from smpp.constants import BindType as SMPPBindType

log = logging.getLogger("gatewayd.binds")

_BIND_TYPES = {BindType.TRANSCEIVER: SMPPBindType.TRANSCEIVER, BindType.RECEIVER: SMPPBindType.RECEIVER,
               BindType.TRANSMITTER: SMPPBindType.TRANSMITTER}

StateObserver = Callable[[str, str, bool], None]


@dataclass(frozen=True, slots=True)
class BindSlot:
    """One SMPP session to keep bound: a configured bind, or one of its ``count`` copies."""

    carrier: str
    name: str
    country: str
    short_codes: tuple[str, ...]
    config: BindConfig

    @property
    def info(self) -> BindInfo:
        return BindInfo(carrier=self.carrier, bind=self.name, country=self.country,
                        short_codes=self.short_codes)


def bind_slots(carriers: Sequence[CarrierConfig]) -> dict[str, BindSlot]:
    """Every session the configuration asks for, by unique name (``name#k`` for copies)."""
    slots: dict[str, BindSlot] = {}
    for carrier in carriers:
        for bind in carrier.binds:
            for copy in range(1, bind.count + 1):
                name = bind.name if bind.count == 1 else f"{bind.name}#{copy}"
                slots[name] = BindSlot(carrier.name, name, carrier.country, carrier.short_codes, bind)
    return slots


def esme_config(slot: BindSlot, *, reconnect_min: float = 1.0, reconnect_max: float = 30.0) -> ESMEConfig:
    bind = slot.config
    context: ssl.SSLContext | None = None
    if bind.tls:
        context = ssl.create_default_context(cafile=str(bind.tls_ca_file) if bind.tls_ca_file else None)
    password = bind.password.reveal()
    register_secret(password)
    return ESMEConfig(
        host=bind.host, port=bind.port, system_id=bind.system_id, password=password,
        system_type=bind.system_type, bind_type=_BIND_TYPES[bind.bind_type], address_range=bind.address_range,
        window=bind.window, tps=bind.tps, response_timeout=bind.response_timeout,
        enquire_link_interval=bind.enquire_link_interval, ssl=context, reconnect_min=reconnect_min,
        reconnect_max=reconnect_max, name=slot.name)


class BindSupervisor:
    """Keeps every configured bind up; ``run_loop`` owns their tasks until :meth:`stop`."""

    def __init__(self, carriers: Sequence[CarrierConfig], handler_for: Callable[[BindInfo], MessageHandler],
                 events: EventPublisher, *, on_state: StateObserver | None = None,
                 reconnect_min: float = 1.0, reconnect_max: float = 30.0) -> None:
        self._slots = bind_slots(carriers)
        self._handler_for = handler_for
        self._events = events
        self._on_state = on_state
        self._reconnect = (reconnect_min, reconnect_max)
        #: Running clients with the slot they were started for (a reload may have dropped the slot).
        self._clients: dict[str, tuple[BindSlot, ESMEClient]] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._stopped = asyncio.Event()
        self.bound_changed = asyncio.Event()

    # --- queries -------------------------------------------------------------------------------------

    @property
    def slots(self) -> dict[str, BindSlot]:
        return dict(self._slots)

    def client(self, name: str) -> ESMEClient | None:
        running = self._clients.get(name)
        return running[1] if running is not None else None

    def binds_up(self, carrier: str | None = None) -> int:
        return sum(1 for slot, client in self._clients.values()
                   if client.bound and (carrier is None or slot.carrier == carrier))

    def carriers_up(self) -> set[str]:
        """Carriers with at least one bound bind that can send."""
        return {slot.carrier for slot, client in self._clients.values()
                if client.bound and slot.config.can_send and slot.name in self._slots}

    def choose(self, carrier: str, preferred: str | None = None) -> tuple[str, ESMESession] | None:
        """A bound session of ``carrier`` that can send: ``preferred`` when it is up, otherwise the
        next of the others in turn (failover); ``None`` when the carrier has no bind up."""
        if preferred is not None:
            session = self._sending_session(preferred, carrier)
            if session is not None:
                return preferred, session
        candidates = [name for name, slot in self._slots.items() if slot.carrier == carrier]
        if not candidates:
            return None
        turn = next(self._round_robin.setdefault(carrier, itertools.count()))
        for offset in range(len(candidates)):
            name = candidates[(turn + offset) % len(candidates)]
            session = self._sending_session(name, carrier)
            if session is not None:
                return name, session
        return None

    def _sending_session(self, name: str, carrier: str) -> ESMESession | None:
        slot = self._slots.get(name)
        running = self._clients.get(name)
        if slot is None or running is None or slot.carrier != carrier or not slot.config.can_send:
            return None
        return running[1].session

    # --- life ----------------------------------------------------------------------------------------

    async def run_loop(self) -> None:
        """Start every bind and keep them until :meth:`stop`; binds unbind cleanly on the way out."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for slot in self._slots.values():
                self._start(slot)
            await self._stopped.wait()
            for stop in self._stops.values():
                stop.set()
        self._group = None

    def stop(self) -> None:
        self._stopped.set()

    def reload(self, carriers: Sequence[CarrierConfig]) -> tuple[list[str], list[str]]:
        """Apply a new carrier configuration: binds removed or changed are unbound, new or changed
        ones started, untouched ones keep running. Returns (started, stopped) bind names."""
        wanted = bind_slots(carriers)
        stopped = [name for name, slot in self._slots.items() if wanted.get(name) != slot]
        started = [name for name, slot in wanted.items() if self._slots.get(name) != slot]
        for name in stopped:
            stop = self._stops.pop(name, None)
            if stop is not None:
                stop.set()
        self._slots = wanted
        if self._group is not None:
            for name in started:
                self._start(wanted[name])
        log_event(log, "binds.reloaded", started=",".join(started) or "-", stopped=",".join(stopped) or "-")
        return started, stopped

    def _start(self, slot: BindSlot) -> None:
        assert self._group is not None
        stop = asyncio.Event()
        self._stops[slot.name] = stop
        self._group.create_task(self._bind_loop(slot, stop), name=f"bind[{slot.name}]")

    async def _bind_loop(self, slot: BindSlot, stop: asyncio.Event) -> None:
        handler = self._handler_for(slot.info) if slot.config.can_receive else None
        config = esme_config(slot, reconnect_min=self._reconnect[0], reconnect_max=self._reconnect[1])
        client = ESMEClient(config, on_message=handler, on_state=lambda name, up: self._state(slot, up))
        log_event(log, "bind.starting", carrier=slot.carrier, bind=slot.name, host=config.host,
                  port=config.port, bind_type=slot.config.bind_type.value)
        try:
            async with client:
                self._clients[slot.name] = (slot, client)
                await stop.wait()
        finally:
            if self._clients.get(slot.name, (None, None))[1] is client:
                del self._clients[slot.name]
            if client.bound:
                self._state(slot, False)
            log_event(log, "bind.stopped", carrier=slot.carrier, bind=slot.name)

    def _state(self, slot: BindSlot, up: bool) -> None:
        self.bound_changed.set()
        binds_up = self.binds_up(slot.carrier)
        # a bind lost while running is worth a warning; one closed because we are stopping is not
        planned = self._stopped.is_set() or slot.name not in self._stops
        level = logging.INFO if up or planned else logging.WARNING
        log_event(log, "bind.up" if up else "bind.down", level, carrier=slot.carrier, bind=slot.name,
                  binds_up=binds_up)
        self._events.bind_state(slot.carrier, slot.name, up, binds_up)
        if self._on_state is not None:
            self._on_state(slot.carrier, slot.name, up)
