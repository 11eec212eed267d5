"""The pure pacing helpers of the asyncio layer: the token bucket and the reconnect backoff."""

from __future__ import annotations

import random

import pytest

from smpp.aio import TokenBucket, backoff_delay


def test_token_bucket_paces_at_its_rate() -> None:
    bucket = TokenBucket(10.0, now=100.0)
    assert bucket.capacity == 1.0
    assert bucket.take(100.0) == 0.0  # one token to start
    assert bucket.take(100.0) == pytest.approx(0.1)
    assert bucket.take(100.05) == pytest.approx(0.05)
    assert bucket.take(100.1) == 0.0
    taken = sum(1 for step in range(1, 101) if bucket.take(100.1 + step * 0.01) == 0.0)
    assert taken == 10  # one second at 10/s, wherever the calls fall


def test_token_bucket_burst_is_bounded_by_capacity() -> None:
    bucket = TokenBucket(1000.0, now=0.0)
    assert bucket.capacity == 50.0
    bucket.take(0.0)
    burst = 0
    while bucket.take(60.0) == 0.0:  # a long idle period earns no more than the capacity
        burst += 1
    assert burst == 50


def test_a_full_bucket_starts_with_its_whole_burst() -> None:
    bucket = TokenBucket(5.0, 5.0, now=0.0, full=True)
    assert [bucket.take(0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.take(0.0) == pytest.approx(0.2)


@pytest.mark.parametrize(("rate", "capacity"), [(0.0, None), (-1.0, None), (5.0, 0.5)])
def test_token_bucket_rejects_nonsense(rate: float, capacity: float | None) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, capacity)


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (1000, 60.0)]:
        delays = [backoff_delay(attempt, 1.0, 60.0, rng) for _ in range(200)]
        assert all(0.0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not a fixed step
        assert min(delays) < ceiling * 0.2
    assert 0.0 <= backoff_delay(2, 0.5, 10.0) <= 2.0
