"""The reports' spend section in a real browser (issue 14): two clients of a billed service write
from the simulator, an operator's replies are charged through the outbox (one client crosses the
confirm step and is paused), and a master reads the spend page in Spanish: the service's month with
its clients, total, average and most per client and the paused client, the clients who spent most
with their numbers, both tables as CSV; the page fits each screen. Screenshots:
artifacts/reports-spend-1366.png and artifacts/layout-admin-reports-spend-<size>.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from gatewayd.outbox import MTRequest
from gatewayd.store.accounts import Role, get_account_by_username
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import MTKind
from gatewayd.store.premium import PremiumAccount
from gatewayd.store.subscribers import Subscriber
from routing.premium import PremiumState, month_of
from tests.e2e.conftest import VIEWPORT
from tests.e2e.stack import (
    OPERATOR,
    PASSWORD,
    SERVICE_ZONE,
    Stack,
    StackOptions,
    add_operator,
    desk_plugins,
    running_stack,
)
from tests.e2e.test_layout import SIZES, check_layout
from tests.e2e.test_operator_desk import inject_mo, subscriber
from tests.e2e.test_reports import download_csv, field, shoot
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

MASTER = "marta"
BILLING = """
[services.billing]
price_mt = 1.50
currency = "EUR"
provider = "Chat Acme SL"
billed = "mt"
notice = "Chat {host}: {precio} {moneda}/mensaje, de {proveedor}."
steps = [{at = 3, action = "confirm"}, {at = 30, action = "cap"}]
"""


@pytest.fixture
async def billed_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path, StackOptions(service_extra=BILLING)) as running:
        yield running


@pytest.fixture
async def master_page(billed_stack: Stack, browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=billed_stack.panel_url,
        viewport=VIEWPORT,
        locale="es-ES",
        timezone_id="Europe/Madrid",
        accept_downloads=True,
    )
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def charge(stack: Stack, replies: dict[str, int]) -> None:
    """The operator's ``replies[msisdn]`` billed replies to each client's conversation, through the
    daemon's outbox (each charged as it is queued)."""
    async with stack.sessions() as session:
        operator = await get_account_by_username(session, OPERATOR)
        assert operator is not None
        conversations = dict(
            (
                await session.execute(
                    select(Subscriber.msisdn, Conversation.id)
                    .join(Conversation, Conversation.subscriber_id == Subscriber.id)
                    .where(Subscriber.msisdn.in_(list(replies)))
                )
            ).all()
        )
    assert stack.daemon.outbox is not None
    for msisdn, count in replies.items():
        for n in range(count):
            await stack.daemon.outbox.queue(
                MTRequest(
                    to=msisdn,
                    text=f"Respuesta {n + 1}",
                    kind=MTKind.REPLY,
                    conversation_id=conversations[msisdn],
                    operator_id=operator.id,
                )
            )


async def test_a_master_reads_the_months_spend(
    billed_stack: Stack, master_page: Page, artifacts: Path
) -> None:
    stack, page = billed_stack, master_page
    await add_operator(stack.sessions, desk_plugins(StackOptions()), 5, username=MASTER, role=Role.MASTER)
    ana, bea = subscriber(), subscriber()
    for msisdn in (ana, bea):
        await inject_mo(stack, msisdn, "Hola")

    async def conversations_open() -> bool:
        async with stack.sessions() as session:
            found = (await session.execute(select(Conversation.id))).scalars().all()
        return len(found) == 2

    await eventually(conversations_open, what="both clients' conversations")
    await charge(stack, {ana: 2, bea: 1})

    async def accounts() -> dict[str, tuple[int, PremiumState]]:
        async with stack.sessions() as session:
            rows = await session.execute(
                select(Subscriber.msisdn, PremiumAccount.spent, PremiumAccount.state).join(
                    Subscriber, Subscriber.id == PremiumAccount.subscriber_id
                )
            )
            return {msisdn: (spent, state) for msisdn, spent, state in rows}

    assert await accounts() == {ana: (300, PremiumState.PAUSED), bea: (150, PremiumState.NORMAL)}
    async with stack.sessions() as session:
        ana_id = (
            await session.execute(select(Subscriber.client_id).where(Subscriber.msisdn == ana))
        ).scalar_one()
    month = month_of(datetime.now(UTC), ZoneInfo(SERVICE_ZONE))

    await page.goto("/admin/reports")
    await page.fill("#username", MASTER)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    async with page.expect_navigation():
        await page.click("nav.report-tabs a[href^='/admin/reports/spend']")
    await expect(page.locator("h1")).to_have_text("Informes: gasto")
    await expect(page.locator(".spend-months")).to_contain_text(
        f"mes natural en la zona horaria del servicio ({SERVICE_ZONE})"
    )
    row = f"#spend tr[data-service='chat'][data-month='{month}']"
    shown = {
        name: await field(page, row, name)
        for name in ("clients", "total", "average", "max", "paused", "capped")
    }
    assert shown == {
        "clients": "2",
        "total": "4,50\xa0€",
        "average": "2,25\xa0€",
        "max": "3,00\xa0€",
        "paused": "1",
        "capped": "0",
    }
    await expect(page.locator("#spend-clients tbody tr")).to_have_count(2)
    top = f"#spend-clients tr[data-client-id='{ana_id}']"
    await expect(page.locator("#spend-clients tbody tr").first).to_have_attribute("data-client-id", ana_id)
    assert await field(page, top, "spend") == "3,00\xa0€"
    assert await field(page, top, "state") == "en pausa hasta que confirme"
    assert await field(page, top, "msisdn") == ana.lstrip("+")
    await shoot(page, artifacts, "reports-spend")
    services = await download_csv(page, "a.export:not([href*='table=clients'])")
    assert services[1] == ["chat", month, "EUR", "2", "4.50", "2.25", "3.00", "1", "0"]
    clients = await download_csv(page, "a.export[href*='table=clients']")
    assert clients[1] == ["chat", ana_id, ana.lstrip("+"), "EUR", "3.00", "paused"]
    for size in SIZES:
        await check_layout(page, "admin-reports-spend", size, artifacts)
