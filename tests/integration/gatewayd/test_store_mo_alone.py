"""A plain MO batch stored by one statement in a transaction of its own (PostgreSQL, ``MOAlone``): what
it stores and counts is what the transaction path does, in one round trip; a batch that needs more
than the statement commits nothing and says why."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from sqlalchemy import func, make_url, select, text, update
from sqlalchemy.exc import DBAPIError

from gatewayd.config import ListenAddress, MetricsConfig
from gatewayd.mo_message import dedup_key
from gatewayd.schema import upgrade
from gatewayd.store._pg import Autocommit
from gatewayd.store._pg_ingest import ingest_alone
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import ConversationStatus, MTKind
from gatewayd.store.errors import NeedsTransaction
from gatewayd.store.messages import MOMessage, MOUnconfirmed
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.mt.values import NewMT
from gatewayd.store.repo_mo import IngestedMO, NewMO
from gatewayd.store.repo_subscribers import set_bans
from gatewayd.store.rollups import SHARDS, TrafficHourly, connection_shard
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from simulator.core import Simulator
from tests.waiting import eventually

from .helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    VODAFONE,
    VODAFONE_SHORT_CODE,
    Statements,
    make_config,
    running_daemon,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
BIND = "movistar-1"


def mo(
    msisdn: str,
    smsc_id: str,
    at: datetime,
    *,
    carrier: str = "movistar",
    short_code: str = "997745",
    country: str = "ES",
    service: str = "chat",
) -> NewMO:
    return NewMO(
        dedup_key=dedup_key(carrier, msisdn, short_code, 0, smsc_id.encode()),
        msisdn=msisdn,
        carrier=carrier,
        short_code=short_code,
        text=f"hola {smsc_id}",
        received_at=at,
        country=country,
        service=service,
    )


async def client_wrote(store: Store, msisdn: str, at: datetime, *, carrier: str = "movistar") -> int:
    """A first MO of the client, stored in a transaction as ever; their subscriber id."""
    async with store.transaction() as session:
        (stored,) = await store.mos.ingest(session, [mo(msisdn, f"first {at}", at, carrier=carrier)], at)
    return stored.subscriber.id


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[Store]:
    await upgrade(pg_url)
    engine = create_engine(pg_url, pre_ping=False)
    try:
        yield Store.for_engine(engine)
    finally:
        await engine.dispose()


async def alone(
    store: Store, mos: Sequence[NewMO], now: datetime, *, held_for: Sequence[str] = (), banned: bool = False
) -> list[IngestedMO]:
    """The batch stored alone, as the MO pipeline stores it: one answer for it on one bind."""
    assert store.mos_alone is not None
    async with store.mos_alone.connection() as connection:
        (answer_id,) = await store.mos_alone.answer_ids(connection, 1)
        for new in mos:
            new.answer_id = answer_id
        return await store.mos_alone.ingest(
            connection, mos, [(answer_id, BIND, now)], now, held_for=held_for, banned_need_transaction=banned
        )


async def traffic(store: Store) -> dict[tuple[Any, ...], tuple[int, int]]:
    """The traffic rollups' MOs and new clients per key, shards summed."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(
                TrafficHourly.hour,
                TrafficHourly.service,
                TrafficHourly.short_code,
                TrafficHourly.carrier,
                TrafficHourly.country,
                func.sum(TrafficHourly.mo),
                func.sum(TrafficHourly.new_clients),
            ).group_by(
                TrafficHourly.hour,
                TrafficHourly.service,
                TrafficHourly.short_code,
                TrafficHourly.carrier,
                TrafficHourly.country,
            )
        )
        return {tuple(row[:5]): (int(row[5]), int(row[6])) for row in rows}


async def state(store: Store) -> tuple[object, ...]:
    """What a batch could change: MOs, answers, rollups, subscribers' figures, conversations."""
    async with store.sessions() as session:
        mos = await session.scalar(select(func.count()).select_from(MOMessage))
        answers = await session.scalar(select(func.count()).select_from(MOUnconfirmed))
        subscribers = (
            await session.execute(
                select(
                    Subscriber.msisdn, Subscriber.mo_count, Subscriber.carrier, Subscriber.last_seen
                ).order_by(Subscriber.msisdn)
            )
        ).all()
        conversations = (
            await session.execute(
                select(Conversation.id, Conversation.status, Conversation.last_mo_at).order_by(
                    Conversation.id
                )
            )
        ).all()
    return mos, answers, await traffic(store), subscribers, conversations


