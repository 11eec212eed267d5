"""The INSERT construct with ON CONFLICT for the session's backend (PostgreSQL or SQLite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.base import Base


def dialect_name(session: AsyncSession) -> str:
    bind = session.get_bind()
    return bind.dialect.name


def upsert_insert(session: AsyncSession, table: Table) -> Any:
    """``INSERT`` supporting ``on_conflict_do_nothing`` / ``on_conflict_do_update`` on both backends."""
    if dialect_name(session) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def table_of(model: type[Base]) -> Table:
    """The model's Core table, typed (``__table__`` is declared as a generic FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table
