"""Premium-SMS accounts: per client and billed service, the state, the month's spend and the notice's
dates (``premium_accounts``, migration 0018); the rules that move them are ``routing.premium``'s.

Rows are made on a client's first chat MO to a billed service (``INSERT .. ON CONFLICT DO NOTHING``:
two daemons' batches racing on the same client make one), then read ``FOR UPDATE`` by whoever changes
them (the MO pipeline's batch, the outbox charging a billed MT), so two transactions never both add
to the same spend. The recipient rule reads the holds (:func:`holds_of`, :func:`holds_by_msisdn`);
an MT's charge is kept on the MT (``mt_messages.charge``) and given back by :func:`credit` when the
MT ends failed, expired, refused or cancelled.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import BigInteger, ForeignKey, SmallInteger, String, bindparam, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store._tables import among, chunks, table_of
from gatewayd.store.base import Base, utcnow
from gatewayd.store.enums import MTStatus, PartStatus, enum_type
from gatewayd.store.messages import MTMessage, MTPart
from gatewayd.store.premium_months import give_back, keep_months
from gatewayd.store.subscribers import Subscriber
from routing.premium import Account, PremiumState, given_back, hold, hold_of_queued


class PremiumAccount(Base):
    """A client's standing on one billed service (``short_code``: the service's, which the MTs that
    bill the client leave from; one billed service per short code)."""

    __tablename__ = "premium_accounts"

    subscriber_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    service: Mapped[str] = mapped_column(String(32), primary_key=True)
    short_code: Mapped[str] = mapped_column(String(16))
    state: Mapped[PremiumState] = mapped_column(enum_type(PremiumState), default=PremiumState.NORMAL)
    #: ``YYYY-MM`` in the service's zone ('' until the first MO is decided), and its first instant.
    month: Mapped[str] = mapped_column(String(7), default="")
    month_start: Mapped[datetime | None] = mapped_column(default=None)
    #: The month's spend in minor units.
    spent: Mapped[int] = mapped_column(BigInteger, default=0)
    steps_passed: Mapped[int] = mapped_column(SmallInteger, default=0)
    last_mo_at: Mapped[datetime | None] = mapped_column(default=None)
    noticed_at: Mapped[datetime | None] = mapped_column(default=None)
    held_until: Mapped[datetime | None] = mapped_column(default=None)
    #: When the hold began: MTs queued up to then still go (``routing.premium.hold_of_queued``).
    held_since: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


ACCOUNTS = table_of(PremiumAccount)
#: (subscriber id, service)
Key = tuple[int, str]
#: A hold the recipient rule reads: (state, until).
Hold = tuple[PremiumState, datetime | None]

_CREATE = text(
    "INSERT INTO premium_accounts (subscriber_id, service, short_code, state, month, spent, steps_passed, "
    "updated_at) VALUES (:subscriber_id, :service, :short_code, 'normal', '', 0, 0, :updated_at) "
    "ON CONFLICT (subscriber_id, service) DO NOTHING"
).bindparams(bindparam("updated_at", type_=PremiumAccount.__table__.c.updated_at.type))


def _account(row: PremiumAccount) -> Account:
    return Account(
        state=row.state,
        month=row.month,
        month_start=row.month_start,
        spent=row.spent,
        steps_passed=row.steps_passed,
        last_mo_at=row.last_mo_at,
        noticed_at=row.noticed_at,
        held_until=row.held_until,
        held_since=row.held_since,
    )


async def lock_accounts(
    session: AsyncSession,
    wanted: Mapping[Key, str],
    now: datetime,
    *,
    create: bool,
    clients_first: bool = False,
) -> dict[Key, Account]:
    """The accounts of these (subscriber, service) keys (value: the service's short code), locked for
    the caller's transaction (in key order: two transactions never wait on each other in a circle);
    ``create``: the missing ones are made first (a first MO), else they are left out.
    ``clients_first``: their subscribers' rows are locked before (the outbox, which updates them
    later; the MO pipeline's upsert holds them already): every transaction takes a client's
    subscriber row, then their accounts."""
    keys = sorted(wanted)
    if not keys:
        return {}
    if clients_first:
        subscribers = table_of(Subscriber)
        for ids in chunks(sorted({sid for sid, _ in keys})):
            await session.execute(
                select(subscribers.c.id)
                .where(among(subscribers.c.id, ids))
                .order_by(subscribers.c.id)
                .with_for_update()
            )
    if create:
        await session.execute(
            _CREATE,
            [
                {
                    "subscriber_id": sid,
                    "service": service,
                    "short_code": wanted[(sid, service)],
                    "updated_at": now,
                }
                for sid, service in keys
            ],
        )
    found: dict[Key, Account] = {}
    for part in chunks(keys):
        rows = await session.execute(
            select(PremiumAccount)
            .where(tuple_(PremiumAccount.subscriber_id, PremiumAccount.service).in_(part))
            .order_by(PremiumAccount.subscriber_id, PremiumAccount.service)
            .with_for_update()
        )
        for row in rows.scalars():
            found[(row.subscriber_id, row.service)] = _account(row)
    return found


async def save_accounts(session: AsyncSession, accounts: Mapping[Key, Account], now: datetime) -> None:
    """Writes the accounts (locked by :func:`lock_accounts` in this transaction), and their month's
    spend to ``premium_months``."""
    if not accounts:
        return
    statement = (
        update(ACCOUNTS)
        .where(ACCOUNTS.c.subscriber_id == bindparam("b_sid"), ACCOUNTS.c.service == bindparam("b_service"))
        .values(
            state=bindparam("b_state"),
            month=bindparam("b_month"),
            month_start=bindparam("b_month_start"),
            spent=bindparam("b_spent"),
            steps_passed=bindparam("b_steps"),
            last_mo_at=bindparam("b_last_mo_at"),
            noticed_at=bindparam("b_noticed_at"),
            held_until=bindparam("b_held_until"),
            held_since=bindparam("b_held_since"),
            updated_at=bindparam("b_now"),
        )
    )
    await session.execute(
        statement,
        [
            {
                "b_sid": sid,
                "b_service": service,
                "b_state": account.state,
                "b_month": account.month,
                "b_month_start": account.month_start,
                "b_spent": account.spent,
                "b_steps": account.steps_passed,
                "b_last_mo_at": account.last_mo_at,
                "b_noticed_at": account.noticed_at,
                "b_held_until": account.held_until,
                "b_held_since": account.held_since,
                "b_now": now,
            }
            for (sid, service), account in sorted(accounts.items())
        ],
    )
    await keep_months(session, ((sid, svc, a.month, a.spent) for (sid, svc), a in accounts.items()))


_HOLDS = select(
    ACCOUNTS.c.subscriber_id, ACCOUNTS.c.short_code, ACCOUNTS.c.state, ACCOUNTS.c.held_until
).where(ACCOUNTS.c.state != PremiumState.NORMAL)


async def holds_of(session: AsyncSession, subscriber_ids: Collection[int]) -> dict[int, dict[str, Hold]]:
    """Per subscriber and short code, the account's state when it is not ``normal`` (whether it
    still holds is :func:`routing.premium.hold` with the time)."""
    found: dict[int, dict[str, Hold]] = {}
    for part in chunks(sorted(set(subscriber_ids))):
        for row in await session.execute(_HOLDS.where(among(ACCOUNTS.c.subscriber_id, part))):
            found.setdefault(row.subscriber_id, {})[row.short_code] = (row.state, row.held_until)
    return found


async def holds_of_mts(
    session: AsyncSession, mt_ids: Sequence[int], now: datetime
) -> dict[int, PremiumState]:
    """The claim's check at send time: of these MTs (billed, from billed short codes), those whose
    client is held on their short code now, with the state, unless they were queued before the hold
    began (``routing.premium.hold_of_queued``)."""
    found: dict[int, PremiumState] = {}
    mts = table_of(MTMessage)
    for part in chunks(sorted(set(mt_ids))):
        rows = await session.execute(
            select(
                mts.c.id,
                mts.c.created_at,
                ACCOUNTS.c.state,
                ACCOUNTS.c.held_until,
                ACCOUNTS.c.held_since,
            )
            .join_from(
                mts,
                ACCOUNTS,
                (ACCOUNTS.c.subscriber_id == mts.c.subscriber_id) & (ACCOUNTS.c.short_code == mts.c.source),
            )
            .where(among(mts.c.id, part), ACCOUNTS.c.state != PremiumState.NORMAL)
        )
        for row in rows:
            state = hold_of_queued(row.state, row.held_until, row.held_since, row.created_at, now)
            if state is not None:
                found[row.id] = state
    return found


def held(holds: Mapping[str, Hold], short_code: str, now: datetime) -> PremiumState | None:
    """The state that stops billed MTs from ``short_code`` now, of a subscriber's ``holds``."""
    found = holds.get(short_code)
    return None if found is None else hold(found[0], found[1], now)


