"""The start page's knowledge of the binds: the latest status event, believed for three intervals;
"today" in the reader's time zone, also on the days the clocks change."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from plugins.home.routes import today_range
from plugins.home.status import STALE_AFTER, DaemonStatus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_nothing_heard_is_unknown_and_an_old_status_is_forgotten() -> None:
    clock = Clock()
    status = DaemonStatus(clock)
    assert status.binds() is None
    status.heard(
        {"binds_up": {"movistar": 1, "vodafone": 0}, "binds": {"movistar": 2, "vodafone": 1}, "v": 1}
    )
    binds = status.binds()
    assert binds is not None and (binds.total_up, binds.total) == (1, 3)
    clock.now += STALE_AFTER
    assert status.binds() is binds
    clock.now += 0.001
    assert status.binds() is None


def test_a_malformed_status_is_ignored() -> None:
    status = DaemonStatus(Clock())
    status.heard({"binds_up": "all", "binds": {}})
    assert status.binds() is None


def test_today_in_the_readers_zone_on_the_days_the_clocks_change() -> None:
    madrid = ZoneInfo("Europe/Madrid")
    # 29 March 2026 has 23 hours in Madrid, 25 October 2026 has 25.
    start, end = today_range(madrid, datetime(2026, 3, 29, 12, 0, tzinfo=UTC))
    assert (start, end) == (
        datetime(2026, 3, 28, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 22, 0, tzinfo=UTC),
    )
    start, end = today_range(madrid, datetime(2026, 10, 25, 12, 0, tzinfo=UTC))
    assert end - start == (
        datetime(2026, 10, 25, 23, 0, tzinfo=UTC) - datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    )
    # 23:30 UTC on 2 March is already 3 March in Madrid, still 2 March in Bogotá.
    late = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    assert today_range(madrid, late)[0] == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    assert today_range(ZoneInfo("America/Bogota"), late)[0] == datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def test_several_daemons_binds_up_are_added_up_and_a_silent_one_forgotten() -> None:
    clock = Clock()
    status = DaemonStatus(clock)
    configured = {"movistar": 4, "vodafone": 1}
    status.heard({"binds_up": {"movistar": 2, "vodafone": 1}, "binds": configured, "instance": "a"})
    clock.now += 10
    status.heard({"binds_up": {"movistar": 2, "vodafone": 0}, "binds": configured, "instance": "b"})
    binds = status.binds()
    assert binds is not None and (dict(binds.up), binds.total_up, binds.total) == (
        {"movistar": 4, "vodafone": 1},
        5,
        5,
    )
    # a daemon that took over another's binds while the stopped one's last word still counts
    status.heard({"binds_up": {"movistar": 4, "vodafone": 1}, "binds": configured, "instance": "b"})
    binds = status.binds()
    assert binds is not None and dict(binds.up) == {"movistar": 4, "vodafone": 1}
    clock.now += STALE_AFTER - 5  # "a" is silent for longer than believed
    binds = status.binds()
    assert binds is not None and (binds.total_up, binds.total) == (5, 5)
