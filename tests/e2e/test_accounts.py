"""Operators and masters in a real browser against the whole stack (issue 12, 1.2): an admin creates
an operator in the page, the operator signs in and works at the desk, and the admin's lock during
work sends the operator's conversation back to the queue. Screenshots of the list and the edit form
at three screen sizes go to artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect
from sqlalchemy import select

from gatewayd.store.accounts import Account, Role
from gatewayd.store.conversations import Conversation
from tests.e2e.stack import PASSWORD, Stack, StackOptions, add_operator, desk_plugins
from tests.e2e.test_operator_desk import go_online, inject_mo, subscriber
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

ADMIN = "ana"
NEW_OPERATOR = "olivia"
NEW_PASSWORD = "una clave bien larga"
SIZES: dict[str, ViewportSize] = {
    "1366x768": {"width": 1366, "height": 768},
    "1024x768": {"width": 1024, "height": 768},
    "390x844": {"width": 390, "height": 844},
}
DESKTOP = ("1366x768", "1024x768")


async def sign_in(page: Page, username: str, password: str, target: str) -> None:
    await page.goto(target)
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.fill("#username", username)
    await page.fill("#password", password)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")


async def screenshots(page: Page, artifacts: Path, name: str) -> None:
    """The page at each size, full length; at desktop sizes nothing scrolls sideways."""
    for size, viewport in SIZES.items():
        await page.set_viewport_size(viewport)
        await page.screenshot(path=str(artifacts / f"accounts-{name}-{size}.png"), full_page=True)
        if size in DESKTOP:
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, (name, size, overflow)
    await page.set_viewport_size(SIZES["1366x768"])


async def holder(stack: Stack, text: str) -> tuple[int, int | None]:
    """The conversation whose first MO is ``text`` and who holds it."""
    async with stack.sessions() as session:
        rows = await session.execute(select(Conversation.id, Conversation.assigned_operator_id))
        found = list(rows)
    assert len(found) == 1, found
    return found[0][0], found[0][1]


async def account_id(stack: Stack, username: str) -> int:
    async with stack.sessions() as session:
        found = await session.execute(select(Account.id).where(Account.username == username))
        return int(found.scalar_one())


async def test_an_admin_creates_an_operator_and_locks_them_during_work(
    stack: Stack, page: Page, browser: Browser, artifacts: Path
) -> None:
    await add_operator(stack.sessions, desk_plugins(StackOptions()), 5, ADMIN, role=Role.ADMIN)
    await sign_in(page, ADMIN, PASSWORD, "/admin/accounts")
    await expect(page.locator("h1")).to_have_text("Operadores y másters")

    # The admin creates the operator in the page.
    await page.click("a[href='/admin/accounts/new']")
    await page.fill("#username", NEW_OPERATOR)
    await page.fill("#display_name", "Olivia")
    await page.fill("#password", NEW_PASSWORD)
    await page.fill("#confirm_password", NEW_PASSWORD)
    await page.fill("#max_open_conversations", "3")
    await screenshots(page, artifacts, "new")
    async with page.expect_navigation():
        await page.click("#account-form button[type=submit]")
    await expect(page.locator(".flash.ok")).to_have_text("Cuenta creada.")
    olivia_id = await account_id(stack, NEW_OPERATOR)
    await expect(page).to_have_url(re.compile(rf"/admin/accounts/{olivia_id}\?done=created"))
    await screenshots(page, artifacts, "edit")

    # The operator signs in in a browser of their own and takes a conversation at the desk.
    operator_context = await browser.new_context(
        base_url=stack.panel_url, viewport=SIZES["1366x768"], locale="es-ES", timezone_id="Europe/Madrid"
    )
    try:
        operator = await operator_context.new_page()
        await sign_in(operator, NEW_OPERATOR, NEW_PASSWORD, "/desk")
        await expect(operator.locator("#desk")).to_be_visible()
        await go_online(operator)
        question = "¿Me atiende alguien?"
        await inject_mo(stack, subscriber(), question)
        await expect(operator.locator(".queue-item", has_text=question)).to_be_visible(timeout=5_000)
        conversation_id, held_by = await holder(stack, question)
        assert held_by == olivia_id

        # The admin locks them while they hold it: it goes back to the queue, their desk ends.
        await page.goto("/admin/accounts")
        await expect(page.locator("tr[data-username='olivia']")).to_contain_text("Activa")
        await screenshots(page, artifacts, "list")
        await page.click("tr[data-username='olivia'] a")
        await page.fill("#reason", "Fin de contrato")
        async with page.expect_navigation():
            await page.click("form[action$='/lock'] button[type=submit]")
        await expect(page.locator(".flash.ok")).to_contain_text("Cuenta bloqueada")

        async def released() -> bool:  # the panel's desk settles the locked operator's presence
            return await holder(stack, question) == (conversation_id, None)

        await eventually(released, what="the locked operator's conversation has no holder")
        await operator.goto("/desk")
        await expect(operator).to_have_url(re.compile(r"/login"))
        await page.goto("/admin/accounts?state=locked")
        await expect(page.locator("tr[data-username='olivia']")).to_contain_text("Bloqueada")
    finally:
        await operator_context.close()
