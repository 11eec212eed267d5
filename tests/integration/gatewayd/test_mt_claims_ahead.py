"""The MT pipeline claims ahead of what its binds accept, not only of their windows: with a small window
and an SMSC that answers at once, claims of a few windows each would queue behind each other and the
window would wait for the database (``mt.WINDOW_TIME``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gatewayd.mt import SENDING_AHEAD
from simulator.core import Simulator
from tests.integration.gatewayd.faults import queue_many
from tests.integration.gatewayd.helpers import MOVISTAR, MOVISTAR_SHORT_CODE, Statements
from tests.integration.gatewayd.hostile import HostileSMSC, daemon_on

pytestmark = pytest.mark.integration

WINDOW = 2
MTS = 1200


@pytest.fixture
async def smsc() -> AsyncIterator[HostileSMSC]:
    async with HostileSMSC() as running:
        yield running


async def test_a_fast_smsc_behind_a_small_window_is_fed_by_claims_of_more_than_a_few_windows(
    tmp_path: Path, pg_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    with Statements() as statements:
        async with daemon_on(tmp_path, pg_url, simulator, smsc, window=WINDOW) as daemon:
            assert daemon.sessions is not None and daemon.mt is not None and daemon.binds is not None
            windows = daemon.binds.sending_window()  # every bind's: vodafone's count too
            assert windows == 4 * WINDOW
            await queue_many(
                daemon.sessions,
                MOVISTAR,
                MOVISTAR_SHORT_CODE,
                [f"ahead {n}" for n in range(MTS)],
                destinations=MTS,
            )
            daemon.mt.wake()
            await smsc.wait_for(lambda: len(smsc.submits) >= MTS, within=60)
    limits = [args[1] for sql, args in statements.calls if sql.lstrip().startswith("WITH due AS")]
    # by windows alone, never more than SENDING_AHEAD times the binds' windows
    assert max(limits) > SENDING_AHEAD * windows, limits
    assert sorted(message_id for message_id, _ in smsc.submits) == sorted(f"h{n}" for n in range(1, MTS + 1))
