"""One pace per campaign, whatever the number of daemons (issue 15): the token bucket that paces a
campaign's feeding (``campaigns.pace_tokens`` at ``pace_at``) lives on the campaign's row, which the
feeding locks anyway. Additive: daemons of the previous release go on pacing in their own memory.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 09:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pace_tokens", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("pace_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("pace_at")
        batch_op.drop_column("pace_tokens")
