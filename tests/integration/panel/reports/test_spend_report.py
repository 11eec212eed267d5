"""The reports' spend section (issue 14): premium accounts billed through the real outbox (billed
replies charged, a confirm step pausing a client, a cap reached), read per billed service and month of
the service's zone, with the clients who spent most (the MSISDN only for those who may see numbers),
both tables as CSV; a deployment without billing has no spend section. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from gatewayd.outbox import MTRequest, Outbox, OutboxSettings, Queued, Refusal
from gatewayd.premium import PremiumSettings
from gatewayd.store.accounts import Role
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import MTKind
from gatewayd.store.premium import PremiumAccount, lock_accounts, save_accounts
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from panel.app import create_app
from panel.auth.accounts import create_account
from panel.auth.passwords import PasswordPolicy
from panel.auth.permissions import PANEL_ACCESS, PermissionRegistry
from panel.settings import PanelSettings
from plugins.reports.permissions import REPORTS_VIEW
from routing.premium import Billed, SpendStep, StepAction, Terms, month_of, month_start

from ..conftest import (
    BUILT_IN_PLUGINS,
    FAST_ARGON2,
    HTML,
    PASSWORD,
    PanelClient,
    load_example_plugin,
    login,
    memory_bus,
    prepare_store,
    serving,
)

# Far ahead of the wall clock, so the holds the outbox sets (until the month's end) hold when the
# page reads them; June 2099 in Madrid, the range also touching May.
JUNE = datetime(2099, 6, 15, 12, 0, tzinfo=UTC)
MAY = datetime(2099, 5, 20, 12, 0, tzinfo=UTC)
CHAT = Terms(
    price_mo=0,
    price_mt=100,
    currency="EUR",
    provider="Acme",
    billed=Billed.MT,
    notice="{precio} {moneda}",
    acceptance=False,
    zone=ZoneInfo("Europe/Madrid"),
    steps=(SpendStep(300, StepAction.CONFIRM),),
)
CLUB = Terms(
    price_mo=0,
    price_mt=150,
    currency="GBP",
    provider="Club Ltd",
    billed=Billed.MT,
    notice="{precio} {moneda}",
    acceptance=False,
    zone=ZoneInfo("Europe/London"),
    steps=(SpendStep(300, StepAction.CAP),),
)
PREMIUM = PremiumSettings(
    terms={"chat": CHAT, "=club": CLUB},
    services_by_code={"795500": "chat", "797700": "=club"},
    countries={"chat": "ES", "=club": "GB"},
)
# (client ID, MSISDN, short code, billed replies, when)
BILLED = (
    ("CPAUSED01", "34600000001", "795500", 3, JUNE),  # 3.00 EUR: the confirm step pauses them
    ("CNORMAL02", "34600000002", "795500", 2, JUNE),  # 2.00 EUR
    ("CMAYONLY3", "34600000003", "795500", 1, MAY),  # 1.00 EUR in May, not billed since
    # and CBOTHMON6: 2.00 EUR in May, then 2.00 EUR in June (see bill)
    ("CCAPPED04", "447700000004", "797700", 2, JUNE),  # 3.00 GBP: the cap
)


@pytest.fixture(params=["sqlite_url", "pg_url"], ids=["sqlite", "pg"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def noticed(subscriber_id: int, short_code: str, at: datetime) -> PremiumAccount:
    """The client's account once they wrote and got the price notice (no billed MT goes before it)."""
    service = PREMIUM.services_by_code[short_code]
    return PremiumAccount(
        subscriber_id=subscriber_id, service=service, short_code=short_code, noticed_at=at, last_mo_at=at
    )


