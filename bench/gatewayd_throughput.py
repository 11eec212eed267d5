"""gatewayd throughput against the bundled simulator over 127.0.0.1, on SQLite and PostgreSQL.

Figures, per database:
  * durable MO ingest per second: MOs queued at the SMSC, the daemon binds, each deliver_sm answered
    only after its group commit; timed from the bind to the last deliver_sm_resp. First from new
    numbers (a subscriber and a conversation created per MO), then the same numbers again (known
    subscribers, open conversations: ``mo_steady_per_s``);
  * MT per second from outbox to accepted (submit_sm_resp), receipts off;
  * MT with receipts per second: queued -> submitted -> receipt -> ``delivered`` in the database;
  * p50 / p99 MO-to-event latency: MOs at a steady rate, from injection to the bus event.

Run: ``.venv/bin/python bench/gatewayd_throughput.py`` (PostgreSQL on 127.0.0.1:5432 as in the tests;
``--no-postgres`` for SQLite only; ``--without-rollups`` to measure the daemon without the reports'
rollups, as ``bench/reports.py`` does). Ends with one ``RESULT key=value ...`` line.

``--daemons N``: N ``gatewayd run`` processes instead of the daemon in this process, with the same
configuration file (each its own ``[daemon] instance`` through ``GATEWAYD_DAEMON_INSTANCE``) on one
PostgreSQL database and the MQTT bus (127.0.0.1:1883, a topic prefix of their own): with bind ownership
they split the binds. A phase starts once every daemon holds its share of the binds at the SMSC; the
MTs are queued inside the timed window by this process (batches of 1,000 and a wake-up on the bus, as
producers do). Each phase prints the total rate and the CPU per message of each daemon, of PostgreSQL
(the benchmark database's backends; the producer's apart) and of the simulator. No latency phase
(it reads the daemon's bus in this process). ``--daemons 1`` is the comparable one-daemon figure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _measure import CPUSnapshot, connections_to, postgres_backends  # noqa: E402
from scratch_postgres import scratch_database  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from gatewayd.bus import create_bus  # noqa: E402
from gatewayd.config import Config, load_config  # noqa: E402
from gatewayd.daemon import Daemon  # noqa: E402
from gatewayd.schema import upgrade  # noqa: E402
from gatewayd.store.enums import MTKind, MTStatus  # noqa: E402
from gatewayd.store.messages import MOMessage, MTMessage  # noqa: E402
from gatewayd.store.mt.queue import queue_mts  # noqa: E402
from gatewayd.store.mt.values import NewMT  # noqa: E402
from simulator.core import Simulator  # noqa: E402
from simulator.profiles import CarrierProfile, DelayDistribution, ReceiptProfile, SimulatorConfig  # noqa: E402

CARRIER = "movistar"
SHORT_CODE = "997745"
MQTT_URL = "mqtt://127.0.0.1:1883"
ROOT = Path(__file__).resolve().parents[1]


def simulator_config() -> SimulatorConfig:
    receipts = ReceiptProfile(delay=DelayDistribution(kind="fixed", seconds=0.0))
    return SimulatorConfig(
        carriers=(
            CarrierProfile(
                name=CARRIER,
                country="ES",
                port=0,
                system_id="echat",
                password="secret1",
                short_codes=(SHORT_CODE,),
                receipts=receipts,
                deliver_window=1000,
                queue_size=1_000_000,
                max_binds=8,
            ),
        ),
        control_port=None,
        mt_store_size=1000,
        seed=1,
    )


def daemon_config(directory: Path, database_url: str, port: int, binds: int) -> Config:
    return load_config(daemon_config_file(directory, database_url, port, binds), environ={})


def daemon_config_file(
    directory: Path, database_url: str, port: int, binds: int, bus: str = "memory://", prefix: str = "echat"
) -> Path:
    config = f"""
[database]
url = "{database_url}"
pool_size = 10

