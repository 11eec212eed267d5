"""A bind's window comes back as one burst once its answers are out: on PostgreSQL a burst that finds no
MO batch committing is stored as batches side by side (``GroupCommitter.split_from``), each MO answered
after its own batch's commit, every one stored once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gatewayd.mo import SPLIT_FROM
from gatewayd.store.messages import MOMessage
from simulator.core import Simulator
from smpp.constants import CommandStatus
from tests.integration.gatewayd.hostile import HostileSMSC, daemon_on

from .helpers import Statements

pytestmark = pytest.mark.integration

BURST = 2 * SPLIT_FROM


@pytest.fixture
async def smsc() -> AsyncIterator[HostileSMSC]:
    async with HostileSMSC() as running:
        yield running


def mo_statements(sent: list[str]) -> int:
    return sum(1 for sql in sent if sql.lstrip().startswith("WITH input AS"))


async def test_a_burst_finding_no_batch_committing_is_stored_as_two_batches_side_by_side(
    tmp_path: Path, pg_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    with Statements() as statements:
        async with daemon_on(tmp_path, pg_url, simulator, smsc) as daemon:
            assert daemon.sessions is not None
            # written in one go, read by the bind in one go: the window's burst
            sequences = smsc.deliver_burst(
                [(f"3460030{index:04d}", f"burst {index}".encode()) for index in range(BURST)]
            )
            answers = await smsc.wait_answered(*sequences)
            async with daemon.sessions() as session:
                stored = await session.scalar(
                    select(func.count(func.distinct(MOMessage.text))).where(MOMessage.text.like("burst %"))
                )
                rows = await session.scalar(select(func.count()).select_from(MOMessage))
    assert all(answer.status == CommandStatus.ESME_ROK for answer in answers)
    assert stored == rows == BURST
    assert mo_statements(statements.sent) == 2