async def account_of(session: AsyncSession, subscriber_id: int, service: str) -> Account | None:
    """One account as it is stored (the desk's card); None before the client's first MO."""
    row = await session.get(PremiumAccount, (subscriber_id, service))
    return None if row is None else _account(row)


async def credit(session: AsyncSession, charges: Iterable[tuple[int, str, int, datetime]]) -> None:
    """Gives back the charges of MTs that ended failed, expired or refused: (subscriber id, short
    code, amount, when charged), to the account of the short code's service when the charge is of
    its current month (a month closed is not reopened), and off that month in ``premium_months``."""
    amounts: dict[tuple[int, str], list[tuple[int, datetime]]] = {}
    for subscriber_id, short_code, amount, at in charges:
        amounts.setdefault((subscriber_id, short_code), []).append((amount, at))
    if not amounts:
        return
    for part in chunks(sorted(amounts)):
        rows = await session.execute(
            select(
                ACCOUNTS.c.subscriber_id,
                ACCOUNTS.c.service,
                ACCOUNTS.c.short_code,
                ACCOUNTS.c.month,
                ACCOUNTS.c.month_start,
            )
            .where(tuple_(ACCOUNTS.c.subscriber_id, ACCOUNTS.c.short_code).in_(part))
            .order_by(ACCOUNTS.c.subscriber_id, ACCOUNTS.c.service)
            .with_for_update()
        )
        for row in rows.all():
            start = row.month_start
            back = sum(
                amount
                for amount, at in amounts[(row.subscriber_id, row.short_code)]
                if start is not None and at >= start
            )
            if back:
                await session.execute(
                    update(ACCOUNTS)
                    .where(ACCOUNTS.c.subscriber_id == row.subscriber_id, ACCOUNTS.c.service == row.service)
                    .values(spent=ACCOUNTS.c.spent - back)
                )
                await give_back(session, row.subscriber_id, row.service, row.month, back)


