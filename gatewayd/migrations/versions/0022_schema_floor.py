"""The schema's floor (issue 15, rolling upgrades): ``schema_floor.revision`` is the oldest revision
whose code still works on this schema. A daemon or panel whose migrations stop short of the database's
revision starts all the same when it knows the floor (its code is at least that new); otherwise it
refuses, as before. Expand-only migrations leave the floor alone; a contract migration (docs/UPGRADE.md)
sets it to its own down revision's release. 0020 and 0021 only expanded: code at 0019 works on them.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schema_floor",
        sa.Column("revision", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_schema_floor")),
    )
    op.execute("INSERT INTO schema_floor (revision) VALUES ('0019')")


def downgrade() -> None:
    op.drop_table("schema_floor")
