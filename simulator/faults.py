"""Faults on demand: what is going wrong with a carrier right now, and the token bucket behind throttling.

A fault patch is a JSON object; every key is optional, ``false`` / ``null`` clears that fault::

    {"throttle": {"tps": 5},                 # ESME_RTHROTTLED above 5 submits/s (true: the profile's tps)
     "msgqful": {"count": 10, "seconds": 3},  # next 10 submits and/or the next 3 s answer ESME_RMSGQFUL
     "slow": {"seconds": 0.5},                # answer every request 0.5 s late
     "no_response": true,                     # never answer requests (the client times out)
     "generic_nack": true,                    # answer requests with generic_nack
     "drop": {"after_pdus": 5},               # drop the connection on the 5th request from now (unanswered)
     "drop": {"now": true},                   # drop every connection of the carrier now
     "refuse_binds": {"status": "ESME_RBINDFAIL"},
     "ignore_enquire_link": true}             # stop answering enquire_link

Message faults (throttle, msgqful, slow, no_response, generic_nack) apply to submit_sm, data_sm,
submit_multi, query_sm, cancel_sm and replace_sm; enquire_link has its own fault so the link can stay up.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, model_validator
from typing_extensions import TypedDict  # pydantic reads its annotations on Python 3.11

from settingsfile import Number, Seconds, Settings
from simulator.errors import SettingsError
from smpp.aio.throttle import TokenBucket
from smpp.constants import CommandStatus, status_name


def _off_on_or_table(value: Any) -> Any:
    """``false`` / ``null`` clear a fault, ``true`` sets it with its defaults, a table sets it so."""
    if value is None or value is False:
        return None
    return {} if value is True else value


def _switch(table: type[BaseModel]) -> Any:
    return BeforeValidator(_off_on_or_table, json_schema_input_type=bool | None | table)


class Throttle(Settings):
    """ESME_RTHROTTLED above ``tps`` submits a second (without it: the profile's tps)."""

    tps: Annotated[Number, Field(gt=0)] | None = None


class QueueFull(Settings):
    """ESME_RMSGQFUL for the next ``count`` submits and/or the next ``seconds``."""

    count: int = Field(0, ge=0)
    seconds: Seconds = 0.0

    @model_validator(mode="after")
    def _something(self) -> QueueFull:
        if not self.count and not self.seconds:
            raise ValueError("give count (submits) and/or seconds")
        return self


class Slow(Settings):
    """Every request answered ``seconds`` late."""

    seconds: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]


class Drop(Settings):
    """Drop every connection ``now``, or a connection on its ``after_pdus``-th request from now."""

    now: bool = False
    after_pdus: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _something(self) -> Drop:
        if not self.now and self.after_pdus is None:
            raise ValueError("give now: true or after_pdus: N")
        return self


def _command_status(value: Any) -> Any:
    """A command_status by name (``ESME_RBINDFAIL``) or number."""
    if isinstance(value, str):
        try:
            return int(CommandStatus[value.upper()])
        except KeyError:
            raise ValueError(f"unknown command_status {value!r}") from None
    return value


class RefuseBinds(Settings):
    """Binds refused with ``status`` (by name or number; ESME_RBINDFAIL without it)."""

    status: Annotated[
        int, BeforeValidator(_command_status, json_schema_input_type=str | int), Field(gt=0, le=0xFFFFFFFF)
    ] = int(CommandStatus.ESME_RBINDFAIL)


class FaultPatch(Settings):
    """Faults to set (a key given changes that fault; ``false`` / ``null`` clears it)."""

    throttle: Annotated[Throttle | None, _switch(Throttle)] = None
    msgqful: Annotated[QueueFull | None, _switch(QueueFull)] = None
    slow: Annotated[Slow | None, _switch(Slow)] = None
    no_response: bool | None = None
    generic_nack: bool | None = None
    drop: Annotated[Drop | None, _switch(Drop)] = None
    refuse_binds: Annotated[RefuseBinds | None, _switch(RefuseBinds)] = None
    ignore_enquire_link: bool | None = None

    @property
    def needs_tps(self) -> bool:
        """A throttle without a tps of its own takes the carrier's profile's."""
        return self.throttle is not None and self.throttle.tps is None


class ActiveFaults(TypedDict):
    """The faults active on a carrier, as the control API shows them (null: off)."""

    throttle: dict[str, float] | None
    msgqful: dict[str, float] | None
    slow: dict[str, float] | None
    no_response: bool
    generic_nack: bool
    drop: dict[str, int] | None
    refuse_binds: dict[str, str] | None
    ignore_enquire_link: bool


