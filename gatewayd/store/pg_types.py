"""The row types the MO ingest statement takes its batch in on PostgreSQL, created with the schema: by
migration (0025) and by ``metadata.create_all`` (tests) alike.

A batch goes as one array of rows per input (``$1::echat_ingest_mo[]``) rather than one array per
column: asyncpg checks each element of an array for being a nested array (an ``isinstance`` call on
an abstract class, in Python, two for a string), and a row of a composite type is one element where
its columns were eighteen. The parameters of a batch of 50 MOs cost 27.6 µs of the daemon's CPU per
MO to build and send as arrays, 15.1 as rows (docs/SCALING.md); and PostgreSQL reads one array into
rows where ``unnest`` over eighteen arrays took 110 µs of its own.
Migration 0025 holds the same text (a migration never changes): a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import DDL, event

from gatewayd.store.base import Base

#: {name: columns}: an MO of the batch (the columns of ``_pg_ingest.AT_ONCE_MO_COLUMNS``, in order), a
#: subscriber it names, a conversation it may open (``_pg_ingest.ingest_at_once`` says what each holds).
ROW_TYPES: dict[str, str] = {
    "echat_ingest_mo": """dedup_key varchar, msisdn varchar, carrier varchar, bind_name varchar,
    short_code varchar, country varchar, text text, data_coding smallint, parts smallint,
    incomplete boolean, smsc_message_id varchar, received_at timestamptz, service varchar,
    keyword varchar, raw bytea, answer_id bigint, check_redelivery boolean, opens_conversation boolean""",
    "echat_ingest_subscriber": """msisdn varchar, client_id varchar, carrier varchar, country varchar,
    mos integer, last_mo_at timestamptz, first_key varchar""",
    "echat_ingest_opening": """msisdn varchar, short_code varchar, service varchar, first_mo_at timestamptz,
    last_mo_at timestamptz, operator_pool varchar, callcentre boolean""",
}

# ``create_all`` runs on a database whose tables may exist already (tests): a type there is kept (made
# anew, it would have a new oid, which connections that read the old one would still send).
for _name, _columns in ROW_TYPES.items():
    event.listen(
        Base.metadata,
        "after_create",
        DDL(  # type: ignore[no-untyped-call]
            f"DO $$ BEGIN CREATE TYPE {_name} AS ({_columns});"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ).execute_if(dialect="postgresql"),
    )
