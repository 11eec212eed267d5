"""A bind's window comes back as one burst once its answers are out: on PostgreSQL a burst that finds no
MO batch committing is stored as batches side by side (``GroupCommitter.split_from``), each subscriber's
MOs in one of them, each MO answered after its own batch's commit, every one stored once."""

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


WRITERS = 40


def ingests(statements: Statements) -> list[list[str]]:
    """The writers (MSISDNs, one per MO) of each MO batch stored by one statement of its own."""
    return [[row[1] for row in args[0]] for sql, args in statements.calls if "echat_needs_transaction" in sql]


async def test_a_burst_finding_no_batch_committing_is_stored_as_two_batches_side_by_side(
    tmp_path: Path, pg_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    with Statements() as statements:
        async with daemon_on(tmp_path, pg_url, simulator, smsc) as daemon:
            assert daemon.sessions is not None
            # written in one go, read by the bind in one go: the window's burst
            sequences = smsc.deliver_burst(
                [(f"3460030{index % WRITERS:04d}", f"burst {index}".encode()) for index in range(BURST)]
            )
            answers = await smsc.wait_answered(*sequences)
            async with daemon.sessions() as session:
                stored = await session.scalar(
                    select(func.count(func.distinct(MOMessage.text))).where(MOMessage.text.like("burst %"))
                )
                rows = await session.scalar(select(func.count()).select_from(MOMessage))
    assert all(answer.status == CommandStatus.ESME_ROK for answer in answers)
    assert stored == rows == BURST
    batches = ingests(statements)
    # halves, but for a writer's MOs (four at most) kept whole
    assert len(batches) == 2 and sum(map(len, batches)) == BURST
    assert abs(len(batches[0]) - len(batches[1])) <= 4
    # each writer's MOs in one batch (their order kept), the two batches side by side
    assert not set(batches[0]) & set(batches[1])
