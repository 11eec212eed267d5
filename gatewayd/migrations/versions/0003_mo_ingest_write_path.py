"""MO ingest write path: fewer indexes on mo_messages, free space for HOT updates of the MO counters.

Every MO insert writes an entry to each index of mo_messages. Nothing reads MOs by short code or by
time alone (the panel and the desk read them per subscriber or per conversation), so the
(short_code, received_at) and (received_at) indexes go. A first MO opens a conversation that no
operator has yet: the index by operator keeps only assigned conversations (its readers all ask for
an operator). Each MO of a known subscriber updates
``subscribers.mo_count``/``last_seen`` and its conversation's ``last_mo_at``, none of them indexed:
with room left on the page (fillfactor) PostgreSQL does those as HOT updates, with no index writes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 04:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A fifth of each page free: a subscriber's or conversation's row is rewritten at every MO.
_COUNTERS_FILLFACTOR = 80
_COUNTER_TABLES = ("subscribers", "conversations")
_ASSIGNED = sa.text("assigned_operator_id IS NOT NULL")


def _on_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("mo_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_mo_messages_short_code_received_at")
        batch_op.drop_index("ix_mo_messages_received_at")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_assigned_operator_id")
        batch_op.create_index(
            "ix_conversations_assigned_operator_id",
            ["assigned_operator_id"],
            unique=False,
            postgresql_where=_ASSIGNED,
            sqlite_where=_ASSIGNED,
        )
    if _on_postgresql():
        for table in _COUNTER_TABLES:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {_COUNTERS_FILLFACTOR})")


def downgrade() -> None:
    if _on_postgresql():
        for table in _COUNTER_TABLES:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_assigned_operator_id")
        batch_op.create_index("ix_conversations_assigned_operator_id", ["assigned_operator_id"], unique=False)
    with op.batch_alter_table("mo_messages", schema=None) as batch_op:
        batch_op.create_index("ix_mo_messages_received_at", ["received_at"], unique=False)
        batch_op.create_index(
            "ix_mo_messages_short_code_received_at", ["short_code", "received_at"], unique=False
        )
