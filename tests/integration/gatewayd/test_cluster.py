"""Several ``gatewayd run`` processes with the same configuration on one PostgreSQL and one Mosquitto
(issue 15): each bind slot has one owner at a time, the slots spread and move when a daemon joins,
is killed, stops or is cut off from the database, and the simulator (the carrier) never sees more
binds of its system_id at once than configured."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.mt import WINDOWS_AHEAD
from gatewayd.store.cluster import BindLease, DaemonRecord
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import MTMessage, MTStatusHistory
from simulator.core import Simulator
from simulator.profiles import CarrierProfile, SimulatorConfig
from tests.integration.gatewayd.faults import mo_texts, mt_status_counts, queue_many
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    VODAFONE,
    VODAFONE_SHORT_CODE,
    make_config,
    running_daemon,
    simulator_config,
)
from tests.waiting import eventually

REPOSITORY = Path(__file__).resolve().parents[3]
SYSTEM_ID = "echat"
#: Movistar: two binds of two sessions each.
SLOTS = 4


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """The carriers allow far more binds than configured: an excess would be seen, not refused."""
    base = simulator_config()
    carriers = tuple(carrier.model_copy(update={"max_binds": 32}) for carrier in base.carriers)
    config: SimulatorConfig = base.model_copy(update={"carriers": carriers})
    async with Simulator(config) as running:
        yield running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cluster_config(
    path: Path,
    database_url: str,
    simulator: Simulator,
    mqtt_url: str,
    topic_prefix: str,
    *,
    carriers: tuple[CarrierProfile, ...] | None = None,
    binds: tuple[int, int] = (2, 2),
    mt_claim_lease: float = 60.0,
    response_timeout: float = 5.0,
) -> Path:
    """One configuration for every daemon: ``binds`` = (binds, count) per carrier (Movistar only,
    unless ``carriers`` says otherwise)."""
    names = [MOVISTAR] if carriers is None else [carrier.name for carrier in carriers]
    codes = {MOVISTAR: MOVISTAR_SHORT_CODE, VODAFONE: VODAFONE_SHORT_CODE}
    passwords = {MOVISTAR: "secret1", VODAFONE: "secret2"}
    text = f"""
[database]
url = "{database_url}"
pool_size = 4
max_overflow = 2

[bus]
url = "{mqtt_url}"
topic_prefix = "{topic_prefix}"

[metrics]
enabled = false

[quiet_hours]
default = "off"

[daemon]
mt_retry_backoff_initial = 0.2
mt_retry_backoff_max = 1.0
mt_claim_lease = {mt_claim_lease}

[cluster]
lease = 6.0
heartbeat = 1.0
"""
    for name in names:
        text += f"""
[[carriers]]
name = "{name}"
country = "ES"
short_codes = ["{codes[name]}"]
system_id = "{SYSTEM_ID}"
password = "{passwords[name]}"
"""
        for index in range(1, binds[0] + 1):
            text += f"""
[[carriers.binds]]
name = "{name}-{index}"
host = "127.0.0.1"
port = {simulator.port(name)}
count = {binds[1]}
window = 10
tps = 100000
response_timeout = {response_timeout:g}
enquire_link_interval = 5
"""
    for name in names:
        text += f"""
