"""Errors of the store, under one root."""

from __future__ import annotations

from enum import StrEnum


class StoreError(Exception):
    """Root of the store's errors."""


class RefusalReason(StrEnum):
    OPTED_OUT = "opted_out"
    BANNED = "banned"


class MTRefused(StoreError):
    """An MT was not queued because its destination may not receive messages."""

    def __init__(self, destination: str, reason: RefusalReason) -> None:
        self.destination = destination
        self.reason = reason
        super().__init__(f"MT to subscriber refused: {reason.value.replace('_', ' ')}")


class NotFound(StoreError):
    """The row the caller named does not exist."""


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
