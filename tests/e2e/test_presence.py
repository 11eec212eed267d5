"""Presence in real browsers (issue 9, item 7): an operator who closes the browser leaves the desk
once the grace has passed, and the conversations they held go to an operator who is still there,
live on that operator's open page."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from gatewayd.store.accounts import Account, Presence
from gatewayd.store.conversations import Conversation
from tests.e2e.conftest import VIEWPORT
from tests.e2e.stack import OPERATOR, StackOptions, add_operator, desk_plugins, running_stack
from tests.e2e.test_operator_desk import go_online, inject_mo, sign_in, subscriber

pytestmark = pytest.mark.e2e

# A heartbeat a second marks a live desk; a desk unseen for 3 s is gone; the sweep looks every 0.2 s.
OPTIONS = StackOptions(stream_heartbeat=1.0, presence_grace=3.0, sweep_interval=0.2)
SECOND = "otto"


async def test_closing_the_browser_hands_the_conversations_to_an_operator_still_there(
    tmp_path: Path, browser: Browser
) -> None:
    async with running_stack(tmp_path, OPTIONS) as stack:
        await add_operator(stack.sessions, desk_plugins(OPTIONS), 5, username=SECOND)
        olgas = await browser.new_context(base_url=stack.panel_url, viewport=VIEWPORT, locale="es-ES")
        ottos = await browser.new_context(base_url=stack.panel_url, viewport=VIEWPORT, locale="es-ES")
        try:
            olga = await olgas.new_page()
            await sign_in(olga)
            await go_online(olga)
            question = f"¿Me atiende alguien? {uuid.uuid4().hex[:6]}"
            await inject_mo(stack, subscriber(), question)
            await expect(olga.locator(".queue-item", has_text=question)).to_be_visible(timeout=5000)

            otto = await ottos.new_page()
            await sign_in(otto, SECOND)
            await go_online(otto)
            await expect(otto.locator(".queue-item", has_text=question)).to_have_count(0)

            await olgas.close()  # the browser closes: no sign-out, the stream just ends
            await expect(otto.locator(".queue-item", has_text=question)).to_be_visible(timeout=15_000)
            async with stack.sessions() as session:
                holders = set((await session.execute(select(Conversation.assigned_operator_id))).scalars())
                accounts = {
                    account.username: account
                    for account in (await session.execute(select(Account))).scalars()
                }
            assert holders == {accounts[SECOND].id}
            assert accounts[OPERATOR].presence is Presence.OFFLINE
        finally:
            await ottos.close()
            await olgas.close()
