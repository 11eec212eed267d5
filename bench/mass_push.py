"""Mass push at scale (issue 13, 1.6) on PostgreSQL: a million clients' audience counted and
snapshotted, then the daemon's campaign sender against a lean SMSC while operators' replies are timed.

Processes: PostgreSQL (a scratch database of bench/scratch_postgres.py, dropped at the end), the lean
SMSC (bench/_lean_smsc.py: answers and receipts at once), the daemon (``gatewayd run``: one
transceiver bind of ``--bind-tps``, ``[campaigns]`` without quiet hours), the panel (this script's
``panel`` mode under uvicorn: the campaigns plugin) and this driver. Steps:

  history    ``--clients`` subscribers with a push / MO history, generated set-based in SQL: two
             pushes each, a first MO before them; 60 % answered the last push, 20 % only the one
             before, 20 % none; 2 % opted out, 1 % banned
  audience   the audience of "answered one of the last 2 pushes" counted (``audience_size``), then a
             campaign started: its audience snapshotted into ``campaign_recipients`` (``start_due``),
             the very statements the panel and the daemon run; target under 60 s together
  alone      replies (kind reply, priority 0) queued at ``--reply-rate`` for ``--seconds``, the
             campaign paused: queue -> submit_sm_resp (the part's ``accepted_at``) p50 / p99
  campaign   the campaign running at ``--campaign-tps`` (the bind's TPS above it) and the same replies:
             their latency, and the campaign's MTs queued per second meanwhile
  run        the campaign goes on for ``--seconds`` more (memory)

Throughout, the daemon's and the panel's RSS are sampled every second, and a signed-in client reads
the campaign's progress (``/admin/campaigns/{id}/progress``) every half second, timed.

    .venv/bin/python bench/mass_push.py [--clients 1000000] [--seconds 15] [--reply-rate 20]
        [--campaign-tps 200] [--bind-tps 1000] [--backlog-seconds 5]

Ends with one ``RESULT key=value ...`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
from _lean_smsc import SHORT_CODE, msisdn  # noqa: E402
from per_bind import MQTT_URL, DaemonOptions, SMSCProcess, daemon_process, wait_bound  # noqa: E402
from scratch_postgres import scratch_database  # noqa: E402
from sqlalchemy import text, update  # noqa: E402

from gatewayd.bus import create_bus  # noqa: E402
from gatewayd.schema import upgrade  # noqa: E402
from gatewayd.store.accounts import Role  # noqa: E402
from gatewayd.store.campaigns import Campaign, CampaignStatus  # noqa: E402
from gatewayd.store.engine import create_engine, session_factory  # noqa: E402
from gatewayd.store.enums import MTKind  # noqa: E402
from gatewayd.store.mt.queue import queue_mts  # noqa: E402
from gatewayd.store.mt.values import NewMT  # noqa: E402
from gatewayd.store.repo_campaigns import AudienceSpec, audience_size, start_due  # noqa: E402
from gatewayd.webserver import listening_socket  # noqa: E402
from panel.auth.accounts import create_account  # noqa: E402
from panel.auth.passwords import PasswordPolicy  # noqa: E402
from panel.auth.permissions import PermissionRegistry  # noqa: E402
from panel.settings import Argon2Params, PanelSettings  # noqa: E402
from panel.types import Plugin  # noqa: E402

CARRIER = "movistar"
ADMIN = "ana"
PASSWORD = "correct horse battery"
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost=64, parallelism=1)
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
T0 = datetime.now(UTC).replace(microsecond=0)

HISTORY = [
    """INSERT INTO subscribers (id, client_id, msisdn, carrier, country, first_seen, last_seen, opted_out,
       banned, mo_count, mt_count)
     SELECT i, 'B' || lpad(upper(to_hex(i)), 8, '0'), '3460' || lpad(i::text, 7, '0'), 'movistar', 'ES',
       :t0 - interval '4 days', :t0 - interval '1 day', i % 50 = 0, i % 100 = 1, 2, 2
     FROM generate_series(1, :n) AS i""",
    "SELECT setval(pg_get_serial_sequence('subscribers', 'id'), :n)",
    """INSERT INTO mt_messages (status, kind, text, segments, attempts, next_attempt_at, priority,
       request_receipt, carrier, source, destination, subscriber_id, created_at, updated_at, final_at)
     SELECT 'delivered', 'push', 'promo', 1, 1, p.at, 0, true, 'movistar', '997745', s.msisdn, s.id,
       p.at, p.at, p.at
     FROM subscribers s CROSS JOIN (VALUES (:t0 - interval '3 days'), (:t0 - interval '2 days')) AS p(at)""",
    """INSERT INTO mo_messages (dedup_key, subscriber_id, carrier, short_code, country, text, data_coding,
       parts, incomplete, received_at, service)
     SELECT md5(s.id::text || m.tag), s.id, 'movistar', '997745', 'ES', 'hola', 0, 1, false, m.at, 'chat'
     FROM subscribers s
     JOIN (VALUES ('first', :t0 - interval '4 days', 10), ('last', :t0 - interval '1 day', 6),
                  ('before', :t0 - interval '60 hours', -8)) AS m(tag, at, below)
       ON (m.below > 0 AND s.id % 10 < m.below) OR (m.below < 0 AND s.id % 10 IN (6, 7))""",
    "ANALYZE subscribers",
    "ANALYZE mt_messages",
    "ANALYZE mo_messages",
]


def expected_audience(clients: int) -> int:
    """Who answered one of the last two pushes and may receive a mass push, by the history's rule."""
    return sum(1 for i in range(1, clients + 1) if i % 10 < 8 and i % 50 != 0 and i % 100 != 1)


