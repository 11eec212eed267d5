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

from typing import Any

from simulator.settings import Reader, SettingsError
from smpp.aio.throttle import TokenBucket
from smpp.constants import CommandStatus, status_name


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

    def apply(self, reader: Reader, now: float, default_tps: float | None = None) -> bool:
        """Apply a patch (see the module docstring); returns True when it asks to drop connections now.

        Nothing changes when the patch is invalid: it is read completely before being applied.
        """
        staged: dict[str, Any] = {}
        drop_now = False
        if reader.has("throttle"):
            staged["throttle"] = self._read_throttle(reader, default_tps)
        if reader.has("msgqful"):
            sub = _sub_or_off(reader, "msgqful")
            count, seconds = 0, 0.0
            if sub is not None:
                count = sub.integer("count", 0, minimum=0)
                seconds = sub.seconds("seconds", 0.0)
                sub.finish()
                if count == 0 and seconds == 0:
                    raise SettingsError(f"{reader.key('msgqful')}: give count (submits) and/or seconds")
            staged["msgqful"] = (count, now + seconds if seconds else 0.0)
        if reader.has("slow"):
            sub = _sub_or_off(reader, "slow")
            seconds = 0.0
            if sub is not None:
                seconds = sub.seconds("seconds", positive=True, maximum=3600)
                sub.finish()
            staged["slow"] = seconds
        for flag in ("no_response", "generic_nack", "ignore_enquire_link"):
            if reader.has(flag):
                value = reader.raw(flag)
                if value is not None and not isinstance(value, bool):
                    raise SettingsError(f"{reader.key(flag)}: expected true or false")
                staged[flag] = bool(value)
        if reader.has("drop"):
            sub = _sub_or_off(reader, "drop")
            after: int | None = None
            if sub is not None:
                drop_now = sub.boolean("now", False)
                if sub.has("after_pdus"):
                    after = sub.integer("after_pdus", minimum=1)
                sub.finish()
                if not drop_now and after is None:
                    raise SettingsError(f"{reader.key('drop')}: give now: true or after_pdus: N")
            staged["drop"] = after
        if reader.has("refuse_binds"):
            staged["refuse_binds"] = self._read_refuse(reader)
        reader.finish()
        self._commit(staged)
        return drop_now

    @staticmethod
    def _read_throttle(reader: Reader, default_tps: float | None) -> float | None:
        value = reader.raw("throttle")
        if value is None or value is False:
            return None
        if value is True:
            tps = default_tps
        else:
            sub = Reader(value, reader.key("throttle"))
            tps = sub.optional_number("tps", minimum=0, exclusive_minimum=True) or default_tps
            sub.finish()
        if tps is None:
            raise SettingsError(
                f"{reader.key('throttle')}: the carrier has no tps in its profile; "
                'give throttle: {"tps": N}'
            )
        return tps

    @staticmethod
    def _read_refuse(reader: Reader) -> int | None:
        value = reader.raw("refuse_binds")
        if value is None or value is False:
            return None
        if value is True:
            return CommandStatus.ESME_RBINDFAIL
        sub = Reader(value, reader.key("refuse_binds"))
        raw = sub.raw("status")
        sub.finish()
        if raw is None:
            return CommandStatus.ESME_RBINDFAIL
        return parse_status(raw, sub.key("status"))

    def _commit(self, staged: dict[str, Any]) -> None:
        if "throttle" in staged:
            tps = staged["throttle"]
            self.throttle = None if tps is None else carrier_bucket(tps, 0.0)  # full whenever first asked
        if "msgqful" in staged:
            self.msgqful_remaining, self.msgqful_until = staged["msgqful"]
        if "slow" in staged:
            self.slow_seconds = staged["slow"]
        if "no_response" in staged:
            self.no_response = staged["no_response"]
        if "generic_nack" in staged:
            self.generic_nack = staged["generic_nack"]
        if "ignore_enquire_link" in staged:
            self.ignore_enquire_link = staged["ignore_enquire_link"]
        if "drop" in staged:
            self.drop_after_pdus = staged["drop"]
        if "refuse_binds" in staged:
            self.refuse_binds_status = staged["refuse_binds"]
        self._refresh()

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

    def to_dict(self, now: float) -> dict[str, Any]:
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


def _sub_or_off(reader: Reader, name: str) -> Reader | None:
    value = reader.raw(name)
    if value is None or value is False:
        return None
    if value is True:
        return Reader({}, reader.key(name))
    return Reader(value, reader.key(name))


def parse_status(raw: object, key: str) -> int:
    """A command_status given by name (``ESME_RBINDFAIL``) or number."""
    if isinstance(raw, str):
        try:
            return CommandStatus[raw.upper()]
        except KeyError:
            raise SettingsError(f"{key}: unknown command_status {raw!r}") from None
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw <= 0xFFFFFFFF:
        return raw
    raise SettingsError(f"{key}: expected a command_status name or a number above 0")
