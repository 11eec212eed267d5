"""Per-service settings switched at run time: the call-centre diversion (issue 12).

``service_settings`` holds a row per service an admin switched; a service without one keeps the
configuration's ``[[services]] callcentre`` (``gatewayd.diversion``).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 00:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_settings",
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("callcentre_diverted", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by_id", sa.Integer(), nullable=True),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("service", name=op.f("pk_service_settings")),
    )


def downgrade() -> None:
    op.drop_table("service_settings")