[bus]
url = "{bus}"
topic_prefix = "{prefix}"
buffer_size = 1000000

[metrics]
enabled = false

[daemon]
instance = "bench"
# Larger batches than the defaults (2000 / 500) for a burst of tens of thousands of messages; a claim
# of 1000 keeps each MT batch's results and receipts close together (5000 made them a second apart).
group_commit_max_batch = 5000
mt_claim_batch = 1000

[[carriers]]
name = "{CARRIER}"
country = "ES"
short_codes = ["{SHORT_CODE}"]
system_id = "echat"
password = "secret1"

[[carriers.binds]]
host = "127.0.0.1"
port = {port}
count = {binds}
window = 1000
tps = 1000000
response_timeout = 30
"""
    path = directory / f"bench-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(config, encoding="utf-8")
    return path


def msisdn(index: int) -> str:
    return f"+3460{index % 100_000:07d}"


# --- the simulator in its own process (the daemon gets a core of its own, as in production) ---------


def simulator_process(connection: Connection) -> None:
    asyncio.run(_simulator_main(connection))


async def _simulator_main(connection: Connection) -> None:
    loop = asyncio.get_running_loop()
    async with Simulator(simulator_config()) as simulator:
        connection.send(simulator.port(CARRIER))
        carrier = simulator.carrier(CARRIER)
        while True:
            command, *arguments = await loop.run_in_executor(None, connection.recv)
            if command == "stop":
                connection.send(None)
                return
            if command == "inject":
                prefix, count = arguments
                for index in range(count):
                    simulator.inject_mo(CARRIER, msisdn(index), SHORT_CODE, f"{prefix} {index} hola que tal")
                connection.send(None)
            elif command == "paced":
                prefix, rate, seconds = arguments
                sent: dict[str, float] = {}
                tick = 0.005
                per_tick = max(1, int(rate * tick))
                total = int(rate * seconds)
                for start in range(0, total, per_tick):
                    for index in range(start, min(total, start + per_tick)):
                        text = f"{prefix} {index}"
                        sent[text] = time.monotonic()
                        simulator.inject_mo(CARRIER, msisdn(index), SHORT_CODE, text)
                    await asyncio.sleep(tick)
                connection.send(sent)
            elif command == "counters":
                counters = carrier.counters
                connection.send(
                    {
                        "mo_delivered": counters.mo_delivered,
                        "mo_failed": counters.mo_failed,
                        "mt_accepted": counters.mt_accepted,
                        "receipts_sent": counters.receipts_sent,
                    }
                )
            elif command == "profile":
                simulator.update_profile(CARRIER, arguments[0])
                connection.send(None)
            elif command == "bound":
                connection.send(len(carrier.sessions))


class RemoteSimulator:
    """Commands to the simulator process; answers come back in order."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=simulator_process, args=(child,), daemon=True)

    async def __aenter__(self) -> RemoteSimulator:
        self._process.start()
        self.port: int = await self._recv()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.call("stop")
        self._process.join(10)

    async def _recv(self) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, self._connection.recv)

    async def call(self, *command: Any) -> Any:
        self._connection.send(command)
        return await self._recv()

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid


@asynccontextmanager
async def running(config: Config, binds: int) -> AsyncIterator[Daemon]:
    daemon = Daemon(config, poll_interval=0.5)
    task = asyncio.create_task(daemon.run())
    try:
        while daemon.binds is None or daemon.binds.binds_up() < binds:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        yield daemon
    finally:
        daemon.stop()
        await task


async def poll_until(check: Callable[[], Awaitable[bool]], interval: float) -> float:
    """perf_counter() at which ``check()`` became true (the other end is a process: it is polled)."""
    while True:
        if await check():
            return time.perf_counter()
        await asyncio.sleep(interval)