def panel_plugins() -> list[Plugin]:
    from gatewayd.assignment import AssignmentPolicy
    from plugins import auth, campaigns, gallery, home
    from plugins.desk import DeskSettings, build_plugin

    desk = DeskSettings(policy=AssignmentPolicy(sweep_interval=3600.0), heartbeat=5.0)
    return [auth.plugin, home.plugin, build_plugin(desk), gallery.plugin, campaigns.plugin]


# --- the panel process -------------------------------------------------------------------------------


async def run_panel(database_url: str) -> None:
    """The panel under uvicorn until SIGTERM; prints ``PANEL_URL <url>`` once up."""
    import uvicorn

    from panel.app import create_app
    from panel.serve import memory_bus_factory

    # the progress is read from the database: the panel needs no broker here
    settings = PanelSettings(database_url=database_url, secure_cookies=False, argon2=FAST_ARGON2)
    app = create_app(settings, bus_factory=memory_bus_factory, plugins=panel_plugins())
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=1)
    )
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, lambda: setattr(server, "should_exit", True)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name="bench.panel")
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    print(f"PANEL_URL http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await task


@contextlib.asynccontextmanager
async def panel_process(database_url: str) -> AsyncIterator[tuple[str, int]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "panel", database_url, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"the panel process ended (code {await process.wait()})")
                if line.startswith("PANEL_URL "):
                    break
        yield line.split()[1], process.pid
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


# --- the driver ----------------------------------------------------------------------------------------


def daemon_toml(directory: Path, url: str, port: int, prefix: str, bind_tps: int, backlog: float) -> Path:
    path = directory / "gatewayd.toml"
    path.write_text(
        f"""
[database]
url = "{url}"

[bus]
url = "{MQTT_URL}"
topic_prefix = "{prefix}"

[log]
level = "WARNING"

[metrics]
enabled = false

[daemon]
instance = "{prefix}"

[campaigns]
quiet_hours = "off"
backlog_seconds = {backlog}

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
window = 100
tps = {bind_tps}
response_timeout = 30
""",
        encoding="utf-8",
    )
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Samples:
    daemon: list[float] = field(default_factory=list)
    panel: list[float] = field(default_factory=list)
    progress_ms: list[float] = field(default_factory=list)


async def sample_memory(samples: Samples, daemon: int, panel: int) -> None:
    while True:
        samples.daemon.append(rss_mb(daemon))
        samples.panel.append(rss_mb(panel))
        await asyncio.sleep(1.0)


async def read_progress(samples: Samples, client: httpx.AsyncClient, campaign_id: int) -> None:
    while True:
        started = time.perf_counter()
        response = await client.get(f"/admin/campaigns/{campaign_id}/progress")
        response.raise_for_status()
        samples.progress_ms.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.5)


