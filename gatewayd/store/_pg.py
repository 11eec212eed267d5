"""PostgreSQL bulk execution: a whole batch as a few array parameters in one prepared statement.

Statements are plain SQL with ``$n`` parameters, sent on the driver's connection under the caller's
session, inside its transaction: SQLAlchemy compiles nothing per batch, asyncpg keeps the statement
prepared, and a batch of any size costs one round trip with a handful of parameters.

They skip SQLAlchemy's execution layer (its cursor adapter, result and row objects): a session's
one-statement transaction cost the client 1,111 µs of CPU through it and 906 µs past it, against 288
µs for BEGIN, the statement and COMMIT on the bare driver (``bench/per_bind.py --phase roundtrip``,
the unit of work without pre-ping, on a machine where the MO phase at window 10 runs 1,200 MO/s);
the MO, MT and receipt pipelines run one to four such statements a batch. What that layer does for
a statement is kept: the transaction is begun as SQLAlchemy's asyncpg adapter begins it (at its
first statement), a failure comes out as the same SQLAlchemy exception with the driver's error as
``orig``, and a connection lost on the way is invalidated with the pool's older connections, as is
one whose call was cancelled, so the pool does not hand them out again.
Private members of SQLAlchemy do it (the adapter's ``_start_transaction`` and ``_handle_exception``,
the pool's ``_invalidate``): SQLAlchemy is pinned, and tests/integration/gatewayd/
test_store_pg_statements.py fails if they change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from gatewayd.store.errors import NEEDS_TRANSACTION, NeedsTransaction

log = logging.getLogger(__name__)


class PGRow(asyncpg.Record):  # type: ignore[misc]
    """A row read by column name as an attribute (``row.status``), by position, or unpacked: as
    SQLAlchemy's rows are read. The column is looked up first: a ``__getattr__`` would run only after
    the failed attribute lookup raised, three to four times slower (and slower than SQLAlchemy's row)
    on the receipts' big batches."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        try:
            return asyncpg.Record.__getitem__(self, name)
        except KeyError:
            return object.__getattribute__(self, name)


async def pg_rows(session: AsyncSession, sql: str, *parameters: object) -> Sequence[Any]:
    """Runs a statement that returns rows (SELECT, or DML with RETURNING): :class:`PGRow` each."""
    return await _run(session, sql, parameters, rows=True)


async def pg_execute(session: AsyncSession, sql: str, *parameters: object) -> None:
    """Runs a statement that returns no rows."""
    await _run(session, sql, parameters, rows=False)


async def _run(session: AsyncSession, sql: str, parameters: Sequence[object], *, rows: bool) -> Sequence[Any]:
    connection = await session.connection()
    pooled = await connection.get_raw_connection()
    adapted: Any = pooled.dbapi_connection
    began = adapted._transaction is not None
    try:
        if not began:  # SQLAlchemy's adapter begins at the first statement it runs: this may be it
            await adapted._start_transaction()
            began = True
        if rows:
            fetched: Sequence[Any] = await adapted.driver_connection.fetch(
                sql, *parameters, record_class=PGRow
            )
            return fetched
        await adapted.driver_connection.execute(sql, *parameters)
        return ()
    except BaseException as error:
        # not shielded: a second cancel must not leave the session rolling back on a connection
        # being closed meanwhile (SQLAlchemy's invalidation copes with a cancel, as in its own path)
        failure = await _failed(connection, pooled, adapted, sql, error, began)
        if failure is error:
            raise
        raise failure from error


class Autocommit:
    """A pooled connection outside any transaction: each statement is its own, committed by PostgreSQL
    when it ends (one round trip, where BEGIN, the statement and COMMIT take three), or rolled back
    whole when it fails. :meth:`Autocommits.connection` gives one.
    Whether a statement cut short (a lost connection, a cancel) committed is unknown for its whole run,
    where a transaction leaves it unknown only during its COMMIT: a caller must be ready for either, as
    for a COMMIT whose answer was lost."""

    def __init__(self, connection: AsyncConnection, pooled: Any) -> None:
        self._connection = connection
        self._pooled = pooled

    @property
    def info(self) -> dict[Any, Any]:
        """The pooled connection's own ``info`` (as ``Connection.info``: it stays with the connection)."""
        info: dict[Any, Any] = self._pooled.info
        return info

    async def rows(self, sql: str, *parameters: object) -> Sequence[Any]:
        """Runs a statement that returns rows: :class:`PGRow` each. Raises ``NeedsTransaction`` (the
        function's detail as its reason) when the statement declined to run alone, else fails as
        :func:`pg_rows` does."""
        adapted: Any = self._pooled.dbapi_connection
        try:
            fetched: Sequence[Any] = await adapted.driver_connection.fetch(
                sql, *parameters, record_class=PGRow
            )
        except BaseException as error:
            if isinstance(error, asyncpg.PostgresError) and error.sqlstate == NEEDS_TRANSACTION:
                raise NeedsTransaction(error.detail or "") from None
            # no BEGIN to have failed (``began``): the connection is dropped as the error says
            failure = await _failed(self._connection, self._pooled, adapted, sql, error, began=True)
            if failure is error:
                raise
            raise failure from error
        return fetched


class Autocommits:
    """The connections of an engine's pool, as :class:`Autocommit`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Autocommit]:
        """A pooled connection, back in the pool after the block (SQLAlchemy's reset on return sends
        nothing: no transaction was begun)."""
        async with self._engine.connect() as connection:
            yield Autocommit(connection, await connection.get_raw_connection())


async def _failed(
    connection: AsyncConnection, pooled: Any, adapted: Any, sql: str, error: BaseException, began: bool
) -> BaseException:
    """What SQLAlchemy raises for ``error``, the connection dropped where SQLAlchemy drops it:

    - cancelled or timed out mid-call (what the server holds is unknown), or a BEGIN that did not
      complete (asyncpg would take the next BEGIN for a savepoint): the connection, and ``error`` as
      it came;
    - the driver's error: its DBAPI translation, wrapped; when the connection is gone, it and every
      connection of the pool opened before it (PostgreSQL restarted: they are dead too)."""
    if isinstance(error, asyncio.CancelledError | TimeoutError) or not isinstance(error, Exception):
        try:
            await connection.invalidate(error)
        except Exception:  # the cancellation goes on: it is what the caller must see
            log.warning("a connection whose statement was cut short could not be dropped", exc_info=True)
        return error
    dbapi_error = adapted.dbapi.Error
    drop = not began
    try:
        adapted._handle_exception(error)  # raises the DBAPI translation (and forgets a dead transaction)
    except dbapi_error as translated:
        lost = bool(adapted.driver_connection.is_closed())  # the asyncpg dialect's test of a disconnect
        if lost:
            connection.sync_engine.pool._invalidate(pooled, translated)
        drop = drop or lost
        cause: BaseException = translated
        failure: BaseException = exc.DBAPIError.instance(
            sql, None, translated, dbapi_error, hide_parameters=True, connection_invalidated=drop
        )
    except Exception as other:  # not the driver's: as it came
        cause = failure = other
    else:  # pragma: no cover
        raise AssertionError("unreachable: the adapter always raises")
    if drop:
        await connection.invalidate(cause)
    return failure


def aware(value: datetime) -> datetime:
    """The same check as the ``UTCDateTime`` column type: a naive datetime is a bug, not local time."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value
