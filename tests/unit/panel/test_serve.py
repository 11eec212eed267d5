"""Panel settings taken from the daemon's configuration, the standalone bus factory, the server that
ends event streams as it stops."""

from __future__ import annotations

import dataclasses

import pytest

from gatewayd.bus.memory import MemoryBus
from gatewayd.config import ListenAddress, load_config
from panel.runtime import StopSignal
from panel.serve import (
    GRACEFUL_SHUTDOWN_SECONDS,
    PanelServer,
    memory_bus_factory,
    panel_server,
    settings_from_config,
)
from panel.settings import PanelSettings
from plugins import auth


def test_settings_follow_the_configuration() -> None:
    config = load_config(None, environ={})
    settings = settings_from_config(config)
    assert settings.database_url == config.database.url
    assert settings.bus_url == config.bus.url
    assert (settings.host, settings.port) == (config.panel.listen.host, config.panel.listen.port)
    assert settings.secure_cookies is False  # the demo listens on loopback over plain HTTP
    public = dataclasses.replace(
        config, panel=dataclasses.replace(config.panel, listen=ListenAddress("0.0.0.0", 8443))
    )
    assert settings_from_config(public).secure_cookies is True


def test_the_standalone_bus_factory_opens_memory_buses_only() -> None:
    assert isinstance(memory_bus_factory("memory://"), MemoryBus)
    with pytest.raises(ValueError, match="mqtt://"):
        memory_bus_factory("mqtt://127.0.0.1:1883")


def test_the_panel_server_bounds_its_graceful_shutdown_and_carries_the_stop_signal() -> None:
    settings = PanelSettings(database_url="sqlite+aiosqlite:///unused.db", host="127.0.0.1", port=8099)
    server = panel_server(settings, plugins=[auth.plugin])
    assert isinstance(server, PanelServer)
    assert server.config.timeout_graceful_shutdown == GRACEFUL_SHUTDOWN_SECONDS
    assert (server.config.host, server.config.port) == ("127.0.0.1", 8099)
    assert server.stop_signal.stopping is False


def test_the_stop_signal_ends_what_is_open_and_what_opens_later() -> None:
    signal = StopSignal()
    ended: list[str] = []
    with signal.ending(lambda: ended.append("first")):
        with signal.ending(lambda: ended.append("left before")):
            pass
        signal.begin()
        assert ended == ["first"]
        with signal.ending(lambda: ended.append("late")):
            assert ended == ["first", "late"]
    signal.begin()  # nothing registered any more
    assert ended == ["first", "late"]
