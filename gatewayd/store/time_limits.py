"""A time limit on a block's statements (PostgreSQL's ``statement_timeout``), for reads whose cost the
data decides: the panel's live audience figures, the API's lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession


class TooSlow(Exception):
    """A statement ran past the time :func:`time_limit` gave it."""


#: PostgreSQL's SQLSTATE for a statement cancelled by ``statement_timeout``.
_QUERY_CANCELED = "57014"


@asynccontextmanager
async def time_limit(session: AsyncSession, seconds: float, *, enforced: bool) -> AsyncIterator[None]:
    """The statements of the block give up after ``seconds`` each, raising :class:`TooSlow`.
    PostgreSQL only (``SET LOCAL``: to the end of the transaction); SQLite databases are small enough
    to wait for."""
    if enforced:  # Store.statement_timeouts
        await session.execute(text(f"SET LOCAL statement_timeout = {max(1, round(seconds * 1000))}"))
    try:
        yield
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == _QUERY_CANCELED:
            raise TooSlow from error
        raise