async def bill(url: str) -> None:
    """The clients' billed replies queued through the outbox, as the desk and the API queue them."""
    outbox = Outbox(OutboxSettings(premium=PREMIUM))
    engine = create_engine(url)
    store = Store.for_engine(engine)
    try:
        async with store.transaction() as session:
            registry = PermissionRegistry.build([*BUILT_IN_PLUGINS, load_example_plugin()])
            await create_account(
                session,
                PasswordPolicy(FAST_ARGON2),
                registry,
                username="rita",
                password=PASSWORD,
                role=Role.MASTER,
                language="en",
                permissions=[PANEL_ACCESS, REPORTS_VIEW],  # reports, but no phone numbers
            )
        for client_id, msisdn, short_code, replies, when in BILLED:
            async with store.transaction() as session:
                subscriber = Subscriber(client_id=client_id, msisdn=msisdn, carrier="vodafone", country="ES")
                session.add(subscriber)
                await session.flush()
                session.add(noticed(subscriber.id, short_code, when))
                await session.flush()
                for n in range(replies):
                    request = MTRequest(
                        to=msisdn,
                        text=f"respuesta {n}",
                        kind=MTKind.REPLY,
                        carrier="vodafone",
                        source=short_code,
                        subscriber_id=subscriber.id,
                    )
                    batch = await outbox.queue_in(session, [request], when)
                    assert isinstance(batch.outcomes[0], Queued), (client_id, n)
        async with store.transaction() as session:  # billed in May, then in June (the account's reset)
            both = Subscriber(client_id="CBOTHMON6", msisdn="34600000006", carrier="vodafone", country="ES")
            session.add(both)
            await session.flush()
            both_id = both.id
            session.add(noticed(both_id, "795500", MAY))
        for when in (MAY, MAY, JUNE, JUNE):
            async with store.transaction() as session:
                request = MTRequest(
                    to="34600000006",
                    text="respuesta",
                    kind=MTKind.REPLY,
                    carrier="vodafone",
                    source="795500",
                    subscriber_id=both_id,
                )
                batch = await outbox.queue_in(session, [request], when)
                assert isinstance(batch.outcomes[0], Queued), when
        async with store.transaction() as session:  # a client who wrote in June, not billed yet
            quiet = Subscriber(client_id="CNOSPEND5", msisdn="34600000005", carrier="vodafone", country="ES")
            session.add(quiet)
            await session.flush()
            key = (quiet.id, "chat")
            found = await lock_accounts(session, {key: "795500"}, JUNE, create=True)
            june = replace(
                found[key], month=month_of(JUNE, CHAT.zone), month_start=month_start(JUNE, CHAT.zone)
            )
            await save_accounts(session, {key: june}, JUNE)
        async with store.transaction() as session:  # once paused or capped, a billed reply is refused
            for client_id, msisdn, short_code, _, _ in (BILLED[0], BILLED[3]):
                subscriber_id = await session.scalar(
                    select(Subscriber.id).where(Subscriber.client_id == client_id)
                )
                more = MTRequest(
                    to=msisdn,
                    text="más",
                    kind=MTKind.REPLY,
                    carrier="vodafone",
                    source=short_code,
                    subscriber_id=subscriber_id,
                )
                refused = await outbox.queue_in(session, [more], JUNE)
                assert isinstance(refused.outcomes[0], Refusal) and not refused.queued
    finally:
        await engine.dispose()


def app_for(url: str, premium: PremiumSettings) -> Starlette:
    settings = PanelSettings(
        database_url=url, secure_cookies=False, argon2=FAST_ARGON2, outbox=OutboxSettings(premium=premium)
    )
    return create_app(settings, bus_factory=memory_bus, plugins=list(BUILT_IN_PLUGINS))


@pytest.fixture
async def spend_client(database_url: str, example_on_path: None) -> AsyncIterator[PanelClient]:
    await prepare_store(database_url)
    await bill(database_url)
    async with serving(app_for(database_url, PREMIUM)) as client:
        assert (await login(client, "marta")).status_code == 303  # a master: reports and numbers
        yield client


