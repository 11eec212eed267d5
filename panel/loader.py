"""Find the panel plugins: the entry-point group `echat.plugins`, or an explicit list."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from panel.errors import PluginError
from panel.types import Plugin

ENTRY_POINT_GROUP = "echat.plugins"


def _load_entry_point(entry_point: EntryPoint) -> Plugin:
    try:
        loaded = entry_point.load()
    except Exception as exc:  # any import-time failure of third-party code must name the plugin
        raise PluginError(entry_point.name, f"cannot be imported from {entry_point.value!r}: {exc}") from exc
    if not isinstance(loaded, Plugin):
        kind = type(loaded).__name__
        raise PluginError(entry_point.name, f"{entry_point.value!r} is a {kind}, not a Plugin")
    if loaded.name != entry_point.name:
        raise PluginError(entry_point.name, f"entry point name differs from the plugin name {loaded.name!r}")
    return loaded


def _load_reference(reference: str) -> Plugin:
    """Load `"package.module:attribute"` as a plugin (for tests and for a configured list)."""
    module_name, _, attribute = reference.partition(":")
    if not attribute:
        raise PluginError(reference, "reference must look like 'package.module:attribute'")
    try:
        loaded = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:
        raise PluginError(reference, f"cannot be imported: {exc}") from exc
    if not isinstance(loaded, Plugin):
        raise PluginError(reference, f"is a {type(loaded).__name__}, not a Plugin")
    return loaded


def load_plugins(explicit: Iterable[Plugin | str] | None = None) -> tuple[Plugin, ...]:
    """The plugins to assemble, in a stable order (by name).

    Without `explicit`, every entry point of the group is loaded. With it, the given plugin objects or
    `"module:attribute"` references are used instead. A broken plugin raises `PluginError`; it is never
    silently skipped. Two plugins with one name are refused.
    """
    plugins: list[Plugin] = []
    if explicit is None:
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            plugins.append(_load_entry_point(entry_point))
    else:
        for item in explicit:
            plugins.append(item if isinstance(item, Plugin) else _load_reference(item))
    seen: set[str] = set()
    for plugin in plugins:
        if plugin.name in seen:
            raise PluginError(plugin.name, "registered twice")
        seen.add(plugin.name)
    return tuple(sorted(plugins, key=lambda plugin: plugin.name))
