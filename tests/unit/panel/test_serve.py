"""Panel settings taken from the daemon's configuration, the standalone bus factory, the server that
ends event streams as it stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayd.bus.memory import MemoryBus
from gatewayd.config import Config, ConfigError, load_config
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
    assert settings.secret_key == config.panel.secret_key
    # The demo says it is served over plain HTTP on loopback: plain cookie names, no Secure.
    assert config.panel.public_url == "http://127.0.0.1:8080"
    assert settings.secure_cookies is False
    assert settings.session_cookie == "echat_session"
    # the desk's assignment takes the daemon's presence rule
    assert settings.presence_grace_seconds == config.assignment.presence_grace == 40.0
    assert settings.assignment_sweep_seconds == config.assignment.sweep_interval


def _panel_config(tmp_path: Path, panel: str) -> Config:
    path = tmp_path / "gatewayd.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///x.db"\n[panel]\n{panel}\n', encoding="utf-8")
    return load_config(path, environ={})


def test_behind_a_tls_proxy_on_loopback_cookies_are_secure(tmp_path: Path) -> None:
    # The production set-up: the panel listens on loopback, a TLS proxy in front of it.
    proxied = settings_from_config(
        _panel_config(tmp_path, 'listen = "127.0.0.1:8080"\npublic_url = "https://Chat.Example.com/"')
    )
    assert proxied.secure_cookies is True
    assert proxied.session_cookie == "__Host-echat_session"
    assert proxied.trusted_origins == ("https://chat.example.com",)
    # Without a public URL the panel cannot know how it is reached: secure by default.
    unsaid = settings_from_config(_panel_config(tmp_path, 'listen = "127.0.0.1:8080"'))
    assert unsaid.secure_cookies is True and unsaid.trusted_origins == ()


@pytest.mark.parametrize(
    "url",
    ["chat.example.com", "ftp://chat.example.com", "https://chat.example.com/panel", "https://a@b.example"],
)
def test_a_public_url_that_is_no_origin_is_refused_with_its_key(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"gatewayd.toml:4: panel.public_url: must be"):
        _panel_config(tmp_path, f'public_url = "{url}"')


def test_the_secret_key_reaches_the_panel_but_never_its_repr(tmp_path: Path) -> None:
    settings = settings_from_config(_panel_config(tmp_path, 'secret_key = "0123456789abcdef-panel"'))
    assert settings.secret_key.get_secret_value() == "0123456789abcdef-panel"
    assert "0123456789abcdef" not in repr(settings)


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