async def mo_ingest(
    simulator: RemoteSimulator, config: Config, binds: int, count: int, prefix: str = "bench mo"
) -> float:
    """MOs from msisdn(0 .. count-1); a new ``prefix`` makes new texts (not redeliveries) of earlier ones."""
    before = (await simulator.call("counters"))["mo_delivered"]
    await simulator.call("inject", prefix, count)  # queued at the SMSC: no receiver bound yet

    async def all_acknowledged() -> bool:
        return bool((await simulator.call("counters"))["mo_delivered"] - before >= count)

    async with running(config, binds):
        started = time.perf_counter()
        finished = await poll_until(all_acknowledged, 0.01)
    assert (await simulator.call("counters"))["mo_failed"] == 0
    return count / (finished - started)


async def queue_bulk(config: Config, count: int, tag: str) -> set[int]:
    """Queues ``count`` MTs; returns their ids."""
    from gatewayd.store.engine import create_engine, session_factory

    engine = create_engine(config.database.url)
    sessions = session_factory(engine)
    ids: set[int] = set()
    try:
        for start in range(0, count, 5000):
            now = datetime.now(UTC)
            mts = [
                NewMT(
                    kind=MTKind.PUSH,
                    carrier=CARRIER,
                    source=SHORT_CODE,
                    destination=msisdn(index)[1:],
                    text=f"{tag} {index} hola, soy Laura",
                )
                for index in range(start, min(count, start + 5000))
            ]
            async with sessions() as session, session.begin():
                ids.update(await queue_mts(session, mts, now))
    finally:
        await engine.dispose()
    return ids


async def mt_accepted(simulator: RemoteSimulator, config: Config, binds: int, count: int) -> float:
    await simulator.call("profile", {"receipts": {"enabled": False}})
    await queue_bulk(config, count, "accepted")
    before = (await simulator.call("counters"))["mt_accepted"]

    async def all_accepted() -> bool:
        return bool((await simulator.call("counters"))["mt_accepted"] - before >= count)

    async with running(config, binds):
        started = time.perf_counter()
        finished = await poll_until(all_accepted, 0.01)
    return count / (finished - started)


async def mt_with_receipts(simulator: RemoteSimulator, config: Config, binds: int, count: int) -> float:
    """Timed to the last ``delivered`` status event: the daemon publishes it after the commit that
    made the MT final, so counting events measures the database's state without polling it."""
    await simulator.call("profile", {"receipts": {"enabled": True, "delay": {"kind": "fixed", "seconds": 0}}})
    pending = await queue_bulk(config, count, "receipt")
    assert len(pending) == count
    async with running(config, binds) as daemon:
        assert daemon.bus is not None
        bus = daemon.bus
        async with bus.subscribe(bus.topics.all_mt_status(), buffer=1_000_000) as events:
            started = time.perf_counter()
            async with asyncio.timeout(300):
                async for event in events:
                    if event.payload["status"] == MTStatus.DELIVERED.value:
                        pending.discard(event.payload["id"])
                        if not pending:
                            break
            finished = time.perf_counter()
        assert daemon.sessions is not None
        async with daemon.sessions() as session:
            delivered = (
                await session.execute(
                    select(func.count())
                    .select_from(MTMessage)
                    .where(MTMessage.status == MTStatus.DELIVERED, MTMessage.text.like("receipt %"))
                )
            ).scalar()
        assert delivered == count, f"{delivered} of {count} MTs delivered in the database"
    return count / (finished - started)


