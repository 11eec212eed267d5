"""Migrations: upgrade from empty, revision checks, and the migrated schema equals the models."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from gatewayd.schema import alembic_config, check_at_head, current_revision, head_revision, upgrade
from gatewayd.store._pg_ingest import AT_ONCE_MO_COLUMNS, AT_ONCE_OPENING_COLUMNS, AT_ONCE_SUBSCRIBER_COLUMNS
from gatewayd.store.engine import create_engine
from gatewayd.store.errors import NEEDS_TRANSACTION, DatabaseAhead, DatabaseBehind
from gatewayd.store.models import metadata
from gatewayd.store.pg_types import ROW_TYPES

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


async def test_empty_database_is_behind_until_upgraded(database_url: str) -> None:
    assert await current_revision(database_url) is None
    with pytest.raises(DatabaseBehind, match="gatewayd migrate") as caught:
        await check_at_head(database_url)
    assert caught.value.current is None
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision()
    assert await check_at_head(database_url) == head_revision()


async def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    await upgrade(database_url)
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision()


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    await upgrade(database_url)

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(differences)
    finally:
        await engine.dispose()
    assert diff == []


async def test_downgrade_to_the_initial_schema_and_back(database_url: str) -> None:
    await upgrade(database_url)

    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:  # each migration commits on its own
            await connection.run_sync(downgrade)
            await connection.commit()
    finally:
        await engine.dispose()
    assert await current_revision(database_url) == "0001"
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision()


async def test_unknown_revision_without_a_floor_means_a_newer_release(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff_future'")
            await connection.exec_driver_sql("DELETE FROM schema_floor")
    finally:
        await engine.dispose()
    with pytest.raises(DatabaseAhead, match="newer release"):
        await check_at_head(database_url)


async def test_postgresql_outbox_indexes_skip_rows_they_never_serve(pg_url: str) -> None:
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'mt_messages'"
            )
            definitions: dict[str, str] = {row.indexname: row.indexdef for row in rows}
            options = await connection.scalar(
                sa.text("SELECT reloptions FROM pg_class WHERE relname = 'mt_parts'")
            )
    finally:
        await engine.dispose()
    assert "WHERE ((status)::text = ANY" in definitions["ix_mt_messages_outbox_status_next_attempt_at"]
    for column in ("conversation_id", "operator_id", "in_reply_to_mo_id"):
        assert f"WHERE ({column} IS NOT NULL)" in definitions[f"ix_mt_messages_{column}"]
    assert "ix_mt_messages_status_next_attempt_at" not in definitions
    assert options == ["fillfactor=50"]


async def test_a_claim_order_index_left_invalid_by_a_failed_build_is_built_again(pg_url: str) -> None:
    # CREATE INDEX CONCURRENTLY that fails (cancelled, a deadlock) leaves its index invalid: never used
    # by the planner, yet there for IF NOT EXISTS. Here the failed build is a unique one over duplicates.
    await upgrade(pg_url, "0023")
    engine = create_engine(pg_url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                "INSERT INTO mt_messages (status, kind, text, segments, attempts, next_attempt_at, priority,"
                " request_receipt, carrier, source, destination, created_at, updated_at)"
                " SELECT 'queued', 'push', 'hola', 0, 0, now(), 0, true, 'movistar', '997745',"
                " '3460000000' || n, now(), now() FROM generate_series(1, 2) AS n"
            )
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            with pytest.raises(sa.exc.IntegrityError):
                await autocommit.exec_driver_sql(
                    "CREATE UNIQUE INDEX CONCURRENTLY ix_mt_messages_claim_order ON mt_messages (carrier)"
                    " WHERE status = 'queued'"
                )
        await upgrade(pg_url)
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.text(
                        "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) AS definition"
                        " FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid"
                        " WHERE c.relname = 'ix_mt_messages_claim_order'"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    assert row.indisvalid
    assert (
        "(carrier, priority, next_attempt_at, id)"
        " WHERE (((status)::text = 'queued'::text) AND (priority >= '-32768'::integer))" in row.definition
    )


async def test_the_function_a_statement_calls_to_fail_is_the_same_migrated_or_created(pg_url: str) -> None:
    """``echat_needs_transaction``: created by migration 0023 and by ``create_all`` (pg_functions.py),
    the same function either way; it fails a statement with its SQLSTATE and the reason as detail."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    definition = sa.text("SELECT pg_get_functiondef('echat_needs_transaction(text)'::regprocedure)")
    try:
        async with engine.begin() as connection:
            migrated = await connection.scalar(definition)
            await connection.exec_driver_sql("DROP FUNCTION echat_needs_transaction(text)")
            await connection.run_sync(metadata.create_all)  # the tables exist: only the function is made
            created = await connection.scalar(definition)
        async with engine.connect() as connection:
            with pytest.raises(sa.exc.DBAPIError) as raised:
                await connection.exec_driver_sql("SELECT echat_needs_transaction('why')")
    finally:
        await engine.dispose()
    assert migrated == created
    assert raised.value.orig is not None
    assert getattr(raised.value.orig, "sqlstate", None) == NEEDS_TRANSACTION
    assert getattr(raised.value.orig.__cause__, "detail", None) == "why"  # the driver's error


