"""The reports' pure rules: date ranges in the viewer's zone, first-response buckets and percentiles,
the heat map's levels, CSV cells a spreadsheet cannot take for formulas, the months of each billed
service's zone a range touches and the average spend per client."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from gatewayd.store.rollups import RESPONSE_BOUNDS, RESPONSE_FLOORS, hour_of, response_floor
from plugins.reports.charts import LEVELS, heat_map, level
from plugins.reports.export import cell, csv_text
from plugins.reports.figures import Response, ServiceSpend, percentile, spend_months
from plugins.reports.period import MAX_DAYS, TYPED_LENGTH, PeriodError, RangeForm, parse_period

MADRID = ZoneInfo("Europe/Madrid")
TODAY = date(2026, 12, 6)  # a Sunday


def test_presets_cover_the_day_the_week_from_monday_and_the_month() -> None:
    day = parse_period({"period": "day", "date": "2026-03-29"}, TODAY, MADRID)
    assert (day.first, day.last) == (date(2026, 3, 29), date(2026, 3, 29))
    # the day summer time starts in Madrid has 23 hours: 22:00 UTC (the 28th) to 22:00 UTC
    assert day.start == datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert day.end == datetime(2026, 3, 29, 22, tzinfo=UTC)
    week = parse_period({"period": "week"}, TODAY, MADRID)
    assert (week.first, week.last) == (date(2026, 11, 30), date(2026, 12, 6))
    month = parse_period({"period": "month", "date": "2028-02-10"}, TODAY, MADRID)
    assert (month.first, month.last) == (date(2028, 2, 1), date(2028, 2, 29))
    assert parse_period({}, TODAY, MADRID).first == date(2026, 12, 1)
    ranged = parse_period({"from": "2026-01-01", "to": "2026-01-31", "period": "day"}, TODAY, MADRID)
    assert (ranged.first, ranged.last, ranged.preset) == (date(2026, 1, 1), date(2026, 1, 31), "")
    assert ranged.slug() == "2026-01-01_2026-01-31" and len(ranged.days) == 31


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-02-30", "to": "2026-03-01"},
        {"from": "01/02/2026"},
        {"date": "x"},
        {"from": "2026-03-02", "to": "2026-03-01"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        {"date": "9999-12-31"},
        {"period": "week", "date": "9999-12-31"},
        {"from": "9999-12-31"},
        {"from": "0001-01-01"},
    ],
)
def test_bad_ranges_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(PeriodError):
        parse_period(params, TODAY, MADRID)


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"from": "2026-02-30", "to": "2026-03-01"}, ("from",)),
        ({"from": "2026-03-01", "to": "01/03/2026"}, ("to",)),
        ({"to": "0001-01-01"}, ("to",)),
        ({"date": "x"}, ("date",)),
        ({"period": "week", "date": "9999-12-31"}, ("date",)),
        ({"from": "2026-03-02", "to": "2026-03-01"}, ("from", "to")),
        ({"from": "2020-01-01", "to": "2026-01-01"}, ("from", "to")),
    ],
)
def test_a_refused_range_names_the_fields_at_fault(params: dict[str, str], fields: tuple[str, ...]) -> None:
    with pytest.raises(PeriodError) as refused:
        parse_period(params, TODAY, MADRID)
    assert refused.value.fields == fields
    form = RangeForm.refused(params, refused.value)
    assert (form.date, form.first, form.last) == tuple(
        params.get(name, "") for name in ("date", "from", "to")
    )
    assert (form.error, form.fields) == (refused.value.message, fields)


def test_the_form_shows_the_range_reported_or_what_was_typed_cut_short() -> None:
    week = parse_period({"period": "week", "date": "2026-12-02"}, TODAY, MADRID)
    assert RangeForm.of(week) == RangeForm("week", "2026-11-30", "2026-11-30", "2026-12-06")
    typed = {"period": "fortnight", "date": " " + "9" * 100}
    with pytest.raises(PeriodError) as refused:
        parse_period(typed, TODAY, MADRID)
    form = RangeForm.refused(typed, refused.value)
    assert form.preset == "" and form.date == "9" * TYPED_LENGTH


def test_two_years_at_most() -> None:
    longest = parse_period({"from": "2025-01-01", "to": "2026-12-31"}, TODAY, MADRID)
    assert len(longest.days) == 730 <= MAX_DAYS


def test_response_buckets_and_hours() -> None:
    assert [response_floor(s) for s in (0, 0.5, 1, 1.01, 30, 31, 3600, 3601, 86400)] == [
        0,
        0,
        0,
        1,
        20,
        30,
        1800,
        3600,
        3600,
    ]
    assert len(RESPONSE_FLOORS) == len(RESPONSE_BOUNDS) + 1
    assert hour_of(datetime(2026, 12, 6, 3, 59, 59, tzinfo=ZoneInfo("Europe/Madrid"))) == datetime(
        2026, 12, 6, 2, tzinfo=UTC
    )


def test_percentiles_are_the_bucket_they_fall_in() -> None:
    histogram = {0: 4, 5: 4, 60: 1, 3600: 1}  # 10 replies
    assert percentile(histogram, 0.5) == Response(5, 7)
    assert percentile(histogram, 0.9) == Response(60, 90)
    assert percentile(histogram, 1.0) == Response(3600, None)
    assert percentile({}, 0.5) is None


def test_heat_levels_and_legend() -> None:
    assert [level(v, 100) for v in (0, 1, 25, 26, 50, 51, 75, 76, 100)] == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    grid = [[0] * 24 for _ in range(7)]
    grid[2][13] = 100
    grid[0][0] = 30
    heat = heat_map(grid)
    assert len(heat.cells) == 7 * 24 and heat.top_value == 100
    busiest = next(c for c in heat.cells if c.value == 100)
    assert (busiest.weekday, busiest.hour, busiest.level) == (2, 13, LEVELS - 1)
    # each level's least value is the least that gets it
    for n, least in heat.legend[1:]:
        assert level(least, 100) == n and level(least - 1, 100) == n - 1


@pytest.mark.parametrize("text", ["=1+2", "+34600", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_defused(text: str) -> None:
    assert cell(text) == "'" + text


def test_csv_is_utf8_with_a_bom_numbers_untouched() -> None:
    text = csv_text(["name", "mo"], [["Año ñandú", 3], ["=cmd|' /C calc'!A0", -1], [None, 2.5]])
    assert text.startswith("\ufeff")
    assert list(csv.reader(io.StringIO(text[1:]))) == [
        ["name", "mo"],
        ["Año ñandú", "3"],
        ["'=cmd|' /C calc'!A0", "-1"],
        ["", "2.5"],
    ]


def test_the_months_a_range_touches_in_the_services_zone() -> None:
    bogota = ZoneInfo("America/Bogota")
    december = parse_period({"period": "month", "date": "2026-12-06"}, TODAY, bogota)
    # Bogotá's December runs from 05:00 UTC on the 1st to 05:00 UTC on 1 January: in Madrid it
    # starts and ends on the 1st at 06:00, touching January; in Bogotá it is December alone
    assert spend_months(december.start, december.end, MADRID) == ["2026-12", "2027-01"]
    assert spend_months(december.start, december.end, bogota) == ["2026-12"]
    year = parse_period({"from": "2026-11-15", "to": "2027-02-01"}, TODAY, MADRID)
    assert spend_months(year.start, year.end, MADRID) == ["2026-11", "2026-12", "2027-01", "2027-02"]


def test_the_average_per_client_rounds_half_up_to_a_minor_unit() -> None:
    def average(clients: int, total: int) -> int:
        return ServiceSpend("chat", "2026-12", "EUR", clients, total, total, 0, 0).average

    assert (average(2, 5), average(3, 10), average(3, 11), average(0, 0)) == (3, 3, 4, 0)
