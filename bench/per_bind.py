"""Per-bind throughput and latency: one transceiver bind with the windows carriers give (10 and 100).

Four processes, as in production: the daemon (``gatewayd run``, a generated TOML: one transceiver bind
of ``window`` W, the PostgreSQL scratch database of bench/scratch_postgres.py, the MQTT bus on
127.0.0.1:1883), a lean SMSC of our own (bench/_lean_smsc.py: answers at once, receipts at once, MOs
pushed with at most W unanswered), PostgreSQL, and this driver, which injects MTs the way producers do
(``queue_mts`` in batches, then ``<prefix>/outbox/queued`` on the bus) and reads every process's CPU
from /proc. Phases, per window:

  roundtrip  what one PostgreSQL round trip costs on this machine (wall time, client and server CPU),
             bare and as the pipelines' unit of work (pool checkout with pre-ping, BEGIN, a statement,
             COMMIT), with and without the pre-ping, reading and writing (fsync at COMMIT), and the
             same transaction on the pool's connection without a session (what the session costs)
  reference  the lean SMSC against a bare ESME (struct, answers at once): MO, MT and MT+receipt rates
             and the SMSC's CPU per message, to show the SMSC is never the bottleneck
  floor      the least a store can do per MO (bench/_store_floor.py): the MO rows alone, W per
             transaction, on a bare asyncpg connection; the driver's and PostgreSQL's CPU per MO are
             the floor under the daemon's and PostgreSQL's figures of the mo phase
  mo         MOs (20,000 at W=100, 10,000 at W=10) pushed as fast as the window allows: committed and
             acknowledged per second (first deliver_sm to last deliver_sm_resp), p50/p99 latency
  mt         MTs injected -> submit_sm answered, per second (the inserts inside the timed window)
  receipts   MTs injected -> ``delivered`` in the database, per second (receipt right after each resp)
  latency    MOs paced at --latency-rate (1,000/s): p50/p99 deliver_sm -> deliver_sm_resp
  backlog    MTs already in the outbox when the daemon looks (queued for later, then made due in one
             statement): first submit_sm -> last, per second; the daemon's pipeline without the
             producer's inserts (``backlog_receipts``: first submit_sm -> last ``delivered``)

Each phase prints the CPU µs per message of the daemon, of PostgreSQL (the backends of the scratch
database; the server's WAL writer and checkpointer apart) and of the SMSC. Figures are medians of
--repeat runs. The subscribers (--subscribers numbers) are created by an untimed warm-up, so the timed
MOs come from known subscribers into open conversations, as in a running chat service.

    .venv/bin/python bench/per_bind.py [--window 100 --window 10] [--phase mo ...] [--repeat 3]
        [--messages N] [--awake] [--profile] [--perf] [--event-loop asyncio] [--trace] [--statements]

--awake     no quiet hours: by default the run falls inside the clients' quiet hours whatever the
            hour, where each MO batch also asks for the pushes held for its clients (at night it
            does in production; without this the figures changed with the hour of the run)

--profile   py-spy record of the daemon per phase into artifacts/ (if py-spy is installed)
--perf      perf record of the scratch database's backends per phase into artifacts/, and the
            share of their CPU in each part of a statement's life: the plan's set-up, its run
            and finish, COMMIT, the cached plan's check, the parameters (bench/_perf.py)
--event-loop  the daemon's loop: uvloop (gatewayd run's default) or asyncio (Python's own)
--trace     the daemon records each MO's arrival, commit and answer, each batch's database calls and
            the loop's turns (bench/_trace.py): the per-cycle breakdown is printed per phase (the
            loop's turns only with --event-loop asyncio: uvloop runs its callbacks in C)
--statements pg_stat_statements per phase (the server must preload it: a private server, see
            ECHAT_TEST_PG_PORT in bench/scratch_postgres.py)
--what-if   a daemon variant that estimates a change before it is made (bench/_daemon.py lists them)

Ends with one ``RESULT key=value ...`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from _daemon import WHAT_IFS  # noqa: E402
from _lean_smsc import SHORT_CODE, msisdn  # noqa: E402
from _measure import (  # noqa: E402
    CPUSnapshot,
    context_switches,
    machine_busy,
    pids_named,
    postgres_auxiliary,
    postgres_backends,
    process_cpu,
)
from scratch_postgres import scratch_database  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: E402

from gatewayd.bus import MQTTBus, create_bus  # noqa: E402
from gatewayd.schema import upgrade  # noqa: E402
from gatewayd.store._pg import pg_execute  # noqa: E402
from gatewayd.store.engine import create_engine, session_factory  # noqa: E402
from gatewayd.store.enums import MTKind  # noqa: E402
from gatewayd.store.mt.queue import queue_mts  # noqa: E402
from gatewayd.store.mt.values import NewMT  # noqa: E402
from gatewayd.store.store import Store  # noqa: E402

CARRIER = "movistar"
#: The clients' wall clock (``[daemon] timezone``'s default), which their quiet hours are read on.
CLIENT_ZONE = "Europe/Madrid"
MQTT_URL = "mqtt://127.0.0.1:1883"
ARTIFACTS = ROOT / "artifacts"
PHASES = ("roundtrip", "reference", "floor", "mo", "mt", "receipts", "latency", "backlog", "backlog_receipts")
#: How often the driver looks at the database while waiting for the last MTs (outside what it times,
#: except the final ``delivered`` count, whose resolution this is).
POLL = 0.005


# --- the lean SMSC process ---------------------------------------------------------------------------


class SMSCProcess:
    """bench/_lean_smsc.py as a child process; one JSON command at a time."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def __aenter__(self) -> SMSCProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH / "_lean_smsc.py"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.port = int((await self._read())["port"])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        try:
            async with asyncio.timeout(10):
                await self.call("stop")
                await process.wait()
        except (TimeoutError, RuntimeError, ConnectionError):  # stuck, or a command left half-way
            process.kill()
            await process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def _read(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the SMSC process ended (code {await self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"SMSC: {answer['error']}")
        return answer

    async def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps({"op": op, **arguments}) + "\n").encode())
        await self.process.stdin.drain()
        return await self._read()


