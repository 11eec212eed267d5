"""The daemon as operators run it (``python -m echat run`` is ``gatewayd run``), killed with SIGKILL
mid-burst and started again: what was queued is sent, what was in flight is reconciled, no MO and no
MT is lost."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.mt import WINDOWS_AHEAD
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MTMessage, MTStatusHistory
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.mt.values import NewMT
from simulator.core import Simulator
from tests.integration.gatewayd.faults import (
    mo_texts,
    mt_status_counts,
    queue_many,
    subscriber,
    texts_at_simulator,
)
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    make_config,
    running_daemon,
    write_config,
)
from tests.waiting import eventually

REPOSITORY = Path(__file__).resolve().parents[3]


async def gatewayd(*args: str, log: Path) -> asyncio.subprocess.Process:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    with log.open("ab") as output:
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
    window = 20
    config = write_config(tmp_path / "gatewayd.toml", database_url, simulator, window=window)
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
            await eventually(lambda: counters.mt_accepted >= 100, within=30)
            for index in range(300):
                msisdn = "+" + subscriber(index % 25)
                simulator.inject_mo(MOVISTAR, msisdn, MOVISTAR_SHORT_CODE, f"kill mo {index}")
            await eventually(lambda: counters.mo_delivered >= 50, within=30)
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
        accepted_before = counters.mt_accepted
        assert accepted_before < 600, "the burst was over before the kill"

        async with daemon_process(config, log) as second:

            async def everything_done() -> bool:
                return (await mt_status_counts(sessions))[MTStatus.DELIVERED] == 600 and set(
                    await mo_texts(sessions)
                ) == mo_sent

            await eventually(everything_done, within=90)
            second.send_signal(signal.SIGTERM)  # and a clean stop: drain, unbind, exit 0
            assert await second.wait() == 0, log.read_text()[-3000:]

        at_simulator = texts_at_simulator(simulator, MOVISTAR)
        assert set(at_simulator) == set(mt_texts)
        stored = await mo_texts(sessions)
        assert set(stored) == mo_sent and all(count == 1 for count in stored.values())
        assert counters.mo_failed == 0
        async with sessions() as session:
            reconciled = dict(
                (
                    await session.execute(
                        select(MTMessage.id, MTMessage.text)
                        .join(MTStatusHistory, MTStatusHistory.mt_id == MTMessage.id)
                        .where(MTStatusHistory.detail == "reconciled after restart")
                    )
                ).all()
            )
        # the at-least-once window is what the daemon had claimed and not recorded: a few windows of
        # its two binds (one per carrier), not the whole burst
        assert len(reconciled) <= WINDOWS_AHEAD * 2 * window, len(reconciled)
        # and each MT sent again after the restart is logged as a possible duplicate, by id
        flagged = {
            int(match)
            for match in re.findall(r"mt\.possible_duplicate mt_id=(\d+) reason=restart", log.read_text())
        }
        assert flagged == set(reconciled)
        # a segment the carrier got twice (its response was lost with the process) is among them
        resent = {text for text in at_simulator if at_simulator.count(text) > 1}
        assert resent <= set(reconciled.values())
    finally:
        await engine.dispose()


#: The longest a SIGTERM may take: the binds' response timeout (5 s in the test configuration) for the
#: submits in flight, plus recording them and unbinding. systemd's TimeoutStopSec is 30 s.
DRAIN_TIME = 12.0


@pytest.mark.parametrize("at", [0.1, 0.5, 1.0], ids=["early", "mid-burst", "after-the-last-response"])
async def test_sigterm_at_any_point_of_a_burst_stops_within_the_drain_time(
    tmp_path: Path, database_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str, at: float
) -> None:
    """SIGTERM when a share ``at`` of a burst has been accepted by the SMSC (events on the MQTT bus,
    no receipts): the daemon exits within the drain time, every MT it sent is recorded as the SMSC
    saw it, and those it had not sent are back in the outbox without a spent attempt."""
    config = write_config(
        tmp_path / "gatewayd.toml", database_url, simulator, bus_url=mqtt_url, topic_prefix=topic_prefix
    )
    log = tmp_path / "gatewayd.log"
    migrate = await gatewayd("migrate", "--config", str(config), log=log)
    assert await migrate.wait() == 0, log.read_text()
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    counters = simulator.carrier(MOVISTAR).counters
    burst = 5000
    try:
        texts = [f"term mt {index}" for index in range(burst)]
        await queue_many(
            sessions, MOVISTAR, MOVISTAR_SHORT_CODE, texts, destinations=burst, request_receipt=False
        )
        async with daemon_process(config, log) as daemon:
            await eventually(lambda: counters.mt_accepted >= at * burst, within=60, interval=0.002)
            daemon.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            async with asyncio.timeout(DRAIN_TIME):
                assert await daemon.wait() == 0, log.read_text()[-3000:]
            assert time.monotonic() - stopping < DRAIN_TIME
        assert "daemon.stopped" in log.read_text()
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(MTMessage.status, func.count(), func.sum(MTMessage.attempts)).group_by(
                        MTMessage.status
                    )
                )
            ).all()
        statuses = {MTStatus(status): (count, attempts) for status, count, attempts in rows}
        assert set(statuses) <= {MTStatus.ACCEPTED, MTStatus.QUEUED}, statuses  # none left ``sending``
        accepted, attempts = statuses.get(MTStatus.ACCEPTED, (0, 0))
        assert accepted == counters.mt_accepted == len(set(texts_at_simulator(simulator, MOVISTAR)))
        assert attempts == accepted  # each sent once
        assert statuses.get(MTStatus.QUEUED, (0, 0))[1] == 0  # the unsent ones spent no attempt
    finally:
        await engine.dispose()


async def test_mts_claimed_while_stopping_go_back_to_the_outbox(
    tmp_path: Path, pg_url: str, simulator: Simulator
) -> None:
    """A claim that returns after SIGTERM began (its statement waited for a lock) still has its MTs
    recorded: they go back to the outbox without a spent attempt, never stay ``sending``."""
    config = make_config(tmp_path, pg_url, simulator)
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with running_daemon(config) as daemon, engine.connect() as blocker:
            # the MTs are queued by the transaction that holds the outbox: the next claim waits for it,
            # then sees them
            await blocker.begin()
            await blocker.exec_driver_sql("LOCK TABLE mt_messages IN ACCESS EXCLUSIVE MODE")
            mts = [
                NewMT(MTKind.PUSH, MOVISTAR, MOVISTAR_SHORT_CODE, subscriber(index), f"late {index}")
                for index in range(20)
            ]
            async with AsyncSession(bind=blocker) as session:
                await queue_mts(session, mts, datetime.now(UTC))

            async def a_claim_waits() -> bool:
                async with engine.connect() as probe:
                    waiting = await probe.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND query ILIKE '%WITH RECURSIVE%mt_messages%'"
                    )
                    return bool(waiting.scalar())

            await eventually(a_claim_waits, within=15, interval=0.05)
            daemon.stop()
            pipeline = daemon.mt
            assert pipeline is not None
            await eventually(lambda: pipeline.closing)
            # the record loop, with nothing to record and nothing in flight, sees the stop before the
            # claim returns (it ended there when it did not wait for the claim)
            for _ in range(50):
                await asyncio.sleep(0)
            await blocker.commit()
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(MTMessage.status, func.count(), func.sum(MTMessage.attempts)).group_by(
                        MTMessage.status
                    )
                )
            ).all()
        statuses = {MTStatus(status): (count, attempts) for status, count, attempts in rows}
        assert statuses == {MTStatus.QUEUED: (20, 0)}, statuses
    finally:
        await engine.dispose()