def rows(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def cells(page: str, row: str) -> dict[str, str]:
    """The ``data-field`` cells of the table row that starts with ``row`` (its data attributes)."""
    line = page.split(row, 1)[1].split("</tr>", 1)[0]
    found = {}
    for part in line.split('data-field="')[1:]:
        name, rest = part.split('">', 1)
        found[name] = rest.split("<", 1)[0]
    return found


async def test_spend_per_service_and_month_and_the_top_clients(spend_client: PanelClient) -> None:
    page = await spend_client.get("/admin/reports/spend?from=2099-05-20&to=2099-06-20", headers=HTML)
    assert page.status_code == 200
    assert 'href="/admin/reports/spend?' in page.text  # the tab
    assert "calendar month in the service’s time zone (Europe/London, Europe/Madrid)" in page.text
    june = cells(page.text, 'data-service="chat" data-month="2099-06"')
    assert june == {
        "clients": "3",
        "total": "€7.00",
        "average": "€2.33",
        "max": "€3.00",
        "paused": "1",
        "capped": "0",
    }
    # May is exact though CBOTHMON6's account has moved on to June
    may = cells(page.text, 'data-service="chat" data-month="2099-05"')
    assert may == {
        "clients": "2",
        "total": "€3.00",
        "average": "€1.50",
        "max": "€2.00",
        "paused": "0",
        "capped": "0",
    }
    assert "past month counts" not in page.text and "as charged minus what was given back" in page.text
    club = cells(page.text, 'data-service="=club" data-month="2099-06"')
    assert club == {
        "clients": "1",
        "total": "£3.00",
        "average": "£3.00",
        "max": "£3.00",
        "paused": "0",
        "capped": "1",
    }
    top = page.text.split('id="spend-clients"', 1)[1]
    order = [part.split('"', 1)[0] for part in top.split('data-client-id="')[1:]]
    # by service, biggest first; CBOTHMON6's May and June added up
    assert order == ["CCAPPED04", "CBOTHMON6", "CPAUSED01", "CNORMAL02", "CMAYONLY3"]
    assert cells(top, 'data-client-id="CBOTHMON6"')["spend"] == "€4.00"
    assert "CNOSPEND5" not in page.text  # an account with nothing spent is no client billed
    assert cells(top, 'data-client-id="CPAUSED01"') == {
        "msisdn": "34600000001",
        "spend": "€3.00",
        "state": "paused for confirmation",
    }
    assert cells(top, 'data-client-id="CCAPPED04"')["state"] == "capped"
    # the export links: each table's own, whatever the page's query carried
    assert 'href="/admin/reports/spend?from=2099-05-20&amp;to=2099-06-20&amp;format=csv"' in page.text
    clients_link = (
        'href="/admin/reports/spend?from=2099-05-20&amp;to=2099-06-20&amp;table=clients&amp;format=csv"'
    )
    assert clients_link in page.text
    # a range within June: May's row and client are left out, and May's spend of CBOTHMON6
    june_only = await spend_client.get("/admin/reports/spend?from=2099-06-01&to=2099-06-30", headers=HTML)
    assert 'data-month="2099-05"' not in june_only.text and "CMAYONLY3" not in june_only.text
    assert cells(june_only.text, 'data-client-id="CBOTHMON6"')["spend"] == "€2.00"
    # May read in June (a range within May in Madrid): its exact total, CBOTHMON6's May included
    may_only = await spend_client.get("/admin/reports/spend?from=2099-05-01&to=2099-05-30", headers=HTML)
    assert cells(may_only.text, 'data-service="chat" data-month="2099-05"')["total"] == "€3.00"
    assert cells(may_only.text, 'data-client-id="CBOTHMON6"')["spend"] == "€2.00"
    assert 'data-month="2099-06"' not in may_only.text


async def test_amounts_are_written_as_the_readers_language_writes_money(spend_client: PanelClient) -> None:
    query = "/admin/reports/spend?from=2099-05-20&to=2099-06-20"
    english = await spend_client.get(query, headers=HTML)  # marta reads in English
    assert cells(english.text, 'data-service="chat" data-month="2099-06"')["total"] == "€7.00"
    assert cells(english.text, 'data-service="=club" data-month="2099-06"')["total"] == "£3.00"
    spanish = spend_client.another_browser()
    assert (await login(spanish, "ana")).status_code == 303  # ana reads in Spanish
    page = await spanish.get(query, headers=HTML)
    assert page.status_code == 200
    june = cells(page.text, 'data-service="chat" data-month="2099-06"')
    assert (june["total"], june["average"], june["max"]) == ("7,00\xa0€", "2,33\xa0€", "3,00\xa0€")
    assert cells(page.text, 'data-service="=club" data-month="2099-06"')["total"] == "3,00\xa0GBP"
    top = page.text.split('id="spend-clients"', 1)[1]
    assert cells(top, 'data-client-id="CBOTHMON6"')["spend"] == "4,00\xa0€"
    # the export stays plain numbers, whoever reads it
    export = rows((await spanish.get(f"{query}&format=csv")).text)
    assert ["chat", "2099-06", "EUR", "3", "7.00", "2.33", "3.00", "1", "0"] in export


async def test_both_tables_as_csv_with_formulas_defused(spend_client: PanelClient) -> None:
    query = "from=2099-05-20&to=2099-06-20&format=csv"
    services = await spend_client.get(f"/admin/reports/spend?{query}")
    assert services.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="reports-spend_2099-05-20_2099-06-20.csv"' in services.headers["content-disposition"]
    assert rows(services.text) == [
        ["service", "month", "currency", "clients_billed", "total", "average", "max", "paused", "capped"],
        ["'=club", "2099-06", "GBP", "1", "3.00", "3.00", "3.00", "0", "1"],
        ["chat", "2099-05", "EUR", "2", "3.00", "1.50", "2.00", "0", "0"],
        ["chat", "2099-06", "EUR", "3", "7.00", "2.33", "3.00", "1", "0"],
    ]
    clients = rows((await spend_client.get(f"/admin/reports/spend?{query}&table=clients")).text)
    assert clients == [
        ["service", "client_id", "msisdn", "currency", "spend", "state"],
        ["'=club", "CCAPPED04", "447700000004", "GBP", "3.00", "capped"],
        ["chat", "CBOTHMON6", "34600000006", "EUR", "4.00", "normal"],
        ["chat", "CPAUSED01", "34600000001", "EUR", "3.00", "paused"],
        ["chat", "CNORMAL02", "34600000002", "EUR", "2.00", "normal"],
        ["chat", "CMAYONLY3", "34600000003", "EUR", "1.00", "normal"],
    ]


async def test_numbers_only_for_those_who_may_see_them(database_url: str, example_on_path: None) -> None:
    await prepare_store(database_url)
    await bill(database_url)
    async with serving(app_for(database_url, PREMIUM)) as client:
        assert (await login(client, "rita")).status_code == 303
        page = await client.get("/admin/reports/spend?from=2099-06-01&to=2099-06-30", headers=HTML)
        assert page.status_code == 200 and "CPAUSED01" in page.text
        assert "34600000001" not in page.text and 'data-field="msisdn"' not in page.text
        export = rows(
            (
                await client.get(
                    "/admin/reports/spend?from=2099-06-01&to=2099-06-30&format=csv&table=clients"
                )
            ).text
        )
        assert export[0] == ["service", "client_id", "currency", "spend", "state"]
        assert "34600000001" not in "".join(",".join(line) for line in export)


async def test_a_deployment_without_billing_has_no_spend_section(
    database_url: str, example_on_path: None
) -> None:
    await prepare_store(database_url)
    async with serving(app_for(database_url, PremiumSettings())) as client:
        assert (await login(client, "marta")).status_code == 303
        overview = await client.get("/admin/reports", headers=HTML)
        assert overview.status_code == 200 and "/admin/reports/spend" not in overview.text
        assert (await client.get("/admin/reports/spend", headers=HTML)).status_code == 404
        reversed_range = "/admin/reports/spend?from=2026-12-02&to=2026-12-01"
        assert (await client.get(reversed_range, headers=HTML)).status_code == 404
        # an export asked for, with good or bad dates: still no such tab
        for query in ("format=csv", "table=clients&format=csv", "from=2026-12-02&to=2026-12-01&format=csv"):
            assert (await client.get(f"/admin/reports/spend?{query}", headers=HTML)).status_code == 404


async def test_the_spend_exports_head_their_columns_in_the_readers_language(
    database_url: str, example_on_path: None
) -> None:
    await prepare_store(database_url)
    await bill(database_url)
    async with serving(app_for(database_url, PREMIUM)) as client:
        assert (await login(client, "ana")).status_code == 303  # an admin in Spanish: every power
        query = "from=2099-05-20&to=2099-06-20&format=csv"
        services = rows((await client.get(f"/admin/reports/spend?{query}")).text)
        assert services[0] == [
            "servicio",
            "mes",
            "moneda",
            "clientes_facturados",
            "total",
            "media",
            "máximo",
            "en_pausa",
            "en_el_tope",
        ]
        assert services[3] == ["chat", "2099-06", "EUR", "3", "7.00", "2.33", "3.00", "1", "0"]
        clients = rows((await client.get(f"/admin/reports/spend?{query}&table=clients")).text)
        assert clients[0] == ["servicio", "id_cliente", "teléfono", "moneda", "gasto", "estado"]
        assert clients[1] == ["'=club", "CCAPPED04", "447700000004", "GBP", "3.00", "capped"]