# --- a bare ESME, for the reference phase ------------------------------------------------------------

HEADER = struct.Struct(">IIII")
BIND_TRANSCEIVER, UNBIND, SUBMIT_SM, DELIVER_SM = 0x00000009, 0x00000006, 0x00000004, 0x00000005
DELIVER_SM_RESP, ENQUIRE_LINK = 0x80000005, 0x00000015


def _submit_body(registered_delivery: int) -> bytes:
    text = b"bench reference, hola"
    return (
        b"\x00"  # service_type
        + b"\x03\x00"
        + SHORT_CODE.encode()
        + b"\x00"  # source: network specific
        + b"\x01\x01"
        + msisdn(1).encode()
        + b"\x00"  # destination: international / ISDN
        + bytes([0, 0, 0])  # esm_class, protocol_id, priority_flag
        + b"\x00\x00"  # schedule_delivery_time, validity_period
        + bytes([registered_delivery, 0, 0, 0, len(text)])
        + text
    )


class BareESME(asyncio.Protocol):
    """Binds as transceiver, answers every deliver_sm at once, keeps ``window`` submit_sm in flight."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sequence = 1
        self.bound: asyncio.Future[None] = self.loop.create_future()
        self.delivers = 0
        self.deliver_target = 0
        self.delivered: asyncio.Future[float] | None = None
        self.to_send = 0
        self.in_flight = 0
        self.answered = 0
        self.submits_done: asyncio.Future[float] | None = None
        self.body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        body = b"echat\x00secret1\x00\x00" + bytes([0x34, 0, 0]) + b"\x00"
        transport.write(HEADER.pack(16 + len(body), BIND_TRANSCEIVER, 0, 1) + body)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        out: list[bytes] = []
        offset = 0
        while len(buffer) - offset >= 16:
            length, command_id, _, sequence = HEADER.unpack_from(buffer, offset)
            if len(buffer) - offset < length:
                break
            offset += length
            if command_id == DELIVER_SM:
                out.append(HEADER.pack(17, DELIVER_SM_RESP, 0, sequence) + b"\x00")
                self.delivers += 1
                if self.delivered is not None and self.delivers >= self.deliver_target:
                    self.delivered.set_result(time.monotonic())
                    self.delivered = None
            elif command_id == ENQUIRE_LINK:
                out.append(HEADER.pack(16, ENQUIRE_LINK | 0x80000000, 0, sequence))
            elif command_id == BIND_TRANSCEIVER | 0x80000000:
                self.bound.set_result(None)
            elif command_id == SUBMIT_SM | 0x80000000:
                self.in_flight -= 1
                self.answered += 1
                if self.to_send:
                    out.append(self._next_submit())
                elif not self.in_flight and self.submits_done is not None:
                    self.submits_done.set_result(time.monotonic())
                    self.submits_done = None
        del buffer[:offset]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _next_submit(self) -> bytes:
        self.sequence += 1
        self.to_send -= 1
        self.in_flight += 1
        return HEADER.pack(16 + len(self.body), SUBMIT_SM, 0, self.sequence) + self.body

    def expect_delivers(self, count: int) -> asyncio.Future[float]:
        self.deliver_target = self.delivers + count
        future: asyncio.Future[float] = self.loop.create_future()
        self.delivered = future
        return future

    def submit(self, count: int, window: int, receipts: bool) -> asyncio.Future[float]:
        """Sends ``count`` submit_sm, ``window`` at a time; the future holds when the last was answered."""
        assert self.transport is not None
        self.body = _submit_body(1 if receipts else 0)
        self.to_send = count
        future: asyncio.Future[float] = self.loop.create_future()
        self.submits_done = future
        self.transport.write(b"".join(self._next_submit() for _ in range(min(window, count))))
        return future

    def close(self) -> None:
        if self.transport is not None:
            self.sequence += 1
            self.transport.write(HEADER.pack(16, UNBIND, 0, self.sequence))
            self.transport.close()


async def reference(smsc: SMSCProcess, window: int, count: int, subscribers: int) -> dict[str, float]:
    """The lean SMSC against the bare ESME: its rates and CPU per message when nothing else limits it."""
    loop = asyncio.get_running_loop()
    _, esme = await loop.create_connection(BareESME, "127.0.0.1", smsc.port)
    await esme.bound
    await smsc.call("wait_bound")
    try:
        mo = await smsc.call(
            "mo", count=count, subscribers=subscribers, tag=f"reference {uuid.uuid4().hex[:6]}"
        )
        mo_cpu = mo["cpu"]
        before = await smsc.call("counters")
        started = time.monotonic()
        finished = await esme.submit(count, window, receipts=False)
        mt_cpu = (await smsc.call("counters"))["cpu"] - before["cpu"]
        mt_rate = count / (finished - started)
        await smsc.call("receipts", on=True)
        before = await smsc.call("counters")
        receipts = esme.expect_delivers(count)
        started = time.monotonic()
        await esme.submit(count, window, receipts=True)
        finished = await receipts
        receipt_cpu = (await smsc.call("counters"))["cpu"] - before["cpu"]
        await smsc.call("receipts", on=False)
    finally:
        esme.close()
    return {
        "mo_per_s": mo["acked"] / (mo["last_at"] - mo["first_at"]),
        "mo_p99_ms": mo["p99_ms"],
        "smsc_us_per_mo": mo_cpu / count * 1e6,
        "mt_per_s": mt_rate,
        "smsc_us_per_mt": mt_cpu / count * 1e6,
        "mt_receipt_per_s": count / (finished - started),
        "smsc_us_per_mt_receipt": receipt_cpu / count * 1e6,
    }


# --- the daemon process ------------------------------------------------------------------------------


def daemon_config(directory: Path, url: str, port: int, window: int, prefix: str, awake: bool) -> Path:
    """One carrier, one transceiver bind of ``window``; every other key at its default but the quiet
    hours, which would make the figures depend on the hour the bench runs: in them (the default
    22:00-09:00 of the clients' zone) each MO batch also releases the pushes held for its clients.
    So the run is inside quiet hours (the costlier case), or outside any with ``awake``."""
    path = directory / f"gatewayd-w{window}.toml"
    quiet_hours = "off" if awake else quiet_span(datetime.now(ZoneInfo(CLIENT_ZONE)))
    path.write_text(
        f"""
[database]
url = "{url}"

[bus]
url = "{MQTT_URL}"
topic_prefix = "{prefix}"

[log]
level = "INFO"

[metrics]
enabled = false

[quiet_hours]
default = "{quiet_hours}"

[daemon]
instance = "{prefix}"

[[carriers]]
name = "{CARRIER}"
country = "ES"
short_codes = ["{SHORT_CODE}"]
system_id = "echat"
password = "secret1"

[[carriers.binds]]
host = "127.0.0.1"
port = {port}
bind_type = "transceiver"
window = {window}
# no throttle of our own: the window is the only limit measured
tps = 1000000
response_timeout = 30
""",
        encoding="utf-8",
    )
    return path


def quiet_span(local: datetime) -> str:
    """Quiet hours from an hour before ``local`` to three after: the whole run falls inside them."""
    return f"{local - timedelta(hours=1):%H:%M}-{local + timedelta(hours=3):%H:%M}"


@dataclass
class DaemonOptions:
    event_loop: str = "uvloop"
    trace: Path | None = None
    log: Path | None = None
    what_ifs: Sequence[str] = ()


def _open_log(path: Path | None) -> BinaryIO:
    return open(path or os.devnull, "wb")  # noqa: SIM115  (the caller closes it after the process)


def _log_tail(path: Path | None) -> str:
    return path.read_text(errors="replace")[-2000:] if path is not None and path.exists() else ""


@asynccontextmanager
async def daemon_process(config: Path, options: DaemonOptions) -> AsyncIterator[asyncio.subprocess.Process]:
    """``gatewayd run`` (through bench/_daemon.py when tracing or under a what-if) until SIGTERM."""
    run = ["run", "--config", str(config), "--event-loop", options.event_loop]
    if options.trace is not None or options.what_ifs:
        command = [sys.executable, str(BENCH / "_daemon.py")]
        if options.trace is not None:
            command += ["--trace", str(options.trace)]
        for name in options.what_ifs:
            command += ["--what-if", name]
        command += ["--", *run]
    else:
        command = [sys.executable, "-m", "echat", *run]
    log = _open_log(options.log)
    process = await asyncio.create_subprocess_exec(*command, stdout=log, stderr=log)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(60):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def wait_bound(smsc: SMSCProcess, daemon: asyncio.subprocess.Process, log: Path | None) -> None:
    waiting = asyncio.ensure_future(smsc.call("wait_bound"))
    ended = asyncio.ensure_future(daemon.wait())
    done, _ = await asyncio.wait({waiting, ended}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    ended.cancel()
    if waiting not in done:
        waiting.cancel()  # the SMSC's answer would otherwise be read by the next command
        raise RuntimeError(
            f"the daemon did not bind (exit code {daemon.returncode}); its log ends:\n{_log_tail(log)}"
        )


# --- the producer: MTs queued the way the panel and the API do ---------------------------------------


class Producer:
    """Queues MTs through the store API in batches and wakes the daemons through the bus."""

    def __init__(self, url: str, prefix: str, batch: int) -> None:
        self.engine: AsyncEngine = create_engine(url, pool_size=1, max_overflow=0)
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(self.engine)
        #: The producers' own (the API's and the desk's outbox): one array statement on PostgreSQL.
        self.inserts = Store.for_engine(self.engine).mt_inserts
        self.bus: MQTTBus = create_bus(MQTT_URL, topic_prefix=prefix, client_id=f"{prefix}-producer")  # type: ignore[assignment]
        self.batch = batch
        self.backend_pid = 0

    async def __aenter__(self) -> Producer:
        await self.bus.__aenter__()
        async with asyncio.timeout(10):
            await self.bus.wait_connected()
        async with self.sessions() as session:
            self.backend_pid = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.bus.__aexit__(None, None, None)
        await self.engine.dispose()

    async def queue(
        self, count: int, tag: str, subscribers: int, offset: int = 0, not_before: datetime | None = None
    ) -> tuple[int, int]:
        """Queues ``count`` MTs to the subscribers, one transaction and one wake-up per batch; returns
        the (lowest, highest) id queued."""
        lowest, highest = 0, 0
        for start in range(0, count, self.batch):
            now = datetime.now(UTC)
            mts = [
                NewMT(
                    kind=MTKind.PUSH,
                    carrier=CARRIER,
                    source=SHORT_CODE,
                    destination=msisdn((offset + index) % subscribers),
                    text=f"{tag} {index} hola, soy Laura",
                    not_before=not_before,
                )
                for index in range(start, min(count, start + self.batch))
            ]
            async with self.sessions() as session, session.begin():
                ids = await queue_mts(session, mts, now, self.inserts)
            lowest = lowest or ids[0]
            highest = ids[-1]
            await self.bus.publish(self.bus.topics.outbox_queued(), {"mt_id": highest})
        return lowest, highest

    async def make_due(self, lowest: int, highest: int) -> None:
        """The MTs of the range, queued for later, are due now (one statement), and the daemons know."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                text("UPDATE mt_messages SET next_attempt_at = now() WHERE id BETWEEN :lo AND :hi"),
                {"lo": lowest, "hi": highest},
            )
        await self.bus.publish(self.bus.topics.outbox_queued(), {"mt_id": highest})

    async def count(self, lowest: int, highest: int, status: str) -> int:
        async with self.sessions() as session:
            result = await session.execute(
                text("SELECT count(*) FROM mt_messages WHERE id BETWEEN :lo AND :hi AND status = :status"),
                {"lo": lowest, "hi": highest, "status": status},
            )
            return int(result.scalar_one())

    async def wait_for(self, lowest: int, highest: int, status: str, interval: float = 0.05) -> float:
        """Polls until every MT of the range has ``status``; when it saw that (time.monotonic())."""
        total = highest - lowest + 1
        async with asyncio.timeout(300):
            # the daemon is another process and says nothing when it is done: the database is polled
            while await self.count(lowest, highest, status) < total:  # noqa: ASYNC110
                await asyncio.sleep(interval)
        return time.monotonic()


