"""Subscribers: race-safe bulk upsert by MSISDN, look-ups, opt-out, ban and session reset.

A subscriber's number is held as E.164 digits without '+' (``34600111222``), as everywhere in the
daemon and the store: the '+' belongs to the edges that show or parse numbers.
"""

from __future__ import annotations

import base64
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._pg_ingest import insert_subscribers
from gatewayd.store._tables import among, chunks, table_of
from gatewayd.store.subscribers import Subscriber

_CLIENT_ID_ATTEMPTS = 5
SUBSCRIBERS = table_of(Subscriber)


#: What a client ID looks like: "C" and 8 base32 characters (as :func:`new_client_id` makes them).
CLIENT_ID_PATTERN = re.compile(r"^C[A-Z2-7]{8}$")


def client_id_of(text: str) -> str | None:
    """The client ID ``text`` names (any case, spaces around), None when it names none."""
    candidate = text.strip().upper()
    return candidate if CLIENT_ID_PATTERN.match(candidate) else None


def new_client_id() -> str:
    """``C`` + 8 random base32 characters: a pseudonym that says nothing about the MSISDN."""
    return "C" + base64.b32encode(secrets.token_bytes(5)).decode("ascii")


def new_client_ids(count: int) -> list[str]:
    """``count`` client IDs as :func:`new_client_id` makes them, from one read of the system's random
    source (5 bytes encode to exactly 8 base32 characters, so the IDs are the encoding's slices)."""
    encoded = base64.b32encode(secrets.token_bytes(5 * count)).decode("ascii")
    return ["C" + encoded[start : start + 8] for start in range(0, 8 * count, 8)]


@dataclass(frozen=True, slots=True)
class SubscriberSeen:
    """A subscriber as an MO shows them: MSISDN (normalized), carrier and country when known. On
    PostgreSQL a subscriber created by the upsert starts with ``mos`` MOs counted and last seen at
    ``last_mo_at`` (the MO ingest's batch), so the MO insert need not rewrite the new row."""

    msisdn: str
    carrier: str | None = None
    country: str | None = None
    mos: int = 0
    last_mo_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SubscriberRef:
    """What the pipelines need to know about a subscriber, without loading the ORM object."""

    id: int
    client_id: str
    msisdn: str
    carrier: str | None
    country: str | None
    opted_out: bool
    banned: bool
    #: MOs counted on the subscriber when this upsert created it (see :class:`SubscriberSeen`).
    counted_mos: int = 0
    #: This upsert created the subscriber (a new client, for the reports' rollups).
    created: bool = False


_REF_COLUMNS = (
    SUBSCRIBERS.c.id,
    SUBSCRIBERS.c.client_id,
    SUBSCRIBERS.c.msisdn,
    SUBSCRIBERS.c.carrier,
    SUBSCRIBERS.c.country,
    SUBSCRIBERS.c.opted_out,
    SUBSCRIBERS.c.banned,
)


class SubscriberUpserts(ABC):
    """Creating the subscribers an MO batch names, in bulk."""

    async def upsert(
        self, session: AsyncSession, seen: Sequence[SubscriberSeen], now: datetime
    ) -> dict[str, SubscriberRef]:
        """Creates the subscribers not known yet and returns every one by MSISDN.

        Race-safe across daemons: ``INSERT ... ON CONFLICT DO NOTHING`` then ``SELECT``; rows are
        inserted in MSISDN order so concurrent batches cannot deadlock. A changed carrier or country
        (number portability) is updated. Later entries for the same MSISDN win.
        """
        wanted: dict[str, SubscriberSeen] = {item.msisdn: item for item in seen}
        if not wanted:
            return {}
        found: dict[str, SubscriberRef] = {}
        missing = sorted(wanted)
        for _ in range(_CLIENT_ID_ATTEMPTS):
            found.update(await self._insert(session, wanted, missing, now))
            # Anything still missing lost a client_id collision: try again with fresh IDs.
            missing = [msisdn for msisdn in missing if msisdn not in found]
            if not missing:
                break
        else:
            raise RuntimeError(f"could not allocate client IDs for {len(missing)} subscriber(s)")
        await self.note_carriers(session, wanted, found)
        return found

    @staticmethod
    async def note_carriers(
        session: AsyncSession, wanted: Mapping[str, SubscriberSeen], found: dict[str, SubscriberRef]
    ) -> None:
        """A carrier or country ``wanted`` names that a subscriber of ``found`` does not have yet
        (number portability) is stored, and set in ``found``."""
        changes = []
        for msisdn, ref in found.items():
            item = wanted[msisdn]
            carrier = item.carrier or ref.carrier
            country = item.country or ref.country
            if (carrier, country) != (ref.carrier, ref.country):
                changes.append({"b_id": ref.id, "b_carrier": carrier, "b_country": country})
                found[msisdn] = replace(ref, carrier=carrier, country=country)
        if changes:
            statement = (
                update(SUBSCRIBERS)
                .where(SUBSCRIBERS.c.id == bindparam("b_id"))
                .values(carrier=bindparam("b_carrier"), country=bindparam("b_country"))
            )
            await session.execute(statement, changes)

    @abstractmethod
    async def _insert(
        self,
        session: AsyncSession,
        wanted: Mapping[str, SubscriberSeen],
        missing: Sequence[str],
        now: datetime,
    ) -> dict[str, SubscriberRef]:
        """Inserts the ``missing`` MSISDNs (sorted) with fresh client IDs but those known meanwhile;
        returns the subscribers of ``missing`` it can see (those that lost a client ID collision not)."""


