"""MO-to-row latency on SQLite while clients flood the panel's sign-in form.

The gateway as ``gatewayd demo`` runs it, in this process and one event loop: the simulator (the
carrier), the daemon bound to it on SQLite, and the panel served by uvicorn on the daemon's engine and
bus, argon2 at its production cost. MOs are injected at a steady ``--rate``; the latency of one MO runs
from its injection to its ``mo`` event on the bus, which the daemon publishes after the commit.

The attackers are ``--clients`` HTTP clients in a child process (``login_flood.py attack ...``), each
posting bad sign-ins back to back (GET /login for the CSRF token, then POST). Three phases, each on
a fresh database:

- ``quiet``: no flood;
- ``flood``: one bad password after another for the real ``admin`` account, default limits (the
  name is soon delayed, the address soon rate limited: answered without hashing);
- ``hashed``: a new unknown user name each time and the address limit out of reach, so every
  attempt costs one argon2 run.

Printed per phase: p50 / p99 / max MO-to-row, MOs never stored, MOs the simulator had to deliver again
(answered ESME_RX_T_APPN or not at all), and the panel's answers by status (5xx are failures).

    .venv/bin/python bench/login_flood.py [--rate 20] [--seconds 10] [--clients 10] [--phases ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn  # noqa: E402
from sqlalchemy import select  # noqa: E402

from gatewayd.config import load_config  # noqa: E402
from gatewayd.daemon import Daemon  # noqa: E402
from gatewayd.schema import upgrade  # noqa: E402
from gatewayd.store.accounts import Role  # noqa: E402
from gatewayd.store.engine import read_session_factory  # noqa: E402
from gatewayd.store.messages import MOMessage  # noqa: E402
from gatewayd.webserver import listening_socket
from panel.app import create_app  # noqa: E402
from panel.auth.accounts import create_account  # noqa: E402
from panel.auth.passwords import PasswordPolicy  # noqa: E402
from panel.auth.permissions import PermissionRegistry  # noqa: E402
from panel.settings import Argon2Params, PanelSettings  # noqa: E402
from plugins import auth, home  # noqa: E402
from simulator import Simulator, default_config  # noqa: E402
from tests.integration.panel.signin_flood import ADMIN, attackers  # noqa: E402

CARRIER = "movistar"
SHORT_CODE = "997745"
PHASES = ("quiet", "flood", "hashed")
_TOKEN = re.compile(r"#(\d+)#")


# --- the gateway (this process) --------------------------------------------------------------------


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


@dataclass(slots=True)
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    missing: int = 0
    redelivered: int = 0
    statuses: Counter[str] = field(default_factory=Counter)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))] * 1000

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status.startswith("5"))


@contextlib.asynccontextmanager
async def panel_server(daemon: Daemon, settings: PanelSettings) -> AsyncIterator[str]:
    assert daemon.engine is not None and daemon.bus is not None
    app = create_app(settings, engine=daemon.engine, bus=daemon.bus, plugins=[auth.plugin, home.plugin])
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name="bench.panel")
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def seed_admin(daemon: Daemon) -> None:
    assert daemon.sessions is not None
    async with daemon.sessions() as session, session.begin():
        await create_account(
            session,
            PasswordPolicy(Argon2Params()),
            PermissionRegistry.build([auth.plugin, home.plugin]),
            username=ADMIN,
            password="the real admin password",
            role=Role.ADMIN,
        )


async def inject_and_measure(
    simulator: Simulator, daemon: Daemon, phase: Phase, rate: float, seconds: float
) -> None:
    assert daemon.bus is not None and daemon.engine is not None
    loop = asyncio.get_running_loop()
    injected_at: dict[int, float] = {}
    total = int(rate * seconds)
    readers = read_session_factory(daemon.engine)
    async with daemon.bus.subscribe(daemon.bus.topics.mo(SHORT_CODE)) as events:

        async def collect() -> None:
            async for event in events:
                arrived = loop.time()
                async with readers() as session:  # events carry ids: the text is in the database
                    text = await session.scalar(
                        select(MOMessage.text).where(MOMessage.id == event.payload["id"])
                    )
                found = _TOKEN.search(text or "")
                sent = injected_at.pop(int(found.group(1)), None) if found else None
                if sent is not None:
                    phase.latencies.append(arrived - sent)
                    if len(phase.latencies) == total:
                        return

        collector = asyncio.create_task(collect())
        started = loop.time()
        for number in range(total):
            await asyncio.sleep(max(0.0, started + number / rate - loop.time()))
            injected_at[number] = loop.time()
            simulator.inject_mo(CARRIER, f"3462{number:07d}", SHORT_CODE, f"hola #{number}#")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collector, timeout=60)
        phase.missing = len(injected_at)


async def run_phase(name: str, args: argparse.Namespace) -> Phase:
    phase = Phase(name)
    with tempfile.TemporaryDirectory(prefix="login-flood-") as workdir:
        database_url = f"sqlite+aiosqlite:///{workdir}/echat.db"
        await upgrade(database_url)
        async with Simulator(default_config().with_ephemeral_ports()) as simulator:
            config_path = Path(workdir) / "gatewayd.toml"
            config_path.write_text(gateway_toml(database_url, simulator.port(CARRIER)), encoding="utf-8")
            daemon = Daemon(load_config(config_path, environ={}))
            daemon_task = asyncio.create_task(daemon.run(), name="bench.daemon")
            while not daemon.ready.is_set() or daemon.binds is None or daemon.binds.binds_up() < 1:
                if daemon_task.done():
                    daemon_task.result()
                await asyncio.sleep(0.02)
            await seed_admin(daemon)
            # Production settings; the "hashed" phase keeps the address limit out of reach.
            settings = PanelSettings(database_url=database_url, secure_cookies=False)
            if name == "hashed":
                settings = PanelSettings(
                    database_url=database_url, secure_cookies=False, ip_max_failures=10**9
                )
            async with panel_server(daemon, settings) as url:
                if name == "quiet":
                    await inject_and_measure(simulator, daemon, phase, args.rate, args.seconds)
                else:
                    async with attackers(url, args.clients, unique_names=name == "hashed") as statuses:
                        await inject_and_measure(simulator, daemon, phase, args.rate, args.seconds)
                    phase.statuses = statuses
            phase.redelivered = simulator.carrier(CARRIER).counters.redeliveries
            daemon.stop()
            await daemon_task
    return phase


async def drive(args: argparse.Namespace) -> int:
    phases = [await run_phase(name, args) for name in args.phases]
    print(f"MOs at {args.rate:g}/s for {args.seconds:g} s per phase; {args.clients} attacking clients")
    for phase in phases:
        answers = " ".join(f"{status}:{count}" for status, count in sorted(phase.statuses.items())) or "-"
        p50, p99, worst = (phase.percentile(fraction) for fraction in (0.5, 0.99, 1.0))
        print(
            f"{phase.name:<7} MO-to-row ms p50 {p50:7.1f}  p99 {p99:7.1f}  max {worst:7.1f}"
            f"  missing {phase.missing}  redelivered {phase.redelivered}  panel answers {answers}"
        )
    fields = []
    for phase in phases:
        fields.append(f"{phase.name}_p50_ms={phase.percentile(0.5):.1f}")
        fields.append(f"{phase.name}_p99_ms={phase.percentile(0.99):.1f}")
    missing = sum(phase.missing for phase in phases)
    redelivered = sum(phase.redelivered for phase in phases)
    server_errors = sum(phase.server_errors for phase in phases)
    attempts = {phase.name: sum(phase.statuses.values()) for phase in phases if phase.name != "quiet"}
    fields += [f"{name}_attempts={count}" for name, count in attempts.items()]
    fields += [f"missing={missing}", f"redelivered={redelivered}", f"server_errors={server_errors}"]
    print("RESULT " + " ".join(fields))
    return 0 if missing == redelivered == server_errors == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20.0, help="MOs per second (default 20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase's injection")
    parser.add_argument("--clients", type=int, default=10, help="attacking HTTP clients (default 10)")
    parser.add_argument(
        "--phases",
        type=lambda text: [name for name in text.split(",") if name in PHASES] or list(PHASES),
        default=list(PHASES),
        help="comma-separated subset of quiet,flood,hashed (default: all three)",
    )
    return asyncio.run(drive(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
