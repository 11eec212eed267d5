"""Hourly rollups of the traffic, kept as the traffic is stored: what the reports read (manual 1.4).

Buckets are UTC hours, so a report in any whole-hour time zone sums them exactly. Three tables:

* ``traffic_hourly`` per (hour, service, short code, carrier, country): MOs, MTs queued, MTs that
  ended delivered / failed (failed or expired) / refused, opt-outs, new clients. A missing dimension is
  stored as ``''`` (a unique key treats NULLs as distinct);
* ``operator_hourly`` per (hour, operator): conversations handled (the operator's first reply in a
  conversation), MOs answered (those waiting when a reply went), MTs sent, MTs delivered;
* ``operator_first_responses`` per (hour, operator, bucket): how many replies came within each fixed
  bucket of :data:`RESPONSE_BOUNDS` after the MO that had waited longest; median and p90 come from it.

An MT counts in the hour it was queued, also for its final status (so a delivered % never exceeds
100 % in a bucket). The pipelines call the ``count_*`` functions below in the transaction that stores
the traffic; each adds its batch to the transaction's pending counts (:func:`pending`), written when the
transaction commits with one upsert per distinct key, keys sorted, so that concurrent daemons lock the
rollup rows last and in the same order and queue instead of deadlocking. The upsert statement
(``INSERT .. ON CONFLICT .. DO UPDATE``) reads the same on SQLite and PostgreSQL, so there is no
dialect to choose on this path; an MO batch stored by one statement of its own on PostgreSQL
(``repo_mo.MOAlone``) writes its counts in that statement (``_pg_ingest``), its rollup rows still
locked last and in the same order. ``gatewayd reports rebuild`` (:mod:`gatewayd.store.rollups_rebuild`)
recomputes them from the message tables.
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Integer, SmallInteger, String, Table, TextClause, bindparam, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

from gatewayd.store._tables import among, chunks, table_of
from gatewayd.store.base import Base, UTCDateTime
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.mt.values import NewMT
from gatewayd.store.premium import credit_finals
from gatewayd.store.subscribers import ID_TYPE, Subscriber

#: Upper bounds (seconds) of the first-response buckets; a bucket is stored by its lower bound
#: (``over_s``: the response took more than that, at most the next bound), the last one open-ended.
RESPONSE_BOUNDS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600)
RESPONSE_FLOORS = (0, *RESPONSE_BOUNDS)

TRAFFIC_MEASURES = ("mo", "mt", "mt_delivered", "mt_failed", "mt_refused", "opt_outs", "new_clients")
OPERATOR_MEASURES = ("conversations", "mos_answered", "mts_sent", "mts_delivered")
TRAFFIC_DIMENSIONS = ("service", "short_code", "carrier", "country")

#: The traffic counter each final MT status adds to (cancelled MTs count in none).
FINAL_MEASURE = {
    MTStatus.DELIVERED: "mt_delivered",
    MTStatus.FAILED: "mt_failed",
    MTStatus.EXPIRED: "mt_failed",
    MTStatus.REFUSED: "mt_refused",
}


class TrafficHourly(Base):
    __tablename__ = "traffic_hourly"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    service: Mapped[str] = mapped_column(String(32), primary_key=True)
    short_code: Mapped[str] = mapped_column(String(16), primary_key=True)
    carrier: Mapped[str] = mapped_column(String(32), primary_key=True)
    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    #: Which of the key's rows a transaction adds to (:func:`shard_of`): reports sum them.
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    mo: Mapped[int] = mapped_column(Integer, default=0)
    mt: Mapped[int] = mapped_column(Integer, default=0)
    mt_delivered: Mapped[int] = mapped_column(Integer, default=0)
    mt_failed: Mapped[int] = mapped_column(Integer, default=0)
    mt_refused: Mapped[int] = mapped_column(Integer, default=0)
    opt_outs: Mapped[int] = mapped_column(Integer, default=0)
    new_clients: Mapped[int] = mapped_column(Integer, default=0)


class OperatorHourly(Base):
    __tablename__ = "operator_hourly"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    #: The account's id, without a foreign key: figures outlive a deleted account.
    operator_id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    #: Which of the key's rows a transaction adds to (:func:`shard_of`): reports sum them.
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    conversations: Mapped[int] = mapped_column(Integer, default=0)
    mos_answered: Mapped[int] = mapped_column(Integer, default=0)
    mts_sent: Mapped[int] = mapped_column(Integer, default=0)
    mts_delivered: Mapped[int] = mapped_column(Integer, default=0)


class OperatorFirstResponse(Base):
    __tablename__ = "operator_first_responses"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    #: The bucket's lower bound in seconds (one of :data:`RESPONSE_FLOORS`).
    over_s: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    #: Which of the key's rows a transaction adds to (:func:`shard_of`): reports sum them.
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    replies: Mapped[int] = mapped_column(Integer, default=0)


TRAFFIC = table_of(TrafficHourly)
OPERATORS = table_of(OperatorHourly)
RESPONSES = table_of(OperatorFirstResponse)
SUBSCRIBERS = table_of(Subscriber)
CONVERSATIONS = table_of(Conversation)
MT_MESSAGES = table_of(MTMessage)
MO_MESSAGES = table_of(MOMessage)


class _MO(Protocol):
    @property
    def received_at(self) -> datetime: ...
    @property
    def service(self) -> str | None: ...
    @property
    def short_code(self) -> str: ...
    @property
    def carrier(self) -> str: ...
    @property
    def country(self) -> str | None: ...


class _Subscriber(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def created(self) -> bool: ...


class StoredMO(Protocol):
    """What the MO ingest says of each MO of a batch (``repo_mo.IngestedMO``): ``mo_id`` None for a
    redelivery."""

    @property
    def mo_id(self) -> int | None: ...
    @property
    def mo(self) -> _MO: ...
    @property
    def subscriber(self) -> _Subscriber: ...


TrafficKey = tuple[datetime, str, str, str, str]
OperatorKey = tuple[datetime, int]
ResponseKey = tuple[datetime, int, int]


def hour_of(at: datetime) -> datetime:
    """The UTC hour ``at`` falls in."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def response_floor(seconds: float) -> int:
    """The lower bound of the bucket a first response of ``seconds`` falls in."""
    return RESPONSE_FLOORS[bisect_left(RESPONSE_BOUNDS, seconds)] if seconds > 0 else 0