[[services]]
name = "chat-{name}"
short_code = "{codes[name]}"
"""
    path.write_text(text, encoding="utf-8")
    return path


class Daemons:
    """``gatewayd run`` processes of one configuration, each its own instance (environment)."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.processes: dict[str, asyncio.subprocess.Process] = {}

    def log(self, instance: str) -> str:
        return (self.logs / f"{instance}.log").read_text(errors="replace")

    async def command(self, *args: str, instance: str = "cli", env: dict[str, str] | None = None) -> int:
        process = await self._spawn(args, instance, env or {})
        return await process.wait()

    async def start(self, instance: str, *, env: dict[str, str] | None = None) -> None:
        self.processes[instance] = await self._spawn(
            ("run", "--config", str(self.config)), instance, env or {}
        )

    async def _spawn(
        self, args: tuple[str, ...], instance: str, env: dict[str, str]
    ) -> asyncio.subprocess.Process:
        environment = {
            **os.environ,
            "PYTHONPATH": str(REPOSITORY),
            "GATEWAYD_DAEMON_INSTANCE": instance,
            **env,
        }
        with (self.logs / f"{instance}.log").open("ab") as output:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "echat",
                *args,
                cwd=REPOSITORY,
                env=environment,
                stdout=output,
                stderr=output,
            )

    def signal(self, instance: str, number: int) -> None:
        self.processes[instance].send_signal(number)

    async def wait(self, instance: str) -> int:
        return await self.processes.pop(instance).wait()

    async def close(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def daemons(config: Path, logs: Path) -> AsyncIterator[Daemons]:
    running = Daemons(config, logs)
    assert await running.command("migrate", "--config", str(config)) == 0, running.log("cli")
    try:
        yield running
    finally:
        await running.close()


async def owners(sessions: async_sessionmaker[AsyncSession]) -> Counter[str]:
    async with sessions() as session:
        return Counter((await session.execute(select(BindLease.owner))).scalars())


def binds(simulator: Simulator, carrier: str = MOVISTAR) -> dict[str, int]:
    counters = simulator.carrier(carrier).counters
    return {"now": counters.binds_now.get(SYSTEM_ID, 0), "max": counters.binds_max.get(SYSTEM_ID, 0)}


async def spread(
    sessions: async_sessionmaker[AsyncSession], simulator: Simulator, expected: dict[str, int], within: float
) -> None:
    async def reached() -> bool:
        return dict(await owners(sessions)) == expected and binds(simulator)["now"] == SLOTS

    await eventually(reached, within=within, interval=0.05, what=f"slots owned as {expected}")


async def test_daemons_with_one_configuration_split_the_binds_and_never_exceed_them(
    tmp_path: Path, pg_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str
) -> None:
    config = cluster_config(tmp_path / "gatewayd.toml", pg_url, simulator, mqtt_url, topic_prefix)
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with daemons(config, tmp_path) as running:
            # rows of daemons gone before: a retired name is forgotten after a week, yesterday's kept
            now = datetime.now(UTC)
            async with sessions.begin() as session:
                for instance, silent in (("retired", timedelta(days=8)), ("crashed", timedelta(days=1))):
                    session.add(
                        DaemonRecord(
                            instance=instance, host="gw0", pid=1, version="0.0.9", started_at=now - silent,
                            heartbeat_at=now - silent, stopping=False, status={},
                        )
                    )  # fmt: skip
            await running.start("node-a")
            await spread(sessions, simulator, {"node-a": 4}, within=30)
            await running.start("node-b")
            await spread(sessions, simulator, {"node-a": 2, "node-b": 2}, within=30)
            await running.start("node-c")
            # 4 slots over 3 daemons: the first in name order gets 2
            await spread(sessions, simulator, {"node-a": 2, "node-b": 1, "node-c": 1}, within=30)

            # receipts and MOs arrive on any daemon's bind and still reach their MT and conversation
            texts = [f"split mt {index}" for index in range(60)]
            await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, texts)
            for index in range(30):
                simulator.inject_mo(
                    MOVISTAR, f"+3460000{index:04d}", MOVISTAR_SHORT_CODE, f"split mo {index}"
                )

            async def all_through() -> bool:
                delivered = (await mt_status_counts(sessions))[MTStatus.DELIVERED] == len(texts)
                return delivered and len(await mo_texts(sessions)) == 30

            await eventually(all_through, within=60, what="every receipt applied and every MO stored")
            assert set((await mo_texts(sessions)).values()) == {1}

            status = tmp_path / "status.json"
            with status.open("wb") as output:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "echat", "status", "--json", "--config", str(config),
                    cwd=REPOSITORY, env={**os.environ, "PYTHONPATH": str(REPOSITORY)}, stdout=output,
                )  # fmt: skip
                assert await process.wait() == 0
            document = json.loads(status.read_text())
            assert document["unowned"] == {}
            daemons_seen = {daemon["instance"]: daemon for daemon in document["daemons"]}
            assert {name: d["state"] for name, d in daemons_seen.items()} == {
                **dict.fromkeys(["node-a", "node-b", "node-c"], "live"),
                "crashed": "gone",
            }
            assert len(daemons_seen["node-a"]["binds"]) == 2
            # a NOC engineer tells the daemons' sessions apart in pg_stat_activity
            activity = "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            async with sessions() as session:
                names = set((await session.execute(text(activity))).scalars())
            assert {"gatewayd node-a", "gatewayd node-a cluster", "gatewayd node-c"} <= names, names
            assert all(bind["carrier"] == MOVISTAR for bind in daemons_seen["node-a"]["binds"].values())
            assert {"mo_pending", "receipts_pending", "outbox_depth"} <= set(daemons_seen["node-b"]["lag"])

            # a second daemon under a running one's instance name refuses to start
            assert await running.command("run", "--config", str(config), instance="node-a") == 2
            assert "already running" in running.log("node-a")

            for name in ("node-a", "node-b", "node-c"):
                running.signal(name, signal.SIGTERM)
            for name in ("node-a", "node-b", "node-c"):
                assert await running.wait(name) == 0, running.log(name)[-3000:]
            # nobody owns the binds any more: status says so, with a failing exit status
            assert await running.command("status", "--config", str(config)) == 1
            assert "with no live owner" in running.log("cli")
        assert binds(simulator)["max"] == SLOTS, binds(simulator)
    finally:
        await engine.dispose()


