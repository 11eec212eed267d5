"""Quiet hours, the one rule of pushes and campaigns: hours across midnight, a country's own hours and
zone over the default, the end of a quiet period on the client's wall clock (DST days in Madrid), and a
client who just wrote never held."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from routing.quiet_hours import QuietHours, QuietRule

MADRID = ZoneInfo("Europe/Madrid")
LONDON = ZoneInfo("Europe/London")
NIGHT = QuietHours(time(22, 0), time(9, 0))
RULE = QuietRule(
    default=NIGHT,
    default_zone=MADRID,
    countries={"GB": QuietHours(time(21, 0), time(8, 0)), "FR": None},
    zones={"GB": LONDON, "MX": ZoneInfo("America/Mexico_City")},
)


@pytest.mark.parametrize(
    ("local", "quiet"),
    [
        (time(21, 59), False),
        (time(22, 0), True),
        (time(23, 59), True),
        (time(0, 0), True),
        (time(8, 59), True),
        (time(9, 0), False),
        (time(13, 0), False),
    ],
)
def test_night_hours_span_midnight(local: time, quiet: bool) -> None:
    assert NIGHT.quiet(local) is quiet


def test_day_hours_none_and_parsing() -> None:
    siesta = QuietHours(time(14, 0), time(16, 0))
    assert siesta.quiet(time(15, 0)) and not siesta.quiet(time(16, 0)) and not siesta.quiet(time(13, 59))
    assert not QuietHours(time(9, 0), time(9, 0)).quiet(time(9, 0))
    assert QuietHours.parse("") is None
    assert QuietHours.parse("22:30-07:15") == QuietHours(time(22, 30), time(7, 15))
    assert str(QuietHours(time(22, 30), time(7, 5))) == "22:30-07:05"
    at = datetime(2026, 12, 6, 14, 30, tzinfo=UTC)  # 15:30 in Madrid
    assert siesta.ends_after(at, MADRID) == datetime(2026, 12, 6, 15, 0, tzinfo=UTC)
    assert QuietHours(time(9, 0), time(9, 0)).ends_after(at, MADRID) is None


def test_a_quiet_period_ends_in_the_morning_whether_it_began_before_or_after_midnight() -> None:
    evening = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)  # 23:00 in Madrid (UTC+1)
    after_midnight = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # 02:00
    morning = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00: over
    assert NIGHT.ends_after(evening, MADRID) == morning
    assert NIGHT.ends_after(after_midnight, MADRID) == morning
    assert NIGHT.ends_after(morning, MADRID) is None
    assert NIGHT.ends_after(morning - timedelta(microseconds=1), MADRID) == morning


def test_the_end_follows_the_wall_clock_on_dst_days_in_madrid() -> None:
    # 2026-03-29 Madrid goes from UTC+1 to UTC+2 at 02:00: 23:00 the day before ends at 09:00 CEST
    spring = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
    assert NIGHT.ends_after(spring, MADRID) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert NIGHT.quiet_at(datetime(2026, 3, 28, 7, 30, tzinfo=UTC), MADRID)  # 08:30 CET
    assert not NIGHT.quiet_at(datetime(2026, 3, 29, 7, 30, tzinfo=UTC), MADRID)  # 09:30 CEST
    # 2026-10-25 back to UTC+1: 23:00 CEST the day before ends at 09:00 CET
    autumn = datetime(2026, 10, 24, 21, 0, tzinfo=UTC)
    assert NIGHT.ends_after(autumn, MADRID) == datetime(2026, 10, 25, 8, 0, tzinfo=UTC)
    assert not NIGHT.quiet_at(datetime(2026, 10, 25, 20, 30, tzinfo=UTC), MADRID)  # 21:30 CET
    # an end inside the spring gap (02:30 does not exist that night) is when the clock jumps over it:
    # 02:00 CET becomes 03:00 CEST at 01:00 UTC (not 03:30 CEST, the offset before the jump)
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    night = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)  # 00:30 CET
    assert QuietHours(time(22, 0), time(2, 30)).ends_after(night, MADRID) == jump
    assert QuietHours(time(22, 0), time(2, 0)).ends_after(night, MADRID) == jump
    assert (
        QuietHours(time(1, 0), time(2, 59)).ends_after(datetime(2026, 3, 29, 0, 30, tzinfo=UTC), MADRID)
        == jump
    )
    # New York jumps at 02:00 EST (07:00 UTC); Lord Howe skips half an hour (02:00 -> 02:30)
    new_york = ZoneInfo("America/New_York")
    at = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)  # 23:00 EST
    assert QuietHours(time(22, 0), time(2, 30)).ends_after(at, new_york) == datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC
    )
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    at = datetime(2026, 10, 3, 12, 0, tzinfo=UTC)  # 22:30 there (UTC+10:30)
    ends = QuietHours(time(22, 0), time(2, 15)).ends_after(at, lord_howe)
    assert ends == datetime(2026, 10, 3, 15, 30, tzinfo=UTC)


def test_a_country_has_its_own_hours_and_zone_over_the_default() -> None:
    at = datetime(2026, 12, 6, 21, 30, tzinfo=UTC)  # 21:30 London, 22:30 Madrid, 15:30 Mexico City
    assert RULE.held_until("GB", at, None) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 08:00 London
    assert RULE.held_until("ES", at, None) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 Madrid
    assert RULE.held_until(None, at, None) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # unknown: default
    assert RULE.held_until("MX", at, None) is None  # the default hours, Mexico City's clock
    assert RULE.held_until("FR", at, None) is None  # FR = "off"
    early = datetime(2026, 12, 7, 7, 30, tzinfo=UTC)  # 07:30 London, 08:30 Madrid
    assert RULE.quiet_for("GB", early) and RULE.quiet_for("ES", early)
    assert not RULE.quiet_for("GB", early + timedelta(minutes=30))
    assert RULE.own_countries == {"GB", "FR", "MX"}
    assert RULE.zone("GB") == LONDON and RULE.zone("IT") == MADRID and RULE.hours("IT") == NIGHT
    assert QuietRule().held_until("ES", at, None) is None  # no default: nothing held


def test_a_client_who_just_wrote_is_not_held() -> None:
    at = datetime(2026, 12, 6, 22, 30, tzinfo=UTC)  # 23:30 in Madrid
    assert RULE.held_until("ES", at, at - timedelta(minutes=29)) is None
    naive = (at - timedelta(minutes=5)).replace(tzinfo=None)  # as SQLite gives a time back
    assert RULE.held_until("ES", at, naive) is None
    assert RULE.held_until("ES", at, at - timedelta(minutes=30)) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    short = QuietRule(default=NIGHT, recent=timedelta(minutes=5))
    assert short.held_until("ES", at, at - timedelta(minutes=10)) is not None
