"""Engine and session factories for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Execution option of the engines behind `read_session_factory`: their SQLite transactions begin deferred.
READ_ONLY_OPTION = "echat_read_only"
#: Seconds a pooled PostgreSQL connection may rest before its next checkout pings it (HikariCP's
#: 500 ms bypass window): one used this recently is handed out as it is.
PING_AFTER_IDLE = 0.5
_LAST_CHECKIN = "echat.last_checkin"


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    echo: bool = False,
    pre_ping: bool = True,
    custom_plans: bool = True,
    jit: bool = True,
    timeout: float | None = None,
    application_name: str = "echat",
) -> AsyncEngine:
    """An async engine tuned for the daemon.

    SQLite: WAL, ``synchronous=NORMAL``, a busy timeout, foreign keys enforced, and every transaction
    opened with ``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout instead of failing
    when a read transaction tries to upgrade to a write. The file's directory is created if missing.
    PostgreSQL: a connection pool of ``pool_size`` + ``max_overflow``, with pre-ping unless ``pre_ping``
    is False (the daemon: a pre-ping costs every transaction three round trips, and its pipelines try a
    transaction again when the database fails it, a dead pooled connection too, which the pool then drops
    with every connection made before it). The pre-ping is skipped for a connection checked in less than
    :data:`PING_AFTER_IDLE` ago (:func:`_ping_after_idle`): under load (the API's sends) every connection
    is back within milliseconds, and two checkouts a request cost six round trips of seventeen; every
    statement planned for its parameters (``plan_cache_mode=force_custom_plan``) unless ``custom_plans``
    is False (the daemon, see below); JIT compilation off when ``jit`` is False (the daemon: PostgreSQL
    compiles a statement whose estimated cost passes ``jit_above_cost``, such as the MO ingest's for a
    batch of a thousand MOs, and the compiling took 110 ms of a statement that runs in 120 without it: a
    pipeline's statements are short and never repay it); with ``timeout``, connecting and each statement
    give up after that many seconds (the ownership service's heartbeat: a database that stops answering
    must not hang it), and the server ends a session left idle in a transaction that long: a daemon cut
    off mid-heartbeat must not keep its lease rows locked (the others could never take them). Each
    PostgreSQL session carries ``application_name`` (``pg_stat_activity``): which process of which daemon
    holds it.
    On both, an error never shows the statement's parameters: they
    hold subscribers' numbers, and errors end up in logs.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, echo=echo, hide_parameters=True)
        _configure_sqlite(engine)
        return engine
    # Custom plans for every execution by default: planning is cheap next to a large statement, while a
    # generic plan cached when a table was small (a fresh database) scans it sequentially until
    # PostgreSQL replans it. The daemon's pipelines run the same few prepared statements thousands of
    # times a second, in batches of a few rows at the windows carriers give: planning each execution
    # cost PostgreSQL about half its CPU per MO at window 10 (bench/per_bind.py). They take
    # PostgreSQL's default (``auto``: custom plans for a statement's first five executions, then the
    # generic plan if it is not dearer); a cached plan is made again whenever its tables are analysed
    # (autovacuum does so as they grow), so a plan made on a small table does not outlive its size.
    plan_cache_mode = "force_custom_plan" if custom_plans else "auto"
    engine = create_async_engine(
        parsed,
        echo=echo,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={
            "server_settings": {
                "plan_cache_mode": plan_cache_mode,
                **({} if jit else {"jit": "off"}),
                # PostgreSQL keeps 63 bytes of it
                "application_name": application_name.encode()[:63].decode(errors="ignore"),
                **_idle_limit(timeout),
            },
            **({} if timeout is None else {"timeout": timeout, "command_timeout": timeout}),
        },
    )
    if pre_ping:
        _ping_after_idle(engine)
    return engine


def _idle_limit(timeout: float | None) -> dict[str, str]:
    if timeout is None:
        return {}
    return {"idle_in_transaction_session_timeout": str(max(1, round(timeout * 1000)))}


def _ping_after_idle(engine: AsyncEngine) -> None:
    """SQLAlchemy's pre-ping (the dialect's ping: BEGIN, ';', ROLLBACK) at checkout, for a connection
    that rested in the pool over :data:`PING_AFTER_IDLE` (a new one was just made: no ping). One that
    fails is dropped and the checkout takes another (the pool's answer to ``DisconnectionError``)."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_CHECKIN] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checking_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        rested_since = record.info.get(_LAST_CHECKIN)
        if rested_since is None or time.monotonic() - rested_since <= PING_AFTER_IDLE:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError("the pooled connection failed its ping") from error


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see the "begin" hook).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (the caller frames each transaction)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for units of work that only read (the panel's pages, its session lookups).

    On SQLite their transactions begin deferred, so they never take the write lock the pipelines'
    commits need (in WAL mode a reader sees the last commit and blocks no writer); on PostgreSQL
    they are READ ONLY transactions. Write through `session_factory`: a write here fails on PostgreSQL
    and, on SQLite, may fail with "database is locked" instead of queueing for the lock.
    """
    options = {READ_ONLY_OPTION: True}
    if engine.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    return async_sessionmaker(engine.execution_options(**options), expire_on_commit=False)


def lookup_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for a unit of work that is one read statement (the API's key look-up, on every
    request). On PostgreSQL the statement runs alone, in autocommit: one round trip where a READ ONLY
    transaction costs three (BEGIN, the statement, ROLLBACK), and one statement sees one snapshot
    either way. On SQLite the readers' sessions (a deferred transaction costs no round trip)."""
    if engine.dialect.name == "postgresql":
        return async_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
    return read_session_factory(engine)
