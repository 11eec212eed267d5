"""The client card's small charts: bar geometry computed here, drawn as inline SVG by the template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.repo_stats import HourlyCount, client_activity

CHART_WIDTH = 240
CHART_HEIGHT = 60
LABEL_BAND = 12
DAYS_SHOWN = 14
HOURS_WINDOW_DAYS = 30


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    # (x, text) under some bars: the first, the middle and the last
    ticks: tuple[tuple[float, str], ...]
    total: int


def bar_chart(
    values: Sequence[tuple[str, int]], *, width: int = CHART_WIDTH, height: int = CHART_HEIGHT
) -> Chart:
    count = max(1, len(values))
    slot = width / count
    top = max((value for _, value in values), default=0) or 1
    plot = height - LABEL_BAND
    bars = []
    for index, (label, value) in enumerate(values):
        bar_height = plot * value / top
        bars.append(
            Bar(
                round(index * slot + 1, 2),
                round(plot - bar_height, 2),
                round(max(slot - 2, 1), 2),
                round(bar_height, 2),
                label,
                value,
            )
        )
    marks = sorted({0, len(values) // 2, len(values) - 1}) if values else []
    ticks = tuple((round(index * slot + slot / 2, 2), values[index][0]) for index in marks)
    return Chart(width, height, tuple(bars), ticks, sum(value for _, value in values))


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
