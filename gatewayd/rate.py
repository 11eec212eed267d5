"""How many things a second happened lately: a rate measured from the events themselves."""

from __future__ import annotations

import time
from collections.abc import Callable


class RecentRate:
    """Events per second lately. :meth:`add` counts them as they happen; :meth:`per_second` refreshes
    the rate from the count since the last refresh once ``interval`` seconds have passed, averaged
    with the rate before it (so a burst or a pause moves it by halves, not at once)."""

    def __init__(self, interval: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        if interval <= 0:
            raise ValueError("need interval > 0")
        self._interval = interval
        self._clock = clock
        self._count = 0
        self._since = clock()
        self._rate = 0.0

    def add(self, count: int = 1) -> None:
        self._count += count

    def per_second(self) -> float:
        now = self._clock()
        elapsed = now - self._since
        if elapsed >= self._interval:
            self._rate = (self._rate + self._count / elapsed) / 2
            self._count = 0
            self._since = now
        return self._rate
