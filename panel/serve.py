"""`gatewayd panel`: the panel on its own, with its own engine and bus, served by uvicorn."""

from __future__ import annotations

import ipaddress

import uvicorn

from gatewayd.bus.memory import MemoryBus
from gatewayd.config import Config
from panel.app import BusFactory, create_app
from panel.settings import PanelSettings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_from_config(config: Config) -> PanelSettings:
    """Panel settings from the daemon's configuration. Cookies carry Secure unless the panel listens
    on loopback only (the demo on http://127.0.0.1), where browsers would otherwise drop them."""
    listen = config.panel.listen
    return PanelSettings(
        database_url=config.database.url,
        bus_url=config.bus.url,
        host=listen.host,
        port=listen.port,
        secure_cookies=not _is_loopback(listen.host),
    )


def memory_bus_factory(url: str) -> MemoryBus:
    if url != "memory://":
        raise ValueError(f"no bus factory given for {url.split('://', 1)[0]}:// URLs")
    return MemoryBus()


async def serve_panel(settings: PanelSettings, bus_factory: BusFactory = memory_bus_factory) -> None:
    """Serve until cancelled or interrupted; the lifespan opens and closes the engine and the bus."""
    app = create_app(settings, bus_factory=bus_factory)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.host, port=settings.port, lifespan="on", access_log=False, log_config=None
        )
    )
    await server.serve()
