"""Store: the MO counters and waiting marks a batch sets on the rows it creates, and later batches
keep up to date (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gatewayd.mo_message import dedup_key
from gatewayd.store._pg_ingest import CHECK_REDELIVERY, MO_COLUMNS, insert_mos
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.repo_conversations import note_reply
from gatewayd.store.repo_mo import NewMO, open_answers
from gatewayd.store.repo_subscribers import SubscriberSeen, get_subscriber
from gatewayd.store.store import Store

pytestmark = pytest.mark.integration

T0 = datetime(2024, 7, 1, 10, 0, 0, tzinfo=UTC)


def mo(msisdn: str, smsc_id: str, at: datetime) -> NewMO:
    return NewMO(
        dedup_key=dedup_key("movistar", msisdn, "997745", 0, smsc_id.encode()),
        msisdn=msisdn,
        carrier="movistar",
        short_code="997745",
        text="HOLA",
        received_at=at,
        country="ES",
    )


async def test_first_contact_batch_counts_distinct_mos_and_waits_since_the_first(store: Store) -> None:
    batch = [
        mo("34600000001", "a", T0 + timedelta(seconds=20)),
        mo("34600000001", "b", T0),
        mo("34600000001", "a", T0 + timedelta(seconds=20)),
    ]
    async with store.transaction() as session:
        results = await store.mos.ingest(session, batch, T0 + timedelta(seconds=10))
    assert [result.duplicate for result in results] == [False, False, True]
    async with store.sessions() as session:
        subscriber = await get_subscriber(session, results[0].subscriber.id)
        assert subscriber is not None
        assert subscriber.mo_count == 2
        assert subscriber.first_seen == T0 + timedelta(seconds=10)
        assert subscriber.last_seen == T0 + timedelta(seconds=20)
        conversation = await session.get(Conversation, results[0].conversation_id)
        assert conversation is not None
        assert conversation.status is ConversationStatus.WAITING
        assert (conversation.waiting_since, conversation.last_mo_at) == (T0, T0 + timedelta(seconds=20))


async def test_later_batches_update_counters_and_wait_again_after_a_reply(store: Store) -> None:
    async with store.transaction() as session:
        first = await store.mos.ingest(session, [mo("34600000002", "a", T0)], T0)
    async with store.transaction() as session:
        await store.mos.ingest(session, [mo("34600000002", "b", T0 + timedelta(minutes=1))], T0)
    conversation_id = first[0].conversation_id
    assert conversation_id is not None
    async with store.sessions() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        assert (conversation.waiting_since, conversation.last_mo_at) == (T0, T0 + timedelta(minutes=1))
    async with store.transaction() as session:
        await note_reply(session, conversation_id, T0 + timedelta(minutes=2))
    async with store.transaction() as session:
        again = await store.mos.ingest(session, [mo("34600000002", "c", T0 + timedelta(minutes=3))], T0)
    assert again[0].conversation_id == conversation_id
    async with store.sessions() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        assert conversation.status is ConversationStatus.WAITING
        assert conversation.waiting_since == T0 + timedelta(minutes=3)
        assert conversation.last_mo_at == T0 + timedelta(minutes=3)
        subscriber = await get_subscriber(session, first[0].subscriber.id)
        assert subscriber is not None
        assert (subscriber.mo_count, subscriber.last_seen) == (3, T0 + timedelta(minutes=3))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite counts after inserting
async def test_mos_counted_on_creation_but_found_stored_are_taken_back(store: Store) -> None:
    """A subscriber created with its batch's MOs counted loses those the MO insert finds redelivered."""
    stored = mo("34600000003", "a", T0)
    async with store.transaction() as session:
        [stored.answer_id] = await open_answers(session, ["movistar-1"], T0)
        await store.mos.ingest(session, [stored], T0)
    async with store.transaction() as session:
        refs = await store.subscribers.upsert(
            session, [SubscriberSeen("34600000004", "movistar", "ES", 1, T0)], T0
        )
        newcomer = refs["34600000004"]
        assert newcomer.counted_mos == 1
        row: dict[str, object] = {name: getattr(stored, name, None) for name in MO_COLUMNS}
        row.update(subscriber_id=newcomer.id, conversation_id=None, parts=1, data_coding=0, incomplete=False)
        row[CHECK_REDELIVERY] = True
        assert await insert_mos(session, [row], T0, {newcomer.id: 1}) == ({}, set())
    async with store.sessions() as session:
        subscriber = await get_subscriber(session, newcomer.id)
        assert subscriber is not None and subscriber.mo_count == 0