def carrier_bucket(tps: float, now: float) -> TokenBucket:
    """A carrier's submit rate: ``tps`` per second, bursts up to one second's worth, the first at once."""
    return TokenBucket(tps, max(1.0, tps), now=now, full=True)


class FaultState:
    """The faults active on one carrier. ``active`` is a plain attribute the hot path checks first."""

    def __init__(self) -> None:
        self.active = False
        self.throttle: TokenBucket | None = None
        self.msgqful_remaining = 0
        self.msgqful_until = 0.0
        self.slow_seconds = 0.0
        self.no_response = False
        self.generic_nack = False
        self.drop_after_pdus: int | None = None
        self.refuse_binds_status: int | None = None
        self.ignore_enquire_link = False

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def apply(self, patch: FaultPatch, now: float, default_tps: float | None = None) -> bool:
        """Apply the faults ``patch`` gives (the keys it was given with); True when it asks to drop
        connections now. Raises :class:`SettingsError`, changing nothing, for a throttle without a tps
        when the carrier has none."""
        given = patch.model_fields_set
        throttle = patch.throttle
        tps = None if throttle is None else throttle.tps or default_tps
        if throttle is not None and tps is None:
            raise SettingsError('throttle: the carrier has no tps in its profile; give throttle: {"tps": N}')
        if "throttle" in given:
            self.throttle = None if tps is None else carrier_bucket(tps, 0.0)  # full whenever first asked
        if "msgqful" in given:
            full = patch.msgqful
            self.msgqful_remaining = 0 if full is None else full.count
            self.msgqful_until = now + full.seconds if full is not None and full.seconds else 0.0
        if "slow" in given:
            self.slow_seconds = 0.0 if patch.slow is None else patch.slow.seconds
        if "no_response" in given:
            self.no_response = bool(patch.no_response)
        if "generic_nack" in given:
            self.generic_nack = bool(patch.generic_nack)
        if "ignore_enquire_link" in given:
            self.ignore_enquire_link = bool(patch.ignore_enquire_link)
        if "drop" in given:
            self.drop_after_pdus = None if patch.drop is None else patch.drop.after_pdus
        if "refuse_binds" in given:
            self.refuse_binds_status = None if patch.refuse_binds is None else patch.refuse_binds.status
        self._refresh()
        return patch.drop is not None and patch.drop.now

    def _refresh(self) -> None:
        self.active = bool(
            self.throttle is not None
            or self.msgqful_remaining
            or self.msgqful_until
            or self.slow_seconds
            or self.no_response
            or self.generic_nack
            or self.drop_after_pdus is not None
            or self.ignore_enquire_link
        )

    # --- decisions (called on the slow path, only when ``active``) -----------------------------------

    def queue_full(self, now: float) -> bool:
        """True when this submit must be answered ESME_RMSGQFUL (consumes one of the counted ones)."""
        if self.msgqful_remaining:
            self.msgqful_remaining -= 1
            if not self.msgqful_remaining and not self.msgqful_until:
                self._refresh()
            return True
        if self.msgqful_until:
            if now < self.msgqful_until:
                return True
            self.msgqful_until = 0.0
            self._refresh()
        return False

    def count_for_drop(self) -> bool:
        """Count one received request; True when it is the one after which the connection drops."""
        if self.drop_after_pdus is None:
            return False
        self.drop_after_pdus -= 1
        if self.drop_after_pdus > 0:
            return False
        self.drop_after_pdus = None
        self._refresh()
        return True

    def to_dict(self, now: float) -> ActiveFaults:
        return {
            "throttle": None if self.throttle is None else {"tps": self.throttle.rate},
            "msgqful": (
                {
                    "count": self.msgqful_remaining,
                    "seconds": max(0.0, self.msgqful_until - now) if self.msgqful_until else 0.0,
                }
                if self.msgqful_remaining or self.msgqful_until > now
                else None
            ),
            "slow": {"seconds": self.slow_seconds} if self.slow_seconds else None,
            "no_response": self.no_response,
            "generic_nack": self.generic_nack,
            "drop": None if self.drop_after_pdus is None else {"after_pdus": self.drop_after_pdus},
            "refuse_binds": (
                None
                if self.refuse_binds_status is None
                else {"status": status_name(self.refuse_binds_status)}
            ),
            "ignore_enquire_link": self.ignore_enquire_link,
        }
