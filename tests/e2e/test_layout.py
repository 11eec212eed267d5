"""Every admin page and the desk at the screens people use (issue 12): 1,024 x 768, 1,366 x 768,
1,920 x 1,080 and a 390 x 844 phone. Screenshots of each go to artifacts/layout-<page>-<size>.png; at
the desktop sizes no page scrolls sideways, on the phone the top bar stays one compact line (under
80 px) with a menu button that opens the menu."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from gatewayd.store.accounts import Role
from panel.auth.accounts import create_account
from panel.auth.passwords import PasswordPolicy
from panel.auth.permissions import PermissionRegistry
from tests.e2e.stack import FAST_ARGON2, PASSWORD, Stack, StackOptions, desk_plugins
from tests.e2e.test_operator_desk import go_online, inject_mo, sign_in

pytestmark = pytest.mark.e2e

ADMIN = "ana"
ADMIN_PAGES = (
    "/admin",
    "/admin/monitor",
    "/admin/accounts",
    "/admin/accounts/new",
    "/admin/conversations",
    "/admin/clients",
    "/admin/diversion",
    "/admin/sessions",
    "/admin/audit",
    "/admin/gallery",
    "/admin/reports",
    "/admin/reports/operators",
    "/admin/reports/traffic",
    "/admin/reports/clients",
    "/admin/campaigns",
    "/admin/campaigns/new",
    "/admin/api-keys",
    "/admin/webhooks",
    "/profile",
)
SIZES: dict[str, ViewportSize] = {
    "1024x768": {"width": 1024, "height": 768},
    "1366x768": {"width": 1366, "height": 768},
    "1920x1080": {"width": 1920, "height": 1080},
    "390x844": {"width": 390, "height": 844},
}
PHONE = "390x844"


async def add_admin(stack: Stack) -> None:
    registry = PermissionRegistry.build(desk_plugins(StackOptions()))
    async with stack.sessions() as session, session.begin():
        await create_account(
            session,
            PasswordPolicy(FAST_ARGON2),
            registry,
            username=ADMIN,
            password=PASSWORD,
            role=Role.ADMIN,
            display_name="Ana Administradora",
            language="es",
        )


async def check_layout(page: Page, name: str, size: str, artifacts: Path) -> None:
    await page.set_viewport_size(SIZES[size])
    await page.screenshot(path=str(artifacts / f"layout-{name}-{size}.png"), full_page=True)
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    topbar = await page.evaluate("document.querySelector('.topbar').getBoundingClientRect().height")
    if size == PHONE:
        assert topbar < 80, (name, topbar)
        await expect(page.locator(".topbar .account")).to_be_hidden()  # behind the menu button
    else:
        assert overflow <= 0, (name, size, overflow)


async def test_every_admin_page_and_the_desk_fit_each_screen(
    stack: Stack, page: Page, browser: Browser, artifacts: Path
) -> None:
    await add_admin(stack)
    # The desk with a conversation open: thread, reply form and the client card with its charts.
    await sign_in(page)
    await go_online(page)
    await inject_mo(stack, "+34600123456", "¿Hola, hay alguien?")
    item = page.locator(".queue-item", has_text="¿Hola, hay alguien?")
    await expect(item).to_be_visible(timeout=10_000)
    async with page.expect_navigation():
        await item.locator("a").click()
    await expect(page.locator("#thread .msg.mo .text")).to_have_text(["¿Hola, hay alguien?"])
    for size in SIZES:
        await check_layout(page, "desk", size, artifacts)
    # Every admin page, as the admin.
    context = await browser.new_context(
        base_url=page.url.split("/desk")[0], locale="es-ES", timezone_id="Europe/Madrid"
    )
    admin = await context.new_page()
    await admin.goto("/login")
    await admin.fill("#username", ADMIN)
    await admin.fill("#password", PASSWORD)
    async with admin.expect_navigation():
        await admin.click("form[action='/login'] button[type=submit]")
    # The start page knows the binds at once: the panel asked the daemon for its status when it started.
    await admin.goto("/admin")
    await expect(admin.locator("[data-figure=binds] .figure-value")).to_have_text("1 / 1")
    for path in ADMIN_PAGES:
        await admin.set_viewport_size(SIZES["1366x768"])
        response = await admin.goto(path)
        assert response is not None and response.status == 200, path
        name = path.strip("/").replace("/", "-")
        for size in SIZES:
            await check_layout(admin, name, size, artifacts)
    # On the phone the menu button opens the menu and the account's links.
    await admin.set_viewport_size(SIZES[PHONE])
    await admin.goto("/admin")
    await admin.click(".menu-toggle")
    await expect(admin.locator(".topbar .account")).to_be_visible()
    await expect(admin.locator(".sidebar")).to_be_visible()
    await admin.screenshot(path=str(artifacts / f"layout-admin-menu-open-{PHONE}.png"), full_page=True)
    await context.close()
