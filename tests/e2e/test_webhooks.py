"""Issue 14's webhooks in a real browser: an admin makes a subscription (its secret shown once), an MO
from the simulator fails at the receiver until it is dead, the admin redelivers it from the panel and the
receiver gets it, signed with that secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from gatewayd.store.accounts import Role
from gatewayd.store.webhooks import DeliveryState, WebhookDelivery
from tests.e2e.conftest import VIEWPORT
from tests.e2e.stack import (
    CARRIER,
    PASSWORD,
    SHORT_CODE,
    Stack,
    StackOptions,
    add_operator,
    desk_plugins,
    running_stack,
)
from tests.integration.gatewayd.webhook_receiver import Receiver
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

ADMIN = "ana"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver(answer=lambda _: 500)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def sign_in_admin(page: Page) -> None:
    await page.goto("/admin/webhooks")
    await page.fill("#username", ADMIN)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Webhooks")


async def test_a_dead_delivery_is_redelivered_from_the_panel(
    tmp_path: Path, browser: Browser, artifacts: Path, receiver: Receiver
) -> None:
    options = StackOptions(webhooks_allow=(f"127.0.0.1:{receiver.port}",))
    async with running_stack(tmp_path, options) as stack:
        await run(stack, options, browser, artifacts, receiver)


async def deliveries(stack: Stack) -> list[WebhookDelivery]:
    async with stack.sessions() as session:
        return list((await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))).all())


async def run(
    stack: Stack, options: StackOptions, browser: Browser, artifacts: Path, receiver: Receiver
) -> None:
    await add_operator(stack.sessions, desk_plugins(options), 5, username=ADMIN, role=Role.ADMIN)
    context = await browser.new_context(
        base_url=stack.panel_url, viewport=VIEWPORT, locale="es-ES", timezone_id="Europe/Madrid"
    )
    try:
        page = await context.new_page()
        await sign_in_admin(page)
        await page.fill("#name", "crm")
        await page.fill("#url", receiver.url)
        await page.check("input[name=events][value='client.opt_out']")
        async with page.expect_navigation():
            await page.click("form[action='/admin/webhooks'] button[type=submit]")
        await expect(page.locator(".flash.ok")).to_have_text("Se creó la suscripción crm.")
        receiver.secret = await page.locator(".secret-value").input_value()
        assert len(receiver.secret) == 64
        await page.screenshot(path=str(artifacts / "webhooks-created-1366.png"), full_page=True)

        stack.simulator.inject_mo(CARRIER, "+34600999111", SHORT_CODE, "hola, ¿me llamáis?")

        async def dead() -> bool:
            return [d.state for d in await deliveries(stack)] == [DeliveryState.DEAD]

        await eventually(dead)
        assert len(receiver.received) == 2 and not receiver.acknowledged  # two tries, both 500
        async with page.expect_navigation():
            await page.click("table.webhooks a")
        await expect(page.locator("strong.dead")).to_have_text("1")
        await expect(page.locator("tr[data-state=dead]")).to_contain_text("HTTP 500")
        receiver.answer = lambda _: 204
        async with page.expect_navigation():
            await page.click("text=Reenviar todos los descartados")
        await expect(page.locator(".flash.ok")).to_have_text(
            "Los envíos fallidos definitivamente vuelven a la cola."
        )

        async def delivered() -> bool:
            return [d.state for d in await deliveries(stack)] == [DeliveryState.DELIVERED]

        await eventually(delivered)
        (item,) = receiver.acknowledged
        assert item.signed and item.payload["text"] == "hola, ¿me llamáis?" and "msisdn" not in item.payload
        await page.reload()
        await expect(page.locator("strong.delivered")).to_have_text("1")
        await expect(page.locator("tr[data-state=delivered]")).to_contain_text("HTTP 204")
        await page.screenshot(path=str(artifacts / "webhooks-1366.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(artifacts / "webhooks-390.png"), full_page=True)
    finally:
        await context.close()
