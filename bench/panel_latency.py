"""Panel latency: time from an MO injected at the simulator to its event on an operator's desk stream.

Two processes, as in production where the carrier is another machine:

- the **gateway** (a child process: ``panel_latency.py gateway CONFIG``): the daemon bound to the
  simulator and the panel served by uvicorn on the daemon's engine and in-process bus, as
  ``gatewayd demo`` runs them;
- the **driver** (this process): the simulator (carrier side, SMPP on ephemeral ports) and the
  "browser", an httpx client signed in through the login form (CSRF token and all) reading
  ``/desk/events``. Injection and reception are timed here, on one clock.

The operator holds a conversation with each of ``--subscribers`` clients (a warm-up MO each, assigned
live), so every measured MO is an ``mo`` event on the stream; each carries a unique token. MOs are
injected with ``Simulator.inject_mo`` in batches every 10 ms at ``--rate`` for ``--seconds``; the
latency of one MO runs from that call to the moment its event line is read from the stream.
Target: p99 under 200 ms at 500 MO/s.

    .venv/bin/python bench/panel_latency.py [--rate 500] [--seconds 10] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from gatewayd.assignment import AssignmentPolicy
from gatewayd.config import load_config
from gatewayd.daemon import Daemon
from gatewayd.schema import upgrade
from gatewayd.store.accounts import Role
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.webserver import listening_socket
from panel.app import create_app
from panel.auth.accounts import create_account
from panel.auth.passwords import PasswordPolicy
from panel.auth.permissions import PermissionRegistry
from panel.settings import Argon2Params, PanelSettings
from panel.types import Plugin
from plugins import auth, home
from plugins.desk import DeskSettings, build_plugin
from simulator import Simulator, default_config

TARGET_P99_MS = 200.0
CARRIER = "movistar"
SHORT_CODE = "997745"
OPERATOR = "bench"
PASSWORD = "correct horse battery"
# Cheap hashing: one login per run, argon2's cost is not what is measured.
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost=64, parallelism=1)
TICK = 0.01
GATEWAY_SCRIPT = str(Path(__file__).resolve())
MT_POLL_INTERVAL = 0.1
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
_TOKEN = re.compile(r"#(\d+)#")


# --- the gateway process --------------------------------------------------------------------------


async def run_gateway(config_path: Path, plugins: list[Plugin] | None = None) -> None:
    """Daemon + panel (``plugins``, :func:`bench_plugins` by default) in one process until SIGTERM;
    prints ``PANEL_URL <url>`` once both are up."""
    config = load_config(config_path, environ={})
    daemon = Daemon(config, poll_interval=MT_POLL_INTERVAL)
    daemon_task = asyncio.create_task(daemon.run(), name="bench.daemon")
    while not daemon.ready.is_set():
        if daemon_task.done():
            daemon_task.result()
        await asyncio.sleep(0.02)
    assert daemon.engine is not None and daemon.bus is not None
    settings = PanelSettings(database_url=config.database.url, secure_cookies=False, argon2=FAST_ARGON2)
    app = create_app(settings, engine=daemon.engine, bus=daemon.bus, plugins=plugins or bench_plugins())
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=1)
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: setattr(server, "should_exit", True))
    server_task = asyncio.create_task(server.serve(sockets=[sock]), name="bench.panel")
    while not server.started:
        if server_task.done():
            server_task.result()
        await asyncio.sleep(0.01)
    print(f"PANEL_URL http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await server_task
    daemon.stop()
    await daemon_task


def bench_plugins() -> list[Plugin]:
    desk = DeskSettings(policy=AssignmentPolicy(sweep_interval=3600.0), heartbeat=5.0)
    return [auth.plugin, home.plugin, build_plugin(desk)]


# --- the driver -----------------------------------------------------------------------------------


def gateway_toml(database_url: str, port: int) -> str:
    return f"""
[database]
url = "{database_url}"

[bus]
url = "memory://"

[metrics]
enabled = false

[daemon]
instance = "gatewayd-bench"

[[carriers]]
name = "{CARRIER}"
country = "ES"
short_codes = ["{SHORT_CODE}"]
system_id = "echat"
password = "secret1"

[[carriers.binds]]
name = "{CARRIER}-1"
host = "127.0.0.1"
port = {port}
window = 100
tps = 1000

[[services]]
name = "chat"
short_code = "{SHORT_CODE}"
"""


async def prepare_database(database_url: str, capacity: int) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            await create_account(
                session,
                PasswordPolicy(FAST_ARGON2),
                PermissionRegistry.build(bench_plugins()),
                username=OPERATOR,
                password=PASSWORD,
                role=Role.OPERATOR,
                max_open_conversations=capacity,
            )
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def gateway_process(config_path: Path, script: str = GATEWAY_SCRIPT) -> AsyncIterator[str]:
    """The gateway child process (``script gateway CONFIG``); yields the panel's URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, script, "gateway", str(config_path), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"the gateway process ended (code {await process.wait()})")
                if line.startswith("PANEL_URL "):
                    break
        yield line.split()[1]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def csrf(client: httpx.AsyncClient, path: str) -> str:
    found = _CSRF.search((await client.get(path, headers={"accept": "text/html"})).text)
    if found is None:
        raise RuntimeError(f"no CSRF token on {path}")
    return found.group(1)