# --- CPU per phase -----------------------------------------------------------------------------------


@dataclass
class Processes:
    daemon: int
    smsc: int
    database: str
    producer_backend: int

    def groups(self) -> dict[str, set[int]]:
        backends = postgres_backends(self.database)
        return {
            "daemon": {self.daemon},
            "pg": backends - {self.producer_backend},
            "pg_producer": {self.producer_backend},
            "pg_aux": postgres_auxiliary(),
            "mosquitto": pids_named("mosquitto"),
            "driver": {os.getpid()},
        }


class CPUWindow:
    """CPU each group of processes used between ``start()`` and ``stop()`` (processes that appear in
    between are counted from their start)."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self.groups = processes.groups()
        self.before = CPUSnapshot.take(self.groups)
        self.switches = context_switches(processes.daemon)
        self.busy = machine_busy()
        self.started = time.monotonic()

    async def stop(self) -> dict[str, float]:
        await settle(self.processes.daemon)
        now = self.processes.groups()
        groups = {name: pids | now.get(name, set()) for name, pids in self.groups.items()}
        used = CPUSnapshot.take(groups).since(self.before)
        voluntary, involuntary = context_switches(self.processes.daemon)
        used["daemon_voluntary_switches"] = voluntary - self.switches[0]
        used["daemon_involuntary_switches"] = involuntary - self.switches[1]
        # what the rest of the machine (other users of the shared cores) took meanwhile, in cores
        ours = sum(seconds for name, seconds in used.items() if "switches" not in name)
        used["others_cores"] = (machine_busy() - self.busy - ours) / (time.monotonic() - self.started)
        return used


async def settle(pid: int, quiet: float = 0.1, limit: float = 3.0) -> None:
    """Waits until ``pid`` used no CPU for ``quiet`` seconds (its tail of work: events, records)."""
    deadline = time.monotonic() + limit
    last = process_cpu(pid)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        now = process_cpu(pid)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return


# --- phases ------------------------------------------------------------------------------------------


@dataclass
class Context:
    smsc: SMSCProcess
    producer: Producer
    processes: Processes
    window: int
    count: int
    subscribers: int
    latency_rate: int
    latency_seconds: float
    statements: bool
    run: int = 0
    #: (phase, start, end) of every timed phase, time.monotonic(), for the trace report
    spans: list[tuple[str, float, float]] = field(default_factory=list)


def per_message(cpu: dict[str, float], count: int) -> dict[str, float]:
    figures = {
        f"{name}_us": seconds / count * 1e6
        for name, seconds in cpu.items()
        if "switches" not in name and name != "others_cores"
    }
    figures["others_cores"] = cpu["others_cores"]
    figures["daemon_switches_per_msg"] = (
        cpu["daemon_voluntary_switches"] + cpu["daemon_involuntary_switches"]
    ) / count
    return figures


async def phase_mo(context: Context) -> dict[str, float]:
    cpu = CPUWindow(context.processes)
    tag = f"bench w{context.window} r{context.run} {uuid.uuid4().hex[:4]}"
    answer = await context.smsc.call("mo", count=context.count, subscribers=context.subscribers, tag=tag)
    used = await cpu.stop()
    if answer["failed"]:
        raise RuntimeError(f"{answer['failed']} MOs were not acknowledged with ESME_ROK")
    context.spans.append(("mo", answer["first_at"], answer["last_at"]))
    return {
        "per_s": answer["acked"] / (answer["last_at"] - answer["first_at"]),
        "p50_ms": answer["p50_ms"],
        "p99_ms": answer["p99_ms"],
        "smsc_us": answer["cpu"] / context.count * 1e6,
        **{key: value for key, value in per_message(used, context.count).items() if key != "smsc_us"},
    }


async def phase_floor(context: Context, url: str) -> dict[str, float]:
    """bench/_store_floor.py in a process of its own (uvloop, as the daemon): its one JSON line."""
    floor = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("_store_floor.py")), url, str(context.window),
        str(context.count), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output, _ = await floor.communicate()
    if floor.returncode != 0:
        raise RuntimeError(f"bench/_store_floor.py failed (exit status {floor.returncode})")
    figures: dict[str, float] = json.loads(output)
    return figures


async def phase_latency(context: Context) -> dict[str, float]:
    count = int(context.latency_rate * context.latency_seconds)
    tag = f"bench paced w{context.window} r{context.run} {uuid.uuid4().hex[:4]}"
    cpu = CPUWindow(context.processes)
    answer = await context.smsc.call(
        "mo", count=count, subscribers=context.subscribers, tag=tag, rate=context.latency_rate
    )
    used = await cpu.stop()
    context.spans.append(("latency", answer["first_at"], answer["last_at"]))
    return {
        "per_s": answer["acked"] / (answer["last_at"] - answer["first_at"]),
        "p50_ms": answer["p50_ms"],
        "p90_ms": answer["p90_ms"],
        "p99_ms": answer["p99_ms"],
        "max_ms": answer["max_ms"],
        "daemon_us": used["daemon"] / count * 1e6,
        "pg_us": used["pg"] / count * 1e6,
        "others_cores": used["others_cores"],
    }


async def phase_mt(context: Context, receipts: bool) -> dict[str, float]:
    smsc, producer = context.smsc, context.producer
    await smsc.call("receipts", on=receipts)
    counters = await smsc.call("counters")
    tag = f"bench {'receipt' if receipts else 'mt'} w{context.window} r{context.run}"
    cpu = CPUWindow(context.processes)
    started = time.monotonic()
    lowest, highest = await producer.queue(context.count, tag, context.subscribers, offset=context.run)
    injected = time.monotonic()
    if highest - lowest + 1 != context.count:
        raise RuntimeError("the MTs of one phase are expected to have consecutive ids")
    if receipts:
        # every receipt acknowledged, then the moment the database has them all delivered
        await smsc.call("wait_receipts", total=counters["receipts_acked"] + context.count)
        finished = await producer.wait_for(lowest, highest, "delivered", POLL)
    else:
        finished = (await smsc.call("wait_submits", total=counters["submits"] + context.count))["at"]
        await producer.wait_for(lowest, highest, "accepted")
    used = await cpu.stop()
    await smsc.call("receipts", on=False)
    context.spans.append(("receipts" if receipts else "mt", started, finished))
    return {
        "per_s": context.count / (finished - started),
        "inject_per_s": context.count / (injected - started),
        **per_message(used, context.count),
    }


async def phase_backlog(context: Context, receipts: bool) -> dict[str, float]:
    smsc, producer = context.smsc, context.producer
    await smsc.call("receipts", on=receipts)
    counters = await smsc.call("counters")
    tag = f"bench backlog{' receipt' if receipts else ''} w{context.window} r{context.run}"
    later = datetime.now(UTC) + timedelta(hours=1)
    lowest, highest = await producer.queue(context.count, tag, context.subscribers, context.run, later)
    cpu = CPUWindow(context.processes)
    await producer.make_due(lowest, highest)
    if receipts:
        await smsc.call("wait_receipts", total=counters["receipts_acked"] + context.count)
        finished = await producer.wait_for(lowest, highest, "delivered", POLL)
    else:
        finished = (await smsc.call("wait_submits", total=counters["submits"] + context.count))["at"]
        await producer.wait_for(lowest, highest, "accepted")
    started = (await smsc.call("submit_at", number=counters["submits"] + 1))["at"]
    used = await cpu.stop()
    await smsc.call("receipts", on=False)
    context.spans.append(("backlog_receipts" if receipts else "backlog", started, finished))
    return {"per_s": context.count / (finished - started), **per_message(used, context.count)}


async def roundtrip_costs(url: str, count: int = 2000) -> dict[str, float]:
    """µs of wall time, client CPU and server CPU per operation, each run ``count`` times in a row."""
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.ext.asyncio import create_async_engine

    figures: dict[str, float] = {}

    async def timed(name: str, backend: int, operation: Callable[[], Awaitable[object]]) -> None:
        for _ in range(50):  # warm: prepared statements, caches
            await operation()
        started, cpu, server = time.monotonic(), time.process_time(), process_cpu(backend)
        for _ in range(count):
            await operation()
        figures[f"{name}_wall_us"] = (time.monotonic() - started) / count * 1e6
        figures[f"{name}_client_us"] = (time.process_time() - cpu) / count * 1e6
        figures[f"{name}_server_us"] = (process_cpu(backend) - server) / count * 1e6

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS bench_roundtrip (id bigserial PRIMARY KEY, v int)"
        )
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        await timed("asyncpg_select", backend, lambda: connection.fetchval("SELECT 1"))
        await timed(
            "asyncpg_insert_commit",
            backend,
            lambda: connection.execute("INSERT INTO bench_roundtrip (v) VALUES (1)"),
        )

        async def transaction() -> None:
            async with connection.transaction():
                await connection.execute("INSERT INTO bench_roundtrip (v) VALUES (1)")

        await timed("asyncpg_transaction", backend, transaction)
    finally:
        await connection.close()
    for label, pre_ping in (("unit", True), ("unit_no_ping", False)):
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_pre_ping=pre_ping,
            connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
        )
        sessions = session_factory(engine)
        try:
            async with sessions() as session:
                backend = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())

            await timed(f"{label}_select", backend, functools.partial(_unit_of_work, sessions, "SELECT 1"))
            insert = functools.partial(_unit_of_work, sessions, "INSERT INTO bench_roundtrip (v) VALUES (1)")
            await timed(f"{label}_insert", backend, insert)
            if not pre_ping:  # what of the unit is the session's, and what the pool's
                pooled = functools.partial(
                    _pooled_transaction, engine, "INSERT INTO bench_roundtrip (v) VALUES (1)"
                )
                await timed("pooled_insert", backend, pooled)
        finally:
            await engine.dispose()
    return figures


async def _unit_of_work(sessions: async_sessionmaker[AsyncSession], sql: str) -> None:
    """One statement in a transaction of its own, framed the way the pipelines frame theirs."""
    async with sessions() as session, session.begin():
        await pg_execute(session, sql)


async def _pooled_transaction(engine: AsyncEngine, sql: str) -> None:
    """The same statement and transaction on the pool's connection, without a session: BEGIN and
    COMMIT by the driver."""
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        async with driver.transaction():
            await driver.execute(sql)


def show_roundtrips(figures: dict[str, float]) -> None:
    print("  roundtrip, µs per operation:              wall   client CPU   server CPU")
    for name, label in (
        ("asyncpg_select", "asyncpg SELECT 1 (1 round trip)"),
        ("asyncpg_insert_commit", "asyncpg INSERT, autocommit (1 + fsync)"),
        ("asyncpg_transaction", "asyncpg BEGIN, INSERT, COMMIT (3 + fsync)"),
        ("unit_select", "unit of work, SELECT 1 (7 round trips)"),
        ("unit_insert", "unit of work, INSERT (7 + fsync)"),
        ("unit_no_ping_select", "  without pre-ping, SELECT 1 (4)"),
        ("unit_no_ping_insert", "  without pre-ping, INSERT (4 + fsync)"),
        ("pooled_insert", "  no session: pool, driver's BEGIN/COMMIT"),
    ):
        print(
            f"    {label:40s} {figures[f'{name}_wall_us']:7.0f} {figures[f'{name}_client_us']:12.0f}"
            f" {figures[f'{name}_server_us']:12.0f}"
        )


async def warm_up(context: Context, created: bool) -> None:
    """Untimed: the subscribers (the first time), the daemon's connections and prepared statements."""
    smsc = context.smsc
    if not created:  # one MO from each number
        await smsc.call("mo", count=context.subscribers, subscribers=context.subscribers, tag="bench warm-up")
    await smsc.call("mo", count=2000, subscribers=context.subscribers, tag=f"bench warm w{context.window}")
    for receipts in (False, True):
        await smsc.call("receipts", on=receipts)
        counters = await smsc.call("counters")
        lowest, highest = await context.producer.queue(2000, "bench warm", context.subscribers)
        await smsc.call("wait_submits", total=counters["submits"] + 2000)
        await context.producer.wait_for(lowest, highest, "delivered" if receipts else "accepted")
    await smsc.call("receipts", on=False)
    # A running service's tables carry statistics (autovacuum analyzes them as they grow, within a
    # minute); tables grown by the warm-up a moment ago do not yet, and with the statistics of a
    # near-empty table the planner scans every subscriber and conversation for each MO batch.
    async with context.producer.sessions() as session, session.begin():
        await session.execute(text("ANALYZE"))


