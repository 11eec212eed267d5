"""SIGHUP's job: a new carrier configuration is applied without touching the binds that did not change."""

from __future__ import annotations

from pathlib import Path

from gatewayd.store.engine import create_engine, session_factory
from simulator.core import Simulator
from tests.integration.gatewayd.faults import queue_many
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    VODAFONE,
    make_config,
    running_daemon,
)
from tests.waiting import eventually


async def test_reload_stops_removed_binds_and_keeps_the_others(
    tmp_path: Path, sqlite_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, sqlite_url, simulator)
    async with running_daemon(config) as daemon:
        assert daemon.binds is not None
        binds = daemon.binds
        movistar_client = binds.client("movistar-1")
        assert movistar_client is not None and movistar_client.connects == 1
        carriers = tuple(carrier for carrier in config.carriers if carrier.name == MOVISTAR)
        only_movistar = config.model_copy(update={"carriers": carriers})
        daemon.reload(only_movistar)
        await eventually(lambda: binds.binds_up(VODAFONE) == 0 and binds.client("vodafone-1") is None)
        assert binds.client("movistar-1") is movistar_client and movistar_client.connects == 1
        assert simulator.carrier(VODAFONE).counters.binds_accepted == 1
        daemon.reload(config)  # and back
        await eventually(lambda: binds.binds_up(VODAFONE) == 1)
        assert binds.client("movistar-1") is movistar_client
        assert simulator.carrier(VODAFONE).counters.binds_accepted == 2


async def test_a_changed_bind_binds_again_only_once_its_old_session_is_closed(
    tmp_path: Path, sqlite_url: str, simulator: Simulator
) -> None:
    """A reload that changes a bind (its window) while the carrier answers 3 s late: the old session
    finishes its submissions and unbinds before the new one binds, so the carrier never sees two."""
    config = make_config(tmp_path, sqlite_url, simulator)
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    counters = simulator.carrier(MOVISTAR).counters
    try:
        async with running_daemon(config) as daemon:
            assert daemon.binds is not None
            binds = daemon.binds
            old = binds.client("movistar-1")
            simulator.set_faults(MOVISTAR, {"slow": {"seconds": 3}})
            await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, [f"m {i}" for i in range(20)])
            await eventually(lambda: counters.mt_accepted >= 5, what="submissions in flight")
            daemon.reload(make_config(tmp_path, sqlite_url, simulator, window=40))

            def rebound() -> bool:
                client = binds.client("movistar-1")
                return client is not None and client is not old and client.bound

            await eventually(rebound, within=30, what="the changed bind bound again")
        assert counters.binds_max.get("echat", 0) == 1, counters.binds_max
    finally:
        await engine.dispose()
