"""Session reset (manual 1.7): an admin's list of phone numbers or client IDs, read line by line, and
the reset of each client found.

Each line holds a phone number, read the way a carrier of the chosen country would mean it
(``routing.numbers``; stored as E.164 digits without '+'), or a client ID (``C`` + 8 base32
characters); in a CSV file the first cell counts. A reset closes the client's open conversations
(whoever holds them, as the desk's close does) and sets ``subscribers.session_reset_at``: the mass
push counts the client as new from then. The caller frames the transaction (and records the audit in
it), then hands out what waits: a reset may free operators' slots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.repo_assignment import close_open_of
from gatewayd.store.repo_subscribers import (
    client_id_of,
    get_subscriber_by_client_id,
    get_subscriber_by_msisdn,
)
from gatewayd.store.subscribers import Subscriber
from routing.errors import InvalidNumber
from routing.numbers import normalise_msisdn, to_international

__all__ = [
    "MAX_LINES",
    "MAX_UPLOAD_BYTES",
    "Line",
    "LineKind",
    "find_client",
    "read_lines",
    "reset_session",
]

#: At most this many lines per list, and this many bytes per uploaded file.
MAX_LINES = 10_000
MAX_UPLOAD_BYTES = 1024 * 1024

_SEPARATORS = re.compile(r"[,;\t]")
#: Characters a typed phone number may hold besides digits.
_NUMBER = re.compile(r"^\+?[0-9 .()\-/]+$")


class LineKind(StrEnum):
    CLIENT_ID = "client_id"
    NUMBER = "number"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line: ``number`` (1-based), ``text`` as written (its first cell), ``kind``, and
    the ``key`` to look the client up by (client ID or MSISDN digits) or, when invalid, ``problem``
    (English, from the number reader or :func:`read_lines`)."""

    number: int
    text: str
    kind: LineKind
    key: str = ""
    problem: str = ""


def _first_cell(raw: str) -> str:
    return _SEPARATORS.split(raw, maxsplit=1)[0].strip().strip("\"'").strip()


def read_line(number: int, raw: str, country: str | None) -> Line:
    text = _first_cell(raw)
    client_id = client_id_of(text)
    if client_id is not None:
        return Line(number, text, LineKind.CLIENT_ID, key=client_id)
    if not _NUMBER.match(text) or not any(char.isdigit() for char in text):
        return Line(number, text, LineKind.INVALID, problem="neither a phone number nor a client ID")
    try:
        digits = to_international(normalise_msisdn(text, country))
    except InvalidNumber as error:
        return Line(number, text, LineKind.INVALID, problem=error.reason)
    return Line(number, text, LineKind.NUMBER, key=digits)


def read_lines(text: str, country: str | None) -> list[Line]:
    """The non-blank lines of ``text`` (a first CSV row that holds no digit, a header, is skipped).
    ValueError when there are more than :data:`MAX_LINES`."""
    rows = [(index, raw) for index, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
    if len(rows) > MAX_LINES:
        raise ValueError(f"more than {MAX_LINES} lines")
    if rows and not any(char.isdigit() for char in rows[0][1]) and _SEPARATORS.search(rows[0][1]):
        rows = rows[1:]
    return [read_line(index, raw, country) for index, raw in rows]


async def find_client(session: AsyncSession, line: Line) -> Subscriber | None:
    """The client a valid line names, None when unknown."""
    if line.kind is LineKind.CLIENT_ID:
        return await get_subscriber_by_client_id(session, line.key)
    if line.kind is LineKind.NUMBER:
        return await get_subscriber_by_msisdn(session, line.key)
    return None


async def reset_session(session: AsyncSession, subscriber_id: int, now: datetime) -> list[int]:
    """Restarts the client's session: closes their open conversations (returns their ids) and marks
    ``session_reset_at``."""
    closed = await close_open_of(session, subscriber_id, now)
    await session.execute(
        update(Subscriber).where(Subscriber.id == subscriber_id).values(session_reset_at=now)
    )
    return closed
