"""Errors of the panel's plugin framework."""

from __future__ import annotations


class PluginError(Exception):
    """A plugin is malformed or could not be loaded; the message names the plugin."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(f"plugin {plugin!r}: {message}")
        self.plugin = plugin
