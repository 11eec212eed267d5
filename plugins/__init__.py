"""Panel plugins: the contract, the entry-point loader and the built-in panels."""

from gatewayd.bus.events import Event
from plugins.contract import EventHandler, MenuItem, Mode, PermissionSpec, Plugin, ShutdownHook, StartupHook
from plugins.errors import PluginError
from plugins.loader import ENTRY_POINT_GROUP, load_plugins

__all__ = [
    "ENTRY_POINT_GROUP",
    "Event",
    "EventHandler",
    "MenuItem",
    "Mode",
    "PermissionSpec",
    "Plugin",
    "PluginError",
    "ShutdownHook",
    "StartupHook",
    "load_plugins",
]
