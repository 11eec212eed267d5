"""Faults with traffic flowing, counting messages at both ends: zero lost is the assertion.

The SMSC side is the simulator (its MO counters, its store of accepted MTs); the gateway side is
the database. Duplicates are allowed where SMPP forces at-least-once (a submit whose response was
lost is sent again, recorded in the MT's history); losses are not.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import MTMessage
from simulator.core import Simulator
from simulator.counters import Counters
from smpp.constants import CommandID
from tests.conftest import PG_HOST, PG_PORT
from tests.integration.gatewayd.faults import (
    mo_texts,
    mt_status_counts,
    queue_many,
    subscriber,
    texts_at_simulator,
)
from tests.integration.gatewayd.helpers import MOVISTAR, MOVISTAR_SHORT_CODE, make_config, running_daemon
from tests.integration.gatewayd.proxy import TCPProxy
from tests.waiting import eventually


def unanswered_deliveries(counters: Counters) -> int:
    """deliver_sm the SMSC pushed that the daemon has not answered yet."""
    return counters.pdus_out.get(CommandID.DELIVER_SM, 0) - counters.pdus_in.get(CommandID.DELIVER_SM_RESP, 0)


def inject_mos(simulator: Simulator, prefix: str, count: int, start: int = 0) -> set[str]:
    texts = {f"{prefix} {index}" for index in range(start, start + count)}
    for index in range(start, start + count):
        simulator.inject_mo(MOVISTAR, "+" + subscriber(index % 40), MOVISTAR_SHORT_CODE, f"{prefix} {index}")
    return texts


async def test_bind_dropped_during_a_burst_loses_nothing(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, database_url, simulator)
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None and daemon.mt is not None
        sessions = daemon.sessions
        mt_texts = [f"burst mt {index}" for index in range(300)]
        await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, mt_texts)
        simulator.set_faults(MOVISTAR, {"drop": {"after_pdus": 120}})
        daemon.mt.wake()
        sent = inject_mos(simulator, "burst mo", 300)

        async def everything_arrived() -> bool:
            statuses = await mt_status_counts(sessions)
            return statuses[MTStatus.DELIVERED] == 300 and set(await mo_texts(sessions)) == sent

        await eventually(everything_arrived, within=60)
        counters = simulator.carrier(MOVISTAR).counters
        assert counters.connections_closed >= 1 or counters.binds_accepted >= 2  # the drop happened
        assert counters.mo_failed == 0
        stored = await mo_texts(sessions)
        # redeliveries after the drop were stored once
        assert set(stored) == sent and all(count == 1 for count in stored.values())
        assert set(texts_at_simulator(simulator, MOVISTAR)) == set(mt_texts)


async def test_ten_bind_drops_during_a_burst_fail_nothing_and_charge_only_what_was_sent(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    """The SMSC drops the bind ten times while 1,000 MTs go out. The MTs the session still held unsent
    go back to the outbox without spending an attempt; only a submit_sm that was written costs one.
    The simulator's count of what it received is the check."""
    config = make_config(tmp_path, database_url, simulator)
    drops, window, mts = 10, 50, 1000
    counters = simulator.carrier(MOVISTAR).counters
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None and daemon.mt is not None
        sessions = daemon.sessions
        # answered late, so a connection never clears its queue between two drops
        simulator.set_faults(MOVISTAR, {"slow": {"seconds": 0.2}})
        texts = [f"drop mt {index}" for index in range(mts)]
        await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, texts, destinations=mts)
        daemon.mt.wake()
        closed_before = counters.connections_closed
        for drop in range(1, drops + 1):
            simulator.set_faults(MOVISTAR, {"drop": {"after_pdus": 40}})
            await eventually(lambda: counters.connections_closed >= closed_before + drop, within=30)  # noqa: B023
        simulator.clear_faults(MOVISTAR)

        async def all_final() -> bool:
            statuses = await mt_status_counts(sessions)
            return statuses[MTStatus.DELIVERED] + statuses[MTStatus.FAILED] == mts

        await eventually(all_final, within=90)
        assert (await mt_status_counts(sessions))[MTStatus.DELIVERED] == mts
        async with sessions() as session:
            attempts = (await session.execute(select(func.sum(MTMessage.attempts)))).scalar_one()
    received = counters.pdus_in[CommandID.SUBMIT_SM]
    assert set(texts_at_simulator(simulator, MOVISTAR)) == set(texts)
    # every submit_sm the SMSC received was charged, and besides those only what was written when
    # a connection died unread (a window at most per drop): never the MTs still queued in the session
    assert received <= attempts <= received + drops * window, (received, attempts)
    assert daemon.mt.unsent > 0


