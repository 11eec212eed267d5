"""The outbox through the real store (SQLite and PostgreSQL) and a real bus: the recipient rule at queue
time and again at the claim, the way a push leaves, the variables stored rendered, the announcements."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import event, select

from gatewayd.bus.memory import MemoryBus
from gatewayd.config import BindConfig, CarrierConfig
from gatewayd.mo_message import dedup_key
from gatewayd.outbox import MTRequest, Outbox, OutboxSettings, Queued
from gatewayd.schema import upgrade
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.errors import MTRefused, RefusalReason
from gatewayd.store.messages import MTMessage
from gatewayd.store.mt.recipients import Refusal
from gatewayd.store.repo_mo import NewMO
from gatewayd.store.repo_subscribers import get_subscriber_by_msisdn, set_bans, set_opted_out
from gatewayd.store.store import Store

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 9, 15, 0, tzinfo=UTC)
OPTED_OUT, BANNED, FREE = "34600000001", "34600000002", "34600000003"


def settings() -> OutboxSettings:
    bind = BindConfig(name="m-1", host="127.0.0.1", port=2775, system_id="echat", password=SecretStr("pw"))
    movistar = CarrierConfig(name="movistar", country="ES", short_codes=("997745",), binds=(bind,))
    return OutboxSettings(carriers=(movistar,), timezone="Europe/Madrid")


async def with_subscribers(store: Store) -> None:
    """Three subscribers who wrote to vodafone's 795500: one opted out, one banned, one free."""
    async with store.transaction() as session:
        rows = [
            NewMO(
                dedup_key=dedup_key("vodafone", msisdn, "795500", 0, uuid.uuid4().bytes),
                msisdn=msisdn,
                carrier="vodafone",
                short_code="795500",
                text="hola",
                received_at=T0,
                country="ES",
                bind_name="vodafone-3",
            )
            for msisdn in (OPTED_OUT, BANNED, FREE)
        ]
        stored = await store.mos.ingest(session, rows, T0)
        await set_opted_out(session, stored[0].subscriber.id, True, T0)
        await set_bans(session, [stored[1].subscriber.client_id], reason="abuse", now=T0)


async def test_the_rule_is_applied_once_per_request_and_the_others_are_queued(store: Store) -> None:
    await with_subscribers(store)
    outbox = Outbox(settings(), sessions=store.sessions, inserts=store.mt_inserts)
    requests = [
        MTRequest(OPTED_OUT, "oferta"),
        MTRequest(BANNED, "oferta"),
        MTRequest(FREE, "oferta {telefono}"),
        MTRequest(OPTED_OUT, "Te has dado de baja de {host}", kind=MTKind.SYSTEM),
        MTRequest("+34600000009", "hola, desconocido"),  # nobody yet: no rule stops it
    ]
    async with store.transaction() as session:
        batch = await outbox.queue_in(session, requests, T0)
    opted_out, banned, free, system, unknown = batch.outcomes
    assert isinstance(opted_out, Refusal) and opted_out.reason is RefusalReason.OPTED_OUT
    assert isinstance(banned, Refusal) and banned.reason is RefusalReason.BANNED
    assert isinstance(free, Queued) and isinstance(system, Queued) and isinstance(unknown, Queued)
    async with store.sessions() as session:
        rows = {mt.id: mt for mt in (await session.execute(select(MTMessage))).scalars()}
    assert set(rows) == {free.mt_id, system.mt_id, unknown.mt_id}
    # a push leaves the way its subscriber last wrote: vodafone's 795500, by the same bind
    assert (rows[free.mt_id].carrier, rows[free.mt_id].source, rows[free.mt_id].bind_name) == (
        "vodafone",
        "795500",
        "vodafone-3",
    )
    assert rows[free.mt_id].text == f"oferta {FREE}" and rows[free.mt_id].subscriber_id is not None
    assert rows[system.mt_id].text == "Te has dado de baja de 795500"
    # a number nobody wrote from: the carrier serving its country, with its first short code
    assert (rows[unknown.mt_id].carrier, rows[unknown.mt_id].source) == ("movistar", "997745")
    assert rows[unknown.mt_id].subscriber_id is None
    with pytest.raises(MTRefused, match="banned"):
        await outbox.queue(MTRequest(BANNED, "otra"))


async def test_a_ban_after_queueing_is_caught_by_the_claim_with_the_same_rule(store: Store) -> None:
    await with_subscribers(store)
    outbox = Outbox(settings(), sessions=store.sessions, inserts=store.mt_inserts)
    queued = await outbox.queue(MTRequest(FREE, "hola"), T0)
    async with store.transaction() as session:
        subscriber = await get_subscriber_by_msisdn(session, FREE)
        assert subscriber is not None
        await set_bans(session, [subscriber.client_id], reason="spam", now=T0)
    async with store.transaction() as session:
        claimed = await store.claims.claim(session, "gw", T0 + timedelta(seconds=1), limit=10, lease=30)
    assert claimed.mts == [] and claimed.refused == [(queued.mt_id, "subscriber banned: spam")]
    async with store.sessions() as session:
        mt = await session.get(MTMessage, queued.mt_id)
    assert mt is not None and mt.status is MTStatus.REFUSED


