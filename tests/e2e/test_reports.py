"""Issue 13's acceptance for the reports (1.4): known traffic goes through the whole stack (MOs from the
simulator, an opt-out, operators' replies through the outbox, receipts from the simulator), the test
keeps a ledger of it, and a master reads every report in a real browser: the numbers on each page, and
in the CSV it downloads, are the ledger's. Screenshots of every report page go to artifacts/."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import func, select

from gatewayd.outbox import MTRequest
from gatewayd.store.accounts import Role, get_account_by_username
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.repo_subscribers import get_subscriber_by_msisdn
from tests.e2e.conftest import VIEWPORT
from tests.e2e.stack import OPERATOR, PASSWORD, SHORT_CODE, Stack, StackOptions, add_operator, desk_plugins
from tests.e2e.test_operator_desk import inject_mo, subscriber
from tests.waiting import eventually as wait_until

pytestmark = pytest.mark.e2e

MASTER = "marta"
ZONE = ZoneInfo("Europe/Madrid")  # the master's (accounts' default)


async def sign_in_master(page: Page, path: str) -> None:
    await page.goto(path)
    await page.fill("#username", MASTER)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Informes")


async def field(page: Page, row: str, name: str) -> str:
    return (await page.locator(f"{row} [data-field='{name}']").inner_text()).strip()


async def download_csv(page: Page, link: str) -> list[list[str]]:
    async with page.expect_download() as waiting:
        await page.click(link)
    download = await waiting.value
    path = await download.path()
    data = (await asyncio.to_thread(Path(path).read_bytes)).decode("utf-8")
    assert data.startswith("\ufeff"), "the CSV starts with a byte-order mark"
    return list(csv.reader(io.StringIO(data[1:])))


async def shoot(page: Page, artifacts: Path, name: str) -> None:
    await page.set_viewport_size({"width": 1366, "height": 800})
    await page.screenshot(path=str(artifacts / f"{name}-1366.png"), full_page=True)
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=str(artifacts / f"{name}-390.png"), full_page=True)
    await page.set_viewport_size({"width": 1366, "height": 800})


async def test_every_report_matches_the_ledger_of_what_was_sent(
    stack: Stack, browser: Browser, artifacts: Path
) -> None:
    await add_operator(stack.sessions, desk_plugins(StackOptions()), 5, username=MASTER, role=Role.MASTER)
    ana, bea, carlos = subscriber(), subscriber(), subscriber()
    # The ledger: what the test sends, and what each report must then show.
    sent_mos = [(ana, "hola"), (ana, "¿hay alguien?"), (bea, "buenas"), (carlos, "BAJA")]
    for msisdn, text in sent_mos:
        await inject_mo(stack, msisdn, text)

    async def stored() -> bool:
        async with stack.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(MOMessage))).scalar_one()) == 4

    await wait_until(stored)
    async with stack.sessions() as session:
        operator = await get_account_by_username(session, OPERATOR)
        assert operator is not None
        conversation_of = {}
        for msisdn in (ana, bea):
            client = await get_subscriber_by_msisdn(session, msisdn)
            assert client is not None
            conversation_of[msisdn] = (
                await session.execute(select(Conversation.id).where(Conversation.subscriber_id == client.id))
            ).scalar_one()
        ana_client = await get_subscriber_by_msisdn(session, ana)
        assert ana_client is not None
    assert stack.daemon.outbox is not None
    for msisdn, text in ((ana, "Hola Ana, aquí Olga"), (bea, "Buenas, Bea")):
        await stack.daemon.outbox.queue(
            MTRequest(
                to=msisdn,
                text=text,
                kind=MTKind.REPLY,
                conversation_id=conversation_of[msisdn],
                operator_id=operator.id,
            )
        )

    async def delivered() -> bool:  # the two replies and BAJA's confirmation, receipts in
        async with stack.sessions() as session:
            statuses = (await session.execute(select(MTMessage.status))).scalars().all()
        return len(statuses) == 3 and all(status is MTStatus.DELIVERED for status in statuses)

    await wait_until(delivered)
    ledger = {"mo": 4, "mt": 3, "delivered": 3, "failed": 0, "refused": 0, "opt_outs": 1, "new_clients": 3}

    today = datetime.now(UTC).astimezone(ZONE).date()
    span = f"from={(today - timedelta(days=1)).isoformat()}&to={today.isoformat()}"
    context = await browser.new_context(
        base_url=stack.panel_url,
        viewport=VIEWPORT,
        locale="es-ES",
        timezone_id="Europe/Madrid",
        accept_downloads=True,
    )
    try:
        page = await context.new_page()
        await sign_in_master(page, f"/admin/reports?{span}")
        # Per day and hour: the totals, the charts and the heat map (its cells add up to every SMS).
        await expect(page.locator("[data-total='mo']")).to_have_text("4")
        await expect(page.locator("[data-total='mt']")).to_have_text("3")
        values = await page.locator(".heat-map rect[data-value]").evaluate_all(
            "cells => cells.map(cell => Number(cell.dataset.value))"
        )
        assert len(values) == 7 * 24 and sum(values) == 7
        await expect(page.locator(".report-chart-mo rect")).to_have_count(2)
        await shoot(page, artifacts, "reports-overview")
        per_day = await download_csv(page, "a.export[href*='format=csv']:not([href*='heatmap'])")
        assert per_day[0] == ["día", "mo", "mt"]  # the master reads Spanish: so do the file's columns
        assert sum(int(row[1]) for row in per_day[1:]) == 4 and sum(int(row[2]) for row in per_day[1:]) == 3

        # Per operator.
        await page.click("nav.report-tabs a[href^='/admin/reports/operators']")
        await expect(page.locator("h1")).to_have_text("Informes: operadores")
        row = f"tr[data-operator='{OPERATOR.title()}']"
        assert await field(page, row, "conversations") == "2"
        assert await field(page, row, "mos_answered") == "3"
        assert await field(page, row, "mts_sent") == "2"
        assert await field(page, row, "delivered") == "100,0\xa0% (2)"  # as Spanish writes a percentage
        assert (await field(page, row, "median")).startswith("≤ ")
        await shoot(page, artifacts, "reports-operators")
        operators = await download_csv(page, "a.export")
        assert operators[1][:4] == [OPERATOR.title(), "2", "3", "2"] and operators[1][-2:] == ["2", "100.0"]

        # Per short code, carrier, service and country.
        await page.click("nav.report-tabs a[href^='/admin/reports/traffic']")
        for by, name in (("short_code", SHORT_CODE), ("carrier", "movistar"), ("country", "ES")):
            await page.click(f"nav.report-groups a[href$='by={by}']")
            row = f"#traffic tr[data-name='{name}']"
            shown = {key: await field(page, row, key) for key in ledger}
            assert shown == {key: str(value) for key, value in ledger.items()}, by
            if by == "short_code":
                await shoot(page, artifacts, "reports-traffic")
                exported = await download_csv(page, "a.export")
                assert exported[0] == [
                    "número_corto",
                    "mo",
                    "mt",
                    "entregados",
                    "fallidos",
                    "rechazados",
                    "bajas",
                    "clientes_nuevos",
                ]
                assert exported[1] == [SHORT_CODE, *(str(value) for value in ledger.values())]
        # per service: the chat's replies and MOs; BAJA's confirmation belongs to no conversation
        await page.click("nav.report-groups a[href$='by=service']")
        assert await field(page, "#traffic tr[data-name='chat']", "mo") == "4"
        assert await field(page, "#traffic tr[data-name='chat']", "mt") == "2"
        assert await field(page, "#traffic tr[data-name='']", "mt") == "1"

        # One client's whole history.
        await page.click("nav.report-tabs a[href^='/admin/reports/clients']")
        await page.fill("#q", ana_client.client_id)
        async with page.expect_navigation():
            await page.click("form[role=search] button[type=submit]")
        await expect(page.locator("#history tbody tr")).to_have_count(3)
        await expect(page.locator("#history tr[data-direction='mo']")).to_have_count(2)
        await expect(page.locator("#history")).to_contain_text("Hola Ana, aquí Olga")
        await shoot(page, artifacts, "reports-client")
        history = await download_csv(page, "a.export")
        assert [line[0] for line in history[1:]] == ["mt", "mo", "mo"]

        # A range the reports refuse, with the reason on the page.
        response = await page.goto("/admin/reports?from=2026-02-30&to=2026-03-01")
        assert response is not None and response.status == 400
        await expect(page.locator("main")).to_contain_text("AAAA-MM-DD")
        # A range typed backwards: the report's form again, as it was filled in, the reason under it.
        await page.goto(f"/admin/reports/operators?{span}")
        await page.fill("#from", today.isoformat())
        await page.fill("#to", (today - timedelta(days=3)).isoformat())
        async with page.expect_navigation() as navigation:
            await page.click("#to ~ button[type=submit]")
        assert (await navigation.value).status == 400
        await expect(page.locator("h1")).to_have_text("Informes: operadores")
        await expect(page.locator("#from")).to_have_value(today.isoformat())
        await expect(page.locator("#to")).to_have_value((today - timedelta(days=3)).isoformat())
        await expect(page.locator("#to")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#range-error")).to_have_text(
            "El primer día del intervalo es posterior al último."
        )
        await shoot(page, artifacts, "reports-reversed-range")
    finally:
        await context.close()
