"""The parts of long MOs: stored one by one as they come, read back to assemble their message.

Each part is stored in the group commit that answers it, so an SMSC that waits for one answer before
sending the next part is answered at once. The caller locks the messages (:meth:`MOPartLocks.lock`)
before it stores parts or reads them back, so that two transactions storing the last parts of one
message at the same time (two binds, two daemons) see each other's part, one after the other: the
second finds the message complete, and assembles it once.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import among, chunks, table_of
from gatewayd.store.messages import MOPart, MOUnconfirmed
from gatewayd.store.repo_mo import REDELIVERY_WINDOW, take_answers

MO_PARTS = table_of(MOPart)
MO_UNCONFIRMED = table_of(MOUnconfirmed)


@dataclass(slots=True)
class NewPart:
    """One part to store; ``msisdn`` as E.164 digits without '+', ``answer_id`` from ``open_answers``."""

    set_key: str
    dedup_key: str
    carrier: str
    bind_name: str | None
    country: str | None
    msisdn: str
    short_code: str
    reference: int
    total: int
    part_no: int
    data_coding: int
    payload: bytes
    received_at: datetime
    answer_id: int | None = None


@dataclass(frozen=True, slots=True)
class StoredPart:
    """A part waiting for its message to be assembled."""

    id: int
    set_key: str
    carrier: str
    bind_name: str | None
    country: str | None
    msisdn: str
    short_code: str
    reference: int
    total: int
    part_no: int
    data_coding: int
    payload: bytes
    received_at: datetime


class MOPartLocks(ABC):
    """Holding the messages whose parts a transaction stores or reads back, until it ends."""

    @abstractmethod
    async def lock(self, session: AsyncSession, set_keys: Sequence[str]) -> None:
        """Holds these messages until the transaction ends. Always in the same order, so that
        transactions wanting several never wait on each other in a ring."""


class SQLiteMOPartLocks(MOPartLocks):
    async def lock(self, session: AsyncSession, set_keys: Sequence[str]) -> None:
        """Nothing to do: SQLite has one writer already (transactions begin IMMEDIATE)."""


class PostgreSQLMOPartLocks(MOPartLocks):
    """Transaction-level advisory locks, one per message, in key order."""

    async def lock(self, session: AsyncSession, set_keys: Sequence[str]) -> None:
        if not set_keys:
            return
        locks = sorted({_lock_id(key) for key in set_keys})
        connection = await session.connection()
        await connection.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k", (locks,)
        )


def _lock_id(set_key: str) -> int:
    digest = hashlib.blake2b(set_key.encode(), digest_size=8, person=b"mo-parts").digest()
    return int.from_bytes(digest, "big", signed=True)


async def store_parts(session: AsyncSession, parts: Sequence[NewPart], now: datetime) -> list[bool]:
    """Stores the parts (their messages locked by the caller) but those already here: a part of a message
    still waiting, or one whose answer is unconfirmed, delivered again. True per part stored, in order."""
    since = now - REDELIVERY_WINDOW
    known = await _redelivered(session, [part.dedup_key for part in parts], since)
    # the part delivered again is answered now by its redelivery: confirmed with it
    await take_answers(
        session,
        MO_PARTS,
        [(known[part.dedup_key], part.answer_id) for part in parts if part.dedup_key in known],
    )
    seen = set(known)
    stored: list[bool] = []
    rows: list[dict[str, object]] = []
    for part in parts:
        new = part.dedup_key not in seen
        seen.add(part.dedup_key)  # the same part twice in one batch is stored once
        stored.append(new)
        if new:
            rows.append(_row(part))
    if rows:
        await session.execute(insert(MO_PARTS), rows)
    return stored


async def _redelivered(session: AsyncSession, keys: Sequence[str], since: datetime) -> dict[str, int]:
    """{key: part id} of the parts stored already: waiting for their message, or answered unconfirmed."""
    found: dict[str, int] = {}
    unconfirmed = select(MO_UNCONFIRMED.c.id).where(MO_UNCONFIRMED.c.id == MO_PARTS.c.answer_id).exists()
    for chunk in chunks(keys):
        rows = await session.execute(
            select(MO_PARTS.c.dedup_key, MO_PARTS.c.id).where(
                among(MO_PARTS.c.dedup_key, chunk),
                MO_PARTS.c.received_at >= since,
                or_(MO_PARTS.c.mo_id.is_(None), unconfirmed),
            )
        )
        found.update({row.dedup_key: row.id for row in rows})
    return found


def _row(part: NewPart) -> dict[str, object]:
    return {
        "set_key": part.set_key,
        "dedup_key": part.dedup_key,
        "carrier": part.carrier,
        "bind_name": part.bind_name,
        "country": part.country,
        "msisdn": part.msisdn,
        "short_code": part.short_code,
        "reference": part.reference,
        "total": part.total,
        "part_no": part.part_no,
        "data_coding": part.data_coding,
        "payload": part.payload,
        "received_at": part.received_at,
        "answer_id": part.answer_id,
    }


async def waiting_parts(session: AsyncSession, set_keys: Sequence[str]) -> dict[str, list[StoredPart]]:
    """The parts not assembled yet of these messages, each message's in part order (arrival order
    within a part number)."""
    found: dict[str, list[StoredPart]] = defaultdict(list)
    ordered = sorted(set(set_keys))
    for chunk in chunks(ordered):
        rows = await session.execute(
            select(
                MO_PARTS.c.id,
                MO_PARTS.c.set_key,
                MO_PARTS.c.carrier,
                MO_PARTS.c.bind_name,
                MO_PARTS.c.country,
                MO_PARTS.c.msisdn,
                MO_PARTS.c.short_code,
                MO_PARTS.c.reference,
                MO_PARTS.c.total,
                MO_PARTS.c.part_no,
                MO_PARTS.c.data_coding,
                MO_PARTS.c.payload,
                MO_PARTS.c.received_at,
            )
            .where(among(MO_PARTS.c.set_key, chunk), MO_PARTS.c.mo_id.is_(None))
            .order_by(MO_PARTS.c.set_key, MO_PARTS.c.part_no, MO_PARTS.c.id)
        )
        for row in rows:
            found[row.set_key].append(StoredPart(**row._asdict()))
    return dict(found)


async def mark_assembled(session: AsyncSession, assembled: Sequence[tuple[int, Sequence[int]]]) -> None:
    """(mo_id, part ids): those parts now make that MO."""
    for mo_id, part_ids in assembled:
        await session.execute(update(MO_PARTS).where(among(MO_PARTS.c.id, part_ids)).values(mo_id=mo_id))


async def oldest_waiting_part(session: AsyncSession) -> datetime | None:
    """When the part waiting longest arrived (None when none waits)."""
    received_at: datetime | None = await session.scalar(
        select(func.min(MO_PARTS.c.received_at)).where(MO_PARTS.c.mo_id.is_(None))
    )
    return received_at


async def expired_part_sets(session: AsyncSession, first_before: datetime) -> list[str]:
    """The messages still waiting for parts whose first part arrived before ``first_before``."""
    rows = await session.execute(
        select(MO_PARTS.c.set_key)
        .where(MO_PARTS.c.mo_id.is_(None))
        .group_by(MO_PARTS.c.set_key)
        .having(func.min(MO_PARTS.c.received_at) < first_before)
    )
    return list(rows.scalars())


async def forget_assembled_parts(session: AsyncSession, before: datetime) -> int:
    """Drops the parts assembled into an MO that arrived before ``before`` (past the redelivery window)."""
    result = await session.execute(
        MO_PARTS.delete().where(MO_PARTS.c.mo_id.is_not(None), MO_PARTS.c.received_at < before)
    )
    return int(getattr(result, "rowcount", 0) or 0)
