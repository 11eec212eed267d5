"""PostgreSQL MO ingest: a batch whose subscriber or conversation a concurrent batch creates meanwhile.

The batch is stored by one statement, whose snapshot cannot see a row another transaction commits while
it waits on that row's unique key; the MOs concerned are stored after it by the statements that look
such rows up again. Each test holds the first batch's transaction open until the second is blocked on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.mo_message import dedup_key
from gatewayd.schema import upgrade
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.errors import ClosedMeanwhile, is_conflict
from gatewayd.store.messages import MOMessage
from gatewayd.store.repo_mo import IngestedMO, NewMO
from gatewayd.store.rollups import TrafficHourly
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from tests.waiting import eventually

pytestmark = pytest.mark.integration

T0 = datetime(2024, 7, 1, 10, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)
T2 = T0 + timedelta(seconds=2)


def mo(msisdn: str, smsc_id: str, *, at: datetime = T0, short_code: str = "997745") -> NewMO:
    return NewMO(
        dedup_key=dedup_key("movistar", msisdn, short_code, 0, smsc_id.encode()),
        msisdn=msisdn,
        carrier="movistar",
        short_code=short_code,
        text=smsc_id,
        received_at=at,
        country="ES",
    )


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        yield Store.for_engine(engine)
    finally:
        await engine.dispose()


async def race(store: Store, first: list[NewMO], second: list[NewMO]) -> tuple[list[IngestedMO], ...]:
    """``first`` ingested and held uncommitted until ``second``'s batch waits on it, then both commit."""
    async with store.sessions() as one, store.sessions() as two, store.sessions() as observer:
        await one.begin()
        done_first = await store.mos.ingest(one, first, T0)
        await two.begin()
        other = asyncio.create_task(store.mos.ingest(two, second, T1))

        async def blocked_or_done() -> bool:
            waiting = await observer.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            await observer.rollback()
            return other.done() or bool(waiting)

        await eventually(blocked_or_done)
        await one.commit()
        done_second = await asyncio.wait_for(other, 10)
        await two.commit()
    return done_first, done_second


async def test_a_subscriber_created_meanwhile_is_found_and_counted_once(store: Store) -> None:
    first, second = await race(
        store,
        [mo("34600000001", "a")],
        [
            mo("34600000001", "b", at=T1),
            mo("34600000002", "c", at=T1),
            mo("34600000001", "d", at=T1, short_code="997746"),
        ],
    )
    [made] = first
    assert made.subscriber.created and made.mo_id is not None
    # the same subscriber and conversation, new MOs; the other subscriber as usual, in the statement
    assert [result.subscriber.id for result in second][::2] == [made.subscriber.id] * 2
    assert second[0].conversation_id == made.conversation_id
    assert second[2].conversation_id not in (None, made.conversation_id)
    assert all(result.mo_id is not None for result in second)
    assert not second[0].subscriber.created and second[1].subscriber.created
    async with store.sessions() as session:
        counts = {
            row.msisdn: row.mo_count
            for row in await session.execute(select(Subscriber.msisdn, Subscriber.mo_count))
        }
        stored = await session.scalar(select(func.count()).select_from(MOMessage))
        conversations = await session.scalar(select(func.count()).select_from(Conversation))
        waiting = await session.scalar(
            select(Conversation.last_mo_at).where(Conversation.id == made.conversation_id)
        )
        new_clients = await session.scalar(select(func.sum(TrafficHourly.new_clients)))
    assert counts == {"34600000001": 3, "34600000002": 1}
    assert stored == 4 and conversations == 3
    assert waiting == T1  # the second batch's MO marked the conversation
    assert new_clients == 2  # each subscriber made known once, by the batch that created it


