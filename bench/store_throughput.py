"""Store throughput: the daemon's hot paths against a fresh PostgreSQL database and a fresh SQLite file.

Prints, per backend:
  MO ingest    ``store.mos.ingest`` in committed batches, several concurrent sessions (the MO pipeline's group
               commit). ``first contact``: 40,000 MOs from 20,000 MSISDNs (half new subscribers, half
               already known); ``steady``: the same subscribers writing again (all known, conversations
               open), the daemon's usual case.
  MT           per batch, three transactions as the MT pipeline and its recorder do them:
               ``store.claims.claim`` -> ``store.results.record`` (every segment accepted) ->
               ``store.receipts.record`` (DELIVRD), after which every MT must be ``delivered``.
               Queueing is not timed.
Ends with one ``RESULT`` line (the MO figure is the first-contact run, the MT figure the loop above).

    .venv/bin/python bench/store_throughput.py [--backend both|postgresql|sqlite] [--mos 40000]
        [--subscribers 20000] [--mo-batch 2000] [--concurrency 4] [--mts 20000] [--mt-batch 1000]
        [--without-rollups]

PostgreSQL: 127.0.0.1:5432, user postgres (``ECHAT_TEST_PG_*`` as in tests/conftest.py); a database is
created for the run and dropped afterwards. SQLite: a file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch_postgres import scratch_database  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402

from gatewayd.mo_message import dedup_key  # noqa: E402
from gatewayd.schema import upgrade  # noqa: E402
from gatewayd.store.base import utcnow  # noqa: E402
from gatewayd.store.engine import create_engine  # noqa: E402
from gatewayd.store.enums import MTKind, MTStatus  # noqa: E402
from gatewayd.store.messages import MOMessage, MTMessage  # noqa: E402
from gatewayd.store.mt.queue import queue_mts  # noqa: E402
from gatewayd.store.mt.values import NewMT, PartResult, ReceiptIn, RetryPolicy  # noqa: E402
from gatewayd.store.repo_mo import NewMO  # noqa: E402
from gatewayd.store.store import Store  # noqa: E402

CARRIER = "movistar"
SHORT_CODE = "997745"


@dataclass(frozen=True, slots=True)
class Workload:
    mos: int
    subscribers: int
    mo_batch: int
    concurrency: int
    mts: int
    mt_batch: int


@dataclass(frozen=True, slots=True)
class Figures:
    mo_first_contact: float
    mo_steady: float
    mt: float


def _msisdn(index: int, subscribers: int) -> str:
    return f"346{index % subscribers:08d}"


def _mos(workload: Workload, round_no: int, now: datetime) -> list[NewMO]:
    mos = []
    for index in range(workload.mos):
        msisdn = _msisdn(index, workload.subscribers)
        key = dedup_key(CARRIER, msisdn, SHORT_CODE, 0, f"r{round_no} hola {index}".encode())
        mos.append(NewMO(key, msisdn, CARRIER, SHORT_CODE, f"hola {index}", now, country="ES"))
    return mos


async def _ingest(store: Store, mos: Sequence[NewMO], workload: Workload, now: datetime) -> float:
    batches = [mos[start : start + workload.mo_batch] for start in range(0, len(mos), workload.mo_batch)]

    async def worker(mine: Sequence[Sequence[NewMO]]) -> None:
        for batch in mine:
            async with store.transaction() as session:
                await store.mos.ingest(session, batch, now)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for lane in range(workload.concurrency):
            group.create_task(worker(batches[lane :: workload.concurrency]))
    return len(mos) / (time.perf_counter() - started)


async def _send_and_deliver(store: Store, workload: Workload, now: datetime) -> float:
    async with store.transaction() as session:
        await queue_mts(
            session,
            [
                NewMT(MTKind.PUSH, CARRIER, SHORT_CODE, _msisdn(i, workload.subscribers), "hola")
                for i in range(workload.mts)
            ],
            now,
        )
    retry = RetryPolicy()
    sent = 0
    started = time.perf_counter()
    while True:
        async with store.transaction() as session:
            claimed = (await store.claims.claim(session, "bench", now, limit=workload.mt_batch, lease=60)).mts
        if not claimed:
            break
        async with store.transaction() as session:
            await store.results.record(
                session,
                [PartResult(mt.id, 1, 1, CARRIER, now, now, smsc_message_id=f"m{mt.id}") for mt in claimed],
                now,
                retry,
            )
        async with store.transaction() as session:
            receipts = [ReceiptIn(CARRIER, f"m{mt.id}", "DELIVRD", now) for mt in claimed]
            await store.receipts.record(session, receipts, now)
        sent += len(claimed)
    rate = sent / (time.perf_counter() - started)
    return rate


async def _check(sessions: async_sessionmaker[AsyncSession], workload: Workload) -> None:
    """The run must have done the work it claims: every MO stored once, every MT delivered."""
    async with sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(MOMessage))
        delivered = await session.scalar(
            select(func.count()).select_from(MTMessage).where(MTMessage.status == MTStatus.DELIVERED)
        )
    if stored != 2 * workload.mos or delivered != workload.mts:
        raise SystemExit(
            f"bench sanity check failed: {stored} MOs stored (want {2 * workload.mos}), "
            f"{delivered} MTs delivered (want {workload.mts})"
        )


async def run(url: str, workload: Workload) -> Figures:
    await upgrade(url)
    engine = create_engine(url, pool_size=workload.concurrency + 2)
    store = Store.for_engine(engine)
    now = utcnow()
    try:
        first = await _ingest(store, _mos(workload, 1, now), workload, now)
        steady = await _ingest(store, _mos(workload, 2, now), workload, now)
        mt = await _send_and_deliver(store, workload, now)
        await _check(store.sessions, workload)
    finally:
        await engine.dispose()
    return Figures(first, steady, mt)


def _print(label: str, figures: Figures, workload: Workload) -> None:
    print(
        f"{label:<10} MO ingest first contact {figures.mo_first_contact:>9,.0f}/s  "
        f"steady {figures.mo_steady:>9,.0f}/s  (batches of {workload.mo_batch}, "
        f"{workload.concurrency} concurrent)"
    )
    print(
        f"{label:<10} MT claim -> part results -> receipts {figures.mt:>9,.0f}/s  "
        f"(batches of {workload.mt_batch}, sequential)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("both", "postgresql", "sqlite"), default="both")
    parser.add_argument("--mos", type=int, default=40_000)
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--mo-batch", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--mts", type=int, default=20_000)
    parser.add_argument("--mt-batch", type=int, default=1_000)
    parser.add_argument("--without-rollups", action="store_true", help="no reports' rollups")
    args = parser.parse_args()
    if args.without_rollups:
        from _rollups_off import switch_rollups_off

        switch_rollups_off()
    workload = Workload(args.mos, args.subscribers, args.mo_batch, args.concurrency, args.mts, args.mt_batch)
    result: dict[str, str] = {}
    if args.backend in ("both", "postgresql"):
        async with scratch_database() as url:
            figures = await run(url, workload)
        _print("postgresql", figures, workload)
        result |= {
            "pg_mo_per_s": f"{figures.mo_first_contact:.0f}",
            "pg_mo_steady_per_s": f"{figures.mo_steady:.0f}",
            "pg_mt_per_s": f"{figures.mt:.0f}",
        }
    if args.backend in ("both", "sqlite"):
        with tempfile.TemporaryDirectory(prefix="echat-bench-") as directory:
            figures = await run(f"sqlite+aiosqlite:///{directory}/bench.db", workload)
        _print("sqlite", figures, workload)
        result |= {
            "sqlite_mo_per_s": f"{figures.mo_first_contact:.0f}",
            "sqlite_mo_steady_per_s": f"{figures.mo_steady:.0f}",
            "sqlite_mt_per_s": f"{figures.mt:.0f}",
        }
    print("RESULT " + " ".join(f"{key}={value}" for key, value in result.items()))


if __name__ == "__main__":
    asyncio.run(main())