async def test_a_plain_batch_is_stored_and_counted_by_one_statement_of_its_own(pg_url: str) -> None:
    with Statements() as statements:
        await upgrade(pg_url)
        engine = create_engine(pg_url, pre_ping=False)
        store = Store.for_engine(engine)
        try:
            await client_wrote(store, "34600000001", T0 - timedelta(days=1))
            statements.sent.clear()
            later = T0 + timedelta(seconds=1)
            batch = [
                mo("34600000001", "a", T0),  # a known client
                mo("34600000002", "b", T0),  # a new one, twice (and the same MO delivered twice)
                mo("34600000002", "b", T0),
                mo("34600000002", "c", later, short_code="997746"),
            ]
            results = await alone(store, batch, later)
            sent = list(statements.sent)
            redelivered = mo("34600000002", "c", later, short_code="997746")
            again = await alone(store, [redelivered], later + timedelta(seconds=1))
            rollups = await traffic(store)
            async with store.transaction() as session:
                await store.rollup_rebuild.rebuild(session)
            rebuilt = await traffic(store)
            async with store.sessions() as session:
                subscribers = dict(
                    (await session.execute(select(Subscriber.msisdn, Subscriber.mo_count))).all()
                )
                answers = (await session.scalars(select(MOUnconfirmed.bind_name))).all()
                waiting = (
                    await session.scalars(
                        select(func.count())
                        .select_from(Conversation)
                        .where(Conversation.status == ConversationStatus.WAITING)
                    )
                ).one()
        finally:
            await engine.dispose()
    # one statement: the answer ids reserved ahead, then the batch, committed (no BEGIN, no COMMIT)
    assert [sql.split()[0] for sql in sent] == ["SELECT", "WITH"]
    assert "echat_needs_transaction" in sent[1] and "INSERT INTO traffic_hourly" in sent[1]
    assert [result.duplicate for result in results] == [False, False, True, False]
    assert results[1].subscriber.created and not results[0].subscriber.created
    assert again[0].duplicate  # its answer is unconfirmed: the SMSC delivered it again
    assert subscribers == {"34600000001": 2, "34600000002": 2}
    assert answers == [BIND, BIND]
    assert waiting == 3
    # the rollups it wrote are what the reports' rebuild makes of the stored MOs
    assert rollups == rebuilt
    # (with the known client's first MO, stored in a transaction)
    assert sum(mos for mos, _ in rollups.values()) == 4 and sum(new for _, new in rollups.values()) == 2


async def test_each_column_of_a_new_subscriber_and_conversation_is_the_batchs_own(pg_store: Store) -> None:
    """The subscriber and opening rows go to the statement as tuples, by position: every value lands in
    its column (two of the same type swapped would not be refused by PostgreSQL)."""
    first, last = T0, T0 + timedelta(seconds=3)
    opener = mo("34600000031", "a", first, carrier="vodafone", country="PT", service="tarot")
    opener.operator_pool, opener.callcentre = "seers", True
    batch = [opener, mo("34600000031", "b", last, carrier="vodafone", country="PT", service="chat")]
    now = T0 + timedelta(seconds=1)  # before the last MO: the subscriber is last seen at it
    results = await alone(pg_store, batch, now)
    async with pg_store.sessions() as session:
        subscriber = (await session.scalars(select(Subscriber))).one()
        conversation = (await session.scalars(select(Conversation))).one()
    assert results[0].subscriber.created
    assert (subscriber.msisdn, subscriber.carrier, subscriber.country) == ("34600000031", "vodafone", "PT")
    assert subscriber.client_id == results[0].subscriber.client_id and subscriber.client_id
    assert (subscriber.mo_count, subscriber.first_seen, subscriber.last_seen) == (2, now, last)
    assert (conversation.subscriber_id, conversation.short_code) == (subscriber.id, "997745")
    assert (conversation.service, conversation.operator_pool, conversation.callcentre) == (
        "tarot",
        "seers",
        True,
    )
    assert (conversation.opened_at, conversation.waiting_since, conversation.last_mo_at) == (now, first, last)


