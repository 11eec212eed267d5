"""The spend of every month (issue 14): ``premium_months``, per billed service, month of its zone and
client, filled from the premium accounts (each holds its client's current month).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 07:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "premium_months",
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger(), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_premium_months_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("service", "month", "subscriber_id", name=op.f("pk_premium_months")),
    )
    # the accounts' current months: an account with no month yet ('') has spent nothing
    op.execute(
        "INSERT INTO premium_months (service, month, subscriber_id, spent) "
        "SELECT service, month, subscriber_id, spent FROM premium_accounts WHERE month <> ''"
    )


def downgrade() -> None:
    op.drop_table("premium_months")
