"""The row types the MO ingest statement takes its batch in on PostgreSQL (issue 11): one array of rows
per input instead of one array per column, which the driver checks element by element in Python
(gatewayd/store/pg_types.py). Expand-only: code of earlier releases never uses them.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 23:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TYPES = {
    "echat_ingest_mo": """dedup_key varchar, msisdn varchar, carrier varchar, bind_name varchar,
    short_code varchar, country varchar, text text, data_coding smallint, parts smallint,
    incomplete boolean, smsc_message_id varchar, received_at timestamptz, service varchar,
    keyword varchar, raw bytea, answer_id bigint, check_redelivery boolean, opens_conversation boolean""",
    "echat_ingest_subscriber": """msisdn varchar, client_id varchar, carrier varchar, country varchar,
    mos integer, last_mo_at timestamptz, first_key varchar""",
    "echat_ingest_opening": """msisdn varchar, short_code varchar, service varchar, first_mo_at timestamptz,
    last_mo_at timestamptz, operator_pool varchar, callcentre boolean""",
}


def _on_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _on_postgresql():
        for name, columns in _TYPES.items():
            op.execute(f"CREATE TYPE {name} AS ({columns})")


def downgrade() -> None:
    if _on_postgresql():
        for name in _TYPES:
            op.execute(f"DROP TYPE IF EXISTS {name}")
