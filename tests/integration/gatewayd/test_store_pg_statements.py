"""The pipelines' raw statements (``gatewayd.store._pg``) run on the driver's connection, past
SQLAlchemy's execution layer, and must behave as if they had not: inside the session's transaction
(also as its first statement), rows read by name, position or unpacking, a refusal raised as the same
SQLAlchemy exception the callers tell apart, a statement timeout still a :class:`TooSlow`, a
connection that died (busy or idle in the pool, PostgreSQL restarted under all of them) never handed
out again, and a call cancelled anywhere, its BEGIN included, leaving no connection that only seems
to commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gatewayd.store._pg import pg_execute, pg_rows
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.errors import is_data_error
from gatewayd.store.time_limits import TooSlow, time_limit
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    # no pre-ping, as the daemon's pipelines: a dead pooled connection is found by the statement
    made = create_engine(pg_url, pool_size=2, max_overflow=0, pre_ping=False)
    async with made.begin() as connection:
        await connection.execute(text("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)"))
    try:
        yield made
    finally:
        await made.dispose()


async def bodies(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.scalars(text("SELECT body FROM notes ORDER BY id"))).all())


class Undo(Exception):
    pass


async def test_a_first_statement_runs_inside_the_sessions_transaction(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    with pytest.raises(Undo):
        async with sessions() as session, session.begin():
            await pg_execute(session, "INSERT INTO notes VALUES ($1, $2)", 1, "undone")
            raise Undo
    assert await bodies(engine) == []
    async with sessions() as session, session.begin():
        await pg_execute(session, "INSERT INTO notes VALUES ($1, $2)", 1, "kept")
        # the ORM's statements and the raw ones share the transaction, both ways round
        await session.execute(text("INSERT INTO notes VALUES (2, 'orm')"))
        rows = await pg_rows(session, "SELECT count(*) AS n FROM notes")
        assert rows[0].n == 2
    assert await bodies(engine) == ["kept", "orm"]


async def test_rows_read_by_name_position_and_unpacking(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session, session.begin():
        rows = await pg_rows(
            session,
            "INSERT INTO notes VALUES (unnest($1::int[]), unnest($2::text[])) RETURNING id, body",
            [1, 2],
            ["a", "b"],
        )
    assert [(row.id, row.body) for row in rows] == [(1, "a"), (2, "b")]
    assert [row[1] for row in rows] == ["a", "b"]
    assert [tuple(row) for row in rows] == [(1, "a"), (2, "b")]
    first_id, first_body = rows[0]
    assert (first_id, first_body) == (1, "a")
    with pytest.raises(AttributeError, match="missing"):
        _ = rows[0].missing


async def test_a_refusal_is_sqlalchemys_integrity_error_and_the_connection_serves_on(
    engine: AsyncEngine,
) -> None:
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        await pg_execute(session, "INSERT INTO notes VALUES (1, 'first')")
    with pytest.raises(exc.IntegrityError) as refused:
        async with sessions() as session, session.begin():
            await pg_execute(session, "INSERT INTO notes VALUES ($1, $2)", 1, "again")
    assert getattr(refused.value.orig, "sqlstate", None) == "23505"
    assert is_data_error(refused.value) and not refused.value.connection_invalidated
    assert "again" not in str(refused.value)  # parameters never shown: they hold numbers
    # the connection, rolled back, takes the next transaction
    async with sessions() as session, session.begin():
        await pg_execute(session, "INSERT INTO notes VALUES (2, 'next')")
    assert await bodies(engine) == ["first", "next"]


async def test_a_statement_over_its_time_limit_is_too_slow(engine: AsyncEngine) -> None:
    with pytest.raises(TooSlow):
        async with session_factory(engine)() as session, session.begin():
            async with time_limit(session, 0.05, enforced=True):
                await pg_rows(session, "SELECT pg_sleep(5)")


async def test_a_connection_lost_mid_statement_is_not_handed_out_again(
    engine: AsyncEngine, pg_url: str
) -> None:
    sessions = session_factory(engine)
    async with sessions() as session:
        victim = await backend_pid(session)
    killer = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        with pytest.raises(exc.DBAPIError) as lost:
            async with sessions() as session, session.begin():
                assert await backend_pid(session) == victim  # the pool's one connection
                await killer.execute("SELECT pg_terminate_backend($1)", victim)
                await pg_rows(session, "SELECT 1")
    finally:
        await killer.close()
    assert lost.value.connection_invalidated and not is_data_error(lost.value)
    async with sessions() as session, session.begin():
        assert await backend_pid(session) != victim
        await pg_execute(session, "INSERT INTO notes VALUES (1, 'after')")
    assert await bodies(engine) == ["after"]


async def backend_pid(session: AsyncSession) -> int:
    pid = (await pg_rows(session, "SELECT pg_backend_pid() AS pid"))[0].pid
    assert isinstance(pid, int)
    return pid


async def kill(pg_url: str, pids: list[int]) -> None:
    killer = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for pid in pids:
            await killer.execute("SELECT pg_terminate_backend($1)", pid)

        async def gone() -> bool:
            query = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = any($1::int[])"
            return bool(await killer.fetchval(query, pids))

        await eventually(gone, what="the killed backends gone")
    finally:
        await killer.close()


async def test_connections_that_died_in_the_pool_fail_one_transaction_then_are_replaced(
    engine: AsyncEngine, pg_url: str
) -> None:
    """PostgreSQL restarted under an idle pool: the first raw statement (its BEGIN) finds its
    connection dead and says so; the pool drops the other one too, and the next transactions work."""
    sessions = session_factory(engine)
    async with sessions() as first, sessions() as second:
        pids = [await backend_pid(first), await backend_pid(second)]
    await kill(pg_url, pids)
    with pytest.raises(exc.DBAPIError) as lost:
        async with sessions() as session, session.begin():
            await pg_execute(session, "INSERT INTO notes VALUES ($1, $2)", 1, "lost")
    assert lost.value.connection_invalidated
    for note in (2, 3):
        async with sessions() as session, session.begin():
            assert await backend_pid(session) not in pids
            await pg_execute(session, "INSERT INTO notes VALUES ($1, $2)", note, "after")
    assert await bodies(engine) == ["after", "after"]


@pytest.mark.parametrize("turns", range(10))
async def test_a_unit_cancelled_anywhere_leaves_no_connection_that_only_seems_to_commit(
    engine: AsyncEngine, pg_url: str, turns: int
) -> None:
    """Cancelled after ``turns`` turns of the loop: in the BEGIN, in the statement or after it. Every
    later transaction on the pool commits for real (seen from another connection)."""
    sessions = session_factory(engine)

    async def unit() -> None:
        async with sessions() as session, session.begin():
            await pg_execute(session, "INSERT INTO notes VALUES ($1, $2)", 1, "cancelled")

    async with sessions() as session:  # a connection in the pool: the cancelled unit's BEGIN goes out at once
        await backend_pid(session)
    task = asyncio.create_task(unit())
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for note in (2, 3, 4):  # more than the pool holds: each connection takes one
        async with sessions() as session, session.begin():
            await pg_execute(session, "INSERT INTO notes VALUES ($1, $2)", note, "committed")
    # read apart from the pool: a connection left in a transaction would see its own rows
    reader = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        committed = await reader.fetch("SELECT id FROM notes WHERE body = 'committed' ORDER BY id")
    finally:
        await reader.close()
    assert [row["id"] for row in committed] == [2, 3, 4]


@pytest.mark.parametrize("turns", [0, 1, 2, 5, 20])
async def test_a_unit_cancelled_twice_ends_cancelled_and_commits_nothing(
    engine: AsyncEngine, pg_url: str, turns: int
) -> None:
    """Cancelled in its statement, then again ``turns`` turns later, while its connection is dropped:
    the unit ends cancelled (a retry loop must not take it for a database error and try again), its
    row is not written, and the pool serves on."""
    sessions = session_factory(engine)

    async def unit() -> None:
        async with sessions() as session, session.begin():
            await pg_execute(session, "INSERT INTO notes VALUES ($1, $2)", 1, "cancelled")
            await pg_rows(session, "SELECT pg_sleep(30)")

    watcher = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        task = asyncio.create_task(unit())

        async def sleeping() -> bool:
            query = "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
            return bool(await watcher.fetchval(query))

        await eventually(sleeping, what="the unit's statement running")
        task.cancel()
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with sessions() as session, session.begin():
            await pg_execute(session, "INSERT INTO notes VALUES ($1, $2)", 2, "after")
        assert [row["body"] for row in await watcher.fetch("SELECT body FROM notes ORDER BY id")] == ["after"]
    finally:
        await watcher.close()
