"""``gatewayd reports rebuild``: the rollups (:mod:`gatewayd.store.rollups`) recomputed from the message
tables, set-based, in one transaction: the hours from ``since`` (all of them without it) are deleted
and summed again, so running it twice gives the same figures.

Run it once after upgrading to the schema that added the rollups (the traffic stored before has none),
or after restoring message tables from a backup. The figures it makes are the pipelines' with two
differences a recount cannot avoid: an MT's country and service are its subscriber's and conversation's
now (the pipelines take them when it is queued), and an opt-out later taken back is not counted.

The statements differ between SQLite and PostgreSQL only in how they cut a time to its hour and tell
the seconds between two times: :class:`Dialect` holds both; the store's :class:`RollupRebuild` has its
database's, chosen when the store is made (``Store.for_engine``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.base import UTCDateTime
from gatewayd.store.rollups import (
    OPERATOR_KEY,
    OPERATOR_MEASURES,
    RESPONSE_BOUNDS,
    RESPONSE_FLOORS,
    RESPONSE_KEY,
    TRAFFIC_KEY,
    TRAFFIC_MEASURES,
    hour_of,
)

#: Before any traffic: "since the beginning".
EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


@dataclass(frozen=True, slots=True)
class Dialect:
    """SQL fragments ``{}`` is filled in: a time column cut to its UTC hour (stored as the rollups store
    an hour), and the seconds from the second time to the first."""

    hour: str
    seconds: str


#: The PostgreSQL fragments.
POSTGRESQL = Dialect(
    hour="(date_trunc('hour', ({}) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')",
    seconds="EXTRACT(EPOCH FROM (({}) - ({})))",
)
#: The SQLite fragments: SQLite keeps times as 'YYYY-MM-DD HH:MM:SS.ffffff' text in UTC, as SQLAlchemy
#: writes them.
SQLITE = Dialect(
    hour="strftime('%Y-%m-%d %H:00:00.000000', {})",
    seconds="((julianday({}) - julianday({})) * 86400.0)",
)


def _insert(table: str, keys: tuple[str, ...], measures: tuple[str, ...], select: str) -> str:
    """``select`` gives the keys but the shard, the measures, then the shard (a rebuild writes shard 0)."""
    added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in measures)
    assert keys[-1] == "shard"
    return (
        f"INSERT INTO {table} ({', '.join((*keys[:-1], *measures, 'shard'))}) {select} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {added}"
    )


def _traffic(select: str) -> str:
    return _insert("traffic_hourly", TRAFFIC_KEY, TRAFFIC_MEASURES, select)


def _operators(select: str) -> str:
    return _insert("operator_hourly", OPERATOR_KEY, OPERATOR_MEASURES, select)


def statements(dialect: Dialect) -> list[str]:
    """The rebuild's statements, in order, each taking ``:since`` (an hour start)."""
    hour = dialect.hour.format
    # A reply answers the MOs of its conversation received after the reply before it, up to itself.
    answers = """
    WITH replies AS (
        SELECT id, operator_id, conversation_id, created_at,
               LAG(created_at) OVER (PARTITION BY conversation_id ORDER BY created_at, id) AS previous
        FROM mt_messages WHERE kind = 'reply' AND conversation_id IS NOT NULL
    ), answers AS (
        SELECT r.operator_id, r.created_at, count(*) AS mos, min(m.received_at) AS first_mo
        FROM replies AS r
        JOIN mo_messages AS m ON m.conversation_id = r.conversation_id AND m.received_at <= r.created_at
             AND (r.previous IS NULL OR m.received_at > r.previous)
        WHERE r.operator_id IS NOT NULL AND r.created_at >= :since
        GROUP BY r.id, r.operator_id, r.created_at
    )"""
    waited = dialect.seconds.format("created_at", "first_mo")
    buckets = " ".join(
        f"WHEN {waited} <= {bound} THEN {floor}"
        for bound, floor in zip(RESPONSE_BOUNDS, RESPONSE_FLOORS, strict=False)
    )
    return [
        "DELETE FROM traffic_hourly WHERE hour >= :since",
        "DELETE FROM operator_hourly WHERE hour >= :since",
        "DELETE FROM operator_first_responses WHERE hour >= :since",
        _traffic(
            f"""SELECT {hour("received_at")}, COALESCE(service, ''), short_code, carrier,
                   COALESCE(country, ''), count(*), 0, 0, 0, 0, 0, 0, 0
            FROM mo_messages WHERE received_at >= :since GROUP BY 1, 2, 3, 4, 5"""
        ),
        _traffic(
            f"""SELECT {hour("m.created_at")}, COALESCE(c.service, ''), m.source, m.carrier,
                   COALESCE(s.country, ''), 0, count(*),
                   sum(CASE WHEN m.status = 'delivered' THEN 1 ELSE 0 END),
                   sum(CASE WHEN m.status IN ('failed', 'expired') THEN 1 ELSE 0 END),
                   sum(CASE WHEN m.status = 'refused' THEN 1 ELSE 0 END), 0, 0, 0
            FROM mt_messages AS m
            LEFT JOIN subscribers AS s ON s.id = m.subscriber_id
            LEFT JOIN conversations AS c ON c.id = m.conversation_id
            WHERE m.created_at >= :since GROUP BY 1, 2, 3, 4, 5"""
        ),
        # a new client: counted at the subscriber's first MO
        _traffic(
            f"""SELECT {hour("m.received_at")}, COALESCE(m.service, ''), m.short_code, m.carrier,
                   COALESCE(m.country, ''), 0, 0, 0, 0, 0, 0, count(*), 0
            FROM mo_messages AS m
            WHERE m.received_at >= :since AND NOT EXISTS (
                SELECT 1 FROM mo_messages AS e WHERE e.subscriber_id = m.subscriber_id
                AND (e.received_at < m.received_at OR (e.received_at = m.received_at AND e.id < m.id)))
            GROUP BY 1, 2, 3, 4, 5"""
        ),
        # an opt-out: counted when it was made, by the subscriber's MO that asked for it
        _traffic(
            f"""SELECT {hour("s.opted_out_at")}, COALESCE(m.service, ''), COALESCE(m.short_code, ''),
                   COALESCE(m.carrier, s.carrier, ''), COALESCE(m.country, s.country, ''),
                   0, 0, 0, 0, 0, count(*), 0, 0
            FROM subscribers AS s
            LEFT JOIN mo_messages AS m ON m.id = (
                SELECT e.id FROM mo_messages AS e
                WHERE e.subscriber_id = s.id AND e.received_at <= s.opted_out_at
                ORDER BY e.received_at DESC, e.id DESC LIMIT 1)
            WHERE s.opted_out AND s.opted_out_at >= :since GROUP BY 1, 2, 3, 4, 5"""
        ),
        _operators(
            f"""SELECT {hour("created_at")}, operator_id, 0, 0, count(*),
                   sum(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END), 0
            FROM mt_messages WHERE operator_id IS NOT NULL AND created_at >= :since GROUP BY 1, 2"""
        ),
        # a conversation handled: the operator's first reply in it
        """WITH firsts AS (
            SELECT operator_id, created_at,
                   ROW_NUMBER() OVER (PARTITION BY conversation_id, operator_id ORDER BY created_at, id) AS n
            FROM mt_messages
            WHERE kind = 'reply' AND operator_id IS NOT NULL AND conversation_id IS NOT NULL
        ) """
        + _operators(
            f"""SELECT {hour("created_at")}, operator_id, count(*), 0, 0, 0, 0
            FROM firsts WHERE n = 1 AND created_at >= :since GROUP BY 1, 2"""
        ),
        answers
        + " "
        + _operators(
            f"""SELECT {hour("created_at")}, operator_id, 0, sum(mos), 0, 0, 0
            FROM answers WHERE true GROUP BY 1, 2"""
        ),
        answers
        + " "
        + _insert(
            "operator_first_responses",
            RESPONSE_KEY,
            ("replies",),
            f"""SELECT {hour("created_at")}, operator_id,
                   CASE {buckets} ELSE {RESPONSE_FLOORS[-1]} END, count(*), 0
            FROM answers WHERE true GROUP BY 1, 2, 3""",
        ),
    ]


@dataclass(frozen=True, slots=True)
class RollupRebuild:
    """The rebuild in one database's SQL (``Store.rollup_rebuild``, chosen with the store)."""

    fragments: Dialect

    async def rebuild(self, session: AsyncSession, since: datetime | None = None) -> datetime:
        """Recomputes the rollups of the hours from ``since``'s (every hour without it) in the caller's
        transaction; returns the first hour rebuilt."""
        start = hour_of(since) if since is not None else EPOCH
        for statement in statements(self.fragments):
            await session.execute(text(statement).bindparams(bindparam("since", start, type_=UTCDateTime())))
        return start
