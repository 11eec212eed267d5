"""An MT's status and its history: the status its parts imply (derived, then moved in one update per
MT, each move written to ``mt_status_history``), and the reads of it (the outbox's depth, one MT's
status).

:class:`Statuses` is the statement set the other lifecycles call to move MTs on from their parts; the
SQLite and PostgreSQL implementations differ in how they read and move a batch, not in the rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import among, table_of
from gatewayd.store.enums import MTStatus, PartStatus
from gatewayd.store.messages import MTMessage, MTPart, MTStatusHistory
from gatewayd.store.mt import _pg as pg
from gatewayd.store.mt.values import (
    MT_STATUS_BY_VALUE,
    PART_STATUS_BY_VALUE,
    MTStatusChange,
    derive_mt_status,
)
from gatewayd.store.premium import credit_finals
from gatewayd.store.rollups import count_final_rows, count_finals

MT_MESSAGES = table_of(MTMessage)
MT_PARTS = table_of(MTPart)
HISTORY = table_of(MTStatusHistory)

#: (id, status as stored, segments) of an MT to derive.
MTRow = tuple[int, str, int]


@dataclass(frozen=True, slots=True)
class MTState:
    """An MT's status as the store holds it, and why it got there (the last error, if any)."""

    mt_id: int
    status: MTStatus
    detail: str | None


async def insert_history(
    session: AsyncSession, entries: Sequence[tuple[int, MTStatus, datetime, str | None]]
) -> None:
    """One ``mt_status_history`` line per (mt_id, status, at, detail)."""
    if entries:
        rows = [
            {"mt_id": mt_id, "status": status, "at": at, "detail": detail}
            for mt_id, status, at, detail in entries
        ]
        await session.execute(HISTORY.insert(), rows)


def derived_changes(
    mts: Iterable[MTRow],
    states: Mapping[int, list[PartStatus]],
    errors: Mapping[int, int],
    now: datetime,
) -> tuple[list[MTStatusChange], list[tuple[int, MTStatus, MTStatus]]]:
    """The changes each (id, status, segments) MT's part states call for, and per MT the one row
    update they make (id, from, to). An MT still in ``sending`` whose every part the SMSC accepted
    and that is already final (its receipts came with the submit results) goes through ``accepted``
    first, so its history shows both steps."""
    changes: list[MTStatusChange] = []
    moves: list[tuple[int, MTStatus, MTStatus]] = []
    for mt_id, status, segments in mts:
        current = MT_STATUS_BY_VALUE.get(status) or MTStatus(status)
        parts = states.get(mt_id, ())
        target = derive_mt_status(segments, parts)
        if target is None or target is current:
            continue
        moves.append((mt_id, current, target))
        final = target.is_final
        detail = f"receipt error 0x{errors[mt_id]:X}" if final and mt_id in errors else None
        if (
            final
            and current is MTStatus.SENDING
            and 0 < segments <= len(parts)
            and PartStatus.REJECTED not in parts
        ):
            changes.append(MTStatusChange(mt_id, current, MTStatus.ACCEPTED, now))
            current = MTStatus.ACCEPTED
        changes.append(MTStatusChange(mt_id, current, target, now, detail))
    return changes, moves


class Statuses(ABC):
    """Moves MTs in ``sending``/``accepted`` to the status their parts imply."""

    @abstractmethod
    async def derive(
        self,
        session: AsyncSession,
        mt_ids: Sequence[int],
        now: datetime,
        *,
        segments: Mapping[int, int] | None = None,
    ) -> list[MTStatusChange]:
        """Moves each of these MTs still in ``sending``/``accepted`` to the status its parts imply
        (read from the database); returns the changes made. ``segments``: segment counts just learnt,
        stored with the move where the dialect's statements can (see the implementations)."""


class SQLiteStatuses(Statuses):
    """Reads the MTs and their parts, then one executemany UPDATE per target status. Segment counts
    are stored when the parts are (SQLite's results write them), so ``segments`` is not needed."""

    async def derive(
        self,
        session: AsyncSession,
        mt_ids: Sequence[int],
        now: datetime,
        *,
        segments: Mapping[int, int] | None = None,
    ) -> list[MTStatusChange]:
        if not mt_ids:
            return []
        table = MT_MESSAGES
        mts = (
            await session.execute(
                select(table.c.id, table.c.status, table.c.segments).where(
                    among(table.c.id, sorted(set(mt_ids))),
                    table.c.status.in_([MTStatus.SENDING, MTStatus.ACCEPTED]),
                )
            )
        ).all()
        if not mts:
            return []
        part_rows = await session.execute(
            select(MT_PARTS.c.mt_id, MT_PARTS.c.status, MT_PARTS.c.error_code).where(
                among(MT_PARTS.c.mt_id, [row.id for row in mts])
            )
        )
        states: dict[int, list[PartStatus]] = {}
        errors: dict[int, int] = {}
        for part in part_rows:
            states.setdefault(part.mt_id, []).append(PartStatus(part.status))
            if part.error_code:
                errors[part.mt_id] = part.error_code
        changes, moves = derived_changes(
            [(row.id, row.status, row.segments) for row in mts], states, errors, now
        )
        for target in {target for _, _, target in moves}:
            values: dict[str, object] = {
                "status": target,
                "updated_at": now,
                "claim_owner": None,
                "claim_expires_at": None,
            }
            if target.is_final:
                values["final_at"] = now
            await session.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"), table.c.status == bindparam("b_previous"))
                .values(**values),
                [{"b_id": mt_id, "b_previous": previous} for mt_id, previous, to in moves if to is target],
            )
        await insert_history(session, [(c.mt_id, c.status, c.at, c.detail) for c in changes])
        await count_finals(session, [(mt_id, target) for mt_id, _, target in moves if target.is_final])
        return changes


