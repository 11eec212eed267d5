"""The reports' figures, read from the hourly rollups only (:mod:`gatewayd.store.rollups`), except a
client's history, which is that client's own rows of the message tables (read by the subscriber index),
and the spend of the billed services, read from ``premium_months`` (:mod:`gatewayd.store.premium_months`:
per client, billed service and month of the service's zone) with the holds of the premium accounts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    case,
    func,
    literal,
    literal_column,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.accounts import Account
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.premium import PremiumAccount
from gatewayd.store.premium_months import PremiumMonth
from gatewayd.store.rollups import (
    RESPONSE_BOUNDS,
    RESPONSE_FLOORS,
    OperatorFirstResponse,
    OperatorHourly,
    TrafficHourly,
)
from gatewayd.store.subscribers import Subscriber
from routing.premium import PremiumState, Terms

#: The dimensions the traffic report groups by (a column of ``traffic_hourly`` each).
DIMENSIONS = ("service", "short_code", "carrier", "country")


@dataclass(frozen=True, slots=True)
class HourTotal:
    hour: datetime
    mo: int
    mt: int


@dataclass(frozen=True, slots=True)
class TrafficRow:
    name: str
    mo: int
    mt: int
    delivered: int
    failed: int
    refused: int
    opt_outs: int
    new_clients: int


@dataclass(frozen=True, slots=True)
class Response:
    """A percentile of first responses, as the bucket it fell in: at most ``within`` seconds (None: more
    than ``over`` seconds, the last bucket)."""

    over: int
    within: int | None


@dataclass(frozen=True, slots=True)
class OperatorRow:
    operator_id: int
    name: str
    conversations: int
    mos_answered: int
    mts_sent: int
    mts_delivered: int
    replies_timed: int
    median: Response | None
    p90: Response | None

    @property
    def delivered_percent(self) -> float | None:
        return round(100 * self.mts_delivered / self.mts_sent, 1) if self.mts_sent else None


async def hourly_totals(session: AsyncSession, start: datetime, end: datetime) -> list[HourTotal]:
    """MOs and MTs per UTC hour (hours without traffic left out)."""
    t = TrafficHourly
    rows = await session.execute(
        select(t.hour, func.sum(t.mo), func.sum(t.mt))
        .where(t.hour >= start, t.hour < end)
        .group_by(t.hour)
        .order_by(t.hour)
    )
    return [HourTotal(hour, int(mo), int(mt)) for hour, mo, mt in rows]


def per_day(totals: Sequence[HourTotal], days: Sequence[date], zone: ZoneInfo) -> list[tuple[date, int, int]]:
    """(day, MOs, MTs) for each of ``days`` in the viewer's zone."""
    mos: dict[date, int] = {}
    mts: dict[date, int] = {}
    for total in totals:
        day = total.hour.astimezone(zone).date()
        mos[day] = mos.get(day, 0) + total.mo
        mts[day] = mts.get(day, 0) + total.mt
    return [(day, mos.get(day, 0), mts.get(day, 0)) for day in days]


def per_weekday_hour(totals: Sequence[HourTotal], zone: ZoneInfo) -> list[list[int]]:
    """MOs + MTs as [weekday (Monday 0)][local hour]."""
    grid = [[0] * 24 for _ in range(7)]
    for total in totals:
        local = total.hour.astimezone(zone)
        grid[local.weekday()][local.hour] += total.mo + total.mt
    return grid


async def traffic_by(
    session: AsyncSession, dimension: str, start: datetime, end: datetime
) -> list[TrafficRow]:
    """The traffic per value of ``dimension`` (one of :data:`DIMENSIONS`), busiest first."""
    t = TrafficHourly
    column = getattr(t, dimension)
    sums = [
        func.sum(getattr(t, name))
        for name in ("mo", "mt", "mt_delivered", "mt_failed", "mt_refused", "opt_outs", "new_clients")
    ]
    rows = await session.execute(
        select(column, *sums).where(t.hour >= start, t.hour < end).group_by(column).order_by(column)
    )
    found = [TrafficRow(str(name), *(int(value) for value in values)) for name, *values in rows]
    return sorted(found, key=lambda row: (-(row.mo + row.mt), row.name))


