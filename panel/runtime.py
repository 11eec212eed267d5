"""What the panel's lifespan owns and every request can reach: engine, bus, registry, templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from starlette.types import Scope

from gatewayd.bus.base import EventBus
from panel.settings import PanelSettings
from plugins.contract import MenuItem, Plugin

if TYPE_CHECKING:
    from starlette.templating import Jinja2Templates

    from panel.auth.passwords import PasswordPolicy
    from panel.auth.permissions import PermissionRegistry
    from panel.i18n import Catalog

STATE_KEY = "panel"

__all__ = ["STATE_KEY", "EventBus", "PanelRuntime", "PanelStateMissing", "runtime", "runtime_from_scope"]


@dataclass(frozen=True, slots=True)
class PanelRuntime:
    settings: PanelSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    bus: EventBus | None
    plugins: tuple[Plugin, ...]
    permissions: PermissionRegistry
    passwords: PasswordPolicy
    catalog: Catalog
    templates: Jinja2Templates
    menu: tuple[MenuItem, ...]


class PanelStateMissing(RuntimeError):
    pass


def runtime_from_scope(scope: Scope) -> PanelRuntime:
    state = scope.get("state") or {}
    found = state.get(STATE_KEY)
    if not isinstance(found, PanelRuntime):
        raise PanelStateMissing("the panel's lifespan has not run: serve the app through its lifespan")
    return found


def runtime(connection: HTTPConnection) -> PanelRuntime:
    """The typed state yielded by the lifespan."""
    return runtime_from_scope(connection.scope)