# --- pg_stat_statements -----------------------------------------------------------------------------


async def statements_reset(producer: Producer) -> None:
    async with producer.sessions() as session, session.begin():
        await session.execute(text("SELECT pg_stat_statements_reset()"))
        await session.execute(text("SELECT pg_stat_reset()"))  # this database's table counters


async def statements_report(producer: Producer, count: int, label: str) -> None:
    async with producer.sessions() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT calls, total_exec_time, total_plan_time, rows, query FROM pg_stat_statements"
                    " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    " ORDER BY total_exec_time + total_plan_time DESC LIMIT 20"
                )
            )
        ).all()
        await asyncio.sleep(0.6)  # table counters reach the view within PGSTAT_MIN_INTERVAL (0.5 s)
        tables = (
            await session.execute(
                text(
                    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables"
                    " WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relname"
                )
            )
        ).all()
    print(f"    pg_stat_statements, {label} (per message: µs exec + µs plan, calls; the producer's included)")
    for calls, exec_ms, plan_ms, _rows, query in rows:
        line = " ".join(query.split())[:110]
        print(
            f"      {exec_ms * 1000 / count:7.1f} + {plan_ms * 1000 / count:6.1f} µs  {calls:7d} calls"
            f"  {line}"
        )
    print("    rows written per message (inserted, updated of which HOT, deleted):")
    for name, inserted, updated, hot, deleted in tables:
        print(
            f"      {name:24s} {inserted / count:5.2f} {updated / count:5.2f} ({hot / count:4.2f} HOT)"
            f" {deleted / count:5.2f}"
        )


