"""The chaos harness (issue 15): the whole service as real processes on private instances, traffic in
both directions, faults at random times, then a check of the database against the simulator's ledger.

Started here, each on a port of its own: PostgreSQL (``initdb`` + ``pg_ctl``), Mosquitto, the simulator
(one carrier, a few bind slots, with ``--ledger``), ``gatewayd migrate``, three ``gatewayd run`` daemons
(the same configuration, distinct ``[daemon] instance``) and two ``gatewayd panel`` processes whose
integrator API (``/api/v1``, a key made with ``gatewayd apikey add``) queues the MTs.

Traffic: MOs through the simulator's control API at a steady rate, each with a unique token in its
text; MTs through the two panels in turn, each with a unique token; the simulator answers every
submit_sm and sends a receipt for it. Faults, at times drawn from a seeded RNG (``CHAOS_SEED`` replays
a run): daemons killed with SIGKILL and stopped with SIGTERM, each started again after a short random
pause (one daemon at least is always up); PostgreSQL restarted once (``pg_ctl restart -m fast``), the
broker once, the simulator once. Every fault is logged with its time.

Then traffic stops, the system drains (waited on, with a bound) and :func:`check_ledger` compares: every
MO the simulator saw acknowledged is stored exactly once; no MT is left queued or sending; every receipt
the simulator saw acknowledged is applied to its MT; MTs the simulator got more than once are each
explained by a SIGKILL while they were in flight; the binds per system_id never exceeded the configured
count.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from gatewayd.store.engine import create_engine
from simulator.ledger import read_ledger
from tests.chaos.services import Child, PrivateMosquitto, PrivatePostgres, free_port, listening
from tests.waiting import eventually

#: Port ranges of this harness (other suites and helpers use others).
#: Where the run's private services listen: each run probes from a random place of the range (two runs on
#: one machine, a developer's and CI's, would otherwise probe the same free ports before either binds them).
PORTS = range(21000, 29000)

CARRIER = "movistar"
SYSTEM_ID = "echat"
SHORT_CODE = "997745"
#: The carrier's bind slots (``[[carriers.binds]] count``): the most binds it may ever see at once.
BIND_SLOTS = 3
DAEMONS = 3
PANELS = 2
#: Subscribers who text and are texted.
SUBSCRIBERS = [f"3460070{index:04d}" for index in range(40)]
MO_TOKEN = "chaos-mo-"
MT_TOKEN = "chaos-mt-"


@dataclass(frozen=True)
class Plan:
    """How long and how hard: the test's short run or ``make chaos``'s five minutes."""

    duration: float
    seed: int
    mo_rate: float = 8.0
    mt_rate: float = 4.0
    #: Daemon faults (half SIGKILL, half SIGTERM, in a random order).
    daemon_faults: int = 4
    drain_within: float = 120.0

    @classmethod
    def from_environment(cls, duration: float, daemon_faults: int) -> Plan:
        """``CHAOS_SEED`` (a run's faults again), ``CHAOS_DURATION`` (seconds of traffic),
        ``CHAOS_DAEMON_FAULTS`` (default: the given count, or one per 15 s if more),
        ``CHAOS_MO_RATE`` and ``CHAOS_MT_RATE`` (per second) over the defaults."""
        environ = os.environ
        seed = int(environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 31))
        duration = float(environ.get("CHAOS_DURATION") or duration)
        faults = int(environ.get("CHAOS_DAEMON_FAULTS") or max(daemon_faults, round(duration / 15)))
        return cls(
            duration=duration,
            seed=seed,
            daemon_faults=faults,
            mo_rate=float(environ.get("CHAOS_MO_RATE") or cls.mo_rate),
            mt_rate=float(environ.get("CHAOS_MT_RATE") or cls.mt_rate),
        )


@dataclass
class FaultLog:
    """Every fault with its wall-clock time, printed as it happens."""

    started: float = field(default_factory=time.time)
    entries: list[tuple[float, str, str]] = field(default_factory=list)

    def add(self, kind: str, detail: str) -> float:
        now = time.time()
        self.entries.append((now, kind, detail))
        print(
            f"chaos +{now - self.started:7.2f}s {time.strftime('%H:%M:%S', time.localtime(now))} "
            f"{kind}: {detail}",
            flush=True,
        )
        return now

    def times(self, kind: str) -> list[float]:
        return [at for at, entry_kind, _ in self.entries if entry_kind == kind]


@dataclass
class Traffic:
    """What the harness offered: MOs the simulator took, MTs the panels queued (token -> MT id)."""

    #: MO token -> when the simulator's API took it.
    mo_offered: dict[str, float] = field(default_factory=dict)
    mo_refused: int = 0
    mt_queued: dict[str, int] = field(default_factory=dict)
    mt_given_up: list[str] = field(default_factory=list)
    mt_retries: int = 0


def _gatewayd_toml(pg: PrivatePostgres, broker: PrivateMosquitto, smpp_port: int) -> str:
    return f"""
[database]
url = "{pg.url}"
pool_size = 4
max_overflow = 4

[bus]
url = "{broker.url}"
topic_prefix = "chaos"

[log]
level = "INFO"

[metrics]
enabled = true
listen = "127.0.0.1:9105"

[panel]
listen = "127.0.0.1:8080"
secret_key = "chaos-harness-panel-secret-key"

[daemon]
instance = "chaos"
timezone = "UTC"
mt_claim_lease = 6.0
mt_retry_backoff_initial = 1.0
mt_retry_backoff_max = 4.0
mt_retry_limit = 50

[quiet_hours]
default = "off"

[webhooks]
enabled = false

[[carriers]]
name = "{CARRIER}"
country = "ES"
short_codes = ["{SHORT_CODE}"]
system_id = "{SYSTEM_ID}"
password = "secret1"

[[carriers.binds]]
name = "{CARRIER}-1"
host = "127.0.0.1"
port = {smpp_port}
bind_type = "transceiver"
count = {BIND_SLOTS}
window = 10
tps = 200.0
enquire_link_interval = 5.0
response_timeout = 5.0

[[services]]
name = "chat"
short_code = "{SHORT_CODE}"
"""


def _simulator_toml(smpp_port: int, api_port: int, ledger: Path) -> str:
    return f"""
[simulator]
ledger = "{ledger}"
[simulator.control]
host = "127.0.0.1"
port = {api_port}

[simulator.carriers.{CARRIER}]
country = "ES"
host = "127.0.0.1"
port = {smpp_port}
system_id = "{SYSTEM_ID}"
password = "secret1"
short_codes = ["{SHORT_CODE}"]
bind_types = ["transceiver"]
max_binds = 32
[simulator.carriers.{CARRIER}.receipts]
enabled = true
delay = {{ kind = "uniform", low = 0.2, high = 1.5 }}
statuses = {{ DELIVRD = 80, UNDELIV = 20 }}
"""


class Chaos:
    """The running system; :meth:`run` drives traffic and faults, :meth:`check` reads the outcome."""

    def __init__(self, directory: Path, plan: Plan) -> None:
        self.directory = directory
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.faults = FaultLog()
        self.traffic = Traffic()
        start = random.SystemRandom().randrange(PORTS.start, PORTS.stop - 100)
        candidates = iter(range(start, PORTS.stop))

        def port() -> int:
            return free_port(candidates)

        self.pg = PrivatePostgres(directory / "pg", port())
        self.broker = PrivateMosquitto(directory, port())
        self.smpp_port = port()
        self.api_port = port()
        self.panel_ports = [port() for _ in range(PANELS)]
        self.metrics_ports = [port() for _ in range(DAEMONS)]
        self.ledger = directory / "ledger.jsonl"
        self.config = directory / "gatewayd.toml"
        self.config.write_text(_gatewayd_toml(self.pg, self.broker, self.smpp_port), encoding="utf-8")
        simulator_config = directory / "simulator.toml"
        simulator_config.write_text(_simulator_toml(self.smpp_port, self.api_port, self.ledger), "utf-8")
        python = [sys.executable, "-m", "echat", "--config", str(self.config)]
        self.simulator = Child(
            "simulator",
            [
                sys.executable,
                "-m",
                "simulator",
                "simulator",
                "--config",
                str(simulator_config),
                "--seed",
                str(plan.seed),
            ],
            directory / "simulator.log",
        )
        self.daemons = [
            Child(
                f"daemon-{index + 1}",
                [*python, "run"],
                directory / f"daemon-{index + 1}.log",
                env={
                    **os.environ,
                    "GATEWAYD_DAEMON_INSTANCE": f"chaos-{index + 1}",
                    "GATEWAYD_METRICS_LISTEN": f"127.0.0.1:{self.metrics_ports[index]}",
                },
            )
            for index in range(DAEMONS)
        ]
        self.panels = [
            Child(
                f"panel-{index + 1}",
                [*python, "panel"],
                directory / f"panel-{index + 1}.log",
                env={**os.environ, "GATEWAYD_PANEL_LISTEN": f"127.0.0.1:{self.panel_ports[index]}"},
            )
            for index in range(PANELS)
        ]
        self.gatewayd = python
        self.api_key = ""
        #: The most binds of our system_id the simulator saw at once, over all its runs (None: it does
        #: not count them).
        self.max_binds: int | None = None
        #: What :meth:`drained` found still to do, last time it looked.
        self.waiting_for = ""
        self._restarts: list[asyncio.Task[None]] = []
        #: Daemons a fault is stopping or starting again: no other fault picks them meanwhile.
        self._bouncing: set[str] = set()

    # --- start and stop -----------------------------------------------------------------------------

    @property
    def children(self) -> list[Child]:
        return [*self.daemons, *self.panels, self.simulator, self.broker]

    def cleanup(self) -> None:
        """Everything down, whatever happened (SIGKILL to every process group, PostgreSQL stopped)."""
        for task in self._restarts:
            task.cancel()
        for child in self.children:
            child.kill_now()
        self.pg.stop()

    def _command(self, *argv: str) -> str:
        finished = subprocess.run([*self.gatewayd, *argv], capture_output=True, text=True, timeout=120)
        if finished.returncode != 0:
            raise RuntimeError(f"gatewayd {' '.join(argv)}: {finished.stderr.strip()}")
        return finished.stdout

    async def start(self) -> None:
        print(
            f"chaos: seed {self.plan.seed} (CHAOS_SEED={self.plan.seed} replays it), "
            f"{self.plan.duration:g} s, files in {self.directory}",
            flush=True,
        )
        self.pg.init()
        self.pg.start()
        self.broker.start()
        await eventually(lambda: listening(self.broker.port), within=20, what="the private broker listens")
        self._command("migrate")
        self.api_key = (
            self._command("apikey", "add", "--name", "chaos", "--scope", "send", "--scope", "read")
            .strip()
            .splitlines()[-1]
        )
        self.simulator.start()
        await eventually(lambda: listening(self.api_port), within=30, what="the simulator's API listens")
        for panel in self.panels:
            panel.start()
        await asyncio.gather(*(self.start_daemon(daemon) for daemon in self.daemons))
        for port in self.panel_ports:
            await eventually(lambda port=port: listening(port), within=60, what=f"the panel on {port}")
        await eventually(self._bound, within=60, what="the daemons bound to the simulator")

    async def _sim_status(self) -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                answer = await client.get(f"http://127.0.0.1:{self.api_port}/api/status")
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    async def _bound(self) -> bool:
        status = await self._sim_status()
        return status is not None and len(status["carriers"][0]["binds"]) >= BIND_SLOTS

    # --- faults -------------------------------------------------------------------------------------

    def schedule(self) -> list[tuple[float, str]]:
        """When each fault strikes, in seconds from the start of traffic."""
        plan, rng = self.plan, self.rng
        kinds = ["sigkill", "sigterm"] * (plan.daemon_faults // 2) + ["sigkill"] * (plan.daemon_faults % 2)
        kinds += ["postgresql", "broker", "simulator"]
        rng.shuffle(kinds)
        times = sorted(rng.uniform(0.08, 0.85) * plan.duration for _ in kinds)
        return list(zip(times, kinds, strict=True))

    async def _strike(self, kind: str) -> None:
        if kind in ("sigkill", "sigterm"):
            await eventually(
                lambda: len(self._ready_daemons()) >= 2, within=90, what="two daemons up before stopping one"
            )
            victim = self.rng.choice(self._ready_daemons())
            self._bouncing.add(victim.name)
            signum = signal.SIGKILL if kind == "sigkill" else signal.SIGTERM
            pause = self.rng.uniform(0.5, 4.0)
            self.faults.add(kind, f"{victim.name} (pid {victim.pid}), back after {pause:.1f} s")
            self._restarts.append(asyncio.create_task(self._bounce(victim, signum, pause)))
        elif kind == "postgresql":
            self.faults.add("postgresql", "pg_ctl restart -m fast")
            await self.pg.restart()
            self.faults.add("postgresql-up", "accepting connections")
        elif kind == "broker":
            self.faults.add("broker", f"mosquitto (pid {self.broker.pid}) stopped")
            await self.broker.stop()
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))
            self.broker.start()
            self.faults.add("broker-up", f"mosquitto (pid {self.broker.pid})")
        elif kind == "simulator":
            await self.sample_binds()  # its bind counters go with it
            self.faults.add("simulator", f"simulator (pid {self.simulator.pid}) stopped (SIGTERM)")
            await self.simulator.stop()
            self.faults.add("simulator-down", "exited")
            self.simulator.start()
            await eventually(lambda: listening(self.api_port), within=30, what="the simulator is back")
            self.faults.add("simulator-up", f"simulator (pid {self.simulator.pid})")

    def _ready_daemons(self) -> list[Child]:
        """Daemons up and not in the middle of a fault (being stopped, or started again)."""
        return [daemon for daemon in self.daemons if daemon.alive and daemon.name not in self._bouncing]

    async def _bounce(self, daemon: Child, signum: int, pause: float) -> None:
        try:
            status = await daemon.stop(signum, within=30.0)
            self.faults.add("daemon-exit", f"{daemon.name} exited with {status}")
            await asyncio.sleep(pause)
            await self.start_daemon(daemon)
        finally:
            self._bouncing.discard(daemon.name)

    async def start_daemon(self, daemon: Child) -> None:
        """Start ``daemon`` and see it serve its metrics; one that exits first (it found PostgreSQL
        restarting, say) is started again a second later, as systemd's Restart=on-failure would."""
        port = self.metrics_ports[self.daemons.index(daemon)]
        for _ in range(30):
            daemon.start()
            self.faults.add("daemon-start", f"{daemon.name} (pid {daemon.pid})")
            with contextlib.suppress(AssertionError):
                await eventually(lambda: listening(port) or not daemon.alive, within=60, what="")
            if daemon.alive:
                return
            assert daemon.process is not None
            self.faults.add("daemon-exit", f"{daemon.name} exited at start with {daemon.process.returncode}")
            await asyncio.sleep(1.0)
        raise AssertionError(f"{daemon.name} does not start: see {daemon.log}")

    async def _faults_loop(self, started: float) -> None:
        for at, kind in self.schedule():
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            await self._strike(kind)

    # --- traffic ------------------------------------------------------------------------------------

    async def _mo_loop(self, until: float) -> None:
        sequence = itertools.count(1)
        interval = 1.0 / self.plan.mo_rate
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.api_port}", timeout=2) as client:
            next_at = time.monotonic()
            while (now := time.monotonic()) < until:
                await asyncio.sleep(max(0.0, next_at - now))
                next_at += interval
                token = f"{MO_TOKEN}{next(sequence)}"
                body = {
                    "carrier": CARRIER,
                    "from": self.rng.choice(SUBSCRIBERS),
                    "to": SHORT_CODE,
                    "text": f"{token} hola",
                }
                try:
                    answer = await client.post("/api/mo", json=body)
                    offered = answer.is_success
                except httpx.HTTPError:
                    offered = False
                if offered:
                    self.traffic.mo_offered[token] = time.time()
                else:
                    self.traffic.mo_refused += 1

    async def _send_mt(self, clients: list[httpx.AsyncClient], number: int, deadline: float) -> None:
        token = f"{MT_TOKEN}{number}"
        body = {"to": "+" + self.rng.choice(SUBSCRIBERS), "text": f"{token} hola", "carrier": CARRIER}
        headers = {"Idempotency-Key": token}
        for attempt in itertools.count():
            client = clients[(number + attempt) % len(clients)]
            try:
                answer = await client.post("/api/v1/messages", json=body, headers=headers)
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code == 201:
                self.traffic.mt_queued[token] = answer.json()["id"]
                return
            if answer is not None and answer.status_code not in (429, 500, 502, 503, 504):
                raise AssertionError(f"MT {token} refused: {answer.status_code} {answer.text}")
            if time.monotonic() > deadline:
                self.traffic.mt_given_up.append(token)
                return
            self.traffic.mt_retries += 1
            await asyncio.sleep(0.25)

    async def _mt_loop(self, until: float) -> None:
        interval = 1.0 / self.plan.mt_rate
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5)
                )
                for port in self.panel_ports
            ]
            sends: list[asyncio.Task[None]] = []
            next_at = time.monotonic()
            for number in itertools.count(1):
                now = time.monotonic()
                if now >= until:
                    break
                await asyncio.sleep(max(0.0, next_at - now))
                next_at += interval
                sends.append(asyncio.create_task(self._send_mt(clients, number, until + 30.0)))
            await asyncio.gather(*sends)

    async def run(self) -> None:
        """Traffic with faults for the plan's duration, then every daemon up again."""
        started = time.monotonic()
        until = started + self.plan.duration
        self.faults.add("traffic", f"{self.plan.mo_rate:g} MO/s, {self.plan.mt_rate:g} MT/s")
        faults = asyncio.create_task(self._faults_loop(started))
        await asyncio.gather(self._mo_loop(until), self._mt_loop(until), self._binds_loop(until))
        await faults
        await asyncio.gather(*self._restarts)
        self.faults.add(
            "traffic-end",
            f"{len(self.traffic.mo_offered)} MOs offered, {len(self.traffic.mt_queued)} MTs queued",
        )

    # --- drain and check ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def database(self) -> AsyncIterator[Any]:
        engine = create_engine(self.pg.url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as connection:
                yield connection
        finally:
            await engine.dispose()

    async def drained(self) -> bool:
        """Nothing left to do: the simulator holds no deliver_sm or receipt timer, no MT is queued or
        sending, and every MO and receipt the ledger says was acknowledged is in the database."""
        status = await self._sim_status()
        if status is None or status["carriers"][0]["queued"]:
            self.waiting_for = "the simulator's deliver_sm queue"
            return False
        async with httpx.AsyncClient(timeout=2) as client:
            counters = (await client.get(f"http://127.0.0.1:{self.api_port}/api/counters")).json()
        if counters["pending_timers"]:
            self.waiting_for = f"{counters['pending_timers']} receipts the simulator has yet to send"
            return False
        try:
            snapshot = await self.snapshot()
        except OSError as error:
            self.waiting_for = f"the database: {error}"
            return False
        report = check_ledger(list(read_ledger(self.ledger)), snapshot, self.faults, self.traffic)
        self.waiting_for = "; ".join(report.pending[:10])
        return not report.pending

    async def snapshot(self) -> Snapshot:
        async with self.database() as db:
            mos = (
                await db.execute(
                    text("SELECT text, count(*) FROM mo_messages WHERE text LIKE :token GROUP BY text"),
                    {"token": f"{MO_TOKEN}%"},
                )
            ).all()
            mts = (await db.execute(text("SELECT id, status, text FROM mt_messages"))).all()
            parts = (
                await db.execute(text("SELECT mt_id, smsc_message_id, status, receipt_state FROM mt_parts"))
            ).all()
        return Snapshot(
            mo_counts={row[0].split()[0]: row[1] for row in mos},
            mts={row[0]: (row[1], row[2].split()[0]) for row in mts},
            parts=[(row[0], row[1], row[2], row[3]) for row in parts],
        )

    def unexpected_exits(self) -> list[str]:
        """Processes that are down although no fault took them down (a crash is a finding)."""
        return [
            f"{child.name} exited by itself: see {child.log}" for child in self.children if not child.alive
        ]

    async def drain(self) -> None:
        try:
            await eventually(self.drained, within=self.plan.drain_within, interval=1.0, what="drained")
        except AssertionError:
            raise AssertionError(
                f"not drained within {self.plan.drain_within:g} s: {self.waiting_for}"
            ) from None
        self.faults.add("drained", "nothing queued, every acknowledged MO and receipt stored")

    async def sample_binds(self) -> None:
        """Fold the simulator's most-binds-at-once of our system_id into :attr:`max_binds` (its counter
        starts again at each simulator restart: read before each one, and all along)."""
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                answer = await client.get(f"http://127.0.0.1:{self.api_port}/api/counters")
        except httpx.HTTPError:
            return
        if answer.status_code != 200:
            return
        counted = answer.json()["carriers"][CARRIER].get("binds_by_system_id")
        if counted is None:
            return  # a simulator that does not count binds per system_id: max_binds stays None
        most = int(counted.get(SYSTEM_ID, {}).get("max", 0))
        self.max_binds = most if self.max_binds is None else max(self.max_binds, most)

    async def _binds_loop(self, until: float) -> None:
        while time.monotonic() < until:
            await self.sample_binds()
            await asyncio.sleep(0.5)


@dataclass(frozen=True)
class Snapshot:
    """What the database holds: MO tokens with their row counts, MTs (id -> status, token), parts."""

    mo_counts: dict[str, int]
    mts: dict[int, tuple[str, str]]
    parts: list[tuple[int, str | None, str, str | None]]


@dataclass
class LedgerReport:
    """Counts per category; ``problems`` fail the test; ``pending`` is what a system still draining may
    yet do, and fails the test once it has drained."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    def table(self) -> str:
        width = max(len(name) for name in self.counts)
        lines = [f"| {'ledger category'.ljust(width)} | count |", f"|{'-' * (width + 2)}|------:|"]
        lines += [f"| {name.ljust(width)} | {value:5d} |" for name, value in self.counts.items()]
        return "\n".join(lines)


#: MT states no daemon will change any more by itself (accepted waits only for a receipt).
SETTLED = {"accepted", "delivered", "failed", "expired", "refused", "cancelled"}
#: Seconds a receipt or an MO may wait in the simulator (a receipt's delay, then the queue while no
#: bind is up): one this long before a simulator restart may have been lost in the restart.
RECEIPT_QUEUE_SECONDS = 30.0


def check_ledger(
    events: Iterable[dict[str, Any]], snapshot: Snapshot, faults: FaultLog, traffic: Traffic
) -> LedgerReport:
    """The database against the simulator's ledger (see the module's docstring)."""
    report = LedgerReport()
    counts = report.counts
    events = list(events)
    kills = faults.times("sigkill")
    # MOs: acknowledged at least once -> stored exactly once.
    acked_mo = {
        event["text"].split()[0] for event in events if event["kind"] == "mo" and event["result"] == "ok"
    }
    tried_mo = Counter(event["text"].split()[0] for event in events if event["kind"] == "mo")
    restarts = faults.times("simulator-down")  # when it had exited: what it took until then
    counts["MOs offered (simulator API)"] = len(traffic.mo_offered)
    counts["MOs acknowledged (deliver_sm_resp OK)"] = len(acked_mo)
    # An MO offered and never acknowledged: only a simulator restart may take it (its queue goes).
    unacknowledged = lost_in_restart = 0
    for token, offered_at in traffic.mo_offered.items():
        if token in acked_mo:
            continue
        unacknowledged += 1
        if any(0 <= restart - offered_at < RECEIPT_QUEUE_SECONDS for restart in restarts):
            lost_in_restart += 1
        else:
            report.pending.append(f"MO {token} offered, never acknowledged (no restart explains it)")
    counts["MOs offered, never acknowledged"] = unacknowledged
    counts["  of which offered just before the simulator restarted"] = lost_in_restart
    counts["MOs delivered more than once"] = sum(1 for n in tried_mo.values() if n > 1)
    counts["MOs stored exactly once"] = sum(1 for token in acked_mo if snapshot.mo_counts.get(token) == 1)
    missing = sorted(token for token in acked_mo if token not in snapshot.mo_counts)
    if missing:
        report.pending.append(f"{len(missing)} acknowledged MOs not stored, e.g. {missing[:5]}")
    twice = sorted(token for token, n in snapshot.mo_counts.items() if n > 1)
    counts["MOs stored twice"] = len(twice)
    if twice:
        report.problems.append(f"MOs stored more than once: {twice[:10]}")
        for token in twice[:10]:  # what the simulator saw of each, and the faults about then
            report.problems.append(_story(token, events, faults, kind="mo"))
    counts["MOs stored, never acknowledged"] = len(set(snapshot.mo_counts) - acked_mo)
    # MTs: every queued one settled; the simulator's copies.
    statuses = Counter(status for status, _ in snapshot.mts.values())
    counts["MTs queued through the API"] = len(traffic.mt_queued)
    for status in sorted(statuses):
        counts[f"MTs {status}"] = statuses[status]
    unsettled = [mt_id for mt_id, (status, _) in snapshot.mts.items() if status not in SETTLED]
    if unsettled:
        report.pending.append(f"{len(unsettled)} MTs queued or sending, e.g. {sorted(unsettled)[:5]}")
    lost = sorted(set(traffic.mt_queued.values()) - set(snapshot.mts))
    if lost:
        report.problems.append(f"MTs answered 201 but not in the database: {lost[:10]}")
    if traffic.mt_given_up:
        report.problems.append(f"MTs the panels never queued: {traffic.mt_given_up[:10]}")
    submits: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["kind"] == "submit":
            submits[event["text"].split()[0]].append(event)
    counts["MTs the simulator got"] = len(submits)
    duplicates = {token: seen for token, seen in submits.items() if len(seen) > 1}
    counts["MTs the simulator got more than once"] = len(duplicates)
    explained = 0
    for token, seen in sorted(duplicates.items()):
        times = [event["at"] for event in seen]
        if all(any(first < kill < second for kill in kills) for first, second in itertools.pairwise(times)):
            explained += 1
        else:
            report.problems.append(
                f"{token} submitted {len(seen)} times at {[round(t - faults.started, 2) for t in times]} s "
                f"with no SIGKILL between (SIGKILLs at {[round(k - faults.started, 2) for k in kills]} s)"
            )
    counts["  of which explained by a SIGKILL in flight"] = explained
    by_token = {token: mt_id for mt_id, (_, token) in snapshot.mts.items()}
    unsent = sorted(token for token in submits if token not in by_token)
    if unsent:
        report.problems.append(f"the simulator got MTs the database does not hold: {unsent[:10]}")
    for mt_id, (status, token) in snapshot.mts.items():
        if status in ("accepted", "delivered") and token not in submits:
            report.problems.append(f"MT {mt_id} ({token}) is {status} but the simulator never got it")
    # Receipts: every acknowledged one applied to the part its message id names.
    parts_by_id = {message_id: (mt_id, state) for mt_id, message_id, _, state in snapshot.parts if message_id}
    duplicate_ids = {event["message_id"] for seen in duplicates.values() for event in seen}
    acked_receipts = {
        event["message_id"]: event["stat"]
        for event in events
        if event["kind"] == "receipt" and event["result"] == "ok"
    }
    counts["receipts acknowledged"] = len(acked_receipts)
    applied = other_copy = 0
    for message_id, stat in acked_receipts.items():
        part = parts_by_id.get(message_id)
        if part is not None and part[1] == stat:
            applied += 1
        elif part is None and message_id in duplicate_ids:
            other_copy += 1  # the receipt of a copy whose part the MT no longer names
        else:
            report.pending.append(f"receipt {message_id} {stat} not applied (part: {part})")
    counts["receipts applied to their MT"] = applied
    counts["receipts of a duplicate's other copy"] = other_copy
    # An MT left accepted: its receipt was never acknowledged, which only a simulator restart explains
    # (receipts waiting on its timer or in its deliver_sm queue go with it).
    waiting = lost_in_restart = 0
    for mt_id, (status, token) in snapshot.mts.items():
        if status != "accepted":
            continue
        waiting += 1
        last = max((event["at"] for event in submits.get(token, [])), default=None)
        if last is not None and any(0 <= restart - last < RECEIPT_QUEUE_SECONDS for restart in restarts):
            lost_in_restart += 1
        else:
            report.pending.append(
                f"MT {mt_id} ({token}) accepted, its receipt never came (no restart explains it)"
            )
    counts["MTs accepted, receipt never acknowledged"] = waiting
    counts["  of which submitted just before the simulator restarted"] = lost_in_restart
    return report


def _story(token: str, events: list[dict[str, Any]], faults: FaultLog, *, kind: str) -> str:
    """The ledger's events of ``token`` and the faults within five seconds of them, times from the
    start of the run."""
    mine = [event for event in events if event["kind"] == kind and event["text"].split()[0] == token]
    seen = ", ".join(
        f"+{event['at'] - faults.started:.2f}s {event.get('result', 'submit')}" for event in mine
    )
    near = ", ".join(
        f"+{at - faults.started:.2f}s {what}: {detail}"
        for at, what, detail in faults.entries
        if any(abs(at - event["at"]) < 5.0 for event in mine)
    )
    return f"  {token}: the simulator saw {seen or 'nothing'}; faults about then: {near or 'none'}"


def print_report(chaos: Chaos, report: LedgerReport, max_binds: int | None, elapsed: float) -> None:
    print(
        f"\nchaos ledger (seed {chaos.plan.seed}, {chaos.plan.duration:g} s of traffic, "
        f"{elapsed:.0f} s in all):"
    )
    print(report.table())
    print(
        f"binds per system_id at most: {max_binds if max_binds is not None else 'not counted'} "
        f"(configured {BIND_SLOTS})"
    )
    print(
        f"MT sends retried: {chaos.traffic.mt_retries}; MOs the simulator API refused: "
        f"{chaos.traffic.mo_refused}"
    )
    print("faults:")
    for at, kind, detail in chaos.faults.entries:
        print(f"  +{at - chaos.faults.started:7.2f}s {kind}: {detail}")
    print(json.dumps({"seed": chaos.plan.seed, **report.counts}), flush=True)
