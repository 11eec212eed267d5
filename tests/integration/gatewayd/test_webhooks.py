"""Webhooks end to end: MOs through the simulator become signed deliveries at a receiver on 127.0.0.1,
retried, dead-lettered, redelivered, in order per client (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gatewayd.schema import upgrade
from gatewayd.store.engine import create_engine
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from gatewayd.store.webhooks import DeliveryState, WebhookDelivery, WebhookEvent, WebhookSubscription
from gatewayd.webhooks.enqueue import Occurrence, WebhookTargets
from gatewayd.webhooks.subscriptions import (
    SubscriptionInput,
    check_subscription,
    create_subscription,
    redeliver,
)
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    make_config,
    running_daemon,
    simulator_config,
)
from tests.integration.gatewayd.test_store_mt import push
from tests.integration.gatewayd.webhook_receiver import Received, Receiver
from tests.waiting import eventually

SUBSCRIBER = "+34600111222"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def webhooks_section(receiver: Receiver, **settings: object) -> str:
    values = {"backoff_initial": 0.05, "backoff_max": 0.2, "poll_interval": 0.05, **settings}
    lines = "".join(f"{key} = {value}\n" for key, value in values.items())
    return f'\n[webhooks]\nallow = ["127.0.0.1:{receiver.port}"]\n{lines}'


async def subscribe(
    database_url: str, receiver: Receiver, events: list[str], *, include_msisdn: bool = False
) -> int:
    """A subscription made through the service the panel and the API call; the receiver gets its secret."""
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with Store.for_engine(engine).transaction() as session:
            checked = await check_subscription(
                SubscriptionInput("crm", receiver.url, events, include_msisdn=include_msisdn),
                [f"127.0.0.1:{receiver.port}"],
            )
            subscription = await create_subscription(session, checked, by="admin", now=datetime.now(UTC))
            receiver.secret = subscription.secret
            return subscription.id
    finally:
        await engine.dispose()


async def deliveries(store: Store | None) -> list[WebhookDelivery]:
    assert store is not None
    async with store.sessions() as session:
        return list((await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))).all())


async def all_delivered(store: Store | None, count: int) -> bool:
    states = [d.state for d in await deliveries(store)]
    return states == [DeliveryState.DELIVERED] * count


async def test_an_mo_and_an_opt_out_reach_the_receiver_signed(
    tmp_path: Path, database_url: str, simulator: Simulator, receiver: Receiver
) -> None:
    await subscribe(database_url, receiver, ["mo.received", "client.opt_out"])
    config = make_config(tmp_path, database_url, simulator, extra=webhooks_section(receiver))
    async with running_daemon(config) as daemon:
        simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola, ¿hay alguien?")
        await eventually(lambda: len(receiver.acknowledged) == 1)
        # right behind each other (likely one batch): the opt-out comes right after its own MO
        simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "BAJA")
        simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "una cosa más")
        await eventually(lambda: len(receiver.acknowledged) == 4)
        await eventually(lambda: all_delivered(daemon.store, 4))
        stored = await deliveries(daemon.store)
        assert daemon.sessions is not None
        async with daemon.sessions() as session:
            client_id = (await session.scalars(select(Subscriber.client_id))).one()
    first, baja, opt_out, later = receiver.acknowledged
    assert all(item.signed for item in receiver.received)
    assert [item.event for item in receiver.acknowledged] == [
        "mo.received",
        "mo.received",
        "client.opt_out",
        "mo.received",
    ]
    assert later.payload["text"] == "una cosa más"
    assert first.payload["text"] == "hola, ¿hay alguien?"
    assert first.payload["client_id"] == client_id
    assert first.payload["short_code"] == MOVISTAR_SHORT_CODE and first.payload["carrier"] == MOVISTAR
    assert first.payload["service"] == "chat-movistar"
    assert first.payload["received_at"].endswith("Z")
    assert "msisdn" not in first.payload and SUBSCRIBER[1:] not in str(first.payload)
    assert opt_out.payload["client_id"] == client_id and opt_out.payload["keyword"] == "BAJA"
    assert opt_out.payload["mo_id"] == baja.payload["mo_id"]
    assert [d.id for d in stored] == [item.delivery_id for item in receiver.acknowledged]
    assert {d.state for d in stored} == {DeliveryState.DELIVERED} and {d.attempts for d in stored} == {1}


async def test_failures_are_retried_then_dead_then_redelivered(
    tmp_path: Path, database_url: str, simulator: Simulator, receiver: Receiver
) -> None:
    subscription_id = await subscribe(database_url, receiver, ["mo.received"], include_msisdn=True)
    receiver.answer = lambda _: 500
    config = make_config(tmp_path, database_url, simulator, extra=webhooks_section(receiver, max_attempts=3))
    async with running_daemon(config) as daemon:
        simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola")

        async def dead() -> bool:
            return [(d.state, d.attempts, d.last_status) for d in await deliveries(daemon.store)] == [
                (DeliveryState.DEAD, 3, 500)
            ]

        await eventually(dead)
        assert len(receiver.received) == 3 and not receiver.acknowledged
        assert len({item.delivery_id for item in receiver.received}) == 1
        receiver.answer = lambda _: 204
        assert daemon.store is not None and daemon.webhooks is not None
        async with daemon.store.transaction() as session:
            queue = daemon.store.webhook_queue
            assert await redeliver(session, queue, subscription_id, None, datetime.now(UTC)) == 1
        daemon.webhooks.wake()
        await eventually(lambda: all_delivered(daemon.store, 1))
        (delivered,) = await deliveries(daemon.store)
    assert delivered.state == DeliveryState.DELIVERED and delivered.last_status == 204
    assert receiver.acknowledged[0].payload["msisdn"] == SUBSCRIBER[1:]


def fail_first_try_of_every_third() -> Callable[[Received], int]:
    seen: set[int] = set()

    def answer(item: Received) -> int:
        first = item.delivery_id not in seen
        seen.add(item.delivery_id)
        return 503 if first and item.delivery_id % 3 == 0 else 200

    return answer


async def test_each_clients_deliveries_stay_in_order_across_failures(
    tmp_path: Path, database_url: str, simulator: Simulator, receiver: Receiver
) -> None:
    await subscribe(database_url, receiver, ["mo.received"])
    receiver.answer = fail_first_try_of_every_third()
    config = make_config(tmp_path, database_url, simulator, extra=webhooks_section(receiver))
    clients = [f"+3460011{index:04d}" for index in range(4)]
    async with running_daemon(config):
        for number in range(10):
            for client in clients:
                simulator.inject_mo(MOVISTAR, client, MOVISTAR_SHORT_CODE, f"{client} {number}")
        await eventually(lambda: len(receiver.acknowledged) == 40, within=30)
    assert any(item.status == 503 for item in receiver.received)
    assert all(item.signed for item in receiver.received)
    assert_in_order_once(receiver, clients=4, each=10)


def assert_in_order_once(receiver: Receiver, *, clients: int, each: int) -> None:
    """Each delivery acknowledged once; per client, in the order the gateway committed the events (the
    deliveries' ids), every MO there."""
    acknowledged = [item.delivery_id for item in receiver.acknowledged]
    assert len(acknowledged) == len(set(acknowledged)) == clients * each
    by_client: dict[str, list[Received]] = {}
    for item in receiver.acknowledged:
        by_client.setdefault(item.payload["client_id"], []).append(item)
    assert len(by_client) == clients
    for items in by_client.values():
        ids = [item.delivery_id for item in items]
        assert ids == sorted(ids) and len({item.payload["mo_id"] for item in items}) == each


@pytest.mark.parametrize("receipt_delay", [0.0, 0.3], ids=["receipt-with-result", "receipt-later"])
async def test_an_mts_status_moves_and_receipt_reach_the_receiver(
    tmp_path: Path, database_url: str, receiver: Receiver, receipt_delay: float
) -> None:
    """The receipt is ``mt.receipt`` whether it is applied on its own or with the submit result (an
    SMSC answering at once: both moves written in one transaction)."""
    await subscribe(database_url, receiver, ["mt.status", "mt.receipt"])
    async with (
        Simulator(simulator_config(receipt_delay=receipt_delay)) as simulator,
        running_daemon(
            make_config(tmp_path, database_url, simulator, extra=webhooks_section(receiver))
        ) as daemon,
    ):
        simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola")  # no delivery: not wanted

        async def client_known() -> str | None:
            assert daemon.sessions is not None
            async with daemon.sessions() as session:
                return (await session.scalars(select(Subscriber.client_id))).one_or_none()

        await eventually(client_known)
        mt_id = await daemon.queue_mt(SUBSCRIBER, "¡Hola! Soy Ana.", carrier=MOVISTAR)
        expected = ["mt.status", "mt.receipt"]
        await eventually(lambda: [item.event for item in receiver.acknowledged] == expected)
        client_id = await client_known()
    accepted, receipt = receiver.acknowledged
    assert all(item.signed for item in receiver.received)
    assert accepted.payload["mt_id"] == receipt.payload["mt_id"] == mt_id
    assert (accepted.payload["previous"], accepted.payload["status"]) == ("sending", "accepted")
    assert (receipt.payload["previous"], receipt.payload["status"]) == ("accepted", "delivered")
    assert receipt.payload["client_id"] == client_id and receipt.payload["carrier"] == MOVISTAR
    assert "msisdn" not in receipt.payload


async def test_an_mt_its_daemon_left_sending_is_queued_as_mt_status_when_reconciled(
    tmp_path: Path, database_url: str, simulator: Simulator, receiver: Receiver
) -> None:
    await subscribe(database_url, receiver, ["mt.status"])
    engine = create_engine(database_url)
    try:
        store = Store.for_engine(engine)
        now = datetime.now(UTC)
        async with store.transaction() as session:  # claimed by this daemon's instance, which then died
            (mt_id,) = await queue_mts(session, [push("34600111333")], now)
            assert (await store.claims.claim(session, "gatewayd-test", now, limit=1, lease=60)).mts
    finally:
        await engine.dispose()
    async with running_daemon(
        make_config(tmp_path, database_url, simulator, extra=webhooks_section(receiver))
    ):
        await eventually(lambda: len(receiver.acknowledged) >= 1)
    first = receiver.acknowledged[0].payload
    assert (first["mt_id"], first["previous"], first["status"]) == (mt_id, "sending", "queued")
    assert first["detail"] == "reconciled after restart"


async def test_a_delivery_older_than_max_age_is_dead_without_being_posted(
    tmp_path: Path, database_url: str, simulator: Simulator, receiver: Receiver
) -> None:
    await subscribe(database_url, receiver, ["mo.received"])
    engine = create_engine(database_url)
    try:
        store = Store.for_engine(engine)
        targets = WebhookTargets(store.webhook_queue)
        async with store.sessions() as session:
            targets.replace(list((await session.scalars(select(WebhookSubscription))).all()))
        old = datetime.now(UTC) - timedelta(hours=2)  # queued while the subscription was disabled
        async with store.transaction() as session:
            await targets.enqueue(session, [Occurrence(WebhookEvent.MO_RECEIVED, "c1", SUBSCRIBER, {})], old)
    finally:
        await engine.dispose()
    config = make_config(tmp_path, database_url, simulator, extra=webhooks_section(receiver, max_age=3600))
    async with running_daemon(config) as daemon:

        async def dead() -> bool:
            return [(d.state, d.last_error) for d in await deliveries(daemon.store)] == [
                (DeliveryState.DEAD, "older than max_age: not posted")
            ]

        await eventually(dead)
    assert receiver.received == []
