"""Telling the database's errors apart: what it refuses to store (never worth retrying) from an outage."""

from __future__ import annotations

import sqlite3

import sqlalchemy.exc

from gatewayd.store.errors import describe_error, is_conflict, is_data_error


class DriverError(Exception):
    """An asyncpg-style error: the SQLSTATE on the exception."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def wrapped(orig: BaseException) -> sqlalchemy.exc.DBAPIError:
    """As SQLAlchemy raises it: the statement and its parameters around the driver's error."""
    return sqlalchemy.exc.DBAPIError("INSERT INTO mo_messages ...", {"msisdn": "34600111222"}, orig, False)


def test_sqlstate_classes_22_and_23_are_data_errors() -> None:
    assert is_data_error(wrapped(DriverError("22021", "invalid byte sequence for encoding UTF8: 0x00")))
    assert is_data_error(wrapped(DriverError("23514", "new row violates check constraint")))
    assert not is_data_error(wrapped(DriverError("40P01", "deadlock detected")))
    assert not is_data_error(wrapped(DriverError("57P01", "terminating connection")))


def test_sqlite_refusals_are_data_errors_and_a_locked_database_is_not() -> None:
    assert is_data_error(wrapped(sqlite3.IntegrityError("CHECK constraint failed")))
    assert is_data_error(wrapped(sqlite3.DataError("string or blob too big")))
    assert not is_data_error(wrapped(sqlite3.OperationalError("database is locked")))
    assert not is_data_error(ConnectionRefusedError(111, "refused"))


def test_a_deadlock_a_serialization_failure_and_a_busy_sqlite_are_conflicts() -> None:
    """Worth trying again a moment later (the panel answers 503 "try again"); nothing else is."""
    assert is_conflict(wrapped(DriverError("40P01", "deadlock detected")))
    assert is_conflict(wrapped(DriverError("40001", "could not serialize access")))
    assert is_conflict(wrapped(sqlite3.OperationalError("database is locked")))
    assert not is_conflict(wrapped(DriverError("23505", "duplicate key value")))
    assert not is_conflict(wrapped(sqlite3.OperationalError("no such table: accounts")))
    assert not is_conflict(ConnectionRefusedError(111, "refused"))


def test_a_cause_raised_from_counts_too() -> None:
    try:
        try:
            raise DriverError("22001", "value too long for type character varying(16)")
        except DriverError as error:
            raise RuntimeError("batch failed") from error
    except RuntimeError as outer:
        assert is_data_error(outer)


def test_the_description_names_classes_and_sqlstate_but_no_values() -> None:
    described = describe_error(wrapped(DriverError("22021", "bad value '34600111222'")))
    assert described == "DBAPIError <- DriverError (SQLSTATE 22021)"
    assert describe_error(wrapped(sqlite3.OperationalError("database is locked"))) == (
        "DBAPIError <- OperationalError"
    )