def percentile(histogram: Mapping[int, int], share: float) -> Response | None:
    """The bucket the ``share`` percentile (0.5: median) of a first-response histogram falls in."""
    total = sum(histogram.values())
    if not total:
        return None
    needed = share * total
    seen = 0
    for index, floor in enumerate(RESPONSE_FLOORS):
        seen += histogram.get(floor, 0)
        if seen >= needed:
            return Response(floor, RESPONSE_BOUNDS[index] if index < len(RESPONSE_BOUNDS) else None)
    return Response(RESPONSE_FLOORS[-1], None)


async def operators(session: AsyncSession, start: datetime, end: datetime) -> list[OperatorRow]:
    """Per operator who sent or answered anything in the range, by name."""
    o = OperatorHourly
    rows = await session.execute(
        select(o.operator_id, func.sum(o.conversations), func.sum(o.mos_answered), func.sum(o.mts_sent))
        .add_columns(func.sum(o.mts_delivered))
        .where(o.hour >= start, o.hour < end)
        .group_by(o.operator_id)
    )
    sums = {row[0]: [int(value) for value in row[1:]] for row in rows}
    r = OperatorFirstResponse
    histograms: dict[int, dict[int, int]] = {}
    for operator_id, floor, replies in await session.execute(
        select(r.operator_id, r.over_s, func.sum(r.replies))
        .where(r.hour >= start, r.hour < end)
        .group_by(r.operator_id, r.over_s)
    ):
        histograms.setdefault(operator_id, {})[floor] = int(replies)
    ids = sorted(set(sums) | set(histograms))
    names: dict[int, str] = {}
    if ids:
        accounts = await session.execute(select(Account.id, Account.display_name).where(Account.id.in_(ids)))
        names = {account_id: name for account_id, name in accounts}
    result = []
    for operator_id in ids:
        conversations, answered, sent, delivered = sums.get(operator_id, [0, 0, 0, 0])
        histogram = histograms.get(operator_id, {})
        result.append(
            OperatorRow(
                operator_id,
                names.get(operator_id, f"#{operator_id}"),
                conversations,
                answered,
                sent,
                delivered,
                sum(histogram.values()),
                percentile(histogram, 0.5),
                percentile(histogram, 0.9),
            )
        )
    return sorted(result, key=lambda row: (row.name.lower(), row.operator_id))


@dataclass(frozen=True, slots=True)
class HistoryLine:
    direction: str  # 'mo' or 'mt'
    message_id: int
    at: datetime
    text: str
    short_code: str
    carrier: str
    status: str | None


async def client_history(
    session: AsyncSession, subscriber_id: int, *, limit: int, offset: int = 0
) -> list[HistoryLine]:
    """The client's MOs and MTs, newest first (``limit`` from ``offset``)."""
    mos = select(
        literal("mo").label("direction"),
        MOMessage.id,
        MOMessage.received_at.label("at"),
        MOMessage.text,
        MOMessage.short_code,
        MOMessage.carrier,
        literal(None).label("status"),
    ).where(MOMessage.subscriber_id == subscriber_id)
    mts = select(
        literal("mt"),
        MTMessage.id,
        MTMessage.created_at,
        MTMessage.text,
        MTMessage.source,
        MTMessage.carrier,
        MTMessage.status,
    ).where(MTMessage.subscriber_id == subscriber_id)
    both = union_all(mos, mts).subquery()
    rows = await session.execute(
        select(both).order_by(both.c.at.desc(), both.c.id.desc()).limit(limit).offset(offset)
    )
    return [HistoryLine(*row) for row in rows]


#: The clients the spend report lists per billed service.
TOP_CLIENTS = 20


@dataclass(frozen=True, slots=True)
class ServiceSpend:
    """One billed service's spend in one of its months (minor units of ``currency``)."""

    service: str
    month: str  # YYYY-MM in the service's zone
    currency: str
    clients: int  # clients billed (spent above nothing)
    total: int
    top: int  # the most one client spent
    paused: int  # clients paused for confirmation now
    capped: int  # clients at the month's cap now

    @property
    def average(self) -> int:
        """Per client billed, rounded half up to a minor unit."""
        return (2 * self.total + self.clients) // (2 * self.clients) if self.clients else 0


@dataclass(frozen=True, slots=True)
class ClientSpend:
    service: str
    currency: str
    client_id: str
    msisdn: str
    total: int  # the client's spend in the range's months
    state: PremiumState  # the state that holds now (normal when none does)


