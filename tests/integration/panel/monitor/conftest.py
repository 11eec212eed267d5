"""Live monitor fixtures: the panel with the desk and the monitor on a MemoryBus, on SQLite and on
PostgreSQL; an admin, a master, a master without the monitor, two operators (limit 2 each); a
service "chat" on the desk's short code with a 60 s overdue threshold."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from gatewayd.bus.base import EventBus
from gatewayd.bus.memory import MemoryBus
from gatewayd.config import ServiceConfig
from gatewayd.outbox import OutboxSettings
from gatewayd.store.accounts import Role
from panel.app import create_app
from panel.auth.permissions import PANEL_ACCESS
from panel.settings import PanelSettings
from panel.types import Plugin
from plugins import auth, home, monitor
from plugins.desk import DeskSettings, build_plugin

from ..conftest import FAST_ARGON2, PASSWORD, PanelClient, serving
from ..desk.conftest import SHORT_CODE, desk_settings
from ..seeding import create_store_with_accounts

# username -> (role, permissions: None for the role's defaults)
MONITOR_ACCOUNTS: dict[str, tuple[Role, list[str] | None]] = {
    "ana": (Role.ADMIN, None),
    "marta": (Role.MASTER, None),
    "nico": (Role.MASTER, [PANEL_ACCESS]),  # the control panel, without the monitor
    "olga": (Role.OPERATOR, None),
    "otto": (Role.OPERATOR, None),
}
OPERATOR_LIMIT = 2


def plugins(desk: DeskSettings) -> list[Plugin]:
    return [auth.plugin, home.plugin, build_plugin(desk), monitor.plugin]


def outbox_settings() -> OutboxSettings:
    service = ServiceConfig(name="chat", short_code=SHORT_CODE, timezone="Europe/Madrid", overdue_after=60)
    return OutboxSettings(services=(service,))


async def prepare_monitor_store(url: str) -> None:
    await create_store_with_accounts(
        url,
        [auth.plugin, home.plugin, build_plugin(), monitor.plugin],
        MONITOR_ACCOUNTS,
        password=PASSWORD,
        argon2=FAST_ARGON2,
        english={"ana"},
        limit=OPERATOR_LIMIT,
    )


def monitor_settings(url: str) -> PanelSettings:
    return PanelSettings(database_url=url, secure_cookies=False, argon2=FAST_ARGON2, outbox=outbox_settings())


def monitor_app(settings: PanelSettings, bus: EventBus, desk: DeskSettings | None = None) -> Starlette:
    return create_app(settings, bus=bus, plugins=plugins(desk or desk_settings()))


@pytest.fixture(params=["sqlite", "postgresql"])
def monitor_database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture
async def monitor_client(monitor_database_url: str) -> AsyncIterator[PanelClient]:
    await prepare_monitor_store(monitor_database_url)
    async with (
        MemoryBus() as bus,
        serving(monitor_app(monitor_settings(monitor_database_url), bus)) as client,
    ):
        yield client
