"""``gatewayd demo``: the whole product in one process, no services needed.

An SQLite file under ``./var/``, the in-process bus, the bundled simulator with two carriers
(movistar 997745, vodafone 795500) and a load generator texting them, the daemon bound to it,
the metrics endpoint and the web panel (with a demo admin account). Prints where everything is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import signal
import sys
from pathlib import Path

import uvicorn

from gatewayd.config import Config, load_config
from gatewayd.daemon import Daemon
from gatewayd.logging import configure_logging, log_event
from gatewayd.store.migrate import upgrade
from simulator.core import Simulator
from simulator.profiles import SimulatorConfig, default_config

log = logging.getLogger("gatewayd.demo")

DEMO_ADMIN = "admin"


def demo_config(var: Path) -> Config:
    """The built-in demo configuration with its database in ``var``."""
    config = load_config(None, environ={})
    path = (var / "gatewayd.db").resolve()
    database = dataclasses.replace(config.database, url=f"sqlite+aiosqlite:///{path}")
    return dataclasses.replace(config, database=database)


def demo_simulator_config() -> SimulatorConfig:
    """The simulator's default two carriers, on the ports the demo configuration binds to; the
    control API on a free port."""
    return dataclasses.replace(default_config(), control_port=0)


def run_demo(var: Path, *, mo_rate: float = 2.0, with_panel: bool = True) -> int:
    configure_logging("INFO")
    var.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_demo(var, mo_rate=mo_rate, with_panel=with_panel))
    except OSError as error:
        print(f"gatewayd demo: {error} (is another demo or simulator running?)", file=sys.stderr)
        return 1


async def _demo(var: Path, *, mo_rate: float, with_panel: bool) -> int:
    config = demo_config(var)
    await upgrade(config.database.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Simulator(demo_simulator_config()) as simulator:
        daemon = Daemon(config)
        async with asyncio.TaskGroup() as group:
            daemon_task = group.create_task(daemon.run(), name="demo.daemon")
            await _wait_ready(daemon, daemon_task)
            password = await _demo_account(config) if with_panel else None
            panel = _panel_server(config, daemon) if with_panel else None
            panel_task = group.create_task(panel.serve(), name="demo.panel") if panel is not None else None
            for carrier in ("movistar", "vodafone"):
                simulator.start_load({"carrier": carrier, "rate": mo_rate / 2, "subscribers": 50,
                                      "reply_probability": 0.6})
            _print_urls(config, simulator, daemon, password)
            await stop.wait()
            print("\nstopping the demo...", flush=True)
            simulator.stop_load()
            if panel is not None and panel_task is not None:
                panel.should_exit = True  # a graceful stop: the panel's lifespan closes cleanly
                await panel_task
            daemon.stop()
            await daemon_task
    return 0


async def _wait_ready(daemon: Daemon, task: asyncio.Task[None]) -> None:
    while not daemon.ready.is_set():
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    if daemon.config.metrics.enabled:
        await daemon.metrics_started.wait()


async def _demo_account(config: Config) -> str | None:
    """An admin account for the panel; its password is new each run (printed once)."""
    from panel.auth.cli import UserCommandError, user_add, user_passwd

    password = secrets.token_urlsafe(9)
    try:
        await user_add(config.database.url, DEMO_ADMIN, "admin", password, display_name="Demo admin")
    except UserCommandError:
        await user_passwd(config.database.url, DEMO_ADMIN, password)
    return password


def _panel_server(config: Config, daemon: Daemon) -> uvicorn.Server:
    """The panel in this process, sharing the daemon's engine and bus."""
    from panel.app import create_app
    from panel.serve import settings_from_config

    settings = settings_from_config(config)
    app = create_app(settings, engine=daemon.engine, bus=daemon.bus)
    return uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="on",
                                         access_log=False, log_config=None))


def _print_urls(config: Config, simulator: Simulator, daemon: Daemon, password: str | None) -> None:
    metrics = config.metrics.listen
    lines = ["", "eChat Gateway demo is running (Ctrl-C stops it)", ""]
    if password is not None:
        panel = config.panel.listen
        lines.append(f"  panel       http://{panel}/   user {DEMO_ADMIN!r} password {password!r}")
    if simulator.control_url:
        url = simulator.control_url
        lines.append(f"  simulator   {url}   (virtual phone: {url}/phone)")
    if config.metrics.enabled:
        lines.append(f"  metrics     http://{metrics}/metrics   health http://{metrics}/healthz")
    lines.append(f"  database    {config.database.redacted_url}")
    lines.append("  send an MT  gatewayd send +34600111222 'Hola desde el demo' --wait")
    lines.append("")
    print("\n".join(lines), flush=True)
    log_event(log, "demo.ready", binds=daemon.binds.binds_up() if daemon.binds else 0)
