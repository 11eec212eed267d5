"""Issue 10's acceptance for the manual's message variables: an operator replies with all seven in a
real browser, sees what the client will receive (their number masked: an operator has no MSISDN
permission), and the simulator receives the MT with every variable rendered, times in the service's
zone."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from gatewayd.store.messages import MOMessage
from smpp.text import draft_info
from tests.e2e.stack import CARRIER, SERVICE_ZONE, SHORT_CODE, Stack
from tests.e2e.test_operator_desk import go_online, inject_mo, sign_in, simulator_messages, subscriber
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

TEMPLATE = "Dijiste '{mensaje}' al {host} ({operador}) desde {telefono} a las {hora} del {fecha}, {pais}"


async def test_a_reply_with_the_seven_variables_reaches_the_phone_rendered(
    stack: Stack, page: Page, artifacts: Path
) -> None:
    msisdn = subscriber()
    question = f"tarot {uuid.uuid4().hex[:6]}"
    await sign_in(page)
    await go_online(page)
    await inject_mo(stack, msisdn, question)
    item = page.locator(".queue-item", has_text=question)
    await expect(item).to_be_visible()
    async with page.expect_navigation():
        await item.locator("a").click()

    async with stack.sessions() as session:
        mo = (await session.execute(select(MOMessage).where(MOMessage.text == question))).scalar_one()
    local = mo.received_at.astimezone(ZoneInfo(SERVICE_ZONE))
    hora, fecha = local.strftime("%H:%M:%S"), local.strftime("%d/%m/%Y")
    rendered = f"Dijiste '{question}' al {SHORT_CODE} ({CARRIER}) desde {msisdn} a las {hora} del {fecha}, ES"

    # The desk previews what the client will receive and counts that text; the operator, without the
    # MSISDN permission, sees the number masked.
    await page.fill("#reply-text", TEMPLATE)
    masked = rendered.replace(msisdn, "\u2022" * len(msisdn))
    await expect(page.locator("#draft-preview-text")).to_have_text(masked)
    await expect(page.locator("#draft-preview")).to_be_visible()
    info = draft_info(rendered, max_segments=10)
    assert info.units_left != draft_info(TEMPLATE, max_segments=10).units_left
    await expect(page.locator("#draft-counter")).to_contain_text(str(info.units_left))
    assert msisdn not in await page.content()
    await page.screenshot(path=str(artifacts / "desk-variables.png"), full_page=True)

    async with page.expect_navigation():
        await page.click("form.reply button[type=submit]")
    received: list[dict[str, Any]] = []

    async def carrier_got_it() -> bool:  # the MT as the simulator (the phone's carrier) received it
        received[:] = await simulator_messages(stack, msisdn)
        return bool(received)

    await eventually(carrier_got_it, what="the simulator received the reply")
    (mt,) = received
    text = mt["text"]
    for value in (question, SHORT_CODE, CARRIER, msisdn, hora, fecha, "ES"):
        assert value in text, (value, text)
    assert text == rendered and "{" not in text
    # The thread shows the reply as sent, the number still masked for this operator.
    await expect(page.locator("#thread .msg.mt .text")).to_have_text([masked])
    assert msisdn not in await page.content()
