"""Conversation browser fixtures: the panel with the desk, the client control and the conversation browser
on a MemoryBus, on SQLite and on PostgreSQL; an admin, a master, a master who may read others' answers
but not see numbers, a master without that power, two operators."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Role
from panel.app import create_app
from panel.auth.permissions import PANEL_ACCESS
from panel.settings import PanelSettings
from panel.types import Plugin
from plugins import auth, clients, conversations, home
from plugins.desk import build_plugin
from plugins.desk.permissions import OPERATOR_SEE_OTHERS

from ..conftest import FAST_ARGON2, PASSWORD, PanelClient, serving
from ..desk.conftest import desk_settings
from ..seeding import create_store_with_accounts

# username -> (role, permissions: None for the role's defaults)
BROWSER_ACCOUNTS: dict[str, tuple[Role, list[str] | None]] = {
    "ana": (Role.ADMIN, None),
    "marta": (Role.MASTER, None),
    "mario": (Role.MASTER, [PANEL_ACCESS, OPERATOR_SEE_OTHERS]),  # reads others' answers, no numbers
    "nico": (Role.MASTER, [PANEL_ACCESS]),  # the control panel, without reading others' answers
    "olga": (Role.OPERATOR, None),
    "otto": (Role.OPERATOR, None),
}


def plugins() -> list[Plugin]:
    return [auth.plugin, home.plugin, build_plugin(desk_settings()), clients.plugin, conversations.plugin]


async def prepare_browser_store(url: str) -> None:
    await create_store_with_accounts(
        url, plugins(), BROWSER_ACCOUNTS, password=PASSWORD, argon2=FAST_ARGON2, english={"otto"}
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def browser_database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture
async def browser_client(browser_database_url: str) -> AsyncIterator[PanelClient]:
    settings = PanelSettings(database_url=browser_database_url, secure_cookies=False, argon2=FAST_ARGON2)
    await prepare_browser_store(browser_database_url)
    async with MemoryBus() as bus, serving(create_app(settings, bus=bus, plugins=plugins())) as client:
        yield client
