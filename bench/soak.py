"""Soak: the service for an hour at 300 MO/s and 300 MT/s with receipts, and the resident memory of every
process each minute. Target: no process grows more than 5 % after the first ten minutes.

Processes, each as production runs it:

- the **simulator** (``gatewayd simulator``, one carrier, SMPP and control API on private ports): its
  load generator sends MOs at ``--mo-rate`` (Poisson, subscribers who never reply) and it answers every
  MT with a DELIVRD receipt after ``--receipt-delay`` seconds;
- ``--daemons`` **daemons** (``gatewayd run``, one configuration file, each its own instance name): they
  share the carrier's ``--binds`` bind slots;
- one **panel** (``gatewayd panel``) with ``--desks`` operators signed in through the login form, online,
  each holding its desk's event stream (``/desk/events``) open and read;
- **PostgreSQL**: a server of its own (``initdb``, the server's defaults: autovacuum on, as in production)
  in the run's temporary directory, or with ``--shared-postgres`` a scratch database on the shared server
  (bench/scratch_postgres.py, with that server's settings), dropped at the end;
  **Mosquitto** on 127.0.0.1:1883 with a topic prefix of this run;
- this **driver**: it queues MTs at ``--mt-rate`` (pushes through the outbox's ``queue_mts`` in a
  transaction every 100 ms, then a wake-up on the bus, as producers do) and samples memory.

Every ``--sample-seconds`` (60) it reads the RSS of each daemon, the panel and the simulator, and the
private memory (RssAnon) of the database's PostgreSQL backends summed (their RSS counts the shared
buffers they touched, which only grows towards ``shared_buffers``). It prints a table, the traffic
(MOs stored, MOs the daemons took for redeliveries, MTs delivered, desk events read), and one
``RESULT key=value ...`` line with each process's growth from the first sample after
``--warmup-minutes`` (10, or a third of a shorter run) to the last.

    .venv/bin/python bench/soak.py [--minutes 60] [--daemons 2] [--desks 50] [--mo-rate 300]
        [--mt-rate 300] [--sample-seconds 60] [--warmup-minutes 10]

Ports 18820 (control API), 18821 (SMPP), 18822 (panel) and from 18823 one per daemon (its metrics) on
127.0.0.1 must be free (--base-port); its PostgreSQL server takes the first free port from 18830.
An hour writes about two million messages into the scratch database: a few GB of disk for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from _measure import postgres_backends  # noqa: E402
from scratch_postgres import scratch_database  # noqa: E402
from sqlalchemy import text  # noqa: E402

from gatewayd.bus import create_bus  # noqa: E402
from gatewayd.schema import upgrade  # noqa: E402
from gatewayd.store.accounts import Role  # noqa: E402
from gatewayd.store.engine import create_engine, session_factory  # noqa: E402
from gatewayd.store.enums import MTKind  # noqa: E402
from gatewayd.store.mt.queue import queue_mts  # noqa: E402
from gatewayd.store.mt.values import NewMT  # noqa: E402
from gatewayd.store.store import Store  # noqa: E402
from panel.auth.accounts import create_account  # noqa: E402
from panel.auth.passwords import PasswordPolicy  # noqa: E402
from panel.auth.permissions import PermissionRegistry  # noqa: E402
from panel.loader import load_plugins  # noqa: E402
from panel.settings import Argon2Params  # noqa: E402
from tests.chaos.services import PrivatePostgres, free_port  # noqa: E402

CARRIER = "movistar"
SHORT_CODE = "997745"
MQTT_URL = "mqtt://127.0.0.1:1883"
PASSWORD = "correct horse battery staple"
#: Cheap hashing for the operators' accounts: fifty sign-ins, not argon2, are what the soak starts with.
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost=64, parallelism=1)
TARGET_GROWTH_PCT = 5.0
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


# --- configuration ---------------------------------------------------------------------------------


def simulator_toml(args: argparse.Namespace) -> str:
    return f"""
[simulator]
mt_store_size = 10000

[simulator.control]
host = "127.0.0.1"
port = {args.base_port}

[simulator.carriers.{CARRIER}]
country = "ES"
host = "127.0.0.1"
port = {args.base_port + 1}
system_id = "echat"
password = "secret1"
short_codes = ["{SHORT_CODE}"]
max_binds = 8

[simulator.carriers.{CARRIER}.receipts]
enabled = true
delay = {{ kind = "fixed", seconds = {args.receipt_delay} }}
statuses = {{ DELIVRD = 100 }}
"""


def gatewayd_toml(url: str, prefix: str, args: argparse.Namespace) -> str:
    return f"""
[database]
url = "{url}"