async def test_mts_slower_than_their_lease_are_not_taken_for_abandoned_ones(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    """A carrier answering after longer than the claim lease: the daemon renews the lease of what it
    holds, so its own reconciliation of expired leases never sends those MTs a second time."""
    config = make_config(tmp_path, database_url, simulator, extra_daemon="mt_claim_lease = 1.0")
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None and daemon.mt is not None
        sessions = daemon.sessions
        simulator.set_faults(MOVISTAR, {"slow": {"seconds": 1.5}})
        texts = [f"slow mt {index}" for index in range(100)]
        await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, texts, destinations=100)
        daemon.mt.wake()

        async def all_delivered() -> bool:
            return (await mt_status_counts(sessions))[MTStatus.DELIVERED] == len(texts)

        await eventually(all_delivered, within=60)
        async with sessions() as session:
            attempts = (await session.execute(select(func.sum(MTMessage.attempts)))).scalar_one()
    assert sorted(texts_at_simulator(simulator, MOVISTAR)) == sorted(texts)  # each exactly once
    assert attempts == len(texts)


async def test_sqlite_locked_during_mo_traffic_loses_nothing(
    tmp_path: Path, sqlite_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, sqlite_url, simulator)
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None
        sessions = daemon.sessions
        sent = inject_mos(simulator, "before lock", 100)

        async def stored_so_far() -> bool:
            return set(await mo_texts(sessions)) == sent

        await eventually(stored_so_far)
        # another process takes an exclusive lock; MOs keep coming while the daemon cannot write. The
        # lock is taken in a thread: while it waits, the daemon in this event loop finishes what it holds
        counters = simulator.carrier(MOVISTAR).counters
        database = make_url(sqlite_url).database or ""
        blocker = sqlite3.connect(database, isolation_level=None, timeout=30, check_same_thread=False)
        try:
            await asyncio.to_thread(blocker.execute, "BEGIN EXCLUSIVE")
            sent |= inject_mos(simulator, "during lock", 200)
            # held until the SMSC's whole deliver window waits on the daemon, which cannot store them
            window = simulator.carrier(MOVISTAR).profile.deliver_window
            await eventually(lambda: unanswered_deliveries(counters) >= window, within=30)
            await asyncio.to_thread(blocker.execute, "COMMIT")
        finally:
            blocker.close()
        sent |= inject_mos(simulator, "after lock", 100)

        async def all_stored() -> bool:
            return set(await mo_texts(sessions)) == sent

        await eventually(all_stored, within=60)
        assert simulator.carrier(MOVISTAR).counters.mo_failed == 0
        assert sum((await mo_texts(sessions)).values()) == 400


