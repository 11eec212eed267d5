"""Client control fixtures: the panel with the desk and the client control on a MemoryBus, on SQLite
and on PostgreSQL; an admin, a master, a master without the power to see numbers, two operators."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from gatewayd.bus.base import EventBus
from gatewayd.bus.memory import MemoryBus
from gatewayd.store import models
from gatewayd.store.accounts import Role
from gatewayd.store.engine import create_engine, session_factory
from panel.app import create_app
from panel.auth.accounts import create_account
from panel.auth.passwords import PasswordPolicy
from panel.auth.permissions import PANEL_ACCESS, PermissionRegistry
from panel.settings import PanelSettings
from panel.types import Plugin
from plugins import auth, clients, home
from plugins.clients.permissions import CLIENTS_CONTROL
from plugins.desk import DeskSettings, build_plugin

from ..conftest import FAST_ARGON2, PASSWORD, PanelClient, serving
from ..desk.conftest import desk_settings

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
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(models.metadata.create_all)
        registry = PermissionRegistry.build([auth.plugin, home.plugin, build_plugin(), clients.plugin])
        async with session_factory(engine)() as session, session.begin():
            for username, (role, permissions) in CLIENT_ACCOUNTS.items():
                await create_account(
                    session,
                    PasswordPolicy(FAST_ARGON2),
                    registry,
                    username=username,
                    password=PASSWORD,
                    role=role,
                    display_name=username.title(),
                    language="en" if username == "otto" else "es",
                    permissions=permissions,
                )
    finally:
        await engine.dispose()


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
