"""PendingPartCommits: receipts wait for their part's submit result to be committed, within bounds."""

from __future__ import annotations

import asyncio

from gatewayd.receipts import PendingPartCommits


async def test_a_part_not_pending_does_not_make_the_receipt_wait() -> None:
    pending = PendingPartCommits(wait_limit=30.0)
    assert await asyncio.wait_for(pending.wait("movistar", "1a"), 1.0) is True


async def test_receipts_wait_until_the_part_is_committed() -> None:
    pending = PendingPartCommits(wait_limit=30.0)
    pending.accepted("movistar", "1a")
    first = asyncio.create_task(pending.wait("movistar", "1a"))
    second = asyncio.create_task(pending.wait("movistar", "1a"))
    other = asyncio.create_task(pending.wait("vodafone", "1a"))  # another carrier's id
    await asyncio.sleep(0)
    assert await other is True
    assert not first.done() and not second.done()
    pending.committed([("movistar", "1a")])
    assert await first is True and await second is True
    assert len(pending) == 0


async def test_the_wait_runs_out_when_the_commit_does_not_land() -> None:
    pending = PendingPartCommits(wait_limit=0.01)
    pending.accepted("movistar", "1a")
    assert await pending.wait("movistar", "1a") is False
    assert len(pending) == 1  # still pending: the commit may land later
    pending.committed([("movistar", "1a"), ("movistar", "never-accepted")])
    assert len(pending) == 0


async def test_accepted_parts_are_bounded() -> None:
    pending = PendingPartCommits(wait_limit=30.0, max_pending=2)
    for message_id in ("1", "2", "3"):
        pending.accepted("movistar", message_id)
    assert len(pending) == 2
    assert await asyncio.wait_for(pending.wait("movistar", "3"), 1.0) is True
