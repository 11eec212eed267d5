"""The HTTP endpoints' limits: their configuration keys, the connection limit under the open-files
limit, and the log that writes a flood of the same trouble as a few lines."""

from __future__ import annotations

import asyncio
import logging
import resource
from pathlib import Path

import pytest

from gatewayd.config import ConfigError, HTTPServerConfig, load_config
from gatewayd.webserver import BACKLOG, FD_RESERVE, BoundedLog, connection_limit, uvicorn_config

MINIMAL = """\
[database]
url = "sqlite+aiosqlite:///gw.db"

[[carriers]]
name = "movistar"
country = "ES"
short_codes = ["997745"]
system_id = "echat"
password = "secret1"

[[carriers.binds]]
host = "127.0.0.1"
port = 2775

[[services]]
name = "chat"
short_code = "997745"
"""


def load(tmp_path: Path, extra: str, environ: dict[str, str] | None = None) -> HTTPServerConfig:
    path = tmp_path / "gatewayd.toml"
    path.write_text(MINIMAL + extra, encoding="utf-8")
    return load_config(path, environ or {}).panel.http


def test_by_default_no_proxy_is_believed_and_the_limits_are_set(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    assert config.panel.http == HTTPServerConfig(
        max_connections=1000, header_timeout=10.0, keep_alive_timeout=5
    )
    assert config.panel.http.forwarded_allow_ips == ()
    assert config.metrics.http.max_connections == 64


def test_the_panel_keys_and_their_environment_overrides(tmp_path: Path) -> None:
    panel = """
[panel]
max_connections = 300
header_timeout = 2.5
keep_alive_timeout = 3
forwarded_allow_ips = ["127.0.0.1", "10.1.0.0/16"]
"""
    http = load(tmp_path, panel)
    assert http == HTTPServerConfig(
        max_connections=300,
        header_timeout=2.5,
        keep_alive_timeout=3,
        forwarded_allow_ips=("127.0.0.1/32", "10.1.0.0/16"),
    )
    overridden = load(tmp_path, panel, {"GATEWAYD_PANEL_FORWARDED_ALLOW_IPS": "::1, 192.168.0.0/24"})
    assert overridden.forwarded_allow_ips == ("::1/128", "192.168.0.0/24")


def test_bad_values_are_named(tmp_path: Path) -> None:
    bad = """
[panel]
max_connections = 0
header_timeout = 0
forwarded_allow_ips = ["proxy.local"]

[metrics]
forwarded_allow_ips = ["127.0.0.1"]
"""
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, bad)
    named = {problem.key for problem in raised.value.problems}
    assert named == {
        "panel.max_connections",
        "panel.header_timeout",
        "panel.forwarded_allow_ips[0]",
        "metrics.forwarded_allow_ips",  # /metrics sits behind no proxy: an unknown key there
    }


def test_the_connection_limit_leaves_room_under_the_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        assert connection_limit(5000) == 1024 - BACKLOG - FD_RESERVE
        assert connection_limit(100) == 100
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_uvicorn_believes_forwarded_headers_only_from_the_configured_proxies() -> None:
    trusting = uvicorn_config(object(), HTTPServerConfig(forwarded_allow_ips=("127.0.0.1/32",)), BoundedLog())
    assert trusting.proxy_headers and trusting.forwarded_allow_ips == ["127.0.0.1/32"]
    default = uvicorn_config(object(), HTTPServerConfig(), BoundedLog())
    assert default.proxy_headers is False and default.server_header is False


async def test_a_flood_of_the_same_trouble_writes_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gatewayd.webserver")
    trouble = BoundedLog(interval=0.2)
    for _ in range(1000):
        trouble.note("http.headers_timeout", seconds=10.0)
    trouble.note("http.accept_failed", error="[Errno 24] Too many open files")
    assert [(record.getMessage(), record.echat_fields["count"]) for record in caplog.records] == [  # type: ignore[attr-defined]
        ("http.headers_timeout", 1),
        ("http.accept_failed", 1),
    ]

    async with asyncio.timeout(5):  # the rest of the flood, summed up one interval later
        while True:
            if len(caplog.records) == 3:
                break
            await asyncio.sleep(0.01)
    assert (caplog.records[2].getMessage(), caplog.records[2].echat_fields["count"]) == (  # type: ignore[attr-defined]
        "http.headers_timeout",
        999,
    )
    trouble.note("http.headers_timeout", seconds=10.0)
    trouble.close()  # the server stops: what is counted is written
    assert caplog.records[-1].echat_fields["count"] == 1  # type: ignore[attr-defined]