async def test_a_killed_daemon_s_binds_and_mts_are_taken_over_and_a_stopped_one_hands_over_at_once(
    tmp_path: Path, pg_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str
) -> None:
    config = cluster_config(
        tmp_path / "gatewayd.toml", pg_url, simulator, mqtt_url, topic_prefix, mt_claim_lease=4.0
    )
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    metrics_port = free_port()
    counters = simulator.carrier(MOVISTAR).counters
    try:
        async with daemons(config, tmp_path) as running:
            await running.start("node-a")
            await spread(sessions, simulator, {"node-a": 4}, within=30)
            await running.start(
                "node-b",
                env={
                    "GATEWAYD_METRICS_ENABLED": "true",
                    "GATEWAYD_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
                },
            )
            await spread(sessions, simulator, {"node-a": 2, "node-b": 2}, within=30)

            # SIGKILL of node-a in the middle of a slow burst: its binds are up at node-b within 10 s
            simulator.set_faults(MOVISTAR, {"throttle": {"tps": 100}})
            texts = [f"cluster mt {index}" for index in range(400)]
            await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, texts, request_receipt=False)
            await eventually(lambda: counters.mt_accepted >= 50, within=30, what="the burst under way")
            running.signal("node-a", signal.SIGKILL)
            killed = time.monotonic()
            assert await running.wait("node-a") == -signal.SIGKILL
            await spread(sessions, simulator, {"node-b": 4}, within=20)
            took = time.monotonic() - killed
            print(f"SIGKILL: binds up at the other daemon {took:.2f} s after the kill")
            assert took <= 10.0

            # what node-a had claimed is claimed again after its claim lease and sent: every MT ends
            async def all_sent() -> bool:
                return (await mt_status_counts(sessions))[MTStatus.ACCEPTED] == len(texts)

            await eventually(all_sent, within=60, what="every MT accepted")
            async with sessions() as session:
                claimed_by = Counter(
                    (
                        await session.execute(
                            select(MTStatusHistory.detail).where(
                                MTStatusHistory.detail.like("attempt % by %")
                            )
                        )
                    ).scalars()
                )
            assert any(detail.endswith("by node-a") for detail in claimed_by)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}") as client:
                exposition = (await client.get("/metrics")).text
            reclaimed = next(
                float(line.split()[-1])
                for line in exposition.splitlines()
                if line.startswith("gatewayd_mt_reclaimed_total")
            )
            # at least one MT was in node-a's hands; at most what its two binds' windows (10) let it hold
            assert 1 <= reclaimed <= WINDOWS_AHEAD * 2 * 10, reclaimed
            assert 'gatewayd_instance_info{host="' in exposition and 'instance="node-b"' in exposition
            assert 'gatewayd_bind_slots_owned{carrier="movistar"} 4.0' in exposition

            # SIGTERM: node-c (joined) hands its slots over within 2 s
            await running.start("node-c")
            await spread(sessions, simulator, {"node-b": 2, "node-c": 2}, within=30)
            running.signal("node-c", signal.SIGTERM)
            stopping = time.monotonic()
            await spread(sessions, simulator, {"node-b": 4}, within=10)
            took = time.monotonic() - stopping
            print(f"SIGTERM: binds up at the other daemon {took:.2f} s after the signal")
            assert took <= 2.0
            assert await running.wait("node-c") == 0, running.log("node-c")[-3000:]
        assert binds(simulator)["max"] <= SLOTS, binds(simulator)
    finally:
        await engine.dispose()