class PostgreSQLStatuses(Statuses):
    """Locks and reads the MTs with their parts in one round trip, moves them and writes their history
    in another (array statements). :meth:`move` also serves the results and receipts that know an
    MT's parts without reading them."""

    async def derive(
        self,
        session: AsyncSession,
        mt_ids: Sequence[int],
        now: datetime,
        *,
        segments: Mapping[int, int] | None = None,
    ) -> list[MTStatusChange]:
        """``segments`` are stored with each MT's move, or on their own for the MTs that do not move."""
        if not mt_ids:
            return []
        ids = sorted(set(mt_ids))
        learnt = segments or {}
        mts: dict[int, MTRow] = {}
        states: dict[int, list[PartStatus]] = {}
        errors: dict[int, int] = {}
        stored_segments: dict[int, int] = {}
        for row in await pg.mts_with_parts(session, ids):
            if row.id not in mts:
                stored_segments[row.id] = row.segments
                mts[row.id] = (row.id, row.status, learnt.get(row.id, row.segments))
            if row.part_status is not None:
                states.setdefault(row.id, []).append(
                    PART_STATUS_BY_VALUE.get(row.part_status) or PartStatus(row.part_status)
                )
            if row.error_code:
                errors[row.id] = row.error_code
        changes, _ = await self.move(session, sorted(mts.values()), states, errors, now, learnt)
        moved = {change.mt_id for change in changes}
        # Segment counts of MTs that did not move (not in sending/accepted any more, or still waiting).
        unchanged = {
            mt_id: learnt[mt_id]
            for mt_id in ids
            if mt_id in learnt and mt_id not in moved and stored_segments.get(mt_id) != learnt[mt_id]
        }
        if unchanged:
            await pg.set_segments(session, unchanged)
        return changes

    async def move(
        self,
        session: AsyncSession,
        mts: Sequence[MTRow],
        states: Mapping[int, list[PartStatus]],
        errors: Mapping[int, int],
        now: datetime,
        segments: Mapping[int, int],
    ) -> tuple[list[MTStatusChange], list[int]]:
        """Moves each (id, status, segments) MT to what its part states imply, if it is still in that
        status; returns the changes made and the ids of MTs found in another status."""
        changes, moves = derived_changes(mts, states, errors, now)
        if not moves:
            return [], []
        rows = await pg.change_status(
            session,
            [
                (mt_id, previous.value, target.value, target.is_final, segments.get(mt_id, 0))
                for mt_id, previous, target in moves
            ],
            [(c.mt_id, c.status.value, c.detail) for c in changes],
            now,
        )
        moved = {row.id for row in rows}
        finals = [(row, MTStatus(row.status)) for row in rows if row.final]
        count_final_rows(session, finals)
        await credit_finals(session, finals)
        if len(moved) == len(moves):
            return changes, []
        return (
            [c for c in changes if c.mt_id in moved],
            [mt_id for mt_id, _, _ in moves if mt_id not in moved],
        )


async def outbox_depth(session: AsyncSession) -> dict[str, int]:
    """MTs not yet handed to an SMSC (``queued`` + ``sending``) per carrier."""
    result = await session.execute(
        select(MT_MESSAGES.c.carrier, func.count())
        .where(MT_MESSAGES.c.status.in_([MTStatus.QUEUED, MTStatus.SENDING]))
        .group_by(MT_MESSAGES.c.carrier)
    )
    return {row[0]: int(row[1]) for row in result}


async def mt_state(session: AsyncSession, mt_id: int) -> MTState | None:
    """The MT's status and last error (None when there is no such MT)."""
    row = (
        await session.execute(
            select(MT_MESSAGES.c.status, MT_MESSAGES.c.last_error).where(MT_MESSAGES.c.id == mt_id)
        )
    ).one_or_none()
    return None if row is None else MTState(mt_id, MTStatus(row.status), row.last_error)
