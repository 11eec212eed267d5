"""SIGHUP's job: a new carrier configuration is applied without touching the binds that did not change."""

from __future__ import annotations

from pathlib import Path

from simulator.core import Simulator
from tests.integration.gatewayd.conftest import MOVISTAR, VODAFONE, make_config, running_daemon
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
