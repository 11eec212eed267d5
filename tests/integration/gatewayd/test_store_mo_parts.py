"""Store: the parts of long MOs (SQLite and PostgreSQL): stored once, read back per message, and two
transactions storing a message's last parts at the same time see each other's, one after the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.schema import upgrade
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.messages import MOPart
from gatewayd.store.repo_mo import REDELIVERY_WINDOW, confirm_answers, open_answers
from gatewayd.store.repo_mo_parts import (
    NewPart,
    expired_part_sets,
    forget_assembled_parts,
    lock_part_sets,
    mark_assembled,
    oldest_waiting_part,
    store_parts,
    waiting_parts,
)

pytestmark = pytest.mark.integration

T0 = datetime(2024, 7, 1, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def part(number: int, *, message: str = "m1", at: datetime = T0, answer_id: int | None = None) -> NewPart:
    return NewPart(
        set_key=message,
        dedup_key=f"{message}-{number}",
        carrier="movistar",
        bind_name=f"movistar-{number}",
        country="ES",
        msisdn="+34600000001",
        short_code="997745",
        reference=7,
        total=3,
        part_no=number,
        data_coding=0,
        payload=f"part {number} ".encode(),
        received_at=at,
        answer_id=answer_id,
    )


async def test_a_part_is_stored_once_while_its_message_waits_or_its_answer_is_unconfirmed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        [answer] = await open_answers(session, ["movistar-1"], T0)
        assert await store_parts(session, [part(1, answer_id=answer), part(1), part(2)], T0) == [
            True,
            False,
            True,
        ]
    async with sessions.begin() as session:
        assert await store_parts(session, [part(1)], T0) == [False]  # its message still waits
        waiting = await waiting_parts(session, ["m1"])
        await mark_assembled(session, [(1, [stored.id for stored in waiting["m1"]])])
    async with sessions.begin() as session:
        # assembled: part 1's answer is unconfirmed (it is delivered again), part 2 had none in doubt
        assert await store_parts(session, [part(1), part(2)], T0) == [False, True]
        await confirm_answers(session, [answer])
    async with sessions.begin() as session:
        assert await store_parts(session, [part(1)], T0) == [True]


async def test_parts_are_read_back_per_message_in_order_and_expire(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        await store_parts(
            session,
            [part(3), part(1), part(2, message="m2", at=T0 + timedelta(seconds=30))],
            T0 + timedelta(seconds=30),
        )
    async with sessions.begin() as session:
        waiting = await waiting_parts(session, ["m1", "m2", "m3"])
        assert {key: [p.part_no for p in parts] for key, parts in waiting.items()} == {
            "m1": [1, 3],
            "m2": [2],
        }
        assert waiting["m1"][0].payload == b"part 1 " and waiting["m1"][0].msisdn == "+34600000001"
        assert await oldest_waiting_part(session) == T0
        assert await expired_part_sets(session, T0 + timedelta(seconds=10)) == ["m1"]
        await mark_assembled(session, [(9, [p.id for p in waiting["m1"]])])
        assert await oldest_waiting_part(session) == T0 + timedelta(seconds=30)
    async with sessions.begin() as session:
        assert await forget_assembled_parts(session, T0 + REDELIVERY_WINDOW) == 2
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(MOPart)) == 1


async def test_two_transactions_storing_the_last_parts_see_each_other(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Parts 2 and 3 stored at once by two binds: exactly one transaction finds the message complete."""
    async with sessions.begin() as session:
        await store_parts(session, [part(1)], T0)
    first_read = asyncio.Event()

    async def last_part(number: int, hold: bool) -> int:
        async with sessions.begin() as session:
            await lock_part_sets(session, ["m1"])
            await store_parts(session, [part(number)], T0)
            found = len((await waiting_parts(session, ["m1"]))["m1"])
            if hold:
                first_read.set()
                await asyncio.sleep(0.2)  # the other transaction is trying now: it waits for this one
            return found

    async def second() -> int:
        await first_read.wait()
        return await last_part(3, hold=False)

    seen = await asyncio.gather(last_part(2, hold=True), second())
    assert sorted(seen) == [2, 3]
