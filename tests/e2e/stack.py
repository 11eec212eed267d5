"""The whole product on ephemeral 127.0.0.1 ports, in the test's event loop: the simulator (SMSC with
its HTTP control API), the daemon bound to it (SQLite under the test's folder, in-process bus) and the
panel served by uvicorn on the daemon's engine and bus, as ``gatewayd demo`` runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from gatewayd.assignment import AssignmentPolicy
from gatewayd.bus import EventBus
from gatewayd.config import Config, load_config
from gatewayd.daemon import Daemon
from gatewayd.outbox import OutboxSettings
from gatewayd.schema import upgrade
from gatewayd.store.accounts import Role
from gatewayd.webserver import listening_socket
from panel.app import create_app
from panel.auth.accounts import create_account
from panel.auth.passwords import PasswordPolicy
from panel.auth.permissions import PermissionRegistry
from panel.settings import Argon2Params, PanelSettings
from panel.types import Plugin
from plugins import (
    accounts,
    apikeys,
    audit,
    auth,
    campaigns,
    clients,
    conversations,
    gallery,
    home,
    monitor,
    reports,
    services,
    webhooks,
)
from plugins.desk import DeskSettings, build_plugin
from simulator import DelayDistribution, ReceiptProfile, Simulator, SimulatorConfig, default_config

CARRIER = "movistar"
SHORT_CODE = "997745"
OPERATOR = "olga"
# The chat service's time zone (the ``hora`` / ``fecha`` variables): neither UTC nor the default.
SERVICE_ZONE = "America/Mexico_City"
PASSWORD = "correct horse battery"
# Cheap hashing: the login itself is under test, not argon2's cost.
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost=64, parallelism=1)
# The desk's outbox event wakes the daemon's sender; the poll only catches what no event announced.
MT_POLL_INTERVAL = 1.0
STARTUP_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class StackOptions:
    """``receipt_delay``: seconds from submit_sm to the (always DELIVRD) receipt."""

    receipt_delay: float = 1.0
    operator_capacity: int = 5
    stream_heartbeat: float = 1.0
    # The sweep makes up for lost events and finds operators who left (their desk closed past the
    # grace); live assignment is what most tests exercise.
    sweep_interval: float = 3600.0
    presence_grace: float = 40.0
    # "host:port" webhook receivers allowed on loopback (daemon and panel), with a quick back-off.
    webhooks_allow: tuple[str, ...] = ()
    # TOML added to the chat service (``[services.billing]``: a billed service).
    service_extra: str = ""


@dataclass(frozen=True, slots=True)
class Stack:
    simulator: Simulator
    daemon: Daemon
    config: Config
    panel_url: str
    simulator_url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: EventBus


def simulator_config(receipt_delay: float) -> SimulatorConfig:
    receipts = ReceiptProfile(
        delay=DelayDistribution(kind="fixed", seconds=receipt_delay), statuses={"DELIVRD": 1.0}
    )
    base = default_config().with_ephemeral_ports()
    carriers = tuple(carrier.model_copy(update={"receipts": receipts}) for carrier in base.carriers)
    return base.model_copy(update={"carriers": carriers})


def gateway_toml(database_url: str, simulator: Simulator, options: StackOptions | None = None) -> str:
    """One carrier (movistar) with one transceiver bind on the simulator's real port; chat service; the
    daemon's assignment with the desk's sweep and presence grace."""
    options = options or StackOptions()
    profile = simulator.config.carrier(CARRIER)
    return f"""
[database]
url = "{database_url}"

[bus]
url = "memory://"

[metrics]
enabled = false

[assignment]
sweep_interval = {options.sweep_interval}
presence_grace = {options.presence_grace}

# pushes leave at any hour in these tests (the quiet hours' own: test_outbox_quiet_hours.py)
[quiet_hours]
default = "off"

[daemon]
instance = "gatewayd-e2e"
mt_retry_backoff_initial = 0.2
mt_retry_backoff_max = 1.0

[[carriers]]
name = "{CARRIER}"
country = "{profile.country}"
short_codes = ["{SHORT_CODE}"]
system_id = "{profile.system_id}"
password = "{profile.password}"

[[carriers.binds]]
name = "{CARRIER}-1"
host = "127.0.0.1"
port = {simulator.port(CARRIER)}
window = 50
tps = 1000
response_timeout = 5
enquire_link_interval = 5

