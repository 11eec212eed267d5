"""Store: the MT write path's schema (migration 0004): an MT's parts and history are found by its id
without a foreign key check per row, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from gatewayd.store.engine import create_engine
from gatewayd.store.migrate import alembic_config, upgrade

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


async def test_parts_and_history_are_indexed_by_mt_without_a_foreign_key(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            def inspect(sync_connection: sa.Connection) -> dict[str, tuple[list[str], list[list[str]]]]:
                inspector = sa.inspect(sync_connection)
                found = {}
                for table in ("mt_parts", "mt_status_history", "mt_messages"):
                    keys = [key["referred_table"] for key in inspector.get_foreign_keys(table)]
                    indexed = [index["column_names"] for index in inspector.get_indexes(table)]
                    indexed += [unique["column_names"] for unique in inspector.get_unique_constraints(table)]
                    found[table] = (keys, indexed)
                return found

            found = await connection.run_sync(inspect)
    finally:
        await engine.dispose()
    assert found["mt_parts"][0] == []
    assert ["mt_id", "part_no"] in found["mt_parts"][1]
    assert found["mt_status_history"][0] == []
    assert ["mt_id"] in found["mt_status_history"][1]
    # the MT itself still refers to its subscriber, conversation, operator and MO
    assert sorted(found["mt_messages"][0]) == ["accounts", "conversations", "mo_messages", "subscribers"]


async def test_downgrade_restores_the_foreign_keys(database_url: str) -> None:
    await upgrade(database_url)

    def downgrade(sync_connection: sa.Connection) -> dict[str, list[str]]:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        command.downgrade(config, "0003")
        inspector = sa.inspect(sync_connection)
        return {table: [key["referred_table"] for key in inspector.get_foreign_keys(table)]
                for table in ("mt_parts", "mt_status_history")}

    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            keys = await connection.run_sync(downgrade)
    finally:
        await engine.dispose()
    assert keys == {"mt_parts": ["mt_messages"], "mt_status_history": ["mt_messages"]}
    await upgrade(database_url)
