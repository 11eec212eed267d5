"""Panel sign-in: failed attempts counted per typed user name, not per account.

The failed-login lock lived on the account row (``failed_logins``, ``locked_until``), so a real user
name answered differently from an unknown one (user name enumeration) and five wrong passwords locked
the owner out for 15 minutes. ``login_throttles`` holds the recent failures of every name typed,
known or not; the panel derives a short, doubling delay from it. The account columns go.

On SQLite the columns are dropped with ``ALTER TABLE ... DROP COLUMN`` (SQLite 3.35+), not by
copying the table: dropping the old ``accounts`` table with foreign keys on would cascade to the
rows that refer to it (web sessions).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_login_throttles")),
    )
    with op.batch_alter_table("accounts", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None, recreate="never") as batch_op:
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.drop_table("login_throttles")