[[services]]
name = "chat"
short_code = "{SHORT_CODE}"
timezone = "{SERVICE_ZONE}"
{options.service_extra}

[webhooks]
allow = [{", ".join(f'"{target}"' for target in options.webhooks_allow)}]
backoff_initial = 0.2
backoff_max = 0.5
max_attempts = 2
poll_interval = 0.1
"""


def desk_plugins(options: StackOptions) -> list[Plugin]:
    policy = AssignmentPolicy(
        sweep_interval=options.sweep_interval, presence_grace=timedelta(seconds=options.presence_grace)
    )
    desk = DeskSettings(policy=policy, heartbeat=options.stream_heartbeat)
    return [
        auth.plugin,
        home.plugin,
        build_plugin(desk),
        accounts.plugin,
        clients.plugin,
        conversations.plugin,
        services.plugin,
        audit.plugin,
        monitor.plugin,
        gallery.plugin,
        reports.plugin,
        campaigns.plugin,
        apikeys.plugin,
        webhooks.plugin,
    ]


async def add_operator(
    sessions: async_sessionmaker[AsyncSession],
    plugins: list[Plugin],
    capacity: int,
    username: str = OPERATOR,
    *,
    role: Role = Role.OPERATOR,
) -> None:
    registry = PermissionRegistry.build(plugins)
    async with sessions() as session, session.begin():
        await create_account(
            session,
            PasswordPolicy(FAST_ARGON2),
            registry,
            username=username,
            password=PASSWORD,
            role=role,
            display_name=username.title(),
            language="es",
            max_open_conversations=capacity,
        )


@asynccontextmanager
async def running_daemon(config: Config, *, poll_interval: float = MT_POLL_INTERVAL) -> AsyncIterator[Daemon]:
    daemon = Daemon(config, poll_interval=poll_interval)
    task = asyncio.create_task(daemon.run(), name="e2e.daemon")
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not daemon.ready.is_set() or daemon.binds is None or daemon.binds.binds_up() < 1:
                if task.done():
                    task.result()  # start-up failed: raise its error
                await asyncio.sleep(0.02)
        yield daemon
    finally:
        daemon.stop()
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await stopped(daemon, task)


async def stopped(daemon: Daemon, task: asyncio.Task[None]) -> None:
    """Waits for the daemon's run task after ``stop()`` and raises what it raised."""
    await task


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """``app`` under uvicorn on an ephemeral 127.0.0.1 port; yields its base URL."""
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name="e2e.panel.uvicorn")
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def running_stack(workdir: Path, options: StackOptions | None = None) -> AsyncIterator[Stack]:
    """Simulator, migrated SQLite database, daemon, an operator account, and the panel; torn down in
    reverse order (the panel first, so no page talks to a stopped daemon)."""
    options = options or StackOptions()
    database_url = f"sqlite+aiosqlite:///{workdir / 'echat.db'}"
    async with AsyncExitStack() as stack:
        simulator = await stack.enter_async_context(Simulator(simulator_config(options.receipt_delay)))
        simulator_url = simulator.control_url
        assert simulator_url is not None, "the simulator's control API is off"
        config_path = workdir / "gatewayd.toml"
        config_path.write_text(gateway_toml(database_url, simulator, options), encoding="utf-8")
        config = load_config(config_path, environ={})
        await upgrade(database_url)
        daemon = await stack.enter_async_context(running_daemon(config))
        assert daemon.engine is not None and daemon.sessions is not None and daemon.bus is not None
        plugins = desk_plugins(options)
        await add_operator(daemon.sessions, plugins, options.operator_capacity)
        settings = PanelSettings(
            database_url=database_url,
            secure_cookies=False,
            argon2=FAST_ARGON2,
            outbox=OutboxSettings.from_config(config),
            # No public_url: the gallery's links use the address the panel was reached at (127.0.0.1).
            gallery_dir=str(workdir / "gallery"),
            webhooks_allow=options.webhooks_allow,
        )
        app = create_app(settings, engine=daemon.engine, bus=daemon.bus, plugins=plugins)
        panel_url = await stack.enter_async_context(serving(app))
        yield Stack(
            simulator, daemon, config, panel_url, simulator_url, daemon.engine, daemon.sessions, daemon.bus
        )
