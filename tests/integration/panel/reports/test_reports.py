"""The reports through the panel (issue 13, 1.4): figures summed from the rollups over the viewer's
days (a master in Bogotá, UTC-5), percentiles from the first-response buckets, CSV exports (BOM,
formula cells defused), a client's history, and bad ranges refused with a clear 400; on SQLite and on
PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from html.parser import HTMLParser

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


@asynccontextmanager
async def signed_in(database_url: str, username: str) -> AsyncIterator[PanelClient]:
    settings = PanelSettings(database_url=database_url, secure_cookies=False, argon2=FAST_ARGON2)
    await prepare_store(database_url)
    await seed(database_url)
    app: Starlette = create_app(settings, bus_factory=memory_bus, plugins=list(BUILT_IN_PLUGINS))
    async with serving(app) as client:
        assert (await login(client, username)).status_code == 303
        yield client


@pytest.fixture
async def reports_client(database_url: str, example_on_path: None) -> AsyncIterator[PanelClient]:
    async with signed_in(database_url, "marta") as client:  # a master in English: reports.view by default
        yield client


@pytest.fixture
async def spanish_client(database_url: str, example_on_path: None) -> AsyncIterator[PanelClient]:
    async with signed_in(database_url, "ana") as client:  # an admin in Spanish, in Madrid
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
    assert 'data-field="delivered">80.0% (4)<' in page.text
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


class Inputs(HTMLParser):
    """A page's ``<input>`` attributes by name (the last input of a name wins)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.found: dict[str, dict[str, str | None]] = {}
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "input" and named.get("name"):
            self.found[str(named["name"])] = named


def inputs(page: str) -> dict[str, dict[str, str | None]]:
    return Inputs(page).found


def shown_error(page: str, element_id: str) -> str:
    """The text of the error message the page shows under a field (``id=element_id``)."""
    found = re.search(rf'<p [^>]*id="{element_id}"[^>]*>([^<]*)</p>', page)
    assert found is not None, f"no #{element_id} on the page"
    return found.group(1)


#: Where each field's error shows: under the preset's day, or under the from / to pair.
ERROR_OF = {"date": "date-error", "from": "range-error", "to": "range-error"}


@pytest.mark.parametrize(
    ("query", "message", "fields"),
    [
        ("from=2026-13-01&to=2026-12-01", "Dates are written as YYYY-MM-DD", ["from"]),
        ("from=2026-12-01&to=2026-02-30", "Dates are written as YYYY-MM-DD", ["to"]),
        ("date=yesterday", "Dates are written as YYYY-MM-DD", ["date"]),
        (
            "from=2026-12-02&to=2026-12-01",
            "The first day of the range is after its last day.",
            ["from", "to"],
        ),
        ("from=2024-01-01&to=2026-12-01", "A report covers at most two years", ["from", "to"]),
        ("date=9999-12-31", "Reports cover days from 2000-01-01 to 2100-12-31.", ["date"]),
        ("period=week&date=9999-12-31", "Reports cover days from 2000-01-01", ["date"]),
        ("from=9999-12-31", "Reports cover days from 2000-01-01", ["from"]),
        ("from=0001-01-01", "Reports cover days from 2000-01-01", ["from"]),
    ],
)
async def test_bad_ranges_show_the_form_again_with_the_reason_under_the_field(
    reports_client: PanelClient, query: str, message: str, fields: list[str]
) -> None:
    for path in ("/admin/reports", "/admin/reports/operators", "/admin/reports/traffic"):
        response = await reports_client.get(f"{path}?{query}", headers=HTML)
        assert response.status_code == 400, path
        assert 'class="report-tabs"' in response.text, path  # the report's own page, not a bare error
        form = inputs(response.text)
        for name in ("date", "from", "to"):
            if name in fields:
                assert form[name]["aria-invalid"] == "true", (path, name)
                assert form[name]["aria-describedby"] == ERROR_OF[name], (path, name)
                assert message in shown_error(response.text, ERROR_OF[name]), path
            else:
                assert "aria-invalid" not in form[name], (path, name)
    # the client history has no range of its own to correct: the reason, on its page
    history = await reports_client.get(f"/admin/reports/clients?{query}", headers=HTML)
    assert history.status_code == 400 and 'class="report-tabs"' in history.text
    assert message in history.text
    # an export asked for a bad range gets the reason, not a file
    export = await reports_client.get(f"/admin/reports?{query}&format=csv")
    assert export.status_code == 400 and message in export.text
    assert "text/csv" not in export.headers["content-type"]
    bad = await reports_client.get("/admin/reports/traffic?by=password", headers=HTML)
    assert bad.status_code == 400 and "Group the traffic by service" in bad.text


async def test_a_reversed_range_keeps_what_was_typed(reports_client: PanelClient) -> None:
    for path, title in (
        ("/admin/reports?", "Reports"),
        ("/admin/reports/operators?", "Reports: operators"),
        ("/admin/reports/traffic?by=country&", "Reports: traffic"),
    ):
        page = await reports_client.get(f"{path}from=2026-12-02&to=2026-12-01", headers=HTML)
        assert page.status_code == 400
        assert f"<h1>{title}</h1>" in page.text
        form = inputs(page.text)
        assert (form["from"]["value"], form["to"]["value"]) == ("2026-12-02", "2026-12-01")
        assert shown_error(page.text, "range-error") == "The first day of the range is after its last day."
    assert form["by"]["value"] == "country"  # the grouping chosen stays with the corrected range
    preset = await reports_client.get("/admin/reports?period=week&date=2026-02-30", headers=HTML)
    assert preset.status_code == 400
    assert inputs(preset.text)["date"]["value"] == "2026-02-30"
    assert '<option value="week" selected>' in preset.text