async def sign_in(client: httpx.AsyncClient) -> None:
    page = await client.get("/login", headers={"accept": "text/html"})
    found = _CSRF.search(page.text)
    assert found is not None, "no CSRF token on /login"
    response = await client.post(
        "/login", data={"csrf_token": found.group(1), "username": ADMIN, "password": PASSWORD}
    )
    if response.status_code != 303:
        raise RuntimeError(f"login refused: {response.status_code}")


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))] if ordered else 0.0


class Driver:
    def __init__(self, url: str, prefix: str) -> None:
        self.engine = create_engine(url, pool_size=2, max_overflow=0)
        self.sessions = session_factory(self.engine)
        self.bus = create_bus(MQTT_URL, topic_prefix=prefix, client_id=f"{prefix}-driver")
        #: Each reply's own transaction (queue -> committed), in ms.
        self.commit_ms: list[float] = []

    async def replies(self, rate: float, seconds: float, offset: int) -> tuple[int, int, int]:
        """Replies at ``rate`` a second (one transaction and one wake-up each), as the desk queues them."""
        count = max(1, int(rate * seconds))
        lowest = highest = 0
        started = time.monotonic()
        for index in range(count):
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            # clients i % 10 == 3: none opted out or banned (the claim would refuse the reply)
            to = msisdn(offset + index * 10 + 3)
            mt = NewMT(MTKind.REPLY, CARRIER, SHORT_CODE, to, "respuesta del operador")
            queued_at = time.perf_counter()
            async with self.sessions() as session, session.begin():
                (mt_id,) = await queue_mts(session, [mt], datetime.now(UTC))
            self.commit_ms.append(1000 * (time.perf_counter() - queued_at))
            await self.bus.publish(self.bus.topics.outbox_queued(), {"mt_id": mt_id})
            lowest, highest = lowest or mt_id, mt_id
        return lowest, highest, count

    async def reply_latency(self, lowest: int, highest: int, count: int) -> tuple[list[float], list[float]]:
        """Each of the ``count`` replies' queue -> submit_sm_resp, and of it queue -> claimed (its
        ``sending`` history line), in ms, once all are answered. Campaign MTs queued meanwhile have ids
        between the replies': only the replies are read."""
        statement = text(
            """SELECT extract(epoch FROM p.accepted_at - m.created_at) * 1000,
                      extract(epoch FROM (SELECT min(h.at) FROM mt_status_history h
                                          WHERE h.mt_id = m.id AND h.status = 'sending')
                                         - m.created_at) * 1000
               FROM mt_messages m JOIN mt_parts p ON p.mt_id = m.id
               WHERE m.id BETWEEN :lo AND :hi AND m.kind = 'reply' AND p.accepted_at IS NOT NULL"""
        )
        async with asyncio.timeout(60):
            while True:
                async with self.sessions() as session:
                    found = (await session.execute(statement, {"lo": lowest, "hi": highest})).all()
                if len(found) >= count:
                    return sorted(float(row[0]) for row in found), sorted(float(row[1]) for row in found)
                await asyncio.sleep(0.2)

    async def campaign(self, campaign_id: int) -> Campaign:
        async with self.sessions() as session:
            found = await session.get(Campaign, campaign_id)
            assert found is not None
            return found

    async def set_status(self, campaign_id: int, status: CampaignStatus) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(update(Campaign).where(Campaign.id == campaign_id).values(status=status))


async def make_history(url: str, clients: int) -> float:
    engine = create_engine(url)
    started = time.perf_counter()
    try:
        async with engine.begin() as connection:
            for statement in HISTORY:
                sql = statement.replace(":t0", "CAST(:t0 AS timestamptz)")
                await connection.execute(text(sql), {"n": clients, "t0": T0})
    finally:
        await engine.dispose()
    return time.perf_counter() - started


