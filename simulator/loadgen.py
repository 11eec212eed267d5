"""The load generator: virtual subscribers who text the short codes (Poisson arrivals) and answer MTs.

Arrivals are drawn once per clock tick (a Poisson count for the tick), so a rate of 30,000 MO/s costs
one loop of cheap PDU constructions per tick, not a timer per message.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from settingsfile import Int64, Number, Seconds, Settings
from simulator.carrier import Carrier
from simulator.corpus import OPENERS, REPLIES
from simulator.engine import SMSCEngine
from simulator.errors import SettingsError
from simulator.mo import MOMessage, build_mo
from simulator.msisdn import random_msisdns
from simulator.mtstore import MTRecord
from smpp.pdu import DeliverSM


class ReplyDelay(Settings):
    """Seconds after an MT before its subscriber answers: uniform between ``low`` and ``high``."""

    low: Seconds = 1.0
    high: Seconds = 5.0

    @model_validator(mode="before")
    @classmethod
    def _high_follows_low(cls, data: Any) -> Any:
        """Only ``low`` given, above the default ``high``: the delay is fixed at ``low``."""
        if isinstance(data, dict) and "high" not in data and isinstance(data.get("low"), int | float):
            return {**data, "high": max(data["low"], 5.0)}
        return data

    @field_validator("high")
    @classmethod
    def _not_below_low(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("low", 0.0)
        if high < low:
            raise ValueError(f"must be at least low ({low:g})")
        return high


class LoadSpec(Settings):
    """A load: ``subscribers`` virtual phones of the carrier's country texting its short codes."""

    carrier: str = Field(min_length=1)
    subscribers: int = Field(100, ge=1, le=1_000_000)
    #: New conversations (MOs from the opener list) per second, across all subscribers.
    rate: Number = Field(1.0, ge=0, le=1_000_000)
    #: Chance that a subscriber answers an MT.
    reply_probability: Number = Field(0.5, ge=0, le=1)
    reply_delay: ReplyDelay = ReplyDelay()
    #: Short codes to text; empty = every short code of the carrier.
    short_codes: tuple[str, ...] = ()
    seed: Int64 | None = None


