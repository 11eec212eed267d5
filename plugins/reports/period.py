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
#: A refused value is shown again in its field, at most this long.
TYPED_LENGTH = 32


class PeriodError(ValueError):
    """The range asked for cannot be reported: ``message`` (English, marked with N_) says why, ``fields``
    names the form's fields at fault (``date``, ``from``, ``to``)."""

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message, *fields)
        self.message = message
        self.fields = fields


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


@dataclass(frozen=True, slots=True)
class RangeForm:
    """What the range forms show: the values of the range reported, or as typed with what is wrong."""

    preset: str
    date: str
    first: str
    last: str
    #: Why the range was refused (English, marked with N_; '' when it was not) and the fields at fault.
    error: str = ""
    fields: tuple[str, ...] = ()

    @classmethod
    def of(cls, period: Period) -> RangeForm:
        first, last = period.first.isoformat(), period.last.isoformat()
        return cls(period.preset, first, first, last)

    @classmethod
    def refused(cls, params: Mapping[str, str], error: PeriodError) -> RangeForm:
        """The values as they came (cut to a sane length) and the reason they were refused."""

        def typed(name: str) -> str:
            return params.get(name, "").strip()[:TYPED_LENGTH]

        preset = params.get("period", "")
        return cls(
            preset if preset in PRESETS else "",
            typed("date"),
            typed("from"),
            typed("to"),
            error.message,
            error.fields,
        )


def _day(text: str, field: str) -> date:
    try:
        day = date.fromisoformat(text.strip())
    except ValueError as error:
        raise PeriodError(BAD_DATE, field) from error
    if not EARLIEST <= day <= LATEST:
        raise PeriodError(OUT_OF_RANGE, field)
    return day


def parse_period(params: Mapping[str, str], today: date, zone: ZoneInfo) -> Period:
    """The range the query asks for (this month when it asks for none); :class:`PeriodError` when it
    is not a range of real days, runs backwards or spans more than :data:`MAX_DAYS`."""
    given_from, given_to = params.get("from", "").strip(), params.get("to", "").strip()
    preset = params.get("period", "")
    if given_from or given_to:
        first = _day(given_from, "from") if given_from else _day(given_to, "to")
        last = _day(given_to, "to") if given_to else first
        preset = ""
    else:
        preset = preset if preset in PRESETS else "month"
        anchor = _day(params["date"], "date") if params.get("date", "").strip() else today
        if preset == "day":
            first = last = anchor
        elif preset == "week":
            first = anchor - timedelta(days=anchor.weekday())
            last = first + timedelta(days=6)
        else:
            first = anchor.replace(day=1)
            last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    if first > last:
        raise PeriodError(REVERSED, "from", "to")
    if (last - first).days + 1 > MAX_DAYS:
        raise PeriodError(TOO_LONG, "from", "to")
    return Period(first, last, zone, preset)
