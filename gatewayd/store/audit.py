"""The audit trail: an append-only record of what people did, chained by hashes so an edit shows.

Every record holds who (account id and name, or the command line), from where (the client's address,
``cli``, a daemon's instance), what (an action name such as ``account.lock``), on what (a subject such
as ``account:12``) and the details (before -> after). Its ``hash`` is SHA-256 over its own fields and
the previous record's hash, so editing, deleting or reordering a record breaks every hash after it.

Records are numbered 1, 2, 3... without gaps. One row, ``audit_head``, holds the last number and hash:
an append first updates it (``seq + 1``), which takes its row lock on PostgreSQL and the write lock on
SQLite, so concurrent appends from daemons and panels queue for the head and the chain stays one line
(the same statements on both databases). The record is written in the caller's transaction: an action
and its record commit together or not at all. Append LAST in a transaction, once every row it changes
is locked: every writer then takes rows before the head, so two of them never wait on each other
(the desk's close, an MO batch recording a BAJA, a ban, a session reset), and the head is held only
until the commit.

A chain proves the records agree with each other, not who wrote them: someone who can write to the
database can recompute every hash. ``gatewayd audit verify`` prints the head's hash; kept elsewhere
(a ticket, a log shipped off the machine), it anchors the chain up to that point.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Integer,
    String,
    Text,
    cast,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store._tables import table_of
from gatewayd.store.base import Base, utcnow

#: The previous hash of the first record.
GENESIS_HASH = "0" * 64
#: The lengths of the text columns; longer values are cut (an address from a proxy header, a name).
ACTOR_LENGTH = 64
SOURCE_LENGTH = 64
ACTION_LENGTH = 64
SUBJECT_LENGTH = 128


class AuditRecord(Base):
    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    # No foreign key: the record outlives the account it names.
    actor_id: Mapped[int | None] = mapped_column(default=None, index=True)
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    source: Mapped[str | None] = mapped_column(String(SOURCE_LENGTH), default=None)
    action: Mapped[str] = mapped_column(String(ACTION_LENGTH), index=True)
    subject: Mapped[str | None] = mapped_column(String(SUBJECT_LENGTH), default=None, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row (id 1): the last record's number and hash, the point appends queue on."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


HEAD_ID = 1

# The genesis head, wherever the table is created: by migration 0011, or by ``create_all`` (tests).
event.listen(
    AuditHead.__table__,
    "after_create",
    DDL(f"INSERT INTO audit_head (id, seq, hash) VALUES ({HEAD_ID}, 0, '{GENESIS_HASH}')"),  # type: ignore[no-untyped-call]
)


class AuditHeadMissing(RuntimeError):
    """The ``audit_head`` row is gone: nothing can be recorded until the chain is looked at."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What a caller records. ``details`` must be JSON: strings, numbers, booleans, None, lists and
    objects of them (``before`` / ``after`` by convention for changes)."""

    action: str
    actor: str
    actor_id: int | None = None
    source: str | None = None
    subject: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def _canonical_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def record_hash(
    *,
    seq: int,
    at: datetime,
    actor_id: int | None,
    actor: str,
    source: str | None,
    action: str,
    subject: str | None,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of a record's fields and the previous hash, in one canonical JSON form."""
    canonical = json.dumps(
        [seq, _canonical_time(at), actor_id, actor, source, action, subject, details, prev_hash],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _stored_hash(record: Row[Any]) -> str:
    return record_hash(
        seq=record.seq,
        at=record.at,
        actor_id=record.actor_id,
        actor=record.actor,
        source=record.source,
        action=record.action,
        subject=record.subject,
        details=record.details,
        prev_hash=record.prev_hash,
    )


async def append_audit(
    session: AsyncSession, entry: AuditEntry, *, now: datetime | None = None
) -> AuditRecord:
    """Adds ``entry`` as the next record, in the caller's transaction (which then holds the head
    until it ends: keep audited transactions short)."""
    moment = now or utcnow()
    # A round trip through JSON: the hash covers what the column gives back, and a value JSON
    # cannot carry fails here, before anything is written.
    details = json.loads(json.dumps(dict(entry.details), allow_nan=False))
    head = (
        await session.execute(
            update(AuditHead)
            .where(AuditHead.id == HEAD_ID)
            .values(seq=AuditHead.seq + 1)
            .returning(AuditHead.seq, AuditHead.hash)
        )
    ).one_or_none()
    if head is None:
        raise AuditHeadMissing("the audit_head row is missing: run `gatewayd audit verify`")
    seq, prev_hash = int(head.seq), str(head.hash)
    fields = {
        "seq": seq,
        "at": moment,
        "actor_id": entry.actor_id,
        "actor": entry.actor[:ACTOR_LENGTH],
        "source": entry.source[:SOURCE_LENGTH] if entry.source is not None else None,
        "action": entry.action[:ACTION_LENGTH],
        "subject": entry.subject[:SUBJECT_LENGTH] if entry.subject is not None else None,
        "details": details,
    }
    digest = record_hash(**fields, prev_hash=prev_hash)
    # a Core insert: the record is written now, in statement order, without the unit of work's flush
    await session.execute(insert(table_of(AuditRecord)).values(**fields, prev_hash=prev_hash, hash=digest))
    await session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(hash=digest))
    return AuditRecord(**fields, prev_hash=prev_hash, hash=digest)


