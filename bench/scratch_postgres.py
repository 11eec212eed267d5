"""A throwaway PostgreSQL database for one benchmark run: created on 127.0.0.1, dropped afterwards.

The same server and user as the integration tests (``ECHAT_TEST_PG_*``, see tests/conftest.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]

PG_HOST = os.environ.get("ECHAT_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ECHAT_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ECHAT_TEST_PG_USER", "postgres")


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """Yields the SQLAlchemy URL of a new, empty database."""
    name = f"echat_bench_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
