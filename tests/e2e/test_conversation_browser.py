"""The conversation browser in a real browser against the whole stack (issue 12, 1.2): a client writes
(simulator -> daemon), the operator answers from her desk, the MT reaches the simulator; a master
searches the conversations by the text of that answer, opens the conversation and reads it whole, who
wrote the answer included, then the client's history. Screenshots at 1366x768, 1024x768 and 390x844 go
to artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.stack import PASSWORD, Stack
from tests.e2e.test_client_control import MASTER, add_master, no_horizontal_scroll
from tests.e2e.test_operator_desk import go_online, inject_mo, sign_in, subscriber, wait_for_mt

pytestmark = pytest.mark.e2e

SIZES = ((1366, 768), (1024, 768), (390, 844))


async def master_at(stack: Stack, browser: Browser, width: int, height: int, path: str) -> Page:
    context = await browser.new_context(
        base_url=stack.panel_url,
        viewport={"width": width, "height": height},
        locale="es-ES",
        timezone_id="Europe/Madrid",
    )
    page = await context.new_page()
    await page.goto(path)
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.fill("#username", MASTER)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    return page


async def test_a_master_searches_by_text_and_opens_the_conversation(
    stack: Stack, page: Page, browser: Browser, artifacts: Path
) -> None:
    await add_master(stack)
    msisdn, other = subscriber(), subscriber()
    await sign_in(page)
    await go_online(page)
    await inject_mo(stack, msisdn, "hola, ¿tenéis citas para el sábado?")
    question = page.locator(".queue-item", has_text="citas para el sábado")
    await expect(question).to_be_visible(timeout=5000)
    async with page.expect_navigation():
        await question.locator("a").click()
    answer = "Sí, el sábado a las diez tenemos hueco"
    await page.fill("#reply-text", answer)
    async with page.expect_navigation():
        await page.click("form.reply button[type=submit]")
    await wait_for_mt(stack, msisdn, answer)
    # the desk names who wrote the answer
    await expect(page.locator("#thread .msg.mt .mt-author")).to_have_text(["Olga"])
    await page.screenshot(path=str(artifacts / "desk-author-1366.png"), full_page=True)
    await inject_mo(stack, other, "buenas noches")
    await expect(page.locator(".queue-item", has_text="buenas noches")).to_be_visible(timeout=5000)

    admin = await master_at(stack, browser, 1366, 768, "/admin/conversations")
    try:
        await expect(admin.locator("h1")).to_have_text("Conversaciones")
        await expect(admin.locator("table.conversation-list tbody tr")).to_have_count(2)
        await admin.fill("#f-text", "hueco")
        async with admin.expect_navigation():
            await admin.click("form.conversation-search button[type=submit]")
        rows = admin.locator("table.conversation-list tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("Olga")
        await admin.screenshot(path=str(artifacts / "admin-conversations-1366.png"), full_page=True)
        assert await no_horizontal_scroll(admin)
        async with admin.expect_navigation():
            await rows.first.locator("a").first.click()
        thread = admin.locator("ol.thread")
        await expect(thread.locator(".msg.mo .text")).to_have_text(["hola, ¿tenéis citas para el sábado?"])
        await expect(thread.locator(".msg.mt .text")).to_have_text([answer])
        await expect(thread.locator(".msg.mt .mt-author")).to_have_text(["Olga"])
        await expect(admin.locator(".msisdn")).to_contain_text(msisdn)  # a master may see numbers
        conversation_url = admin.url
        await admin.screenshot(path=str(artifacts / "admin-conversation-1366.png"), full_page=True)
        assert await no_horizontal_scroll(admin)
        async with admin.expect_navigation():
            await admin.click("a.history-link")
        await expect(admin.locator("section.history-group")).to_have_count(1)
        await expect(admin.locator("section.history-group .msg.mt .text")).to_have_text([answer])
        await admin.screenshot(path=str(artifacts / "admin-client-history-1366.png"), full_page=True)
    finally:
        await admin.context.close()

    # The operator closes the conversation; the client comes back: the desk shows the earlier messages.
    page.on("dialog", lambda dialog: dialog.accept())
    first_conversation = page.locator(".queue-item", has_text="citas para el sábado")
    async with page.expect_navigation():
        await first_conversation.locator("a").click()
    async with page.expect_navigation():
        await page.click("form[action$='/close'] button[type=submit]")
    await inject_mo(stack, msisdn, "¿y el domingo?")
    again = page.locator(".queue-item", has_text="el domingo")
    await expect(again).to_be_visible(timeout=5000)
    async with page.expect_navigation():
        await again.locator("a").click()
    earlier = page.locator("details.earlier")
    await expect(earlier.locator(".msg")).to_have_count(2)
    await earlier.locator("summary").click()
    await expect(earlier.locator(".msg.mt .text")).to_have_text([answer])
    await expect(earlier.locator(".msg.mt .mt-author")).to_have_text(["Olga"])
    await expect(page.locator("#thread .msg.mo .text")).to_have_text(["¿y el domingo?"])
    await page.screenshot(path=str(artifacts / "desk-earlier-1366.png"), full_page=True)

    path = conversation_url.split(stack.panel_url, 1)[1]
    for width, height in SIZES[1:]:
        small = await master_at(stack, browser, width, height, "/admin/conversations?text=hueco")
        try:
            await expect(small.locator("table.conversation-list tbody tr")).to_have_count(1)
            await small.screenshot(path=str(artifacts / f"admin-conversations-{width}.png"), full_page=True)
            assert await no_horizontal_scroll(small)
            await small.goto(path)
            await expect(small.locator("ol.thread .msg.mt .mt-author")).to_have_text(["Olga"])
            await small.screenshot(path=str(artifacts / f"admin-conversation-{width}.png"), full_page=True)
            assert await no_horizontal_scroll(small)
        finally:
            await small.context.close()