def _upsert(table: str, keys: Sequence[str], measures: Sequence[str]) -> TextClause:
    columns = (*keys, *measures)
    added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in measures)
    statement = text(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + name for name in columns)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {added}"
    )
    return statement.bindparams(bindparam("hour", type_=UTCDateTime()))


TRAFFIC_KEY = ("hour", *TRAFFIC_DIMENSIONS, "shard")
OPERATOR_KEY = ("hour", "operator_id", "shard")
RESPONSE_KEY = ("hour", "operator_id", "over_s", "shard")
_TRAFFIC_UPSERT = _upsert("traffic_hourly", TRAFFIC_KEY, TRAFFIC_MEASURES)
_OPERATOR_UPSERT = _upsert("operator_hourly", OPERATOR_KEY, OPERATOR_MEASURES)
_RESPONSE_UPSERT = _upsert("operator_first_responses", RESPONSE_KEY, ("replies",))

#: Rows per key: each database connection adds to its own (:func:`shard_of`).
SHARDS = 8
_SHARD = "echat.rollups.shard"
# numbered from a random start, so that two daemons' first connections seldom share a shard
_next_shard = itertools.count(random.randrange(SHARDS))


def shard_of(session: Session) -> int:
    """The shard of the session's database connection. Every MO batch of an hour adds to the same few
    keys: with one row per key, concurrent transactions would queue on it from their upsert to their
    commit (PostgreSQL's write pipelines lost two fifths of their throughput so); connections numbered
    in turn rarely share a row."""
    return connection_shard(session.connection().info)


def connection_shard(info: dict[Any, Any]) -> int:
    """The shard of the database connection whose ``info`` this is (see :func:`shard_of`)."""
    shard = info.get(_SHARD)
    if shard is None:
        shard = info[_SHARD] = next(_next_shard) % SHARDS
    return int(shard)