[bus]
url = "{MQTT_URL}"
topic_prefix = "{prefix}"

[log]
level = "WARNING"

[panel]
listen = "127.0.0.1:{args.base_port + 2}"
public_url = "http://127.0.0.1:{args.base_port + 2}"
secret_key = "soak-{prefix}-secret-key"

[[carriers]]
name = "{CARRIER}"
country = "ES"
short_codes = ["{SHORT_CODE}"]
system_id = "echat"
password = "secret1"

[[carriers.binds]]
host = "127.0.0.1"
port = {args.base_port + 1}
count = {args.binds}
window = 100
# the carrier's limit, not ours: 300 MT/s over two binds needs more than the default 100 per bind
tps = 1000

[[services]]
name = "chat"
short_code = "{SHORT_CODE}"
"""


# --- processes ---------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


async def start(name: str, directory: Path, *args: str, environment: dict[str, str] | None = None) -> Child:
    log = directory / f"{name}.log"
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "echat", *args, cwd=ROOT, env={**os.environ, **(environment or {})},
            stdout=output, stderr=output,
        )  # fmt: skip
    return Child(name, process, log)


async def stop(children: list[Child]) -> None:
    for child in children:
        if child.process.returncode is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        try:
            async with asyncio.timeout(60):
                await child.process.wait()
        except TimeoutError:
            child.process.kill()
            await child.process.wait()


def check_alive(children: list[Child]) -> None:
    for child in children:
        if child.process.returncode is not None:
            raise RuntimeError(
                f"{child.name} exited ({child.process.returncode}); its log ends:\n{child.tail()}"
            )


async def wait_http(url: str, children: list[Child]) -> None:
    async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(60):
        while True:
            check_alive(children)
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code < 500:
                    return
            await asyncio.sleep(0.2)


async def wait_bound(control: httpx.AsyncClient, binds: int, children: list[Child]) -> None:
    async with asyncio.timeout(120):
        while True:
            check_alive(children)
            status = (await control.get("/api/status")).json()
            (carrier,) = (entry for entry in status["carriers"] if entry["name"] == CARRIER)
            if len(carrier["binds"]) >= binds:
                return
            await asyncio.sleep(0.2)


# --- memory ------------------------------------------------------------------------------------------


def memory_kib(pid: int, fields: tuple[str, ...]) -> int:
    """The sum of ``fields`` (VmRSS, RssAnon, ...) of /proc/<pid>/status in KiB; 0 once it has gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return sum(int(line.split()[1]) for line in lines if line.split(":", 1)[0] in fields)


def client_backends(database: str) -> set[int]:
    """The database's client backends: autovacuum workers come and go with their own memory budget."""
    return {pid for pid in postgres_backends(database) if "autovacuum" not in process_title(pid)}


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def sample(children: list[Child], database: str) -> tuple[dict[str, int], int]:
    """KiB per process (RSS of ours, private memory of the database's client backends summed) and the
    number of those backends: a pool that opens one more connection adds a backend, not a leak."""
    row = {child.name: memory_kib(child.process.pid, ("VmRSS",)) for child in children}
    backends = client_backends(database)
    row["postgres"] = sum(memory_kib(pid, ("RssAnon",)) for pid in backends)
    return row, len(backends)


# --- traffic -----------------------------------------------------------------------------------------


async def create_operators(url: str, count: int) -> list[str]:
    engine = create_engine(url)
    names = [f"soak{index:02d}" for index in range(count)]
    try:
        registry = PermissionRegistry.build(load_plugins())
        async with session_factory(engine)() as session, session.begin():
            for name in names:
                await create_account(
                    session, PasswordPolicy(FAST_ARGON2), registry, username=name, password=PASSWORD,
                    role=Role.OPERATOR,
                )  # fmt: skip
    finally:
        await engine.dispose()
    return names


@dataclass
class Desk:
    """An operator's browser: signed in, online, reading the desk's event stream (again after a drop)."""

    base_url: str
    username: str
    events: int = 0
    reconnects: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as client:
            await self._sign_in(client)
            while True:
                try:
                    async with client.stream("GET", "/desk/events", timeout=None) as stream:
                        self.connected.set()
                        async for line in stream.aiter_lines():
                            if line.startswith("event: "):
                                self.events += 1
                except httpx.HTTPError:
                    pass
                self.reconnects += 1
                await asyncio.sleep(1)

    async def _sign_in(self, client: httpx.AsyncClient) -> None:
        """Through the form; a busy answer (every hashing worker taken) is tried again when it says."""
        for _ in range(60):
            token = await self._csrf(client, "/login")
            data = {"csrf_token": token, "username": self.username, "password": PASSWORD}
            response = await client.post("/login", data=data)
            if response.status_code != 503:
                break
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        if response.status_code != 303:
            raise RuntimeError(f"{self.username}: sign-in refused ({response.status_code})")
        token = await self._csrf(client, "/desk")
        response = await client.post("/desk/presence", data={"csrf_token": token, "presence": "online"})
        if response.status_code != 303:
            raise RuntimeError(f"{self.username}: presence refused ({response.status_code})")

    @staticmethod
    async def _csrf(client: httpx.AsyncClient, path: str) -> str:
        found = _CSRF.search((await client.get(path, headers={"accept": "text/html"})).text)
        if found is None:
            raise RuntimeError(f"no CSRF token on {path}")
        return found.group(1)


