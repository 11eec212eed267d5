"""Server settings the pipelines depend on, read when a daemon starts: a setting that will hurt the
service within hours (not at once) is logged as a warning, with what to do.

PostgreSQL with ``autovacuum = off``: every MT changes status four times, each a new row version, so
``mt_messages`` and its outbox index fill with dead versions that nothing removes; the MT claims and the
receipts' look-ups slow from a millisecond to seconds within an hour at a few hundred MTs a second
(bench/soak.py on a server with autovacuum off: 2.3 million dead versions after 45 minutes). SQLite
has no such setting.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class ServerSettings:
    """SQLite: nothing to check."""

    async def unsafe(self, session: AsyncSession) -> dict[str, str]:
        """Each setting that will hurt the service, with its value."""
        return {}


class PostgreSQLServerSettings(ServerSettings):
    async def unsafe(self, session: AsyncSession) -> dict[str, str]:
        autovacuum = (await session.execute(text("SHOW autovacuum"))).scalar_one()
        return {} if autovacuum == "on" else {"autovacuum": str(autovacuum)}