@dataclass(slots=True)
class Tally:
    """One batch's counts per key, written with one upsert per distinct key."""

    traffic: dict[TrafficKey, Counter[str]]
    operators: dict[OperatorKey, Counter[str]]
    responses: Counter[ResponseKey]

    @classmethod
    def empty(cls) -> Tally:
        return cls({}, {}, Counter())

    def add(self, key: TrafficKey, measure: str, count: int = 1) -> None:
        self.traffic.setdefault(key, Counter())[measure] += count

    def add_operator(self, key: OperatorKey, measure: str, count: int = 1) -> None:
        self.operators.setdefault(key, Counter())[measure] += count

    def copy(self) -> Tally:
        return Tally(
            {key: Counter(counts) for key, counts in self.traffic.items()},
            {key: Counter(counts) for key, counts in self.operators.items()},
            Counter(self.responses),
        )

    async def write(self, session: AsyncSession) -> None:
        await session.run_sync(self.write_sync)

    def write_sync(self, session: Session) -> None:
        """One upsert per distinct key, in key order (tables always in this order too), into the shard of
        the session's connection."""
        shard = shard_of(session)
        if self.traffic:
            session.execute(
                _TRAFFIC_UPSERT,
                [
                    {
                        "hour": key[0],
                        **dict(zip(TRAFFIC_DIMENSIONS, key[1:], strict=True)),
                        **{name: counts[name] for name in TRAFFIC_MEASURES},
                        "shard": shard,
                    }
                    for key, counts in sorted(self.traffic.items())
                ],
            )
        if self.operators:
            session.execute(
                _OPERATOR_UPSERT,
                [
                    {
                        "hour": key[0],
                        "operator_id": key[1],
                        **{name: counts[name] for name in OPERATOR_MEASURES},
                        "shard": shard,
                    }
                    for key, counts in sorted(self.operators.items())
                ],
            )
        if self.responses:
            session.execute(
                _RESPONSE_UPSERT,
                [
                    {"hour": hour, "operator_id": operator, "over_s": floor, "replies": count, "shard": shard}
                    for (hour, operator, floor), count in sorted(self.responses.items())
                ],
            )


_PENDING = "echat.rollups.pending"


def pending(session: AsyncSession) -> Tally:
    """The counts of the session's transaction so far: written when it commits, all at once and in key
    order, so the rollup rows are the last locks a transaction takes and every transaction takes them in
    the same order (two calls in one transaction each writing its own keys could lock them crosswise)."""
    info = session.sync_session.info
    tally = info.get(_PENDING)
    if tally is None:
        tally = info[_PENDING] = Tally.empty()
    assert isinstance(tally, Tally)
    return tally


_SAVEPOINTS = "echat.rollups.savepoints"


@event.listens_for(Session, "after_transaction_create")
def _remember_pending(session: Session, transaction: SessionTransaction) -> None:
    """At a savepoint, the counts so far: what a rollback to it gives back."""
    if transaction.nested:
        tally = session.info.get(_PENDING)
        saved = tally.copy() if isinstance(tally, Tally) else None
        session.info.setdefault(_SAVEPOINTS, {})[transaction] = saved


