"""`gatewayd panel`: the panel on its own, with its own engine and bus, served by uvicorn."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayd.bus.memory import MemoryBus
from gatewayd.config import Config, HTTPServerConfig
from gatewayd.outbox import OutboxSettings
from gatewayd.webserver import BoundedLog, GuardedServer, uvicorn_config
from panel.app import BusFactory, create_app
from panel.runtime import EventBus, StopSignal
from panel.settings import PanelSettings
from panel.types import Plugin

# Seconds uvicorn waits for open responses before cancelling them at shutdown. Event streams end
# on the stop signal at once; this bounds any other slow response.
GRACEFUL_SHUTDOWN_SECONDS = 3


def settings_from_config(config: Config) -> PanelSettings:
    """Panel settings from the daemon's configuration. Cookies are Secure (and __Host- prefixed) and
    HSTS is sent unless ``[panel] public_url`` is an http:// URL (the demo on http://127.0.0.1): the
    panel usually listens on loopback behind a TLS proxy, so where it listens tells nothing. The
    public URL's origin is also accepted as the Origin of unsafe requests."""
    panel = config.panel
    return PanelSettings(
        database_url=config.database.url,
        bus_url=config.bus.url,
        host=panel.listen.host,
        port=panel.listen.port,
        secure_cookies=panel.secure,
        secret_key=panel.secret_key,
        trusted_origins=(panel.public_url,) if panel.public_url is not None else (),
        public_url=panel.public_url,
        gallery_dir=panel.gallery_dir,
        gallery_fetch_allow=panel.gallery_fetch_allow,
        webhooks_allow=config.webhooks.allow,
        outbox=OutboxSettings.from_config(config),
        presence_grace_seconds=config.assignment.presence_grace,
        assignment_sweep_seconds=config.assignment.sweep_interval,
        callcentre_pool=config.assignment.callcentre_pool,
    )


def memory_bus_factory(url: str) -> MemoryBus:
    if url != "memory://":
        raise ValueError(f"no bus factory given for {url.split('://', 1)[0]}:// URLs")
    return MemoryBus()


class PanelServer(GuardedServer):
    """uvicorn with the limits of ``gatewayd.webserver`` that raises the panel's stop signal as its
    shutdown begins, so the open event streams end at once instead of holding the graceful shutdown
    until its timeout. ``on_listening`` is told the URL it serves once it has started."""

    def __init__(
        self,
        config: uvicorn.Config,
        stop_signal: StopSignal,
        *,
        trouble: BoundedLog | None = None,
        on_listening: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(config, trouble or BoundedLog())
        self.stop_signal = stop_signal
        self.on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_listening is not None:
            self.on_listening(self.url)

    @property
    def url(self) -> str:
        """Where the started server listens, e.g. ``http://127.0.0.1:8080``."""
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stop_signal.begin()
        await super().shutdown(sockets)


def panel_server(
    settings: PanelSettings,
    *,
    engine: AsyncEngine | None = None,
    bus: EventBus | None = None,
    bus_factory: BusFactory | None = None,
    plugins: Sequence[Plugin | str] | None = None,
    http: HTTPServerConfig | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> PanelServer:
    """The panel app (see `create_app` for the options) under a `PanelServer` listening where
    ``settings`` says, with ``http``'s limits (``[panel]``: connections, timeouts, trusted proxies;
    by default no proxy is trusted): standalone with a ``bus_factory``, or in the daemon's process
    with its ``engine`` and ``bus``."""
    stop_signal = StopSignal()
    app = create_app(
        settings, engine=engine, bus=bus, bus_factory=bus_factory, plugins=plugins, stop_signal=stop_signal
    )
    trouble = BoundedLog()
    config = uvicorn_config(
        app,
        http or HTTPServerConfig(),
        trouble,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return PanelServer(config, stop_signal, trouble=trouble, on_listening=on_listening)


async def serve_panel(
    settings: PanelSettings,
    bus_factory: BusFactory = memory_bus_factory,
    http: HTTPServerConfig | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted; the lifespan opens and closes the engine and the bus."""
    await panel_server(settings, bus_factory=bus_factory, http=http, on_listening=on_listening).serve()
