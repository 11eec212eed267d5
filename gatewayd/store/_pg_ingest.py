"""The MO ingest path on PostgreSQL: subscribers, conversations and MOs, one array statement each.

Each statement inserts what is missing and reads back what exists in one round trip. Look-ups by key
are ``LATERAL (... LIMIT 1)`` probes, one index probe per input row, where a join could scan and hash
the whole table. A statement sees the database as of its start, so a row a concurrent transaction
committed meanwhile can be neither inserted (conflict) nor read: the callers look those few up again
with a fresh statement.
Rows that other batches may update at the same time are locked in id order (``ORDER BY id FOR
UPDATE``) before they are updated, so concurrent batches queue instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._pg import Autocommit, aware, pg_rows
from gatewayd.store.errors import NeedsTransaction
from gatewayd.store.mt.held import held_sql
from gatewayd.store.pg_functions import NEEDS_TRANSACTION_FUNCTION
from gatewayd.store.rollups import TRAFFIC_KEY, TRAFFIC_MEASURES
from gatewayd.store.rollups_rebuild import POSTGRESQL

# A subscriber created here starts with the MOs of the batch already counted (``mo_count``,
# ``last_seen``), so the MO statement need not rewrite the row it just inserted; ``counted`` tells it.
_INSERT_SUBSCRIBERS = """
WITH input AS (
    SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $6::integer[],
                         $7::timestamptz[])
        AS i(msisdn, client_id, carrier, country, mos, last_mo_at)
), inserted AS (
    INSERT INTO subscribers (client_id, msisdn, carrier, country, first_seen, last_seen, opted_out, banned,
                             mo_count, mt_count)
    SELECT i.client_id, i.msisdn, i.carrier, i.country, $5::timestamptz,
           GREATEST($5::timestamptz, i.last_mo_at), false, false, i.mos, 0
    FROM input AS i
    LEFT JOIN LATERAL (SELECT true AS known FROM subscribers AS s WHERE s.msisdn = i.msisdn LIMIT 1) AS k
        ON true
    WHERE k.known IS NULL
    ORDER BY i.msisdn
    ON CONFLICT DO NOTHING
    RETURNING id, client_id, msisdn, carrier, country, opted_out, banned, mo_count AS counted
)
SELECT id, client_id, msisdn, carrier, country, opted_out, banned, counted, true AS created FROM inserted
UNION ALL
SELECT s.id, s.client_id, s.msisdn, s.carrier, s.country, s.opted_out, s.banned, 0, false
FROM input AS i
JOIN LATERAL (SELECT * FROM subscribers AS s WHERE s.msisdn = i.msisdn LIMIT 1) AS s ON true
"""

# A conversation opened here already waits since its first MO of the batch and knows its last one, so
# the MO statement finds nothing to change on it (no second row version, no index writes).
_OPEN_CONVERSATIONS = """
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::varchar[], $3::varchar[], $5::timestamptz[], $6::timestamptz[],
                         $7::varchar[], $8::boolean[])
        AS i(subscriber_id, short_code, service, first_mo_at, last_mo_at, operator_pool, callcentre)
), inserted AS (
    INSERT INTO conversations (subscriber_id, short_code, status, service, opened_at, waiting_since,
                               last_mo_at, operator_pool, callcentre)
    SELECT i.subscriber_id, i.short_code, 'waiting', i.service, $4::timestamptz, i.first_mo_at, i.last_mo_at,
           i.operator_pool, i.callcentre
    FROM input AS i
    LEFT JOIN LATERAL (SELECT true AS active FROM conversations AS c
                       WHERE c.subscriber_id = i.subscriber_id AND c.short_code = i.short_code
                         AND c.status != 'closed' LIMIT 1) AS a ON true
    WHERE a.active IS NULL
    ORDER BY i.subscriber_id, i.short_code
    ON CONFLICT DO NOTHING
    RETURNING subscriber_id, short_code, id
)
SELECT subscriber_id, short_code, id FROM inserted
UNION ALL
SELECT c.subscriber_id, c.short_code, c.id
FROM input AS i
JOIN LATERAL (SELECT * FROM conversations AS c
              WHERE c.subscriber_id = i.subscriber_id AND c.short_code = i.short_code AND c.status != 'closed'
              LIMIT 1) AS c ON true
"""

_ACTIVE_CONVERSATIONS = """
SELECT c.subscriber_id, c.short_code, c.id
FROM conversations AS c
JOIN unnest($1::bigint[], $2::varchar[]) AS i(subscriber_id, short_code)
    ON c.subscriber_id = i.subscriber_id AND c.short_code = i.short_code
