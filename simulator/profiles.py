"""Carrier profiles and the simulator configuration: frozen pydantic models, read from TOML or JSON.

A profile is what a carrier *is* (where it listens, who may bind, how fast, how receipts come back);
faults are what is going wrong with it right now (see ``simulator.faults``). The same models check the
TOML file, the gatewayd file's ``[simulator]`` table and the control API's bodies, and the API's
OpenAPI document is generated from them.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from settingsfile import (
    FileProblem,
    Int64,
    KeyPath,
    Number,
    Origins,
    Problem,
    ProblemAt,
    Seconds,
    Settings,
    at_least_one,
    locate_keys,
    located,
    read_toml_file,
)
from simulator.errors import SettingsError
from simulator.faults import FaultPatch
from simulator.msisdn import InvalidMSISDN, normalize_msisdn, plan_for
from simulator.redelivery import RedeliveryPolicy
from smpp.aio.smsc import SESSION_INIT_TIMER
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
ReceiptState = Literal["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN"]

BIND_TYPE_NAMES: Mapping[str, BindType] = MappingProxyType(
    {
        "transmitter": BindType.TRANSMITTER,
        "receiver": BindType.RECEIVER,
        "transceiver": BindType.TRANSCEIVER,
    }
)
BindTypeName = Literal["transmitter", "receiver", "transceiver"]


def _all_delivered() -> dict[ReceiptState, float]:
    return {"DELIVRD": 1.0}


class DelayDistribution(Settings):
    """How long after the submit a receipt comes back: fixed, uniform(low, high) or exponential(mean)."""

    kind: Literal["fixed", "uniform", "exponential"] = "fixed"
    seconds: Seconds = 1.0
    low: Seconds = 0.5
    high: Seconds = 2.0
    mean: Seconds = 1.0

    @field_validator("high")
    @classmethod
    def _not_below_low(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("low", 0.0)
        if high < low:
            raise ValueError(f"must be at least low ({low:g}), not {high:g}")
        return high

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.seconds
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0


def _some_weight(statuses: Mapping[str, float]) -> Mapping[str, float]:
    if sum(statuses.values()) <= 0:
        raise ValueError("at least one state needs a weight above 0")
    return statuses


class ReceiptProfile(Settings):
    """Delivery receipts: when they come, which final states in which proportion, numbers that always fail.

    Receipts are only sent for submits whose registered_delivery asks for one, one per part of a long
    message.
    """

    enabled: bool = True
    delay: DelayDistribution = DelayDistribution()
    #: Weight of each final state; weights need not add up to anything.
    statuses: Annotated[
        Mapping[ReceiptState, Annotated[Number, Field(ge=0)]], AfterValidator(_some_weight)
    ] = Field(default_factory=_all_delivered)
    #: Receipts for these destinations always carry that state (numbers as the carrier's country writes
    #: them; stored in international form).
    overrides: Mapping[str, ReceiptState] = Field(default_factory=dict)


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class CarrierProfile(Settings):
    name: str
    country: Annotated[str, BeforeValidator(_upper)]
    port: int = Field(ge=0, le=65535)
    system_id: str = Field(min_length=1, max_length=15)
    password: str = Field(max_length=8)
    host: str = Field("127.0.0.1", min_length=1)
    short_codes: tuple[Annotated[str, Field(pattern=r"^[0-9]+$")], ...] = ()
    bind_types: tuple[BindTypeName, ...] = ("transmitter", "receiver", "transceiver")
    max_binds: int = Field(8, ge=1)
    #: Submits per second accepted before ESME_RTHROTTLED (token bucket); None = unlimited.
    tps: Annotated[Number, Field(gt=0)] | None = None
    message_id_format: Literal["hex", "decimal"] = "hex"
    receipts: ReceiptProfile = ReceiptProfile()
    #: Faults active from the start, in the control API's format (see ``simulator.faults``).
    faults: FaultPatch = FaultPatch()
    #: Seconds a connection may stay open without binding before it is closed (SMPP 5.0
    #: session_init_timer): a client that connects and never binds does not hold a socket for ever.
    session_init_timer: Number = Field(SESSION_INIT_TIMER, gt=0, le=3600)
    #: Outstanding deliver_sm per bind before the simulator waits for responses.
    deliver_window: int = Field(100, ge=1, le=10_000)
    #: MOs and receipts kept while no receiver is bound (the oldest are dropped beyond this).
    queue_size: int = Field(10_000, ge=1)
    #: When a deliver_sm answered with a temporary error, or not answered, is tried again.
    redelivery: RedeliveryPolicy = RedeliveryPolicy()

    @field_validator("country")
    @classmethod
    def _known_country(cls, country: str) -> str:
        plan_for(country)  # ValueError naming the countries it knows
        return country

    @model_validator(mode="after")
    def _consistent(self) -> CarrierProfile:
        """Override numbers in international form (they depend on the country), and a throttle fault
        that needs the profile's tps has one."""
        overrides: dict[str, str] = {}
        for number, stat in self.receipts.overrides.items():
            try:
                overrides[normalize_msisdn(number, self.country)] = stat
            except InvalidMSISDN as error:
                raise ProblemAt(("receipts", "overrides", number), str(error)) from None
        if self.faults.needs_tps and self.tps is None:
            raise ProblemAt(("faults", "throttle"), 'the carrier has no tps in its profile; give {"tps": N}')
        if overrides == self.receipts.overrides:
            return self
        receipts = self.receipts.model_copy(update={"overrides": overrides})
        return self.model_copy(update={"receipts": receipts})

    @field_serializer("password")
    def _masked(self, password: str) -> str:
        return "********"

    @property
    def allowed_bind_types(self) -> frozenset[BindType]:
        return frozenset(BIND_TYPE_NAMES[name] for name in self.bind_types)

    def to_dict(self) -> dict[str, Any]:
        """The profile as the control API shows it (the password masked)."""
        return self.model_dump(mode="json")

    def patched(self, patch: Mapping[str, Any]) -> CarrierProfile:
        """This profile with the keys of ``patch`` changed (a table in it changes only the keys it
        names); ValidationError naming the keys otherwise."""
        return CarrierProfile.model_validate(_merged(self, patch))