async def mo_latency(
    simulator: RemoteSimulator, config: Config, binds: int, rate: int, seconds: float
) -> tuple[float, float]:
    received: dict[int, float] = {}
    async with running(config, binds) as daemon:
        assert daemon.bus is not None and daemon.sessions is not None
        bus = daemon.bus
        async with bus.subscribe(bus.topics.all_mo(), buffer=1_000_000) as events:

            async def collect() -> None:
                async for event in events:
                    received[event.payload["id"]] = time.monotonic()

            collector = asyncio.create_task(collect())
            sent: dict[str, float] = await simulator.call("paced", "latency", rate, seconds)
            async with asyncio.timeout(60):
                while True:  # events of the last MOs may still be on their way
                    if len(received) >= len(sent):
                        break
                    await asyncio.sleep(0.05)
            collector.cancel()
        async with daemon.sessions() as session:  # events carry ids: the texts sent are in the database
            rows = await session.execute(
                select(MOMessage.id, MOMessage.text).where(MOMessage.id.in_(received))
            )
            texts = {mo_id: text for mo_id, text in rows}
    latencies = sorted(received[mo_id] - sent[text] for mo_id, text in texts.items() if text in sent)
    return statistics.median(latencies), latencies[max(0, int(len(latencies) * 0.99) - 1)]


async def run_backend(label: str, url: str, args: argparse.Namespace, directory: Path) -> dict[str, float]:
    await upgrade(url)
    async with RemoteSimulator() as simulator:
        config = daemon_config(directory, url, simulator.port, args.binds)
        figures = {
            "mo_per_s": await mo_ingest(simulator, config, args.binds, args.mo),
            # the same numbers again: known subscribers writing into their open conversations
            "mo_steady_per_s": await mo_ingest(simulator, config, args.binds, args.mo, "bench mo again"),
            "mt_accepted_per_s": await mt_accepted(simulator, config, args.binds, args.mt),
            "mt_receipts_per_s": await mt_with_receipts(simulator, config, args.binds, args.mt),
        }
        p50, p99 = await mo_latency(simulator, config, args.binds, args.latency_rate, args.latency_seconds)
        figures["mo_event_p50_ms"] = p50 * 1000
        figures["mo_event_p99_ms"] = p99 * 1000
    print(
        f"{label:10s} MO ingest {figures['mo_per_s']:9.0f}/s"
        f" (known subscribers {figures['mo_steady_per_s']:.0f}/s)"
        f"   MT accepted {figures['mt_accepted_per_s']:9.0f}/s"
        f"   MT+receipt {figures['mt_receipts_per_s']:9.0f}/s"
        f"   MO->event p50 {figures['mo_event_p50_ms']:.1f} ms p99 {figures['mo_event_p99_ms']:.1f} ms",
        flush=True,
    )
    return figures


# --- --daemons N: gatewayd run processes --------------------------------------------------------------


class DaemonProcesses:
    """``count`` ``gatewayd run`` processes on one configuration file, until SIGTERM; entered once every
    one of them holds its share of the ``binds`` at the SMSC."""

    def __init__(self, config: Path, count: int, binds: int, simulator: RemoteSimulator) -> None:
        self.config, self.count, self.binds, self.simulator = config, count, binds, simulator
        self.processes: list[asyncio.subprocess.Process] = []
        self.logs = [config.with_name(f"daemon-{index + 1}.log") for index in range(count)]

    async def __aenter__(self) -> DaemonProcesses:
        for index, log in enumerate(self.logs):
            environment = {**os.environ, "GATEWAYD_DAEMON_INSTANCE": f"bench-{index + 1}"}
            command = [sys.executable, "-m", "echat", "run", "--config", str(self.config)]
            with log.open("ab") as output:
                self.processes.append(
                    await asyncio.create_subprocess_exec(
                        *command, cwd=ROOT, env=environment, stdout=output, stderr=output
                    )
                )
        async with asyncio.timeout(120):
            while not await self._split():
                self._check_running()
                await asyncio.sleep(0.1)
        return self

    def _check_running(self) -> None:
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.returncode is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"a daemon exited ({process.returncode}); its log ends:\n{tail}")

    async def _split(self) -> bool:
        """Every bind up, and each daemon bound at least its share (they rebalance as they start)."""
        share = self.binds // self.count
        held = [connections_to(pid, self.simulator.port) for pid in self.pids]
        return bool(await self.simulator.call("bound") >= self.binds) and min(held) >= share

    async def __aexit__(self, *exc_info: object) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                async with asyncio.timeout(60):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]


