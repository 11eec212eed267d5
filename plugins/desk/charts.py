"""The client card's small charts: its activity per day and per hour, as :mod:`panel.charts` bars."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.repo_stats import HourlyCount, client_activity
from panel.charts import Chart, bar_chart

DAYS_SHOWN = 14
HOURS_WINDOW_DAYS = 30


def by_date(activity: Sequence[HourlyCount], today: date, days: int = DAYS_SHOWN) -> Chart:
    totals: dict[date, int] = {}
    for item in activity:
        totals[item.day] = totals.get(item.day, 0) + item.received + item.sent
    span = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    return bar_chart([(day.strftime("%d/%m"), totals.get(day, 0)) for day in span])


def by_hour(activity: Sequence[HourlyCount]) -> Chart:
    totals = [0] * 24
    for item in activity:
        totals[item.hour] += item.received + item.sent
    return bar_chart([(f"{hour:02d}h", totals[hour]) for hour in range(24)])


@dataclass(frozen=True, slots=True)
class ClientCharts:
    by_date: Chart
    by_hour: Chart


async def client_charts(
    session: AsyncSession, subscriber_id: int, now: datetime, zone: ZoneInfo
) -> ClientCharts:
    """The client's SMS (both ways) per local day over two weeks, and per local hour over a month."""
    since = now - timedelta(days=HOURS_WINDOW_DAYS)
    activity = await client_activity(session, subscriber_id, since, now + timedelta(seconds=1), zone)
    return ClientCharts(by_date(activity, now.astimezone(zone).date()), by_hour(activity))