async def test_a_banned_writer_needs_the_transaction_that_answers_them(pg_store: Store) -> None:
    subscriber_id = await client_wrote(pg_store, "34600000001", T0 - timedelta(days=1))
    async with pg_store.transaction() as session:
        client_id = await session.scalar(select(Subscriber.client_id).where(Subscriber.id == subscriber_id))
        assert client_id is not None
        await set_bans(session, [client_id], reason="abuse", now=T0)
    before = await state(pg_store)
    with pytest.raises(NeedsTransaction) as declined:
        await alone(pg_store, [mo("34600000002", "x", T0), mo("34600000001", "a", T0)], T0, banned=True)
    assert declined.value.reason == "banned_writer"
    assert await state(pg_store) == before
    # without a reply to send, their MO is stored like any other
    (stored,) = await alone(pg_store, [mo("34600000001", "a", T0)], T0, banned=False)
    assert stored.mo_id is not None and stored.subscriber.banned


async def test_a_writer_with_pushes_held_needs_the_transaction_that_releases_them(pg_store: Store) -> None:
    writer = "34600000003"
    subscriber_id = await client_wrote(pg_store, writer, T0 - timedelta(days=3))
    async with pg_store.transaction() as session:
        # what quiet hours make of a push: queued, never tried, due in the morning
        push = NewMT(
            kind=MTKind.PUSH,
            carrier="movistar",
            source="997745",
            destination=writer,
            text="oferta",
            subscriber_id=subscriber_id,
            not_before=T0 + timedelta(hours=9),
        )
        await queue_mts(session, [push], T0, pg_store.mt_inserts)
    before = await state(pg_store)
    with pytest.raises(NeedsTransaction) as declined:
        await alone(pg_store, [mo(writer, "n", T0)], T0, held_for=[writer])
    assert declined.value.reason == "held_pushes"
    assert await state(pg_store) == before
    # not in their quiet hours (not asked about), or asked about with nothing held: stored
    (awake,) = await alone(pg_store, [mo(writer, "d", T0)], T0)
    (asleep,) = await alone(pg_store, [mo("34600000009", "m", T0)], T0, held_for=["34600000009"])
    assert awake.mo_id is not None and asleep.mo_id is not None and asleep.held_pushes is False


async def test_a_writer_whose_carrier_or_country_changed_needs_the_transaction_that_stores_it(
    pg_store: Store,
) -> None:
    await client_wrote(pg_store, "34600000001", T0 - timedelta(days=1))
    before = await state(pg_store)
    for ported in (mo("34600000001", "p", T0, carrier="vodafone"), mo("34600000001", "q", T0, country="GB")):
        with pytest.raises(NeedsTransaction) as declined:
            await alone(pg_store, [ported], T0)
        assert declined.value.reason == "carrier_changed"
        assert await state(pg_store) == before


_WAITING_ON_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
)


async def _blocked_on_a_lock(store: Store) -> bool:
    async with store.sessions() as session:
        waiting = await session.scalar(text(_WAITING_ON_A_LOCK))
    return bool(waiting)


async def test_a_conversation_closed_while_the_statement_waits_on_it_stores_nothing(pg_store: Store) -> None:
    (first,) = await alone(pg_store, [mo("34600000001", "a", T0)], T0)
    before = await state(pg_store)
    async with pg_store.sessions() as operator:
        await operator.execute(
            update(Conversation)
            .where(Conversation.id == first.conversation_id)
            .values(status=ConversationStatus.CLOSED)
        )
        storing = asyncio.create_task(alone(pg_store, [mo("34600000001", "b", T0)], T0))
        await eventually(lambda: _blocked_on_a_lock(pg_store), what="the statement waiting on the lock")
        await operator.commit()
    with pytest.raises(NeedsTransaction) as declined:
        await storing
    assert declined.value.reason == "closed_meanwhile"
    after = await state(pg_store)
    assert after[:4] == before[:4]  # the close is the only change
    # tried again, the MO opens the pair's next conversation
    (second,) = await alone(pg_store, [mo("34600000001", "b", T0)], T0)
    assert second.mo_id is not None and second.conversation_id != first.conversation_id


