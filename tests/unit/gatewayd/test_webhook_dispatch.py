"""The webhook worker shares its global slots among subscriptions in turn, and keeps each URL's checked
address a while."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

import pytest

from gatewayd.net_safety import UnsafeTarget
from gatewayd.store.webhooks import ClaimedDelivery
from gatewayd.webhooks.delivery import TargetCache, take_in_turn

T0 = datetime(2026, 12, 6, tzinfo=UTC)


def claimed(subscription_id: int, count: int) -> deque[ClaimedDelivery]:
    return deque(
        ClaimedDelivery(subscription_id * 100 + n, subscription_id, "mo.received", "{}", 0, T0, "c", 1, T0)
        for n in range(count)
    )


def test_a_busy_subscription_does_not_take_every_global_slot() -> None:
    queued = {1: claimed(1, 40), 2: claimed(2, 3), 3: claimed(3, 1)}
    in_flight: dict[int, int] = {}
    taken = take_in_turn(queued, in_flight, concurrency=6, per_subscription=8, turn=0)
    assert [d.subscription_id for d in taken] == [1, 2, 3, 1, 2, 1]
    assert in_flight == {1: 3, 2: 2, 3: 1}


def test_the_turn_moves_on_and_per_subscription_slots_hold() -> None:
    queued = {1: claimed(1, 5), 2: claimed(2, 5)}
    assert [d.subscription_id for d in take_in_turn(queued, {}, 1, 8, turn=1)] == [2]
    in_flight = {1: 2}
    taken = take_in_turn(queued, in_flight, concurrency=10, per_subscription=2, turn=0)
    assert [d.subscription_id for d in taken] == [2, 2]


async def test_a_urls_checked_address_is_kept_for_a_while_and_a_refusal_never() -> None:
    now = [0.0]
    cache = TargetCache(ttl=60.0, clock=lambda: now[0])
    allow = ["localhost:8080"]
    first = await cache.get("http://localhost:8080/hooks", allow)
    now[0] = 59.0
    assert await cache.get("http://localhost:8080/hooks", allow) is first
    now[0] = 61.0
    again = await cache.get("http://localhost:8080/hooks", allow)
    assert again is not first and again == first
    for _ in range(2):
        with pytest.raises(UnsafeTarget):
            await cache.get("http://localhost:8081/hooks", allow)
