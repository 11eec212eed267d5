"""The mass push's pure rules: quiet hours (across midnight, in the client's zone, over DST changes),
the token bucket that paces a campaign, the carriers' room, and the recipient rule's SQL twin."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, insert, select

from gatewayd.campaigns import CampaignSettings, Pace, QuietHours, carrier_tps
from gatewayd.config import BindConfig, BindType, CarrierConfig
from gatewayd.store.enums import MTKind
from gatewayd.store.mt.recipients import may_receive, refusal
from gatewayd.store.subscribers import Subscriber

MADRID = ZoneInfo("Europe/Madrid")
NIGHT = QuietHours(time(22, 0), time(9, 0))


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


def test_day_hours_and_no_hours() -> None:
    siesta = QuietHours(time(14, 0), time(16, 0))
    assert siesta.quiet(time(15, 0)) and not siesta.quiet(time(16, 0)) and not siesta.quiet(time(13, 59))
    assert not QuietHours(time(9, 0), time(9, 0)).quiet(time(9, 0))
    assert QuietHours.parse("") is None
    assert QuietHours.parse("22:30-07:15") == QuietHours(time(22, 30), time(7, 15))


def test_quiet_hours_follow_the_wall_clock_across_dst() -> None:
    # 2026-03-29 Madrid goes from UTC+1 to UTC+2: 07:30 UTC is still night the day before, morning after
    assert NIGHT.quiet_at(datetime(2026, 3, 28, 7, 30, tzinfo=UTC), MADRID)  # 08:30 CET
    assert not NIGHT.quiet_at(datetime(2026, 3, 29, 7, 30, tzinfo=UTC), MADRID)  # 09:30 CEST
    # autumn: 2026-10-25, back to UTC+1; 21:30 UTC is 23:30 CEST the day before, 22:30 CET after
    assert NIGHT.quiet_at(datetime(2026, 10, 24, 20, 30, tzinfo=UTC), MADRID)  # 22:30 CEST
    assert not NIGHT.quiet_at(datetime(2026, 10, 25, 20, 30, tzinfo=UTC), MADRID)  # 21:30 CET


def test_the_awake_countries() -> None:
    settings = CampaignSettings(
        quiet_hours=NIGHT,
        country_zones={"MX": ZoneInfo("America/Mexico_City"), "ES": MADRID},
        default_zone=ZoneInfo("UTC"),
    )
    # 12:00 UTC: 13:00 in Madrid, 06:00 in Mexico City, 12:00 in the default zone
    awake = settings.awake(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    assert (awake.countries, awake.zoned, awake.others) == (frozenset({"ES"}), frozenset({"ES", "MX"}), True)
    late = settings.awake(datetime(2026, 3, 2, 22, 30, tzinfo=UTC))  # 23:30 Madrid, 16:30 Mexico
    assert (late.countries, late.others) == (frozenset({"MX"}), False)
    assert CampaignSettings().awake(datetime(2026, 3, 2, 3, 0, tzinfo=UTC)).others


def test_the_pace_grants_its_rate_with_a_burst() -> None:
    pace = Pace(rate=10.0, burst=10.0)
    assert pace.take(100.0, 500) == 10  # a full bucket at first
    assert pace.take(100.0, 500) == 0
    assert pace.take(100.5, 500) == 5
    assert pace.take(200.0, 3) == 3  # asks for less than it could
    assert pace.take(200.0, 500) == 7  # the bucket never holds more than the burst
    pace.give_back(4)
    assert pace.take(200.0, 500) == 4
    assert pace.take(199.0, 500) == 0  # a clock going back grants nothing


def test_the_carriers_room() -> None:
    bind = BindConfig(name="m-1", host="h", port=1, system_id="e", password=SecretStr("p"), tps=20, count=2)
    receiver = bind.model_copy(update={"name": "m-2", "bind_type": BindType.RECEIVER})
    carrier = CarrierConfig(name="movistar", country="ES", short_codes=("997745",), binds=(bind, receiver))
    assert carrier_tps([carrier]) == {"movistar": 40.0}
    settings = CampaignSettings(carrier_tps={"movistar": 40.0}, backlog_seconds=5.0)
    assert settings.room("movistar", 0) == 200
    assert settings.room("movistar", 150) == 50
    assert settings.room("movistar", 500) == 0
    assert settings.room("unknown", 0) == 0


def test_may_receive_is_the_recipient_rule_in_sql() -> None:
    engine = create_engine("sqlite://")
    table = Subscriber.__table__
    table.create(engine)  # type: ignore[attr-defined]
    flags = list(itertools.product([False, True], repeat=2))
    with engine.begin() as connection:
        for index, (opted_out, banned) in enumerate(flags):
            connection.execute(
                insert(table).values(
                    id=index + 1,
                    client_id=f"C{index}",
                    msisdn=f"3460000000{index}",
                    opted_out=opted_out,
                    banned=banned,
                    first_seen=datetime.now(UTC),
                    last_seen=datetime.now(UTC),
                    mo_count=0,
                    mt_count=0,
                )
            )
        for kind in MTKind:
            allowed = set(connection.scalars(select(Subscriber.id).where(may_receive(kind))))
            expected = {
                index + 1
                for index, (opted_out, banned) in enumerate(flags)
                if refusal(kind, opted_out=opted_out, banned=banned) is None
            }
            assert allowed == expected, kind
