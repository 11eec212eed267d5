"""The bind supervisor: one ``ESMEClient`` per bind slot this daemon owns, each a named task,
reloadable.

Which of the configured slots it runs is decided by the ownership service (``gatewayd.cluster``):
:meth:`BindSupervisor.own` starts the slots won, :meth:`BindSupervisor.release` unbinds the slots
given up and returns once their connections are closed (so a lease is deleted only after its bind).

It reports every bind going up or down (an event on ``bind/<carrier>/state``, the metrics, the log)
and tells the MT pipeline which bound session a message may leave by, as the MT routing table
decides from the binds that are up (see ``gatewayd.routes``): by default the bind the subscriber
came in on when it is up, otherwise another bind of the same carrier (in turn). What a bind
receives goes where :class:`InboundDispatch` says, by esm_class's message type: delivery receipts and
intermediate notifications to the MT recorder, SME acknowledgements answered and dropped, MOs to the
MO pipeline.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from gatewayd.config import BindConfig, BindType, CarrierConfig
from gatewayd.events import EventPublisher
from gatewayd.logging import log_event, register_secret
from gatewayd.mo_message import BindInfo
from gatewayd.routes import MTRouter, bind_copies
from routing.errors import NoRoute
from smpp.aio import ESMEClient, ESMEConfig, ESMESession, FutureMessageHandler
from smpp.constants import BindType as SMPPBindType
from smpp.constants import CommandStatus
from smpp.pdu import DataSM, DeliverSM
from smpp.receipt import is_acknowledgement, is_delivery_report

log = logging.getLogger("gatewayd.binds")

_BIND_TYPES = {
    BindType.TRANSCEIVER: SMPPBindType.TRANSCEIVER,
    BindType.RECEIVER: SMPPBindType.RECEIVER,
    BindType.TRANSMITTER: SMPPBindType.TRANSMITTER,
}

#: Told (carrier, bind, up, unbound) on every bind and loss of a bind; ``unbound`` when a lost
#: connection ended with the SMSC answering our unbind, so everything written before reached it.
StateObserver = Callable[[str, str, bool, bool], None]
#: Told (carrier, rule) each time an MT finds no bind up to leave by.
NoRouteObserver = Callable[[str, str], None]
#: A carrier left without a route is logged at most this often (seconds); the metric counts every MT.
NO_ROUTE_LOG_INTERVAL = 10.0

#: Takes an inbound PDU of a bind: the deliver_sm_resp / data_sm_resp command_status, now or (a future)
#: once what it carries is committed.
InboundHandler = Callable[[BindInfo, DeliverSM | DataSM], int | asyncio.Future[int]]
ReceiptHandler = Callable[[BindInfo, DeliverSM | DataSM], int | asyncio.Future[int]]


@dataclass(frozen=True, slots=True)
class InboundDispatch:
    """Where what a bind receives goes, by the message type in its esm_class: a delivery receipt or
    intermediate notification (by deliver_sm or data_sm) to ``receipts``; an SME acknowledgement or a
    conversation abort (we never ask for them, and they are nobody's message) answered and logged;
    anything else (an MO, or a part of one) to ``messages``."""

    messages: InboundHandler
    receipts: ReceiptHandler

    def handler(self, bind: BindInfo) -> FutureMessageHandler:
        """The ``on_message`` callback of one bind (no task per PDU)."""
        return functools.partial(self.accept, bind)

    def accept(self, bind: BindInfo, pdu: DeliverSM | DataSM) -> int | asyncio.Future[int]:
        if is_delivery_report(pdu.esm_class):
            return self.receipts(bind, pdu)
        if is_acknowledgement(pdu.esm_class):
            log_event(
                log,
                "inbound.acknowledgement",
                logging.INFO,
                carrier=bind.carrier,
                bind=bind.bind,
                esm_class=f"0x{pdu.esm_class:02X}",
                action="answered, not stored: an acknowledgement is no subscriber's message",
            )
            return CommandStatus.ESME_ROK
        return self.messages(bind, pdu)


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
        return BindInfo(
            carrier=self.carrier, bind=self.name, country=self.country, short_codes=self.short_codes
        )


def bind_slots(carriers: Sequence[CarrierConfig]) -> dict[str, BindSlot]:
    """Every session the configuration asks for, by unique name (``name#k`` for copies)."""
    slots: dict[str, BindSlot] = {}
    for carrier in carriers:
        for bind in carrier.binds:
            for name in bind_copies(bind):
                slots[name] = BindSlot(carrier.name, name, carrier.country, carrier.short_codes, bind)
    return slots


def esme_config(slot: BindSlot, *, reconnect_min: float = 1.0, reconnect_max: float = 30.0) -> ESMEConfig:
    bind = slot.config
    context: ssl.SSLContext | None = None
    if bind.tls:
        context = ssl.create_default_context(cafile=str(bind.tls_ca_file) if bind.tls_ca_file else None)
    password = bind.password.get_secret_value()
    register_secret(password)
    return ESMEConfig(
        host=bind.host,
        port=bind.port,
        system_id=bind.system_id,
        password=password,
        system_type=bind.system_type,
        bind_type=_BIND_TYPES[bind.bind_type],
        address_range=bind.address_range,
        window=bind.window,
        tps=bind.tps,
        response_timeout=bind.response_timeout,
        enquire_link_interval=bind.enquire_link_interval,
        ssl=context,
        reconnect_min=reconnect_min,
        reconnect_max=reconnect_max,
        name=slot.name,
    )


class BindSupervisor:
    """Keeps the owned binds up; ``run_loop`` owns their tasks until :meth:`stop`."""

    def __init__(
        self,
        carriers: Sequence[CarrierConfig],
        inbound: InboundDispatch,
        events: EventPublisher,
        *,
        router: MTRouter | None = None,
        on_state: StateObserver | None = None,
        on_no_route: NoRouteObserver | None = None,
        reconnect_min: float = 1.0,
        reconnect_max: float = 30.0,
    ) -> None:
        self._slots = bind_slots(carriers)
        self._router = router or MTRouter.from_carriers(carriers)
        self._inbound = inbound
        self._events = events
        self._on_state = on_state
        self._on_no_route = on_no_route
        self._no_route_logged: dict[str, float] = {}
        self._reconnect = (reconnect_min, reconnect_max)
        #: Running clients with the slot they were started for (a reload may have dropped the slot).
        self._clients: dict[str, tuple[BindSlot, ESMEClient]] = {}
        self._stops: dict[str, asyncio.Event] = {}
        #: The bind tasks still running, a slot being released or reloaded included, until it is closed.
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: The slots this daemon owns (the ownership service says which): only these are run.
        self._owned: set[str] = set()
        self._group: asyncio.TaskGroup | None = None
        self._stopped = asyncio.Event()
        self.bound_changed = asyncio.Event()
        #: ``sending_up()`` as of the last bind state change, client start/stop or reload (every MT asks).
        self._sending_up: frozenset[str] | None = None

    # --- queries -------------------------------------------------------------------------------------

    @property
    def slots(self) -> dict[str, BindSlot]:
        return dict(self._slots)

    def client(self, name: str) -> ESMEClient | None:
        running = self._clients.get(name)
        return running[1] if running is not None else None

    @property
    def owned(self) -> frozenset[str]:
        """The slots this daemon owns and runs."""
        return frozenset(self._owned)

    def owned_binds(self) -> dict[str, int]:
        """Owned slots per carrier (every configured carrier, 0 when none)."""
        owned = {slot.carrier: 0 for slot in self._slots.values()}
        for name in self._owned:
            slot = self._slots.get(name)
            if slot is not None:
                owned[slot.carrier] += 1
        return owned

    def up(self, name: str) -> bool:
        """Whether slot ``name`` is bound here."""
        running = self._clients.get(name)
        return running is not None and running[1].bound

    def binds_up(self, carrier: str | None = None) -> int:
        return sum(
            1
            for slot, client in self._clients.values()
            if client.bound and (carrier is None or slot.carrier == carrier)
        )

    def carrier_binds(self) -> tuple[dict[str, int], dict[str, int]]:
        """(binds up, binds configured) per carrier: what the daemon's status event tells the panels."""
        configured: dict[str, int] = {}
        for slot in self._slots.values():
            configured[slot.carrier] = configured.get(slot.carrier, 0) + 1
        return {carrier: self.binds_up(carrier) for carrier in configured}, configured

    def carriers_up(self) -> set[str]:
        """Carriers with at least one bound bind that can send."""
        return {
            slot.carrier
            for slot, client in self._clients.values()
            if client.bound and slot.config.can_send and slot.name in self._slots and slot.name in self._owned
        }

    def sending_up(self) -> frozenset[str]:
        """Names of the bound sessions an MT may leave by now."""
        if self._sending_up is None:
            self._sending_up = frozenset(
                name
                for name, (slot, client) in self._clients.items()
                if client.bound
                and slot.config.can_send
                and self._slots.get(name) == slot
                and name in self._owned
            )
        return self._sending_up

    def stop_sending(self) -> None:
        """Every bound session gives back the submissions it has not sent yet (each fails as not
        sent); those in flight are still answered and inbound messages still handled (a shutdown)."""
        for _, client in self._clients.values():
            session = client.session
            if session is not None:
                session.stop_sending()

    def _binds_changed(self) -> None:
        self._sending_up = None

    def sending_window(self) -> int:
        """Requests the bound sessions an MT may leave by can have in flight, together."""
        return sum(self._clients[name][0].config.window for name in self.sending_up())

    def choose(
        self,
        carrier: str,
        preferred: str | None = None,
        *,
        destination: str | None = None,
        source: str | None = None,
    ) -> tuple[str, ESMESession] | None:
        """The bound session an MT to ``destination`` (from ``source``) leaves by, as the MT routing
        table decides: ``preferred`` (the bind its subscriber came in on) when it is up, else another
        bind the matching rule allows. ``None`` when none is up: the MT stays queued and is retried."""
        for fresh in (False, True):
            if fresh:
                # a session closing is unbound before its client reports the loss: look again, uncached
                self._binds_changed()
            try:
                name = self._router.select(
                    self.sending_up(),
                    carrier=carrier,
                    destination=destination,
                    source=source,
                    inbound_bind=preferred,
                )
            except NoRoute as error:
                self._no_route(carrier, error)
                return None
            running = self._clients.get(name)
            session = running[1].session if running is not None else None
            if session is not None:
                return name, session
        return None  # closed between reading the binds up and now

    def _no_route(self, carrier: str, error: NoRoute) -> None:
        rule = error.rule or "-"
        if self._on_no_route is not None:
            self._on_no_route(carrier, rule)
        now = time.monotonic()
        if now - self._no_route_logged.get(carrier, -NO_ROUTE_LOG_INTERVAL) >= NO_ROUTE_LOG_INTERVAL:
            self._no_route_logged[carrier] = now
            log_event(
                log,
                "mt.no_route",
                logging.WARNING,
                carrier=carrier,
                rule=rule,
                reason=str(error),
                action="kept queued, retried when a bind comes up",
            )

    # --- life ----------------------------------------------------------------------------------------

    async def run_loop(self) -> None:
        """Run the owned binds (those owned before it started first) until :meth:`stop`; binds
        unbind cleanly on the way out."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for name in sorted(self._owned):
                self._start(self._slots[name])
            await self._stopped.wait()
            for stop in self._stops.values():
                stop.set()
        self._group = None

    def stop(self) -> None:
        self._stopped.set()

    def own(self, names: Iterable[str]) -> list[str]:
        """Start the binds of these configured slots (won by this daemon); returns those started."""
        started = []
        for name in names:
            if name in self._slots and name not in self._owned and not self._stopped.is_set():
                self._owned.add(name)
                started.append(name)
                if self._group is not None:
                    self._start(self._slots[name])
        if started:
            self._binds_changed()
        return started

    async def release(self, names: Collection[str], *, grace: float | None = None) -> None:
        """Unbind these slots (given up, lost or no longer configured) and return once their
        connections are closed. After ``grace`` seconds the connections still open are dropped
        without waiting for answers (a daemon that could not renew its leases)."""
        tasks = []
        for name in names:
            self._owned.discard(name)
            stop = self._stops.pop(name, None)
            if stop is not None:
                stop.set()
            task = self._tasks.get(name)
            if task is not None:
                tasks.append(task)
        self._binds_changed()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            for name in names:
                client = self.client(name)
                if client is not None:
                    client.abort()
            await asyncio.wait(pending)

    def reload(
        self, carriers: Sequence[CarrierConfig], router: MTRouter | None = None
    ) -> tuple[list[str], list[str]]:
        """Apply a new carrier configuration and MT routing: binds removed or changed are unbound, the
        owned changed ones started again, untouched ones keep running; new slots start once owned
        (the ownership service takes them at its next heartbeat). Returns (started, stopped) bind
        names."""
        self._router = router or MTRouter.from_carriers(carriers)
        wanted = bind_slots(carriers)
        stopped = [name for name, slot in self._slots.items() if wanted.get(name) != slot]
        started = [
            name for name, slot in wanted.items() if self._slots.get(name) != slot and name in self._owned
        ]
        self._owned &= set(wanted)
        for name in stopped:
            stop = self._stops.pop(name, None)
            if stop is not None:
                stop.set()
        self._slots = wanted
        self._binds_changed()
        if self._group is not None:
            for name in started:
                self._start(wanted[name])
        log_event(log, "binds.reloaded", started=",".join(started) or "-", stopped=",".join(stopped) or "-")
        return started, stopped

    def _start(self, slot: BindSlot) -> None:
        assert self._group is not None
        stop = asyncio.Event()
        self._stops[slot.name] = stop
        # a session of this slot still closing (a reload changed it) is closed before this one binds:
        # the carrier never sees two sessions of one slot
        closing = self._tasks.get(slot.name)
        self._tasks[slot.name] = self._group.create_task(
            self._bind_loop(slot, stop, after=closing), name=f"bind[{slot.name}]"
        )

    async def _bind_loop(
        self, slot: BindSlot, stop: asyncio.Event, *, after: asyncio.Task[None] | None = None
    ) -> None:
        if after is not None:
            await asyncio.wait({after})
            if stop.is_set():  # released meanwhile
                if self._tasks.get(slot.name) is asyncio.current_task():
                    del self._tasks[slot.name]
                return
        handler = self._inbound.handler(slot.info) if slot.config.can_receive else None
        config = esme_config(slot, reconnect_min=self._reconnect[0], reconnect_max=self._reconnect[1])
        client = ESMEClient(
            config,
            on_message=handler,
            on_state=lambda name, up: self._state(slot, up, unbound=not up and client.last_unbind_answered),
        )
        log_event(
            log,
            "bind.starting",
            carrier=slot.carrier,
            bind=slot.name,
            host=config.host,
            port=config.port,
            bind_type=slot.config.bind_type.value,
        )
        try:
            async with client:
                self._clients[slot.name] = (slot, client)
                self._binds_changed()
                await stop.wait()
        finally:
            if self._clients.get(slot.name, (None, None))[1] is client:
                del self._clients[slot.name]
            if self._tasks.get(slot.name) is asyncio.current_task():
                del self._tasks[slot.name]
            self._binds_changed()
            if client.bound:
                self._state(slot, False)
            log_event(log, "bind.stopped", carrier=slot.carrier, bind=slot.name)

    def _state(self, slot: BindSlot, up: bool, *, unbound: bool = False) -> None:
        self._binds_changed()
        self.bound_changed.set()
        binds_up = self.binds_up(slot.carrier)
        # a bind lost while running is worth a warning; one closed because we are stopping is not
        planned = self._stopped.is_set() or slot.name not in self._stops
        level = logging.INFO if up or planned else logging.WARNING
        log_event(
            log,
            "bind.up" if up else "bind.down",
            level,
            carrier=slot.carrier,
            bind=slot.name,
            binds_up=binds_up,
        )
        self._events.bind_state(slot.carrier, slot.name, up, binds_up)
        if self._on_state is not None:
            self._on_state(slot.carrier, slot.name, up, unbound)
