"""Delivery receipts applied to the parts they name (by carrier + SMSC message id), and the early
receipts: those whose part is not recorded yet (the receipt overtook its submit_sm_resp, or the two
were committed at the same time), kept in ``early_receipts`` until the part is.

An early receipt is applied when its part is recorded, in the results' transaction (taken by the
parts' own statement on PostgreSQL, then :meth:`PostgreSQLReceipts.apply_early`; by
:meth:`SQLiteReceipts.take_early` on SQLite), or by :meth:`Receipts.sweep_early` when the two were
committed by transactions that could not see each other; one never matched is dropped after a while
(:meth:`Receipts.purge_early`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import among, table_of
from gatewayd.store.enums import MTStatus, PartStatus
from gatewayd.store.messages import EarlyReceipt, MTPart
from gatewayd.store.mt import _pg as pg
from gatewayd.store.mt.status import MTRow, PostgreSQLStatuses, SQLiteStatuses
from gatewayd.store.mt.values import ReceiptIn, ReceiptOutcome, receipt_part_status, state_text

MT_PARTS = table_of(MTPart)
EARLY_RECEIPTS = table_of(EarlyReceipt)

#: (carrier, normalised SMSC message id): how a receipt names its part.
PartKey = tuple[str, str]


def receipt_per_part(receipts: Iterable[ReceiptIn]) -> dict[PartKey, ReceiptIn]:
    """The receipt that decides each part: the last final one, else the last intermediate one."""
    chosen: dict[PartKey, ReceiptIn] = {}
    for receipt in sorted(receipts, key=lambda r: r.received_at):
        key = (receipt.carrier, receipt.smsc_message_id)
        current = chosen.get(key)
        if (
            current is None
            or receipt_part_status(receipt.state) is not None
            or receipt_part_status(current.state) is None
        ):
            chosen[key] = receipt
    return chosen


def _early_row(receipt: ReceiptIn) -> dict[str, object]:
    return {
        "carrier": receipt.carrier,
        "smsc_message_id": receipt.smsc_message_id,
        "state": state_text(receipt.state),
        "error_code": receipt.error_code,
        "received_at": receipt.received_at,
    }


def message_ids_in(table: Table, keys: set[PartKey]) -> ColumnElement[bool]:
    """A superset filter for (carrier, smsc_message_id) pairs; callers keep the exact pairs. Two plain
    IN lists use the (carrier, smsc_message_id) index where a row-value IN plans badly on PostgreSQL."""
    return and_(
        among(table.c.carrier, sorted({carrier for carrier, _ in keys})),
        among(table.c.smsc_message_id, sorted({message_id for _, message_id in keys})),
    )


class Receipts(ABC):
    """Receipts in, part statuses and MT statuses out."""

    @abstractmethod
    async def record(
        self, session: AsyncSession, receipts: Sequence[ReceiptIn], now: datetime
    ) -> ReceiptOutcome:
        """Applies the receipts to the parts they name and moves their MTs on; a receipt whose part is
        not recorded yet is kept as early."""

    async def sweep_early(self, session: AsyncSession, now: datetime, *, limit: int = 5000) -> ReceiptOutcome:
        """Applies the early receipts whose part has been recorded since.

        A receipt and its part's submit result may be committed by two transactions at the same time;
        under READ COMMITTED neither sees the other, so the receipt stays early although its part
        exists. This closes that gap: matched early receipts are applied and removed."""
        early = EARLY_RECEIPTS
        rows = (
            await session.execute(
                select(
                    early.c.id,
                    early.c.carrier,
                    early.c.smsc_message_id,
                    early.c.state,
                    early.c.error_code,
                    early.c.received_at,
                )
                .join(
                    MT_PARTS,
                    (MT_PARTS.c.carrier == early.c.carrier)
                    & (MT_PARTS.c.smsc_message_id == early.c.smsc_message_id),
                )
                .order_by(early.c.id)
                .limit(limit)
            )
        ).all()
        if not rows:
            return ReceiptOutcome([], 0, 0)
        receipts = [
            ReceiptIn(row.carrier, row.smsc_message_id, row.state, row.received_at, row.error_code)
            for row in rows
        ]
        outcome = await self.record(session, receipts, now)
        await session.execute(delete(early).where(among(early.c.id, [row.id for row in rows])))
        return outcome

    async def purge_early(self, session: AsyncSession, received_before: datetime) -> int:
        """Drops early receipts never matched (their MT was never recorded); returns how many."""
        result = await session.execute(
            delete(EARLY_RECEIPTS).where(EARLY_RECEIPTS.c.received_at < received_before)
        )
        return int(getattr(result, "rowcount", 0))


class SQLiteReceipts(Receipts):
    """Parts looked up by IN lists, receipts applied by executemany UPDATEs, MTs derived from the
    database."""

    def __init__(self, statuses: SQLiteStatuses) -> None:
        self._statuses = statuses

    async def record(
        self, session: AsyncSession, receipts: Sequence[ReceiptIn], now: datetime
    ) -> ReceiptOutcome:
        if not receipts:
            return ReceiptOutcome([], 0, 0)
        parts = await self._parts(session, {(r.carrier, r.smsc_message_id) for r in receipts})
        matched = [r for r in receipts if (r.carrier, r.smsc_message_id) in parts]
        early = [r for r in receipts if (r.carrier, r.smsc_message_id) not in parts]
        if early:
            await session.execute(EARLY_RECEIPTS.insert(), [_early_row(r) for r in early])
        await self._apply(session, [(parts[(r.carrier, r.smsc_message_id)][0], r) for r in matched])
        mt_ids = sorted({parts[(r.carrier, r.smsc_message_id)][1] for r in matched})
        changes = await self._statuses.derive(session, mt_ids, now)
        return ReceiptOutcome(changes, len(matched), len(early))

    async def take_early(self, session: AsyncSession, keys: Sequence[PartKey]) -> set[int]:
        """Applies (and removes) the early receipts of these parts, just recorded; returns the ids of
        the MTs they touched (whose status the caller derives)."""
        if not keys:
            return set()
        table = EARLY_RECEIPTS
        wanted = set(keys)
        result = await session.execute(
            select(
                table.c.id,
                table.c.carrier,
                table.c.smsc_message_id,
                table.c.state,
                table.c.error_code,
                table.c.received_at,
            ).where(message_ids_in(table, wanted))
        )
        found = [row for row in result if (row.carrier, row.smsc_message_id) in wanted]
        if not found:
            return set()
        parts = await self._parts(session, {(r.carrier, r.smsc_message_id) for r in found})
        await self._apply(
            session,
            [
                (
                    parts[(r.carrier, r.smsc_message_id)][0],
                    ReceiptIn(r.carrier, r.smsc_message_id, r.state, r.received_at, r.error_code),
                )
                for r in found
            ],
        )
        await session.execute(delete(table).where(among(table.c.id, [r.id for r in found])))
        return {mt_id for _, mt_id in parts.values()}

    @staticmethod
    async def _parts(session: AsyncSession, keys: set[PartKey]) -> dict[PartKey, tuple[int, int]]:
        """(part id, mt id) of the recorded parts among ``keys``."""
        result = await session.execute(
            select(MT_PARTS.c.id, MT_PARTS.c.mt_id, MT_PARTS.c.carrier, MT_PARTS.c.smsc_message_id).where(
                message_ids_in(MT_PARTS, keys)
            )
        )
        return {
            (row.carrier, row.smsc_message_id): (row.id, row.mt_id)
            for row in result
            if (row.carrier, row.smsc_message_id) in keys
        }

    @staticmethod
    async def _apply(session: AsyncSession, by_part: Sequence[tuple[int, ReceiptIn]]) -> None:
        rows: list[dict[str, Any]] = []
        for part_id, receipt in sorted(by_part, key=lambda item: (item[0], item[1].received_at)):
            rows.append(
                {
                    "b_id": part_id,
                    "b_state": state_text(receipt.state),
                    "b_at": receipt.received_at,
                    "b_error": receipt.error_code,
                    "b_final": receipt_part_status(receipt.state),
                }
            )
        final = [row for row in rows if row["b_final"] is not None]
        interim = [row for row in rows if row["b_final"] is None]
        table = MT_PARTS
        base = update(table).where(table.c.id == bindparam("b_id"))
        if final:
            await session.execute(
                base.values(
                    status=bindparam("b_final"),
                    receipt_state=bindparam("b_state"),
                    receipt_at=bindparam("b_at"),
                    error_code=bindparam("b_error"),
                ),
                final,
            )
        if interim:
            # An intermediate state (ENROUTE, ACCEPTD) never overrides a final one already recorded.
            await session.execute(
                base.where(table.c.status == PartStatus.ACCEPTED).values(
                    receipt_state=bindparam("b_state"), receipt_at=bindparam("b_at")
                ),
                [{k: v for k, v in row.items() if k in ("b_id", "b_state", "b_at")} for row in interim],
            )


class PostgreSQLReceipts(Receipts):
    """A batch looked up, locked and applied in one array statement; a one-part MT takes its status
    from its receipt without reading its parts again."""

    def __init__(self, statuses: PostgreSQLStatuses) -> None:
        self._statuses = statuses

    async def record(
        self, session: AsyncSession, receipts: Sequence[ReceiptIn], now: datetime
    ) -> ReceiptOutcome:
        if not receipts:
            return ReceiptOutcome([], 0, 0)
        chosen = receipt_per_part(receipts)
        parts = await self._apply(session, chosen)
        found = {(row.carrier, row.smsc_message_id) for row in parts}
        early = [r for r in receipts if (r.carrier, r.smsc_message_id) not in found]
        if early:
            await pg.insert_early_receipts(
                session,
                [
                    (r.carrier, r.smsc_message_id, state_text(r.state), r.error_code, r.received_at)
                    for r in early
                ],
            )
        # A one-part MT takes its status from its receipt; the others are derived from the database.
        per_mt: dict[int, int] = {}
        for row in parts:
            per_mt[row.mt_id] = per_mt.get(row.mt_id, 0) + 1
        mts: list[MTRow] = []
        states: dict[int, list[PartStatus]] = {}
        errors: dict[int, int] = {}
        from_database: set[int] = set()
        for row in parts:
            receipt = chosen[(row.carrier, row.smsc_message_id)]
            final = receipt_part_status(receipt.state)
            if (
                row.segments != 1
                or per_mt[row.mt_id] != 1
                or final is None
                or row.status not in (MTStatus.SENDING.value, MTStatus.ACCEPTED.value)
            ):
                from_database.add(row.mt_id)
                continue
            mts.append((row.mt_id, row.status, 1))
            states[row.mt_id] = [final]
            if receipt.error_code:
                errors[row.mt_id] = receipt.error_code
        changes, not_moved = await self._statuses.move(session, sorted(mts), states, errors, now, {})
        changes += await self._statuses.derive(session, sorted(from_database.union(not_moved)), now)
        return ReceiptOutcome(changes, len(receipts) - len(early), len(early))

    async def apply_early(self, session: AsyncSession, taken: Sequence[Any]) -> set[int]:
        """Applies early receipts just taken (removed) with their parts' results (``pg.record_parts``);
        returns the ids of the MTs they touched (whose status the caller derives)."""
        if not taken:
            return set()
        parts = await self._apply(
            session,
            receipt_per_part(
                ReceiptIn(r.carrier, r.smsc_message_id, r.state, r.received_at, r.error_code) for r in taken
            ),
        )
        return {row.mt_id for row in parts}

    @staticmethod
    async def _apply(session: AsyncSession, chosen: Mapping[PartKey, ReceiptIn]) -> Sequence[Any]:
        """Applies each part's deciding receipt (see :func:`receipt_per_part`); returns (mt_id, carrier,
        smsc_message_id, status, segments) per part found."""
        rows: list[tuple[str, str, str | None, str, datetime, int | None]] = []
        for (carrier, message_id), receipt in sorted(chosen.items()):
            final = receipt_part_status(receipt.state)
            rows.append(
                (
                    carrier,
                    message_id,
                    final.value if final is not None else None,
                    state_text(receipt.state),
                    receipt.received_at,
                    receipt.error_code,
                )
            )
        return await pg.apply_receipts(session, rows)
