"""The reports through the panel (issue 13, 1.4): figures summed from the rollups over the viewer's
days (a master in Bogotá, UTC-5), percentiles from the first-response buckets, CSV exports (BOM,
formula cells defused), a client's history, and bad ranges refused with a clear 400; on SQLite and on
PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from gatewayd.store.accounts import Account
from gatewayd.store.engine import create_engine
from gatewayd.store.rollups import Tally, traffic_key
from gatewayd.store.store import Store
from panel.app import create_app
from panel.settings import PanelSettings

from ..conftest import (
    BUILT_IN_PLUGINS,
    FAST_ARGON2,
    HTML,
    PanelClient,
    login,
    memory_bus,
    prepare_store,
    seed_conversation,
    serving,
)

UTC_HOUR = datetime(2026, 12, 1, 5, tzinfo=UTC)  # 1 December, 00:00 in Bogotá
BEFORE = datetime(2026, 12, 1, 4, tzinfo=UTC)  # still 30 November there
LAST = datetime(2026, 12, 2, 4, tzinfo=UTC)  # 23:00 on 1 December there


@pytest.fixture(params=["sqlite_url", "pg_url"], ids=["sqlite", "pg"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


async def seed(url: str) -> int:
    """Rollup rows as the pipelines write them; returns the operator's id."""
    tally = Tally.empty()
    tally.add(traffic_key(BEFORE, "chat", "997745", "movistar", "CO"), "mo", 100)
    tally.add(traffic_key(UTC_HOUR, "chat", "997745", "movistar", "CO"), "mo", 7)
    tally.add(traffic_key(UTC_HOUR, "chat", "997745", "movistar", "CO"), "mt", 5)
    tally.add(traffic_key(UTC_HOUR, "chat", "997745", "movistar", "CO"), "mt_delivered", 4)
    tally.add(traffic_key(UTC_HOUR, "chat", "997745", "movistar", "CO"), "new_clients", 3)
    tally.add(traffic_key(LAST, "=HYPERLINK(1)", "795500", "vodafone", ""), "mo", 2)
    tally.add(traffic_key(LAST, "=HYPERLINK(1)", "795500", "vodafone", ""), "mt_refused", 1)
    tally.add(traffic_key(LAST, "=HYPERLINK(1)", "795500", "vodafone", ""), "opt_outs", 1)
    engine = create_engine(url)
    store = Store.for_engine(engine)
    try:
        async with store.transaction() as session:
            operator_id = (
                await session.execute(select(Account.id).where(Account.username == "oscar"))
            ).scalar_one()
            tally.operators[(UTC_HOUR, operator_id)] = Counter(
                conversations=2, mos_answered=6, mts_sent=5, mts_delivered=4
            )
            # ten first responses: 6 within 10 s (over 7), 3 within 30 s (over 20), 1 over an hour
            tally.responses.update({(UTC_HOUR, operator_id, 7): 6, (UTC_HOUR, operator_id, 20): 3})
            tally.responses[(LAST, operator_id, 3600)] = 1
            await tally.write(session)
    finally:
        await engine.dispose()
    return operator_id


@pytest.fixture
async def reports_client(database_url: str, example_on_path: None) -> AsyncIterator[PanelClient]:
    settings = PanelSettings(database_url=database_url, secure_cookies=False, argon2=FAST_ARGON2)
    await prepare_store(database_url)
    await seed(database_url)
    app: Starlette = create_app(settings, bus_factory=memory_bus, plugins=list(BUILT_IN_PLUGINS))
    async with serving(app) as client:
        assert (await login(client, "marta")).status_code == 303  # a master: reports.view by default
        yield client