async def audience_and_snapshot(url: str, campaign_tps: int) -> tuple[int, float, int, float, int]:
    """(size, count seconds, recipients, snapshot seconds, campaign id); the campaign left paused."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    spec = AudienceSpec(2, include_new=False)
    try:
        started = time.perf_counter()
        async with sessions() as session:
            size = await audience_size(session, spec, datetime.now(UTC))
        counted = time.perf_counter() - started
        now = datetime.now(UTC)
        async with sessions() as session, session.begin():
            campaign = Campaign(
                name="bench",
                text="Vuelve al chat {host}",
                last_pushes=2,
                include_new=False,
                tps=campaign_tps,
                ignore_quiet_hours=True,
                status=CampaignStatus.SCHEDULED,
                scheduled_at=now,
                created_by=ADMIN,
                created_at=now,
                updated_at=now,
            )
            session.add(campaign)
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            ((campaign_id, recipients),) = await start_due(session, datetime.now(UTC))
            await session.execute(
                update(Campaign).where(Campaign.id == campaign_id).values(status=CampaignStatus.PAUSED)
            )
        snapshot = time.perf_counter() - started
        async with sessions() as session, session.begin():
            await create_account(
                session,
                PasswordPolicy(FAST_ARGON2),
                PermissionRegistry.build(panel_plugins()),
                username=ADMIN,
                password=PASSWORD,
                role=Role.ADMIN,
            )
    finally:
        await engine.dispose()
    return size, counted, recipients, snapshot, campaign_id


Figures = tuple[float, float, float]


def show_latency(figures: Figures, claims: Figures, commits: Figures) -> None:
    for label, (p50, p99, worst) in (
        ("reply queue->submit_sm_resp", figures),
        ("  of which queue->claimed  ", claims),
        ("  of which queue->committed", commits),
    ):
        print(f"  {label} p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms", flush=True)


def commit_figures(driver: Driver) -> Figures:
    """The replies' own transactions since the last call."""
    figures = latency_figures(sorted(driver.commit_ms))
    driver.commit_ms.clear()
    return figures


def latency_figures(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), percentile(values, 0.99), max(values)


