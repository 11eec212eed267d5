"""The claim's order as an index (issue 11): the queued MTs by priority, then due time and id, so that
a claim on PostgreSQL reads each priority's due rows from the front of its range instead of sorting
every queued row (1.5 ms a claim with 10,000 MTs queued). Built without blocking writes
(docs/UPGRADE.md). Expand-only: code of earlier releases works on it.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 20:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_mt_messages_claim_order",
            "mt_messages",
            ["priority", "next_attempt_at", "id"],
            unique=False,
            postgresql_where=_QUEUED,
            sqlite_where=_QUEUED,
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_mt_messages_claim_order",
            table_name="mt_messages",
            postgresql_concurrently=True,
            if_exists=True,
        )