class Producer:
    """Queues MTs as the panel and the API do: a transaction per batch, then a wake-up on the bus."""

    def __init__(self, url: str, prefix: str) -> None:
        from gatewayd.store.engine import create_engine, session_factory

        self.engine = create_engine(url, pool_size=1, max_overflow=0)
        self.sessions = session_factory(self.engine)
        self.bus = create_bus(MQTT_URL, topic_prefix=prefix, client_id=f"{prefix}-producer")
        self.backend_pid = 0

    async def __aenter__(self) -> Producer:
        await self.bus.__aenter__()
        async with self.sessions() as session:
            self.backend_pid = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.bus.__aexit__(None, None, None)
        await self.engine.dispose()

    async def queue(self, count: int, tag: str) -> tuple[int, int]:
        """The (lowest, highest) id queued."""
        lowest = highest = 0
        for start in range(0, count, 1000):
            mts = [
                NewMT(
                    kind=MTKind.PUSH,
                    carrier=CARRIER,
                    source=SHORT_CODE,
                    destination=msisdn(index)[1:],
                    text=f"{tag} {index} hola, soy Laura",
                )
                for index in range(start, min(count, start + 1000))
            ]
            async with self.sessions() as session, session.begin():
                ids = list(await queue_mts(session, mts, datetime.now(UTC)))
            lowest, highest = lowest or min(ids), max(ids)
            await self.bus.publish(self.bus.topics.outbox_queued(), {"mt_id": highest})
        return lowest, highest

    async def delivered(self, lowest: int, highest: int) -> int:
        statement = text(
            "SELECT count(*) FROM mt_messages WHERE id BETWEEN :lo AND :hi AND status = 'delivered'"
        )
        async with self.sessions() as session:
            return int((await session.execute(statement, {"lo": lowest, "hi": highest})).scalar_one())


class CPUWindow:
    """CPU seconds of each daemon, of PostgreSQL (the database's backends but the producer's), of the
    producer's backend and of the simulator, from construction to :meth:`stop`."""

    def __init__(
        self, daemons: DaemonProcesses, simulator: RemoteSimulator, database: str, producer: int
    ) -> None:
        self.daemons, self.simulator, self.database, self.producer = daemons, simulator, database, producer
        self.groups = self._groups()
        self.before = CPUSnapshot.take(self.groups)
        self.started = time.perf_counter()

    def _groups(self) -> dict[str, set[int]]:
        groups = {f"daemon{index + 1}": {pid} for index, pid in enumerate(self.daemons.pids)}
        groups["pg"] = postgres_backends(self.database) - {self.producer}
        groups["pg_producer"] = {self.producer}
        groups["simulator"] = {self.simulator.pid}
        return groups

    def stop(self) -> tuple[float, dict[str, float]]:
        """Seconds elapsed and the CPU seconds of each group."""
        now = self._groups()
        groups = {name: pids | now.get(name, set()) for name, pids in self.groups.items()}
        return time.perf_counter() - self.started, CPUSnapshot.take(groups).since(self.before)


def phase_figures(label: str, count: int, seconds: float, cpu: dict[str, float]) -> dict[str, float]:
    """The rate and each group's CPU µs per message (and the daemons' sum), printed on one line."""
    cpu = {**cpu, "daemons": sum(used for name, used in cpu.items() if name.startswith("daemon"))}
    figures = {f"{label}_per_s": count / seconds}
    figures |= {f"{label}_{name}_us": used / count * 1e6 for name, used in cpu.items()}
    shown = "  ".join(f"{name} {used / count * 1e6:.1f}" for name, used in cpu.items())
    print(f"  {label:12s} {count / seconds:9.0f}/s   CPU µs per message: {shown}", flush=True)
    return figures


