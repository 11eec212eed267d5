"""The MT outbox's hot path on PostgreSQL: claims, part results, receipts and status changes as array
statements (one round trip each, whatever the batch size).

Rows other transactions may update at the same time (an MT's status, a part's receipt) are locked in
id order (``ORDER BY id FOR UPDATE``) before they are updated, so concurrent batches queue instead of
deadlocking.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._pg import aware, pg_execute, pg_rows

# The due MTs, highest priority first and oldest first within one, read from the claim-order index
# (carrier, priority, due time, id) without sorting the backlog: the priorities a carrier has queued (one
# index probe each, highest first) and each one's due MTs from the front of its range. Sorting all due
# MTs at once took 1.5 ms a claim of ten with 10,000 queued, most of a small window's claims. A carrier
# left out (its binds down, or another daemon's) costs nothing, and neither do MTs due later at a high
# priority. Each read says ``priority >= -32768`` (every smallint), as the index's predicate does
# (CLAIM_ORDER_PREDICATE), which no other statement says.
#
# One carrier: its due MTs locked as they are taken, no more than the claim's limit.
_DUE_OF_ONE_CARRIER = """
priorities(priority) AS (
    (SELECT priority FROM mt_messages
     WHERE status = 'queued' AND priority >= -32768 AND carrier = $5::varchar
     ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT m.priority FROM mt_messages AS m
            WHERE m.status = 'queued' AND m.priority >= -32768 AND m.carrier = $5::varchar
                  AND m.priority < p.priority
            ORDER BY m.priority DESC LIMIT 1)
    FROM priorities AS p WHERE p.priority IS NOT NULL
), due AS (
    SELECT d.id FROM priorities AS p
    CROSS JOIN LATERAL (
        SELECT id FROM mt_messages
        WHERE status = 'queued' AND priority >= -32768 AND carrier = $5::varchar
              AND priority = p.priority
              AND next_attempt_at <= $1::timestamptz
        ORDER BY next_attempt_at, id
        LIMIT $2::bigint
        FOR UPDATE SKIP LOCKED
    ) AS d
    LIMIT $2::bigint
"""
# Several carriers: each one's priorities' first due MTs, the claim's limit and a margin at most, are
# the candidates; the best of them in the claim's order are locked as they are taken. The margin: a
# claim racing another daemon's over the same carrier takes the MTs after the ones that claim locked
# (one that finds every candidate locked is followed by a claim per carrier: ``claim``).
_DUE_OF_CARRIERS = """
priorities(carrier, priority) AS (
    SELECT c.carrier, (SELECT m.priority FROM mt_messages AS m
                       WHERE m.status = 'queued' AND m.priority >= -32768 AND m.carrier = c.carrier
                       ORDER BY m.priority DESC LIMIT 1)
    FROM carriers AS c
    UNION ALL
    SELECT p.carrier, (SELECT m.priority FROM mt_messages AS m
                       WHERE m.status = 'queued' AND m.priority >= -32768 AND m.carrier = p.carrier
                             AND m.priority < p.priority
                       ORDER BY m.priority DESC LIMIT 1)
    FROM priorities AS p WHERE p.priority IS NOT NULL
), candidates AS (
    SELECT d.id FROM priorities AS p
    CROSS JOIN LATERAL (
        SELECT m.id, m.next_attempt_at FROM mt_messages AS m
        WHERE m.status = 'queued' AND m.priority >= -32768 AND m.carrier = p.carrier
              AND m.priority = p.priority
              AND m.next_attempt_at <= $1::timestamptz
        ORDER BY m.next_attempt_at, m.id
        LIMIT $2::bigint + 16
    ) AS d
    WHERE p.priority IS NOT NULL
    ORDER BY p.priority DESC, d.next_attempt_at, d.id
    LIMIT $2::bigint + 16
), due AS (
    -- By primary key: the status test is written so that no partial index's predicate matches it
    -- (with the statistics of an outbox nearly empty when last analyzed, the planner scanned the whole
    -- claim-order index for the candidates' ids: 10 ms a claim of 200)
    SELECT id FROM mt_messages
    WHERE id = ANY(ARRAY(SELECT id FROM candidates)) AND coalesce(status, '') = 'queued'
    ORDER BY priority DESC, next_attempt_at, id
    LIMIT $2::bigint
    FOR UPDATE SKIP LOCKED
"""
_CLAIM = """
WITH RECURSIVE {due}), claimed AS (
    UPDATE mt_messages AS m
    SET status = 'sending', claim_owner = $3::varchar, claim_expires_at = $4::timestamptz,
        attempts = m.attempts + 1, updated_at = $1::timestamptz
    -- By primary key alone (``due`` locked the rows while still queued): joined to the CTE, with the
    -- statistics of an outbox that was empty when last analyzed, the planner scanned the outbox index
    -- once per due row, quadratic in the backlog (600 ms a claim with 12,000 MTs queued).
    WHERE m.id = ANY(ARRAY(SELECT id FROM due))
    RETURNING m.id, m.kind, m.carrier, m.bind_name, m.source, m.destination, m.text, m.data_coding,
              m.priority, m.attempts, m.request_receipt, m.segments
), history AS (
    INSERT INTO mt_status_history (mt_id, status, at, detail)
    SELECT id, 'sending', $1::timestamptz, 'attempt ' || attempts || ' by ' || $3::varchar
    FROM claimed ORDER BY priority DESC, id
)
SELECT c.id, c.kind, c.carrier, c.bind_name, c.source, c.destination, c.text, c.data_coding, c.priority,
       c.attempts, c.request_receipt, c.segments, s.opted_out, s.banned, s.banned_reason
FROM claimed AS c
-- the recipient's flags in the same round trip, as of this statement's snapshot: whether they may
-- still be sent to (``refusal``); an index probe per MT (the number is unique: LIMIT 1 keeps it a probe)
LEFT JOIN LATERAL (SELECT s.opted_out, s.banned, s.banned_reason FROM subscribers AS s
                   WHERE s.msisdn = c.destination LIMIT 1) AS s ON true
"""
_CLAIM_ONE_CARRIER = _CLAIM.format(due=_DUE_OF_ONE_CARRIER)
_CLAIM_CARRIERS = _CLAIM.format(
    due="carriers(carrier) AS (SELECT unnest($5::varchar[])), " + _DUE_OF_CARRIERS
)
# every carrier with MTs queued, one index probe each
_CLAIM_ANY_CARRIER = _CLAIM.format(
    due="""carriers(carrier) AS (
    (SELECT min(carrier) FROM mt_messages WHERE status = 'queued' AND priority >= -32768)
    UNION ALL
    SELECT (SELECT min(m.carrier) FROM mt_messages AS m
            WHERE m.status = 'queued' AND m.priority >= -32768 AND m.carrier > c.carrier)
    FROM carriers AS c WHERE c.carrier IS NOT NULL
), """
    + _DUE_OF_CARRIERS
)

# Each segment's submit result (with its receipt, when that came first); a part recorded again (a retry)
# is replaced. The early receipts of the accepted parts are taken in the same round trip, as of this
# statement's snapshot: one committed meanwhile by a transaction that could not see the part is left to
# ``Receipts.sweep_early``, as one committed during a statement of its own was.
_RECORD_PARTS = """
WITH recorded AS (
    INSERT INTO mt_parts (mt_id, part_no, carrier, bind_name, smsc_message_id, status, submitted_at,
                          accepted_at, receipt_state, receipt_at, error_code)
    SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::varchar[], $4::varchar[], $5::varchar[],
                         $6::varchar[], $7::timestamptz[], $8::timestamptz[], $9::varchar[],
                         $10::timestamptz[], $11::integer[])
        AS i(mt_id, part_no, carrier, bind_name, smsc_message_id, status, submitted_at, accepted_at,
             receipt_state, receipt_at, error_code)
    ORDER BY mt_id, part_no
    ON CONFLICT (mt_id, part_no) DO UPDATE SET
        carrier = excluded.carrier, bind_name = excluded.bind_name,
        smsc_message_id = excluded.smsc_message_id, status = excluded.status,
        submitted_at = excluded.submitted_at, accepted_at = excluded.accepted_at,
        receipt_state = excluded.receipt_state, receipt_at = excluded.receipt_at,
        error_code = excluded.error_code
    RETURNING carrier, smsc_message_id
), taken AS (  -- the early receipts of the parts accepted (see receipts.py): nearly always none
    DELETE FROM early_receipts AS e
    -- keyed by what the upsert wrote: reading it all first, the parts are locked before the early
    -- receipts, in the order the sweep locks them (keyed by the parameters, the DELETE ran first, and
    -- a sweep racing a part written again deadlocked with it: the review's probe)
    USING (SELECT DISTINCT carrier, smsc_message_id FROM recorded WHERE smsc_message_id IS NOT NULL) AS k
    WHERE e.carrier = k.carrier AND e.smsc_message_id = k.smsc_message_id
    RETURNING e.id, e.carrier, e.smsc_message_id, e.state, e.error_code, e.received_at
)
SELECT * FROM taken
"""

_SET_SEGMENTS = """
WITH locked AS (
    SELECT m.id, c.segments
    FROM unnest($1::bigint[], $2::smallint[]) AS c(id, segments)
    JOIN mt_messages AS m ON m.id = c.id AND m.segments != c.segments
    ORDER BY m.id FOR UPDATE OF m
)
UPDATE mt_messages AS m SET segments = l.segments
FROM locked AS l
WHERE m.id = l.id
"""

# Receipts applied to the parts they name, in one statement: a final state sets the part's status and
# error; an intermediate one (ENROUTE, ACCEPTD) is noted only on a part still ``accepted``. Returns each
# part's MT with its status and segment count (as before this statement) for the status derivation.
_APPLY_RECEIPTS = """
WITH locked AS (
    SELECT p.id, p.mt_id, r.carrier, r.smsc_message_id, r.final, r.state, r.at, r.error_code
    FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::timestamptz[],
                $6::integer[]) AS r(carrier, smsc_message_id, final, state, at, error_code)
    JOIN mt_parts AS p ON p.carrier = r.carrier AND p.smsc_message_id = r.smsc_message_id
    WHERE p.smsc_message_id = ANY($2::varchar[])
    ORDER BY p.id FOR UPDATE OF p
), updated AS (
    UPDATE mt_parts AS p
    SET status = COALESCE(l.final, p.status),
        receipt_state = CASE WHEN l.final IS NOT NULL OR p.status = 'accepted' THEN l.state
                             ELSE p.receipt_state END,
        receipt_at = CASE WHEN l.final IS NOT NULL OR p.status = 'accepted' THEN l.at ELSE p.receipt_at END,
        error_code = CASE WHEN l.final IS NOT NULL THEN l.error_code ELSE p.error_code END
    FROM locked AS l
    WHERE p.id = l.id
)
SELECT l.mt_id, l.carrier, l.smsc_message_id, m.status, m.segments
FROM locked AS l JOIN mt_messages AS m ON m.id = l.mt_id
"""

_INSERT_EARLY_RECEIPTS = """
INSERT INTO early_receipts (carrier, smsc_message_id, state, error_code, received_at)
SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::integer[], $5::timestamptz[])
"""

# Taken before their parts are read, in a statement of its own: a transaction deriving the same MT
# from another part's receipt waits for this one's commit, then reads the parts it wrote (READ
# COMMITTED takes a fresh snapshot per statement), instead of both deciding from a view without the
# other's part and leaving the MT short of its final status.
_LOCK_MTS = """
SELECT id FROM mt_messages
WHERE id = ANY($1::bigint[]) AND status IN ('sending', 'accepted')
ORDER BY id FOR UPDATE
"""

_MTS_WITH_PARTS = """
SELECT m.id, m.status, m.segments, p.status AS part_status, p.error_code
FROM mt_messages AS m LEFT JOIN mt_parts AS p ON p.mt_id = m.id
WHERE m.id = ANY($1::bigint[]) AND m.status IN ('sending', 'accepted')
"""

# Status changes and their history lines; the lock re-checks the status each MT moves from (on a row
# changed meanwhile, PostgreSQL re-evaluates the join against the newest version), and only the MTs
# that moved get their history lines. The update then joins the locked rows by primary key only: a CTE
# joined to a CTE on (id, status) is estimated at a handful of rows and planned as a nested loop over
# both, quadratic in the batch size. A segment count above 0 is stored with the change.
_CHANGE_STATUS = """
WITH locked AS (
    SELECT m.id, c.status, c.final, c.segments
    FROM unnest($1::bigint[], $2::varchar[], $3::varchar[], $4::boolean[], $5::smallint[])
        AS c(id, previous, status, final, segments)
    JOIN mt_messages AS m ON m.id = c.id AND m.status = c.previous
    WHERE m.id = ANY($1::bigint[])
    ORDER BY m.id FOR UPDATE OF m
), updated AS (
    UPDATE mt_messages AS m
    SET status = l.status, updated_at = $9::timestamptz, claim_owner = NULL, claim_expires_at = NULL,
        final_at = CASE WHEN l.final THEN $9::timestamptz ELSE m.final_at END,
        segments = CASE WHEN l.segments > 0 THEN l.segments ELSE m.segments END
    FROM locked AS l
    WHERE m.id = l.id
    RETURNING m.id, l.status, l.final, m.created_at, m.carrier, m.source, m.operator_id, m.subscriber_id,
              m.conversation_id, m.charge
), history AS (
    INSERT INTO mt_status_history (mt_id, status, at, detail)
    SELECT h.mt_id, h.status, $9::timestamptz, h.detail
    FROM unnest($6::bigint[], $7::varchar[], $8::varchar[]) WITH ORDINALITY AS h(mt_id, status, detail, n)
    WHERE h.mt_id IN (SELECT id FROM updated)
    ORDER BY h.n
)
SELECT u.id, u.status, u.final, u.created_at, u.carrier, u.source, u.operator_id, s.country, c.service,
       u.subscriber_id, u.charge
