"""When an SMSC tries a deliver_sm again: exponential backoff inside a validity window.

A real SMSC that gets a temporary error (ESME_RX_T_APPN, ESME_RSYSERR, ESME_RMSGQFUL,
ESME_RTHROTTLED) or no answer for an MO or a receipt keeps it and delivers it again later, waiting
longer each time, until its validity period runs out. Pure: times are passed in (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RedeliveryPolicy:
    """Wait ``initial`` seconds after the first failed attempt, doubling up to ``maximum``; give up
    after ``max_attempts`` attempts or once the next one would start more than ``window`` seconds
    after the first."""

    initial: float = 1.0
    maximum: float = 60.0
    window: float = 3600.0
    max_attempts: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("redelivery: need 0 < initial <= maximum")
        if self.window <= 0 or self.max_attempts < 1:
            raise ValueError("redelivery: window must be positive and max_attempts at least 1")

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.initial * 2.0 ** min(attempt - 1, 64), self.maximum)

    def next_due(self, attempt: int, first_at: float, now: float) -> float | None:
        """When to try again after attempt ``attempt`` failed at ``now``; None when it is given up."""
        if attempt >= self.max_attempts:
            return None
        due = now + self.delay(attempt)
        return due if due - first_at <= self.window else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "initial": self.initial,
            "maximum": self.maximum,
            "window": self.window,
            "max_attempts": self.max_attempts,
        }