async def drive(args: argparse.Namespace) -> int:
    figures: dict[str, float] = {"clients": args.clients}
    async with scratch_database() as url, contextlib.AsyncExitStack() as stack:
        await upgrade(url)
        print(f"history: {args.clients:,} clients ...", flush=True)
        figures["history_s"] = await make_history(url, args.clients)
        print(f"  generated in {figures['history_s']:.1f} s", flush=True)
        size, counted, recipients, snapshot, campaign_id = await audience_and_snapshot(url, args.campaign_tps)
        assert size == recipients == expected_audience(args.clients), (size, recipients)
        figures |= {
            "audience": size,
            "count_s": counted,
            "snapshot_s": snapshot,
            "audience_s": counted + snapshot,
        }
        print(
            f"audience: {size:,} clients counted in {counted:.2f} s, snapshotted in {snapshot:.2f} s "
            f"(together {counted + snapshot:.2f} s; target < 60 s)",
            flush=True,
        )

        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mass-push-")))
        prefix = f"bench-mass-{int(time.time())}"
        smsc = await stack.enter_async_context(SMSCProcess())
        config = daemon_toml(workdir, url, smsc.port, prefix, args.bind_tps, args.backlog_seconds)
        log = workdir / "daemon.log"
        daemon = await stack.enter_async_context(daemon_process(config, DaemonOptions(log=log)))
        await wait_bound(smsc, daemon, log)
        await smsc.call("receipts", on=True)
        panel_url, panel_pid = await stack.enter_async_context(panel_process(url))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=panel_url, timeout=30))
        await sign_in(client)
        driver = Driver(url, prefix)
        await stack.enter_async_context(driver.bus)
        async with asyncio.timeout(10):
            await driver.bus.wait_connected()  # type: ignore[attr-defined]
        stack.push_async_callback(driver.engine.dispose)
        samples = Samples()
        background = [
            asyncio.create_task(sample_memory(samples, daemon.pid, panel_pid), name="bench.memory"),
            asyncio.create_task(read_progress(samples, client, campaign_id), name="bench.progress"),
        ]
        try:
            print(
                f"alone: replies at {args.reply_rate}/s for {args.seconds} s, the campaign paused", flush=True
            )
            lo, hi, count = await driver.replies(args.reply_rate, args.seconds, 0)
            totals, claims = await driver.reply_latency(lo, hi, count)
            alone, alone_claims = latency_figures(totals), latency_figures(claims)
            alone_commits = commit_figures(driver)
            show_latency(alone, alone_claims, alone_commits)

            await driver.set_status(campaign_id, CampaignStatus.RUNNING)
            async with asyncio.timeout(60):  # the campaign's backlog is in the outbox
                while (await driver.campaign(campaign_id)).pending > recipients - args.campaign_tps * 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            before = await driver.campaign(campaign_id)
            started = time.monotonic()
            print(
                f"campaign: replies at {args.reply_rate}/s for {args.seconds} s, the campaign running",
                flush=True,
            )
            lo, hi, count = await driver.replies(args.reply_rate, args.seconds, 100_000)
            totals, claims = await driver.reply_latency(lo, hi, count)
            during, during_claims = latency_figures(totals), latency_figures(claims)
            during_commits = commit_figures(driver)
            after = await driver.campaign(campaign_id)
            rate = (before.pending - after.pending) / (time.monotonic() - started)
            show_latency(during, during_claims, during_commits)
            print(
                f"  campaign MTs queued: {rate:.0f}/s "
                f"(campaign TPS {args.campaign_tps}, bind TPS {args.bind_tps})"
            )
            print(f"run: the campaign goes on for {args.seconds} s", flush=True)
            await asyncio.sleep(args.seconds)
            final = await driver.campaign(campaign_id)
            print(
                f"  recipients: {final.total:,} total, {final.pending:,} pending, "
                f"{final.delivered:,} delivered,"
                f" {final.queued + final.sent:,} in flight"
            )
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        progress = sorted(samples.progress_ms)
        figures |= {
            "reply_p50_ms_alone": alone[0],
            "reply_p99_ms_alone": alone[1],
            "reply_p50_ms_campaign": during[0],
            "reply_p99_ms_campaign": during[1],
            "reply_max_ms_campaign": during[2],
            "reply_claim_p50_ms_alone": alone_claims[0],
            "reply_claim_p50_ms_campaign": during_claims[0],
            "reply_claim_p99_ms_campaign": during_claims[1],
            "reply_commit_p50_ms_alone": alone_commits[0],
            "reply_commit_p50_ms_campaign": during_commits[0],
            "campaign_mt_per_s": rate,
            "progress_p50_ms": statistics.median(progress),
            "progress_p99_ms": percentile(progress, 0.99),
            "daemon_rss_mb_first": samples.daemon[0],
            "daemon_rss_mb_last": samples.daemon[-1],
            "daemon_rss_mb_max": max(samples.daemon),
            "panel_rss_mb_first": samples.panel[0],
            "panel_rss_mb_last": samples.panel[-1],
            "panel_rss_mb_max": max(samples.panel),
        }
        print(
            f"progress endpoint: {len(progress)} reads, p50 {figures['progress_p50_ms']:.1f} ms, "
            f"p99 {figures['progress_p99_ms']:.1f} ms"
        )
        print("RSS (MB, every second) daemon: " + " ".join(f"{v:.0f}" for v in samples.daemon))
        print("RSS (MB, every second) panel:  " + " ".join(f"{v:.0f}" for v in samples.panel))
    print(
        "RESULT "
        + " ".join(
            f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}"
            for key, value in figures.items()
        )
    )
    return 0


def main() -> int:
    if sys.argv[1:2] == ["panel"]:
        asyncio.run(run_panel(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--reply-rate", type=float, default=20.0)
    parser.add_argument("--campaign-tps", type=int, default=200)
    parser.add_argument("--bind-tps", type=int, default=1000)
    parser.add_argument("--backlog-seconds", type=float, default=5.0, help="[campaigns] backlog_seconds")
    return asyncio.run(drive(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
