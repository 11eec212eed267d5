"""The MT outbox: queue, claim for sending, record submit results and receipts, derive final status.

Life of an MT: :func:`queue_mt` (``queued``) -> :func:`claim_mts` (``sending``, leased to one daemon)
-> :func:`record_part_results` with each segment's submit_sm_resp (``accepted``, or back to ``queued``
for a retry, or ``failed``) -> :func:`record_receipts` (``delivered`` / ``failed`` / ``expired``).
Every change is written to ``mt_status_history`` and returned as :class:`MTStatusChange` so the caller
can publish it after committing. All functions work in bulk: a few statements per batch.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Table, and_, bindparam, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store import _pg_outbox as pg
from gatewayd.store._dialect import dialect_name, table_of, upsert_insert
from gatewayd.store.enums import MTKind, MTStatus, PartStatus
from gatewayd.store.errors import MTRefused, RefusalReason
from gatewayd.store.messages import EarlyReceipt, MTMessage, MTPart, MTStatusHistory
from gatewayd.store.repo_conversations import note_reply
from gatewayd.store.subscribers import Subscriber

MT_MESSAGES = table_of(MTMessage)
MT_PARTS = table_of(MTPart)
HISTORY = table_of(MTStatusHistory)
EARLY_RECEIPTS = table_of(EarlyReceipt)
SUBSCRIBERS = table_of(Subscriber)

_ERROR_TEXT_LIMIT = 255


# --------------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewMT:
    """An MT to queue. ``destination`` is the normalized MSISDN; ``subscriber_id`` is looked up by it
    when not given. ``not_before`` delays the first attempt."""

    kind: MTKind
    carrier: str
    source: str
    destination: str
    text: str
    priority: int = 0
    data_coding: int | None = None
    bind_name: str | None = None
    subscriber_id: int | None = None
    conversation_id: int | None = None
    operator_id: int | None = None
    in_reply_to_mo_id: int | None = None
    request_receipt: bool = True
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class QueueOutcome:
    """``ids`` aligns with the input (None where refused); ``refused`` maps input index to reason."""

    ids: list[int | None]
    refused: dict[int, RefusalReason]


# ClaimedMT and PartResult are made per MT and per part on the hot path: plain slotted dataclasses,
# which build about five times faster than frozen ones; nothing changes them after construction.
@dataclass(slots=True)
class ClaimedMT:
    """An MT leased to this daemon for sending. ``done_parts`` are the part numbers already accepted by
    the SMSC on an earlier attempt (only the others are to be sent); empty on a first attempt."""

    id: int
    kind: MTKind
    carrier: str
    bind_name: str | None
    source: str
    destination: str
    text: str
    data_coding: int | None
    priority: int
    attempts: int
    request_receipt: bool
    segments: int
    done_parts: frozenset[int]


@dataclass(slots=True)
class PartResult:
    """The SMSC's answer to one segment's submit_sm. Accepted when ``smsc_message_id`` is set; else
    rejected with ``error_code`` (the command_status, or a local code for a timeout) and ``retryable``
    saying whether another attempt may succeed (throttling, queue full, timeout). ``sent`` False: the
    segment never left (its session closed first): there is no answer to record, and unless another
    segment was rejected its MT goes back to the outbox at once, the attempt not counted."""

    mt_id: int
    part_no: int
    segments: int
    carrier: str
    submitted_at: datetime
    responded_at: datetime
    smsc_message_id: str | None = None
    error_code: int | None = None
    error_text: str | None = None
    retryable: bool = False
    bind_name: str | None = None
    sent: bool = True

    @property
    def accepted(self) -> bool:
        return self.smsc_message_id is not None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``limit`` retries after the first attempt, waiting ``initial`` seconds doubled each time up to
    ``maximum``."""

    limit: int = 5
    initial: float = 5.0
    maximum: float = 300.0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.maximum, self.initial * 2 ** max(0, attempts - 1)))

    def may_retry(self, attempts: int) -> bool:
        return attempts <= self.limit


@dataclass(frozen=True, slots=True)
class ReceiptIn:
    """A delivery receipt: ``state`` is the receipt's ``stat`` (DELIVRD, UNDELIV, EXPIRED, REJECTD,
    DELETED, ACCEPTD, ENROUTE, UNKNOWN) or the message_state name (DELIVERED, UNDELIVERABLE ...)."""

    carrier: str
    smsc_message_id: str
    state: str
    received_at: datetime
    error_code: int | None = None


