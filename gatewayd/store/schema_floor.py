"""``schema_floor``: the oldest revision whose code still works on the database's schema (one row).

Written by migrations only (docs/UPGRADE.md): expand-only ones leave it, a contract one raises it. Read
by :func:`gatewayd.schema.check_at_head` when the database is at a revision this code does not know.
"""

from __future__ import annotations

from sqlalchemy import String, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store.base import Base


class SchemaFloor(Base):
    __tablename__ = "schema_floor"

    revision: Mapped[str] = mapped_column(String(32), primary_key=True)


def read_floor(connection: Connection) -> str | None:
    """The floor, or None where the database has none (migrated before 0022)."""
    if not inspect(connection).has_table(SchemaFloor.__tablename__):
        return None
    return connection.scalar(select(SchemaFloor.revision).limit(1))