async def test_a_conversation_opened_meanwhile_is_found_and_marked(store: Store) -> None:
    async with store.transaction() as session:
        [known] = await store.mos.ingest(session, [mo("34600000001", "a")], T0)
        await session.execute(
            update(Conversation)
            .where(Conversation.id == known.conversation_id)
            .values(status=ConversationStatus.CLOSED)
        )
    first, second = await race(store, [mo("34600000001", "b")], [mo("34600000001", "c", at=T1)])
    [opened] = first
    [joined] = second
    assert opened.conversation_id not in (None, known.conversation_id)
    assert joined.conversation_id == opened.conversation_id and joined.mo_id is not None
    assert joined.subscriber.id == known.subscriber.id
    async with store.sessions() as session:
        subscriber = await session.get(Subscriber, known.subscriber.id)
        conversation = await session.get(Conversation, opened.conversation_id)
    assert subscriber is not None and subscriber.mo_count == 3
    assert conversation is not None
    assert conversation.waiting_since == T0 and conversation.last_mo_at == T1


# An operator closes the conversation an MO batch found open, and the batch waits on that row to mark it
# waiting: the batch must not open the closed conversation again (the pair may have its next one), nor
# be refused. It raises ClosedMeanwhile, a conflict the MO pipeline tries again at once; the retry's
# statements see the close and put the MO in the pair's active conversation.


async def backend_pid(session: AsyncSession) -> int:
    pid = await session.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


async def wait_blocked(observer: AsyncSession, waiter: int, holder: int, task: asyncio.Task[object]) -> None:
    """Until the backend ``waiter`` waits on a lock ``holder`` holds (or ``task`` ended: its error shows)."""

    async def blocked() -> bool:
        found = await observer.scalar(
            text("SELECT CAST(:holder AS integer) = ANY(pg_blocking_pids(:waiter))"),
            {"holder": holder, "waiter": waiter},
        )
        await observer.rollback()
        return task.done() or bool(found)

    await eventually(blocked)


async def close_meanwhile(
    store: Store,
    batch: list[NewMO],
    *,
    successor: bool,
    creating: NewMO | None = None,
    later: datetime | None = None,
) -> tuple[IngestedMO, list[IngestedMO], int | None]:
    """An open conversation of ``batch[-1]``'s pair; an operator's transaction closes it (and, with
    ``successor``, a batch opens the pair's next conversation in it), uncommitted until ``batch`` waits on
    the row, then commits. With ``creating``, a batch ingesting it is held uncommitted first, so that
    ``batch`` (which must hold its new subscriber) waits on that first and is stored by the statements
    that look such rows up again. With ``later``, an MO of that time marked the conversation before the
    batch (whose MOs are older): it is up to date, and must be locked all the same. The batch's
    transaction must raise :class:`ClosedMeanwhile`; it is rolled back and the batch ingested again, as
    the MO pipeline does. Returns the first MO's outcome, the retry's, and the successor's id."""
    async with store.transaction() as session:
        [known] = await store.mos.ingest(
            session, [mo(batch[-1].msisdn, "a", short_code=batch[-1].short_code)], T0
        )
    if later is not None:
        async with store.transaction() as session:
            [marked] = await store.mos.ingest(
                session, [mo(batch[-1].msisdn, "z", at=later, short_code=batch[-1].short_code)], later
            )
        assert marked.conversation_id == known.conversation_id
    async with (
        store.sessions() as operator,
        store.sessions() as creator,
        store.sessions() as ingesting,
        store.sessions() as observer,
    ):
        await operator.begin()
        await operator.execute(
            update(Conversation)
            .where(Conversation.id == known.conversation_id)
            .values(status=ConversationStatus.CLOSED, waiting_since=None, closed_at=T0)
        )
        successor_id = None
        if successor:
            successor_id = await operator.scalar(
                insert(Conversation)
                .values(
                    subscriber_id=known.subscriber.id,
                    short_code=known.mo.short_code,
                    status=ConversationStatus.OPEN,
                    opened_at=T0,
                )
                .returning(Conversation.id)
            )
        if creating is not None:
            await creator.begin()
            await store.mos.ingest(creator, [creating], T0)
        await ingesting.begin()
        waiter = await backend_pid(ingesting)
        task: asyncio.Task[object] = asyncio.create_task(store.mos.ingest(ingesting, batch, T1))
        if creating is not None:
            await wait_blocked(observer, waiter, await backend_pid(creator), task)
            await creator.commit()
        await wait_blocked(observer, waiter, await backend_pid(operator), task)
        await operator.commit()
        with pytest.raises(ClosedMeanwhile) as raised:
            await asyncio.wait_for(task, 10)
        assert is_conflict(raised.value) and raised.value.conversation_ids == {known.conversation_id}
        await ingesting.rollback()
    # the closed conversation stays closed, the batch stored nothing
    assert (await stored_conversations(store, known.subscriber.id))[known.conversation_id or 0][0] == (
        ConversationStatus.CLOSED
    )
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(MOMessage)) == (
            1 + (creating is not None) + (later is not None)
        )
    async with store.transaction() as session:
        results = await store.mos.ingest(session, batch, T1)
    return known, results, successor_id


