"""Submit results: each segment's submit_sm_resp written to its part, and its MT moved on: ``accepted``
once every segment is accepted; on a rejected segment back to ``queued`` after a back-off when
retryable and attempts remain, else ``failed``. Receipts that reached the daemon before their part was
written are written with it, and early receipts of the parts are applied in the same transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import among, table_of
from gatewayd.store.enums import MTStatus, PartStatus
from gatewayd.store.messages import MTMessage, MTPart
from gatewayd.store.mt import _pg as pg
from gatewayd.store.mt.claims import requeue_mts
from gatewayd.store.mt.receipts import PartKey, PostgreSQLReceipts, SQLiteReceipts
from gatewayd.store.mt.status import MTRow, PostgreSQLStatuses, SQLiteStatuses, insert_history
from gatewayd.store.mt.values import (
    ERROR_TEXT_LIMIT,
    MTStatusChange,
    PartResult,
    ReceiptIn,
    RetryPolicy,
    receipt_part_status,
    state_text,
)
from gatewayd.store.rollups import count_finals

MT_MESSAGES = table_of(MTMessage)
MT_PARTS = table_of(MTPart)


class PartRow(NamedTuple):
    """An ``mt_parts`` row as the submit results write it, columns in table order."""

    mt_id: int
    part_no: int
    carrier: str
    bind_name: str | None
    smsc_message_id: str | None
    status: PartStatus
    submitted_at: datetime
    accepted_at: datetime | None
    receipt_state: str | None
    receipt_at: datetime | None
    error_code: int | None


def part_row(result: PartResult, receipt: ReceiptIn | None) -> PartRow:
    """A part's row; with ``receipt``, as applying that receipt would leave it."""
    if not result.accepted:
        return PartRow(
            result.mt_id,
            result.part_no,
            result.carrier,
            result.bind_name,
            None,
            PartStatus.REJECTED,
            result.submitted_at,
            None,
            None,
            None,
            result.error_code,
        )
    status, state, at, error = PartStatus.ACCEPTED, None, None, None
    if receipt is not None:
        state, at = state_text(receipt.state), receipt.received_at
        final = receipt_part_status(receipt.state)
        if final is not None:
            status, error = final, receipt.error_code
    return PartRow(
        result.mt_id,
        result.part_no,
        result.carrier,
        result.bind_name,
        result.smsc_message_id,
        status,
        result.submitted_at,
        result.responded_at,
        state,
        at,
        error,
    )


