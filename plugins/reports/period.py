"""The date range a report covers, read from the page's query: a preset (``period`` = day, week or month
around ``date``) or ``from`` / ``to`` (both days included), in the viewer's time zone. Its UTC bounds
select whole rollup hours, exact in any whole-hour zone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from translations import N_

PRESETS = ("day", "week", "month")
#: The longest range a report covers (two years and a leap day).
MAX_DAYS = 731
#: The days a report may name: far from the calendar's ends, so a week, a month or a viewer's time zone
#: around them never steps past year 1 or 9999.
EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 12, 31)


class PeriodError(ValueError):
    """The range asked for cannot be reported; ``args[0]`` is an English message marked with N_."""


BAD_DATE = N_("Dates are written as YYYY-MM-DD (for example 2026-12-06).")
REVERSED = N_("The first day of the range is after its last day.")
TOO_LONG = N_("A report covers at most two years: choose a shorter range.")
OUT_OF_RANGE = N_("Reports cover days from 2000-01-01 to 2100-12-31.")


@dataclass(frozen=True, slots=True)
class Period:
    first: date
    last: date
    zone: ZoneInfo
    #: The preset it was chosen by ('' for a from/to range).
    preset: str = ""

    @property
    def start(self) -> datetime:
        """The first instant, in UTC."""
        return datetime.combine(self.first, time(), self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The instant after the last day, in UTC."""
        return datetime.combine(self.last + timedelta(days=1), time(), self.zone).astimezone(UTC)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def query(self) -> dict[str, str]:
        """The query that asks for this range again (export links, the other reports)."""
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}

    def slug(self) -> str:
        """For file names: ``2026-12-01_2026-12-31``."""
        return f"{self.first.isoformat()}_{self.last.isoformat()}"


def _day(text: str) -> date:
    try:
        day = date.fromisoformat(text.strip())
    except ValueError as error:
        raise PeriodError(BAD_DATE) from error
    if not EARLIEST <= day <= LATEST:
        raise PeriodError(OUT_OF_RANGE)
    return day


def parse_period(params: Mapping[str, str], today: date, zone: ZoneInfo) -> Period:
    """The range the query asks for (this month when it asks for none); :class:`PeriodError` when it
    is not a range of real days, runs backwards or spans more than :data:`MAX_DAYS`."""
    given_from, given_to = params.get("from", "").strip(), params.get("to", "").strip()
    preset = params.get("period", "")
    if given_from or given_to:
        first = _day(given_from or given_to)
        last = _day(given_to or given_from)
        preset = ""
    else:
        preset = preset if preset in PRESETS else "month"
        anchor = _day(params["date"]) if params.get("date", "").strip() else today
        if preset == "day":
            first = last = anchor
        elif preset == "week":
            first = anchor - timedelta(days=anchor.weekday())
            last = first + timedelta(days=6)
        else:
            first = anchor.replace(day=1)
            last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    if first > last:
        raise PeriodError(REVERSED)
    if (last - first).days + 1 > MAX_DAYS:
        raise PeriodError(TOO_LONG)
    return Period(first, last, zone, preset)