async def test_a_subscriber_created_while_the_statement_waits_on_it_stores_nothing(pg_store: Store) -> None:
    before = await state(pg_store)
    async with pg_store.sessions() as other:
        await other.execute(
            text(
                "INSERT INTO subscribers (client_id, msisdn, carrier, country, first_seen, last_seen,"
                " opted_out, banned, mo_count, mt_count) VALUES ('OTHER1', '34600000005', 'movistar', 'ES',"
                " now(), now(), false, false, 1, 0)"
            )
        )
        storing = asyncio.create_task(
            alone(pg_store, [mo("34600000005", "a", T0), mo("34600000006", "b", T0)], T0)
        )
        await eventually(lambda: _blocked_on_a_lock(pg_store), what="the statement waiting on the lock")
        await other.commit()
    with pytest.raises(NeedsTransaction) as declined:
        await storing
    assert declined.value.reason == "unresolved"
    after = await state(pg_store)
    assert after[:3] == before[:3]
    async with pg_store.sessions() as session:
        msisdns = (await session.scalars(select(Subscriber.msisdn))).all()
    assert msisdns == ["34600000005"]  # the other transaction's, alone


async def test_through_the_daemon_a_plain_mo_is_one_statement_and_a_ported_number_a_transaction(
    tmp_path: Path, pg_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, pg_url, simulator)
    config = config.model_copy(
        update={"metrics": MetricsConfig(enabled=True, listen=ListenAddress("127.0.0.1", 0))}
    )
    msisdn = "34600000007"
    with Statements() as statements:
        async with running_daemon(config) as daemon:
            store = daemon.store
            assert store is not None

            async def mos_stored(count: int) -> bool:
                async with store.sessions() as session:
                    stored = await session.scalar(select(func.count()).select_from(MOMessage))
                return stored == count

            def ingests() -> tuple[int, int]:
                """MO statements sent alone, and in a transaction."""
                sent = [sql for sql in statements.sent if sql.lstrip().startswith("WITH input AS")]
                alone = [sql for sql in sent if "echat_needs_transaction" in sql]
                return len(alone), len(sent) - len(alone)

            simulator.inject_mo(MOVISTAR, "+" + msisdn, MOVISTAR_SHORT_CODE, "hola")
            await eventually(lambda: mos_stored(1), what="the first MO stored")
            assert ingests() == (1, 0)
            # the number moved to vodafone: the statement sent alone declines, a transaction stores it
            simulator.inject_mo(VODAFONE, "+" + msisdn, VODAFONE_SHORT_CODE, "sigo aquí")
            await eventually(lambda: mos_stored(2), what="the ported number's MO stored")
            assert ingests() == (2, 1)
            async with store.sessions() as session:
                carrier = await session.scalar(select(Subscriber.carrier).where(Subscriber.msisdn == msisdn))
            rollups = await traffic(store)
            await daemon.metrics_started.wait()
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{daemon.metrics_service.port}"
            ) as client:
                metrics = (await client.get("/metrics")).text
    # the NOC sees why a batch took the longer way
    assert 'gatewayd_mo_batches_in_transaction_total{reason="carrier_changed"} 1.0' in metrics
    assert carrier == VODAFONE
    assert sorted((key[3], counts) for key, counts in rollups.items()) == [
        (MOVISTAR, (1, 1)),
        (VODAFONE, (1, 0)),
    ]


async def test_new_clients_are_counted_with_their_first_mo_into_the_connections_shard(pg_url: str) -> None:
    await upgrade(pg_url)
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, pre_ping=False)  # one connection: one shard
    store = Store.for_engine(engine)
    try:
        assert store.mos_alone is not None
        async with store.mos_alone.connection() as connection:
            shard = connection_shard(connection.info)
        later = T0 + timedelta(seconds=1)
        # two new clients whose first MOs have keys of their own (short codes), then MOs on a shared one
        batch = [
            mo("34600000021", "a", T0, short_code="997001"),
            mo("34600000022", "b", T0, short_code="997002"),
            mo("34600000021", "c", later),
            mo("34600000022", "d", later),
        ]
        await alone(store, batch, later)
        rollups = await traffic(store)
        async with store.sessions() as session:
            shards = set((await session.scalars(select(TrafficHourly.shard))).all())
        async with store.transaction() as session:
            await store.rollup_rebuild.rebuild(session)
        rebuilt = await traffic(store)
    finally:
        await engine.dispose()
    assert {key[2]: counts for key, counts in rollups.items()} == {
        "997001": (1, 1),
        "997002": (1, 1),
        "997745": (2, 0),
    }
    assert rollups == rebuilt
    assert shards == {shard} and 0 <= shard < SHARDS


