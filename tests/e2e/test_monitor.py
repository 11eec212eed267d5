"""The live monitor in real browsers against the whole stack (issue 12, 1.1).

Two operators are online at their desks and an admin watches /admin/monitor. An MO injected at the
simulator appears on the monitor as "assigned, unanswered" without a reload; the holder answers it
and the monitor's row turns "answered", live, and its last MT "delivered" when the receipt comes. The
admin then reassigns the conversation to the other operator: it leaves the first desk and shows on
the second one, neither desk reloading. Screenshots of the monitor at 1366 × 768, 1024 × 768 and
390 × 844.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, ViewportSize, expect

from gatewayd.store.accounts import Role
from tests.e2e.stack import Stack, add_operator, desk_plugins
from tests.e2e.stack import StackOptions as Options
from tests.e2e.test_callcentre_admin import no_horizontal_scroll, sign_in_admin
from tests.e2e.test_operator_desk import go_online, inject_mo, sign_in

pytestmark = pytest.mark.e2e

SECOND = "otto"
LIVE_MS = 5_000
MARKER = "window.__monitorMarker"
SIZES: dict[str, ViewportSize] = {
    "1366": {"width": 1366, "height": 768},
    "1024": {"width": 1024, "height": 768},
    "390": {"width": 390, "height": 844},
}


@pytest.fixture
async def contexts(stack: Stack, browser: Browser) -> AsyncIterator[list[BrowserContext]]:
    made: list[BrowserContext] = []
    try:
        for _ in range(3):
            made.append(
                await browser.new_context(
                    base_url=stack.panel_url,
                    viewport=SIZES["1366"],
                    locale="es-ES",
                    timezone_id="Europe/Madrid",
                )
            )
        yield made
    finally:
        for context in made:
            await context.close()


async def test_the_monitor_colours_change_live_and_a_reassignment_moves_the_conversation(
    stack: Stack, contexts: list[BrowserContext], artifacts: Path
) -> None:
    plugins = desk_plugins(Options())
    await add_operator(stack.sessions, plugins, 5, username="ana", role=Role.ADMIN)
    await add_operator(stack.sessions, plugins, 5, username=SECOND)
    olga, otto, admin = [await context.new_page() for context in contexts]
    await sign_in(olga)
    await go_online(olga)
    await sign_in(otto, SECOND)
    await go_online(otto)

    await sign_in_admin(admin, "/admin/monitor")
    await expect(admin.locator("#monitor")).to_have_attribute("data-live", "1")
    await expect(admin.locator("#operators .presence-online")).to_have_count(2)
    for page in (olga, otto, admin):
        await page.evaluate(f"{MARKER} = 'no reload'")

    question = f"¿Hay alguien? {uuid.uuid4().hex[:6]}"
    await inject_mo(stack, f"34600{uuid.uuid4().int % 1_000_000:06d}", question)
    row = admin.locator("#monitor-rows tr")
    await expect(row).to_have_count(1, timeout=LIVE_MS)
    await expect(row).to_have_attribute("data-state", "assigned")
    await expect(row.locator(".badge")).to_have_text("Asignada, sin responder")
    ticking = re.compile(r"^00:0[1-9]$")  # past 00:00: the elapsed time ticks in the page
    await expect(row.locator(".elapsed time")).to_have_text(ticking, timeout=LIVE_MS)
    await expect(admin.locator("#count-assigned")).to_have_text("1")

    # whoever holds it answers from their desk: the monitor's row turns "answered" live
    await expect(row.locator(".operator")).to_have_text(re.compile("^(Olga|Otto)$"))
    holder_name = await row.locator(".operator").inner_text()
    holder, other = (olga, otto) if holder_name == "Olga" else (otto, olga)
    other_name = "Otto" if holder is olga else "Olga"
    await expect(holder.locator(".queue-item", has_text=question)).to_be_visible(timeout=LIVE_MS)
    async with holder.expect_navigation():
        await holder.locator(".queue-item", has_text=question).locator("a").click()
    await holder.fill("#reply-text", "Sí, dime.")
    async with holder.expect_navigation():
        await holder.click("form.reply button[type=submit]")
    await expect(row).to_have_attribute("data-state", "answered", timeout=LIVE_MS)
    await expect(row).to_have_class("state-answered")
    await expect(row.locator(".badge")).to_have_text("Respondida")
    await expect(row.locator(".mt-text")).to_have_text("Sí, dime.")
    # the receipt (DELIVRD a second later) names the MT only: the row's delivery status follows
    await expect(row.locator(".mt-status")).to_have_text("Entregado", timeout=10_000)
    assert await admin.evaluate(MARKER) == "no reload"
    await holder.goto("/desk")  # back to the queue; from here on, the desk does not reload
    await holder.evaluate(f"{MARKER} = 'no reload'")
    await expect(holder.locator(".queue-item", has_text=question)).to_be_visible()

    for name, size in SIZES.items():
        await admin.set_viewport_size(size)
        if name != "390":
            await no_horizontal_scroll(admin)
        await admin.screenshot(path=str(artifacts / f"monitor-{name}.png"), full_page=True)
    await admin.set_viewport_size(SIZES["1366"])

    # reassigned to the other operator: it leaves the holder's desk and shows on the other's, live
    await row.locator("input[type=checkbox]").check()
    await admin.select_option("#reassign-to", label=f"{other_name} (0/5)")
    async with admin.expect_navigation():
        await admin.click("#reassign button[type=submit]")
    await expect(admin.locator(".flash.ok")).to_contain_text("Conversaciones reasignadas: 1")
    await expect(admin.locator("#monitor-rows tr .operator")).to_have_text(other_name)
    await expect(holder.locator(".queue-item", has_text=question)).to_have_count(0, timeout=LIVE_MS)
    await expect(other.locator(".queue-item", has_text=question)).to_be_visible(timeout=LIVE_MS)
    assert await holder.evaluate(MARKER) == "no reload"
    assert await other.evaluate(MARKER) == "no reload"
    await admin.screenshot(path=str(artifacts / "monitor-reassigned-1366.png"), full_page=True)
    await other.screenshot(path=str(artifacts / "monitor-reassigned-desk-1366.png"))
