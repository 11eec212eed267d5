"""Store: the hot write paths' rows refer to their parents without a foreign key check per row
(migrations 0004 and 0005) and stay indexed by those ids, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from gatewayd.schema import alembic_config, upgrade
from gatewayd.store.engine import create_engine

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


async def test_hot_path_rows_are_indexed_by_their_parents_without_a_foreign_key(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:

            def inspect(sync_connection: sa.Connection) -> dict[str, tuple[list[str], list[list[str]]]]:
                inspector = sa.inspect(sync_connection)
                found = {}
                for table in ("mt_parts", "mt_status_history", "mt_messages", "mo_messages", "conversations"):
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
    assert found["mo_messages"][0] == []
    assert ["subscriber_id", "received_at"] in found["mo_messages"][1]
    assert ["conversation_id"] in found["mo_messages"][1]
    # a conversation still refers to the operator it is assigned to
    assert found["conversations"][0] == ["accounts"]
    assert ["subscriber_id", "short_code"] in found["conversations"][1]


async def test_downgrade_restores_the_foreign_keys(database_url: str) -> None:
    await upgrade(database_url)

    def downgrade(sync_connection: sa.Connection) -> dict[str, list[str]]:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        command.downgrade(config, "0003")
        inspector = sa.inspect(sync_connection)
        return {
            table: sorted(key["referred_table"] for key in inspector.get_foreign_keys(table))
            for table in ("mt_parts", "mt_status_history", "mo_messages", "conversations")
        }

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:  # each migration commits on its own
            keys = await connection.run_sync(downgrade)
            await connection.commit()
    finally:
        await engine.dispose()
    assert keys == {
        "mt_parts": ["mt_messages"],
        "mt_status_history": ["mt_messages"],
        "mo_messages": ["conversations", "subscribers"],
        "conversations": ["accounts", "subscribers"],
    }
    await upgrade(database_url)