class Results(ABC):
    """Writes submit results and moves their MTs on."""

    async def record(
        self,
        session: AsyncSession,
        results: Sequence[PartResult],
        now: datetime,
        retry: RetryPolicy,
        receipts: Mapping[PartKey, ReceiptIn] | None = None,
    ) -> list[MTStatusChange]:
        """Records each segment's submit_sm_resp, applies receipts that arrived early, and moves each
        touched MT on.

        ``receipts`` (by carrier and SMSC message id) are receipts for parts of this batch that reached
        the daemon before the batch was written: each part is written with its receipt already applied,
        and its MT goes ``sending`` -> ``accepted`` -> final in one update with both history lines.

        A segment that was never sent (``sent`` False) is not recorded: its MT goes back to ``queued`` at
        once with the attempt not counted (:func:`requeue_mts`), after its other segments' results are
        written, unless one of those was rejected (then the rejection decides, as above).
        """
        if not results:
            return []
        unsent = _unsent_by_mt(results)
        if unsent:
            results = [r for r in results if r.sent]
        changes = await self._record_sent(session, results, now, retry, receipts or {}) if results else []
        # an MT failed or queued for a retry by a rejected segment is not ``sending``: requeue leaves it
        for reason, ids in _group_by_reason(unsent).items():
            changes += await requeue_mts(session, ids, now, reason=reason)
        return changes

    async def _record_sent(
        self,
        session: AsyncSession,
        results: Sequence[PartResult],
        now: datetime,
        retry: RetryPolicy,
        attached: Mapping[PartKey, ReceiptIn],
    ) -> list[MTStatusChange]:
        # One row per part (a part given twice: the later result wins, as applied in order).
        rows = list(
            {
                (r.mt_id, r.part_no): part_row(
                    r, attached.get((r.carrier, r.smsc_message_id)) if r.smsc_message_id is not None else None
                )
                for r in sorted(results, key=lambda r: (r.mt_id, r.part_no))
            }.values()
        )
        segments = {r.mt_id: r.segments for r in results}
        touched_by_early = await self._write_parts(session, rows, segments)
        rejected: dict[int, PartResult] = {}
        for r in results:
            if not r.accepted and (r.mt_id not in rejected or not r.retryable):
                rejected[r.mt_id] = r
        changes = await _fail_or_retry(session, rejected, now, retry, segments)
        derived = {mt_id: count for mt_id, count in segments.items() if mt_id not in rejected}
        return changes + await self._move_on(session, rows, derived, touched_by_early, now)

    @abstractmethod
    async def _write_parts(
        self,
        session: AsyncSession,
        rows: Sequence[PartRow],
        segments: Mapping[int, int],
    ) -> set[int]:
        """Upserts the part rows (a part recorded again, on a retry, is replaced), then applies (and
        removes) the early receipts of those with an SMSC message id (a part given twice: the id of
        the row written); returns the ids of the MTs those touched (whose status the caller derives)."""

    @abstractmethod
    async def _move_on(
        self,
        session: AsyncSession,
        rows: Sequence[PartRow],
        segments: Mapping[int, int],
        touched_by_early: set[int],
        now: datetime,
    ) -> list[MTStatusChange]:
        """Moves the MTs of ``segments`` (id: segment count; none rejected) to what their parts imply."""


class SQLiteResults(Results):
    """Parts upserted by an executemany INSERT ... ON CONFLICT with their MTs' segment counts; MTs
    derived from the database."""

    def __init__(self, receipts: SQLiteReceipts, statuses: SQLiteStatuses) -> None:
        self._receipts = receipts
        self._statuses = statuses

    async def _write_parts(
        self,
        session: AsyncSession,
        rows: Sequence[PartRow],
        segments: Mapping[int, int],
    ) -> set[int]:
        insert = sqlite.insert(MT_PARTS)
        statement = insert.on_conflict_do_update(
            index_elements=["mt_id", "part_no"],
            set_={
                column: insert.excluded[column]
                for column in (
                    "carrier",
                    "bind_name",
                    "smsc_message_id",
                    "status",
                    "submitted_at",
                    "accepted_at",
                    "receipt_state",
                    "receipt_at",
                    "error_code",
                )
            },
        )
        await session.execute(statement, [row._asdict() for row in rows])
        await session.execute(
            update(MT_MESSAGES)
            .where(MT_MESSAGES.c.id == bindparam("b_id"), MT_MESSAGES.c.segments != bindparam("b_segments"))
            .values(segments=bindparam("b_segments")),
            [{"b_id": mt_id, "b_segments": count} for mt_id, count in sorted(segments.items())],
        )
        accepted = [(row.carrier, row.smsc_message_id) for row in rows if row.smsc_message_id is not None]
        return await self._receipts.take_early(session, accepted)

    async def _move_on(
        self,
        session: AsyncSession,
        rows: Sequence[PartRow],
        segments: Mapping[int, int],
        touched_by_early: set[int],
        now: datetime,
    ) -> list[MTStatusChange]:
        return await self._statuses.derive(session, list(segments), now)


