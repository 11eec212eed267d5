"""Desk presence: when each operator's desk was last seen live.

The desk's event stream marks ``accounts.desk_seen_at`` when it opens and at every heartbeat. An
operator whose desk has not been seen within a short grace (the browser closed), whose sessions all
ended or whose account was locked takes no new conversation and gives back those they hold.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("desk_seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("desk_seen_at")
