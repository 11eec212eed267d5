"""The database schema's version: upgrade to head, read the revision, refuse a stale schema.

The Alembic scripts live in :mod:`gatewayd.migrations` so they ship with the installed package; their
``env.py`` builds on the store (its engine and metadata), and this module drives them from above both,
so the store never reaches up into its own migrations.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection

import gatewayd.migrations
from gatewayd.store.engine import create_engine
from gatewayd.store.errors import DatabaseAhead, DatabaseBehind
from gatewayd.store.schema_floor import read_floor

MIGRATIONS_DIR = Path(gatewayd.migrations.__file__).parent


def alembic_config() -> Config:
    """An Alembic configuration pointing at the packaged scripts (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the packaged migrations have no head revision"
    return head


async def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrates the database at ``url`` up to ``revision`` (default: the newest)."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:  # each migration commits on its own (env.py)
            await connection.run_sync(run)
            await connection.commit()
    finally:
        await engine.dispose()


async def current_revision(url: str | URL) -> str | None:
    """The database's revision, or None for a database never migrated."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


async def check_at_head(url: str | URL) -> str:
    """Returns the database's revision when this code works on it: this code's head, or a newer
    release's whose schema floor (:mod:`gatewayd.store.schema_floor`) this code knows (a rolling
    upgrade migrated the database under it, expanding only). Raises :class:`DatabaseBehind` when it
    needs migrating and :class:`DatabaseAhead` when a newer release migrated it past this code."""
    head = head_revision()

    def read(connection: Connection) -> tuple[str | None, str | None]:
        return MigrationContext.configure(connection).get_current_revision(), read_floor(connection)

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            current, floor = await connection.run_sync(read)
    finally:
        await engine.dispose()
    if current == head:
        return head
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        if floor is not None and floor in known:
            return current
        raise DatabaseAhead(current, head)
    raise DatabaseBehind(current, head)
