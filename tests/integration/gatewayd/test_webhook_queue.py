"""The webhook delivery queue (SQLite and PostgreSQL): one head per client and subscription, the claim
reads only heads, an outcome promotes the client's next delivery, and outcomes are written only by the
holder of the lease."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from gatewayd.config import WebhooksConfig
from gatewayd.schema import upgrade
from gatewayd.store.engine import create_engine
from gatewayd.store.store import Store
from gatewayd.store.webhooks import (
    ClaimedDelivery,
    DeliveryState,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
    record_delivered,
    record_failed,
    release,
)
from gatewayd.webhooks.delivery import PURGE_BATCH, WebhookDeliverer
from gatewayd.webhooks.enqueue import Occurrence, WebhookTargets
from gatewayd.webhooks.subscriptions import (
    InvalidSubscription,
    Problem,
    SubscriptionInput,
    check_subscription,
    create_subscription,
    redeliver,
)
from tests.waiting import eventually

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LEASE = T0 + timedelta(seconds=60)
SUBSCRIPTION = 7
#: Lock requests waiting in this test's database (the server is shared).
WAITING_HERE = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE NOT l.granted AND a.datname = current_database()"
)


def targets(store: Store) -> WebhookTargets:
    subscribed = WebhookTargets(store.webhook_queue)
    subscribed.replace([WebhookSubscription(id=SUBSCRIPTION, events="mo.received", include_msisdn=False)])
    return subscribed


async def enqueue(store: Store, clients: list[str], now: datetime = T0) -> None:
    occurrences = [
        Occurrence(WebhookEvent.MO_RECEIVED, client, "+34600000000", {"n": n})
        for n, client in enumerate(clients)
    ]
    async with store.transaction() as session:
        await targets(store).enqueue(session, occurrences, now)


async def states(store: Store) -> list[tuple[str, str]]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(WebhookDelivery.ordering_key, WebhookDelivery.state).order_by(WebhookDelivery.id)
        )
        return [(key, state) for key, state in rows]


async def claim(
    store: Store,
    now: datetime = T0,
    lease_until: datetime = LEASE,
    count: int = 10,
    held: set[int] | None = None,
) -> list[ClaimedDelivery]:
    async with store.transaction() as session:
        return await store.webhook_queue.claim(
            session, {SUBSCRIPTION: count}, now, lease_until, held=held or set()
        )


async def deliver(store: Store, delivered: list[ClaimedDelivery], now: datetime = T0) -> None:
    async with store.transaction() as session:
        await record_delivered(store.webhook_queue, session, [(d, 200, now) for d in delivered], now)


async def test_only_each_clients_oldest_is_due_and_its_outcome_makes_the_next_due(store: Store) -> None:
    await enqueue(store, ["a", "a", "b"])
    await enqueue(store, ["a", "c"])
    pending, waiting = DeliveryState.PENDING.value, DeliveryState.WAITING.value
    assert await states(store) == [
        ("a", pending),
        ("a", waiting),
        ("b", pending),
        ("a", waiting),
        ("c", pending),
    ]

    first = await claim(store)
    assert [d.ordering_key for d in first] == ["a", "b", "c"]
    assert await claim(store) == []  # leased: nothing else is due, the waiting ones never are

    await deliver(store, first[:1])
    second = await claim(store)
    assert [(d.ordering_key, d.id) for d in second] == [("a", first[0].id + 1)]
    async with store.transaction() as session:  # dead: the next one of the client is due too
        await record_failed(store.webhook_queue, session, second[0], 500, "HTTP 500", retry_at=None, now=T0)
    third = await claim(store)
    assert [d.ordering_key for d in third] == ["a"] and third[0].id > second[0].id
    await deliver(store, [*first[1:], *third])
    assert {state for _, state in await states(store)} == {
        DeliveryState.DELIVERED.value,
        DeliveryState.DEAD.value,
    }

    await enqueue(store, ["a", "a"])  # a client whose queue emptied: its next one is due at once
    assert [d.ordering_key for d in await claim(store)] == ["a"]


async def test_an_outcome_is_written_only_by_the_holder_of_the_lease(store: Store) -> None:
    await enqueue(store, ["a", "a"])
    (stale,) = await claim(store)
    assert await claim(store, held={stale.id}, now=LEASE + timedelta(seconds=1)) == []  # held here: skipped
    (taken,) = await claim(store, now=LEASE + timedelta(seconds=1), lease_until=LEASE + timedelta(seconds=90))
    assert taken.id == stale.id and taken.lease != stale.lease

    await deliver(store, [taken])
    async with store.transaction() as session:  # the first worker's late failure changes nothing
        await record_failed(store.webhook_queue, session, stale, None, "timeout", retry_at=None, now=T0)
        await record_delivered(store.webhook_queue, session, [(stale, 200, T0)], T0)
    async with store.sessions() as session:
        rows = (await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))).all()
    assert [(row.state, row.attempts) for row in rows] == [
        (DeliveryState.DELIVERED.value, 1),
        (DeliveryState.PENDING.value, 0),  # promoted once, not twice
    ]


async def test_released_leases_are_due_again_at_once(store: Store) -> None:
    await enqueue(store, ["a"])
    (claimed,) = await claim(store)
    later = T0 + timedelta(seconds=5)
    async with store.transaction() as session:
        await release(session, [claimed], later)
    (again,) = await claim(store, now=later)
    assert again.id == claimed.id and again.attempts == 0


async def test_a_redelivered_dead_delivery_waits_behind_its_clients_delivery_in_flight(store: Store) -> None:
    await enqueue(store, ["a"])
    (dead,) = await claim(store)
    async with store.transaction() as session:
        await record_failed(store.webhook_queue, session, dead, 500, "HTTP 500", retry_at=None, now=T0)
    await enqueue(store, ["a"])
    requeued = T0 + timedelta(hours=30)  # past max_age from its creation: its age counts from now
    (in_flight,) = await claim(store, lease_until=requeued + timedelta(hours=1))
    async with store.transaction() as session:
        assert await redeliver(session, store.webhook_queue, SUBSCRIPTION, None, requeued) == 1
    assert await claim(store, now=requeued) == []  # one delivery of a client at a time
    await deliver(store, [in_flight], requeued)
    (redelivered,) = await claim(store, now=requeued, lease_until=requeued + timedelta(seconds=60))
    assert (redelivered.id, redelivered.queued_at) == (dead.id, requeued)
    async with store.sessions() as session:
        row = await session.get(WebhookDelivery, dead.id)
        assert row is not None and row.created_at == T0


async def test_two_admins_making_the_same_name_at_once_get_name_taken(pg_url: str) -> None:
    """The second's check ran before the first committed: its insert waits on the unique name, then
    fails; that is NAME_TAKEN, not a 500 (PostgreSQL: two writers at once)."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    store = Store.for_engine(engine)
    given = SubscriptionInput("crm", "http://127.0.0.1:9/", ["mo.received"])
    checked = await check_subscription(given, ["127.0.0.1:9"])
    try:
        async with store.transaction() as first:
            await create_subscription(first, checked, by="ana", now=T0)

            async def second() -> None:
                async with store.transaction() as session:
                    await create_subscription(session, checked, by="luis", now=T0)

            racing = asyncio.create_task(second())

            async def waiting_on_the_name() -> bool:
                async with engine.connect() as connection:
                    return bool(
                        await connection.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
                    )

            await eventually(waiting_on_the_name)
        with pytest.raises(InvalidSubscription) as refused:
            await racing
        assert refused.value.problem is Problem.NAME_TAKEN
    finally:
        await engine.dispose()


async def test_old_delivered_deliveries_are_purged_in_batches_and_the_rest_kept(store: Store) -> None:
    await enqueue(store, [f"c{n}" for n in range(PURGE_BATCH * 2 + 5)])
    async with store.transaction() as session:
        await session.execute(
            update(WebhookDelivery).values(state=DeliveryState.DELIVERED.value, delivered_at=T0)
        )
    await enqueue(store, ["recent", "dead", "waiting"])
    async with store.transaction() as session:
        later = T0 + timedelta(days=1)
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.ordering_key == "recent")
            .values(state=DeliveryState.DELIVERED.value, delivered_at=later)
        )
        await session.execute(
            update(WebhookDelivery).where(WebhookDelivery.ordering_key == "dead").values(state="dead")
        )
    deliverer = WebhookDeliverer(store, WebhooksConfig(), WebhookTargets(store.webhook_queue))
    assert await deliverer.purge(T0 + timedelta(hours=1)) == PURGE_BATCH * 2 + 5
    assert sorted(key for key, _ in await states(store)) == ["dead", "recent", "waiting"]