FROM updated AS u
LEFT JOIN subscribers AS s ON u.final AND s.id = u.subscriber_id
LEFT JOIN conversations AS c ON u.final AND c.id = u.conversation_id
"""


async def claim(
    session: AsyncSession,
    owner: str,
    now: datetime,
    expires_at: datetime,
    limit: int,
    carriers: Collection[str] | None,
) -> Sequence[Any]:
    """Leases due MTs and writes their ``sending`` history; returns the claimed rows, each with its
    recipient's ``opted_out``, ``banned`` and ``banned_reason`` (NULL when no subscriber has the
    number)."""
    if carriers is None:
        return await pg_rows(session, _CLAIM_ANY_CARRIER, aware(now), limit, owner, aware(expires_at))
    by_carrier = sorted(carriers)
    if len(by_carrier) > 1:
        rows = await pg_rows(
            session, _CLAIM_CARRIERS, aware(now), limit, owner, aware(expires_at), by_carrier
        )
        if rows:
            return rows
        # every candidate may have been locked by other daemons' claims: each carrier alone walks past them
    for carrier in by_carrier:
        rows = await pg_rows(
            session, _CLAIM_ONE_CARRIER, aware(now), limit, owner, aware(expires_at), carrier
        )
        if rows:
            return rows
    return []


async def record_parts(session: AsyncSession, rows: Sequence[tuple[Any, ...]]) -> Sequence[Any]:
    """Upserts part rows (unique (mt_id, part_no)), each (mt_id, part_no, carrier, bind_name,
    smsc_message_id, status, submitted_at, accepted_at, receipt_state, receipt_at, error_code), and
    removes and returns the early receipts of those with an SMSC message id, in the same round trip."""
    columns: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)]
    columns[5] = [str(status) for status in columns[5]]
    return await pg_rows(session, _RECORD_PARTS, *columns)


async def set_segments(session: AsyncSession, segments: dict[int, int]) -> None:
    """Stores each MT's segment count where it differs."""
    ordered = sorted(segments.items())
    await pg_execute(session, _SET_SEGMENTS, [mt_id for mt_id, _ in ordered], [count for _, count in ordered])