async def run_processes(url: str, args: argparse.Namespace, directory: Path) -> dict[str, float]:
    """The MO and MT figures with ``args.daemons`` ``gatewayd run`` processes on ``url``."""
    await upgrade(url)
    database = url.rsplit("/", 1)[1]
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    figures: dict[str, float] = {}
    print(f"postgresql: {args.daemons} gatewayd run processes, {args.binds} binds", flush=True)
    async with RemoteSimulator() as simulator, Producer(url, prefix) as producer:
        config = daemon_config_file(directory, url, simulator.port, args.binds, MQTT_URL, prefix)

        def daemons() -> DaemonProcesses:
            return DaemonProcesses(config, args.daemons, args.binds, simulator)

        def counted(counter: str, target: int) -> Callable[[], Awaitable[bool]]:
            async def reached() -> bool:
                return bool((await simulator.call("counters"))[counter] >= target)

            return reached

        # the same numbers twice: new subscribers first, then known ones writing into open conversations
        for label in ("mo", "mo_steady"):
            async with daemons() as running:
                window = CPUWindow(running, simulator, database, producer.backend_pid)
                before = (await simulator.call("counters"))["mo_delivered"]
                await simulator.call("inject", f"bench {label}", args.mo)
                await poll_until(counted("mo_delivered", before + args.mo), 0.01)
                figures |= phase_figures(label, args.mo, *window.stop())
        assert (await simulator.call("counters"))["mo_failed"] == 0

        await simulator.call("profile", {"receipts": {"enabled": False}})
        async with daemons() as running:
            window = CPUWindow(running, simulator, database, producer.backend_pid)
            before = (await simulator.call("counters"))["mt_accepted"]
            await producer.queue(args.mt, "accepted")
            await poll_until(counted("mt_accepted", before + args.mt), 0.01)
            figures |= phase_figures("mt_accepted", args.mt, *window.stop())

        receipts_at_once = {"enabled": True, "delay": {"kind": "fixed", "seconds": 0}}
        await simulator.call("profile", {"receipts": receipts_at_once})
        async with daemons() as running:
            window = CPUWindow(running, simulator, database, producer.backend_pid)
            lowest, highest = await producer.queue(args.mt, "receipt")

            async def all_delivered() -> bool:
                return await producer.delivered(lowest, highest) >= args.mt

            async with asyncio.timeout(300):
                await poll_until(all_delivered, 0.05)
            figures |= phase_figures("mt_receipts", args.mt, *window.stop())
    return figures


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        if args.daemons is not None:
            async with scratch_database() as url:
                figures = await run_processes(url, args, path)
            print(
                "RESULT " + " ".join(f"pg{args.daemons}d_{key}={value:.1f}" for key, value in figures.items())
            )
            return
        results["sqlite"] = await run_backend("sqlite", f"sqlite+aiosqlite:///{path}/bench.db", args, path)
        if not args.no_postgres:
            async with scratch_database() as url:
                results["pg"] = await run_backend("postgresql", url, args, path)
    fields = [
        f"{backend}_{key}={value:.1f}"
        for backend, figures in results.items()
        for key, value in figures.items()
    ]
    print("RESULT " + " ".join(fields))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mo", type=int, default=30_000, help="MOs for the ingest figure")
    parser.add_argument("--mt", type=int, default=20_000, help="MTs for each MT figure")
    parser.add_argument("--binds", type=int, default=4, help="binds to the simulated carrier")
    parser.add_argument(
        "--latency-rate", type=int, default=1000, help="MOs per second for the latency figure"
    )
    parser.add_argument("--latency-seconds", type=float, default=3.0)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--daemons",
        type=int,
        help="N gatewayd run processes on one PostgreSQL database (1 for the comparable one-daemon figure)",
    )
    parser.add_argument(
        "--without-rollups", action="store_true", help="no reports' rollups (see bench/reports.py)"
    )
    arguments = parser.parse_args()
    if arguments.without_rollups:
        from _rollups_off import switch_rollups_off

        switch_rollups_off()
    asyncio.run(main(arguments))