async def produce_mts(url: str, prefix: str, rate: float, stopping: asyncio.Event) -> int:
    """MTs at ``rate`` per second until ``stopping``: a transaction and a wake-up every 100 ms."""
    engine = create_engine(url, pool_size=1, max_overflow=0, application_name="soak producer")
    sessions = session_factory(engine)
    inserts = Store.for_engine(engine).mt_inserts  # the producers' (API, desk): one array statement
    bus = create_bus(MQTT_URL, topic_prefix=prefix, client_id=f"{prefix}-producer")
    queued = 0
    started = time.monotonic()
    try:
        async with bus:
            while not stopping.is_set():
                due = int((time.monotonic() - started) * rate)
                mts = [
                    NewMT(
                        kind=MTKind.PUSH,
                        carrier=CARRIER,
                        source=SHORT_CODE,
                        destination=f"3461{index % 5000:07d}",
                        text=f"soak {index} hola, soy Laura",
                        request_receipt=True,
                    )
                    for index in range(queued, due)
                ]
                if mts:
                    async with sessions() as session, session.begin():
                        ids = await queue_mts(session, mts, datetime.now(UTC), inserts)
                    queued = due
                    await bus.publish(bus.topics.outbox_queued(), {"mt_id": max(ids)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 0.1)
    finally:
        await engine.dispose()
    return queued


def metrics_port(args: argparse.Namespace, index: int) -> int:
    return int(args.base_port) + 3 + index


_DUPLICATES = re.compile(r"^gatewayd_mo_duplicates_total\{[^}]*\} (\S+)$", re.MULTILINE)


async def mo_duplicates(args: argparse.Namespace) -> int:
    """The MOs the daemons took for redeliveries (``gatewayd_mo_duplicates_total``, summed): each was
    acknowledged and is stored once, under the MO it repeats."""
    total = 0.0
    async with httpx.AsyncClient(timeout=10) as client:
        for index in range(args.daemons):
            page = await client.get(f"http://127.0.0.1:{metrics_port(args, index)}/metrics")
            page.raise_for_status()
            total += sum(float(value) for value in _DUPLICATES.findall(page.text))
    return int(total)


async def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            stored = (await session.execute(text("SELECT count(*) FROM mo_messages"))).scalar_one()
            rows = (
                await session.execute(text("SELECT status, count(*) FROM mt_messages GROUP BY status"))
            ).all()
    finally:
        await engine.dispose()
    return {"mo_stored": int(stored), **{f"mt_{status}": int(count) for status, count in rows}}


# --- the run -----------------------------------------------------------------------------------------


def growth(samples: list[tuple[float, dict[str, int]]], warmup: float) -> dict[str, float]:
    """Per process, % from the first sample at or after ``warmup`` seconds to the last sample."""
    baseline = next((row for at, row in samples if at >= warmup), samples[-1][1])
    last = samples[-1][1]
    return {name: (last[name] - kib) / kib * 100 if kib else 0.0 for name, kib in baseline.items()}


@dataclass
class Run:
    """What one soak saw: the memory samples and the traffic."""

    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    backends: list[int] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    duplicates: int = 0
    desk_events: int = 0
    reconnects: int = 0
    stored: dict[str, int] = field(default_factory=dict)


async def start_stack(args: argparse.Namespace, directory: Path, url: str, prefix: str) -> list[Child]:
    """The simulator, the daemons and the panel; returns once they listen."""
    simulator_file = directory / "simulator.toml"
    simulator_file.write_text(simulator_toml(args), encoding="utf-8")
    config = directory / "gatewayd.toml"
    config.write_text(gatewayd_toml(url, prefix, args), encoding="utf-8")
    children = [await start("simulator", directory, "simulator", "--config", str(simulator_file))]
    await wait_http(f"http://127.0.0.1:{args.base_port}/api/counters", children)
    for index in range(args.daemons):
        instance = {
            "GATEWAYD_DAEMON_INSTANCE": f"{prefix}-{index + 1}",
            "GATEWAYD_METRICS_LISTEN": f"127.0.0.1:{metrics_port(args, index)}",
        }
        children.append(
            await start(f"daemon{index + 1}", directory, "run", "--config", str(config), environment=instance)
        )
    children.append(await start("panel", directory, "panel", "--config", str(config)))
    await wait_http(f"http://127.0.0.1:{args.base_port + 2}/login", children)
    return children


async def open_desks(panel_url: str, operators: list[str]) -> tuple[list[Desk], list[asyncio.Task[None]]]:
    """Each operator signed in, online and reading the desk's stream."""
    desks = [Desk(panel_url, name) for name in operators]
    tasks = [asyncio.create_task(desk.run(), name=f"desk[{desk.username}]") for desk in desks]
    async with asyncio.timeout(120):
        for desk, task in zip(desks, tasks, strict=True):
            connected = asyncio.ensure_future(desk.connected.wait())
            await asyncio.wait({connected, task}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                connected.cancel()
                task.result()
    return desks, tasks


async def traffic(
    args: argparse.Namespace, url: str, prefix: str, children: list[Child], desks: list[Desk], run: Run
) -> None:
    """The load for ``--minutes``, sampling memory every ``--sample-seconds``."""
    database = url.rsplit("/", 1)[1]
    duration = args.minutes * 60
    names = [child.name for child in children] + ["postgres"]
    stopping = asyncio.Event()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{args.base_port}", timeout=10) as control:
        load = {"carrier": CARRIER, "subscribers": 5000, "rate": args.mo_rate, "reply_probability": 0}
        (await control.post("/api/load", json=load)).raise_for_status()
        producer = asyncio.create_task(produce_mts(url, prefix, args.mt_rate, stopping))
        try:
            columns = "  ".join(f"{name + ' MiB':>11s}" for name in names)
            counted = f"{'backends':>8s}  {'MO acked':>9s} {'MT acked':>9s} {'events':>9s}"
            print(f"{'min':>6s}  {columns}  {counted}", flush=True)
            started = time.monotonic()
            while True:
                at = time.monotonic() - started
                check_alive(children)
                if producer.done():
                    producer.result()
                counters = (await control.get("/api/counters")).json()["carriers"][CARRIER]
                row, backends = sample(children, database)
                run.samples.append((at, row))
                run.backends.append(backends)
                events = sum(desk.events for desk in desks)
                memory = "  ".join(f"{row[name] / 1024:11.1f}" for name in names)
                print(
                    f"{at / 60:6.1f}  {memory}  {backends:8d}  {counters['mo_delivered']:9d}"
                    f" {counters['mt_accepted']:9d} {events:9d}",
                    flush=True,
                )
                if at >= duration:
                    break
                await asyncio.sleep(min(args.sample_seconds, duration - at))
        finally:
            stopping.set()
            with contextlib.suppress(httpx.HTTPError):
                await control.delete("/api/load", params={"carrier": CARRIER})
        run.queued = await producer
        run.counters = (await control.get("/api/counters")).json()["carriers"][CARRIER]
        run.duplicates = await mo_duplicates(args)
    run.desk_events = sum(desk.events for desk in desks)
    run.reconnects = sum(desk.reconnects for desk in desks)


def report(args: argparse.Namespace, run: Run) -> int:
    warmup = (args.warmup_minutes if args.warmup_minutes is not None else min(10, args.minutes / 3)) * 60
    grown = growth(run.samples, warmup)
    elapsed = run.samples[-1][0]
    worst = max(grown.values())
    acknowledged = run.counters["mo_delivered"]
    delivered = run.stored.get("mt_delivered", 0)
    print(
        f"traffic: {acknowledged} MOs acknowledged ({acknowledged / elapsed:.0f}/s), "
        f"{run.stored['mo_stored']} stored, {run.duplicates} taken for redeliveries; "
        f"{run.queued} MTs queued ({run.queued / elapsed:.0f}/s), "
        f"{delivered} delivered, {run.counters['receipts_sent']} receipts sent; "
        f"{run.desk_events} desk events read, {run.reconnects} stream reconnects"
    )
    shown = ", ".join(f"{name} {value:+.1f} %" for name, value in grown.items())
    print(f"growth after the first {warmup / 60:g} min: {shown}")
    fields: dict[str, object] = {
        "minutes": f"{elapsed / 60:.1f}",
        "daemons": args.daemons,
        "desks": args.desks,
        "mo_per_s": f"{acknowledged / elapsed:.0f}",
        "mt_per_s": f"{run.queued / elapsed:.0f}",
        "mo_stored": run.stored["mo_stored"],
        "mo_duplicates": run.duplicates,
        # acknowledged, yet neither stored nor matched to a stored MO: a lost MO (0 is the only answer)
        "mo_unaccounted": max(0, acknowledged - run.stored["mo_stored"] - run.duplicates),
        "mt_delivered": delivered,
        "desk_events": run.desk_events,
        "reconnects": run.reconnects,
        "warmup_min": f"{warmup / 60:g}",
        **{f"{name}_growth_pct": f"{value:.1f}" for name, value in grown.items()},
        **{f"{name}_mib": f"{run.samples[-1][1][name] / 1024:.0f}" for name in grown},
        "pg_backends_first": run.backends[0],
        "pg_backends_last": run.backends[-1],
        "max_growth_pct": f"{worst:.1f}",
        "target_met": "yes" if worst < TARGET_GROWTH_PCT else "no",
    }
    print("RESULT " + " ".join(f"{key}={value}" for key, value in fields.items()))
    return 0 if worst < TARGET_GROWTH_PCT else 1


def prepare_server(server: PrivatePostgres, directory: Path) -> None:
    """``initdb`` in the run's directory; as root the server runs as postgres and must reach it."""
    directory.chmod(0o755)
    server.directory.mkdir()
    server.init()


@contextlib.asynccontextmanager
async def soak_database(args: argparse.Namespace, directory: Path) -> AsyncIterator[str]:
    """A PostgreSQL server of the soak's own with the server's defaults (``initdb``: autovacuum on, as in
    production), or with ``--shared-postgres`` a scratch database on the shared server, whose settings
    are the tests' (this machine's runs autovacuum off: in an hour ``mt_messages`` gathered 2.3 million
    dead row versions and the MT claims slowed from 1 ms to seconds)."""
    if args.shared_postgres:
        async with scratch_database() as url:
            yield url
        return
    server = PrivatePostgres(directory / "postgresql", free_port(iter(range(args.base_port + 10, 29000))))
    await asyncio.to_thread(prepare_server, server, directory)
    await asyncio.to_thread(server.start)
    try:
        # a name of its own: the backends are told apart by the database in their process title
        name = f"echat_soak_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(
            host="127.0.0.1", port=server.port, user="postgres", database="postgres"
        )
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        yield server.url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await asyncio.to_thread(server.stop)


async def soak(args: argparse.Namespace) -> int:
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    run = Run()
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        async with soak_database(args, Path(workdir)) as url:
            await upgrade(url)
            operators = await create_operators(url, args.desks)
            children: list[Child] = []
            tasks: list[asyncio.Task[None]] = []
            try:
                children = await start_stack(args, Path(workdir), url, prefix)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{args.base_port}") as control:
                    await wait_bound(control, args.binds, children)
                desks, tasks = await open_desks(f"http://127.0.0.1:{args.base_port + 2}", operators)
                print(
                    f"soak: {args.daemons} daemons sharing {args.binds} binds, a panel with {args.desks} desk"
                    f" streams, {args.mo_rate:g} MO/s and {args.mt_rate:g} MT/s with receipts,"
                    f" {args.minutes:g} min",
                    flush=True,
                )
                await traffic(args, url, prefix, children, desks, run)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await stop(children)
            run.stored = await counts(url)
    return report(args, run)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--daemons", type=int, default=2)
    parser.add_argument(
        "--binds", type=int, default=2, help="the carrier's bind slots, shared by the daemons"
    )
    parser.add_argument("--desks", type=int, default=50, help="operators with a desk event stream open")
    parser.add_argument("--mo-rate", type=float, default=300.0, help="MOs per second (the simulator's load)")
    parser.add_argument("--mt-rate", type=float, default=300.0, help="MTs queued per second, with receipts")
    parser.add_argument("--receipt-delay", type=float, default=1.0, help="seconds from submit to receipt")
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--warmup-minutes", type=float, help="growth is measured after it (default 10)")
    parser.add_argument("--base-port", type=int, default=18820, help="control API; +1 SMPP, +2 panel")
    parser.add_argument(
        "--shared-postgres",
        action="store_true",
        help="a scratch database on the shared server instead of a server of its own (its settings)",
    )
    return asyncio.run(interruptible(soak(parser.parse_args())))


async def interruptible(run: Coroutine[Any, Any, int]) -> int:
    """``run``, cancelled by SIGTERM or SIGINT (ignored in a background job, where Python raises no
    KeyboardInterrupt): the children are stopped and the scratch database dropped on the way out."""
    task = asyncio.ensure_future(run)
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        print("soak: interrupted, everything it started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
