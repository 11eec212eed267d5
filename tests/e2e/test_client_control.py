"""Client control in a real browser against the whole stack (issue 12, 1.3): a master bans a client
from /admin/clients while an operator has their conversation open on the desk; it leaves her desk
live; the client's next MO (simulator -> daemon) is stored but never reaches the desk, while another
client's does. Screenshots of the page (1366x768 and a 390x844 phone) go to artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import func, select

from gatewayd.store.accounts import Role
from gatewayd.store.messages import MOMessage
from gatewayd.store.repo_subscribers import get_subscriber_by_msisdn
from panel.auth.accounts import create_account
from panel.auth.passwords import PasswordPolicy
from panel.auth.permissions import PermissionRegistry
from tests.e2e.stack import FAST_ARGON2, PASSWORD, Stack, StackOptions, desk_plugins
from tests.e2e.test_operator_desk import go_online, inject_mo, sign_in, subscriber

pytestmark = pytest.mark.e2e

MASTER = "marta"


async def add_master(stack: Stack) -> None:
    registry = PermissionRegistry.build(desk_plugins(StackOptions()))
    async with stack.sessions() as session, session.begin():
        await create_account(
            session,
            PasswordPolicy(FAST_ARGON2),
            registry,
            username=MASTER,
            password=PASSWORD,
            role=Role.MASTER,
            display_name="Marta",
            language="es",
        )


async def master_page(stack: Stack, browser: Browser, width: int, height: int) -> Page:
    context = await browser.new_context(
        base_url=stack.panel_url,
        viewport={"width": width, "height": height},
        locale="es-ES",
        timezone_id="Europe/Madrid",
    )
    page = await context.new_page()
    await page.goto("/admin/clients")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.fill("#username", MASTER)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Control de clientes")
    return page


async def mos_of(stack: Stack, msisdn: str) -> int:
    async with stack.sessions() as session:
        found = await get_subscriber_by_msisdn(session, msisdn)
        assert found is not None
        statement = select(func.count()).select_from(MOMessage).where(MOMessage.subscriber_id == found.id)
        return int(await session.scalar(statement) or 0)


async def no_horizontal_scroll(page: Page) -> bool:
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def test_a_banned_clients_mo_never_reaches_the_desk(
    stack: Stack, page: Page, browser: Browser, artifacts: Path
) -> None:
    await add_master(stack)
    banned, other = subscriber(), subscriber()
    await sign_in(page)
    await go_online(page)
    await inject_mo(stack, banned, "hola, soy el que molesta")
    first = page.locator(".queue-item", has_text="hola, soy el que molesta")
    await expect(first).to_be_visible(timeout=5000)
    async with stack.sessions() as session:
        found = await get_subscriber_by_msisdn(session, banned)
    assert found is not None
    client_id = found.client_id

    admin = await master_page(stack, browser, 1366, 768)
    try:
        await admin.fill("#ids", f"{client_id}\nCAAAAAAAA\nno-es-un-id")
        await admin.fill("#reason", "Insultos a la operadora")
        async with admin.expect_navigation():
            await admin.click("form.stacked button[type=submit]")
        rows = admin.locator("table.ban-report tbody tr")
        await expect(rows).to_have_count(3)
        await expect(rows.nth(0)).to_have_attribute("data-outcome", "banned")
        await expect(rows.nth(1)).to_have_attribute("data-outcome", "unknown")
        await expect(rows.nth(2)).to_have_attribute("data-outcome", "invalid")
        await expect(rows.nth(0)).to_contain_text("bloqueado")

        # the conversation leaves the operator's open desk without a reload
        await expect(first).to_have_count(0, timeout=5000)

        # the banned client writes again, then another client: only the other one reaches the desk
        await inject_mo(stack, banned, "¿por qué no me contestáis?")
        await inject_mo(stack, other, "buenas tardes")
        await expect(page.locator(".queue-item", has_text="buenas tardes")).to_be_visible(timeout=5000)
        assert await mos_of(stack, banned) == 2  # stored (and acknowledged) all the same
        assert await page.locator(".queue-item", has_text="por qué no me contestáis").count() == 0
        await page.reload()
        await expect(page.locator(".queue-item", has_text="buenas tardes")).to_be_visible()
        assert await page.locator(".queue-item", has_text="por qué no me contestáis").count() == 0
        await admin.screenshot(path=str(artifacts / "admin-clients-report-1366.png"), full_page=True)
        assert await no_horizontal_scroll(admin)

        # the client's card: banned, since when, why, and the history
        await admin.fill("#q", client_id)
        async with admin.expect_navigation():
            await admin.click("form[role=search] button[type=submit]")
        card = admin.locator(".client-card")
        await expect(card.locator(".state-banned")).to_be_visible()
        await expect(card.locator(".ban-state")).to_contain_text("Insultos a la operadora")
        await expect(card.locator("table.client-history tbody tr")).to_have_count(1)
        await expect(card.locator("table.client-history")).to_contain_text(MASTER)
        await admin.screenshot(path=str(artifacts / "admin-clients-card-1366.png"), full_page=True)
        assert await no_horizontal_scroll(admin)
    finally:
        await admin.context.close()

    phone = await master_page(stack, browser, 390, 844)
    try:
        await phone.goto(f"/admin/clients?q={client_id}")
        await expect(phone.locator(".client-card .state-banned")).to_be_visible()
        await phone.screenshot(path=str(artifacts / "admin-clients-card-390.png"), full_page=True)
        assert await no_horizontal_scroll(phone)
    finally:
        await phone.context.close()