@event.listens_for(Session, "after_soft_rollback")
def _restore_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    """A savepoint rolled back: its statements are undone, and so are the counts added since it."""
    if previous_transaction.nested:
        saved = session.info.get(_SAVEPOINTS, {}).pop(previous_transaction, None)
        if saved is None:
            session.info.pop(_PENDING, None)
        else:
            session.info[_PENDING] = saved


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    # the session's own changes flushed first: the rollup rows are the transaction's last locks
    session.flush()
    tally = session.info.pop(_PENDING, None)
    if tally is not None:
        tally.write_sync(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back (or committed: already written)
        session.info.pop(_PENDING, None)
        session.info.pop(_SAVEPOINTS, None)


def traffic_key(
    at: datetime, service: str | None, short_code: str | None, carrier: str | None, country: str | None
) -> TrafficKey:
    return (hour_of(at), service or "", short_code or "", carrier or "", country or "")


async def count_mos(session: AsyncSession, results: Sequence[StoredMO]) -> None:
    """The new MOs of an ingested batch (redeliveries not), and the clients they made known."""
    tally = pending(session)
    created: set[int] = set()
    for result in results:
        if result.mo_id is None:
            continue
        mo = result.mo
        key = traffic_key(mo.received_at, mo.service, mo.short_code, mo.carrier, mo.country)
        tally.add(key, "mo")
        subscriber = result.subscriber
        if subscriber.created and subscriber.id not in created:
            created.add(subscriber.id)
            tally.add(key, "new_clients")


async def count_opt_outs(session: AsyncSession, opt_outs: Iterable[StoredMO], now: datetime) -> None:
    """Subscribers who opted out now, each by the MO that asked for it."""
    tally = pending(session)
    for result in opt_outs:
        mo = result.mo
        tally.add(traffic_key(now, mo.service, mo.short_code, mo.carrier, mo.country), "opt_outs")


async def count_mts(
    session: AsyncSession, mts: Sequence[NewMT], subscriber_ids: Sequence[int | None], now: datetime
) -> None:
    """MTs about to be queued at ``now``; ``subscriber_ids``: each MT's subscriber. The operators'
    replies are counted apart, by :func:`count_replies`, under their conversations' locks."""
    countries = await _values(session, SUBSCRIBERS, "country", subscriber_ids)
    services = await _values(session, CONVERSATIONS, "service", [mt.conversation_id for mt in mts])
    tally = pending(session)
    hour = hour_of(now)
    # counted per distinct key first: a batch of a thousand pushes is a handful of keys
    keys: Counter[tuple[str | None, str, str, str | None]] = Counter()
    sent: Counter[int] = Counter()
    for mt, subscriber_id in zip(mts, subscriber_ids, strict=True):
        service = services.get(mt.conversation_id) if mt.conversation_id is not None else None
        country = countries.get(subscriber_id) if subscriber_id is not None else None
        keys[(service, mt.source, mt.carrier, country)] += 1
        if mt.operator_id is not None:
            sent[mt.operator_id] += 1
    for (service, source, carrier, country), count in keys.items():
        tally.add(traffic_key(now, service, source, carrier, country), "mt", count)
    for operator_id, count in sent.items():
        tally.add_operator((hour, operator_id), "mts_sent", count)


async def count_replies(
    session: AsyncSession, mts: Sequence[NewMT], ids: Sequence[int], now: datetime
) -> None:
    """Operators' replies just stored as ``ids``: a conversation handled at an operator's first reply
    in it; the MOs it answered (received since its conversation began waiting) and how long the first
    of them waited. Call with the conversations locked, before they are marked answered: a reply
    racing in another transaction then reads what this one left, so nothing counts twice."""
    answering = [
        mt
        for mt in mts
        if mt.kind is MTKind.REPLY and mt.operator_id is not None and mt.conversation_id is not None
    ]
    if not answering:
        return
    tally = pending(session)
    conversation_ids = sorted({mt.conversation_id for mt in answering if mt.conversation_id is not None})
    waiting: dict[int, tuple[int, datetime]] = {}
    replied: set[tuple[int, int | None]] = set()
    for chunk in chunks(conversation_ids):
        rows = await session.execute(
            select(MO_MESSAGES.c.conversation_id, CONVERSATIONS.c.waiting_since, func.count().label("mos"))
            .select_from(CONVERSATIONS.join(MO_MESSAGES, MO_MESSAGES.c.conversation_id == CONVERSATIONS.c.id))
            .where(
                among(CONVERSATIONS.c.id, chunk),
                CONVERSATIONS.c.waiting_since.is_not(None),
                MO_MESSAGES.c.received_at >= CONVERSATIONS.c.waiting_since,
                MO_MESSAGES.c.received_at <= now,
            )
            .group_by(MO_MESSAGES.c.conversation_id, CONVERSATIONS.c.waiting_since)
        )
        waiting.update({row.conversation_id: (int(row.mos), row.waiting_since) for row in rows})
        earlier = await session.execute(
            select(MT_MESSAGES.c.conversation_id, MT_MESSAGES.c.operator_id)
            .where(
                among(MT_MESSAGES.c.conversation_id, chunk),
                MT_MESSAGES.c.kind == MTKind.REPLY,
                MT_MESSAGES.c.operator_id.is_not(None),
                ~among(MT_MESSAGES.c.id, ids),
            )
            .distinct()
        )
        replied.update((row.conversation_id, row.operator_id) for row in earlier)
    hour = hour_of(now)
    for mt in answering:
        assert mt.operator_id is not None and mt.conversation_id is not None
        if (mt.conversation_id, mt.operator_id) not in replied:
            replied.add((mt.conversation_id, mt.operator_id))
            tally.add_operator((hour, mt.operator_id), "conversations")
        # only the batch's first reply in a conversation answers what waited there
        answered = waiting.pop(mt.conversation_id, None)
        if answered is not None:
            mos, since = answered
            tally.add_operator((hour, mt.operator_id), "mos_answered", mos)
            tally.responses[(hour, mt.operator_id, response_floor((now - since).total_seconds()))] += 1


class FinalMT(Protocol):
    """An MT that reached a final status, with what its counts are keyed by."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def carrier(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def operator_id(self) -> int | None: ...
    @property
    def country(self) -> str | None: ...
    @property
    def service(self) -> str | None: ...


async def count_finals(session: AsyncSession, finals: Iterable[tuple[int, MTStatus]]) -> None:
    """MTs that reached a final status (each reaches one once), counted in the hour they were queued;
    their keys are read here (one statement per chunk)."""
    statuses = {mt_id: status for mt_id, status in finals if status in FINAL_MEASURE}
    if not statuses:
        return
    for chunk in chunks(sorted(statuses)):
        rows = await session.execute(
            select(
                MT_MESSAGES.c.id,
                MT_MESSAGES.c.created_at,
                MT_MESSAGES.c.carrier,
                MT_MESSAGES.c.source,
                MT_MESSAGES.c.operator_id,
                MT_MESSAGES.c.subscriber_id,
                MT_MESSAGES.c.charge,
                SUBSCRIBERS.c.country,
                CONVERSATIONS.c.service,
            )
            .select_from(
                MT_MESSAGES.outerjoin(SUBSCRIBERS, SUBSCRIBERS.c.id == MT_MESSAGES.c.subscriber_id).outerjoin(
                    CONVERSATIONS, CONVERSATIONS.c.id == MT_MESSAGES.c.conversation_id
                )
            )
            .where(among(MT_MESSAGES.c.id, chunk))
        )
        found = [(row, statuses[row.id]) for row in rows]
        count_final_rows(session, found)
        # a billed MT that never reached the client is not part of their spend
        await credit_finals(session, found)


def count_final_rows(session: AsyncSession, finals: Iterable[tuple[FinalMT, MTStatus]]) -> None:
    """MTs that reached a final status, their keys already read (the PostgreSQL status change returns
    them with the move, sparing the receipts' path a round trip)."""
    counted = [(mt, FINAL_MEASURE[status]) for mt, status in finals if status in FINAL_MEASURE]
    if not counted:
        return
    tally = pending(session)
    for mt, measure in counted:
        tally.add(traffic_key(mt.created_at, mt.service, mt.source, mt.carrier, mt.country), measure)
        if measure == "mt_delivered" and mt.operator_id is not None:
            tally.add_operator((hour_of(mt.created_at), mt.operator_id), "mts_delivered")


async def _values(
    session: AsyncSession, table: Table, column: str, ids: Iterable[int | None]
) -> Mapping[int, str | None]:
    """{id: column} of the rows of ``table`` with these ids."""
    wanted = sorted({value for value in ids if value is not None})
    found: dict[int, str | None] = {}
    for chunk in chunks(wanted):
        rows = await session.execute(select(table.c.id, table.c[column]).where(among(table.c.id, chunk)))
        found.update({row[0]: row[1] for row in rows})
    return found
