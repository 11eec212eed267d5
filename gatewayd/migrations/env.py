"""Alembic environment: async engines, batch mode for SQLite, the store's metadata and naming convention.

Run two ways: from :mod:`gatewayd.schema`, which hands over an open connection in
``config.attributes["connection"]``; or from the ``alembic`` command line, which connects to
``GATEWAYD_DATABASE_URL`` (or the ``sqlalchemy.url`` option).
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from gatewayd.store.engine import create_engine
from gatewayd.store.models import metadata

config = context.config


def _configure(connection: Connection) -> None:
    # Each migration in a transaction of its own, which Alembic begins and commits: a migration may build
    # an index outside any (CREATE INDEX CONCURRENTLY, docs/UPGRADE.md). So the connection handed over
    # must not be in a transaction already.
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


def _run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = os.environ.get("GATEWAYD_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set GATEWAYD_DATABASE_URL to the database to migrate")
    asyncio.run(_run_from_url(url))


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported: migrate a live database")
_run()
