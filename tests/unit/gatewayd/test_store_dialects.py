"""The store's dialect is chosen once, when the store is made from the engine: each statement set in
the engine's dialect, and no statement asking its session which database it talks to."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gatewayd.store.mt.claims import PostgreSQLClaims, SQLiteClaims
from gatewayd.store.mt.receipts import PostgreSQLReceipts, SQLiteReceipts
from gatewayd.store.mt.results import PostgreSQLResults, SQLiteResults
from gatewayd.store.mt.status import PostgreSQLStatuses, SQLiteStatuses
from gatewayd.store.repo_conversations import PostgreSQLConversationOpening, SQLiteConversationOpening
from gatewayd.store.repo_mo import PostgreSQLMOIngest, SQLiteMOIngest
from gatewayd.store.repo_mo_parts import PostgreSQLMOPartLocks, SQLiteMOPartLocks
from gatewayd.store.repo_subscribers import PostgreSQLSubscriberUpserts, SQLiteSubscriberUpserts
from gatewayd.store.store import Store, UnsupportedDatabase

ROOT = Path(__file__).resolve().parents[3]
#: Where the dialect may be looked at: where the store and the engines are made, and the migrations
#: (Alembic runs them on one connection whose dialect they ask).
DIALECT_CHOSEN_IN = {
    ROOT / "gatewayd" / "store" / "store.py",
    ROOT / "gatewayd" / "store" / "engine.py",
}
ASKS_FOR_THE_DIALECT = re.compile(r"\.dialect\b|dialect_name|get_bind\(\)")


async def test_a_sqlite_engine_gets_the_sqlite_statement_sets() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        store = Store.for_engine(engine)
    finally:
        await engine.dispose()
    expected = (
        (store.subscribers, SQLiteSubscriberUpserts),
        (store.conversations, SQLiteConversationOpening),
        (store.mos, SQLiteMOIngest),
        (store.mo_parts, SQLiteMOPartLocks),
        (store.claims, SQLiteClaims),
        (store.results, SQLiteResults),
        (store.receipts, SQLiteReceipts),
        (store.statuses, SQLiteStatuses),
    )
    assert all(isinstance(statements, kind) for statements, kind in expected)
    assert store.concurrent_writers == 1
    assert store.sessions.kw["bind"] is engine


async def test_a_postgresql_engine_gets_the_postgresql_statement_sets() -> None:
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # never connects
    try:
        store = Store.for_engine(engine)
    finally:
        await engine.dispose()
    expected = (
        (store.subscribers, PostgreSQLSubscriberUpserts),
        (store.conversations, PostgreSQLConversationOpening),
        (store.mos, PostgreSQLMOIngest),
        (store.mo_parts, PostgreSQLMOPartLocks),
        (store.claims, PostgreSQLClaims),
        (store.results, PostgreSQLResults),
        (store.receipts, PostgreSQLReceipts),
        (store.statuses, PostgreSQLStatuses),
    )
    assert all(isinstance(statements, kind) for statements, kind in expected)
    assert store.concurrent_writers == 2


def test_another_database_is_refused_by_name() -> None:
    engine = cast(AsyncEngine, SimpleNamespace(dialect=SimpleNamespace(name="oracle")))
    with pytest.raises(UnsupportedDatabase, match="SQLite or PostgreSQL, not on oracle"):
        Store.for_engine(engine)


def test_no_statement_asks_its_session_for_the_dialect() -> None:
    """The daemon, the store, the panel and the plugins never fork on the dialect per call: the
    statement sets were chosen when the store was made."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in ("gatewayd", "panel", "plugins")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path not in DIALECT_CHOSEN_IN and "migrations" not in path.parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if ASKS_FOR_THE_DIALECT.search(line)
    ]
    assert offenders == []
