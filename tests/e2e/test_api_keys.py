"""Issue 14's API, end to end: an admin makes a key on the "API keys" page in a real browser (shown
once), an integrator sends an MT with it over HTTP, the simulator's carrier receives it and the API
then shows its part and receipt; the admin revokes the key and the next call is refused."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page, expect

from gatewayd.store.accounts import Role
from tests.e2e.conftest import VIEWPORT
from tests.e2e.stack import PASSWORD, Stack, StackOptions, add_operator, desk_plugins
from tests.e2e.test_operator_desk import subscriber, wait_for_mt
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

ADMIN = "ada"
TOKEN = re.compile(r"ek_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


async def sign_in_admin(page: Page) -> None:
    await page.goto("/admin/api-keys")
    await page.fill("#username", ADMIN)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Claves de API")


async def delivered(api: httpx.AsyncClient, mt_id: int) -> dict[str, Any]:
    """The MT as the API shows it once its receipt is in."""
    body: dict[str, Any] = {}

    async def receipt_in() -> bool:
        body.update((await api.get(f"/api/v1/messages/{mt_id}")).json())
        return body["status"] == "delivered" and bool(body["parts"]) and bool(body["parts"][0]["receipt_at"])

    await eventually(receipt_in, what=f"MT {mt_id} delivered with its receipt")
    return body


async def test_a_key_made_in_the_panel_sends_an_mt_to_the_carrier_until_revoked(
    stack: Stack, browser: Browser, artifacts: Path
) -> None:
    await add_operator(stack.sessions, desk_plugins(StackOptions()), 5, username=ADMIN, role=Role.ADMIN)
    context = await browser.new_context(
        base_url=stack.panel_url, viewport=VIEWPORT, locale="es-ES", timezone_id="Europe/Madrid"
    )
    try:
        page = await context.new_page()
        await sign_in_admin(page)
        await page.fill("#key-name", "CRM de ventas")
        await page.check("input[name=scope][value=send]")
        await page.check("input[name=scope][value=read]")
        await page.fill("#key-allow", "127.0.0.0/8")
        await page.fill("#key-rate", "20")
        async with page.expect_navigation():
            await page.click("form.key-form button[type=submit]")
        token = await page.locator("#new-token").input_value()
        assert TOKEN.fullmatch(token), token
        row = page.locator("table.keys tr", has_text="CRM de ventas")
        await expect(row).to_contain_text("read, send")
        await expect(row).to_contain_text("127.0.0.0/8")
        await page.screenshot(path=str(artifacts / "api-keys-made.png"), full_page=True)

        # Shown once: the list, reloaded, holds no secret.
        await page.goto("/admin/api-keys")
        assert token.split("_", 2)[2] not in await page.content()

        # The integrator sends with it; the carrier gets the MT, the API shows its receipt.
        msisdn = subscriber()
        text = f"Su pedido {uuid.uuid4().hex[:6]} ha salido"
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=stack.panel_url, headers=headers) as api:
            sent = await api.post("/api/v1/messages", json={"to": "+" + msisdn, "text": text})
            assert sent.status_code == 201, sent.text
            await wait_for_mt(stack, msisdn, text)
            body = await delivered(api, sent.json()["id"])
            assert body["to"] is None  # no msisdn scope
            assert body["parts"][0]["receipt_state"] == "DELIVRD"

            # The admin revokes it, confirming the question the page asks; the very next call is refused.
            await page.goto("/admin/api-keys")
            asked: list[str] = []

            async def confirm(dialog: Dialog) -> None:
                asked.append(dialog.message)
                await dialog.accept()

            page.once("dialog", confirm)
            async with page.expect_navigation():
                await row.locator("button.danger").click()
            assert len(asked) == 1 and "no se puede deshacer" in asked[0]
            await expect(page.locator(".flash.ok")).to_contain_text("revocado")
            await expect(row).to_have_class(re.compile("revoked"))
            await page.screenshot(path=str(artifacts / "api-keys-revoked.png"), full_page=True)
            refused = await api.post("/api/v1/messages", json={"to": "+" + msisdn, "text": text})
            assert refused.status_code == 401
            assert refused.headers["content-type"].startswith("application/problem+json")
    finally:
        await context.close()
