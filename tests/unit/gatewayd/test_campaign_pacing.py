"""The mass push's pure rules: which countries are awake (the quiet-hours rule itself:
tests/unit/routing/test_routing_quiet_hours.py), the token bucket that paces a campaign, the carriers'
room, and the recipient rule's SQL twin."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from pydantic import SecretStr
from sqlalchemy import create_engine, insert, select

from gatewayd.campaigns import CampaignSettings, Pace, carrier_tps
from gatewayd.config import BindConfig, BindType, CarrierConfig
from gatewayd.store.enums import MTKind
from gatewayd.store.mt.recipients import may_receive, refusal
from gatewayd.store.subscribers import Subscriber
from routing.quiet_hours import QuietHours, QuietRule

MADRID = ZoneInfo("Europe/Madrid")
NIGHT = QuietHours(time(22, 0), time(9, 0))


def test_the_awake_countries() -> None:
    settings = CampaignSettings(
        quiet=QuietRule(
            default=NIGHT,
            zones={"MX": ZoneInfo("America/Mexico_City"), "ES": MADRID},
            default_zone=ZoneInfo("UTC"),
        )
    )
    # 12:00 UTC: 13:00 in Madrid, 06:00 in Mexico City, 12:00 in the default zone
    awake = settings.awake(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    assert (awake.countries, awake.zoned, awake.others) == (frozenset({"ES"}), frozenset({"ES", "MX"}), True)
    late = settings.awake(datetime(2026, 3, 2, 22, 30, tzinfo=UTC))  # 23:30 Madrid, 16:30 Mexico
    assert (late.countries, late.others) == (frozenset({"MX"}), False)
    assert CampaignSettings().awake(datetime(2026, 3, 2, 3, 0, tzinfo=UTC)).others


def test_a_country_with_hours_of_its_own_wakes_by_them() -> None:
    rule = QuietRule(
        default=NIGHT,
        default_zone=MADRID,
        countries={"GB": QuietHours(time(21, 0), time(8, 0)), "FR": None},
        zones={"GB": ZoneInfo("Europe/London")},
    )
    # 08:30 UTC: 08:30 in London (awake by its 21:00-08:00), 09:30 in Madrid; FR has no quiet hours
    morning = CampaignSettings(quiet=rule).awake(datetime(2026, 12, 7, 7, 30, tzinfo=UTC))
    # 07:30 UTC: 07:30 London (asleep), 08:30 Madrid (asleep), FR awake (its hours are off)
    assert (morning.countries, morning.zoned, morning.others) == (
        frozenset({"FR"}),
        frozenset({"GB", "FR"}),
        False,
    )
    later = CampaignSettings(quiet=rule).awake(datetime(2026, 12, 7, 8, 30, tzinfo=UTC))
    assert (later.countries, later.others) == (frozenset({"GB", "FR"}), True)


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