# --- profile -----------------------------------------------------------------------------------------


@asynccontextmanager
async def profiled(pid: int, label: str, enabled: bool) -> AsyncIterator[None]:
    """py-spy record of ``pid`` while the block runs, into artifacts/ (raw collapsed stacks)."""
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not enabled or py_spy is None:
        yield
        return
    ARTIFACTS.mkdir(exist_ok=True)
    output = ARTIFACTS / f"per_bind-{label}.txt"
    recorder = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(pid), "--rate", "200", "--nonblocking", "--format", "raw",
        "--output", str(output), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(0.5)  # attached
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        await recorder.wait()
        print(f"    profile: {output.relative_to(ROOT)}")
        if output.exists():
            from _trace import profile_summary

            profile_summary(output)


@asynccontextmanager
async def backends_recorded(processes: Processes, label: str, enabled: bool) -> AsyncIterator[None]:
    """``perf record`` of the scratch database's backends (the producer's apart) while the block runs,
    into artifacts/; then where their CPU went (bench/_perf.py)."""
    if not enabled:
        yield
        return
    from _perf import recorded, summary

    output = ARTIFACTS / f"per_bind-{label}.perf.data"
    backends = postgres_backends(processes.database) - {processes.producer_backend}
    async with recorded(backends, output):
        yield
    print(f"    {summary(output)}   ({output.relative_to(ROOT)})", flush=True)