@dataclass(slots=True)
class MTStatusChange:
    """An MT moved from ``previous`` to ``status``; publish it as ``<prefix>/mt/<mt_id>/status``."""

    mt_id: int
    previous: MTStatus
    status: MTStatus
    at: datetime
    detail: str | None = None

    def event_payload(self) -> dict[str, object]:
        return {
            "mt_id": self.mt_id,
            "status": self.status.value,
            "previous": self.previous.value,
            "at": self.at.isoformat(),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    changes: list[MTStatusChange]
    matched: int
    early: int


# Receipt states (short ``stat`` text and long message_state names) -> what they mean for a part.
_RECEIPT_OUTCOMES: Mapping[str, PartStatus | None] = {
    "DELIVRD": PartStatus.DELIVERED,
    "DELIVERED": PartStatus.DELIVERED,
    "UNDELIV": PartStatus.UNDELIVERABLE,
    "UNDELIVERABLE": PartStatus.UNDELIVERABLE,
    "REJECTD": PartStatus.UNDELIVERABLE,
    "REJECTED": PartStatus.UNDELIVERABLE,
    "DELETED": PartStatus.UNDELIVERABLE,
    "EXPIRED": PartStatus.EXPIRED,
}


def receipt_part_status(state: str) -> PartStatus | None:
    """The final part status a receipt state means, or None for an intermediate one (ENROUTE ...)."""
    return _RECEIPT_OUTCOMES.get(state.strip().upper())


#: Enum members by stored value: a dict lookup per row instead of an ``Enum(value)`` call.
_MT_STATUS_BY_VALUE: Mapping[str, MTStatus] = {status.value: status for status in MTStatus}
_PART_STATUS_BY_VALUE: Mapping[str, PartStatus] = {status.value: status for status in PartStatus}
_MT_KIND_BY_VALUE: Mapping[str, MTKind] = {kind.value: kind for kind in MTKind}
_NO_PARTS: frozenset[int] = frozenset()


def _one_part_mt_status(state: PartStatus) -> MTStatus | None:
    if state is PartStatus.REJECTED:
        return None
    if state is PartStatus.UNDELIVERABLE:
        return MTStatus.FAILED
    if state is PartStatus.EXPIRED:
        return MTStatus.EXPIRED
    return MTStatus.DELIVERED if state is PartStatus.DELIVERED else MTStatus.ACCEPTED


def derive_mt_status(segments: int, parts: Iterable[PartStatus]) -> MTStatus | None:
    """The status an MT in ``sending``/``accepted`` takes from its parts' states; None while parts are
    missing. Any undeliverable part fails the message; else any expired part expires it.

    A part the SMSC rejected counts as missing: :func:`record_part_results` fails or retries the MT
    when it writes the rejection, so a rejected part seen here is one whose resend is still to come
    (a receipt for another part, a reconcile, during the retry)."""
    states = list(parts)
    if segments == 1 and len(states) == 1:  # most MTs: one part decides
        return _ONE_PART_MT_STATUS[states[0]]
    if PartStatus.UNDELIVERABLE in states:
        return MTStatus.FAILED
    if PartStatus.REJECTED in states:
        states = [state for state in states if state is not PartStatus.REJECTED]
    if segments <= 0 or len(states) < segments:
        return None
    if any(state is PartStatus.EXPIRED for state in states):
        return MTStatus.EXPIRED
    if all(state is PartStatus.DELIVERED for state in states):
        return MTStatus.DELIVERED
    return MTStatus.ACCEPTED


#: A one-part MT's status by its part's: the general rule of :func:`derive_mt_status`, looked up.
_ONE_PART_MT_STATUS: Mapping[PartStatus, MTStatus | None] = {
    state: _one_part_mt_status(state) for state in PartStatus
}


# --------------------------------------------------------------------------------------------------
# Queueing
# --------------------------------------------------------------------------------------------------


async def queue_mts(session: AsyncSession, mts: Sequence[NewMT], now: datetime) -> QueueOutcome:
    """Queues MTs in bulk, leaving out those to opted-out or banned subscribers (see ``refused``).
    Replies mark their conversation answered; each queued MT counts in its subscriber's ``mt_count``."""
    if not mts:
        return QueueOutcome([], {})
    known = await _subscribers_by_msisdn(session, {mt.destination for mt in mts if mt.subscriber_id is None})
    ids_wanted = {mt.subscriber_id for mt in mts if mt.subscriber_id is not None}
    flags = await _subscriber_flags(session, ids_wanted | {row[0] for row in known.values()})
    refused: dict[int, RefusalReason] = {}
    rows: list[dict[str, object]] = []
    positions: list[int] = []
    for index, mt in enumerate(mts):
        subscriber_id = mt.subscriber_id
        if subscriber_id is None and mt.destination in known:
            subscriber_id = known[mt.destination][0]
        reason = _refusal(flags.get(subscriber_id)) if subscriber_id is not None else None
        if reason is not None:
            refused[index] = reason
            continue
        positions.append(index)
        rows.append(_mt_row(mt, subscriber_id, now))
    ids: list[int | None] = [None] * len(mts)
    if rows:
        insert = MT_MESSAGES.insert().returning(MT_MESSAGES.c.id, sort_by_parameter_order=True)
        result = await session.execute(insert, rows)
        new_ids = list(result.scalars())
        for index, mt_id in zip(positions, new_ids, strict=True):
            ids[index] = mt_id
        await _insert_history(session, [(mt_id, MTStatus.QUEUED, now, None) for mt_id in new_ids])
        await _count_mts(session, [row["subscriber_id"] for row in rows])
        answered = {
            mt.conversation_id
            for mt in (mts[i] for i in positions)
            if mt.kind is MTKind.REPLY and mt.conversation_id is not None
        }
        for conversation_id in sorted(answered):
            await note_reply(session, conversation_id, now)
    return QueueOutcome(ids, refused)


async def queue_mt(session: AsyncSession, mt: NewMT, now: datetime) -> int:
    """Queues one MT and returns its id; raises :class:`MTRefused` for an opted-out or banned
    subscriber."""
    outcome = await queue_mts(session, [mt], now)
    if 0 in outcome.refused:
        raise MTRefused(mt.destination, outcome.refused[0])
    mt_id = outcome.ids[0]
    assert mt_id is not None
    return mt_id


def _mt_row(mt: NewMT, subscriber_id: int | None, now: datetime) -> dict[str, object]:
    return {
        "status": MTStatus.QUEUED,
        "kind": mt.kind,
        "text": mt.text,
        "data_coding": mt.data_coding,
        "segments": 0,
        "attempts": 0,
        "next_attempt_at": mt.not_before or now,
        "priority": mt.priority,
        "request_receipt": mt.request_receipt,
        "carrier": mt.carrier,
        "bind_name": mt.bind_name,
        "source": mt.source,
        "destination": mt.destination,
        "subscriber_id": subscriber_id,
        "conversation_id": mt.conversation_id,
        "operator_id": mt.operator_id,
        "in_reply_to_mo_id": mt.in_reply_to_mo_id,
        "created_at": now,
        "updated_at": now,
        "last_error": None,
        "final_at": None,
        "claim_owner": None,
        "claim_expires_at": None,
    }


def _refusal(flags: tuple[bool, bool] | None) -> RefusalReason | None:
    if flags is None:
        return None
    opted_out, banned = flags
    if banned:
        return RefusalReason.BANNED
    if opted_out:
        return RefusalReason.OPTED_OUT
    return None


async def _subscribers_by_msisdn(session: AsyncSession, msisdns: set[str]) -> dict[str, tuple[int]]:
    if not msisdns:
        return {}
    result = await session.execute(
        select(SUBSCRIBERS.c.msisdn, SUBSCRIBERS.c.id).where(SUBSCRIBERS.c.msisdn.in_(sorted(msisdns)))
    )
    return {row.msisdn: (row.id,) for row in result}


async def _subscriber_flags(session: AsyncSession, ids: set[int]) -> dict[int, tuple[bool, bool]]:
    if not ids:
        return {}
    result = await session.execute(
        select(SUBSCRIBERS.c.id, SUBSCRIBERS.c.opted_out, SUBSCRIBERS.c.banned).where(
            SUBSCRIBERS.c.id.in_(sorted(ids))
        )
    )
    return {row.id: (row.opted_out, row.banned) for row in result}


async def _count_mts(session: AsyncSession, subscriber_ids: Iterable[object]) -> None:
    counts: dict[int, int] = {}
    for subscriber_id in subscriber_ids:
        if isinstance(subscriber_id, int):
            counts[subscriber_id] = counts.get(subscriber_id, 0) + 1
    if counts:
        statement = (
            update(SUBSCRIBERS)
            .where(SUBSCRIBERS.c.id == bindparam("b_id"))
            .values(mt_count=SUBSCRIBERS.c.mt_count + bindparam("b_count"))
        )
        await session.execute(statement, [{"b_id": sid, "b_count": n} for sid, n in sorted(counts.items())])


async def cancel_mt(session: AsyncSession, mt_id: int, now: datetime, *, detail: str | None = None) -> bool:
    """Cancels an MT still ``queued``; False when it was already claimed or final."""
    result = await session.execute(
        update(MT_MESSAGES)
        .where(MT_MESSAGES.c.id == mt_id, MT_MESSAGES.c.status == MTStatus.QUEUED)
        .values(status=MTStatus.CANCELLED, updated_at=now, final_at=now)
    )
    if not getattr(result, "rowcount", 0):
        return False
    await _insert_history(session, [(mt_id, MTStatus.CANCELLED, now, detail)])
    return True


# --------------------------------------------------------------------------------------------------
# Claiming and releasing
# --------------------------------------------------------------------------------------------------


async def claim_mts(
    session: AsyncSession,
    owner: str,
    now: datetime,
    *,
    limit: int,
    lease: float,
    carriers: Collection[str] | None = None,
) -> list[ClaimedMT]:
    """Leases up to ``limit`` due MTs (highest priority, then oldest) to ``owner`` for ``lease`` seconds:
    they become ``sending`` and their ``attempts`` grows by one.

    Safe with several daemons on one database: on PostgreSQL the candidates are locked with
    ``FOR UPDATE SKIP LOCKED`` (concurrent claimers take disjoint sets); SQLite serializes writers and
    the update re-checks ``status = 'queued'``. The caller commits, ideally at once.
    """
    if dialect_name(session) == "postgresql":
        expires_at = now + timedelta(seconds=lease)
        rows: Sequence[Any] = await pg.claim(session, owner, now, expires_at, limit, carriers)
        return await _claimed(session, rows, owner, now, history_written=True)
    table = MT_MESSAGES
    due = (
        select(table.c.id)
        .where(table.c.status == MTStatus.QUEUED, table.c.next_attempt_at <= now)
        .order_by(table.c.priority.desc(), table.c.next_attempt_at, table.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if carriers is not None:
        due = due.where(table.c.carrier.in_(sorted(carriers)))
    statement = (
        update(table)
        .where(table.c.id.in_(due.scalar_subquery()), table.c.status == MTStatus.QUEUED)
        .values(
            status=MTStatus.SENDING,
            claim_owner=owner,
            claim_expires_at=now + timedelta(seconds=lease),
            attempts=table.c.attempts + 1,
            updated_at=now,
        )
        .returning(
            table.c.id,
            table.c.kind,
            table.c.carrier,
            table.c.bind_name,
            table.c.source,
            table.c.destination,
            table.c.text,
            table.c.data_coding,
            table.c.priority,
            table.c.attempts,
            table.c.request_receipt,
            table.c.segments,
        )
    )
    rows = (await session.execute(statement)).all()
    return await _claimed(session, rows, owner, now, history_written=False)


async def _claimed(
    session: AsyncSession, rows: Sequence[Any], owner: str, now: datetime, *, history_written: bool
) -> list[ClaimedMT]:
    # parts are recorded (and their count known) once any came back: from an earlier attempt, or from
    # this one when its other parts were never sent and did not count it
    retried = [row.id for row in rows if row.segments > 0]
    done = await _done_parts(session, retried) if retried else {}
    claimed = [
        ClaimedMT(
            mt_id,
            _MT_KIND_BY_VALUE.get(kind) or MTKind(kind),
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
        ) in rows
    ]
    claimed.sort(key=lambda mt: (-mt.priority, mt.id))
    if claimed and not history_written:
        await _insert_history(
            session, [(mt.id, MTStatus.SENDING, now, f"attempt {mt.attempts} by {owner}") for mt in claimed]
        )
    return claimed


async def _done_parts(session: AsyncSession, mt_ids: Sequence[int]) -> dict[int, set[int]]:
    result = await session.execute(
        select(MT_PARTS.c.mt_id, MT_PARTS.c.part_no).where(
            MT_PARTS.c.mt_id.in_(mt_ids), MT_PARTS.c.status != PartStatus.REJECTED
        )
    )
    done: dict[int, set[int]] = {}
    for row in result:
        done.setdefault(row.mt_id, set()).add(row.part_no)
    return done


async def renew_leases(session: AsyncSession, owner: str, now: datetime, *, lease: float) -> int:
    """Extends the lease of every MT ``owner`` holds in ``sending`` to ``lease`` seconds from ``now``
    (they are all alive in that daemon: it reconciles its own at start); returns how many."""
    table = MT_MESSAGES
    result = await session.execute(
        update(table)
        .where(table.c.status == MTStatus.SENDING, table.c.claim_owner == owner)
        .values(claim_expires_at=now + timedelta(seconds=lease))
    )
    return int(getattr(result, "rowcount", 0))


async def requeue_mts(
    session: AsyncSession, mt_ids: Sequence[int], now: datetime, *, delay: float = 0.0, reason: str
) -> list[MTStatusChange]:
    """Gives claimed MTs back unsent (the bind went down, shutdown): ``queued`` again, the attempt not
    counted."""
    if not mt_ids:
        return []
    table = MT_MESSAGES
    result = await session.execute(
        update(table)
        .where(table.c.id.in_(sorted(mt_ids)), table.c.status == MTStatus.SENDING)
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
        MTStatusChange(mt_id, MTStatus.SENDING, MTStatus.QUEUED, now, reason[:_ERROR_TEXT_LIMIT])
        for mt_id in sorted(result.scalars())
    ]
    await _insert_history(session, [(c.mt_id, c.status, c.at, c.detail) for c in changes])
    return changes


# --------------------------------------------------------------------------------------------------
# Submit results
# --------------------------------------------------------------------------------------------------


async def record_part_results(
    session: AsyncSession,
    results: Sequence[PartResult],
    now: datetime,
    retry: RetryPolicy,
    receipts: Mapping[tuple[str, str], ReceiptIn] | None = None,
) -> list[MTStatusChange]:
    """Records each segment's submit_sm_resp, applies receipts that arrived early, and moves each
    touched MT on: ``accepted`` once every segment is accepted; on a rejected segment, back to
    ``queued`` after a back-off when retryable and attempts remain, else ``failed``.

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
    changes = await _record_sent_results(session, results, now, retry, receipts or {}) if results else []
    # an MT failed or queued for a retry by a rejected segment is not ``sending``: requeue leaves it
    for reason, ids in _group_by_reason(unsent).items():
        changes += await requeue_mts(session, ids, now, reason=reason)
    return changes


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


async def _record_sent_results(
    session: AsyncSession,
    results: Sequence[PartResult],
    now: datetime,
    retry: RetryPolicy,
    attached: Mapping[tuple[str, str], ReceiptIn],
) -> list[MTStatusChange]:
    # One row per part (a part given twice: the later result wins, as applied in order).
    rows = list(
        {
            (r.mt_id, r.part_no): _part_row(
                r, attached.get((r.carrier, r.smsc_message_id)) if r.smsc_message_id is not None else None
            )
            for r in sorted(results, key=lambda r: (r.mt_id, r.part_no))
        }.values()
    )
    segments = {r.mt_id: r.segments for r in results}
    on_postgresql = dialect_name(session) == "postgresql"
    if on_postgresql:
        await pg.record_parts(session, rows)
    else:
        await _record_parts(session, [row._asdict() for row in rows], segments)
    accepted_ids = [(r.carrier, r.smsc_message_id) for r in results if r.smsc_message_id is not None]
    touched_by_early = await _consume_early_receipts(session, accepted_ids)
    rejected: dict[int, PartResult] = {}
    for r in results:
        if not r.accepted and (r.mt_id not in rejected or not r.retryable):
            rejected[r.mt_id] = r
    changes = await _fail_or_retry(session, rejected, now, retry, segments)
    derived = {mt_id: count for mt_id, count in segments.items() if mt_id not in rejected}
    if not on_postgresql:
        return changes + await _derive(session, list(derived), now)
    # An MT whose every part is in this batch (a first attempt, nothing early applied to it) is
    # derived from the rows just written; the others from the database.
    written: dict[int, list[_PartRow]] = {}
    for row in rows:
        written.setdefault(row.mt_id, []).append(row)
    mts: list[tuple[int, str, int]] = []
    states: dict[int, list[PartStatus]] = {}
    errors: dict[int, int] = {}
    from_database: list[int] = []
    for mt_id, count in derived.items():
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
    moved, not_moved = await _move_postgresql(session, mts, states, errors, now, derived)
    changes += moved
    from_database += not_moved
    return changes + await _derive(session, from_database, now, segments=derived)


class _PartRow(NamedTuple):
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


def _part_row(result: PartResult, receipt: ReceiptIn | None) -> _PartRow:
    """A part's row; with ``receipt``, as :func:`_apply_receipts` would leave it."""
    if not result.accepted:
        return _PartRow(
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
        state, at = _state_text(receipt.state), receipt.received_at
        final = receipt_part_status(receipt.state)
        if final is not None:
            status, error = final, receipt.error_code
    return _PartRow(
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


async def _record_parts(
    session: AsyncSession, rows: list[dict[str, object]], segments: Mapping[int, int]
) -> None:
    insert = upsert_insert(session, MT_PARTS)
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
    await session.execute(statement, rows)
    await _set_segments(session, segments)


async def _set_segments(session: AsyncSession, segments: Mapping[int, int]) -> None:
    statement = (
        update(MT_MESSAGES)
        .where(MT_MESSAGES.c.id == bindparam("b_id"), MT_MESSAGES.c.segments != bindparam("b_segments"))
        .values(segments=bindparam("b_segments"))
    )
    await session.execute(
        statement, [{"b_id": mt_id, "b_segments": count} for mt_id, count in sorted(segments.items())]
    )


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
        select(table.c.id, table.c.status, table.c.attempts).where(table.c.id.in_(sorted(rejected)))
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
    await _insert_history(session, [(c.mt_id, c.status, c.at, c.detail) for c in changes])
    return changes


def _error_text(part: PartResult) -> str:
    code = f"0x{part.error_code:08X}" if part.error_code is not None else "no code"
    text = f"part {part.part_no} rejected ({code})" + (f": {part.error_text}" if part.error_text else "")
    return text[:_ERROR_TEXT_LIMIT]


# --------------------------------------------------------------------------------------------------
# Receipts
# --------------------------------------------------------------------------------------------------


async def record_receipts(
    session: AsyncSession, receipts: Sequence[ReceiptIn], now: datetime
) -> ReceiptOutcome:
    """Applies delivery receipts to the parts they name (by carrier + SMSC message id). A receipt whose
    part is not recorded yet (its submit_sm_resp is still in flight) is kept in ``early_receipts`` and
    applied by :func:`record_part_results`."""
    if not receipts:
        return ReceiptOutcome([], 0, 0)
    if dialect_name(session) == "postgresql":
        return await _record_receipts_postgresql(session, receipts, now)
    keys = {(r.carrier, r.smsc_message_id) for r in receipts}
    result = await session.execute(
        select(MT_PARTS.c.id, MT_PARTS.c.mt_id, MT_PARTS.c.carrier, MT_PARTS.c.smsc_message_id).where(
            _message_ids_in(MT_PARTS, keys)
        )
    )
    parts = {
        (row.carrier, row.smsc_message_id): (row.id, row.mt_id)
        for row in result
        if (row.carrier, row.smsc_message_id) in keys
    }
    matched = [r for r in receipts if (r.carrier, r.smsc_message_id) in parts]
    early = [r for r in receipts if (r.carrier, r.smsc_message_id) not in parts]
    if early:
        await session.execute(
            EARLY_RECEIPTS.insert(),
            [
                {
                    "carrier": r.carrier,
                    "smsc_message_id": r.smsc_message_id,
                    "state": _state_text(r.state),
                    "error_code": r.error_code,
                    "received_at": r.received_at,
                }
                for r in early
            ],
        )
    await _apply_receipts(session, [(parts[(r.carrier, r.smsc_message_id)][0], r) for r in matched])
    changes = await _derive(session, sorted({parts[(r.carrier, r.smsc_message_id)][1] for r in matched}), now)
    return ReceiptOutcome(changes, len(matched), len(early))


async def _record_receipts_postgresql(
    session: AsyncSession, receipts: Sequence[ReceiptIn], now: datetime
) -> ReceiptOutcome:
    chosen = _receipt_per_part(receipts)
    parts = await _apply_receipts_postgresql(session, chosen)
    found = {(row.carrier, row.smsc_message_id) for row in parts}
    early = [r for r in receipts if (r.carrier, r.smsc_message_id) not in found]
    if early:
        await pg.insert_early_receipts(
            session,
            [
                (r.carrier, r.smsc_message_id, _state_text(r.state), r.error_code, r.received_at)
                for r in early
            ],
        )
    # A one-part MT takes its status from its receipt; the others are derived from the database.
    per_mt: dict[int, int] = {}
    for row in parts:
        per_mt[row.mt_id] = per_mt.get(row.mt_id, 0) + 1
    mts: list[tuple[int, str, int]] = []
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
    changes, not_moved = await _move_postgresql(session, sorted(mts), states, errors, now, {})
    changes += await _derive(session, sorted(from_database.union(not_moved)), now)
    return ReceiptOutcome(changes, len(receipts) - len(early), len(early))


def _receipt_per_part(receipts: Iterable[ReceiptIn]) -> dict[tuple[str, str], ReceiptIn]:
    """The receipt that decides each part: the last final one, else the last intermediate one."""
    chosen: dict[tuple[str, str], ReceiptIn] = {}
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


async def _apply_receipts_postgresql(
    session: AsyncSession, chosen: Mapping[tuple[str, str], ReceiptIn]
) -> Sequence[Any]:
    """Applies each part's deciding receipt (see :func:`_receipt_per_part`); returns (mt_id, carrier,
    smsc_message_id, status, segments) per part found."""
    rows: list[tuple[str, str, str | None, str, datetime, int | None]] = []
    for (carrier, message_id), receipt in sorted(chosen.items()):
        final = receipt_part_status(receipt.state)
        rows.append(
            (
                carrier,
                message_id,
                final.value if final is not None else None,
                _state_text(receipt.state),
                receipt.received_at,
                receipt.error_code,
            )
        )
    return await pg.apply_receipts(session, rows)


async def _apply_receipts(session: AsyncSession, by_part: Sequence[tuple[int, ReceiptIn]]) -> None:
    rows: list[dict[str, Any]] = []
    for part_id, receipt in sorted(by_part, key=lambda item: (item[0], item[1].received_at)):
        outcome = receipt_part_status(receipt.state)
        rows.append(
            {
                "b_id": part_id,
                "b_state": _state_text(receipt.state),
                "b_at": receipt.received_at,
                "b_error": receipt.error_code,
                "b_final": outcome,
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


async def _consume_early_receipts(session: AsyncSession, keys: Sequence[tuple[str, str]]) -> set[int]:
    """Applies the early receipts of these parts; returns the ids of the MTs they touched."""
    if not keys:
        return set()
    table = EARLY_RECEIPTS
    wanted = set(keys)
    if dialect_name(session) == "postgresql":
        taken = await pg.take_early_receipts(session, wanted)
        if not taken:
            return set()
        parts = await _apply_receipts_postgresql(
            session,
            _receipt_per_part(
                ReceiptIn(r.carrier, r.smsc_message_id, r.state, r.received_at, r.error_code) for r in taken
            ),
        )
        return {row.mt_id for row in parts}
    result = await session.execute(
        select(
            table.c.id,
            table.c.carrier,
            table.c.smsc_message_id,
            table.c.state,
            table.c.error_code,
            table.c.received_at,
        ).where(_message_ids_in(table, wanted))
    )
    found = [row for row in result if (row.carrier, row.smsc_message_id) in wanted]
    if not found:
        return set()
    found_keys = {(r.carrier, r.smsc_message_id) for r in found}
    part_rows = await session.execute(
        select(MT_PARTS.c.id, MT_PARTS.c.mt_id, MT_PARTS.c.carrier, MT_PARTS.c.smsc_message_id).where(
            _message_ids_in(MT_PARTS, found_keys)
        )
    )
    part_ids = {
        (row.carrier, row.smsc_message_id): (row.id, row.mt_id)
        for row in part_rows
        if (row.carrier, row.smsc_message_id) in found_keys
    }
    await _apply_receipts(
        session,
        [
            (
                part_ids[(r.carrier, r.smsc_message_id)][0],
                ReceiptIn(r.carrier, r.smsc_message_id, r.state, r.received_at, r.error_code),
            )
            for r in found
        ],
    )
    await session.execute(delete(table).where(table.c.id.in_([r.id for r in found])))
    return {mt_id for _, mt_id in part_ids.values()}


async def purge_early_receipts(session: AsyncSession, received_before: datetime) -> int:
    """Drops early receipts never matched (their MT was never recorded); returns how many."""
    statement = delete(EARLY_RECEIPTS).where(EARLY_RECEIPTS.c.received_at < received_before)
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0))


def _message_ids_in(table: Table, keys: set[tuple[str, str]]) -> ColumnElement[bool]:
    """A superset filter for (carrier, smsc_message_id) pairs; callers keep the exact pairs. Two plain
    IN lists use the (carrier, smsc_message_id) index where a row-value IN plans badly on PostgreSQL."""
    return and_(
        table.c.carrier.in_(sorted({carrier for carrier, _ in keys})),
        table.c.smsc_message_id.in_(sorted({message_id for _, message_id in keys})),
    )


def _state_text(state: str) -> str:
    return state.strip().upper()[:16]


# --------------------------------------------------------------------------------------------------
# Status derivation, reconciliation, depth
# --------------------------------------------------------------------------------------------------


async def _derive(
    session: AsyncSession, mt_ids: Sequence[int], now: datetime, *, segments: Mapping[int, int] | None = None
) -> list[MTStatusChange]:
    """Moves each MT in ``sending``/``accepted`` to the status its parts imply. ``segments``: segment
    counts just learnt (PostgreSQL only), stored with the status change instead of by a statement of
    their own."""
    if not mt_ids:
        return []
    table = MT_MESSAGES
    ids = sorted(set(mt_ids))
    if dialect_name(session) == "postgresql":
        return await _derive_postgresql(session, ids, now, segments or {})
    mts = (
        await session.execute(
            select(table.c.id, table.c.status, table.c.segments).where(
                table.c.id.in_(ids), table.c.status.in_([MTStatus.SENDING, MTStatus.ACCEPTED])
            )
        )
    ).all()
    if not mts:
        return []
    part_rows = await session.execute(
        select(MT_PARTS.c.mt_id, MT_PARTS.c.status, MT_PARTS.c.error_code).where(
            MT_PARTS.c.mt_id.in_([row.id for row in mts])
        )
    )
    states: dict[int, list[PartStatus]] = {}
    errors: dict[int, int] = {}
    for part in part_rows:
        states.setdefault(part.mt_id, []).append(PartStatus(part.status))
        if part.error_code:
            errors[part.mt_id] = part.error_code
    changes, moves = _derived_changes(
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
    await _insert_history(session, [(c.mt_id, c.status, c.at, c.detail) for c in changes])
    return changes


async def _derive_postgresql(
    session: AsyncSession, ids: Sequence[int], now: datetime, segments: Mapping[int, int]
) -> list[MTStatusChange]:
    mts: dict[int, tuple[int, str, int]] = {}
    states: dict[int, list[PartStatus]] = {}
    errors: dict[int, int] = {}
    stored_segments: dict[int, int] = {}
    for row in await pg.mts_with_parts(session, ids):
        if row.id not in mts:
            stored_segments[row.id] = row.segments
            mts[row.id] = (row.id, row.status, segments.get(row.id, row.segments))
        if row.part_status is not None:
            states.setdefault(row.id, []).append(
                _PART_STATUS_BY_VALUE.get(row.part_status) or PartStatus(row.part_status)
            )
        if row.error_code:
            errors[row.id] = row.error_code
    changes, _ = await _move_postgresql(session, sorted(mts.values()), states, errors, now, segments)
    moved = {change.mt_id for change in changes}
    # Segment counts of MTs that did not move (not in sending/accepted any more, or still waiting).
    unchanged = {
        mt_id: segments[mt_id]
        for mt_id in ids
        if mt_id in segments and mt_id not in moved and stored_segments.get(mt_id) != segments[mt_id]
    }
    if unchanged:
        await pg.set_segments(session, unchanged)
    return changes


async def _move_postgresql(
    session: AsyncSession,
    mts: Sequence[tuple[int, str, int]],
    states: Mapping[int, list[PartStatus]],
    errors: Mapping[int, int],
    now: datetime,
    segments: Mapping[int, int],
) -> tuple[list[MTStatusChange], list[int]]:
    """Moves each (id, status, segments) MT to what its part states imply, if it is still in that
    status; returns the changes made and the ids of MTs found in another status."""
    changes, moves = _derived_changes(mts, states, errors, now)
    if not moves:
        return [], []
    moved = await pg.change_status(
        session,
        [
            (mt_id, previous.value, target.value, target.is_final, segments.get(mt_id, 0))
            for mt_id, previous, target in moves
        ],
        [(c.mt_id, c.status.value, c.detail) for c in changes],
        now,
    )
    if len(moved) == len(moves):
        return changes, []
    return [c for c in changes if c.mt_id in moved], [mt_id for mt_id, _, _ in moves if mt_id not in moved]


def _derived_changes(
    mts: Iterable[tuple[int, str, int]],
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
        current = _MT_STATUS_BY_VALUE.get(status) or MTStatus(status)
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


async def reconcile_sending(
    session: AsyncSession, now: datetime, *, owner: str | None = None
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
    changes = await _derive(session, rows, now)
    settled = {change.mt_id for change in changes}
    remaining = [mt_id for mt_id in rows if mt_id not in settled]
    if remaining:
        await session.execute(
            update(table)
            .where(table.c.id.in_(remaining), table.c.status == MTStatus.SENDING)
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
        await _insert_history(session, [(c.mt_id, c.status, c.at, c.detail) for c in requeued])
        changes += requeued
    return changes


async def outbox_depth(session: AsyncSession) -> dict[str, int]:
    """MTs not yet handed to an SMSC (``queued`` + ``sending``) per carrier."""
    result = await session.execute(
        select(MT_MESSAGES.c.carrier, func.count())
        .where(MT_MESSAGES.c.status.in_([MTStatus.QUEUED, MTStatus.SENDING]))
        .group_by(MT_MESSAGES.c.carrier)
    )
    return {row[0]: int(row[1]) for row in result}


async def _insert_history(
    session: AsyncSession, entries: Sequence[tuple[int, MTStatus, datetime, str | None]]
) -> None:
    if entries:
        rows = [
            {"mt_id": mt_id, "status": status, "at": at, "detail": detail}
            for mt_id, status, at, detail in entries
        ]
        await session.execute(HISTORY.insert(), rows)