async def test_an_opt_out_after_queueing_is_caught_by_the_claim_and_the_gateway_s_own_mts_go(
    store: Store,
) -> None:
    """The claim applies the recipient rule to each MT by its kind: after an opt-out the client's push
    (two of them) is refused, the gateway's own message (SYSTEM) goes; an unknown number's goes."""
    await with_subscribers(store)
    outbox = Outbox(settings(), sessions=store.sessions, inserts=store.mt_inserts)
    pushes = [await outbox.queue(MTRequest(FREE, text), T0) for text in ("hola", "¿sigues?")]
    system = await outbox.queue(MTRequest(FREE, "Baja confirmada", kind=MTKind.SYSTEM), T0)
    unknown = await outbox.queue(MTRequest("34600000009", "hola"), T0)
    async with store.transaction() as session:
        subscriber = await get_subscriber_by_msisdn(session, FREE)
        assert subscriber is not None
        await set_opted_out(session, subscriber.id, True, T0)
    async with store.transaction() as session:
        claimed = await store.claims.claim(session, "gw", T0 + timedelta(seconds=1), limit=10, lease=30)
    assert sorted(mt.id for mt in claimed.mts) == sorted([system.mt_id, unknown.mt_id])
    assert sorted(claimed.refused) == sorted((push.mt_id, "subscriber opted out") for push in pushes)


async def test_on_postgresql_a_claim_reads_its_recipients_flags_in_its_one_statement(pg_url: str) -> None:
    """The recipients' bans and opt-outs come back with the claimed rows: a claim that refuses
    nothing makes one round trip (and its transaction's BEGIN), where it made two; what it refuses it
    still refuses (the tests above)."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        store = Store.for_engine(engine)
        await with_subscribers(store)
        outbox = Outbox(settings(), sessions=store.sessions, inserts=store.mt_inserts)
        free = await outbox.queue(MTRequest(FREE, "hola"), T0)
        unknown = await outbox.queue(MTRequest("34600000009", "hola"), T0)
        sent: list[str] = []

        def log(record: object) -> None:  # the driver's statements (the pipelines' array statements)
            sent.append(record.query)  # type: ignore[attr-defined]

        def seen(conn: object, cursor: object, statement: str, *args: object) -> None:  # SQLAlchemy's
            sent.append(statement)

        async with store.transaction() as session:
            driver = (await (await session.connection()).get_raw_connection()).driver_connection
            assert driver is not None
            driver.add_query_logger(log)
            event.listen(engine.sync_engine, "before_cursor_execute", seen)
            try:
                claimed = await store.claims.claim(
                    session, "gw", T0 + timedelta(seconds=1), limit=10, lease=30
                )
            finally:
                driver.remove_query_logger(log)
                event.remove(engine.sync_engine, "before_cursor_execute", seen)
        assert sorted(mt.id for mt in claimed.mts) == sorted([free.mt_id, unknown.mt_id])
        assert claimed.refused == []
        statements = [sql for sql in sent if not sql.startswith("BEGIN")]
        assert len(statements) == 1 and "UPDATE mt_messages" in statements[0], statements
    finally:
        await engine.dispose()


async def test_queueing_announces_each_mt_and_wakes_the_daemons(store: Store) -> None:
    await with_subscribers(store)
    woken: list[bool] = []
    async with MemoryBus() as bus:
        outbox = Outbox(
            settings(),
            sessions=store.sessions,
            bus=bus,
            wake=lambda: woken.append(True),
            inserts=store.mt_inserts,
        )
        async with (
            bus.subscribe(bus.topics.all_mt_status()) as statuses,
            bus.subscribe(bus.topics.outbox_queued()) as wakeups,
        ):
            queued = await outbox.queue(MTRequest(FREE, "hola"))
            status = await statuses.get()
            wakeup = await wakeups.get()
    assert status.topic == bus.topics.mt_status(queued.mt_id)
    assert (status.payload["id"], status.payload["status"]) == (queued.mt_id, "queued")
    assert "operator_id" not in status.payload  # a desk's MT names its operator and conversation
    assert "conversation_id" not in status.payload
    assert wakeup.payload["mt_id"] == queued.mt_id and wakeup.payload["count"] == 1
    assert woken == [True]


async def test_a_batch_of_pushes_leaves_each_by_its_own_subscribers_latest_mo(store: Store) -> None:
    """The latest MOs are read for the whole batch at once: each subscriber's own, the newest (the
    higher id when two came at the same second), whatever the others wrote."""
    first, second, silent = "34600000011", "34600000012", "34600000013"
    written = [
        (first, "vodafone", "795500", "vodafone-1", T0),
        (first, "orange", "700700", "orange-1", T0 + timedelta(minutes=5)),
        (second, "orange", "700700", "orange-2", T0 + timedelta(minutes=9)),
        (second, "vodafone", "795500", "vodafone-2", T0 + timedelta(minutes=9)),
    ]
    async with store.transaction() as session:
        for msisdn, carrier, short_code, bind_name, at in written:
            key = dedup_key(carrier, msisdn, short_code, 0, uuid.uuid4().bytes)
            mo = NewMO(key, msisdn, carrier, short_code, "hola", at, country="ES", bind_name=bind_name)
            await store.mos.ingest(session, [mo], at)
    requests = [MTRequest(second, "a"), MTRequest(first, "b"), MTRequest(silent, "c"), MTRequest(first, "d")]
    async with store.transaction() as session:
        batch = await Outbox(settings(), inserts=store.mt_inserts).queue_in(
            session, requests, T0 + timedelta(hours=1)
        )
    async with store.sessions() as session:
        rows = {mt.id: mt for mt in (await session.execute(select(MTMessage))).scalars()}
    ways = [
        (rows[o.mt_id].carrier, rows[o.mt_id].source, rows[o.mt_id].bind_name)
        for o in batch.outcomes
        if isinstance(o, Queued)
    ]
    assert ways == [
        ("vodafone", "795500", "vodafone-2"),
        ("orange", "700700", "orange-1"),
        ("movistar", "997745", None),  # nobody wrote from it: the carrier of its country
        ("orange", "700700", "orange-1"),
    ]
