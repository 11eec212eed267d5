"""``echat_needs_transaction(reason)`` on PostgreSQL (issue 11): the MO pipeline sends a plain batch as
one statement in its own transaction, and the statement calls this function to fail, committing
nothing, when the batch needs more than that statement (the pipeline then stores it in a transaction
of several statements, as before). Expand-only: code of earlier releases never calls it.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION echat_needs_transaction(reason text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'EC001', MESSAGE = 'the batch needs a transaction',
        DETAIL = reason;
END
$$
"""


def _on_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _on_postgresql():
        op.execute(_FUNCTION)


def downgrade() -> None:
    if _on_postgresql():
        op.execute("DROP FUNCTION IF EXISTS echat_needs_transaction(text)")
