"""The audit trail in a real browser: an operator's sign-in and presence and a failed sign-in are on
record; the admin opens the trail, filters by action, checks the chain; screenshots at a laptop's and
a phone's size, with no horizontal scroll on the laptop."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from gatewayd.store.accounts import Role
from panel.auth.accounts import create_account
from panel.auth.passwords import PasswordPolicy
from panel.auth.permissions import PermissionRegistry
from tests.e2e.conftest import VIEWPORT
from tests.e2e.stack import FAST_ARGON2, PASSWORD, Stack, StackOptions, desk_plugins
from tests.e2e.test_operator_desk import go_online, sign_in

pytestmark = pytest.mark.e2e

ADMIN = "adela"
SIZES: dict[str, ViewportSize] = {
    "1366x768": {"width": 1366, "height": 768},
    "390x844": {"width": 390, "height": 844},
}


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
            display_name="Adela",
            language="es",
        )


async def admin_sign_in(page: Page) -> None:
    await page.goto("/login?next=/admin/audit")
    await page.fill("#username", ADMIN)
    await page.fill("#password", "not the password")
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    await expect(page.locator(".flash.error")).to_be_visible()
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Registro de auditoría")


async def test_the_admin_filters_the_trail_by_action(
    stack: Stack, browser: Browser, page: Page, artifacts: Path
) -> None:
    await add_admin(stack)
    await sign_in(page)  # the operator, at the desk
    await go_online(page)

    admins = await browser.new_context(
        base_url=stack.panel_url, viewport=VIEWPORT, locale="es-ES", timezone_id="Europe/Madrid"
    )
    try:
        admin = await admins.new_page()
        await admin_sign_in(admin)
        rows = admin.locator("table.records tbody tr")
        await expect(admin.locator("table.records td.action", has_text="operator.presence")).to_have_count(1)
        await expect(admin.locator(".sidebar a[aria-current=page]")).to_have_text("Registro de auditoría")

        async with admin.expect_navigation():
            await admin.select_option("#f-action", "auth.login_failed")
            await admin.click("form.filters button[type=submit]")
        await expect(rows).to_have_count(1)
        failed = rows.first
        await expect(failed.locator("td.actor")).to_have_text("-")
        await expect(failed.locator("td.details")).to_contain_text(f"Usuario: {ADMIN}")
        await expect(failed.locator("td.details")).to_contain_text("Resultado: bad_credentials")
        await expect(admin.locator("#f-action")).to_have_value("auth.login_failed")
        for name, size in SIZES.items():
            await admin.set_viewport_size(size)
            await admin.screenshot(path=str(artifacts / f"audit-trail-{name}.png"), full_page=True)
            if size["width"] >= 1024:
                overflow = await admin.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, (name, overflow)
        await admin.set_viewport_size(VIEWPORT)

        async with admin.expect_navigation():
            await admin.click("form[action='/admin/audit/verify'] button")
        await expect(admin.locator(".chain-state")).to_contain_text("cadena intacta")

        async with admin.expect_navigation():
            await admin.select_option("#f-action", "auth.login")
            await admin.click("form.filters button[type=submit]")
        await expect(rows).to_have_count(2)  # the operator's and the admin's sign-ins

        # An inverted range: the form comes back as typed, the error beside the end date.
        await admin.fill("#f-actor", "adela")
        await admin.fill("#f-from", "2026-03-02")
        await admin.fill("#f-to", "2026-03-01")
        async with admin.expect_navigation():
            await admin.click("form.filters button[type=submit]")
        await expect(admin.locator("#f-to-error")).to_have_text(
            "La fecha de inicio es posterior a la fecha de fin."
        )
        await expect(admin.locator("#f-actor")).to_have_value("adela")
        await expect(admin.locator("#f-action")).to_have_value("auth.login")
        await expect(admin.locator("#f-from")).to_have_value("2026-03-02")
        await expect(admin.locator("#f-to")).to_have_value("2026-03-01")
        await admin.screenshot(path=str(artifacts / "audit-trail-refused-filter.png"), full_page=True)
    finally:
        await admins.close()
