"""Store: an MO batch stored with its answers (``MOIngest.ingest_answered``), the pipeline's common path.

On PostgreSQL it takes two statements (answers, subscribers and conversations in one; the MOs, their
counters and their rollup in the other), on SQLite the statements of ``ingest``: both give the same rows.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from gatewayd.mo_message import dedup_key
from gatewayd.schema import upgrade
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine
from gatewayd.store.messages import MOMessage, MOUnconfirmed
from gatewayd.store.repo_mo import NewMO, open_answers
from gatewayd.store.repo_subscribers import get_subscriber_by_msisdn, set_bans
from gatewayd.store.rollups import TrafficHourly
from gatewayd.store.store import Store
from tests.waiting import eventually

pytestmark = pytest.mark.integration

T0 = datetime(2024, 7, 1, 10, 0, 0, tzinfo=UTC)
KNOWN, NEW, KEYWORD = "34600000001", "34600000002", "34600000003"


def mo(
    msisdn: str,
    smsc_id: str,
    *,
    at: datetime = T0,
    short_code: str = "997745",
    opens_conversation: bool = True,
) -> NewMO:
    return NewMO(
        dedup_key=dedup_key("movistar", msisdn, short_code, 0, smsc_id.encode()),
        msisdn=msisdn,
        carrier="movistar",
        short_code=short_code,
        text="HOLA",
        received_at=at,
        country="ES",
        service="chat",
        opens_conversation=opens_conversation,
    )


async def traffic(store: Store) -> dict[tuple[object, ...], tuple[int, int]]:
    """(mo, new_clients) per traffic key, the shards summed."""
    table = TrafficHourly
    key = (table.hour, table.service, table.short_code, table.carrier, table.country)
    async with store.sessions() as session:
        rows = await session.execute(
            select(*key, func.sum(table.mo), func.sum(table.new_clients)).group_by(*key)
        )
        return {tuple(row[:5]): (int(row[5]), int(row[6])) for row in rows}


@pytest.mark.parametrize("last", [True, False])
async def test_a_batch_of_new_and_known_subscribers_a_duplicate_and_a_keyword_stores_the_same_rows(
    store: Store, last: bool
) -> None:
    async with store.transaction() as session:  # a known subscriber whose first MO's answer is in doubt
        [doubtful] = await open_answers(session, ["movistar-1"], T0)
        earlier = mo(KNOWN, "k1")
        earlier.answer_id = doubtful
        await store.mos.ingest(session, [earlier], T0)
    batch = [
        mo(KNOWN, "k2", at=T0 + timedelta(seconds=1)),
        mo(KNOWN, "k1"),  # delivered again: a redelivery, now answered by this batch
        mo(NEW, "n1", at=T0 + timedelta(seconds=2)),
        mo(NEW, "n1", at=T0 + timedelta(seconds=2)),  # twice in the batch: once stored
        mo(NEW, "n2", at=T0 + timedelta(seconds=3), short_code="997746"),
        mo(KEYWORD, "b1", at=T0 + timedelta(seconds=4), opens_conversation=False),
    ]
    async with store.transaction() as session:
        answer_ids, results = await store.mos.ingest_answered(
            session,
            batch,
            T0 + timedelta(seconds=10),
            ["movistar-1", "movistar-2"],
            [0, 0, 1, 1, 0, 1],
            last=last,
        )

    assert len(set(answer_ids)) == 2 and doubtful not in answer_ids
    assert [mo.answer_id for mo in batch] == [answer_ids[index] for index in (0, 0, 1, 1, 0, 1)]
    assert [result.mo_id is not None for result in results] == [True, False, True, False, True, True]
    assert [result.subscriber.created for result in results] == [False, False, True, True, True, True]
    assert results[4].conversation_id not in (None, results[2].conversation_id)
    assert results[5].conversation_id is None
    async with store.sessions() as session:
        known = await get_subscriber_by_msisdn(session, KNOWN)
        new = await get_subscriber_by_msisdn(session, NEW)
        keyword = await get_subscriber_by_msisdn(session, KEYWORD)
        assert known is not None and new is not None and keyword is not None
        assert (known.mo_count, known.last_seen) == (2, T0 + timedelta(seconds=1))
        assert (new.mo_count, keyword.mo_count) == (2, 1)
        conversations = {
            (row.subscriber_id, row.short_code): (row.waiting_since, row.last_mo_at)
            for row in await session.scalars(select(Conversation))
        }
        assert conversations == {
            (known.id, "997745"): (T0, T0 + timedelta(seconds=1)),
            (new.id, "997745"): (T0 + timedelta(seconds=2), T0 + timedelta(seconds=2)),
            (new.id, "997746"): (T0 + timedelta(seconds=3), T0 + timedelta(seconds=3)),
        }
        # the MO delivered again is confirmed with the batch's answer that carried its redelivery
        stored = {
            row.dedup_key: (row.subscriber_id, row.answer_id)
            for row in await session.scalars(select(MOMessage))
        }
        assert stored == {
            batch[0].dedup_key: (known.id, answer_ids[0]),
            batch[1].dedup_key: (known.id, answer_ids[0]),
            batch[2].dedup_key: (new.id, answer_ids[1]),
            batch[4].dedup_key: (new.id, answer_ids[0]),
            batch[5].dedup_key: (keyword.id, answer_ids[1]),
        }
        unconfirmed = set(await session.scalars(select(MOUnconfirmed.bind_name)))
        assert (
            unconfirmed == {"movistar-1", "movistar-2"}
            and await session.scalar(select(func.count()).select_from(MOUnconfirmed)) == 3
        )
    hour = T0.replace(minute=0)
    assert await traffic(store) == {
        # the known subscriber's first MO and client, then the batch's three MOs and two new clients
        (hour, "chat", "997745", "movistar", "ES"): (4, 3),
        (hour, "chat", "997746", "movistar", "ES"): (1, 0),
    }


async def test_a_banned_subscribers_batch_is_counted_once(store: Store) -> None:
    async with store.transaction() as session:
        await store.mos.ingest(session, [mo(KNOWN, "k1")], T0)
    async with store.sessions() as session, session.begin():
        known = await get_subscriber_by_msisdn(session, KNOWN)
        assert known is not None
        await set_bans(session, [known.client_id], reason="spam", now=T0)
    async with store.transaction() as session:
        _, results = await store.mos.ingest_answered(
            session,
            [mo(KNOWN, "k2"), mo(NEW, "n1")],
            T0 + timedelta(seconds=10),
            ["movistar-1"],
            [0, 0],
            last=True,
        )
    assert [result.subscriber.banned for result in results] == [True, False]
    assert await traffic(store) == {(T0, "chat", "997745", "movistar", "ES"): (3, 2)}


async def test_a_subscriber_committed_meanwhile_is_read_again(pg_url: str) -> None:
    """A subscriber another transaction creates while the batch's statement runs is neither inserted
    (its MSISDN is taken) nor seen (committed after the statement began): looked up again."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    store = Store.for_engine(engine)
    try:

        async def batch() -> list[int | None]:
            async with store.transaction() as session:
                _, results = await store.mos.ingest_answered(
                    session, [mo(NEW, "n2", short_code="997746")], T0, ["movistar-2"], [0], last=True
                )
            return [result.mo_id for result in results]

        async def one_waits_on_a_lock() -> bool:
            async with store.sessions() as session:
                waiting = text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
                return bool((await session.execute(waiting)).scalar_one())

        async with store.transaction() as session:
            await store.mos.ingest(session, [mo(NEW, "n1")], T0)
            racing = asyncio.create_task(batch())
            await eventually(one_waits_on_a_lock, what="the batch waiting on the subscriber's MSISDN")
        [mo_id] = await racing
        assert mo_id is not None
        async with store.sessions() as session:
            new = await get_subscriber_by_msisdn(session, NEW)
            assert new is not None and new.mo_count == 2
            assert await session.scalar(select(func.count()).select_from(Conversation)) == 2
        assert await traffic(store) == {
            (T0, "chat", "997745", "movistar", "ES"): (1, 1),
            (T0, "chat", "997746", "movistar", "ES"): (1, 0),
        }
    finally:
        await engine.dispose()
