"""PendingParts (the recorder's state machine of a part's result meeting its receipt): receipts ride
along with their part's submit result, or wait for it to be committed, within bounds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from gatewayd import recorder
from gatewayd.recorder import PendingParts
from gatewayd.store.mt.values import PartResult, ReceiptIn


async def test_a_part_not_pending_does_not_make_the_receipt_wait() -> None:
    pending = PendingParts(wait_limit=30.0)
    assert await asyncio.wait_for(pending.wait("movistar", "1a"), 1.0) is True


async def test_receipts_wait_until_the_part_is_committed() -> None:
    pending = PendingParts(wait_limit=30.0)
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
    pending = PendingParts(wait_limit=0.01)
    pending.accepted("movistar", "1a")
    assert await pending.wait("movistar", "1a") is False
    assert len(pending) == 1  # still pending: the commit may land later
    pending.committed([("movistar", "1a"), ("movistar", "never-accepted")])
    assert len(pending) == 0


async def test_accepted_parts_are_bounded() -> None:
    pending = PendingParts(wait_limit=30.0, max_pending=2)
    for message_id in ("1", "2", "3"):
        pending.accepted("movistar", message_id)
    assert len(pending) == 2
    assert await asyncio.wait_for(pending.wait("movistar", "3"), 1.0) is True


def receipt(message_id: str, state: str = "DELIVRD") -> ReceiptIn:
    return ReceiptIn("movistar", message_id, state, datetime(2024, 7, 1, tzinfo=UTC))


async def test_a_receipt_attached_to_its_part_is_answered_once_committed_with_it() -> None:
    pending = PendingParts(wait_limit=30.0)
    pending.accepted("movistar", "1a")
    pending.accepted("movistar", "2b")
    applied = pending.attach(receipt("1a"))
    assert applied is not None and not applied.done()
    assert pending.attach(receipt("1a", "ENROUTE")) is None  # one receipt rides along per part
    assert pending.attach(receipt("unknown")) is None  # not pending: goes its own way
    assert pending.take([("movistar", "1a"), ("movistar", "2b")]) == {("movistar", "1a"): receipt("1a")}
    assert pending.attach(receipt("2b")) is None  # its batch is being written: too late to ride along
    late = asyncio.create_task(pending.wait("movistar", "2b"))
    await asyncio.sleep(0)
    pending.committed([("movistar", "1a"), ("movistar", "2b")])
    assert await applied is True
    assert await late is True
    assert len(pending) == 0


async def test_attached_receipts_go_their_own_way_when_the_batch_fails() -> None:
    pending = PendingParts(wait_limit=30.0)
    pending.accepted("movistar", "1a")
    applied = pending.attach(receipt("1a"))
    assert applied is not None
    pending.take([("movistar", "1a")])
    pending.released([("movistar", "1a")])
    assert await applied is False
    # the part is still pending (its batch is written again) and takes no receipt it no longer holds
    assert len(pending) == 1
    assert pending.take([("movistar", "1a")]) == {}


async def test_an_attached_receipt_not_taken_in_time_goes_its_own_way() -> None:
    pending = PendingParts(wait_limit=0.01)
    pending.accepted("movistar", "1a")
    applied = pending.attach(receipt("1a"))
    assert applied is not None
    assert await asyncio.wait_for(applied, 1.0) is False
    assert pending.take([("movistar", "1a")]) == {}


async def test_a_receipt_taken_for_writing_waits_for_the_outcome_past_the_limit() -> None:
    pending = PendingParts(wait_limit=0.01)
    pending.accepted("movistar", "1a")
    applied = pending.attach(receipt("1a"))
    assert applied is not None
    pending.take([("movistar", "1a")])
    await asyncio.sleep(0.05)
    assert not applied.done()
    pending.committed([("movistar", "1a")])
    assert await applied is True


def result(message_id: str | None, part_no: int = 1) -> PartResult:
    at = datetime(2024, 7, 1, tzinfo=UTC)
    return PartResult(7, part_no, 2, "movistar", at, at, smsc_message_id=message_id)


async def test_results_hold_their_receipts_once_every_accepted_part_has_one() -> None:
    pending = PendingParts(wait_limit=30.0, max_pending=2)
    pending.accepted("movistar", "1a")
    pending.accepted("movistar", "2b")
    both = [result("1a"), result("2b", 2)]
    assert not pending.hold_receipts(both)
    pending.attach(receipt("1a"))
    assert not pending.hold_receipts(both)  # the second part's receipt is still to come
    pending.attach(receipt("2b"))
    assert pending.hold_receipts(both)
    # a rejected part waits for no receipt, nor does one past the bound (none could be attached to it)
    pending.accepted("movistar", "3c")
    assert pending.hold_receipts([result(None), result("3c", 2)])


def test_a_receipt_comes_right_behind_its_part_within_the_linger_of_its_acceptance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recorder, "RECEIPT_LINGER", 600.0)  # however slow the test
    pending = PendingParts(wait_limit=30.0)
    pending.accepted("movistar", "1a")
    assert pending.right_behind(("movistar", "1a"))  # not written yet
    pending.committed([("movistar", "1a")])
    assert pending.right_behind(("movistar", "1a"))  # written already: the commit was quick
    assert not pending.right_behind(("movistar", "never-accepted"))
    monkeypatch.setattr(recorder, "RECEIPT_LINGER", 0.0)  # long after its acceptance
    assert not pending.right_behind(("movistar", "1a"))
    pending.accepted("movistar", "2b")
    assert not pending.right_behind(("movistar", "2b"))  # pending, but long after its acceptance
