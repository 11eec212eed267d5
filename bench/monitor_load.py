"""Monitor load: 2,000 live conversations and 200 MO/s through the simulator and the daemon, with an
admin's browser stream open on the live monitor (issue 12, 1.1).

Two processes, as in bench/panel_latency.py (whose gateway process and helpers this reuses): the
**gateway** (daemon + panel with the desk and the monitor, one process) and the **driver** (this
process: the simulator and the "browser", an httpx client signed in as an admin through the login
form, reading ``/admin/monitor/events``).

1. Warm-up: one MO from each of ``--conversations`` subscribers; nobody is at a desk, so every
   conversation stays live and waiting. The driver waits until the monitor stream has sent a row for
   each (the daemon's MO events, read back by the monitor).
2. First render: ``GET /admin/monitor`` with all of them live, ``--renders`` times; the time from the
   request to the last byte of the HTML (server time on 127.0.0.1, the transfer is negligible).
3. Load: MOs at ``--rate`` for ``--seconds``, the subscribers in turn; the latency of one MO runs from
   its injection at the simulator to the first ``rows`` event carrying that client's row after it.

Targets: p99 MO -> monitor row under 300 ms, first render under 500 ms.

    .venv/bin/python bench/monitor_load.py [--rate 200] [--seconds 10] [--conversations 2000]
                                           [--postgres | --database-url URL]
    (default: SQLite in a temporary folder; --postgres: a scratch database on 127.0.0.1, dropped after)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from panel_latency import (  # noqa: E402  (bench/ on the path first)
    CARRIER,
    FAST_ARGON2,
    PASSWORD,
    SHORT_CODE,
    TICK,
    csrf,
    gateway_process,
    gateway_toml,
    percentile,
    run_gateway,
)
from scratch_postgres import scratch_database  # noqa: E402

from gatewayd.assignment import AssignmentPolicy  # noqa: E402
from gatewayd.schema import upgrade  # noqa: E402
from gatewayd.store.accounts import Role  # noqa: E402
from gatewayd.store.engine import create_engine, session_factory  # noqa: E402
from gatewayd.store.subscribers import Subscriber  # noqa: E402
from panel.auth.accounts import create_account  # noqa: E402
from panel.auth.passwords import PasswordPolicy  # noqa: E402
from panel.auth.permissions import PermissionRegistry  # noqa: E402
from panel.types import Plugin  # noqa: E402
from plugins import auth, home, monitor  # noqa: E402
from plugins.desk import DeskSettings, build_plugin  # noqa: E402
from simulator import Simulator, default_config  # noqa: E402

TARGET_P99_MS = 300.0
TARGET_RENDER_MS = 500.0
ADMIN = "bench-admin"
SCRIPT = str(Path(__file__).resolve())


def monitor_plugins() -> list[Plugin]:
    desk = DeskSettings(policy=AssignmentPolicy(sweep_interval=3600.0), heartbeat=5.0)
    return [auth.plugin, home.plugin, build_plugin(desk), monitor.plugin]


async def prepare_database(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            await create_account(
                session,
                PasswordPolicy(FAST_ARGON2),
                PermissionRegistry.build(monitor_plugins()),
                username=ADMIN,
                password=PASSWORD,
                role=Role.ADMIN,
            )
    finally:
        await engine.dispose()


async def client_ids(database_url: str) -> dict[str, str]:
    """{msisdn: client id} of the subscribers who wrote (the monitor shows client ids only)."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            rows = await session.execute(select(Subscriber.msisdn, Subscriber.client_id))
            return {msisdn: client_id for msisdn, client_id in rows}
    finally:
        await engine.dispose()


@dataclass(slots=True)
class Tally:
    seen: set[str] = field(default_factory=set)  # client ids with a row so far
    warm: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0
    injected_at: dict[str, float] = field(default_factory=dict)  # client id -> injection time
    latencies: list[float] = field(default_factory=list)
    events: int = 0
    rows: int = 0
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
        elif name == "rows":
            tally.events += 1
            for row in json.loads(line[6:])["rows"]:
                tally.rows += 1
                label = row["l"]
                sent = tally.injected_at.pop(label, None)
                if sent is not None:
                    tally.latencies.append(received - sent)
                    tally.check_drained()
                if len(tally.seen) < tally.expected:
                    tally.seen.add(label)
                    if len(tally.seen) >= tally.expected:
                        tally.warm.set()


async def first_renders(client: httpx.AsyncClient, count: int) -> tuple[list[float], int]:
    """Times of ``GET /admin/monitor`` (request to the last byte), ms; and the rows on the page."""
    times = []
    shown = 0
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get("/admin/monitor", headers={"accept": "text/html"})
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        shown = response.text.count('<tr id="conversation-')
    return sorted(times), shown