async def test_a_stopping_daemon_keeps_its_leases_while_its_binds_drain_longer_than_a_lease(
    tmp_path: Path, pg_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str
) -> None:
    """SIGTERM with submissions in flight that the carrier answers 8 s late (the lease is 6 s): the
    daemon keeps renewing its leases until its binds are closed, so the other daemon binds the slots
    only after them and the carrier never sees more binds than configured."""
    config = cluster_config(
        tmp_path / "gatewayd.toml", pg_url, simulator, mqtt_url, topic_prefix, response_timeout=12.0
    )
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with daemons(config, tmp_path) as running:
            await running.start("node-a")
            await spread(sessions, simulator, {"node-a": 4}, within=30)
            await running.start("node-b")
            await spread(sessions, simulator, {"node-a": 2, "node-b": 2}, within=30)
            simulator.set_faults(MOVISTAR, {"slow": {"seconds": 8}})
            texts = [f"slow {i}" for i in range(200)]
            await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, texts, request_receipt=False)

            async def node_a_sending() -> bool:
                async with sessions() as session:
                    attempts = await session.execute(
                        select(MTStatusHistory.id).where(MTStatusHistory.detail.like("attempt % by node-a"))
                    )
                    return attempts.first() is not None

            await eventually(node_a_sending, within=30, what="node-a with submissions in flight")
            running.signal("node-a", signal.SIGTERM)
            stopping = time.monotonic()
            assert await running.wait("node-a") == 0, running.log("node-a")[-3000:]
            drained = time.monotonic() - stopping
            print(f"node-a drained and left {drained:.2f} s after SIGTERM")
            assert drained > 6.0  # longer than a lease: what this test is about
            await spread(sessions, simulator, {"node-b": 4}, within=20)
        assert binds(simulator)["max"] == SLOTS, binds(simulator)
    finally:
        await engine.dispose()


async def test_a_daemon_giving_slots_up_to_a_slow_carrier_keeps_renewing_the_others(
    tmp_path: Path, pg_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str
) -> None:
    """A daemon joins while the carrier answers 8 s late (the lease is 6 s): the one giving two slots up
    waits for their submissions and unbinds longer than a lease, and meanwhile keeps renewing the
    leases of the slots it keeps, so it never fences them."""
    config = cluster_config(
        tmp_path / "gatewayd.toml", pg_url, simulator, mqtt_url, topic_prefix, response_timeout=12.0
    )
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with daemons(config, tmp_path) as running:
            await running.start("node-a")
            await spread(sessions, simulator, {"node-a": 4}, within=30)
            simulator.set_faults(MOVISTAR, {"slow": {"seconds": 8}})
            texts = [f"slow {i}" for i in range(200)]
            await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, texts, request_receipt=False)
            await eventually(
                lambda: simulator.carrier(MOVISTAR).counters.mt_accepted >= 30,
                within=30,
                what="node-a's binds with submissions in flight",
            )
            await running.start("node-b")
            await spread(sessions, simulator, {"node-a": 2, "node-b": 2}, within=40)
            assert "cluster.fenced" not in running.log("node-a")
            assert "cluster.released" in running.log("node-a")
        assert binds(simulator)["max"] == SLOTS, binds(simulator)
    finally:
        await engine.dispose()


