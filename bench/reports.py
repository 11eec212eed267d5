"""The reports on a year of traffic in PostgreSQL, and what their rollups cost the daemon's hot path.

1. A scratch database gets ``--rows`` MOs and as many MTs (10 million each by default) spread over one
   year, generated set-based in the database (``generate_series``): subscribers, conversations,
   operators, MOs, MTs with final statuses, operators' replies;
2. the rollups are built with the rebuild path (``gatewayd reports rebuild``), timed;
3. every report's queries (the reports plugin's own functions: per day and hour, per operator, the
   traffic per service, short code, carrier and country) are run ``--runs`` times for a month and for
   the year: p95 each (target < 500 ms);
4. ``bench/gatewayd_throughput.py`` runs without and with the rollups (``--without-rollups`` swaps the
   pipelines' rollup calls for nothing in that bench process only), runs alternating, best of
   ``--throughput-runs`` each: each figure with rollups as a share of the figure without (target >= 90 %).

The scratch database is dropped at the end. Ends with one ``RESULT key=value ...`` line.
Run: ``.venv/bin/python bench/reports.py`` (``--rows 100000 --no-throughput`` for a quick try).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratch_postgres import scratch_database  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from gatewayd.schema import upgrade  # noqa: E402
from gatewayd.store.engine import create_engine, read_session_factory, session_factory  # noqa: E402
from gatewayd.store.rollups import OperatorHourly, TrafficHourly  # noqa: E402
from gatewayd.store.store import Store  # noqa: E402
from plugins.reports.figures import DIMENSIONS, hourly_totals, operators, traffic_by  # noqa: E402

YEAR_START = datetime(2025, 12, 1, tzinfo=UTC)
MONTH = (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
YEAR = (YEAR_START, YEAR_START + timedelta(days=365))
OPERATORS = 25

# Subscribers' carriers and countries, and the short codes of four services: a realistic few dozen
# combinations of the traffic's dimensions per hour.
GENERATE = [
    """INSERT INTO subscribers (client_id, msisdn, carrier, country, first_seen, last_seen, opted_out,
                                opted_out_at, banned, mo_count, mt_count)
       SELECT 'B' || lpad(to_hex(g), 8, '0'), (34600000000 + g)::text,
              (ARRAY['movistar', 'vodafone', 'orange', 'claro'])[1 + g % 4],
              (ARRAY['ES', 'ES', 'ES', 'CO'])[1 + g % 4],
              CAST(:start AS timestamptz), CAST(:start AS timestamptz), g % 50 = 0,
              CASE WHEN g % 50 = 0 THEN CAST(:start AS timestamptz) + (g % 365) * interval '1 day' END,
              false, 0, 0
       FROM generate_series(1::bigint, :subscribers) AS g""",
    """INSERT INTO conversations (subscriber_id, short_code, status, service, opened_at, callcentre)
       SELECT s.id, (ARRAY['997745', '795500', '222333', '444555', '666777', '888999'])[1 + s.id % 6],
              'closed', (ARRAY['chat', 'chat', 'ligue', 'ligue', 'tarot', 'futbol'])[1 + s.id % 6],
              CAST(:start AS timestamptz), false
       FROM subscribers AS s""",
    """INSERT INTO accounts (username, display_name, password_hash, role, permissions, locked, language,
                             timezone, presence, max_open_conversations, created_at, password_changed_at)
       SELECT 'op' || g, 'Operator ' || g, '-', 'operator', '[]', false, 'es', 'Europe/Madrid', 'offline', 5,
              CAST(:start AS timestamptz), CAST(:start AS timestamptz)
       FROM generate_series(1, :operators) AS g""",
    # MOs: each subscriber's into their conversation, at a time of day weighted toward the evening
    """INSERT INTO mo_messages (dedup_key, subscriber_id, conversation_id, carrier, short_code, country, text,
                                data_coding, parts, incomplete, received_at, service)
       SELECT md5(g::text), c.subscriber_id, c.id, s.carrier, c.short_code, s.country, 'hola', 0, 1, false,
              CAST(:start AS timestamptz) + ((g * 7919) % 365) * interval '1 day'
                     + (((g * 104729) % 86400)::float8 ^ 0.8 * 86400.0::float8 ^ 0.2) * interval '1 second',
              c.service
       FROM generate_series(1::bigint, :rows) AS g
       JOIN conversations AS c ON c.id = 1 + g % :subscribers
       JOIN subscribers AS s ON s.id = c.subscriber_id""",
    # MTs: 60 % operators' replies into a conversation, the rest pushes; final statuses mostly delivered
    """INSERT INTO mt_messages (status, kind, text, segments, attempts, next_attempt_at, priority,
                                request_receipt, carrier, source, destination, subscriber_id, conversation_id,
                                operator_id, created_at, updated_at, final_at)
       SELECT (ARRAY['delivered', 'delivered', 'delivered', 'delivered', 'delivered', 'delivered',
                     'delivered', 'delivered', 'failed', 'expired', 'refused', 'accepted'])[1 + g % 12],
              CASE WHEN g % 5 < 3 THEN 'reply' ELSE 'push' END, 'hola', 1, 1, t.at, 0, true, s.carrier,
              c.short_code, s.msisdn, s.id, CASE WHEN g % 5 < 3 THEN c.id END,
              1 + g % :operators, t.at, t.at, t.at
       FROM generate_series(1::bigint, :rows) AS g
       JOIN conversations AS c ON c.id = 1 + (g * 31) % :subscribers
       JOIN subscribers AS s ON s.id = c.subscriber_id
       CROSS JOIN LATERAL (SELECT CAST(:start AS timestamptz) + ((g * 7919) % 365) * interval '1 day'
                                 + ((g * 104723) % 86400) * interval '1 second' AS at) AS t""",
]


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def generate(url: str, rows: int) -> float:
    """The traffic, inserted with the message tables' secondary indexes dropped and foreign keys not
    checked (rebuilt and valid afterwards: the rows are generated consistent), as a bulk load does."""
    engine = create_engine(url)
    subscribers = max(1000, rows // 20)
    values = {"start": YEAR_START, "subscribers": subscribers, "operators": OPERATORS, "rows": rows}
    started = time.perf_counter()
    try:
        async with engine.begin() as connection:
            await connection.execute(text("SET LOCAL session_replication_role = replica"))
            indexes = (
                await connection.execute(
                    text(
                        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('mo_messages', "
                        "'mt_messages') AND indexname NOT LIKE 'pk_%'"
                    )
                )
            ).all()
            for name, _ in indexes:
                await connection.execute(text(f'DROP INDEX "{name}"'))
            for statement in GENERATE:
                began = time.perf_counter()
                wanted = {name: value for name, value in values.items() if f":{name}" in statement}
                await connection.execute(text(statement).bindparams(**wanted))
                label = " ".join(statement.split()[:3])
                print(f"  {label[:40]:40s} {time.perf_counter() - began:7.1f} s", flush=True)
            began = time.perf_counter()
            for _, definition in indexes:
                await connection.execute(text(definition))
            print(
                f"  {len(indexes)} indexes made again{'':19s} {time.perf_counter() - began:7.1f} s",
                flush=True,
            )
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()
    return time.perf_counter() - started


async def rebuild(url: str) -> tuple[float, int, int]:
    engine = create_engine(url)
    try:
        started = time.perf_counter()
        store = Store.for_engine(engine)
        async with store.transaction() as session:
            await store.rollup_rebuild.rebuild(session)
        seconds = time.perf_counter() - started
        async with engine.begin() as connection:
            await connection.execute(
                text("ANALYZE traffic_hourly, operator_hourly, operator_first_responses")
            )
        async with session_factory(engine)() as session:
            traffic = int(
                (await session.execute(select(func.count()).select_from(TrafficHourly))).scalar_one()
            )
            per_operator = int(
                (await session.execute(select(func.count()).select_from(OperatorHourly))).scalar_one()
            )
        return seconds, traffic, per_operator
    finally:
        await engine.dispose()


async def time_reports(url: str, runs: int) -> dict[str, float]:
    engine = create_engine(url)
    readers = read_session_factory(engine)
    Report = Callable[[AsyncSession, datetime, datetime], Awaitable[object]]
    reports: dict[str, Report] = {"per_day_hour": hourly_totals, "operators": operators}
    for dimension in DIMENSIONS:
        reports[f"by_{dimension}"] = lambda session, start, end, d=dimension: traffic_by(
            session, d, start, end
        )
    figures: dict[str, float] = {}
    try:
        for span, (start, end) in (("month", MONTH), ("year", YEAR)):
            for name, report in reports.items():
                samples = []
                for _ in range(runs):
                    began = time.perf_counter()
                    async with readers() as session:
                        await report(session, start, end)
                    samples.append((time.perf_counter() - began) * 1000)
                figures[f"{name}_{span}_p95_ms"] = p95(samples)
                median = sorted(samples)[runs // 2]
                print(f"  {name:14s} {span:5s} p95 {p95(samples):8.1f} ms  (median {median:.1f})")
    finally:
        await engine.dispose()
    return figures


THROUGHPUT_KEYS = ("mo_per_s", "mo_steady_per_s", "mt_accepted_per_s", "mt_receipts_per_s")


def throughput_run(extra: list[str], without: bool) -> dict[str, float]:
    """One run of bench/gatewayd_throughput.py: its figures."""
    script = Path(__file__).with_name("gatewayd_throughput.py")
    command = [sys.executable, str(script), *extra, *(["--without-rollups"] if without else [])]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = next(line for line in output.splitlines() if line.startswith("RESULT "))
    print(f"  {'without' if without else 'with   '} rollups: {result}", flush=True)
    return {
        key: float(value)
        for key, value in re.findall(r"(\w+)=([0-9.]+)", result)
        if key.endswith(THROUGHPUT_KEYS)
    }


def throughput(extra: list[str], runs: int) -> tuple[dict[str, float], dict[str, float]]:
    """The best of ``runs`` runs without and with the rollups, per figure; runs alternate, so that
    what else the machine does weighs on both alike."""
    best: tuple[dict[str, float], dict[str, float]] = ({}, {})
    for _ in range(runs):
        for index, without in enumerate((True, False)):
            for key, value in throughput_run(extra, without).items():
                best[index][key] = max(best[index].get(key, 0.0), value)
    return best


async def main(args: argparse.Namespace) -> None:
    results: dict[str, float] = {"rows": args.rows}
    async with scratch_database() as url:
        await upgrade(url)
        print(f"generating {args.rows} MOs and {args.rows} MTs over a year ...", flush=True)
        results["generate_s"] = await generate(url, args.rows)
        seconds, traffic_rows, operator_rows = await rebuild(url)
        print(
            f"rollups rebuilt in {seconds:.1f} s: {traffic_rows} traffic rows, {operator_rows} operator rows"
        )
        results.update(rebuild_s=seconds, traffic_rows=traffic_rows, operator_rows=operator_rows)
        print(f"reports, p95 of {args.runs} runs:", flush=True)
        reports = await time_reports(url, args.runs)
        results.update(reports)
        results["worst_report_p95_ms"] = max(reports.values())
    if not args.no_throughput:
        extra = args.throughput_args.split()
        print("bench/gatewayd_throughput.py " + " ".join(extra), flush=True)
        without, with_rollups = throughput(extra, args.throughput_runs)
        for key, base in without.items():
            results[f"{key}_share_pct"] = 100 * with_rollups.get(key, 0.0) / base if base else 0.0
            print(
                f"  {key:24s} without {base:9.0f}/s  with {with_rollups.get(key, 0.0):9.0f}/s"
                f"  {results[f'{key}_share_pct']:5.1f} %"
            )
        results["worst_share_pct"] = min(
            value for key, value in results.items() if key.endswith("_share_pct")
        )
    print(
        "RESULT "
        + " ".join(
            f"{key}={value:.1f}" if isinstance(value, float) else f"{key}={value}"
            for key, value in results.items()
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="MOs, and as many MTs")
    parser.add_argument("--runs", type=int, default=20, help="runs of each report query (p95 over them)")
    parser.add_argument("--no-throughput", action="store_true", help="skip the hot-path comparison")
    parser.add_argument("--throughput-runs", type=int, default=3, help="runs of each throughput variant")
    parser.add_argument(
        "--throughput-args",
        default="--mo 10000 --mt 5000 --latency-seconds 1",
        help="options for bench/gatewayd_throughput.py",
    )
    asyncio.run(main(parser.parse_args()))