def spend_months(start: datetime, end: datetime, zone: tzinfo) -> list[str]:
    """``YYYY-MM`` of each calendar month in ``zone`` that ``[start, end)`` touches."""
    first = start.astimezone(zone)
    last = (end - timedelta(microseconds=1)).astimezone(zone)
    months = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _months_wanted(terms: Mapping[str, Terms], start: datetime, end: datetime) -> list[tuple[str, str]]:
    return sorted(
        (service, month)
        for service, service_terms in terms.items()
        for month in spend_months(start, end, service_terms.zone)
    )


def _holding(state: PremiumState, now: datetime) -> ColumnElement[bool]:
    """The account's ``state`` holds now (as :func:`routing.premium.hold` decides)."""
    a = PremiumAccount
    return (a.state == state) & (a.held_until.is_(None) | (a.held_until > now))


async def spend_by_service(
    session: AsyncSession, terms: Mapping[str, Terms], start: datetime, end: datetime, now: datetime
) -> list[ServiceSpend]:
    """Per billed service and month of the service's zone that ``[start, end)`` touches, the spend
    kept in ``premium_months`` and the clients held now (their accounts, counted in the account's
    month), in one grouped statement; months nobody was billed or is held in left out."""
    wanted = _months_wanted(terms, start, end)
    if not wanted:
        return []
    m, a = PremiumMonth, PremiumAccount
    none = literal_column("0", BigInteger())
    spends = select(
        m.service.label("service"),
        m.month.label("month"),
        case((m.spent > 0, 1), else_=0).label("billed"),
        m.spent.label("spent"),
        none.label("paused"),
        none.label("capped"),
    ).where(tuple_(m.service, m.month).in_(wanted))
    holds = select(
        a.service,
        a.month,
        none,
        none,
        case((_holding(PremiumState.PAUSED, now), 1), else_=0),
        case((_holding(PremiumState.CAPPED, now), 1), else_=0),
    ).where(tuple_(a.service, a.month).in_(wanted), a.state.in_([PremiumState.PAUSED, PremiumState.CAPPED]))
    both = union_all(spends, holds).subquery()
    rows = await session.execute(
        select(
            both.c.service,
            both.c.month,
            func.sum(both.c.billed),
            func.sum(both.c.spent),
            func.max(both.c.spent),
            func.sum(both.c.paused),
            func.sum(both.c.capped),
        )
        .group_by(both.c.service, both.c.month)
        .order_by(both.c.service, both.c.month)
    )
    found = [
        ServiceSpend(
            service,
            month,
            terms[service].currency,
            *(int(value or 0) for value in (clients, total, top, paused, capped)),
        )
        for service, month, clients, total, top, paused, capped in rows
    ]
    return [row for row in found if row.clients or row.paused or row.capped]


async def top_clients(
    session: AsyncSession,
    terms: Mapping[str, Terms],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    limit: int = TOP_CLIENTS,
) -> list[ClientSpend]:
    """Per billed service, the ``limit`` clients who spent most in the months ``[start, end)``
    touches (their spend of those months added up; ties by client ID), biggest first, with the state
    that holds them now."""
    wanted = _months_wanted(terms, start, end)
    if not wanted:
        return []
    m, a = PremiumMonth, PremiumAccount
    spends = (
        select(m.service, m.subscriber_id, func.sum(m.spent).label("spent"))
        .where(tuple_(m.service, m.month).in_(wanted))
        .group_by(m.service, m.subscriber_id)
        .having(func.sum(m.spent) > 0)
        .subquery()
    )
    held_now = case(
        (_holding(PremiumState.CAPPED, now), PremiumState.CAPPED.value),
        (_holding(PremiumState.PAUSED, now), PremiumState.PAUSED.value),
        else_=None,
    )
    ranked = (
        select(
            spends.c.service,
            spends.c.spent,
            held_now.label("held"),
            Subscriber.client_id,
            Subscriber.msisdn,
            func.row_number()
            .over(partition_by=spends.c.service, order_by=(spends.c.spent.desc(), Subscriber.client_id))
            .label("place"),
        )
        .join_from(spends, Subscriber, Subscriber.id == spends.c.subscriber_id)
        .outerjoin(a, (a.subscriber_id == spends.c.subscriber_id) & (a.service == spends.c.service))
        .subquery()
    )
    rows = await session.execute(
        select(ranked).where(ranked.c.place <= limit).order_by(ranked.c.service, ranked.c.place)
    )
    return [
        ClientSpend(
            row.service,
            terms[row.service].currency,
            row.client_id,
            row.msisdn,
            int(row.spent),
            PremiumState(row.held) if row.held else PremiumState.NORMAL,
        )
        for row in rows
    ]
