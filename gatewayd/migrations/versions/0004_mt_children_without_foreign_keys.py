"""MT write path: an MT's parts and status history carry its id without a foreign key constraint.

Each MT writes four history lines (queued, sending, accepted, final) and a row per part, always in the
transaction that inserts or locks and updates the MT itself. A foreign key made PostgreSQL check every
one of those rows against ``mt_messages`` with a row lock on the MT (FOR KEY SHARE), on a row the same
transaction had just updated: measured with ``bench/gatewayd_throughput.py`` on a 2-core machine, those
checks were more than half of the database's CPU per MT with its receipt (about 60 of 110 µs). The
rows stay indexed by ``mt_id``; MTs are never deleted by the application (they are kept as the record
of what was sent), so nothing relied on the cascade.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 07:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHILDREN = (
    ("mt_parts", "fk_mt_parts_mt_id_mt_messages"),
    ("mt_status_history", "fk_mt_status_history_mt_id_mt_messages"),
)


def upgrade() -> None:
    for table, constraint in _CHILDREN:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(constraint, type_="foreignkey")


def downgrade() -> None:
    for table, constraint in _CHILDREN:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(constraint, "mt_messages", ["mt_id"], ["id"], ondelete="CASCADE")
