"""``gatewayd demo``: the whole product in one process, no services needed.

An SQLite file under ``./var/``, the in-process bus, the bundled simulator with two carriers
(movistar 997745, vodafone 795500) and a load generator texting them, the daemon bound to it,
the metrics endpoint and the web panel, with demo accounts (an admin and two operators, new
passwords each run) so that a person can answer the generated traffic from the browser. Prints where
everything is and how to log in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import signal
import sys
from pathlib import Path

from gatewayd.config import Config, load_config
from gatewayd.daemon import Daemon
from gatewayd.logging import configure_logging, log_event
from gatewayd.schema import upgrade
from panel.auth.admin import UserCommandError, user_add, user_passwd
from panel.serve import PanelServer, panel_server, settings_from_config
from simulator.core import Simulator
from simulator.profiles import SimulatorConfig, default_config

log = logging.getLogger("echat.demo")

DEMO_ADMIN = "admin"
#: The demo's chat operators: who answers the load generator's MOs from the desk.
DEMO_OPERATORS = ("operadora1", "operador2")


@dataclasses.dataclass(frozen=True, slots=True)
class DemoAccount:
    username: str
    role: str
    password: str


def demo_config(var: Path) -> Config:
    """The built-in demo configuration with its database in ``var``."""
    config = load_config(None, environ={})
    path = (var / "gatewayd.db").resolve()
    database = config.database.model_copy(update={"url": f"sqlite+aiosqlite:///{path}"})
    return config.model_copy(update={"database": database})


def demo_simulator_config() -> SimulatorConfig:
    """The simulator's defaults: two carriers on the ports the demo configuration binds to, and the
    control API on 127.0.0.1:8025, so the README's curl examples work against the demo."""
    return default_config()


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
            accounts = await _demo_accounts(config) if with_panel else []
            panel = _panel_server(config, daemon) if with_panel else None
            panel_task = group.create_task(panel.serve(), name="demo.panel") if panel is not None else None
            for carrier in ("movistar", "vodafone"):
                simulator.start_load(
                    {"carrier": carrier, "rate": mo_rate / 2, "subscribers": 50, "reply_probability": 0.6}
                )
            _print_urls(config, simulator, daemon, accounts)
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


async def _demo_accounts(config: Config) -> list[DemoAccount]:
    """The admin and the operators of the demo; their passwords are new each run (printed once)."""
    accounts = [DemoAccount(DEMO_ADMIN, "admin", secrets.token_urlsafe(9))]
    accounts.extend(DemoAccount(name, "operator", secrets.token_urlsafe(9)) for name in DEMO_OPERATORS)
    for account in accounts:
        try:
            await user_add(
                config.database.url,
                account.username,
                account.role,
                account.password,
                display_name=account.username.capitalize(),
            )
        except UserCommandError:  # a previous run's account: same name, new password
            await user_passwd(config.database.url, account.username, account.password)
    return accounts


def _panel_server(config: Config, daemon: Daemon) -> PanelServer:
    """The panel in this process, sharing the daemon's engine and bus."""
    return panel_server(
        settings_from_config(config), engine=daemon.engine, bus=daemon.bus, http=config.panel.http
    )


def _print_urls(config: Config, simulator: Simulator, daemon: Daemon, accounts: list[DemoAccount]) -> None:
    metrics = config.metrics.listen
    lines = ["", "eChat Gateway demo is running (Ctrl-C stops it)", ""]
    if accounts:
        panel = f"http://{config.panel.listen}"
        lines.append(f"  panel       {panel}/login")
        for account in accounts:
            lines.append(
                f"              {account.role:<9} user {account.username!r:<13} password {account.password!r}"
            )
        lines.append(f"              operators: log in, open the desk ({panel}/desk), set yourself online;")
        lines.append("              the load generator's MOs are then assigned to the operators online")
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