async def test_two_daemons_started_at_once_under_one_instance_name_one_refuses(
    tmp_path: Path, pg_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str
) -> None:
    """Two units on one host left with the default instance name, started together: joining takes the
    name in one transaction, so the second waits for the first and refuses instead of both owning (and
    binding) the same slots."""
    config = cluster_config(tmp_path / "gatewayd.toml", pg_url, simulator, mqtt_url, topic_prefix)
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with daemons(config, tmp_path) as running:
            for name in ("twin-1", "twin-2"):  # the log's name; the instance is "twin" for both
                await running.start(name, env={"GATEWAYD_DAEMON_INSTANCE": "twin"})
            first, second = running.processes["twin-1"], running.processes["twin-2"]
            done, _ = await asyncio.wait(
                {asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())},
                timeout=30,
                return_when=asyncio.FIRST_COMPLETED,
            )
            assert len(done) == 1, "neither twin refused to start"
            assert done.pop().result() == 2
            await spread(sessions, simulator, {"twin": 4}, within=30)
            assert [p.returncode for p in (first, second)].count(None) == 1
        assert binds(simulator)["max"] == SLOTS, binds(simulator)
    finally:
        await engine.dispose()


async def test_a_daemon_without_a_carrier_s_bind_does_not_claim_its_mts(
    tmp_path: Path, pg_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str
) -> None:
    """Two carriers of one bind each, two daemons: each owns one carrier's bind and claims only its MTs."""
    carriers = tuple(simulator.config.carriers)
    config = cluster_config(
        tmp_path / "gatewayd.toml", pg_url, simulator, mqtt_url, topic_prefix, carriers=carriers, binds=(1, 1)
    )
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with daemons(config, tmp_path) as running:
            await running.start("node-a")
            await running.start("node-b")

            async def one_each() -> bool:
                return dict(await owners(sessions)) == {"node-a": 1, "node-b": 1}

            await eventually(one_each, within=30, interval=0.05, what="one bind each")
            async with sessions() as session:
                owner_of = dict((await session.execute(select(BindLease.carrier, BindLease.owner))).all())
            # carriers dealt in name order to the daemons in name order
            assert owner_of == {MOVISTAR: "node-a", VODAFONE: "node-b"}
            await eventually(
                lambda: binds(simulator, MOVISTAR)["now"] == 1 and binds(simulator, VODAFONE)["now"] == 1,
                what="both carriers bound",
            )
            await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, [f"m {i}" for i in range(40)])
            await queue_many(sessions, VODAFONE, VODAFONE_SHORT_CODE, [f"v {i}" for i in range(40)])

            async def all_accepted() -> bool:
                counts = await mt_status_counts(sessions)
                return counts[MTStatus.ACCEPTED] + counts[MTStatus.DELIVERED] == 80

            await eventually(all_accepted, within=60, what="every MT sent")
            async with sessions() as session:
                rows = (
                    await session.execute(
                        select(MTMessage.carrier, MTStatusHistory.detail)
                        .join(MTStatusHistory, MTStatusHistory.mt_id == MTMessage.id)
                        .where(MTStatusHistory.detail.like("attempt % by %"))
                    )
                ).all()
            claimers = {(carrier, detail.rsplit(" ", 1)[-1]) for carrier, detail in rows}
            assert claimers == {(MOVISTAR, "node-a"), (VODAFONE, "node-b")}
    finally:
        await engine.dispose()


