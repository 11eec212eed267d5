"""The daemon as operators run it (``python -m gatewayd run``), killed with SIGKILL mid-burst and
started again: what was queued is sent, what was in flight is reconciled, no MO and no MT is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import select

from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import MTMessage, MTStatusHistory
from simulator.core import Simulator
from tests.integration.gatewayd.conftest import MOVISTAR, MOVISTAR_SHORT_CODE, eventually, write_config
from tests.integration.gatewayd.faults import (
    mo_texts,
    mt_status_counts,
    queue_many,
    subscriber,
    texts_at_simulator,
)

REPOSITORY = Path(__file__).resolve().parents[3]


async def gatewayd(*args: str, log: Path) -> asyncio.subprocess.Process:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    with log.open("ab") as output:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gatewayd",
            *args,
            cwd=REPOSITORY,
            env=environment,
            stdout=output,
            stderr=output,
        )


@asynccontextmanager
async def daemon_process(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await gatewayd("run", "--config", str(config), log=log)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigkill_mid_burst_and_restart_loses_nothing(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    config = write_config(tmp_path / "gatewayd.toml", database_url, simulator)
    log = tmp_path / "gatewayd.log"
    migrate = await gatewayd("migrate", "--config", str(config), log=log)
    assert await migrate.wait() == 0, log.read_text()
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    counters = simulator.carrier(MOVISTAR).counters
    try:
        mt_texts = [f"kill mt {index}" for index in range(600)]
        await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, mt_texts)
        simulator.set_faults(MOVISTAR, {"throttle": {"tps": 300}})  # slow enough to kill it mid-burst
        mo_sent = {f"kill mo {index}" for index in range(300)}
        async with daemon_process(config, log) as first:
            await eventually(lambda: counters.mt_accepted >= 100, timeout=30)
            for index in range(300):
                msisdn = "+" + subscriber(index % 25)
                simulator.inject_mo(MOVISTAR, msisdn, MOVISTAR_SHORT_CODE, f"kill mo {index}")
            await eventually(lambda: counters.mo_delivered >= 50, timeout=30)
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
        accepted_before = counters.mt_accepted
        assert accepted_before < 600, "the burst was over before the kill"

        async with daemon_process(config, log) as second:

            async def everything_done() -> bool:
                return (await mt_status_counts(sessions))[MTStatus.DELIVERED] == 600 and set(
                    await mo_texts(sessions)
                ) == mo_sent

            await eventually(everything_done, timeout=90)
            second.send_signal(signal.SIGTERM)  # and a clean stop: drain, unbind, exit 0
            assert await second.wait() == 0, log.read_text()[-3000:]

        at_simulator = texts_at_simulator(simulator, MOVISTAR)
        assert set(at_simulator) == set(mt_texts)
        stored = await mo_texts(sessions)
        assert set(stored) == mo_sent and all(count == 1 for count in stored.values())
        assert counters.mo_failed == 0
        # a segment sent twice (its response was lost with the process) is on record, never silent
        resent = {text for text in at_simulator if at_simulator.count(text) > 1}
        if resent:
            async with sessions() as session:
                reconciled = set(
                    (
                        await session.execute(
                            select(MTMessage.text)
                            .join(MTStatusHistory, MTStatusHistory.mt_id == MTMessage.id)
                            .where(MTStatusHistory.detail == "reconciled after restart")
                        )
                    ).scalars()
                )
            assert resent <= reconciled
    finally:
        await engine.dispose()