# --- driver ------------------------------------------------------------------------------------------


Figures = dict[str, float]


def median_of(runs: Sequence[Figures]) -> Figures:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def show(window: int, phase: str, runs: Sequence[Figures]) -> None:
    median = median_of(runs)
    order = ("per_s", "inject_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms")
    keys = [key for key in order if key in median] + [key for key in median if key not in order]
    parts = [f"{key}={median[key]:,.1f}" for key in keys]
    rate = "per_s" if "per_s" in median else "mo_per_s"
    rates = ", ".join(f"{run[rate]:,.0f}" for run in runs)
    print(f"  w{window:<4d}{phase:10s} " + "  ".join(parts) + f"   (runs /s: {rates})", flush=True)


async def run_window(
    args: argparse.Namespace, smsc: SMSCProcess, producer: Producer, url: str,
    prefix: str, directory: Path, window: int, created: bool,
) -> dict[str, list[Figures]]:  # fmt: skip
    count = args.messages or (20_000 if window > 10 else 10_000)
    results: dict[str, list[Figures]] = {}
    await smsc.call("window", window=window)
    if "reference" in args.phase:
        results["reference"] = [
            await reference(smsc, window, count, args.subscribers) for _ in range(args.repeat)
        ]
        show(window, "reference", results["reference"])
    phases = [phase for phase in args.phase if phase not in ("reference", "roundtrip")]
    if not phases:
        return results
    trace = directory / f"trace-w{window}.json" if args.trace else None
    log = (ARTIFACTS if args.profile or args.trace else directory) / f"per_bind-daemon-w{window}.log"
    log.parent.mkdir(exist_ok=True)
    options = DaemonOptions(event_loop=args.event_loop, trace=trace, log=log, what_ifs=args.what_if)
    spans: list[tuple[str, float, float]] = []
    config = daemon_config(directory, url, smsc.port, window, prefix, args.awake)
    async with daemon_process(config, options) as daemon:
        await wait_bound(smsc, daemon, log)
        database = url.rsplit("/", 1)[1]
        processes = Processes(daemon.pid, smsc.pid, database, producer.backend_pid)
        context = Context(
            smsc, producer, processes, window, count, args.subscribers, args.latency_rate,
            args.latency_seconds, args.statements, spans=spans,
        )  # fmt: skip
        await warm_up(context, created)
        for run in range(args.repeat):
            context.run = run
            for phase in phases:
                label = (
                    f"w{window}-{phase}"
                    + ("-asyncio" if args.event_loop == "asyncio" else "")
                    + "".join(f"-{name}" for name in args.what_if)
                )
                if args.statements:
                    await statements_reset(producer)
                async with (
                    profiled(daemon.pid, label, args.profile and run == 0),
                    backends_recorded(processes, label, args.perf and run == 0),
                ):
                    if phase == "mo":
                        figures = await phase_mo(context)
                    elif phase == "floor":
                        figures = await phase_floor(context, url)
                    elif phase == "latency":
                        figures = await phase_latency(context)
                    elif phase.startswith("backlog"):
                        figures = await phase_backlog(context, receipts=phase == "backlog_receipts")
                    else:
                        figures = await phase_mt(context, receipts=phase == "receipts")
                results.setdefault(phase, []).append(figures)
                if args.statements:
                    await statements_report(
                        producer,
                        context.count
                        if phase != "latency"
                        else int(args.latency_rate * args.latency_seconds),
                        label,
                    )
        for phase in phases:
            show(window, phase, results[phase])
    if trace is not None:
        from _trace import report

        report(trace, spans, window)
    return results