async def _locked(store: Store, sql: str) -> bool:
    """Whether another transaction holds the row lock ``sql`` (a FOR UPDATE NOWAIT) asks for."""
    async with store.sessions() as session:
        try:
            await session.execute(text(sql))
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available
                return True
            raise
        return False


async def test_the_rollup_rows_are_the_statements_last_locks(pg_url: str) -> None:
    await upgrade(pg_url)
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, pre_ping=False)  # one shard
    others = create_engine(pg_url, pre_ping=False)  # the holder's and the probes' connections
    store, probes = Store.for_engine(engine), Store.for_engine(others)
    try:
        (first,) = await alone(store, [mo("34600000001", "a", T0)], T0)
        async with probes.sessions() as holder:
            # the rollup rows held: the statement waits on them, holding what it locked before
            await holder.execute(text("SELECT 1 FROM traffic_hourly FOR UPDATE"))
            storing = asyncio.create_task(alone(store, [mo("34600000001", "b", T0)], T0))
            await eventually(
                lambda: _blocked_on_a_lock(probes), what="the statement waiting on the rollup rows"
            )
            subscriber = await _locked(
                probes, f"SELECT 1 FROM subscribers WHERE id = {first.subscriber.id} FOR UPDATE NOWAIT"
            )
            conversation = await _locked(
                probes, f"SELECT 1 FROM conversations WHERE id = {first.conversation_id} FOR UPDATE NOWAIT"
            )
            await holder.rollback()
        (second,) = await storing
    finally:
        await engine.dispose()
        await others.dispose()
    assert subscriber and conversation
    assert second.mo_id is not None


async def test_rollup_rows_are_locked_in_the_tallys_order_whatever_the_collation(pg_url: str) -> None:
    """On a database whose collation sorts 'chat' before 'VIP' (ICU's en-US), a transaction writing its
    tally (code-point order: 'VIP' first) and the statement sent alone take the two rows in one order."""
    server = make_url(pg_url)  # the test server; a database of its own, with that collation
    connect = {"host": server.host, "port": server.port, "user": server.username}
    name = f"echat_t_icu_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(**connect, database="postgres")
    try:
        await admin.execute(
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
            " LOCALE 'C.UTF-8'"
        )
        url = server.set(database=name).render_as_string(hide_password=False)
        await upgrade(url)
        engine = create_engine(url, pool_size=1, max_overflow=0, pre_ping=False)
        store = Store.for_engine(engine)
        try:
            assert store.mos_alone is not None
            async with store.mos_alone.connection() as connection:
                shard = connection_shard(connection.info)
            tally = await asyncpg.connect(**connect, database=name)
            watcher = await asyncpg.connect(**connect, database=name)
            try:
                assert [
                    row[0]
                    for row in await tally.fetch(
                        "SELECT s FROM unnest($1::text[]) AS s ORDER BY 1", ["VIP", "chat"]
                    )
                ] == ["chat", "VIP"]
                upsert = (
                    "INSERT INTO traffic_hourly (hour, service, short_code, carrier, country, shard, mo, mt,"
                    " mt_delivered, mt_failed, mt_refused, opt_outs, new_clients)"
                    " VALUES ($1, $2, '997745', 'movistar', 'ES', $3, 1, 0, 0, 0, 0, 0, 0)"
                    " ON CONFLICT (hour, service, short_code, carrier, country, shard)"
                    " DO UPDATE SET mo = traffic_hourly.mo + 1"
                )
                hour = T0.replace(minute=0)
                async with tally.transaction():
                    await tally.execute(upsert, hour, "VIP", shard)
                    storing = asyncio.create_task(
                        alone(
                            store, [mo("34600000001", "a", T0), mo("34600000002", "b", T0, service="VIP")], T0
                        )
                    )
                    await eventually(
                        lambda: watcher.fetchval(_WAITING_ON_A_LOCK), what="the statement waiting on 'VIP'"
                    )
                    await tally.execute(upsert, hour, "chat", shard)  # a deadlock if it held 'chat'
                stored = await storing
            finally:
                await tally.close()
                await watcher.close()
        finally:
            await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    assert all(result.mo_id is not None for result in stored)


