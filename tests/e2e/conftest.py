"""Browser tests: Debian's headless Chromium driven by Playwright (async API) against the whole stack.

``playwright install`` is never needed: the system browser at ``/usr/bin/chromium`` is launched
directly. Each test gets its own stack (simulator, daemon, panel on ephemeral ports, SQLite under
``tmp_path``), its own browser and a fresh browser context. Screenshots go to ``artifacts/`` at the
repository root (git-ignored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from tests.e2e.stack import Stack, running_stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A laptop screen: what the desk is designed for.
VIEWPORT: ViewportSize = {"width": 1366, "height": 800}
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(stack: Stack, browser: Browser) -> AsyncIterator[Page]:
    """A fresh context (no cookies, no cache) on the stack's panel; closed before the stack stops, so
    no event stream keeps the panel's server waiting."""
    context = await browser.new_context(
        base_url=stack.panel_url, viewport=VIEWPORT, locale="es-ES", timezone_id="Europe/Madrid"
    )
    try:
        yield await context.new_page()
    finally:
        await context.close()
