"""The plugin contract: what a panel plugin gives the panel.

A plugin is one frozen `Plugin` object, published under the entry-point group `echat.plugins`.
The built-in panels register through the very same group.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from gatewayd.bus.events import Event
from plugins.errors import PluginError

if TYPE_CHECKING:
    from panel.runtime import PanelRuntime

PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
PERMISSION_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$")
LANGUAGES = ("es", "en")


class Mode(StrEnum):
    """The two faces of the panel: the operator's desk and the control panel."""

    OPERATOR = "operator"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class MenuItem:
    label: str  # i18n key
    path: str
    mode: Mode
    permission: str | None = None  # None: every signed-in account of that mode sees it
    order: int = 100


@dataclass(frozen=True, slots=True)
class PermissionSpec:
    name: str  # "<area>.<power>", e.g. "push.send"
    description: str  # i18n key
    default_roles: frozenset[str] = frozenset()  # roles ("master", "operator") granted it at creation


# Called for each event whose topic matches the pattern; an exception is logged, the subscription goes on.
EventHandler = Callable[[Event, "PanelRuntime"], Awaitable[None]]
StartupHook = Callable[["PanelRuntime"], Awaitable[None]]
# Run when the panel stops, in reverse plugin order, before the engine and the bus close.
ShutdownHook = Callable[["PanelRuntime"], Awaitable[None]]


def _frozen_mapping(value: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True)
class Plugin:
    """One panel plugin. Every route must declare its access (see `panel.access`)."""

    name: str
    title: str  # i18n key
    routes: Sequence[BaseRoute] = ()
    menu_items: Sequence[MenuItem] = ()
    templates: Path | None = None
    static: Path | None = None
    permissions: Sequence[PermissionSpec] = ()
    event_handlers: Mapping[str, EventHandler] = field(default_factory=dict)
    on_startup: StartupHook | None = None
    on_shutdown: ShutdownHook | None = None
    # language -> i18n key -> text; keys should start with the plugin's name.
    messages: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not PLUGIN_NAME.match(self.name):
            raise PluginError(str(self.name), "name must match [a-z][a-z0-9_]{0,31}")
        object.__setattr__(self, "routes", tuple(self.routes))
        object.__setattr__(self, "menu_items", tuple(self.menu_items))
        object.__setattr__(self, "permissions", tuple(self.permissions))
        object.__setattr__(self, "event_handlers", _frozen_mapping(self.event_handlers))
        object.__setattr__(
            self, "messages", _frozen_mapping({lang: _frozen_mapping(m) for lang, m in self.messages.items()})
        )
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
        for folder, label in ((self.templates, "templates"), (self.static, "static")):
            if folder is not None and not Path(folder).is_dir():
                raise PluginError(self.name, f"{label} folder {folder} does not exist")
        for pattern, handler in self.event_handlers.items():
            if not isinstance(pattern, str) or not pattern or not callable(handler):
                raise PluginError(self.name, f"bad event handler for {pattern!r}")
        if self.on_startup is not None and not callable(self.on_startup):
            raise PluginError(self.name, "on_startup must be an async callable")
        if self.on_shutdown is not None and not callable(self.on_shutdown):
            raise PluginError(self.name, "on_shutdown must be an async callable")
        for lang in self.messages:
            if lang not in LANGUAGES:
                raise PluginError(self.name, f"messages for unsupported language {lang!r}")