async def drive(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="monitor-load-") as workdir:
        database_url = args.database_url or f"sqlite+aiosqlite:///{workdir}/echat.db"
        subscribers = [f"3461{index:07d}" for index in range(args.conversations)]
        await prepare_database(database_url)
        config = default_config().with_ephemeral_ports()
        async with Simulator(config) as simulator:
            config_path = Path(workdir) / "gatewayd.toml"
            config_path.write_text(gateway_toml(database_url, simulator.port(CARRIER)), encoding="utf-8")
            async with (
                gateway_process(config_path, SCRIPT) as panel_url,
                httpx.AsyncClient(base_url=panel_url, timeout=30) as client,
            ):
                token = await csrf(client, "/login")
                signed = await client.post(
                    "/login", data={"csrf_token": token, "username": ADMIN, "password": PASSWORD}
                )
                if signed.status_code != 303:
                    raise RuntimeError(f"login refused: {signed.status_code}")
                tally = Tally(expected=len(subscribers))
                ready = asyncio.Event()
                async with client.stream("GET", "/admin/monitor/events", timeout=None) as stream:
                    reader = asyncio.create_task(read_stream(stream.aiter_lines(), tally, ready))
                    async with asyncio.timeout(10):
                        await ready.wait()
                    warm_started = time.perf_counter()
                    for index, msisdn in enumerate(subscribers):  # warm-up, at 1,000 MO/s
                        simulator.inject_mo(CARRIER, msisdn, SHORT_CODE, "hola")
                        if index % 10 == 9:
                            await asyncio.sleep(TICK)
                    async with asyncio.timeout(120):
                        await tally.warm.wait()
                    warm_seconds = time.perf_counter() - warm_started
                    renders, shown = await first_renders(client, args.renders)
                    ids = await client_ids(database_url)
                    labels = [ids[msisdn] for msisdn in subscribers]
                    await asyncio.sleep(0.5)
                    total = int(args.rate * args.seconds)
                    loop = asyncio.get_running_loop()
                    started = loop.time()
                    sent = 0
                    while sent < total:
                        due = min(total, int((loop.time() - started) * args.rate) + 1)
                        while sent < due:
                            index = sent % len(subscribers)
                            tally.injected_at[labels[index]] = time.perf_counter()
                            simulator.inject_mo(CARRIER, subscribers[index], SHORT_CODE, f"otra vez {sent}")
                            sent += 1
                        await asyncio.sleep(TICK)
                    rate = total / (loop.time() - started)
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
    render_p50, render_max = percentile(renders, 0.5), renders[-1]
    if not ordered:
        print(f"RESULT p99_ms=nan render_ms={render_max:.1f} rate={args.rate} events=0 missing={missing}")
        return 1
    p50, p99 = percentile(ordered, 0.50), percentile(ordered, 0.99)
    print(f"database            {database_url.split(':', 1)[0]}")
    print(
        f"live conversations  {args.conversations} (warm-up {warm_seconds:.1f} s), {shown} rows on the page"
    )
    print(f"first render ms     p50 {render_p50:.1f}  max {render_max:.1f}  ({args.renders} renders)")
    print(f"injected            {len(ordered) + missing} MOs at {rate:.0f}/s for {args.seconds:g} s")
    print(f"MO -> monitor row   p50 {p50:.1f}  p99 {p99:.1f}  max {ordered[-1]:.1f} ms (missing {missing})")
    print(f"stream              {tally.events} rows events carrying {tally.rows} rows")
    met = p99 < TARGET_P99_MS and render_max < TARGET_RENDER_MS and missing == 0
    verdict = "met" if met else "MISSED"
    print(f"targets p99 < {TARGET_P99_MS:.0f} ms, render < {TARGET_RENDER_MS:.0f} ms: {verdict}")
    print(
        f"RESULT p50_ms={p50:.1f} p99_ms={p99:.1f} render_ms={render_max:.1f} render_p50_ms={render_p50:.1f}"
        f" rate={rate:.0f} conversations={args.conversations} rows_on_page={shown} events={len(ordered)}"
        f" missing={missing} database={database_url.split(':', 1)[0]}"
    )
    return 0 if met else 1


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "gateway":
        asyncio.run(run_gateway(Path(sys.argv[2]), monitor_plugins()))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="MOs per second (default 200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the measured run")
    parser.add_argument("--conversations", type=int, default=2000, help="live conversations (default 2000)")
    parser.add_argument("--renders", type=int, default=5, help="first renders timed (default 5)")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument("--postgres", action="store_true", help="a scratch PostgreSQL database instead")
    return asyncio.run(run(parser.parse_args()))


async def run(args: argparse.Namespace) -> int:
    if not args.postgres:
        return await drive(args)
    async with scratch_database() as url:
        args.database_url = url
        return await drive(args)


if __name__ == "__main__":
    sys.exit(main())