class ChargedMT(Protocol):
    """An MT that reached a final status, with what giving its charge back reads."""

    @property
    def id(self) -> int: ...
    @property
    def subscriber_id(self) -> int | None: ...
    @property
    def source(self) -> str: ...
    @property
    def charge(self) -> int | None: ...
    @property
    def created_at(self) -> datetime: ...


#: The final statuses of an MT that never reached its client: its charge is given back (a cancelled
#: MT, withdrawn while queued, by ``gatewayd.store.mt.cancels``, where rollups count nothing).
UNDELIVERED = frozenset({MTStatus.FAILED, MTStatus.EXPIRED, MTStatus.REFUSED, MTStatus.CANCELLED})


#: The part states of a segment that may have reached the phone (the carrier may bill it).
_MAYBE_DELIVERED = (PartStatus.ACCEPTED, PartStatus.DELIVERED)


async def credit_finals(session: AsyncSession, finals: Iterable[tuple[ChargedMT, MTStatus]]) -> None:
    """:func:`credit` for the charged MTs among ``finals`` that ended failed, expired, refused or
    cancelled (no statement when there is none: where the final statuses are counted, for every MT):
    what :func:`routing.premium.given_back` says of each, from its segments that may have reached the
    phone (one more statement, only when there are such MTs)."""
    undelivered = [
        mt for mt, status in finals if status in UNDELIVERED and mt.charge and mt.subscriber_id is not None
    ]
    if not undelivered:
        return
    parts = table_of(MTPart)
    reached: dict[int, set[int]] = {}
    for part in chunks(sorted({mt.id for mt in undelivered})):
        rows = await session.execute(
            select(parts.c.mt_id, parts.c.part_no).where(
                among(parts.c.mt_id, part), parts.c.status.in_(_MAYBE_DELIVERED)
            )
        )
        for row in rows:
            reached.setdefault(row.mt_id, set()).add(row.part_no)
    await credit(
        session,
        [
            (
                mt.subscriber_id,
                mt.source,
                given_back(mt.charge, len(reached.get(mt.id, ()))),
                mt.created_at,
            )
            for mt in undelivered
            if mt.charge and mt.subscriber_id is not None
        ],
    )