async def test_postgresql_unreachable_during_mo_traffic_loses_nothing(
    tmp_path: Path, pg_url: str, simulator: Simulator
) -> None:
    async with TCPProxy(PG_HOST, PG_PORT) as proxy:
        proxied = make_url(pg_url).set(host="127.0.0.1", port=proxy.port)
        proxied_url = proxied.render_as_string(hide_password=False)
        config = make_config(tmp_path, proxied_url, simulator)
        async with running_daemon(config) as daemon:
            assert daemon.sessions is not None
            sessions = daemon.sessions
            counters = simulator.carrier(MOVISTAR).counters
            sent = inject_mos(simulator, "before cut", 100)

            async def stored_before() -> bool:
                return set(await mo_texts(sessions)) == sent

            await eventually(stored_before)
            proxy.cut()
            sent |= inject_mos(simulator, "during cut", 200)
            # cut until the daemon gave up on a batch (ESME_RX_T_APPN) and the SMSC will deliver it again
            await eventually(lambda: counters.redeliveries > 0, within=30)
            proxy.restore()
            sent |= inject_mos(simulator, "after cut", 100)

            async def all_stored() -> bool:
                try:
                    return set(await mo_texts(sessions)) == sent
                except Exception:  # the test's own query may hit a pooled connection the cut killed
                    return False

            await eventually(all_stored, within=60)
            assert simulator.carrier(MOVISTAR).counters.mo_failed == 0
            assert sum((await mo_texts(sessions)).values()) == 400


async def test_pooled_connections_killed_between_batches_lose_nothing(
    tmp_path: Path, pg_url: str, simulator: Simulator
) -> None:
    """The daemon's pool does not pre-ping: a connection PostgreSQL ended (a restart, an idle
    timeout, an administrator) fails the transaction that uses it, which is tried again on a fresh
    one. Every MO is stored and acknowledged, none refused, and the MTs go out."""
    import asyncpg

    database = make_url(pg_url).database
    config = make_config(tmp_path, pg_url, simulator)
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None
        sessions = daemon.sessions
        counters = simulator.carrier(MOVISTAR).counters
        sent = inject_mos(simulator, "before kill", 100)

        async def stored(texts: set[str]) -> bool:
            try:
                return set(await mo_texts(sessions)) == texts
            except Exception:  # the test's own query may hit a pooled connection just killed
                return False

        await eventually(lambda: stored(sent))
        user = make_url(pg_url).username
        admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=user, database="postgres")
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1", database
            )
        finally:
            await admin.close()
        assert killed >= 1
        sent |= inject_mos(simulator, "after kill", 100)
        await eventually(lambda: stored(sent), within=30)
        texts = [f"mt after kill {index}" for index in range(20)]
        mt_ids = await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, texts)

        async def mts_sent() -> bool:
            try:
                counts = await mt_status_counts(sessions)
            except Exception:
                return False
            return counts.get(MTStatus.QUEUED, 0) == 0 and counts.get(MTStatus.SENDING, 0) == 0

        await eventually(mts_sent, within=30)
        assert sorted(texts_at_simulator(simulator, MOVISTAR)) == sorted(texts) and len(mt_ids) == 20
        assert counters.mo_failed == 0
        assert sum((await mo_texts(sessions)).values()) == 200


async def test_simulator_throttling_keeps_mt_order(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    """Each subscriber gets their MTs in the order they were queued, though the SMSC throttles.

    (Across different subscribers the SMSC may accept a later MT first: with a window of 50, MTs
    already in flight when the throttle starts can overtake the throttled ones.)"""
    # a generous response timeout: on a loaded CI machine a timeout would be retried later, out of order
    config = make_config(tmp_path, database_url, simulator, response_timeout=30.0)
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None and daemon.mt is not None
        sessions = daemon.sessions
        simulator.set_faults(MOVISTAR, {"throttle": {"tps": 150}})
        texts = [f"order {index:04d}" for index in range(400)]
        await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, texts, destinations=20)

        async def all_delivered() -> bool:
            return (await mt_status_counts(sessions))[MTStatus.DELIVERED] == 400

        daemon.mt.wake()
        await eventually(all_delivered, within=60)
        assert simulator.carrier(MOVISTAR).counters.mt_rejected > 0, "the throttle never fired"
        records = simulator.store.query(carrier=MOVISTAR, limit=1_000_000)
        arrived = texts_at_simulator(simulator, MOVISTAR)
        assert sorted(arrived) == texts  # all of them, each once
        for destination in {record.pdu.destination_addr for record in records}:
            mine = [
                text
                for record, text in zip(records, arrived, strict=True)
                if record.pdu.destination_addr == destination
            ]
            assert mine == sorted(mine), destination