class BlackHole:
    """A TCP proxy to PostgreSQL that can stop forwarding without closing anything: the connections
    stay open and silent, as across a network split."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.holes = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> BlackHole:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def blackhole(self) -> None:
        self.holes.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if self.holes.is_set():
                await asyncio.Event().wait()  # accepted, never answered
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        finally:
            for side in (writer, upstream_writer):
                if side is not None:
                    side.close()
                    with contextlib.suppress(Exception):
                        await side.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if self.holes.is_set():
                await asyncio.Event().wait()
            writer.write(data)
            await writer.drain()
        writer.close()  # one side closed: so does the other


async def test_a_daemon_cut_off_from_the_database_unbinds_before_another_binds_its_slots(
    tmp_path: Path, pg_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str
) -> None:
    url = make_url(pg_url)
    config = cluster_config(tmp_path / "gatewayd.toml", pg_url, simulator, mqtt_url, topic_prefix)
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with (
            BlackHole(url.host or "127.0.0.1", url.port or 5432) as hole,
            daemons(config, tmp_path) as running,
        ):
            through_hole = url.set(port=hole.port).render_as_string(hide_password=False)
            await running.start("node-a")
            await spread(sessions, simulator, {"node-a": 4}, within=30)
            await running.start("node-b", env={"GATEWAYD_DATABASE_URL": through_hole})
            await spread(sessions, simulator, {"node-a": 2, "node-b": 2}, within=30)
            assert binds(simulator)["max"] == SLOTS

            hole.blackhole()
            cut = time.monotonic()
            try:
                await spread(sessions, simulator, {"node-a": 4}, within=20)
            except AssertionError as error:
                logs = "\n".join(f"--- {name}\n{running.log(name)[-4000:]}" for name in ("node-a", "node-b"))
                raise AssertionError(f"{error}; binds {binds(simulator)}\n{logs}") from None
            print(f"cut off: its binds up at the other daemon {time.monotonic() - cut:.2f} s after the cut")
            # node-b dropped its binds by its own clock before its leases expired and node-a took them
            assert binds(simulator)["max"] == SLOTS, binds(simulator)
            await eventually(lambda: "cluster.fenced" in running.log("node-b"), what="node-b fenced")
    finally:
        await engine.dispose()


async def test_a_reload_releases_the_slots_removed_and_takes_the_slots_added(
    tmp_path: Path, pg_url: str, simulator: Simulator
) -> None:
    """SIGHUP with fewer binds: their sessions unbind and their leases go; with more: they are taken."""
    config = make_config(tmp_path, pg_url, simulator, binds_per_carrier=2)
    engine = create_engine(pg_url)
    sessions = session_factory(engine)

    async def leased() -> set[str]:
        async with sessions() as session:
            return set((await session.execute(select(BindLease.slot))).scalars())

    try:
        async with running_daemon(config, binds_up=4) as daemon:
            assert await leased() == {"movistar-1", "movistar-2", "vodafone-1", "vodafone-2"}
            daemon.reload(make_config(tmp_path, pg_url, simulator, binds_per_carrier=1))

            async def released() -> bool:
                return await leased() == {"movistar-1", "vodafone-1"} and binds(simulator)["now"] == 1

            await eventually(released, what="the removed binds unbound and their leases given up")
            daemon.reload(make_config(tmp_path, pg_url, simulator, binds_per_carrier=2))

            async def taken() -> bool:
                # every carrier's, on both sides: a lease is taken before its bind is up
                assert daemon.binds is not None
                return (
                    len(await leased()) == 4
                    and binds(simulator)["now"] == binds(simulator, VODAFONE)["now"] == 2
                    and daemon.binds.binds_up() == 4
                )

            await eventually(taken, what="the added binds leased and bound")
        assert await leased() == set()  # a clean stop gives every lease up
        assert binds(simulator)["max"] == 2
    finally:
        await engine.dispose()
