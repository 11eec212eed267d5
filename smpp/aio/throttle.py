"""Token bucket that paces submissions to a carrier's TPS limit. Pure: the caller passes the time."""

from __future__ import annotations

#: Float sums of elapsed time times rate land a hair under 1.0 when a whole token was earned.
_ALMOST_ONE = 1.0 - 1e-9


class TokenBucket:
    """``rate`` tokens per second, holding at most ``capacity`` (the largest burst).

    The default capacity is 50 ms worth of tokens (at least one): a carrier counts per second, and a
    short burst keeps a fast bind from waking up once per message. It starts with one token (one
    message may leave at once, the rest is earned), or ``full`` (a receiver admitting a whole burst
    at once, as an SMSC enforcing its TPS does).
    """

    __slots__ = ("rate", "capacity", "_tokens", "_updated")

    def __init__(
        self, rate: float, capacity: float | None = None, *, now: float = 0.0, full: bool = False
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate * 0.05)
        if self.capacity < 1:
            raise ValueError("capacity must hold at least one token")
        self._tokens = self.capacity if full else 1.0
        self._updated = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when it was taken, otherwise the seconds to wait before asking again."""
        tokens = self._tokens + (now - self._updated) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self._updated = now
        if tokens >= _ALMOST_ONE:
            self._tokens = max(tokens - 1.0, 0.0)
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / self.rate
