"""Call-centre diversion and session reset in real browsers against the whole stack (issue 12).

An admin switches the chat service's diversion on at /admin/diversion; the next MO injected at the
simulator lands live on the open desk of the call-centre operator (pool "callcentre"), not on the
desk of the service's own operator, who is online too. Then the admin pastes a list at
/admin/sessions and reads its per-line report; the reset closed the client's conversation.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, expect
from sqlalchemy import select

from gatewayd.store.accounts import Role, get_account_by_username
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.repo_assignment import set_operator_pools
from gatewayd.store.subscribers import Subscriber
from tests.e2e.stack import PASSWORD, Stack, add_operator, desk_plugins
from tests.e2e.stack import StackOptions as Options
from tests.e2e.test_operator_desk import go_online, inject_mo, sign_in

pytestmark = pytest.mark.e2e

ADMIN = "ana"
CALL_CENTRE = "cleo"
LAPTOP: ViewportSize = {"width": 1366, "height": 768}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture
async def contexts(stack: Stack, browser: Browser) -> AsyncIterator[list[BrowserContext]]:
    made: list[BrowserContext] = []
    try:
        for _ in range(3):
            made.append(
                await browser.new_context(
                    base_url=stack.panel_url, viewport=LAPTOP, locale="es-ES", timezone_id="Europe/Madrid"
                )
            )
        yield made
    finally:
        for context in made:
            await context.close()


async def sign_in_admin(page: Page, path: str) -> None:
    await page.goto(path)
    await page.fill("#username", ADMIN)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    await expect(page.locator("h1")).to_be_visible()


async def no_horizontal_scroll(page: Page) -> None:
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def test_admin_diverts_the_service_and_the_next_mo_reaches_the_call_centre_then_resets_it(
    stack: Stack, contexts: list[BrowserContext], artifacts: Path
) -> None:
    plugins = desk_plugins(Options())
    await add_operator(stack.sessions, plugins, 5, username=ADMIN, role=Role.ADMIN)
    await add_operator(stack.sessions, plugins, 5, username=CALL_CENTRE)
    async with stack.sessions() as session, session.begin():
        cleo = await get_account_by_username(session, CALL_CENTRE)
        assert cleo is not None
        await set_operator_pools(session, cleo.id, ["callcentre"])
    own, centre, admin = [await context.new_page() for context in contexts]
    await sign_in(own)  # olga, the service's own operator (default pool)
    await go_online(own)
    await sign_in(centre, CALL_CENTRE)
    await go_online(centre)

    await sign_in_admin(admin, "/admin/diversion")
    row = admin.locator("tr[data-service='chat']")
    await expect(row.locator(".pill")).to_have_text("No")
    await admin.screenshot(path=str(artifacts / "diversion-off-1366.png"), full_page=True)
    async with admin.expect_navigation():
        await row.locator("button", has_text="Desviar al call center").click()
    await expect(admin.locator(".flash.ok")).to_contain_text("chat se desvía ahora al call center")
    await expect(row.locator(".pill")).to_have_text("Sí")
    await expect(row).to_contain_text(ADMIN)
    await no_horizontal_scroll(admin)
    await admin.screenshot(path=str(artifacts / "diversion-1366.png"), full_page=True)
    await admin.set_viewport_size(PHONE)
    await admin.screenshot(path=str(artifacts / "diversion-390.png"), full_page=True)

    # the next MO of the service goes to the call centre's open desk, live; olga's stays empty
    msisdn = f"34600{uuid.uuid4().int % 1_000_000:06d}"
    question = f"¿Me atiende el call center? {uuid.uuid4().hex[:6]}"
    await inject_mo(stack, msisdn, question)
    await expect(centre.locator(".queue-item", has_text=question)).to_be_visible(timeout=5_000)
    await expect(own.locator(".queue-item", has_text=question)).to_have_count(0)
    await centre.screenshot(path=str(artifacts / "diversion-callcentre-desk-1366.png"))

    # session reset of a pasted list: the client's number, an unknown one, a line that is no number
    await admin.set_viewport_size(LAPTOP)
    await admin.goto("/admin/sessions")
    national = msisdn[2:]
    await admin.fill("#numbers", f"{national}\n699 000 111\nhola")
    async with admin.expect_navigation():
        await admin.click("form[action='/admin/sessions'] button[type=submit]")
    rows = admin.locator("table.report tbody tr")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0)).to_have_class("outcome-reset")
    await expect(rows.nth(0)).to_contain_text("se cerró la conversación abierta")
    await expect(rows.nth(1)).to_have_class("outcome-unknown")
    await expect(rows.nth(2)).to_have_class("outcome-invalid")
    await no_horizontal_scroll(admin)
    await admin.screenshot(path=str(artifacts / "sessions-1366.png"), full_page=True)
    await admin.set_viewport_size(PHONE)
    await admin.screenshot(path=str(artifacts / "sessions-390.png"), full_page=True)
    async with stack.sessions() as session:
        status = await session.scalar(
            select(Conversation.status)
            .join(Subscriber, Subscriber.id == Conversation.subscriber_id)
            .where(Subscriber.msisdn == msisdn)
        )
    assert status is ConversationStatus.CLOSED