def _merged(model: BaseModel, patch: Mapping[str, Any]) -> dict[str, Any]:
    """``model``'s fields with ``patch`` over them; a table (not faults: a patch of its own) merged."""
    data = dict(model)
    for key, value in patch.items():
        current = data.get(key)
        if (
            isinstance(current, BaseModel)
            and not isinstance(current, FaultPatch)
            and isinstance(value, Mapping)
        ):
            value = _merged(current, value)
        data[key] = value
    return data


def _named_tables(carriers: Any) -> Any:
    """``[carriers.<name>]`` tables: each carrier is named by its key."""
    if isinstance(carriers, Mapping):
        return [
            {"name": name, **table} if isinstance(table, Mapping) else table
            for name, table in carriers.items()
        ]
    return carriers


class ControlTable(Settings):
    """``[control]``: where the control API listens (``enabled = false``: no API)."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8025, ge=0, le=65535)
    enabled: bool = True


class SimulatorConfig(Settings):
    model_config = ConfigDict(populate_by_name=True)

    carriers: Annotated[tuple[CarrierProfile, ...], at_least_one("carrier"), BeforeValidator(_named_tables)]
    control_host: str = Field("127.0.0.1", min_length=1)
    #: Port of the HTTP control API; 0 picks a free one; None runs no API.
    control_port: int | None = Field(8025, ge=0, le=65535)
    #: MTs kept for the API (a ring buffer: the oldest go first).
    mt_store_size: int = Field(100_000, ge=1)
    #: JSON-lines file that receives every PDU, decoded; None = no trace (``trace`` in the file).
    trace_path: Annotated[str | None, BeforeValidator(lambda value: value or None)] = Field(
        None, validation_alias=AliasChoices("trace", "trace_path")
    )
    #: JSON-lines file of every MO, MT and receipt outcome, kept across restarts (``simulator.ledger``);
    #: None = no ledger.
    ledger_path: Annotated[str | None, BeforeValidator(lambda value: value or None)] = Field(
        None, validation_alias=AliasChoices("ledger", "ledger_path")
    )
    #: Where the control API's ``PUT /api/trace`` writes (it names a file in here, never a path).
    trace_dir: str = Field(".", min_length=1)
    #: Period of the timer that sends due receipts and generated load, in seconds.
    tick: Number = Field(0.01, ge=0.001, le=1.0)
    seed: Int64 | None = None

    #: The file's ``[control]`` table: it sets ``control_host`` and ``control_port``.
    control: ControlTable | None = Field(None, exclude=True, repr=False)

    @model_validator(mode="after")
    def _control_table(self) -> SimulatorConfig:
        control = self.control
        if control is None:
            return self
        port = control.port if control.enabled else None
        return self.model_copy(update={"control_host": control.host, "control_port": port, "control": None})

    def carrier(self, name: str) -> CarrierProfile:
        for profile in self.carriers:
            if profile.name == name:
                return profile
        raise KeyError(name)

    def with_ephemeral_ports(self) -> SimulatorConfig:
        """The same simulator on ports picked by the OS (tests, benches)."""
        return self.model_copy(
            update={
                "carriers": tuple(carrier.model_copy(update={"port": 0}) for carrier in self.carriers),
                "control_port": None if self.control_port is None else 0,
            }
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


def config_problems(
    data: Mapping[str, Any], origins: Origins
) -> tuple[SimulatorConfig | None, list[Problem]]:
    """The configuration in ``data`` (its ``[simulator]`` table when it has one), or every problem
    with it, located through ``origins``."""
    prefix: KeyPath = ()
    if "simulator" in data:
        data, prefix = data["simulator"], ("simulator",)
    if not isinstance(data, Mapping):
        return None, [
            Problem(".".join(map(str, prefix)) or "<root>", "must be a table", *origins.locate(prefix))
        ]
    names = list(data["carriers"]) if isinstance(data.get("carriers"), Mapping) else []
    data = {"carriers": default_config().carriers, **data}
    try:
        return SimulatorConfig.model_validate(data), []
    except ValidationError as error:
        return None, located(error.errors(), origins, prefix=prefix, relocate=_carrier_names(prefix, names))


def _carrier_names(prefix: KeyPath, names: list[str]) -> Callable[[KeyPath], KeyPath]:
    """``carriers[1].port`` is ``carriers.vodafone.port`` in the file: carriers are tables by name."""

    def relocate(path: KeyPath) -> KeyPath:
        at = len(prefix)
        if path[at : at + 1] == ("carriers",) and len(path) > at + 1 and isinstance(path[at + 1], int):
            index = path[at + 1]
            if isinstance(index, int) and index < len(names):
                return (*path[: at + 1], names[index], *path[at + 2 :])
        return path

    return relocate


def parse_config(data: Mapping[str, Any], source: str = "config") -> SimulatorConfig:
    """The configuration from a parsed TOML document (its ``[simulator]`` table when there is one);
    :class:`SettingsError` listing every problem otherwise."""
    config, problems = config_problems(data, Origins(source))
    if config is None:
        raise SettingsError("\n".join(str(problem) for problem in problems))
    return config


def load_config(path: str | os.PathLike[str]) -> SimulatorConfig:
    """Read a TOML file; :class:`SettingsError` naming the file, the line and the key of every problem
    (or the one reason the file is unusable)."""
    try:
        data, text = read_toml_file(path)
    except FileProblem as problem:
        raise SettingsError(str(problem)) from None
    config, problems = config_problems(data, Origins(str(Path(path)), locate_keys(text)))
    if config is None:
        raise SettingsError("\n".join(str(problem) for problem in problems))
    return config


def simulator_table_problems(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem of the ``[simulator]`` table of a TOML file that may hold one (the gatewayd file),
    named with its line; none when there is no such table or the file cannot be read (its reader
    reports that)."""
    try:
        data, text = read_toml_file(path)
    except FileProblem:
        return []
    if "simulator" not in data:
        return []
    _, problems = config_problems({"simulator": data["simulator"]}, Origins(str(path), locate_keys(text)))
    return problems
