"""Store: the PostgreSQL schema of the MO write path (migration 0003)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from gatewayd.schema import upgrade
from gatewayd.store.engine import create_engine

pytestmark = pytest.mark.integration


async def test_mo_write_path_keeps_only_the_indexes_its_readers_use(pg_url: str) -> None:
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.exec_driver_sql(
                "SELECT tablename, indexname, indexdef FROM pg_indexes"
                " WHERE tablename IN ('mo_messages', 'conversations')"
            )
            definitions = {(row.tablename, row.indexname): row.indexdef for row in rows}
            options = {
                name: await connection.scalar(
                    sa.text("SELECT reloptions FROM pg_class WHERE relname = :name"), {"name": name}
                )
                for name in ("subscribers", "conversations")
            }
    finally:
        await engine.dispose()
    assert sorted(name for table, name in definitions if table == "mo_messages") == [
        "ix_mo_messages_conversation_id",
        "ix_mo_messages_dedup_key",
        "ix_mo_messages_subscriber_id_received_at",
        "pk_mo_messages",
    ]
    assigned = definitions[("conversations", "ix_conversations_assigned_operator_id")]
    assert "WHERE (assigned_operator_id IS NOT NULL)" in assigned
    assert options == {"subscribers": ["fillfactor=80"], "conversations": ["fillfactor=80"]}