async def test_the_ingest_row_types_are_the_same_migrated_or_created(pg_url: str) -> None:
    """The MO ingest's row types (gatewayd/store/pg_types.py): made by migration 0025 and by
    ``create_all`` with the same columns, in order; a downgrade past 0025 drops them."""
    columns = sa.text(
        "SELECT t.typname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type"
        " FROM pg_type AS t JOIN pg_attribute AS a ON a.attrelid = t.typrelid"
        " WHERE t.typname LIKE 'echat_ingest_%' AND a.attnum > 0 ORDER BY t.typname, a.attnum"
    )
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        async with engine.begin() as connection:
            migrated = [tuple(row) for row in await connection.execute(columns)]
            for name in ROW_TYPES:
                await connection.exec_driver_sql(f"DROP TYPE {name}")
            await connection.run_sync(metadata.create_all)  # the tables exist: only the types are made
            await connection.run_sync(metadata.create_all)  # and kept when they exist
            created = [tuple(row) for row in await connection.execute(columns)]

        def downgrade(connection: Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0024")

        async with engine.connect() as connection:  # each migration commits on its own
            await connection.run_sync(downgrade)
            await connection.commit()
            left = (await connection.execute(columns)).all()
    finally:
        await engine.dispose()
    assert migrated == created
    assert {row[0] for row in migrated} == set(ROW_TYPES)
    for name, order in (
        ("echat_ingest_mo", AT_ONCE_MO_COLUMNS),
        ("echat_ingest_subscriber", AT_ONCE_SUBSCRIBER_COLUMNS),
        ("echat_ingest_opening", AT_ONCE_OPENING_COLUMNS),
    ):
        assert [row[2] for row in migrated if row[0] == name] == list(order)
    assert ("echat_ingest_mo", 12, "received_at", "timestamp with time zone") in migrated
    assert left == []


async def test_the_login_throttle_migration_keeps_accounts_and_their_sessions(database_url: str) -> None:
    # 0006 drops two account columns: on SQLite by ALTER TABLE, not by copying the table, whose old
    # copy's DROP would cascade (foreign keys are on) and delete every web session.
    engine = create_engine(database_url)
    try:
        await upgrade(database_url, "0005")
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO accounts (id, username, display_name, password_hash, role, permissions,"
                    " locked, failed_logins, language, timezone, presence, max_open_conversations,"
                    " created_at, password_changed_at) VALUES (1, 'ana', 'Ana', 'x', 'admin', '[]', false,"
                    " 4, 'es', 'Europe/Madrid', 'offline', 5, :now, :now)"
                ),
                {"now": datetime(2026, 1, 1, tzinfo=UTC)},
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO web_sessions (id, account_id, csrf_token, created_at, last_seen_at,"
                    " expires_at) VALUES ('s1', 1, 't', :now, :now, :now)"
                ),
                {"now": datetime(2026, 1, 1, tzinfo=UTC)},
            )
        await upgrade(database_url)
        async with engine.connect() as connection:
            accounts = (await connection.execute(sa.text("SELECT username FROM accounts"))).scalars().all()
            sessions = (await connection.execute(sa.text("SELECT id FROM web_sessions"))).scalars().all()
    finally:
        await engine.dispose()
    assert accounts == ["ana"] and sessions == ["s1"]