def result_line(results: dict[int, dict[str, list[Figures]]], latency_rate: int) -> str:
    fields: list[str] = []
    names = {
        "mo": "mo",
        "mt": "mt",
        "receipts": "mt_receipt",
        "backlog": "backlog_mt",
        "backlog_receipts": "backlog_mt_receipt",
    }
    for window, phases in results.items():
        for phase, runs in phases.items():
            median = median_of(runs)
            if phase in names:
                fields.append(f"w{window}_{names[phase]}_per_s={median['per_s']:.0f}")
            if phase == "mo":
                fields.append(f"w{window}_mo_p99_ms={median['p99_ms']:.2f}")
                for who in ("daemon", "pg", "smsc"):
                    fields.append(f"w{window}_{who}_us_per_mo={median[f'{who}_us']:.0f}")
            if phase in ("mt", "receipts", "backlog", "backlog_receipts"):
                for who in ("daemon", "pg"):
                    fields.append(f"w{window}_{who}_us_per_{names[phase]}={median[f'{who}_us']:.0f}")
            if phase == "floor":
                fields.append(f"w{window}_floor_mo_per_s={median['per_s']:.0f}")
                for who in ("driver", "pg"):
                    fields.append(f"w{window}_floor_{who}_us_per_mo={median[f'{who}_us']:.0f}")
            if phase == "latency":
                fields.append(f"w{window}_mo_p50_ms_at_{latency_rate}={median['p50_ms']:.2f}")
                fields.append(f"w{window}_mo_p99_ms_at_{latency_rate}={median['p99_ms']:.2f}")
            if phase == "roundtrip":
                fields += [
                    f"roundtrip_{name}_us={median[f'{name}_wall_us']:.0f}"
                    for name in ("asyncpg_select", "unit_select", "unit_insert", "unit_no_ping_insert")
                ]
            if phase == "reference":
                fields.append(f"w{window}_smsc_ref_mo_per_s={median['mo_per_s']:.0f}")
                fields.append(f"w{window}_smsc_ref_mt_receipt_per_s={median['mt_receipt_per_s']:.0f}")
    return "RESULT " + " ".join(fields)