def rows(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


async def test_the_day_in_the_viewers_zone_sums_its_hours(reports_client: PanelClient) -> None:
    page = await reports_client.get("/admin/reports?period=day&date=2026-12-01", headers=HTML)
    assert page.status_code == 200
    assert 'data-total="mo">9<' in page.text and 'data-total="mt">5<' in page.text
    assert "America/Bogota" in page.text
    assert "<svg" in page.text and 'class="heat-4"' in page.text
    assert "<title>Tuesday 00:00–01:00: 12</title>" in page.text  # 7 MOs + 5 MTs at local midnight
    export = await reports_client.get("/admin/reports?from=2026-11-30&to=2026-12-01&format=csv")
    assert export.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="reports-per-day_2026-11-30_2026-12-01.csv"' in export.headers["content-disposition"]
    assert rows(export.text) == [["day", "mo", "mt"], ["2026-11-30", "100", "0"], ["2026-12-01", "9", "5"]]
    heat = rows(
        (await reports_client.get("/admin/reports?period=day&date=2026-12-01&table=heatmap&format=csv")).text
    )
    assert heat[2][1] == "12"  # Tuesday, 00h


async def test_operators_show_percentiles_from_their_buckets(reports_client: PanelClient) -> None:
    page = await reports_client.get("/admin/reports/operators?period=month&date=2026-12-15", headers=HTML)
    assert page.status_code == 200
    assert 'data-field="median">≤ 10 s<' in page.text
    assert 'data-field="p90">≤ 30 s<' in page.text
    assert "80.0 % (4)" in page.text
    assert "&lt;script&gt;" in page.text  # the operator's hostile display name, escaped
    export = rows(
        (await reports_client.get("/admin/reports/operators?period=month&date=2026-12-15&format=csv")).text
    )
    assert export[1][1:] == ["2", "6", "5", "<= 10", "<= 30", "10", "4", "80.0"]


async def test_traffic_by_each_dimension_and_its_csv_defuses_formulas(reports_client: PanelClient) -> None:
    page = await reports_client.get(
        "/admin/reports/traffic?from=2026-12-01&to=2026-12-01&by=service", headers=HTML
    )
    assert page.status_code == 200
    assert 'data-name="chat"' in page.text and 'data-name="=HYPERLINK(1)"' in page.text
    export = await reports_client.get(
        "/admin/reports/traffic?from=2026-12-01&to=2026-12-01&by=service&format=csv"
    )
    assert (
        'filename="reports-traffic-by-service_2026-12-01_2026-12-01.csv"'
        in export.headers["content-disposition"]
    )
    assert rows(export.text) == [
        ["service", "mo", "mt", "delivered", "failed", "refused", "opt_outs", "new_clients"],
        ["chat", "7", "5", "4", "0", "0", "0", "3"],
        ["'=HYPERLINK(1)", "2", "0", "0", "0", "1", "1", "0"],
    ]
    by_country = rows(
        (
            await reports_client.get(
                "/admin/reports/traffic?from=2026-12-01&to=2026-12-01&by=country&format=csv"
            )
        ).text
    )
    assert [row[:2] for row in by_country[1:]] == [["CO", "7"], ["", "2"]]
    by_carrier = await reports_client.get(
        "/admin/reports/traffic?period=week&date=2026-12-02&by=carrier", headers=HTML
    )
    assert 'data-name="vodafone"' in by_carrier.text and 'data-name="movistar"' in by_carrier.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2026-13-01&to=2026-12-01", "Dates are written as YYYY-MM-DD"),
        ("date=yesterday", "Dates are written as YYYY-MM-DD"),
        ("from=2026-12-02&to=2026-12-01", "The first day of the range is after its last day."),
        ("from=2024-01-01&to=2026-12-01", "A report covers at most two years"),
        ("date=9999-12-31", "Reports cover days from 2000-01-01 to 2100-12-31."),
        ("period=week&date=9999-12-31", "Reports cover days from 2000-01-01"),
        ("from=9999-12-31", "Reports cover days from 2000-01-01"),
        ("from=0001-01-01", "Reports cover days from 2000-01-01"),
    ],
)
async def test_bad_ranges_are_refused_with_a_clear_message(
    reports_client: PanelClient, query: str, message: str
) -> None:
    for path in (
        "/admin/reports",
        "/admin/reports/operators",
        "/admin/reports/traffic",
        "/admin/reports/clients",
    ):
        response = await reports_client.get(f"{path}?{query}", headers=HTML)
        assert response.status_code == 400, path
        assert message in response.text
    bad = await reports_client.get("/admin/reports/traffic?by=password", headers=HTML)
    assert bad.status_code == 400 and "Group the traffic by service" in bad.text


async def test_a_clients_history_paginated_and_exported(
    reports_client: PanelClient, database_url: str
) -> None:
    samples = await seed_conversation(database_url, "oscar", "34611000009", "=1+1 hola ñandú")
    page = await reports_client.get(f"/admin/reports/clients?q={samples.client_id}", headers=HTML)
    assert page.status_code == 200
    assert f'data-client-id="{samples.client_id}"' in page.text and "=1+1 hola ñandú" in page.text
    by_number = await reports_client.get("/admin/reports/clients?q=%2B34611000009", headers=HTML)
    assert by_number.status_code == 200 and samples.client_id in by_number.text
    export = rows((await reports_client.get(f"/admin/reports/clients?q={samples.client_id}&format=csv")).text)
    assert export[0] == ["direction", "id", "at", "short_code", "carrier", "status", "text"]
    assert export[1][0] == "mo" and export[1][-1] == "'=1+1 hola ñandú"
    unknown = await reports_client.get("/admin/reports/clients?q=CAAAAAAAA", headers=HTML)
    assert unknown.status_code == 404 and "No client found." in unknown.text
    nonsense = await reports_client.get("/admin/reports/clients?q=hello", headers=HTML)
    assert nonsense.status_code == 400 and "Enter a client ID" in nonsense.text
    bad_page = await reports_client.get(f"/admin/reports/clients?q={samples.client_id}&page=0", headers=HTML)
    assert bad_page.status_code == 400