async def test_parts_stored_with_a_plus_are_rewritten_as_digits(database_url: str) -> None:
    # 0009: the daemon holds numbers as E.164 digits; a part an earlier version stored with '+' must
    # still assemble into an MO of the subscriber it names.
    engine = create_engine(database_url)
    try:
        await upgrade(database_url, "0008")
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO mo_parts (set_key, dedup_key, carrier, msisdn, short_code, reference, total,"
                    " part_no, data_coding, payload, received_at) VALUES ('s', 'd', 'movistar',"
                    " '+34600111222', '997745', 7, 2, 1, 0, :payload, :now)"
                ),
                {"payload": b"hola", "now": datetime(2026, 1, 1, tzinfo=UTC)},
            )
        await upgrade(database_url)
        async with engine.connect() as connection:
            numbers = (await connection.execute(sa.text("SELECT msisdn FROM mo_parts"))).scalars().all()
    finally:
        await engine.dispose()
    assert numbers == ["34600111222"]


async def test_the_months_migration_keeps_each_accounts_current_month(database_url: str) -> None:
    # 0019: the spend of every month; an account held its client's current month only, so that is
    # the month kept (an account not yet in a month, '', has none).
    now = datetime(2026, 11, 20, tzinfo=UTC)
    engine = create_engine(database_url)
    try:
        await upgrade(database_url, "0018")
        async with engine.begin() as connection:
            for sid in (1, 2):
                await connection.execute(
                    sa.text(
                        "INSERT INTO subscribers (id, client_id, msisdn, first_seen, last_seen, opted_out,"
                        " banned, mo_count, mt_count) VALUES (:id, :client, :msisdn, :now, :now, false,"
                        " false, 0, 0)"
                    ),
                    {"id": sid, "client": f"CMONTHS0{sid}", "msisdn": f"3460000000{sid}", "now": now},
                )
            for sid, service, month, spent in (
                (1, "chat", "2026-11", 1250),
                (1, "club", "2026-10", 300),
                (2, "chat", "", 0),
            ):
                await connection.execute(
                    sa.text(
                        "INSERT INTO premium_accounts (subscriber_id, service, short_code, state, month,"
                        " spent, steps_passed, updated_at) VALUES (:sid, :service, '795500', 'normal',"
                        " :month, :spent, 0, :now)"
                    ),
                    {"sid": sid, "service": service, "month": month, "spent": spent, "now": now},
                )
        await upgrade(database_url)
        async with engine.connect() as connection:
            months = (
                await connection.execute(
                    sa.text(
                        "SELECT service, month, subscriber_id, spent FROM premium_months"
                        " ORDER BY service, month, subscriber_id"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in months] == [("chat", "2026-11", 1, 1250), ("club", "2026-10", 1, 300)]


async def test_a_newer_revision_above_a_floor_this_code_knows_is_worked_on(database_url: str) -> None:
    # a rolling upgrade: the next release migrated (expanding only) while this one's daemons run
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff_future'")
    finally:
        await engine.dispose()
    assert await check_at_head(database_url) == "ffff_future"
    # once a contract migration raised the floor past this code, it refuses
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("UPDATE schema_floor SET revision = 'fffe_future'")
    finally:
        await engine.dispose()
    with pytest.raises(DatabaseAhead, match="newer release"):
        await check_at_head(database_url)