async def main(args: argparse.Namespace) -> None:
    prefix = f"bench-per-bind-{uuid.uuid4().hex[:8]}"
    print(
        f"per_bind: windows {args.window}, phases {args.phase}, median of {args.repeat}"
        + (", daemon on asyncio's own loop" if args.event_loop == "asyncio" else "")
        + "".join(f", what if {name}" for name in args.what_if)
        + f"; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores",
        flush=True,
    )
    results: dict[int, dict[str, list[Figures]]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        async with AsyncExitStack() as stack:
            url = await stack.enter_async_context(scratch_database())
            await upgrade(url)
            if args.statements:
                await _create_pg_stat_statements(url)
            smsc = await stack.enter_async_context(SMSCProcess())
            producer = await stack.enter_async_context(Producer(url, prefix, args.inject_batch))
            if "roundtrip" in args.phase:
                runs = [await roundtrip_costs(url) for _ in range(args.repeat)]
                show_roundtrips(median_of(runs))
                results[0] = {"roundtrip": runs}
            for index, window in enumerate(args.window):
                results[window] = await run_window(
                    args, smsc, producer, url, prefix, directory, window, created=index > 0
                )
    print(result_line(results, args.latency_rate), flush=True)


async def _create_pg_stat_statements(url: str) -> None:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            await connection.execute(text("SELECT count(*) FROM pg_stat_statements"))
    except Exception as error:
        raise SystemExit(
            f"--statements: pg_stat_statements is not usable on this server ({error}); start one with "
            "shared_preload_libraries = 'pg_stat_statements' and point ECHAT_TEST_PG_PORT at it"
        ) from error
    finally:
        await engine.dispose()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--window", type=int, action="append", help="bind window (repeat: 100 and 10 by default)"
    )
    parser.add_argument(
        "--phase", choices=PHASES, action="append", help=f"phases to run (default all: {PHASES})"
    )
    parser.add_argument(
        "--messages", type=int, help="messages per phase (default 20,000 at W>10, else 10,000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each phase; the median is reported")
    parser.add_argument("--subscribers", type=int, default=5000, help="distinct subscriber numbers")
    parser.add_argument("--latency-rate", type=int, default=1000, help="MOs per second of the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--inject-batch", type=int, default=500, help="MTs per producer transaction")
    parser.add_argument(
        "--awake",
        action="store_true",
        help="no quiet hours (by default the run is inside the clients' quiet hours, whatever the hour)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy record of the daemon into artifacts/")
    parser.add_argument(
        "--perf", action="store_true", help="perf record of the PostgreSQL backends into artifacts/"
    )
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the daemon's event loop (gatewayd run --event-loop; uvloop is its default)",
    )
    parser.add_argument("--trace", action="store_true", help="per-cycle breakdown from inside the daemon")
    parser.add_argument("--statements", action="store_true", help="pg_stat_statements per phase")
    parser.add_argument(
        "--what-if", choices=WHAT_IFS, action="append", default=[], help="a daemon variant (bench/_daemon.py)"
    )
    args = parser.parse_args(argv)
    args.window = args.window or [100, 10]
    args.phase = args.phase or list(PHASES)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