class PostgreSQLResults(Results):
    """Parts upserted by one array statement; an MT whose every part is in the batch (a first attempt,
    nothing early applied to it) is moved on from the rows just written, its segment count stored with
    the move; the others are derived from the database."""

    def __init__(self, receipts: PostgreSQLReceipts, statuses: PostgreSQLStatuses) -> None:
        self._receipts = receipts
        self._statuses = statuses

    async def _write_parts(
        self,
        session: AsyncSession,
        rows: Sequence[PartRow],
        segments: Mapping[int, int],
    ) -> set[int]:
        # one statement: the parts written, the early receipts of those accepted taken (nearly always
        # none)
        return await self._receipts.apply_early(session, await pg.record_parts(session, rows))

    async def _move_on(
        self,
        session: AsyncSession,
        rows: Sequence[PartRow],
        segments: Mapping[int, int],
        touched_by_early: set[int],
        now: datetime,
    ) -> list[MTStatusChange]:
        written: dict[int, list[PartRow]] = {}
        for row in rows:
            written.setdefault(row.mt_id, []).append(row)
        mts: list[MTRow] = []
        states: dict[int, list[PartStatus]] = {}
        errors: dict[int, int] = {}
        from_database: list[int] = []
        for mt_id, count in segments.items():
            parts = written[mt_id]
            if (
                mt_id in touched_by_early
                or len(parts) != count
                or {p.part_no for p in parts} != set(range(1, count + 1))
            ):
                from_database.append(mt_id)
                continue
            mts.append((mt_id, MTStatus.SENDING.value, count))
            states[mt_id] = [p.status for p in parts]
            for part in parts:
                if part.error_code:
                    errors[mt_id] = part.error_code
        moved, not_moved = await self._statuses.move(session, mts, states, errors, now, segments)
        from_database += not_moved
        return moved + await self._statuses.derive(session, from_database, now, segments=segments)


def _unsent_by_mt(results: Sequence[PartResult]) -> dict[int, str]:
    """The MTs with a segment never sent, each with why (the first such segment's error)."""
    unsent: dict[int, str] = {}
    for r in results:
        if not r.sent and r.mt_id not in unsent:
            unsent[r.mt_id] = f"not sent: {r.error_text or 'session closed'}"
    return unsent


def _group_by_reason(reasons: Mapping[int, str]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for mt_id, reason in sorted(reasons.items()):
        grouped.setdefault(reason, []).append(mt_id)
    return grouped


async def _fail_or_retry(
    session: AsyncSession,
    rejected: Mapping[int, PartResult],
    now: datetime,
    retry: RetryPolicy,
    segments: Mapping[int, int],
) -> list[MTStatusChange]:
    if not rejected:
        return []
    table = MT_MESSAGES
    result = await session.execute(
        select(table.c.id, table.c.status, table.c.attempts).where(among(table.c.id, sorted(rejected)))
    )
    requeue, fail = [], []
    changes: list[MTStatusChange] = []
    for row in result:
        status = MTStatus(row.status)
        if status.is_final or status is MTStatus.QUEUED:
            continue
        part = rejected[row.id]
        error = _error_text(part)
        if part.retryable and retry.may_retry(row.attempts):
            requeue.append(
                {
                    "b_id": row.id,
                    "b_next": now + retry.delay(row.attempts),
                    "b_error": error,
                    "b_segments": segments[row.id],
                }
            )
            changes.append(MTStatusChange(row.id, status, MTStatus.QUEUED, now, f"retry: {error}"))
        else:
            fail.append({"b_id": row.id, "b_error": error, "b_segments": segments[row.id]})
            changes.append(MTStatusChange(row.id, status, MTStatus.FAILED, now, error))
    common: dict[str, object] = {
        "updated_at": now,
        "claim_owner": None,
        "claim_expires_at": None,
        "segments": bindparam("b_segments"),
    }
    if requeue:
        await session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                status=MTStatus.QUEUED,
                next_attempt_at=bindparam("b_next"),
                last_error=bindparam("b_error"),
                **common,
            ),
            requeue,
        )
    if fail:
        await session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(status=MTStatus.FAILED, final_at=now, last_error=bindparam("b_error"), **common),
            fail,
        )
        await count_finals(session, [(row["b_id"], MTStatus.FAILED) for row in fail])
    await insert_history(session, [(c.mt_id, c.status, c.at, c.detail) for c in changes])
    return changes


def _error_text(part: PartResult) -> str:
    code = f"0x{part.error_code:08X}" if part.error_code is not None else "no code"
    text = f"part {part.part_no} rejected ({code})" + (f": {part.error_text}" if part.error_text else "")
    return text[:ERROR_TEXT_LIMIT]