class SQLiteSubscriberUpserts(SubscriberUpserts):
    """An executemany INSERT ... ON CONFLICT DO NOTHING, then a SELECT."""

    async def _insert(
        self,
        session: AsyncSession,
        wanted: Mapping[str, SubscriberSeen],
        missing: Sequence[str],
        now: datetime,
    ) -> dict[str, SubscriberRef]:
        await session.execute(
            sqlite.insert(SUBSCRIBERS).on_conflict_do_nothing(),
            [
                {
                    "client_id": client_id,
                    "msisdn": msisdn,
                    "carrier": wanted[msisdn].carrier,
                    "country": wanted[msisdn].country,
                    "first_seen": now,
                    "last_seen": now,
                }
                for msisdn, client_id in zip(missing, new_client_ids(len(missing)), strict=True)
            ],
        )
        found = await _refs_by_msisdn(session, missing)
        # SQLite has one writer at a time: a row first seen at this batch's instant is this batch's.
        created = await session.execute(
            select(SUBSCRIBERS.c.msisdn).where(
                among(SUBSCRIBERS.c.msisdn, missing), SUBSCRIBERS.c.first_seen == now
            )
        )
        for msisdn in created.scalars():
            found[msisdn] = replace(found[msisdn], created=True)
        return found


class PostgreSQLSubscriberUpserts(SubscriberUpserts):
    """One array statement inserts and reads back, a subscriber it creates starting with its batch's MOs
    counted (see :class:`SubscriberSeen`); what it could not see is read again."""

    async def _insert(
        self,
        session: AsyncSession,
        wanted: Mapping[str, SubscriberSeen],
        missing: Sequence[str],
        now: datetime,
    ) -> dict[str, SubscriberRef]:
        rows = await insert_subscribers(
            session,
            [
                (msisdn, client_id, item.carrier, item.country, item.mos, item.last_mo_at)
                for msisdn, client_id in zip(missing, new_client_ids(len(missing)), strict=True)
                for item in (wanted[msisdn],)
            ],
            now,
        )
        found = {
            row.msisdn: SubscriberRef(
                row.id,
                row.client_id,
                row.msisdn,
                row.carrier,
                row.country,
                row.opted_out,
                row.banned,
                row.counted,
                row.created,
            )
            for row in rows
        }
        unseen = [msisdn for msisdn in missing if msisdn not in found]
        if unseen:
            found.update(await _refs_by_msisdn(session, unseen))
        return found


async def _refs_by_msisdn(session: AsyncSession, msisdns: Sequence[str]) -> dict[str, SubscriberRef]:
    result = await session.execute(select(*_REF_COLUMNS).where(among(SUBSCRIBERS.c.msisdn, msisdns)))
    return {row.msisdn: SubscriberRef(*row) for row in result}


async def get_subscriber(session: AsyncSession, subscriber_id: int) -> Subscriber | None:
    return await session.get(Subscriber, subscriber_id)


async def get_subscriber_by_msisdn(session: AsyncSession, msisdn: str) -> Subscriber | None:
    result = await session.execute(select(Subscriber).where(Subscriber.msisdn == msisdn))
    return result.scalar_one_or_none()


async def get_subscriber_by_client_id(session: AsyncSession, client_id: str) -> Subscriber | None:
    wanted = client_id.strip().upper()
    result = await session.execute(select(Subscriber).where(Subscriber.client_id == wanted))
    return result.scalar_one_or_none()


async def set_opted_out(session: AsyncSession, subscriber_id: int, opted_out: bool, now: datetime) -> None:
    """Opt-out (BAJA/STOP) or back in (ALTA). Queued MTs are not touched: the sender re-checks."""
    await session.execute(
        update(SUBSCRIBERS)
        .where(SUBSCRIBERS.c.id == subscriber_id)
        .values(opted_out=opted_out, opted_out_at=now if opted_out else None)
    )


@dataclass(frozen=True, slots=True)
class BanChange:
    """A subscriber whose ban changed: the reason before (None: was not banned) and after (None: is
    not banned now)."""

    subscriber_id: int
    client_id: str
    reason_before: str | None
    reason_after: str | None


@dataclass(frozen=True, slots=True)
class BanOutcome:
    """What :func:`set_bans` did with each client ID it was given (upper case)."""

    changed: dict[str, BanChange]
    already: set[str]
    unknown: set[str]


async def set_bans(
    session: AsyncSession, client_ids: Sequence[str], *, reason: str | None, now: datetime
) -> BanOutcome:
    """Bans (``reason`` given) or unbans (None) the subscribers with these client IDs, their rows
    locked; a subscriber already in that state is left as it is (its reason and date too)."""
    wanted = sorted({client_id.strip().upper() for client_id in client_ids})
    found: dict[str, Subscriber] = {}
    for part in chunks(wanted):
        rows = await session.execute(
            select(Subscriber)
            .where(among(Subscriber.client_id, part))
            .order_by(Subscriber.id)
            .with_for_update()
        )
        found.update({subscriber.client_id: subscriber for subscriber in rows.scalars()})
    ban = reason is not None
    changed: dict[str, BanChange] = {}
    already: set[str] = set()
    for client_id in sorted(found):  # changes in client ID order (their audit records too)
        subscriber = found[client_id]
        if subscriber.banned == ban:
            already.add(client_id)
            continue
        before = subscriber.banned_reason if subscriber.banned else None
        subscriber.banned = ban
        subscriber.banned_reason = reason[:255] if reason is not None else None
        subscriber.banned_at = now if ban else None
        changed[client_id] = BanChange(subscriber.id, client_id, before, subscriber.banned_reason)
    await session.flush()
    return BanOutcome(changed, already, set(wanted) - set(found))


async def update_subscriber_details(
    session: AsyncSession, subscriber_id: int, *, alias: str | None, notes: str | None
) -> None:
    """The operator's notes about a client, kept to recognise them on their next SMS."""
    await session.execute(
        update(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber_id).values(alias=alias, notes=notes)
    )
