"""Per-carrier counters: plain ints bumped on the hot path, turned into JSON only when asked."""

from __future__ import annotations

from collections import deque
from typing import Any

from smpp.constants import CommandID

_COMMAND_NAMES = {int(command): command.name.lower() for command in CommandID}


class Counters:
    """PDUs in/out by command, binds, messages; a once-a-second sample gives recent throughput."""

    #: Samples kept for throughput: one a second.
    WINDOW_SECONDS = 60

    def __init__(self) -> None:
        self.pdus_in: dict[int, int] = dict.fromkeys(_COMMAND_NAMES, 0)
        self.pdus_out: dict[int, int] = dict.fromkeys(_COMMAND_NAMES, 0)
        self.binds_accepted = 0
        self.binds_refused = 0
        self.connections_closed = 0
        self.mt_accepted = 0
        self.mt_rejected = 0
        self.receipts_sent = 0
        self.mo_injected = 0
        self.mo_delivered = 0
        #: deliver_sm (MOs and receipts) refused with a permanent error, dropped.
        self.mo_failed = 0
        #: deliver_sm scheduled again after a temporary error or a response timeout.
        self.redeliveries = 0
        #: deliver_sm given up after the redelivery window or attempts ran out.
        self.deliveries_expired = 0
        self.queue_dropped = 0
        #: deliver_sm (MOs and receipts) that could not be encoded (an address too long), dropped.
        self.deliveries_unencodable = 0
        #: Sessions bound now, and the most ever bound at once, per system_id: a carrier's limit on
        #: binds is per system_id, and several daemons sharing one must never exceed it together.
        self.binds_now: dict[str, int] = {}
        self.binds_max: dict[str, int] = {}
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=self.WINDOW_SECONDS + 1)

    def bound(self, system_id: str) -> None:
        now = self.binds_now[system_id] = self.binds_now.get(system_id, 0) + 1
        if now > self.binds_max.get(system_id, 0):
            self.binds_max[system_id] = now

    def unbound(self, system_id: str) -> None:
        self.binds_now[system_id] = max(0, self.binds_now.get(system_id, 0) - 1)

    def count_in(self, command_id: int) -> None:
        pdus_in = self.pdus_in
        pdus_in[command_id] = pdus_in.get(command_id, 0) + 1

    def count_out(self, command_id: int) -> None:
        pdus_out = self.pdus_out
        pdus_out[command_id] = pdus_out.get(command_id, 0) + 1

    def sample(self, now: float) -> None:
        """Called about once a second by the simulator's clock."""
        self._samples.append((now, self.mt_accepted, self.mo_delivered + self.receipts_sent))

    def throughput(self, now: float, seconds: float) -> dict[str, float]:
        """Accepted MTs and delivered deliver_sm per second over about the last ``seconds``."""
        if len(self._samples) < 2:
            return {"mt_per_second": 0.0, "deliver_per_second": 0.0}
        latest = self._samples[-1]
        oldest = latest
        for sample in reversed(self._samples):
            oldest = sample
            if latest[0] - sample[0] >= seconds:
                break
        elapsed = latest[0] - oldest[0]
        if elapsed <= 0:
            return {"mt_per_second": 0.0, "deliver_per_second": 0.0}
        return {
            "mt_per_second": round((latest[1] - oldest[1]) / elapsed, 1),
            "deliver_per_second": round((latest[2] - oldest[2]) / elapsed, 1),
        }

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "pdus_in": {_name(c): n for c, n in self.pdus_in.items() if n},
            "pdus_out": {_name(c): n for c, n in self.pdus_out.items() if n},
            "binds_accepted": self.binds_accepted,
            "binds_refused": self.binds_refused,
            "connections_closed": self.connections_closed,
            "mt_accepted": self.mt_accepted,
            "mt_rejected": self.mt_rejected,
            "receipts_sent": self.receipts_sent,
            "mo_injected": self.mo_injected,
            "mo_delivered": self.mo_delivered,
            "mo_failed": self.mo_failed,
            "redeliveries": self.redeliveries,
            "deliveries_expired": self.deliveries_expired,
            "queue_dropped": self.queue_dropped,
            "deliveries_unencodable": self.deliveries_unencodable,
            "binds_by_system_id": {
                system_id: {"now": self.binds_now.get(system_id, 0), "max": most}
                for system_id, most in sorted(self.binds_max.items())
            },
            "throughput_1s": self.throughput(now, 1.0),
            "throughput_10s": self.throughput(now, 10.0),
        }


def _name(command_id: int) -> str:
    return _COMMAND_NAMES.get(command_id, f"0x{command_id:08x}")
