"""Client control fixtures: the panel with the desk and the client control on a MemoryBus, on SQLite
and on PostgreSQL; an admin, a master, a master without the power to see numbers, two operators."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from gatewayd.bus.base import EventBus
from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Role
from panel.app import create_app
from panel.auth.permissions import PANEL_ACCESS
from panel.settings import PanelSettings
from panel.types import Plugin
from plugins import auth, clients, home
from plugins.clients.permissions import CLIENTS_CONTROL
from plugins.desk import DeskSettings, build_plugin

from ..conftest import FAST_ARGON2, PASSWORD, PanelClient, serving
from ..desk.conftest import desk_settings
from ..seeding import create_store_with_accounts

# username -> (role, permissions: None for the role's defaults)
CLIENT_ACCOUNTS: dict[str, tuple[Role, list[str] | None]] = {
    "ana": (Role.ADMIN, None),
    "marta": (Role.MASTER, None),
    "mario": (Role.MASTER, [PANEL_ACCESS, CLIENTS_CONTROL]),  # may ban, may not see numbers
    "nico": (Role.MASTER, [PANEL_ACCESS]),  # the control panel, without client control
    "olga": (Role.OPERATOR, None),
    "otto": (Role.OPERATOR, None),
}


def plugins(desk: DeskSettings) -> list[Plugin]:
    return [auth.plugin, home.plugin, build_plugin(desk), clients.plugin]


async def prepare_clients_store(url: str) -> None:
    await create_store_with_accounts(
        url,
        [auth.plugin, home.plugin, build_plugin(), clients.plugin],
        CLIENT_ACCOUNTS,
        password=PASSWORD,
        argon2=FAST_ARGON2,
        english={"otto"},
    )


def clients_app(settings: PanelSettings, bus: EventBus, desk: DeskSettings | None = None) -> Starlette:
    return create_app(settings, bus=bus, plugins=plugins(desk or desk_settings()))


@pytest.fixture(params=["sqlite", "postgresql"])
def clients_database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture
async def clients_client(clients_database_url: str) -> AsyncIterator[PanelClient]:
    settings = PanelSettings(database_url=clients_database_url, secure_cookies=False, argon2=FAST_ARGON2)
    await prepare_clients_store(clients_database_url)
    async with MemoryBus() as bus, serving(clients_app(settings, bus)) as client:
        yield client
