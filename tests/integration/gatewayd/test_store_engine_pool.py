"""The PostgreSQL pool (``gatewayd.store.engine``): a connection that rested in the pool is pinged at
checkout and replaced when PostgreSQL ended it; one checked in moments ago is handed out without the
ping's three round trips (the API's sends check two out per request); a look-up without a transaction
leaves its connection to the next unit of work transactional; an engine made without JIT (the
daemon's) never compiles a statement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayd.store import engine as engine_module
from gatewayd.store.engine import create_engine, lookup_session_factory, session_factory
from tests.conftest import PG_HOST, PG_PORT

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        yield made
    finally:
        await made.dispose()


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        pid = await connection.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


def count_pings(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    dialect = engine.sync_engine.dialect
    pings: list[object] = []
    ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


async def test_a_connection_back_moments_ago_is_not_pinged(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = count_pings(engine, monkeypatch)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", 3600.0)
    first = await backend_pid(engine)
    assert await backend_pid(engine) == first and pings == []
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", 0.0)  # now it has rested long enough
    assert await backend_pid(engine) == first and len(pings) == 1


async def test_a_connection_postgresql_ended_while_it_rested_is_replaced_before_use(
    engine: AsyncEngine, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = count_pings(engine, monkeypatch)
    ended = await backend_pid(engine)
    url = make_url(pg_url)
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=url.username, database="postgres")
    try:  # the timeout makes it wait until the backend is gone
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", ended)
    finally:
        await admin.close()
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", 0.0)
    assert await backend_pid(engine) != ended  # no error: the ping found it dead, the pool made another
    assert len(pings) == 1


async def test_a_lookup_without_transaction_leaves_the_next_unit_of_work_atomic(engine: AsyncEngine) -> None:
    """The key look-up runs in autocommit on a pooled connection; the send that takes the same
    connection next is one transaction again: what it wrote before failing is rolled back."""
    lookups, sessions = lookup_session_factory(engine), session_factory(engine)
    async with sessions() as session, session.begin():
        await session.execute(text("CREATE TABLE written (n integer)"))
    async with lookups() as session:
        first = await session.scalar(text("SELECT pg_backend_pid()"))
    with pytest.raises(RuntimeError):
        async with sessions() as session, session.begin():
            assert await session.scalar(text("SELECT pg_backend_pid()")) == first  # the one connection
            await session.execute(text("INSERT INTO written VALUES (1)"))
            raise RuntimeError("the send fails after its first write")
    async with lookups() as session:
        assert await session.scalar(text("SELECT count(*) FROM written")) == 0


async def test_an_engine_without_jit_never_compiles_a_statement_however_dear(pg_url: str) -> None:
    # The daemon's engine: JIT compiling the MO ingest of a thousand MOs took longer than running it.
    without = create_engine(pg_url, pool_size=1, max_overflow=0, jit=False)
    try:
        async with without.connect() as connection:
            assert await connection.scalar(text("SHOW jit")) == "off"
            await connection.execute(text("SET jit_above_cost = 0"))
            plan = await connection.scalar(
                text("EXPLAIN (ANALYZE, FORMAT JSON) SELECT sum(n) FROM generate_series(1, 1000) AS n")
            )
        assert "JIT" not in plan[0]
    finally:
        await without.dispose()