def poisson(mean: float, rng: random.Random) -> int:
    """A Poisson-distributed count (Knuth for small means, a rounded normal for large ones)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class LoadGenerator:
    def __init__(
        self,
        spec: LoadSpec,
        carrier: Carrier,
        now: float,
        schedule: Callable[[float, tuple[Callable[[Any], None], Any]], None],
    ) -> None:
        self.spec = spec
        self.carrier = carrier
        self.rng = random.Random(spec.seed)
        self._schedule = schedule
        short_codes = spec.short_codes or carrier.profile.short_codes
        if not short_codes:
            raise SettingsError(f"carrier {carrier.name!r} serves no short code; give short_codes")
        unknown = set(short_codes) - set(carrier.profile.short_codes)
        if carrier.profile.short_codes and unknown:
            raise SettingsError(f"short_codes: {', '.join(sorted(unknown))} not served by {carrier.name}")
        self.short_codes = tuple(short_codes)
        self.subscribers = random_msisdns(carrier.profile.country, spec.subscribers, self.rng)
        self._subscriber_set = frozenset(self.subscribers)
        self._last = now
        self.started_at = now
        self.sent = 0
        self.replies_scheduled = 0
        self.replies_sent = 0
        self.running = True
        self._templates: dict[str, MOMessage] = {}

    def tick(self, now: float) -> None:
        elapsed = now - self._last
        self._last = now
        if not self.running or elapsed <= 0:
            return
        rng = self.rng
        for _ in range(poisson(self.spec.rate * elapsed, rng)):
            self._send(rng.choice(self.subscribers), rng.choice(self.short_codes), rng.choice(OPENERS))

    def on_mt(self, record: MTRecord, now: float) -> None:
        """An MT reached the network: its subscriber may answer after a while."""
        if not self.running:
            return
        spec = self.spec
        for destination in record.destinations:
            if destination in self._subscriber_set and self.rng.random() < spec.reply_probability:
                due = now + self.rng.uniform(spec.reply_delay.low, spec.reply_delay.high)
                self.replies_scheduled += 1
                self._schedule(due, (self._reply, (destination, record.pdu.source_addr)))

    def _reply(self, item: tuple[str, str]) -> None:
        if not self.running:
            return
        msisdn, short_code = item
        self.replies_sent += 1
        self._send(msisdn, short_code, self.rng.choice(REPLIES))

    def _send(self, msisdn: str, short_code: str, text: str) -> None:
        carrier = self.carrier
        template = self._templates.get(text)
        if template is not None:  # a one-part text: reuse its encoding, only the addresses change
            part = template.parts[0]
            mo = DeliverSM(
                source_addr_ton=part.source_addr_ton,
                source_addr_npi=part.source_addr_npi,
                source_addr=msisdn,
                dest_addr_ton=part.dest_addr_ton,
                dest_addr_npi=part.dest_addr_npi,
                destination_addr=short_code,
                data_coding=part.data_coding,
                short_message=part.short_message,
            )
            self.sent += 1
            carrier.counters.mo_injected += 1
            if carrier.hub.listening:  # the message object is only for the event stream
                carrier.publish_mo(MOMessage(msisdn, short_code, text, template.data_coding, (mo,)))
            carrier.enqueue(mo)
            return
        message = build_mo(msisdn, short_code, text, reference=carrier.next_mo_reference())
        if len(message.parts) == 1:
            self._templates[text] = message
        self.sent += 1
        carrier.counters.mo_injected += 1
        if carrier.hub.listening:
            carrier.publish_mo(message)
        for part in message.parts:
            carrier.enqueue(part)

    def status(self, now: float) -> dict[str, Any]:
        elapsed = max(now - self.started_at, 1e-9)
        return {
            **self.spec.model_dump(mode="json", exclude={"seed"}),
            "running": self.running,
            "sent": self.sent,
            "replies_scheduled": self.replies_scheduled,
            "replies_sent": self.replies_sent,
            "elapsed": round(elapsed, 3),
            "achieved_rate": round(self.sent / elapsed, 1),
        }


class LoadGenerators(Mapping[str, LoadGenerator]):
    """The running load generators of an engine, one per carrier (by carrier name). They run on the
    engine's clock and see its MTs only while there is one."""

    def __init__(self, engine: SMSCEngine) -> None:
        self._engine = engine
        self._running: dict[str, LoadGenerator] = {}

    def __getitem__(self, carrier: str) -> LoadGenerator:
        return self._running[carrier]

    def __iter__(self) -> Iterator[str]:
        return iter(self._running)

    def __len__(self) -> int:
        return len(self._running)

    def start(self, spec: LoadSpec) -> dict[str, Any]:
        """Start the load ``spec`` (replacing the carrier's running one)."""
        engine = self._engine
        target = engine.carrier(spec.carrier)
        load = LoadGenerator(spec, target, engine.clock(), engine.wheel.schedule)
        if not self._running:
            engine.add_ticker(self._tick)
            engine.add_mt_listener(self._on_mt)
        old = self._running.pop(spec.carrier, None)
        if old is not None:
            old.running = False
        self._running[spec.carrier] = load
        return load.status(engine.clock())

    def stop(self, carrier: str | None = None) -> list[dict[str, Any]]:
        """Stop the load of ``carrier``, or every load; their last status."""
        engine = self._engine
        if carrier is not None:
            engine.carrier(carrier)
        names = list(self._running) if carrier is None else [carrier] if carrier in self._running else []
        now = engine.clock()
        stopped = []
        for name in names:
            load = self._running.pop(name)
            load.running = False
            stopped.append(load.status(now))
        if names and not self._running:
            engine.remove_ticker(self._tick)
            engine.remove_mt_listener(self._on_mt)
        return stopped

    def status(self) -> list[dict[str, Any]]:
        now = self._engine.clock()
        return [load.status(now) for load in self._running.values()]

    def _tick(self, now: float) -> None:
        for load in self._running.values():
            load.tick(now)

    def _on_mt(self, carrier: Carrier, record: MTRecord, now: float) -> None:
        load = self._running.get(carrier.name)
        if load is not None:
            load.on_mt(record, now)
