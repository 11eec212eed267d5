"""What the panel's lifespan owns and every request can reach: engine, bus, registry, templates, and
the state each plugin's lifespan keeps for this panel."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from starlette.templating import Jinja2Templates
from starlette.types import Scope

from gatewayd.bus.base import EventBus
from gatewayd.store.store import Store
from panel.auth.passwords import PasswordHashing, PasswordPolicy
from panel.auth.permissions import PermissionRegistry
from panel.menu import MenuItem
from panel.settings import PanelSettings
from translations import Catalogue

STATE_KEY = "panel"

__all__ = [
    "STATE_KEY",
    "EventBus",
    "PanelRuntime",
    "PanelStateMissing",
    "StopSignal",
    "runtime",
    "runtime_from_scope",
]


class StopSignal:
    """Raised once when the panel's server begins to stop. Long-lived responses (event streams)
    register how to end themselves, so they close at once instead of holding the server's graceful
    shutdown until its timeout."""

    def __init__(self) -> None:
        self._enders: set[Callable[[], None]] = set()
        self.stopping = False

    def begin(self) -> None:
        """Ends every registered response; later registrations end immediately."""
        self.stopping = True
        for end in list(self._enders):
            end()
        self._enders.clear()

    @contextmanager
    def ending(self, end: Callable[[], None]) -> Iterator[None]:
        """Calls ``end`` when the panel stops while the block runs (at once if it already stops)."""
        if self.stopping:
            end()
        self._enders.add(end)
        try:
            yield
        finally:
            self._enders.discard(end)


@dataclass(frozen=True, slots=True)
class PanelRuntime:
    settings: PanelSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Read-only units of work: on SQLite they never take the write lock the daemon's commits need.
    readers: async_sessionmaker[AsyncSession]
    # One read statement as a unit of work (the API key's look-up): no transaction on PostgreSQL.
    lookups: async_sessionmaker[AsyncSession]
    # The engine's statement sets in its dialect (the outbox's MT inserts), chosen once here.
    store: Store
    bus: EventBus | None
    permissions: PermissionRegistry
    passwords: PasswordPolicy
    # Hashing for requests: off the event loop, a few at a time (see `PasswordHashing`).
    hashing: PasswordHashing
    catalog: Catalogue
    templates: Jinja2Templates
    menu: tuple[MenuItem, ...]
    stopping: StopSignal = field(default_factory=StopSignal)
    # plugin name -> what its lifespan yielded; read through `panel.types.PluginState`.
    plugin_states: dict[str, object] = field(default_factory=dict)


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