class _Explained:
    """The one method of ``Autocommit`` the statement functions call, on a bare asyncpg connection
    whose server sends each statement's plan back as a notice (auto_explain, JSON, with ANALYZE)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.plans: list[dict[str, Any]] = []
        connection.add_log_listener(lambda _, message: self._noted(message.message))

    def _noted(self, message: str) -> None:
        if "plan:" in message:
            self.plans.append(json.loads(message.split("plan:", 1)[1])["Plan"])

    async def rows(self, sql: str, *parameters: object) -> Sequence[Any]:
        return list(await self.connection.fetch(sql, *parameters))


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(found for child in node.get("Plans", []) for found in _nodes(child))]


async def test_the_mo_statement_reads_its_own_row_sets_once_not_once_a_row(pg_url: str) -> None:
    # A writer in their quiet hours is asked about twice: pushes held (an index probe), or an MT queued
    # after the statement's snapshot (its locked row's counter moved). The second, correlated to the
    # writer, scanned every locked row for every writer: 168 ms of a batch of 2,000 MOs at night.
    # The subscribers and conversations to create are those the probes did not find, not found again.
    await upgrade(pg_url)
    url = make_url(pg_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
    )
    try:
        explained = _Explained(connection)
        writers = [f"3460{n:07d}" for n in range(200)]

        async def ingest(tag: str, held_for: Sequence[str]) -> None:
            rows = [
                (f"{tag}{n}", msisdn, "movistar", BIND, "997745", "ES", "hola", 0, 1, False, f"{tag}{n}", T0,
                 "chat", None, b"", None, False, True)
                for n, msisdn in enumerate(writers)
            ]  # fmt: skip
            await ingest_alone(
                cast(Autocommit, explained),
                rows,
                [(msisdn, f"c{msisdn}", "movistar", "ES", 1, T0) for msisdn in writers],
                {msisdn: row[0] for msisdn, row in zip(writers, rows, strict=True)},
                [(msisdn, "997745", "chat", T0, T0, None, False) for msisdn in writers],
                [],
                T0 - timedelta(hours=1),
                T0,
                held_for,
                0,
                False,
            )

        await ingest("first ", ())  # the writers and their conversations made
        # the test database's user must be a superuser to load it: without, the test fails, never skips
        await connection.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;"
            " SET auto_explain.log_format = 'json'; SET auto_explain.log_level = 'notice';"
            " SET auto_explain.sample_rate = 1;"
            # a hash that PostgreSQL plans only when it expects it to fit would not be planned here
            " SET work_mem = '64kB'"
        )
        await ingest("night ", writers)
        await connection.execute("SET plan_cache_mode = force_generic_plan")  # as the daemon's may be
        await ingest("later ", writers)
    finally:
        await connection.close()
    plans = [plan for plan in explained.plans if "held_writers" in json.dumps(plan)]
    assert len(plans) == 2
    for plan in plans:
        nodes = _nodes(plan)
        for name in ("locked_subscribers", "known_subscribers", "known_conversations"):
            scans = [node for node in nodes if node.get("CTE Name") == name]
            assert scans, name
            assert all(node["Actual Loops"] == 1 for node in scans), name
        subplans = [node for node in nodes if node.get("Parent Relationship") == "SubPlan"]
        assert all(node["Actual Loops"] <= len(writers) for node in subplans)
        assert not [node for node in subplans if node.get("Node Type") == "CTE Scan"]
        probes = [node for node in nodes if node.get("Index Name") == "uq_subscribers_msisdn"]
        assert [node["Actual Loops"] for node in probes] == [len(writers)]  # one probe a writer
