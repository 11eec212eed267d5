"""PostgreSQL bulk execution: a whole batch as a few array parameters in one prepared statement.

Statements are plain SQL sent through the session's own connection (so they run inside the caller's
transaction) with ``$n`` parameters: SQLAlchemy compiles nothing per batch, asyncpg keeps the statement
prepared, and a batch of any size costs one round trip with a handful of parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession


async def pg_rows(session: AsyncSession, sql: str, *parameters: object) -> Sequence[Row[Any]]:
    """Runs a statement that returns rows (SELECT, or DML with RETURNING)."""
    connection = await session.connection()
    result = await connection.exec_driver_sql(sql, parameters)
    return result.all()


async def pg_execute(session: AsyncSession, sql: str, *parameters: object) -> None:
    """Runs a statement that returns no rows."""
    connection = await session.connection()
    await connection.exec_driver_sql(sql, parameters)


def aware(value: datetime) -> datetime:
    """The same check as the ``UTCDateTime`` column type: a naive datetime is a bug, not local time."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value
