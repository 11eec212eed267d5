"""Claims: due MTs leased to one daemon for sending (``sending``, ``attempts`` + 1), their leases
renewed while that daemon holds them, given back unsent, and settled when their daemon died.

Safe with several daemons on one database: on PostgreSQL the candidates are locked with
``FOR UPDATE SKIP LOCKED`` (concurrent claimers take disjoint sets); SQLite serialises writers and
the update re-checks ``status = 'queued'``. The caller commits, ideally at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import among, chunks, table_of
from gatewayd.store.enums import MTKind, MTStatus, PartStatus
from gatewayd.store.messages import MTMessage, MTPart, MTStatusHistory
from gatewayd.store.mt import _pg as pg
from gatewayd.store.mt.recipients import BILLED_KINDS, refusal
from gatewayd.store.mt.status import Statuses, insert_history
from gatewayd.store.mt.values import ERROR_TEXT_LIMIT, MT_KIND_BY_VALUE, ClaimedMT, MTStatusChange
from gatewayd.store.premium import holds_of_mts
from gatewayd.store.rollups import count_finals
from gatewayd.store.subscribers import Subscriber

MT_MESSAGES = table_of(MTMessage)
MT_PARTS = table_of(MTPart)
_NO_PARTS: frozenset[int] = frozenset()

#: A subscriber who may not be sent to: (opted out, banned, ban reason).
Block = tuple[bool, bool, str | None]

# SQLite's look-up of the claimed MTs' recipients (PostgreSQL's claim statement returns their flags)
_SQLITE_BLOCKS = select(
    Subscriber.msisdn, Subscriber.opted_out, Subscriber.banned, Subscriber.banned_reason
).where(Subscriber.opted_out | Subscriber.banned)

#: The columns a claim returns, in :class:`ClaimedMT` order (but ``done_parts``).
_CLAIMED_COLUMNS = (
    MT_MESSAGES.c.id,
    MT_MESSAGES.c.kind,
    MT_MESSAGES.c.carrier,
    MT_MESSAGES.c.bind_name,
    MT_MESSAGES.c.source,
    MT_MESSAGES.c.destination,
    MT_MESSAGES.c.text,
    MT_MESSAGES.c.data_coding,
    MT_MESSAGES.c.priority,
    MT_MESSAGES.c.attempts,
    MT_MESSAGES.c.request_receipt,
    MT_MESSAGES.c.segments,
)


@dataclass(slots=True)
class Claimed:
    """The MTs leased to the caller, and those claimed but refused (``refused``, with the reason)
    because their subscriber opted out or was banned since they were queued."""

    mts: list[ClaimedMT]
    refused: list[tuple[int, str]] = field(default_factory=list)


class Claims(ABC):
    """Leasing the outbox's MTs to the daemons that send them."""

    def __init__(self, statuses: Statuses) -> None:
        self._statuses = statuses

    async def claim(
        self,
        session: AsyncSession,
        owner: str,
        now: datetime,
        *,
        limit: int,
        lease: float,
        carriers: Collection[str] | None = None,
        billed_short_codes: Collection[str] = (),
    ) -> Claimed:
        """Leases up to ``limit`` due MTs (highest priority, then oldest; of ``carriers`` only, when
        given) to ``owner`` for ``lease`` seconds; those whose subscriber may no longer receive them
        (a ban, an opt-out or a premium hold since they were queued: the rule is
        :func:`recipients.refusal`, the one the outbox applied) are ``refused`` instead, with the reason
        as last error and in the history. ``billed_short_codes``: the short codes of billed services,
        whose billed MTs are checked against the clients' premium holds (none: no statement)."""
        claimed, blocks = await self._lease(
            session, owner, now, now + timedelta(seconds=lease), limit, carriers
        )
        if not claimed:
            return Claimed([])
        billed = [mt.id for mt in claimed if mt.kind in BILLED_KINDS and mt.source in billed_short_codes]
        holds = await holds_of_mts(session, billed, now) if billed else {}
        if not blocks and not holds:
            return Claimed(claimed)
        refused: list[tuple[int, str]] = []
        for mt in claimed:
            block = blocks.get(mt.destination)
            hold_now = holds.get(mt.id)
            if block is None and hold_now is None:
                continue
            opted_out, banned, ban_reason = block or (False, False, None)
            refused_now = refusal(
                mt.kind, opted_out=opted_out, banned=banned, ban_reason=ban_reason, held=hold_now
            )
            if refused_now is not None:
                refused.append((mt.id, refused_now.detail))
        if not refused:
            return Claimed(claimed)
        await _refuse(session, refused, now)
        ids = {mt_id for mt_id, _ in refused}
        return Claimed([mt for mt in claimed if mt.id not in ids], refused)

    @abstractmethod
    async def _lease(
        self,
        session: AsyncSession,
        owner: str,
        now: datetime,
        expires_at: datetime,
        limit: int,
        carriers: Collection[str] | None,
    ) -> tuple[list[ClaimedMT], dict[str, Block]]:
        """The due MTs leased to ``owner``, highest priority first, their ``sending`` history written;
        and the recipients among theirs that opted out or are banned, by MSISDN."""

    async def renew_leases(self, session: AsyncSession, owner: str, now: datetime, *, lease: float) -> int:
        """Extends the lease of every MT ``owner`` holds in ``sending`` to ``lease`` seconds from ``now``
        (they are all alive in that daemon: it reconciles its own at start); returns how many."""
        table = MT_MESSAGES
        result = await session.execute(
            update(table)
            .where(table.c.status == MTStatus.SENDING, table.c.claim_owner == owner)
            .values(claim_expires_at=now + timedelta(seconds=lease))
        )
        return int(getattr(result, "rowcount", 0))

    async def requeue(
        self, session: AsyncSession, mt_ids: Sequence[int], now: datetime, *, delay: float = 0.0, reason: str
    ) -> list[MTStatusChange]:
        """Gives claimed MTs back unsent (the bind went down, shutdown): :func:`requeue_mts`."""
        return await requeue_mts(session, mt_ids, now, delay=delay, reason=reason)

    async def reconcile(
        self, session: AsyncSession, now: datetime, *, owner: str | None = None
    ) -> list[MTStatusChange]:
        """After a restart or a daemon's death: MTs left in ``sending`` whose lease expired (or that
        ``owner`` - this instance, starting - held) are settled. Those whose segments were all accepted
        become ``accepted`` (or final, per receipts); the others go back to ``queued`` and will send only
        the segments not yet accepted (at-least-once: a segment whose response was lost is sent again)."""
        table = MT_MESSAGES
        stale = table.c.claim_expires_at < now
        if owner is not None:
            stale = stale | (table.c.claim_owner == owner)
        rows = (
            (
                await session.execute(
                    select(table.c.id)
                    .where(table.c.status == MTStatus.SENDING, stale)
                    .with_for_update(skip_locked=True)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            return []
        changes = await self._statuses.derive(session, rows, now)
        settled = {change.mt_id for change in changes}
        remaining = [mt_id for mt_id in rows if mt_id not in settled]
        if remaining:
            await session.execute(
                update(table)
                .where(among(table.c.id, remaining), table.c.status == MTStatus.SENDING)
                .values(
                    status=MTStatus.QUEUED,
                    next_attempt_at=now,
                    claim_owner=None,
                    claim_expires_at=None,
                    updated_at=now,
                )
            )
            requeued = [
                MTStatusChange(mt_id, MTStatus.SENDING, MTStatus.QUEUED, now, "reconciled after restart")
                for mt_id in sorted(remaining)
            ]
            await insert_history(session, [(c.mt_id, c.status, c.at, c.detail) for c in requeued])
            changes += requeued
        return changes


class SQLiteClaims(Claims):
    """An UPDATE ... RETURNING of the due rows (SQLite serialises writers), then their history lines."""

    async def _lease(
        self,
        session: AsyncSession,
        owner: str,
        now: datetime,
        expires_at: datetime,
        limit: int,
        carriers: Collection[str] | None,
    ) -> tuple[list[ClaimedMT], dict[str, Block]]:
        table = MT_MESSAGES
        due = (
            select(table.c.id)
            .where(table.c.status == MTStatus.QUEUED, table.c.next_attempt_at <= now)
            .order_by(table.c.priority.desc(), table.c.next_attempt_at, table.c.id)
            .limit(limit)
        )
        if carriers is not None:
            due = due.where(table.c.carrier.in_(sorted(carriers)))
        statement = (
            update(table)
            .where(table.c.id.in_(due.scalar_subquery()), table.c.status == MTStatus.QUEUED)
            .values(
                status=MTStatus.SENDING,
                claim_owner=owner,
                claim_expires_at=expires_at,
                attempts=table.c.attempts + 1,
                updated_at=now,
            )
            .returning(*_CLAIMED_COLUMNS)
        )
        claimed = await _claimed(session, (await session.execute(statement)).all())
        if not claimed:
            return [], {}
        await insert_history(
            session,
            [(mt.id, MTStatus.SENDING, now, f"attempt {mt.attempts} by {owner}") for mt in claimed],
        )
        return claimed, await self._blocks(session, sorted({mt.destination for mt in claimed}))

    async def _blocks(self, session: AsyncSession, msisdns: Sequence[str]) -> dict[str, Block]:
        """The subscribers among these MSISDNs that opted out or are banned."""
        found: dict[str, Block] = {}
        for part in chunks(msisdns):
            rows = await session.execute(_SQLITE_BLOCKS.where(among(Subscriber.msisdn, part)))
            for row in rows:
                found[row.msisdn] = (row.opted_out, row.banned, row.banned_reason)
        return found


class PostgreSQLClaims(Claims):
    """One array statement leases the due rows (``FOR UPDATE SKIP LOCKED``), writes their history and
    reads their recipients' flags."""

    async def _lease(
        self,
        session: AsyncSession,
        owner: str,
        now: datetime,
        expires_at: datetime,
        limit: int,
        carriers: Collection[str] | None,
    ) -> tuple[list[ClaimedMT], dict[str, Block]]:
        rows = await pg.claim(session, owner, now, expires_at, limit, carriers)
        blocks: dict[str, Block] = {
            row.destination: (row.opted_out, row.banned, row.banned_reason)
            for row in rows
            if row.opted_out or row.banned
        }
        return await _claimed(session, rows), blocks


async def _claimed(session: AsyncSession, rows: Sequence[Any]) -> list[ClaimedMT]:
    """The claimed rows as :class:`ClaimedMT`, highest priority first, each with its segments already
    accepted on an earlier attempt."""
    # parts are recorded (and their count known) once any came back: from an earlier attempt, or from
    # this one when its other parts were never sent and did not count it
    retried = [row.id for row in rows if row.segments > 0]
    done = await _done_parts(session, retried) if retried else {}
    claimed = [
        ClaimedMT(
            mt_id,
            MT_KIND_BY_VALUE.get(kind) or MTKind(kind),
            carrier,
            bind_name,
            source,
            destination,
            text,
            data_coding,
            priority,
            attempts,
            request_receipt,
            segments,
            frozenset(done[mt_id]) if mt_id in done else _NO_PARTS,
        )
        for (
            mt_id,
            kind,
            carrier,
            bind_name,
            source,
            destination,
            text,
            data_coding,
            priority,
            attempts,
            request_receipt,
            segments,
            *_,  # on PostgreSQL, the recipient's flags
        ) in rows
    ]
    claimed.sort(key=lambda mt: (-mt.priority, mt.id))
    return claimed


async def _done_parts(session: AsyncSession, mt_ids: Sequence[int]) -> dict[int, set[int]]:
    result = await session.execute(
        select(MT_PARTS.c.mt_id, MT_PARTS.c.part_no).where(
            among(MT_PARTS.c.mt_id, mt_ids), MT_PARTS.c.status != PartStatus.REJECTED
        )
    )
    done: dict[int, set[int]] = {}
    for row in result:
        done.setdefault(row.mt_id, set()).add(row.part_no)
    return done


async def _refuse(session: AsyncSession, refusals: Iterable[tuple[int, str]], now: datetime) -> None:
    """Claimed MTs that may not be sent: ``refused``, with the reason as last error and in the history."""
    rows = [(mt_id, reason[:ERROR_TEXT_LIMIT]) for mt_id, reason in refusals]
    table = MT_MESSAGES  # Core table: an executemany UPDATE keyed by bind parameters
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.status == MTStatus.SENDING)
        .values(
            status=MTStatus.REFUSED,
            last_error=bindparam("b_reason"),
            final_at=now,
            updated_at=now,
            claim_owner=None,
            claim_expires_at=None,
        ),
        [{"b_id": mt_id, "b_reason": reason} for mt_id, reason in rows],
    )
    await session.execute(
        insert(MTStatusHistory),
        [{"mt_id": mt_id, "status": MTStatus.REFUSED, "at": now, "detail": reason} for mt_id, reason in rows],
    )
    await count_finals(session, [(mt_id, MTStatus.REFUSED) for mt_id, _ in rows])


async def requeue_mts(
    session: AsyncSession, mt_ids: Sequence[int], now: datetime, *, delay: float = 0.0, reason: str
) -> list[MTStatusChange]:
    """Gives claimed MTs back unsent (the bind went down, shutdown, a segment never left): ``queued``
    again after ``delay`` seconds, the attempt not counted."""
    if not mt_ids:
        return []
    table = MT_MESSAGES
    result = await session.execute(
        update(table)
        .where(among(table.c.id, sorted(mt_ids)), table.c.status == MTStatus.SENDING)
        .values(
            status=MTStatus.QUEUED,
            attempts=case((table.c.attempts > 0, table.c.attempts - 1), else_=0),
            next_attempt_at=now + timedelta(seconds=delay),
            claim_owner=None,
            claim_expires_at=None,
            updated_at=now,
        )
        .returning(table.c.id)
    )
    changes = [
        MTStatusChange(mt_id, MTStatus.SENDING, MTStatus.QUEUED, now, reason[:ERROR_TEXT_LIMIT])
        for mt_id in sorted(result.scalars())
    ]
    await insert_history(session, [(c.mt_id, c.status, c.at, c.detail) for c in changes])
    return changes
