"""RecentRate: events per second lately, moved by halves at each refresh."""

from __future__ import annotations

import pytest

from gatewayd.rate import RecentRate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_follows_the_events_by_halves_and_only_once_an_interval_passed() -> None:
    clock = Clock()
    rate = RecentRate(interval=0.1, clock=clock)
    assert rate.per_second() == 0.0
    rate.add(50)
    clock.now += 0.05
    assert rate.per_second() == 0.0  # not an interval yet: the count waits
    clock.now += 0.05
    assert rate.per_second() == pytest.approx(250.0)  # 500/s measured, averaged with 0
    rate.add(50)
    clock.now += 0.1
    assert rate.per_second() == pytest.approx(375.0)
    clock.now += 0.1  # a pause: nothing accepted
    assert rate.per_second() == pytest.approx(187.5)
    clock.now += 10.0
    assert rate.per_second() == pytest.approx(93.75)


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecentRate(interval=0)