async def sign_in_online(client: httpx.AsyncClient) -> None:
    """The operator logs in through the form and sets themself online, as in the browser."""
    token = await csrf(client, "/login")
    response = await client.post(
        "/login", data={"csrf_token": token, "username": OPERATOR, "password": PASSWORD}
    )
    if response.status_code != 303:
        raise RuntimeError(f"login refused: {response.status_code}")
    token = await csrf(client, "/desk")
    response = await client.post("/desk/presence", data={"csrf_token": token, "presence": "online"})
    if response.status_code != 303:
        raise RuntimeError(f"presence refused: {response.status_code}")


@dataclass(slots=True)
class Tally:
    injected_at: dict[int, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    assigned: int = 0
    other_events: int = 0
    assigned_all: asyncio.Event = field(default_factory=asyncio.Event)
    expected_assignments: int = 0
    injecting: bool = True
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def check_drained(self) -> None:
        if not self.injecting and not self.injected_at:
            self.drained.set()


async def read_stream(lines: AsyncIterator[str], tally: Tally, ready: asyncio.Event) -> None:
    name = ""
    async for line in lines:
        if line.startswith("event: "):
            name = line[7:]
            continue
        if not line.startswith("data: "):
            continue
        received = time.perf_counter()
        if name == "ready":
            ready.set()
        elif name == "assigned":
            tally.assigned += 1
            if tally.assigned >= tally.expected_assignments:
                tally.assigned_all.set()
        elif name == "mo":
            found = _TOKEN.search(json.loads(line[6:]).get("text", ""))
            sent = tally.injected_at.pop(int(found.group(1)), None) if found else None
            if sent is not None:
                tally.latencies.append(received - sent)
                tally.check_drained()
        else:
            tally.other_events += 1


async def inject_at_rate(
    simulator: Simulator, subscribers: list[str], rate: float, seconds: float, tally: Tally
) -> float:
    """Batches every tick on a fixed schedule (no drift); returns the achieved rate."""
    total = int(rate * seconds)
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while sent < total:
        due = min(total, int((loop.time() - started) * rate) + 1)
        while sent < due:
            msisdn = subscribers[sent % len(subscribers)]
            tally.injected_at[sent] = time.perf_counter()
            simulator.inject_mo(CARRIER, msisdn, SHORT_CODE, f"hola #{sent}# que tal")
            sent += 1
        await asyncio.sleep(TICK)
    return total / (loop.time() - started)


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def drive(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="panel-latency-") as workdir:
        database_url = args.database_url or f"sqlite+aiosqlite:///{workdir}/echat.db"
        subscribers = [f"3460{index:07d}" for index in range(args.subscribers)]
        await prepare_database(database_url, capacity=args.subscribers + 10)
        config = default_config().with_ephemeral_ports()
        async with Simulator(config) as simulator:
            config_path = Path(workdir) / "gatewayd.toml"
            config_path.write_text(gateway_toml(database_url, simulator.port(CARRIER)), encoding="utf-8")
            async with (
                gateway_process(config_path) as panel_url,
                httpx.AsyncClient(base_url=panel_url, timeout=30) as client,
            ):
                await sign_in_online(client)
                tally = Tally(expected_assignments=len(subscribers))
                ready = asyncio.Event()
                async with client.stream("GET", "/desk/events", timeout=None) as stream:
                    reader = asyncio.create_task(read_stream(stream.aiter_lines(), tally, ready))
                    async with asyncio.timeout(10):
                        await ready.wait()
                    for msisdn in subscribers:  # warm-up: one conversation per subscriber, held by us
                        simulator.inject_mo(CARRIER, msisdn, SHORT_CODE, "hola")
                    async with asyncio.timeout(30):
                        await tally.assigned_all.wait()
                    await asyncio.sleep(0.5)
                    rate = await inject_at_rate(simulator, subscribers, args.rate, args.seconds, tally)
                    tally.injecting = False
                    tally.check_drained()
                    with contextlib.suppress(TimeoutError):  # what never arrives is counted as missing
                        async with asyncio.timeout(10):
                            await tally.drained.wait()
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
    ordered = sorted(latency * 1000 for latency in tally.latencies)
    missing = len(tally.injected_at)
    if not ordered:
        print("no MO event reached the stream")
        print(f"RESULT p50_ms=nan p99_ms=nan rate={args.rate} events=0 missing={missing}")
        return 1
    p50, p90, p99 = (percentile(ordered, q) for q in (0.50, 0.90, 0.99))
    print(f"database            {database_url.split(':', 1)[0]}")
    print(f"subscribers         {args.subscribers} (conversations held by one operator)")
    print(f"injected            {len(ordered) + missing} MOs at {rate:.0f}/s for {args.seconds:g} s")
    print(f"events on stream    {len(ordered)} (missing {missing})")
    print(f"latency ms          p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {ordered[-1]:.1f}")
    print(f"target p99 < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'MISSED'}")
    print(f"RESULT p50_ms={p50:.1f} p99_ms={p99:.1f} rate={rate:.0f} events={len(ordered)} missing={missing}")
    return 0 if p99 < TARGET_P99_MS and missing == 0 else 1


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "gateway":
        asyncio.run(run_gateway(Path(sys.argv[2])))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0, help="MOs per second (default 500)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the measured run")
    parser.add_argument("--subscribers", type=int, default=100, help="distinct subscribers (conversations)")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    return asyncio.run(drive(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
