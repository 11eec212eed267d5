"""Errors of the store, under one root; and telling the database's errors apart."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from enum import StrEnum


class StoreError(Exception):
    """Root of the store's errors."""


class ClosedMeanwhile(StoreError):
    """An MO batch found a conversation open that an operator closed before the batch could mark it
    waiting. The batch's transaction must be rolled back and tried again: the retry's statements see
    the close and put the MOs in the pair's next conversation, taking their locks in the usual order
    (moving them within the transaction would lock that conversation after the batch's subscribers,
    crosswise to other batches). A conflict (:func:`is_conflict`)."""

    def __init__(self, conversation_ids: set[int]) -> None:
        super().__init__(f"{len(conversation_ids)} conversation(s) closed while an MO batch marked them")
        self.conversation_ids = conversation_ids


class NeedsTransaction(StoreError):
    """A statement sent alone (its own transaction) found that its batch needs more than it, and
    committed nothing: the caller stores the batch in a transaction of several statements. The
    statement says so by calling ``echat_needs_transaction(reason)``, which fails it with the SQLSTATE
    :data:`NEEDS_TRANSACTION` and ``reason`` as the error's detail."""

    class Reason(StrEnum):
        #: A subscriber or conversation of the batch was created meanwhile (its snapshot cannot see it).
        UNRESOLVED = "unresolved"
        #: As :class:`ClosedMeanwhile`.
        CLOSED_MEANWHILE = "closed_meanwhile"
        #: Pushes are held for a writer in their quiet hours: the MO releases them.
        HELD_PUSHES = "held_pushes"
        #: A writer's MO names another carrier or country than the one stored: the MO stores it.
        CARRIER_CHANGED = "carrier_changed"
        #: A banned writer wrote: they are answered.
        BANNED_WRITER = "banned_writer"

    def __init__(self, reason: str) -> None:
        super().__init__(f"the batch needs a transaction: {reason}")
        self.reason = reason


#: The SQLSTATE of ``echat_needs_transaction`` (class EC is none of PostgreSQL's).
NEEDS_TRANSACTION = "EC001"


class RefusalReason(StrEnum):
    OPTED_OUT = "opted_out"
    BANNED = "banned"
    #: A billed service's price notice went out and the client has not accepted it yet.
    AWAITING_ACCEPTANCE = "awaiting_acceptance"
    #: The client's spend crossed a ``confirm`` step and they have not confirmed yet.
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    #: The client's spend reached the month's cap (or the MT would pass it).
    SPEND_CAP = "spend_cap"


class MTRefused(StoreError):
    """An MT was not queued because its destination may not receive messages."""

    def __init__(self, destination: str, reason: RefusalReason) -> None:
        self.destination = destination
        self.reason = reason
        super().__init__(f"MT to subscriber refused: {reason.value.replace('_', ' ')}")


class SchemaVersionError(StoreError):
    """The database schema is not the one this code was written for."""


class DatabaseBehind(SchemaVersionError):
    """The database needs migrating before the daemon can use it."""

    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        at = f"revision {current}" if current else "no revision (empty database)"
        super().__init__(
            f"the database schema is at {at}, this version needs {head}: run `gatewayd migrate` first"
        )


class DatabaseAhead(SchemaVersionError):
    """The database was migrated by a newer version of the software than this one."""

    def __init__(self, current: str, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"the database schema is at revision {current}, unknown to this version "
            f"(head {head}): it was migrated by a newer release; upgrade the software"
        )


#: SQLSTATE classes of a statement's data refused: 22 data exception (a value the column cannot hold,
#: U+0000 in a text), 23 integrity constraint violation.
_DATA_SQLSTATE_CLASSES = frozenset({"22", "23"})


def is_data_error(error: BaseException) -> bool:
    """True when the database refused what the statement carried: trying it again changes nothing, only
    leaving the offending row out does. False for everything else (connection lost, database busy,
    locked or down, a deadlock), which may well pass when tried again."""
    for cause in _causes(error):
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate[:2] in _DATA_SQLSTATE_CLASSES
        if isinstance(cause, sqlite3.DataError | sqlite3.IntegrityError):
            return True
    return False


#: SQLSTATEs of a transaction the database ended because it collided with another: 40001
#: serialization failure, 40P01 deadlock detected (PostgreSQL picks one of the two to end).
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})


def is_conflict(error: BaseException) -> bool:
    """True when the transaction was ended because another one collided with it at the same moment
    (a deadlock, a serialization failure, SQLite's write lock not granted in time, a conversation
    closed under an MO batch): nothing was written, and the same request made again a moment later
    will very likely pass."""
    for cause in _causes(error):
        if isinstance(cause, ClosedMeanwhile):
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate in _CONFLICT_SQLSTATES
        if isinstance(cause, sqlite3.OperationalError):
            return "database is locked" in str(cause)
    return False


def describe_error(error: BaseException) -> str:
    """What went wrong, without the statement or its values (they hold subscribers' numbers): the
    error's classes down to the driver's, and the SQLSTATE when there is one."""
    names: list[str] = []
    sqlstate: str | None = None
    for cause in _causes(error):
        name = type(cause).__name__
        if name not in names:
            names.append(name)
        code = getattr(cause, "sqlstate", None)
        if sqlstate is None and isinstance(code, str):
            sqlstate = code
    described = " <- ".join(names)
    return f"{described} (SQLSTATE {sqlstate})" if sqlstate else described


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error, then what it wraps (a DBAPI error's ``orig``, a ``raise ... from``), a few levels."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "orig", None)
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__