WHERE c.status != 'closed'
"""

# Shared by the MO statements below (``{since}``: their parameter). ``matched``: the MOs of ``input`` that
# deliver again an MO received since then whose answer is unconfirmed (see ``NewMO.check_redelivery``).
_REDELIVERED = """), matched AS (  -- redeliveries: the MO each delivers again, whose answer is unconfirmed
    SELECT input.dedup_key, earlier.id, input.answer_id
    FROM input
    -- LIMIT 1 keeps this a per-row index probe: an anti-join could hash the whole table
    JOIN LATERAL (SELECT m.id FROM mo_messages AS m
                  JOIN mo_unconfirmed AS u ON u.id = m.answer_id
                  WHERE m.dedup_key = input.dedup_key AND m.received_at >= {since}
                  LIMIT 1) AS earlier ON true
    WHERE input.check_redelivery
"""
# The conversations of the MOs ``inserted``, marked waiting (waiting_since keeps the oldest unanswered
# MO, last_mo_at the newest). ``{ids}``: the conversations' ids as an array (an index condition for the
# planner). Every one is locked, even one already up to date (a later MO marked it), which is then
# not rewritten: a lock that had to wait returns the row's newest version, so ``closed_meanwhile``
# names those an operator closed after the batch found them open, and an MO never lands in a
# conversation closed before it was committed. A closed conversation is never set waiting again, since the
# pair may have opened its next one already (one active conversation per pair is the rule). The
# caller then raises ``ClosedMeanwhile``: the batch is tried again in a new transaction, whose
# statements see the close and put the MOs in the pair's next conversation in the usual lock order
# (moving them in this transaction would lock that conversation after the batch's other rows,
# crosswise to other batches: a reviewer's stress met a deadlock a second).
_MARKED_WAITING = """), per_conversation AS (
    SELECT conversation_id, min(received_at) AS first_at, max(received_at) AS last_at FROM inserted
    WHERE conversation_id IS NOT NULL GROUP BY conversation_id
), locked_conversations AS (
    SELECT c.id, c.status, p.first_at, p.last_at
    FROM conversations AS c JOIN per_conversation AS p ON c.id = p.conversation_id
    WHERE c.id = ANY({ids})
    ORDER BY c.id FOR UPDATE OF c
), noted_conversations AS (
    UPDATE conversations AS c
    SET status = 'waiting', waiting_since = COALESCE(c.waiting_since, l.first_at),
        last_mo_at = CASE WHEN c.last_mo_at IS NULL OR c.last_mo_at < l.last_at THEN l.last_at
                          ELSE c.last_mo_at END
    FROM locked_conversations AS l
    WHERE c.id = l.id AND l.status != 'closed'
      AND NOT (c.status = 'waiting' AND c.waiting_since IS NOT NULL AND c.last_mo_at IS NOT NULL
               AND c.last_mo_at >= l.last_at)
), closed_meanwhile AS (
    SELECT id FROM locked_conversations WHERE status = 'closed'"""

# The MOs that are no redelivery (see ``NewMO.check_redelivery``; the MO a redelivery delivers again
# takes its answer, so that it is confirmed when that one is), then for the new ones only: their
# subscribers' counters and their conversations' waiting marks (waiting_since keeps the oldest
# unanswered MO, last_mo_at the newest). Rows already up to date (created by this batch with its
# figures) are not rewritten, and such subscribers not locked either. The locking CTEs carry the new
# figures, so each update joins one CTE by primary key: a CTE joined to another CTE is estimated at a
# handful of rows and may be planned as a nested loop over both, quadratic in the batch size (it was:
# 340 ms for 2,000 MOs of known subscribers).
_INSERT_MOS = (
    """
WITH input AS (
    SELECT * FROM unnest($1::varchar[], $2::bigint[], $3::bigint[], $4::varchar[], $5::varchar[],
                         $6::varchar[], $7::varchar[], $8::text[], $9::smallint[], $10::smallint[],
                         $11::boolean[], $12::varchar[], $13::timestamptz[], $14::varchar[], $15::varchar[],
                         $16::bytea[], $17::bigint[], $18::boolean[])
        AS i(dedup_key, subscriber_id, conversation_id, carrier, bind_name, short_code, country, text,
             data_coding, parts, incomplete, smsc_message_id, received_at, service, keyword, raw, answer_id,
             check_redelivery)
"""
    + _REDELIVERED.replace("{since}", "$19::timestamptz")
    + """), rehomed AS (  -- the MO delivered again is answered now by this batch: confirmed with its answers
    UPDATE mo_messages AS m SET answer_id = matched.answer_id
    FROM matched WHERE m.id = matched.id AND matched.answer_id IS NOT NULL
), inserted AS (
    INSERT INTO mo_messages (dedup_key, subscriber_id, conversation_id, carrier, bind_name, short_code,
                             country, text, data_coding, parts, incomplete, smsc_message_id, received_at,
                             service, keyword, raw, answer_id)
    SELECT dedup_key, subscriber_id, conversation_id, carrier, bind_name, short_code, country, text,
           data_coding, parts, incomplete, smsc_message_id, received_at, service, keyword, raw, answer_id
    FROM input
    WHERE NOT EXISTS (SELECT 1 FROM matched WHERE matched.dedup_key = input.dedup_key)
    RETURNING id, dedup_key, subscriber_id, conversation_id, received_at
), inserted_per_subscriber AS (
    SELECT subscriber_id, count(*) AS mos, max(received_at) AS latest FROM inserted GROUP BY subscriber_id
), per_subscriber AS (  -- what is left to count: minus what the subscriber's creation counted already
    SELECT COALESCE(n.subscriber_id, f.id) AS subscriber_id,
           COALESCE(n.mos, 0) - COALESCE(f.counted, 0) AS mos, n.latest
    FROM inserted_per_subscriber AS n
    FULL JOIN unnest($22::bigint[], $23::integer[]) AS f(id, counted) ON f.id = n.subscriber_id
), locked_subscribers AS (
    SELECT s.id, p.mos, p.latest FROM subscribers AS s JOIN per_subscriber AS p ON s.id = p.subscriber_id
    WHERE s.id = ANY($20::bigint[]) AND (p.mos != 0 OR s.last_seen < p.latest)
    ORDER BY s.id FOR UPDATE OF s
), touched_subscribers AS (
    UPDATE subscribers AS s
    SET mo_count = s.mo_count + l.mos, last_seen = GREATEST(s.last_seen, l.latest)
    FROM locked_subscribers AS l
    WHERE s.id = l.id
"""
    + _MARKED_WAITING.replace("{ids}", "$21::bigint[]")
    + """
)
SELECT id, dedup_key, false AS closed FROM inserted
UNION ALL
SELECT id, NULL, true FROM closed_meanwhile
"""
)

MO_COLUMNS = (
    "dedup_key",
    "subscriber_id",
    "conversation_id",
    "carrier",
    "bind_name",
    "short_code",
    "country",
    "text",
    "data_coding",
    "parts",
    "incomplete",
    "smsc_message_id",
    "received_at",
    "service",
    "keyword",
    "raw",
    "answer_id",
)
#: Not a column: whether the row may be a redelivery of an MO whose answer is not confirmed.
CHECK_REDELIVERY = "check_redelivery"


SubscriberInput = tuple[str, str, str | None, str | None, int, datetime | None]


async def insert_subscribers(
    session: AsyncSession, rows: Sequence[SubscriberInput], now: datetime
) -> Sequence[Any]:
    """Inserts the (msisdn, client_id, carrier, country, mos, last_mo_at) not known yet, starting them with
    ``mos`` MOs counted and last seen at ``last_mo_at`` when later than ``now``; returns the subscriber rows
    (id, client_id, msisdn, carrier, country, opted_out, banned, counted, created) of every MSISDN it
    could see, ``counted`` being the MOs counted on creation (0 for a subscriber that existed)."""
    ordered = sorted(rows, key=lambda row: row[0])
    columns = [[row[index] for row in ordered] for index in range(6)]
    for last_mo_at in columns[5]:
        if last_mo_at is not None:
            assert isinstance(last_mo_at, datetime)
            aware(last_mo_at)
    return await pg_rows(session, _INSERT_SUBSCRIBERS, *columns[:4], aware(now), *columns[4:])


ConversationInput = tuple[int, str, str | None, datetime | None, datetime | None, str | None, bool]


async def open_conversations(
    session: AsyncSession, keys: Sequence[ConversationInput], now: datetime
) -> dict[tuple[int, str], int]:
    """Opens a conversation for each (subscriber_id, short_code, service, first_mo_at, last_mo_at,
    operator_pool, callcentre) with no active one, waiting since ``first_mo_at``; returns the active
    conversation id of every pair, looking up again those a concurrent batch opened."""
    ordered = sorted(keys, key=lambda key: (key[0], key[1]))
    columns = [[key[index] for key in ordered] for index in range(7)]
    rows = await pg_rows(session, _OPEN_CONVERSATIONS, *columns[:3], aware(now), *columns[3:])
    found = {(row.subscriber_id, row.short_code): row.id for row in rows}
    missing = [key for key in ordered if (key[0], key[1]) not in found]
    if missing:
        rows = await pg_rows(
            session, _ACTIVE_CONVERSATIONS, [key[0] for key in missing], [key[1] for key in missing]
        )
        found.update({(row.subscriber_id, row.short_code): row.id for row in rows})
    return found


async def insert_mos(
    session: AsyncSession,
    rows: Sequence[dict[str, object]],
    since: datetime,
    counted: Mapping[int, int] | None = None,
) -> tuple[dict[str, int], set[int]]:
    """Inserts the MO rows (unique dedup keys, columns as :data:`MO_COLUMNS` and
    :data:`CHECK_REDELIVERY`) but those that are a redelivery (checked, and an MO received since
    ``since`` with the same key has its answer in ``mo_unconfirmed``), counts them on their
    subscribers and marks their conversations waiting; returns {dedup_key: id} of those inserted, and
    the ids of their conversations that were closed meanwhile (left closed: the caller must roll the
    transaction back and try again, see ``ClosedMeanwhile``).
    ``counted`` is {subscriber_id: MOs} already counted when the subscriber was created by this batch:
    only the difference is added."""
    columns = [[row[name] for row in rows] for name in (*MO_COLUMNS, CHECK_REDELIVERY)]
    for received_at in columns[MO_COLUMNS.index("received_at")]:
        assert isinstance(received_at, datetime)
        aware(received_at)
    # The ids as plain arrays too: an index condition for the planner, whatever plan it caches.
    subscriber_ids = sorted({_id(row["subscriber_id"]) for row in rows})
    conversation_ids = sorted(
        {_id(row["conversation_id"]) for row in rows if row["conversation_id"] is not None}
    )
    precounted = sorted((counted or {}).items())
    inserted = await pg_rows(
        session,
        _INSERT_MOS,
        *columns,
        aware(since),
        subscriber_ids,
        conversation_ids,
        [item[0] for item in precounted],
        [item[1] for item in precounted],
    )
    return (
        {row.dedup_key: row.id for row in inserted if not row.closed},
        {row.id for row in inserted if row.closed},
    )


def _id(value: object) -> int:
    assert isinstance(value, int)
    return value


# The three statements above as one, for a batch whose subscribers and conversations are all resolved
# by it (the usual case): subscribers created or read, conversations opened or read, MOs inserted but
# redeliveries, counters and waiting marks updated — one round trip. The statements of a WITH share one
# snapshot, so the rows created here are invisible to the locking CTEs: they are created with their
# batch's figures already (as above), and only rows that existed are updated.
# A subscriber or conversation a concurrent transaction created meanwhile is invisible to the snapshot
# and refused by ON CONFLICT: then the statement stops short, and the caller stores the whole batch with
# the statements above, which take their locks in the same order as ever (the rows they create, then
# the existing rows they update, each table's by id). So a subscriber not resolved opens no
# conversation here, and a conversation not resolved lets no MO in nor locks a counter: holding those
# locks while the second pass waits on another batch would deadlock (as a reviewer's
# three-transaction stress did).
# The rows of two CTEs are matched by a FULL JOIN in a MATERIALIZED CTE, which PostgreSQL can hash or
# merge but never run as a nested loop: a CTE's row estimate is a guess, and a nested loop over two CTEs
# is quadratic in the batch (the redeliveries are left out by an anti-join, as in the MO statement
# above: they are few).
_AT_ONCE_WITH = (
    """
WITH input AS (
    SELECT * FROM unnest($1::echat_ingest_mo[])
"""
    + _REDELIVERED.replace("{since}", "$2::timestamptz")
    + """), answered AS (  -- the answers opened for the batch and not written yet (their ids reserved)
    INSERT INTO mo_unconfirmed (id, bind_name, created_at)
    SELECT * FROM unnest($6::bigint[], $7::varchar[], $8::timestamptz[])
), subscriber_input AS (
    SELECT * FROM unnest($4::echat_ingest_subscriber[])
), known_subscribers AS (
    SELECT s.id, s.client_id, s.msisdn, s.carrier, s.country, s.opted_out, s.banned, s.mt_count,
           -- the MO names another carrier or country than the one stored (the rule of
           -- ``SubscriberUpserts.note_carriers``, which stores it after this statement)
           (COALESCE(NULLIF(i.carrier, ''), s.carrier) IS DISTINCT FROM s.carrier
            OR COALESCE(NULLIF(i.country, ''), s.country) IS DISTINCT FROM s.country) AS ported
    FROM subscriber_input AS i
    JOIN LATERAL (SELECT * FROM subscribers AS s WHERE s.msisdn = i.msisdn LIMIT 1) AS s ON true
), subscriber_matches AS MATERIALIZED (  -- each writer with the row the probe above found
    SELECT i.*, k.id AS known_id
    FROM subscriber_input AS i FULL JOIN known_subscribers AS k ON k.msisdn = i.msisdn
), created_subscribers AS (
    INSERT INTO subscribers (client_id, msisdn, carrier, country, first_seen, last_seen, opted_out, banned,
                             mo_count, mt_count)
    SELECT i.client_id, i.msisdn, i.carrier, i.country, $3::timestamptz,
           GREATEST($3::timestamptz, i.last_mo_at), false, false, i.mos, 0
    FROM subscriber_matches AS i
    WHERE i.known_id IS NULL AND i.msisdn IS NOT NULL  -- not found (the same snapshot): not probed again
    ORDER BY i.msisdn
    ON CONFLICT DO NOTHING
    RETURNING id, client_id, msisdn, carrier, country, opted_out, banned, mt_count, false AS ported
), resolved_subscribers AS MATERIALIZED (
    SELECT *, true AS created FROM created_subscribers
    UNION ALL
    SELECT *, false FROM known_subscribers
), conversation_owners AS MATERIALIZED (
    SELECT i.*, s.id AS subscriber_id
    FROM unnest($5::echat_ingest_opening[]) AS i
    FULL JOIN resolved_subscribers AS s ON s.msisdn = i.msisdn
), known_conversations AS (
    SELECT c.subscriber_id, c.short_code, c.id
    FROM conversation_owners AS i
    JOIN LATERAL (SELECT * FROM conversations AS c
                  WHERE c.subscriber_id = i.subscriber_id AND c.short_code = i.short_code
                    AND c.status != 'closed'
                  LIMIT 1) AS c ON true
), conversation_matches AS MATERIALIZED (  -- each pair with the active conversation the probe found
    SELECT i.*, k.id AS known_id
    FROM conversation_owners AS i
    FULL JOIN known_conversations AS k ON k.subscriber_id = i.subscriber_id AND k.short_code = i.short_code
), opened_conversations AS (
    INSERT INTO conversations (subscriber_id, short_code, status, service, opened_at, waiting_since,
                               last_mo_at, operator_pool, callcentre)
    SELECT i.subscriber_id, i.short_code, 'waiting', i.service, $3::timestamptz, i.first_mo_at,
           i.last_mo_at, i.operator_pool, i.callcentre
    FROM conversation_matches AS i
    WHERE i.known_id IS NULL AND i.subscriber_id IS NOT NULL AND i.short_code IS NOT NULL
      AND (SELECT count(*) FROM resolved_subscribers) = cardinality($4::echat_ingest_subscriber[])
    ORDER BY i.subscriber_id, i.short_code
    ON CONFLICT DO NOTHING
    RETURNING subscriber_id, short_code, id
), resolved_conversations AS MATERIALIZED (
    SELECT subscriber_id, short_code, id FROM opened_conversations
    UNION ALL
    SELECT subscriber_id, short_code, id FROM known_conversations
), resolved AS (  -- every subscriber and every conversation: else the caller stores the batch
    SELECT (SELECT count(*) FROM resolved_subscribers) = cardinality($4::echat_ingest_subscriber[])
           AND (SELECT count(*) FROM resolved_conversations) = cardinality($5::echat_ingest_opening[])
           AS every
), rehomed AS (  -- the MO delivered again is answered now by this batch: confirmed with its answers
    UPDATE mo_messages AS m SET answer_id = matched.answer_id
    FROM matched WHERE m.id = matched.id AND matched.answer_id IS NOT NULL AND (SELECT every FROM resolved)
    RETURNING m.id
), placed AS MATERIALIZED (  -- each MO with its subscriber
    SELECT i.*, s.id AS subscriber_id
    FROM input AS i FULL JOIN resolved_subscribers AS s ON s.msisdn = i.msisdn
), homed AS MATERIALIZED (  -- and with its conversation, when it opens one
    SELECT p.*, CASE WHEN p.opens_conversation THEN c.id END AS conversation_id
    FROM placed AS p
    FULL JOIN resolved_conversations AS c ON c.subscriber_id = p.subscriber_id AND c.short_code = p.short_code
), inserted AS (
    INSERT INTO mo_messages (dedup_key, subscriber_id, conversation_id, carrier, bind_name, short_code,
                             country, text, data_coding, parts, incomplete, smsc_message_id, received_at,
                             service, keyword, raw, answer_id)
    SELECT dedup_key, subscriber_id, conversation_id, carrier, bind_name, short_code, country, text,
           data_coding, parts, incomplete, smsc_message_id, received_at, service, keyword, raw, answer_id
    FROM homed
    WHERE dedup_key IS NOT NULL AND subscriber_id IS NOT NULL
      AND (conversation_id IS NOT NULL OR NOT opens_conversation)
      AND NOT EXISTS (SELECT 1 FROM matched WHERE matched.dedup_key = homed.dedup_key)
      AND (SELECT every FROM resolved)
    ORDER BY dedup_key
    RETURNING id, dedup_key, subscriber_id, conversation_id, received_at,
              service, short_code, carrier, country  -- the rollups' key
), per_subscriber AS (
    SELECT subscriber_id, count(*) AS mos, max(received_at) AS latest FROM inserted GROUP BY subscriber_id
), locked_subscribers AS (  -- those that existed: a subscriber created above has its figures
    SELECT s.id, p.mos, p.latest, s.mt_count
    FROM subscribers AS s JOIN per_subscriber AS p ON s.id = p.subscriber_id
    WHERE s.id = ANY(ARRAY(SELECT subscriber_id FROM per_subscriber))
    ORDER BY s.id FOR UPDATE OF s
), touched_subscribers AS (
    UPDATE subscribers AS s
    SET mo_count = s.mo_count + l.mos, last_seen = GREATEST(s.last_seen, l.latest)
    FROM locked_subscribers AS l
    WHERE s.id = l.id
"""
    + _MARKED_WAITING.replace("{ids}", "ARRAY(SELECT conversation_id FROM per_conversation)")
    + """
), writers_locked AS MATERIALIZED (  -- each writer with its row as locked above, if it was
    SELECT s.*, l.mt_count AS locked_mt_count
    FROM resolved_subscribers AS s FULL JOIN locked_subscribers AS l ON l.id = s.id
), held_writers AS (  -- asked writers that existed and may have pushes held for their quiet hours
    SELECT s.id, s.msisdn
    FROM writers_locked AS s
    WHERE s.msisdn = ANY($9::varchar[]) AND NOT s.created
      -- a probe per writer: most have few MTs, and an index scan that finds none is cheaper than a bitmap
      AND (EXISTS (SELECT 1 FROM mt_messages AS m WHERE m.subscriber_id = s.id AND """
    + held_sql("m", "$3::timestamptz")
    + """)
           -- or an MT was queued for it after this statement's snapshot, which cannot see that push: its
           -- lock waited on that transaction (which counted the MT) and returned the row as it left it
           -- (matched above: a subquery correlated to the writer scanned every locked row for every
           -- writer, 168 ms of a batch of 2,000 MOs)
           OR s.locked_mt_count != s.mt_count)
"""
)
_AT_ONCE_ROWS = """
)
SELECT 1 AS kind, id, NULL::bigint AS owner, msisdn AS name, client_id, carrier, country, opted_out, banned,
       created
FROM resolved_subscribers
UNION ALL
SELECT 2, id, subscriber_id, short_code, NULL, NULL, NULL, NULL, NULL, NULL FROM resolved_conversations
UNION ALL
SELECT 3, id, NULL, dedup_key, NULL, NULL, NULL, NULL, NULL, NULL FROM inserted
UNION ALL
SELECT 4, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM closed_meanwhile
UNION ALL
SELECT 5, id, NULL, msisdn, NULL, NULL, NULL, NULL, NULL, NULL FROM held_writers
"""
_INGEST_AT_ONCE = _AT_ONCE_WITH + _AT_ONCE_ROWS

# The statement above sent alone: its own transaction, committed as it ends, so it also writes the
# batch's traffic rollups (``rollups.count_mos``, into shard $10) and fails, committing nothing, where
# the batch needs more than this statement (``NeedsTransaction.Reason``; a banned writer only when $11:
# they are answered). Each subscriber row of $4 holds the dedup key of its first MO in the batch
# (``first_key``), the MO a new client is counted with.
# The rollup rows are locked last, as in every transaction (``rollups.pending``), and in the order the
# transactions' tally writes them (keys sorted by code point: ``COLLATE "C"``, whatever the database's
# collation). Last, because the upsert reads the counts of the other rows' locks (and of the redeliveries'
# update) first: PostgreSQL runs a data-modifying CTE that the main query does not read after the main
# query, the later ones first, so without those reads it would lock the rollup rows before them.
_TEXT_KEY = "COALESCE({}, '') COLLATE \"C\""


def _traffic_upsert(source: str, measures: Mapping[str, str]) -> str:
    """The traffic rollups' upsert of ``source``'s MOs (``received_at``, ``service``, ``short_code``,
    ``carrier``, ``country``), as ``rollups.Tally`` writes them: ``measures`` {measure: aggregate} (the
    others add 0), into shard $10, one row per key, in key order."""
    key = (
        POSTGRESQL.hour.format("received_at"),
        *(_TEXT_KEY.format(column) for column in ("service", "short_code", "carrier", "country")),
        "$10::smallint",
    )
    assert len(key) == len(TRAFFIC_KEY)
    counts = [measures.get(name, "0") for name in TRAFFIC_MEASURES]
    positions = ", ".join(str(position) for position in range(1, len(key) + 1))
    added = ", ".join(f"{name} = traffic_hourly.{name} + excluded.{name}" for name in measures)
    return f"""INSERT INTO traffic_hourly ({", ".join((*TRAFFIC_KEY, *TRAFFIC_MEASURES))})
    SELECT {", ".join((*key, *counts))}
    FROM {source}
    GROUP BY {positions} ORDER BY {positions}
    ON CONFLICT ({", ".join(TRAFFIC_KEY)}) DO UPDATE SET {added}"""


_REASON = NeedsTransaction.Reason
_INGEST_ALONE = (
    _AT_ONCE_WITH
    + """), new_clients AS (  -- each client this batch made known, by the first of their MOs in it
    SELECT f.first_key
    FROM unnest($4::echat_ingest_subscriber[]) AS f
    FULL JOIN created_subscribers AS c ON c.msisdn = f.msisdn
    WHERE c.id IS NOT NULL
), counted AS MATERIALIZED (
    SELECT m.received_at, m.service, m.short_code, m.carrier, m.country, n.first_key IS NOT NULL AS new_client
    FROM inserted AS m FULL JOIN new_clients AS n ON n.first_key = m.dedup_key
    WHERE m.id IS NOT NULL
), rolled_up AS (
    """
    + _traffic_upsert(
        """counted
    WHERE (SELECT count(*) FROM locked_subscribers) >= 0 AND (SELECT count(*) FROM rehomed) >= 0
      AND NOT EXISTS (SELECT 1 FROM closed_meanwhile)""",
        {"mo": "count(*)", "new_clients": "count(*) FILTER (WHERE new_client)"},
    )
    + _AT_ONCE_ROWS
    + f"""UNION ALL
SELECT 6, {NEEDS_TRANSACTION_FUNCTION}(r.reason), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM (SELECT CASE
    WHEN NOT (SELECT every FROM resolved) THEN '{_REASON.UNRESOLVED}'
    WHEN EXISTS (SELECT 1 FROM closed_meanwhile) THEN '{_REASON.CLOSED_MEANWHILE}'
    WHEN EXISTS (SELECT 1 FROM held_writers) THEN '{_REASON.HELD_PUSHES}'
    WHEN EXISTS (SELECT 1 FROM resolved_subscribers WHERE ported) THEN '{_REASON.CARRIER_CHANGED}'
    WHEN $11::boolean AND EXISTS (SELECT 1 FROM resolved_subscribers AS s
                                  WHERE s.banned AND s.id = ANY(ARRAY(SELECT subscriber_id FROM inserted)))
        THEN '{_REASON.BANNED_WRITER}'
    END AS reason) AS r
WHERE r.reason IS NOT NULL
"""
)

#: The columns of an MO row given to :func:`ingest_at_once`, in order (the fields of ``repo_mo.NewMO``).
AT_ONCE_MO_COLUMNS = (
    "dedup_key",
    "msisdn",
    "carrier",
    "bind_name",
    "short_code",
    "country",
    "text",
    "data_coding",
    "parts",
    "incomplete",
    "smsc_message_id",
    "received_at",
    "service",
    "keyword",
    "raw",
    "answer_id",
    CHECK_REDELIVERY,
    "opens_conversation",
)
#: The columns of a subscriber row and of an opening row given to :func:`ingest_at_once`, in order (the
#: row types ``echat_ingest_subscriber`` and ``echat_ingest_opening``: a test compares them; the rows
#: are tuples, built in this order by ``repo_mo._AtOnceBatch``). ``first_key`` is added here.
AT_ONCE_SUBSCRIBER_COLUMNS = ("msisdn", "client_id", "carrier", "country", "mos", "last_mo_at", "first_key")
AT_ONCE_OPENING_COLUMNS = (
    "msisdn",
    "short_code",
    "service",
    "first_mo_at",
    "last_mo_at",
    "operator_pool",
    "callcentre",
)
#: What a row of :func:`ingest_at_once`'s answer is.
SUBSCRIBER_ROW, CONVERSATION_ROW, MO_ROW, CLOSED_ROW, HELD_ROW = 1, 2, 3, 4, 5
OpeningInput = tuple[str, str, str | None, datetime, datetime, str | None, bool]
AnswerInput = tuple[int, str | None, datetime]

# Ids for the answers' rows, taken ahead (see ``PostgreSQLMOIngest.open_answers``).
_RESERVE_ANSWER_IDS = "SELECT nextval('mo_unconfirmed_id_seq') FROM generate_series(1, $1::integer)"


async def reserve_answer_ids(session: AsyncSession, count: int) -> list[int]:
    """``count`` ids no ``mo_unconfirmed`` row has or will be given by the database: a sequence never
    hands an id out twice, whatever becomes of the transaction that took it."""
    return [row[0] for row in await pg_rows(session, _RESERVE_ANSWER_IDS, count)]


async def reserve_answer_ids_alone(connection: Autocommit, count: int) -> list[int]:
    """:func:`reserve_answer_ids` outside a transaction."""
    return [row[0] for row in await connection.rows(_RESERVE_ANSWER_IDS, count)]


async def ingest_at_once(
    session: AsyncSession,
    mos: Sequence[Sequence[object]],
    subscribers: Sequence[SubscriberInput],
    openings: Sequence[OpeningInput],
    answers: Sequence[AnswerInput],
    since: datetime,
    now: datetime,
    held_for: Sequence[str] = (),
) -> Sequence[Any]:
    """:func:`insert_subscribers`, :func:`open_conversations` and :func:`insert_mos` in one statement.

    ``mos``: one row per distinct dedup key (columns as :data:`AT_ONCE_MO_COLUMNS`); ``subscribers``:
    (msisdn, client_id, carrier, country, mos, last_mo_at) per MSISDN, each created with ``mos`` counted;
    ``openings``: (msisdn, short_code, service, first_mo_at, last_mo_at, operator_pool, callcentre) per
    pair the MOs open a conversation for; ``answers``: (id, bind_name, created_at) of ``mo_unconfirmed``
    rows to insert. Returns rows (kind, id, owner, name, client_id, carrier, country,
    opted_out, banned, created): a subscriber it resolved (kind :data:`SUBSCRIBER_ROW`, name = MSISDN), a
    conversation (:data:`CONVERSATION_ROW`, owner = subscriber id, name = short code), an MO inserted
    (:data:`MO_ROW`, name = dedup key), a conversation of those MOs closed meanwhile
    (:data:`CLOSED_ROW`, left closed: see :func:`insert_mos`), a subscriber among ``held_for`` (MSISDNs)
    that existed and may have pushes held for its quiet hours (:data:`HELD_ROW`, see ``mt.held``: it
    has, or an MT was queued for it since the statement's snapshot). Unless every subscriber and every
    pair of ``openings`` is among them, no MO was stored and no counter's row locked (and unless every
    subscriber is, no conversation opened): the caller stores the batch with the other statements."""
    return await pg_rows(
        session,
        _INGEST_AT_ONCE,
        *_at_once_parameters(mos, subscribers, openings, answers, since, now, held_for),
    )


async def ingest_alone(
    connection: Autocommit,
    mos: Sequence[Sequence[object]],
    subscribers: Sequence[SubscriberInput],
    first_keys: Mapping[str, str],
    openings: Sequence[OpeningInput],
    answers: Sequence[AnswerInput],
    since: datetime,
    now: datetime,
    held_for: Sequence[str],
    shard: int,
    banned_need_transaction: bool,
) -> Sequence[Any]:
    """:func:`ingest_at_once` in a transaction of its own, the batch's traffic rollups written into
    ``shard`` (``first_keys``: {MSISDN: the dedup key of its first MO in the batch}, the MO a new client
    is counted with). Returns the same rows but :data:`CLOSED_ROW` and :data:`HELD_ROW`; raises
    ``NeedsTransaction``, having stored nothing, where the batch needs more than this statement (see
    ``_INGEST_ALONE``; ``banned_need_transaction``: a banned writer's MO does)."""
    parameters = _at_once_parameters(mos, subscribers, openings, answers, since, now, held_for, first_keys)
    return await connection.rows(_INGEST_ALONE, *parameters, shard, banned_need_transaction)


def _at_once_parameters(
    mos: Sequence[Sequence[object]],
    subscribers: Sequence[SubscriberInput],
    openings: Sequence[OpeningInput],
    answers: Sequence[AnswerInput],
    since: datetime,
    now: datetime,
    held_for: Sequence[str],
    first_keys: Mapping[str, str] | None = None,
) -> list[object]:
    """The statements' parameters $1 to $9: the rows as the row types of gatewayd/store/pg_types.py
    (tuples: asyncpg takes a list for a nested array), the subscribers' with their ``first_keys`` when
    given (else NULL)."""
    received = AT_ONCE_MO_COLUMNS.index("received_at")
    for row in mos:
        received_at = row[received]
        assert isinstance(received_at, datetime)
        aware(received_at)
    for _, _, created_at in answers:
        aware(created_at)
    ordered = sorted(subscribers, key=lambda row: row[0])
    return [
        [row if isinstance(row, tuple) else tuple(row) for row in mos],
        aware(since),
        aware(now),
        [(*row, None if first_keys is None else first_keys[row[0]]) for row in ordered],
        list(openings),
        [answer[0] for answer in answers],
        [answer[1] for answer in answers],
        [answer[2] for answer in answers],
        list(held_for),
    ]
