"""IN lists through :func:`gatewayd.store._tables.among`: right on both dialects for any length (the
compiled statement is cached and reused with each call's values), and on PostgreSQL one prepared
statement whatever the length, where ``in_()`` made one per length."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.schema import upgrade
from gatewayd.store._tables import among, table_of
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import MTKind
from gatewayd.store.mt.queue import ANY_DATABASE
from gatewayd.store.mt.values import NewMT
from gatewayd.store.repo_mo import confirm_answers
from gatewayd.store.rollups import count_replies
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber

pytestmark = pytest.mark.integration

SUBSCRIBERS = table_of(Subscriber)
NUMBERS = [f"3460000{index:04d}" for index in range(40)]


async def add_subscribers(store: Store) -> dict[str, int]:
    now = datetime.now(UTC)
    rows = [
        {
            "client_id": f"c{index}",
            "msisdn": msisdn,
            "carrier": "movistar",
            "country": "ES",
            "first_seen": now,
            "last_seen": now,
            "opted_out": False,
            "banned": False,
            "mo_count": 0,
            "mt_count": 0,
        }
        for index, msisdn in enumerate(NUMBERS)
    ]
    async with store.transaction() as session:
        await session.execute(insert(SUBSCRIBERS), rows)
        found = await session.execute(select(SUBSCRIBERS.c.msisdn, SUBSCRIBERS.c.id))
        return {row.msisdn: row.id for row in found}


async def test_among_finds_what_in_finds_for_every_length(store: Store) -> None:
    ids = await add_subscribers(store)
    async with store.transaction() as session:
        for length in (0, 1, 2, 7, 40):
            wanted = NUMBERS[:length] + ["34999999999"]  # one unknown number
            by_number = await session.execute(
                select(SUBSCRIBERS.c.msisdn).where(among(SUBSCRIBERS.c.msisdn, wanted))
            )
            assert sorted(by_number.scalars()) == sorted(NUMBERS[:length])
            wanted_ids = [ids[number] for number in NUMBERS[-length:]] if length else []
            by_id = await session.execute(select(Subscriber.msisdn).where(among(Subscriber.id, wanted_ids)))
            assert sorted(by_id.scalars()) == (sorted(NUMBERS[-length:]) if length else [])
        # negated, and inside a larger condition
        outside = await session.execute(
            select(func.count()).where(
                ~among(SUBSCRIBERS.c.msisdn, NUMBERS[:10]), SUBSCRIBERS.c.banned.is_(False)
            )
        )
        assert outside.scalar_one() == 30
        # the table comes from the condition alone (a SELECT of a count or of a correlated subquery)
        counted = await session.execute(select(func.count()).where(among(SUBSCRIBERS.c.msisdn, NUMBERS[:5])))
        assert counted.scalar_one() == 5


async def test_on_postgresql_one_prepared_statement_serves_every_length(pg_url: str) -> None:
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        await add_subscribers(Store.for_engine(engine))
        async with engine.connect() as connection:
            for length in range(1, 31):
                wanted = among(SUBSCRIBERS.c.msisdn, NUMBERS[:length])
                found = await connection.execute(select(SUBSCRIBERS.c.id).where(wanted))
                assert len(found.all()) == length
            prepared = await connection.execute(text("SELECT statement FROM pg_prepared_statements"))
            lookups = [
                sql for (sql,) in prepared if sql.startswith("SELECT subscribers.id") and "WHERE" in sql
            ]
            assert len(lookups) == 1, lookups
    finally:
        await engine.dispose()


def reply(conversation_id: int) -> NewMT:
    return NewMT(
        MTKind.REPLY, "movistar", "997745", NUMBERS[0], "hola", conversation_id=conversation_id, operator_id=1
    )


async def test_on_postgresql_the_pipelines_look_ups_are_one_statement_whatever_the_batch(pg_url: str) -> None:
    """Each batch size once made another statement for PostgreSQL to parse, plan and keep: the pushes
    released for clients writing in their quiet hours (the statements any database runs), the answers
    confirmed (every quarter second under load)."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        ids = list((await add_subscribers(Store.for_engine(engine))).values())
        now = datetime.now(UTC)
        async with AsyncSession(engine) as session, session.begin():
            for length in range(1, 13):
                await ANY_DATABASE.release_held(session, ids[:length], now)
                await confirm_answers(session, list(range(1, length + 1)))
                # an operator's replies of a batch: the look-up of earlier replies leaves the batch out
                await count_replies(session, [reply(length)] * length, list(range(1, length + 1)), now)
            prepared = (await session.execute(text("SELECT statement FROM pg_prepared_statements"))).scalars()
            statements = [sql for sql in prepared if "mt_messages" in sql or "mo_unconfirmed" in sql]
        assert len(statements) == 3, statements
    finally:
        await engine.dispose()
