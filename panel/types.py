"""The plugin contract: what a panel plugin gives the panel, and what the panel gives it back.

A plugin is one frozen `Plugin` object, published under the entry-point group `echat.plugins`
(`panel.loader`). The built-in panels (`plugins/`) register through the very same group and the same
contract. A plugin author imports from here::

    from panel.types import MenuItem, Mode, PanelRuntime, PermissionSpec, Plugin, PluginState
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

from gatewayd.bus.events import Event
from panel.auth.permissions import PermissionSpec
from panel.errors import PluginError
from panel.menu import MenuItem, Mode
from panel.runtime import PanelRuntime, runtime

__all__ = [
    "Event",
    "EventHandler",
    "MenuItem",
    "Mode",
    "PanelRuntime",
    "PermissionSpec",
    "Plugin",
    "PluginError",
    "PluginLifespan",
    "PluginState",
    "PluginStateMissing",
]

PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
PERMISSION_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$")

# Called for each event whose topic matches the pattern; an exception is logged, the subscription goes on.
EventHandler = Callable[[Event, PanelRuntime], Awaitable[None]]
# Entered when the panel starts (plugins in name order, the engine and the bus already open), left when
# it stops (reverse order, before they close). What it yields is the plugin's state for that panel.
PluginLifespan = Callable[[PanelRuntime], AbstractAsyncContextManager[object]]

StateT = TypeVar("StateT")


class PluginStateMissing(RuntimeError):
    pass


class PluginState(Generic[StateT]):
    """Typed access to what a plugin's lifespan yielded for the panel that serves a request (like
    aiohttp's ``AppKey``): a plugin keeps its services here rather than in module globals, so two
    panels in one process (the daemon's and a test's) never share them::

        NOTES = PluginState("notes", Notes)
        ...
        notes = NOTES.of(request)  # a Notes, or PluginStateMissing
    """

    __slots__ = ("kind", "plugin")

    def __init__(self, plugin: str, kind: type[StateT]) -> None:
        self.plugin = plugin
        self.kind = kind

    def of(self, source: HTTPConnection | PanelRuntime) -> StateT:
        state = source if isinstance(source, PanelRuntime) else runtime(source)
        found = state.plugin_states.get(self.plugin)
        if not isinstance(found, self.kind):
            raise PluginStateMissing(
                f"plugin {self.plugin!r} holds no {self.kind.__name__} in this panel: is it loaded and"
                " does its lifespan yield one?"
            )
        return found


def _frozen_mapping(value: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True)
class Plugin:
    """One panel plugin. Every route must declare its access (see `panel.access`)."""

    name: str
    title: str  # English, marked for the catalogue: N_("Notes")
    routes: Sequence[BaseRoute] = ()
    menu_items: Sequence[MenuItem] = ()
    templates: Path | None = None
    static: Path | None = None
    permissions: Sequence[PermissionSpec] = ()
    event_handlers: Mapping[str, EventHandler] = field(default_factory=dict)
    lifespan: PluginLifespan | None = None
    # The plugin's gettext catalogues: ``<locale>/<language>/LC_MESSAGES/<name>.po`` for every language
    # of the panel but English (the texts in its code and templates are English); see docs/I18N.md.
    locale: Path | None = None
    # Paths whose POST form may carry one uploaded file (at most the settings' part size); every
    # other form of the panel takes none.
    uploads: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not PLUGIN_NAME.match(self.name):
            raise PluginError(str(self.name), "name must match [a-z][a-z0-9_]{0,31}")
        object.__setattr__(self, "routes", tuple(self.routes))
        object.__setattr__(self, "menu_items", tuple(self.menu_items))
        object.__setattr__(self, "permissions", tuple(self.permissions))
        object.__setattr__(self, "uploads", tuple(self.uploads))
        object.__setattr__(self, "event_handlers", _frozen_mapping(self.event_handlers))
        self._validate()

    def _validate(self) -> None:
        for route in self.routes:
            if not isinstance(route, BaseRoute):
                raise PluginError(self.name, f"route {route!r} is not a Starlette route")
        for item in self.menu_items:
            if not isinstance(item, MenuItem):
                raise PluginError(self.name, f"menu item {item!r} is not a MenuItem")
            if not item.path.startswith("/"):
                raise PluginError(self.name, f"menu item {item.label!r} path must start with '/'")
        for spec in self.permissions:
            if not isinstance(spec, PermissionSpec) or not PERMISSION_NAME.match(spec.name):
                raise PluginError(
                    self.name, f"permission {spec!r} must be a PermissionSpec named 'area.power'"
                )
        for folder, label in (
            (self.templates, "templates"),
            (self.static, "static"),
            (self.locale, "locale"),
        ):
            if folder is not None and not Path(folder).is_dir():
                raise PluginError(self.name, f"{label} folder {folder} does not exist")
        for pattern, handler in self.event_handlers.items():
            if not isinstance(pattern, str) or not pattern or not callable(handler):
                raise PluginError(self.name, f"bad event handler for {pattern!r}")
        if self.lifespan is not None and not callable(self.lifespan):
            raise PluginError(self.name, "lifespan must be a callable returning an async context manager")