async def apply_receipts(
    session: AsyncSession, rows: Sequence[tuple[str, str, str | None, str, datetime, int | None]]
) -> Sequence[Any]:
    """(carrier, smsc message id, final part status or None, receipt state, received at, error code), one
    per part. Returns (mt_id, carrier, smsc_message_id, status, segments) per part found."""
    return await pg_rows(
        session,
        _APPLY_RECEIPTS,
        *([row[i] for row in rows] for i in range(4)),
        [aware(row[4]) for row in rows],
        [row[5] for row in rows],
    )


async def insert_early_receipts(
    session: AsyncSession, rows: Sequence[tuple[str, str, str, int | None, datetime]]
) -> None:
    await pg_execute(
        session,
        _INSERT_EARLY_RECEIPTS,
        *([row[i] for row in rows] for i in range(4)),
        [aware(row[4]) for row in rows],
    )


async def mts_with_parts(session: AsyncSession, mt_ids: Sequence[int]) -> Sequence[Any]:
    """For each MT in ``sending``/``accepted``, locked first: (id, status, segments, part_status,
    error_code), one row per part (part columns NULL for an MT with no part yet)."""
    ids = list(mt_ids)
    await pg_execute(session, _LOCK_MTS, ids)
    return await pg_rows(session, _MTS_WITH_PARTS, ids)


async def change_status(
    session: AsyncSession,
    moves: Sequence[tuple[int, str, str, bool, int]],
    history: Sequence[tuple[int, str, str | None]],
    now: datetime,
) -> Sequence[Any]:
    """``moves``: (mt id, previous, status, is final, segments or 0), one per MT: moves each MT still in
    ``previous``. ``history``: (mt id, status, detail) lines at ``now``, written for the MTs that
    moved. Returns a row per MT that moved: ``id``, ``status``, ``final`` and, for a final status, what
    the reports' rollups count it by (``created_at``, ``carrier``, ``source``, ``operator_id``,
    ``country``, ``service``) and what gives a billed MT's charge back (``subscriber_id``,
    ``charge``), read in the same round trip."""
    return await pg_rows(
        session,
        _CHANGE_STATUS,
        *([move[i] for move in moves] for i in range(5)),
        *([line[i] for line in history] for i in range(3)),
        aware(now),
    )
