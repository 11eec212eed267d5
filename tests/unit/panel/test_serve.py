"""Panel settings taken from the daemon's configuration, and the standalone bus factory."""

from __future__ import annotations

import dataclasses

import pytest

from gatewayd.bus.memory import MemoryBus
from gatewayd.config import ListenAddress, load_config
from panel.serve import memory_bus_factory, settings_from_config


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
