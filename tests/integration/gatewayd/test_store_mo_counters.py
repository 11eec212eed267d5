"""Store: the MO counters and waiting marks a batch sets on the rows it creates, and later batches
keep up to date (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.schema import upgrade
from gatewayd.store._pg_ingest import CHECK_REDELIVERY, MO_COLUMNS, insert_mos
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.repo_conversations import note_reply
from gatewayd.store.repo_mo import NewMO, ingest_mos, mo_dedup_key, open_answers
from gatewayd.store.repo_subscribers import SubscriberSeen, get_subscriber, upsert_subscribers

pytestmark = pytest.mark.integration

T0 = datetime(2024, 7, 1, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


async def migrated_sessions(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await upgrade(url)
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async for factory in migrated_sessions(database_url):
        yield factory


@pytest.fixture
async def pg_sessions(pg_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async for factory in migrated_sessions(pg_url):
        yield factory


def mo(msisdn: str, smsc_id: str, at: datetime) -> NewMO:
    return NewMO(
        dedup_key=mo_dedup_key("movistar", msisdn, "997745", smsc_message_id=smsc_id),
        msisdn=msisdn,
        carrier="movistar",
        short_code="997745",
        text="HOLA",
        received_at=at,
        country="ES",
    )


async def test_first_contact_batch_counts_distinct_mos_and_waits_since_the_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    batch = [
        mo("34600000001", "a", T0 + timedelta(seconds=20)),
        mo("34600000001", "b", T0),
        mo("34600000001", "a", T0 + timedelta(seconds=20)),
    ]
    async with sessions.begin() as session:
        results = await ingest_mos(session, batch, T0 + timedelta(seconds=10))
    assert [result.duplicate for result in results] == [False, False, True]
    async with sessions() as session:
        subscriber = await get_subscriber(session, results[0].subscriber.id)
        assert subscriber is not None
        assert subscriber.mo_count == 2
        assert subscriber.first_seen == T0 + timedelta(seconds=10)
        assert subscriber.last_seen == T0 + timedelta(seconds=20)
        conversation = await session.get(Conversation, results[0].conversation_id)
        assert conversation is not None
        assert conversation.status is ConversationStatus.WAITING
        assert (conversation.waiting_since, conversation.last_mo_at) == (T0, T0 + timedelta(seconds=20))


async def test_later_batches_update_counters_and_wait_again_after_a_reply(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        first = await ingest_mos(session, [mo("34600000002", "a", T0)], T0)
    async with sessions.begin() as session:
        await ingest_mos(session, [mo("34600000002", "b", T0 + timedelta(minutes=1))], T0)
    conversation_id = first[0].conversation_id
    assert conversation_id is not None
    async with sessions() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        assert (conversation.waiting_since, conversation.last_mo_at) == (T0, T0 + timedelta(minutes=1))
    async with sessions.begin() as session:
        await note_reply(session, conversation_id, T0 + timedelta(minutes=2))
    async with sessions.begin() as session:
        again = await ingest_mos(session, [mo("34600000002", "c", T0 + timedelta(minutes=3))], T0)
    assert again[0].conversation_id == conversation_id
    async with sessions() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        assert conversation.status is ConversationStatus.WAITING
        assert conversation.waiting_since == T0 + timedelta(minutes=3)
        assert conversation.last_mo_at == T0 + timedelta(minutes=3)
        subscriber = await get_subscriber(session, first[0].subscriber.id)
        assert subscriber is not None
        assert (subscriber.mo_count, subscriber.last_seen) == (3, T0 + timedelta(minutes=3))


async def test_mos_counted_on_creation_but_found_stored_are_taken_back(
    pg_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A subscriber created with its batch's MOs counted loses those the MO insert finds redelivered."""
    stored = mo("34600000003", "a", T0)
    async with pg_sessions.begin() as session:
        [stored.answer_id] = await open_answers(session, ["movistar-1"], T0)
        await ingest_mos(session, [stored], T0)
    async with pg_sessions.begin() as session:
        refs = await upsert_subscribers(session, [SubscriberSeen("34600000004", "movistar", "ES", 1, T0)], T0)
        newcomer = refs["34600000004"]
        assert newcomer.counted_mos == 1
        row: dict[str, object] = {name: getattr(stored, name, None) for name in MO_COLUMNS}
        row.update(subscriber_id=newcomer.id, conversation_id=None, parts=1, data_coding=0, incomplete=False)
        row[CHECK_REDELIVERY] = True
        assert await insert_mos(session, [row], T0, {newcomer.id: 1}) == {}
    async with pg_sessions() as session:
        subscriber = await get_subscriber(session, newcomer.id)
        assert subscriber is not None and subscriber.mo_count == 0