async def test_the_reason_is_in_the_readers_language(spanish_client: PanelClient) -> None:
    page = await spanish_client.get("/admin/reports/operators?from=2026-12-02&to=2026-12-01", headers=HTML)
    assert page.status_code == 400
    assert "<h1>Informes: operadores</h1>" in page.text
    assert shown_error(page.text, "range-error") == "El primer día del intervalo es posterior al último."
    preset = await spanish_client.get("/admin/reports?period=day&date=ayer", headers=HTML)
    assert preset.status_code == 400
    assert inputs(preset.text)["date"]["value"] == "ayer"
    assert shown_error(preset.text, "date-error") == (
        "Las fechas se escriben AAAA-MM-DD (por ejemplo 2026-12-06)."
    )


async def test_a_range_missing_one_end_is_that_one_day(reports_client: PanelClient) -> None:
    for query in ("from=2026-12-01", "from=2026-12-01&to=", "from=&to=2026-12-01"):
        page = await reports_client.get(f"/admin/reports?{query}", headers=HTML)
        assert page.status_code == 200, query
        assert 'data-first="2026-12-01" data-last="2026-12-01"' in page.text, query


async def test_percentages_are_written_as_the_readers_language_writes_them(
    spanish_client: PanelClient,
) -> None:
    page = await spanish_client.get("/admin/reports/operators?period=month&date=2026-12-15", headers=HTML)
    assert page.status_code == 200
    assert 'data-field="delivered">80,0\xa0% (4)<' in page.text


async def test_counts_are_grouped_as_the_readers_language_groups_them(
    reports_client: PanelClient, database_url: str
) -> None:
    busy = datetime(2026, 11, 10, 15, tzinfo=UTC)  # 10 November in Bogotá and in Madrid
    tally = Tally.empty()
    key = traffic_key(busy, "club", "795500", "vodafone", "ES")
    tally.add(key, "mo", 12345)
    tally.add(key, "mt", 23456)
    engine = create_engine(database_url)
    try:
        async with Store.for_engine(engine).transaction() as session:
            await tally.write(session)
    finally:
        await engine.dispose()
    day = "period=day&date=2026-11-10"
    spanish = reports_client.another_browser()
    assert (await login(spanish, "ana")).status_code == 303  # ana reads in Spanish, marta in English
    for client, mo, mt in ((reports_client, "12,345", "23,456"), (spanish, "12.345", "23.456")):
        overview = await client.get(f"/admin/reports?{day}", headers=HTML)
        assert f'data-total="mo">{mo}<' in overview.text and f'data-total="mt">{mt}<' in overview.text
        assert (
            f'<tr data-day="2026-11-10"><td>2026-11-10</td><td>{mo}</td><td>{mt}</td></tr>' in overview.text
        )
        traffic = await client.get(f"/admin/reports/traffic?{day}&by=service", headers=HTML)
        row = traffic.text.split('data-name="club"', 1)[1].split("</tr>", 1)[0]
        assert f'data-field="mo">{mo}<' in row and f'data-field="mt">{mt}<' in row
        # the exports keep plain numbers
        assert rows((await client.get(f"/admin/reports/traffic?{day}&by=service&format=csv")).text)[1][
            1:3
        ] == [
            "12345",
            "23456",
        ]


async def test_csv_headers_are_in_the_readers_language_the_data_unchanged(
    spanish_client: PanelClient,
) -> None:
    december = "period=month&date=2026-12-15&format=csv"
    per_day = rows((await spanish_client.get(f"/admin/reports?{december}")).text)
    assert per_day[0] == ["día", "mo", "mt"] and per_day[1] == ["2026-12-01", "107", "5"]
    heat = rows((await spanish_client.get(f"/admin/reports?{december}&table=heatmap")).text)
    assert heat[0] == ["día_semana", *(f"{hour:02d}h" for hour in range(24))]
    assert heat[2][0] == "Tue"
    operators = rows((await spanish_client.get(f"/admin/reports/operators?{december}")).text)
    assert operators[0] == [
        "operador",
        "conversaciones_atendidas",
        "mo_respondidos",
        "mt_enviados",
        "primera_respuesta_mediana_s",
        "primera_respuesta_p90_s",
        "respuestas_medidas",
        "mt_entregados",
        "porcentaje_entregados",
    ]
    assert operators[1][1:] == ["2", "6", "5", "<= 10", "<= 30", "10", "4", "80.0"]  # figures as in English
    traffic = rows((await spanish_client.get(f"/admin/reports/traffic?{december}&by=short_code")).text)
    assert traffic[0] == [
        "número_corto",
        "mo",
        "mt",
        "entregados",
        "fallidos",
        "rechazados",
        "bajas",
        "clientes_nuevos",
    ]
    assert traffic[1] == ["997745", "107", "5", "4", "0", "0", "0", "3"]
    for by, first in (("service", "servicio"), ("carrier", "operadora"), ("country", "país")):
        grouped = rows((await spanish_client.get(f"/admin/reports/traffic?{december}&by={by}")).text)
        assert grouped[0][0] == first


async def test_a_clients_history_exported_in_spanish(spanish_client: PanelClient, database_url: str) -> None:
    samples = await seed_conversation(database_url, "oscar", "34611000009", "hola")
    export = rows((await spanish_client.get(f"/admin/reports/clients?q={samples.client_id}&format=csv")).text)
    assert export[0] == ["sentido", "id", "fecha", "número_corto", "operadora", "estado", "texto"]
    assert export[1][0] == "mo" and export[1][-1] == "hola"


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
