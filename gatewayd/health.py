"""Which of the daemon's loops keep failing, for ``/healthz``.

A loop that retries forever (a claim every half second against a database that refuses it, a record
batch that never commits) keeps the process alive and the binds up while nothing gets done; the
health check must say so. Each loop reports every failure and every success; one whose failures,
with no success in between, span ``FAILING_AFTER`` seconds makes the daemon unhealthy, until it
succeeds again or has not failed for ``FORGET_AFTER`` seconds (a loop that runs only when there is
work, such as the receipts' commit, may not try again soon).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: A loop failing this long without a success in between makes ``/healthz`` answer 503: longer than a
#: database blip the loops ride out (a few retries half a second apart), far shorter than an outage.
FAILING_AFTER = 5.0
#: A failing loop not heard of for this long is no longer taken as failing.
FORGET_AFTER = 60.0


@dataclass(slots=True)
class _Failing:
    since: float
    last: float
    failures: int
    error: str


class LoopHealth:
    """Failures per loop name (``mt.claim``, ``mt.record``, ``receipts.commit`` ...) since its last
    success. Cheap enough for every batch: a success is a dict lookup."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failing: dict[str, _Failing] = {}

    def failed(self, loop: str, error: BaseException) -> None:
        now = self._clock()
        text = repr(error)[:200]
        failing = self._failing.get(loop)
        if failing is None or now - failing.last > FORGET_AFTER:
            self._failing[loop] = _Failing(now, now, 1, text)
        else:
            failing.last = now
            failing.failures += 1
            failing.error = text

    def succeeded(self, loop: str) -> None:
        if self._failing:
            self._failing.pop(loop, None)

    def failing(self) -> dict[str, dict[str, object]]:
        """The loops that keep failing: since when (seconds ago), how often, the last error."""
        now = self._clock()
        return {
            loop: {
                "for_seconds": round(now - failing.since, 1),
                "failures": failing.failures,
                "last_error": failing.error,
            }
            for loop, failing in sorted(self._failing.items())
            if failing.last - failing.since >= FAILING_AFTER and now - failing.last <= FORGET_AFTER
        }
