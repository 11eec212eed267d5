"""Premium-SMS terms (issue 14): ``premium_accounts`` (per client and billed service: state, the
month's spend, the price notice's dates) and ``mt_messages.charge`` (what a billed MT added to it).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 06:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "premium_accounts",
        sa.Column("subscriber_id", sa.BigInteger(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("short_code", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("month_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("steps_passed", sa.SmallInteger(), nullable=False),
        sa.Column("last_mo_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("noticed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_premium_accounts_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "service", name=op.f("pk_premium_accounts")),
    )
    with op.batch_alter_table("mt_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("charge", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mt_messages", schema=None) as batch_op:
        batch_op.drop_column("charge")
    op.drop_table("premium_accounts")