async def records_about(
    session: AsyncSession, subject: str, *, actions: Sequence[str] | None = None, limit: int = 200
) -> list[AuditRecord]:
    """The newest ``limit`` records about ``subject`` (of ``actions`` only, when given), newest first."""
    statement = select(AuditRecord).where(AuditRecord.subject == subject)
    if actions is not None:
        statement = statement.where(AuditRecord.action.in_(sorted(actions)))
    rows = await session.execute(statement.order_by(AuditRecord.seq.desc()).limit(limit))
    return list(rows.scalars())


_HASHED = (
    AuditRecord.seq,
    AuditRecord.at,
    AuditRecord.actor_id,
    AuditRecord.actor,
    AuditRecord.source,
    AuditRecord.action,
    AuditRecord.subject,
    AuditRecord.details,
    AuditRecord.prev_hash,
    AuditRecord.hash,
)


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """What :func:`verify_audit` found: ``problem`` is None when the chain is whole."""

    records: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


async def verify_audit(session: AsyncSession, *, page: int = 1000) -> AuditCheck:
    """Reads the whole chain in order, page by page, and checks each record's number, link and hash,
    and that the head names the last record."""
    head = await session.get(AuditHead, HEAD_ID)
    if head is None:
        return AuditCheck(0, 0, GENESIS_HASH, "the audit head row is missing", None)
    expected_seq, previous, checked = 1, GENESIS_HASH, 0
    while True:
        rows = (
            await session.execute(
                select(*_HASHED).where(AuditRecord.seq >= expected_seq).order_by(AuditRecord.seq).limit(page)
            )
        ).all()
        for record in rows:
            problem = None
            if record.seq != expected_seq:
                problem = f"record {expected_seq} is missing (the next is {record.seq})"
            elif record.prev_hash != previous:
                problem = "its link to the record before does not match (a record before it was changed)"
            elif _stored_hash(record) != record.hash:
                problem = "its contents do not match its hash (the record was changed)"
            if problem is not None:
                return AuditCheck(checked, head.seq, head.hash, problem, record.seq)
            previous, expected_seq, checked = record.hash, expected_seq + 1, checked + 1
        if len(rows) < page:
            break
    if head.seq != checked or head.hash != previous:
        return AuditCheck(
            checked,
            head.seq,
            head.hash,
            f"the head names record {head.seq} but the chain ends at record {checked} "
            "(records at the end were removed, or the head was changed)",
            checked + 1,
        )
    return AuditCheck(checked, head.seq, head.hash)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which records a reader asks for; every given criterion must hold. ``actor``, ``action`` and
    ``source`` match exactly (the actor's name in any case); ``subject`` matches exactly, or, without
    a colon, every subject of that kind (``conversation`` -> ``conversation:*``); ``since`` (inclusive)
    and ``until`` (exclusive) bound the time; ``text`` is looked for in the details, letters A-Z in
    any case, others as typed (the JSON column may hold them escaped, and SQLite folds the case of
    ASCII letters only)."""

    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None


def _conditions(wanted: AuditFilter) -> list[Any]:
    conditions: list[Any] = []
    if wanted.actor:
        conditions.append(func.lower(AuditRecord.actor) == wanted.actor.lower())
    if wanted.action:
        conditions.append(AuditRecord.action == wanted.action)
    if wanted.subject:
        if ":" in wanted.subject:
            conditions.append(AuditRecord.subject == wanted.subject)
        else:
            conditions.append(AuditRecord.subject.startswith(wanted.subject + ":", autoescape=True))
    if wanted.source:
        conditions.append(AuditRecord.source == wanted.source)
    if wanted.since is not None:
        conditions.append(AuditRecord.at >= wanted.since)
    if wanted.until is not None:
        conditions.append(AuditRecord.at < wanted.until)
    if wanted.text:
        stored = cast(AuditRecord.details, Text)
        # The JSON column may hold non-ASCII characters escaped (\u00f1): either form is found.
        escaped = json.dumps(wanted.text)[1:-1]
        conditions.append(
            or_(stored.icontains(wanted.text, autoescape=True), stored.icontains(escaped, autoescape=True))
        )
    return conditions


async def audit_page(
    session: AsyncSession,
    wanted: AuditFilter,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """Up to ``limit`` records matching ``wanted``, newest first: those just below record ``before``
    (the next page), or just above record ``after`` (the page before), or the newest (keyset paging
    on the record number: a page costs the same however deep it lies)."""
    statement = select(AuditRecord).where(*_conditions(wanted))
    if after is not None:
        statement = statement.where(AuditRecord.seq > after).order_by(AuditRecord.seq.asc())
    else:
        if before is not None:
            statement = statement.where(AuditRecord.seq < before)
        statement = statement.order_by(AuditRecord.seq.desc())
    records = list((await session.scalars(statement.limit(limit))).all())
    return records[::-1] if after is not None else records


async def audit_has(
    session: AsyncSession, wanted: AuditFilter, *, below: int | None, above: int | None
) -> bool:
    """Whether a record matching ``wanted`` lies below record ``below`` or above record ``above``."""
    statement = select(AuditRecord.seq).where(*_conditions(wanted))
    if below is not None:
        statement = statement.where(AuditRecord.seq < below)
    if above is not None:
        statement = statement.where(AuditRecord.seq > above)
    return (await session.scalar(statement.limit(1))) is not None


async def audit_actions(session: AsyncSession) -> list[str]:
    """The distinct actions recorded so far, sorted (what a reader can filter on)."""
    return list(
        (await session.scalars(select(AuditRecord.action).distinct().order_by(AuditRecord.action))).all()
    )