async def stored_conversations(
    store: Store, subscriber_id: int
) -> dict[int, tuple[ConversationStatus, datetime | None]]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(Conversation.id, Conversation.status, Conversation.last_mo_at).where(
                Conversation.subscriber_id == subscriber_id
            )
        )
        return {row.id: (row.status, row.last_mo_at) for row in rows}


async def mo_conversation(store: Store, mo_id: int | None) -> int | None:
    async with store.sessions() as session:
        return await session.scalar(select(MOMessage.conversation_id).where(MOMessage.id == mo_id))


@pytest.mark.parametrize("fallback", [False, True], ids=["one-statement", "three-statements"])
async def test_an_mo_whose_conversation_closes_meanwhile_goes_to_the_pairs_next_one(
    store: Store, fallback: bool
) -> None:
    creating = mo("34600000009", "x") if fallback else None
    batch = [mo("34600000009", "y", at=T1)] if fallback else []
    known, results, successor_id = await close_meanwhile(
        store, [*batch, mo("34600000001", "b", at=T1)], successor=True, creating=creating
    )
    moved = results[-1]
    assert moved.mo_id is not None and moved.conversation_id == successor_id
    assert await mo_conversation(store, moved.mo_id) == successor_id
    assert await stored_conversations(store, known.subscriber.id) == {
        known.conversation_id: (ConversationStatus.CLOSED, T0),  # left closed
        successor_id: (ConversationStatus.WAITING, T1),
    }
    if fallback:
        assert all(result.mo_id is not None for result in results)


@pytest.mark.parametrize("fallback", [False, True], ids=["one-statement", "three-statements"])
async def test_an_mo_whose_conversation_closes_meanwhile_opens_the_pairs_next_one(
    store: Store, fallback: bool
) -> None:
    creating = mo("34600000009", "x") if fallback else None
    batch = [mo("34600000009", "y", at=T1)] if fallback else []
    known, results, _ = await close_meanwhile(
        store, [*batch, mo("34600000001", "b", at=T1)], successor=False, creating=creating
    )
    moved = results[-1]
    assert moved.mo_id is not None and moved.conversation_id not in (None, known.conversation_id)
    assert await mo_conversation(store, moved.mo_id) == moved.conversation_id
    conversations = await stored_conversations(store, known.subscriber.id)
    assert conversations == {
        known.conversation_id: (ConversationStatus.CLOSED, T0),
        moved.conversation_id: (ConversationStatus.WAITING, T1),
    }
    async with store.sessions() as session:
        subscriber = await session.get(Subscriber, known.subscriber.id)
    assert subscriber is not None and subscriber.mo_count == 2


async def test_an_mo_older_than_its_conversations_last_one_is_not_left_in_it_once_closed(
    store: Store,
) -> None:
    """The conversation is up to date for the batch (a later MO marked it), so the batch has nothing
    to write on it; it still waits on the operator's close and does not leave its MO in a conversation
    closed before that MO was committed."""
    known, [moved], _ = await close_meanwhile(
        store, [mo("34600000001", "b", at=T1)], successor=False, later=T2
    )
    assert moved.mo_id is not None and moved.conversation_id not in (None, known.conversation_id)
    assert await stored_conversations(store, known.subscriber.id) == {
        known.conversation_id: (ConversationStatus.CLOSED, T2),
        moved.conversation_id: (ConversationStatus.WAITING, T1),
    }
