"""Carrier profiles and the simulator configuration: frozen values, read from TOML or JSON.

A profile is what a carrier *is* (where it listens, who may bind, how fast, how receipts come back);
faults are what is going wrong with it right now (see ``simulator.faults``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from simulator.msisdn import InvalidMSISDN, normalize_msisdn, plan_for
from simulator.redelivery import RedeliveryPolicy
from simulator.settings import Reader, SettingsError, read_toml_file
from smpp.constants import BindType, MessageState

#: Final states a receipt can report, by their receipt text ("stat:" field), with the SMPP message_state.
RECEIPT_STATES: Mapping[str, MessageState] = MappingProxyType(
    {
        "DELIVRD": MessageState.DELIVERED,
        "UNDELIV": MessageState.UNDELIVERABLE,
        "EXPIRED": MessageState.EXPIRED,
        "REJECTD": MessageState.REJECTED,
        "DELETED": MessageState.DELETED,
        "UNKNOWN": MessageState.UNKNOWN,
    }
)

BIND_TYPE_NAMES: Mapping[str, BindType] = MappingProxyType(
    {
        "transmitter": BindType.TRANSMITTER,
        "receiver": BindType.RECEIVER,
        "transceiver": BindType.TRANSCEIVER,
    }
)

DELAY_KINDS = ("fixed", "uniform", "exponential")
MESSAGE_ID_FORMATS = ("hex", "decimal")


@dataclass(frozen=True, slots=True)
class DelayDistribution:
    """How long after the submit a receipt comes back: fixed, uniform(low, high) or exponential(mean)."""

    kind: str = "fixed"
    seconds: float = 1.0
    low: float = 0.5
    high: float = 2.0
    mean: float = 1.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.seconds
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "fixed":
            return {"kind": "fixed", "seconds": self.seconds}
        if self.kind == "uniform":
            return {"kind": "uniform", "low": self.low, "high": self.high}
        return {"kind": "exponential", "mean": self.mean}


@dataclass(frozen=True, slots=True)
class ReceiptProfile:
    """Delivery receipts: when they come, which final states in which proportion, numbers that always fail.

    Receipts are only sent for submits whose registered_delivery asks for one, one per part of a long
    message.
    """

    enabled: bool = True
    delay: DelayDistribution = field(default_factory=DelayDistribution)
    #: (stat, weight) pairs; weights need not add up to anything.
    statuses: tuple[tuple[str, float], ...] = (("DELIVRD", 1.0),)
    #: (msisdn, stat) pairs: receipts for these destinations always carry that state.
    overrides: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "delay": self.delay.to_dict(),
            "statuses": dict(self.statuses),
            "overrides": dict(self.overrides),
        }


@dataclass(frozen=True, slots=True)
class CarrierProfile:
    name: str
    country: str
    port: int
    system_id: str
    password: str
    host: str = "127.0.0.1"
    short_codes: tuple[str, ...] = ()
    bind_types: tuple[str, ...] = ("transmitter", "receiver", "transceiver")
    max_binds: int = 8
    #: Submits per second accepted before ESME_RTHROTTLED (token bucket); None = unlimited.
    tps: float | None = None
    message_id_format: str = "hex"
    receipts: ReceiptProfile = field(default_factory=ReceiptProfile)
    #: Faults active from the start, in the control API's format (see ``simulator.faults``).
    faults: Mapping[str, Any] = field(default_factory=dict)
    #: Outstanding deliver_sm per bind before the simulator waits for responses.
    deliver_window: int = 100
    #: MOs and receipts kept while no receiver is bound (the oldest are dropped beyond this).
    queue_size: int = 10_000
    #: When a deliver_sm answered with a temporary error, or not answered, is tried again.
    redelivery: RedeliveryPolicy = field(default_factory=RedeliveryPolicy)

    @property
    def allowed_bind_types(self) -> frozenset[BindType]:
        return frozenset(BIND_TYPE_NAMES[name] for name in self.bind_types)

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        return {
            "name": self.name,
            "country": self.country,
            "host": self.host,
            "port": self.port,
            "system_id": self.system_id,
            "password": self.password if secrets else "********",
            "short_codes": list(self.short_codes),
            "bind_types": list(self.bind_types),
            "max_binds": self.max_binds,
            "tps": self.tps,
            "message_id_format": self.message_id_format,
            "receipts": self.receipts.to_dict(),
            "deliver_window": self.deliver_window,
            "queue_size": self.queue_size,
            "redelivery": self.redelivery.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    carriers: tuple[CarrierProfile, ...]
    control_host: str = "127.0.0.1"
    #: Port of the HTTP control API; 0 picks a free one; None runs no API.
    control_port: int | None = 8025
    #: MTs kept for the API (a ring buffer: the oldest go first).
    mt_store_size: int = 100_000
    #: JSON-lines file that receives every PDU, decoded; None = no trace.
    trace_path: str | None = None
    #: Where the control API's ``PUT /api/trace`` writes (it names a file in here, never a path).
    trace_dir: str = "."
    #: Period of the timer that sends due receipts and generated load, in seconds.
    tick: float = 0.01
    seed: int | None = None

    def carrier(self, name: str) -> CarrierProfile:
        for profile in self.carriers:
            if profile.name == name:
                return profile
        raise KeyError(name)

    def with_ephemeral_ports(self) -> SimulatorConfig:
        """The same simulator on ports picked by the OS (tests, benches)."""
        return replace(
            self,
            carriers=tuple(replace(c, port=0) for c in self.carriers),
            control_port=None if self.control_port is None else 0,
        )


def default_config() -> SimulatorConfig:
    """Two Spanish carriers, as ``gatewayd simulator`` serves with no arguments."""
    short_codes = ("997745", "795500")
    return SimulatorConfig(
        carriers=(
            CarrierProfile(
                name="movistar",
                country="ES",
                port=2775,
                system_id="echat",
                password="secret1",
                short_codes=short_codes,
            ),
            CarrierProfile(
                name="vodafone",
                country="ES",
                port=2776,
                system_id="echat",
                password="secret2",
                short_codes=short_codes,
            ),
        )
    )


# --- reading ----------------------------------------------------------------------------------------


def parse_delay(reader: Reader, base: DelayDistribution) -> DelayDistribution:
    kind = reader.choice("kind", DELAY_KINDS, base.kind)
    seconds = reader.seconds("seconds", base.seconds)
    low = reader.seconds("low", base.low)
    high = reader.seconds("high", base.high)
    mean = reader.seconds("mean", base.mean)
    reader.finish()
    if high < low:
        raise SettingsError(f"{reader.key('high')}: must be at least low ({low:g}), got {high:g}")
    return DelayDistribution(kind=kind, seconds=seconds, low=low, high=high, mean=mean)


def parse_receipts(reader: Reader, base: ReceiptProfile, country: str) -> ReceiptProfile:
    enabled = reader.boolean("enabled", base.enabled)
    delay_reader = reader.sub("delay")
    delay = base.delay if delay_reader is None else parse_delay(delay_reader, base.delay)
    statuses = base.statuses
    if reader.has("statuses"):
        statuses = _parse_statuses(reader.mapping("statuses"), reader.key("statuses"))
    overrides = base.overrides
    if reader.has("overrides"):
        overrides = _parse_overrides(reader.mapping("overrides"), reader.key("overrides"), country)
    reader.finish()
    return ReceiptProfile(enabled=enabled, delay=delay, statuses=statuses, overrides=overrides)


def _parse_statuses(data: Mapping[str, Any], key: str) -> tuple[tuple[str, float], ...]:
    pairs: list[tuple[str, float]] = []
    for stat, weight in data.items():
        if stat not in RECEIPT_STATES:
            raise SettingsError(f"{key}: {stat!r} is not one of {', '.join(RECEIPT_STATES)}")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise SettingsError(f"{key}.{stat}: expected a weight >= 0, got {weight!r}")
        pairs.append((stat, float(weight)))
    if not pairs or sum(weight for _, weight in pairs) <= 0:
        raise SettingsError(f"{key}: at least one state needs a weight above 0")
    return tuple(pairs)


def _parse_overrides(data: Mapping[str, Any], key: str, country: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for number, stat in data.items():
        try:
            msisdn = normalize_msisdn(number, country)
        except InvalidMSISDN as exc:
            raise SettingsError(f"{key}: {exc}") from None
        if stat not in RECEIPT_STATES:
            raise SettingsError(f"{key}.{number}: {stat!r} is not one of {', '.join(RECEIPT_STATES)}")
        pairs.append((msisdn, stat))
    return tuple(pairs)


def parse_carrier(reader: Reader, name: str, base: CarrierProfile | None = None) -> CarrierProfile:
    """A profile from a mapping; with ``base``, a partial update of it (missing keys keep their value)."""
    if base is None:
        base = CarrierProfile(name=name, country="ES", port=0, system_id="", password="")
        required = True
    else:
        required = False
    country = reader.string("country", None if required else base.country).upper()
    try:
        plan_for(country)
    except ValueError as exc:
        raise SettingsError(f"{reader.key('country')}: {exc}") from None
    host = reader.string("host", base.host, allow_empty=False)
    port = reader.integer("port", None if required else base.port, minimum=0, maximum=65535)
    system_id = reader.string("system_id", None if required else base.system_id, allow_empty=False)
    password = reader.string("password", None if required else base.password)
    if len(system_id) > 15 or len(password) > 8:
        raise SettingsError(
            f"{reader.key('system_id')}: SMPP allows 15 characters for system_id and 8 for password"
        )
    short_codes = reader.strings("short_codes", base.short_codes)
    for code in short_codes:
        if not code.isdigit():
            raise SettingsError(f"{reader.key('short_codes')}: {code!r} is not a numeric short code")
    bind_types = reader.strings("bind_types", base.bind_types)
    for bind_type in bind_types:
        if bind_type not in BIND_TYPE_NAMES:
            raise SettingsError(
                f"{reader.key('bind_types')}: {bind_type!r} is not one of {', '.join(BIND_TYPE_NAMES)}"
            )
    max_binds = reader.integer("max_binds", base.max_binds, minimum=1)
    tps = base.tps
    if reader.has("tps"):
        tps = reader.optional_number("tps", minimum=0, exclusive_minimum=True)
    message_id_format = reader.choice("message_id_format", MESSAGE_ID_FORMATS, base.message_id_format)
    receipts_reader = reader.sub("receipts")
    receipts = (
        base.receipts if receipts_reader is None else parse_receipts(receipts_reader, base.receipts, country)
    )
    faults = base.faults
    if reader.has("faults"):
        faults = dict(reader.mapping("faults"))
        _validate_faults(faults, reader.key("faults"), tps)
    deliver_window = reader.integer("deliver_window", base.deliver_window, minimum=1, maximum=10_000)
    queue_size = reader.integer("queue_size", base.queue_size, minimum=1)
    redelivery_reader = reader.sub("redelivery")
    redelivery = (
        base.redelivery if redelivery_reader is None else parse_redelivery(redelivery_reader, base.redelivery)
    )
    reader.finish()
    return CarrierProfile(
        name=name,
        country=country,
        host=host,
        port=port,
        system_id=system_id,
        password=password,
        short_codes=short_codes,
        bind_types=bind_types,
        max_binds=max_binds,
        tps=tps,
        message_id_format=message_id_format,
        receipts=receipts,
        faults=faults,
        deliver_window=deliver_window,
        queue_size=queue_size,
        redelivery=redelivery,
    )


def parse_redelivery(reader: Reader, base: RedeliveryPolicy) -> RedeliveryPolicy:
    """``[carriers.redelivery]``: initial, maximum, window (seconds) and max_attempts."""
    initial = reader.seconds("initial", base.initial, positive=True)
    maximum = reader.seconds("maximum", base.maximum, positive=True)
    window = reader.seconds("window", base.window, positive=True)
    max_attempts = reader.integer("max_attempts", base.max_attempts, minimum=1)
    reader.finish()
    if maximum < initial:
        raise SettingsError(f"{reader.key('maximum')}: must not be below initial ({initial})")
    return RedeliveryPolicy(initial=initial, maximum=maximum, window=window, max_attempts=max_attempts)


def _validate_faults(data: Mapping[str, Any], key: str, tps: float | None) -> None:
    from simulator.faults import FaultState  # the fault module owns the format

    FaultState().apply(Reader(data, key), now=0.0, default_tps=tps)


def parse_config(data: Mapping[str, Any], source: str = "config") -> SimulatorConfig:
    """The configuration from a parsed TOML document (its ``[simulator]`` table when there is one)."""
    if "simulator" in data:
        data = data["simulator"]
        prefix = "simulator"
    else:
        prefix = ""
    try:
        reader = Reader(data, prefix)
        defaults = default_config()
        control = reader.sub("control")
        control_host, control_port = defaults.control_host, defaults.control_port
        if control is not None:
            control_host = control.string("host", control_host, allow_empty=False)
            if control.boolean("enabled", True):
                control_port = control.integer("port", control_port or 8025, minimum=0, maximum=65535)
            else:
                control_port = None
            control.finish()
        mt_store_size = reader.integer("mt_store_size", defaults.mt_store_size, minimum=1)
        trace = reader.string("trace", "") or None
        trace_dir = reader.string("trace_dir", defaults.trace_dir, allow_empty=False)
        tick = reader.number("tick", defaults.tick, minimum=0.001, maximum=1.0)
        seed = reader.integer("seed") if reader.has("seed") else None
        carriers = defaults.carriers
        if reader.has("carriers"):
            carriers_data = reader.mapping("carriers")
            carriers = tuple(
                parse_carrier(Reader(value, f"{reader.key('carriers')}.{name}"), name)
                for name, value in carriers_data.items()
            )
            if not carriers:
                raise SettingsError(f"{reader.key('carriers')}: at least one carrier is needed")
        reader.finish()
    except SettingsError as exc:
        raise SettingsError(f"{source}: {exc}") from None
    return SimulatorConfig(
        carriers=carriers,
        control_host=control_host,
        control_port=control_port,
        mt_store_size=mt_store_size,
        trace_path=trace,
        trace_dir=trace_dir,
        tick=tick,
        seed=seed,
    )


def load_config(path: str | Path) -> SimulatorConfig:
    """Read a TOML file; a bad value raises :class:`SettingsError` naming the file and the key (an
    unusable file, :class:`~simulator.settings.FileProblem`)."""
    data, _ = read_toml_file(path)
    return parse_config(data, str(path))
