"""The desk of a billed service in a real browser (issue 14): the client's first MO brings the price
notice and the reply box says it waits for acceptance; the client's "SI" reopens it on the open page;
the operator's reply crosses the confirm step, and the desk shows the client paused with the month's
spend. Screenshot: artifacts/desk-premium-paused.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.conftest import VIEWPORT
from tests.e2e.stack import Stack, StackOptions, running_stack
from tests.e2e.test_operator_desk import go_online, inject_mo, sign_in, subscriber, wait_for_mt

pytestmark = pytest.mark.e2e

BILLING = """
[services.billing]
price_mt = 1.50
currency = "EUR"
provider = "Chat Acme SL"
billed = "mt"
notice = "Chat {host}: {precio} {moneda}/mensaje, de {proveedor}. Responde SI para aceptar."
acceptance = true
steps = [{at = 3, action = "confirm"}, {at = 30, action = "cap"}]
"""


@pytest.fixture
async def billed_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path, StackOptions(service_extra=BILLING)) as running:
        yield running


@pytest.fixture
async def billed_page(billed_stack: Stack, browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=billed_stack.panel_url, viewport=VIEWPORT, locale="es-ES", timezone_id="Europe/Madrid"
    )
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def test_the_desk_shows_a_paused_client(
    billed_stack: Stack, billed_page: Page, artifacts: Path
) -> None:
    page, stack = billed_page, billed_stack
    msisdn = subscriber()
    await sign_in(page)
    await go_online(page)
    await inject_mo(stack, msisdn, "Hola, ¿hay alguien?")
    await wait_for_mt(
        stack, msisdn, "Chat 997745: 1.50 EUR/mensaje, de Chat Acme SL. Responde SI para aceptar."
    )
    item = page.locator(".queue-item", has_text="Hola, ¿hay alguien?")
    async with page.expect_navigation():
        await item.locator("a").click()
    # the notice is in the thread the operator reads, before anything they could write
    await expect(page.locator("#thread .msg.mt .text")).to_have_text(
        ["Chat 997745: 1.50 EUR/mensaje, de Chat Acme SL. Responde SI para aceptar."]
    )
    # the gateway's own message says "Automático" once (its kind), with no author beside it
    await expect(page.locator("#thread .msg.mt .mt-kind")).to_have_text(["Automático"])
    await expect(page.locator("#thread .msg.mt .mt-author")).to_have_count(0)
    held = page.locator("#reply-held")
    await expect(held.locator("textarea")).to_be_disabled()
    await expect(held).to_contain_text("aún no ha aceptado el aviso de precio")
    await expect(page.locator(".premium-state")).to_have_text("Esperando la aceptación del aviso de precio")

    # the client's "Sí" arrives on the open page, which reads the state again: the box opens
    async with page.expect_navigation():
        await inject_mo(stack, msisdn, "Sí")
    await expect(page.locator("form.reply textarea#reply-text")).to_be_enabled()
    await expect(page.locator(".premium-state")).to_have_text("Normal")

    for text in ("Hola, soy Olga", "¿Qué tal?"):
        await page.fill("#reply-text", text)
        async with page.expect_navigation():
            await page.click("form.reply button[type=submit]")
        await wait_for_mt(stack, msisdn, text)
    # 3,00 €: the confirm step was crossed, the client is asked to confirm and the chat pauses
    await expect(page.locator(".premium-spend")).to_have_text("3,00\xa0€")
    await expect(page.locator(".premium-state")).to_have_text("Pausado hasta que el cliente confirme")
    await expect(page.locator("#reply-held")).to_contain_text(
        "en pausa hasta que el cliente confirme el gasto"
    )
    await expect(page.locator("#reply-held textarea")).to_be_disabled()
    await page.locator("#reply-held").scroll_into_view_if_needed()
    await page.screenshot(path=str(artifacts / "desk-premium-paused.png"), full_page=True)
