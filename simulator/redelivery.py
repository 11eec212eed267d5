"""When an SMSC tries a deliver_sm again: exponential backoff inside a validity window.

A real SMSC that gets a temporary error (ESME_RX_T_APPN, ESME_RSYSERR, ESME_RMSGQFUL,
ESME_RTHROTTLED), ESME_RINVBNDSTS (the deliver_sm crossed the ESME's unbind) or no answer for an MO or
a receipt keeps it and delivers it again later, waiting longer each time, until its validity period
runs out. Pure: times are passed in (seconds).
"""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from settingsfile import PositiveSeconds, Settings


class RedeliveryPolicy(Settings):
    """Wait ``initial`` seconds after the first failed attempt, doubling up to ``maximum``; give up
    after ``max_attempts`` attempts or once the next one would start more than ``window`` seconds
    after the first."""

    initial: PositiveSeconds = 1.0
    maximum: PositiveSeconds = 60.0
    window: PositiveSeconds = 3600.0
    max_attempts: int = Field(100, ge=1)

    @field_validator("maximum")
    @classmethod
    def _not_below_initial(cls, maximum: float, info: ValidationInfo) -> float:
        initial = info.data.get("initial", 0.0)
        if maximum < initial:
            raise ValueError(f"must not be below initial ({initial:g})")
        return maximum

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.initial * 2.0 ** min(attempt - 1, 64), self.maximum)

    def next_due(self, attempt: int, first_at: float, now: float) -> float | None:
        """When to try again after attempt ``attempt`` failed at ``now``; None when it is given up."""
        if attempt >= self.max_attempts:
            return None
        due = now + self.delay(attempt)
        return due if due - first_at <= self.window else None
