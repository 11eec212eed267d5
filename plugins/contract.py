"""The plugin contract, re-exported from its home `panel.types` for plugins that import it from here.

New plugins import from `panel.types`; see docs/PLUGINS.md.
"""

from panel.types import (
    Event,
    EventHandler,
    MenuItem,
    Mode,
    PanelRuntime,
    PermissionSpec,
    Plugin,
    PluginError,
    PluginLifespan,
    PluginState,
    PluginStateMissing,
)

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
