"""Store: the MT outbox (queue, claim, submit results, receipts, retries, reconciliation) and stats,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.mo_message import dedup_key
from gatewayd.schema import upgrade
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import ConversationStatus, MTKind, MTStatus, PartStatus
from gatewayd.store.messages import EarlyReceipt, MTMessage, MTPart, MTStatusHistory
from gatewayd.store.mt._pg import _CLAIM_ANY_CARRIER as pg_claim_statement
from gatewayd.store.mt._pg import _CLAIM_CARRIERS as pg_claim_carriers
from gatewayd.store.mt._pg import _CLAIM_ONE_CARRIER as pg_claim_one_carrier
from gatewayd.store.mt.held import held_sql
from gatewayd.store.mt.queue import ANY_DATABASE, MTInserts, queue_mts
from gatewayd.store.mt.status import outbox_depth
from gatewayd.store.mt.values import ClaimedMT, NewMT, PartResult, ReceiptIn, RetryPolicy
from gatewayd.store.repo_mo import NewMO
from gatewayd.store.repo_stats import HourlyCount, client_activity, client_history
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from tests.waiting import eventually

pytestmark = pytest.mark.integration

T0 = datetime(2024, 7, 1, 10, 0, 0, tzinfo=UTC)
RETRY = RetryPolicy(limit=2, initial=10.0, maximum=60.0)
THROTTLED = 0x58
INVALID_DESTINATION = 0x0B


async def claim(
    store: Store,
    session: AsyncSession,
    owner: str,
    now: datetime,
    *,
    limit: int,
    lease: float,
    carriers: list[str] | None = None,
) -> list[ClaimedMT]:
    """The MTs a claim leases (none of these tests' subscribers is refused)."""
    claimed = await store.claims.claim(session, owner, now, limit=limit, lease=lease, carriers=carriers)
    assert claimed.refused == []
    return claimed.mts


async def queue_mt(session: AsyncSession, mt: NewMT, now: datetime) -> int:
    """One MT stored as the outbox stores it (the outbox's own decisions: ``test_outbox.py``)."""
    return (await queue_mts(session, [mt], now))[0]


def push(
    destination: str = "34600000001",
    *,
    priority: int = 0,
    carrier: str = "movistar",
    not_before: datetime | None = None,
    conversation_id: int | None = None,
    kind: MTKind = MTKind.PUSH,
) -> NewMT:
    return NewMT(
        kind=kind,
        carrier=carrier,
        source="997745",
        destination=destination,
        text="hola",
        priority=priority,
        not_before=not_before,
        conversation_id=conversation_id,
    )


def accepted(mt_id: int, part_no: int, segments: int, smsc_id: str, at: datetime = T0) -> PartResult:
    return PartResult(
        mt_id=mt_id,
        part_no=part_no,
        segments=segments,
        carrier="movistar",
        submitted_at=at,
        responded_at=at,
        smsc_message_id=smsc_id,
    )


def rejected(mt_id: int, code: int, *, retryable: bool, at: datetime = T0) -> PartResult:
    return PartResult(
        mt_id=mt_id,
        part_no=1,
        segments=1,
        carrier="movistar",
        submitted_at=at,
        responded_at=at,
        error_code=code,
        retryable=retryable,
    )


async def status_of(sessions: async_sessionmaker[AsyncSession], mt_id: int) -> MTMessage:
    async with sessions() as session:
        mt = await session.get(MTMessage, mt_id)
        assert mt is not None
        return mt


async def queue_and_claim(store: Store, count: int = 1) -> list[int]:
    async with store.transaction() as session:
        outcome = await queue_mts(session, [push(f"3460000{n:04d}") for n in range(count)], T0)
        claimed = await claim(store, session, "gw-a", T0, limit=count, lease=60)
    assert sorted(mt.id for mt in claimed) == sorted(outcome)
    return [mt.id for mt in claimed]


async def test_claim_takes_due_mts_by_priority_once(store: Store) -> None:
    async with store.transaction() as session:
        low = await queue_mt(session, push(priority=0), T0)
        high = await queue_mt(session, push(priority=5), T0)
        later = await queue_mt(session, push(priority=9, not_before=T0 + timedelta(minutes=5)), T0)
        other = await queue_mt(session, push(carrier="vodafone"), T0)
    async with store.transaction() as session:
        claimed = await claim(store, session, "gw-a", T0, limit=10, lease=30, carriers=["movistar"])
    assert [mt.id for mt in claimed] == [high, low]
    assert all(mt.attempts == 1 and mt.done_parts == frozenset() for mt in claimed)
    async with store.transaction() as session:
        assert await claim(store, session, "gw-b", T0, limit=10, lease=30, carriers=["movistar"]) == []
        depth = await outbox_depth(session)
    assert depth == {"movistar": 3, "vodafone": 1}
    mt = await status_of(store.sessions, high)
    assert mt.status is MTStatus.SENDING and mt.claim_owner == "gw-a"
    assert mt.claim_expires_at == T0 + timedelta(seconds=30)
    assert (await status_of(store.sessions, later)).status is MTStatus.QUEUED
    assert (await status_of(store.sessions, other)).status is MTStatus.QUEUED


async def test_a_claim_fills_its_limit_down_the_priorities_oldest_first(store: Store) -> None:
    async with store.transaction() as session:
        # queued newest first, so that the order claimed is not the order inserted
        campaign = [
            await queue_mt(session, push(f"3460000100{n}", priority=-10), T0 - timedelta(seconds=n))
            for n in range(3)
        ]
        pushes = [
            await queue_mt(session, push(f"3460000200{n}"), T0 - timedelta(seconds=n)) for n in range(3)
        ]
        await queue_mt(session, push("34600003000", priority=10, not_before=T0 + timedelta(minutes=1)), T0)
        answer = await queue_mt(session, push("34600004000", priority=10), T0)
    async with store.transaction() as session:
        first = await claim(store, session, "gw-a", T0, limit=5, lease=30)
    assert [mt.id for mt in first] == [answer, *pushes, campaign[2]]  # each priority's in id order
    async with store.transaction() as session:
        rest = await claim(store, session, "gw-a", T0, limit=5, lease=30)
    assert [mt.id for mt in rest] == campaign[:2]  # the answer due later stays queued


@pytest.mark.parametrize("carriers", [None, ["movistar"], ["movistar", "vodafone"]])
async def test_concurrent_claimers_never_share_an_mt(store: Store, carriers: list[str] | None) -> None:
    async with store.transaction() as session:
        await queue_mts(session, [push(f"3460000{n:04d}") for n in range(200)], T0)

    async def claim_all(owner: str) -> list[int]:
        taken: list[int] = []
        while True:
            async with store.transaction() as session:
                batch = await claim(store, session, owner, T0, limit=7, lease=60, carriers=carriers)
            if not batch:
                return taken
            taken += [mt.id for mt in batch]

    results = await asyncio.gather(*(claim_all(f"gw-{n}") for n in range(4)))
    everything = [mt_id for result in results for mt_id in result]
    assert len(everything) == 200 and len(set(everything)) == 200


async def test_a_claim_whose_candidates_another_claim_holds_takes_the_next_due_mts(pg_url: str) -> None:
    # Several carriers: a claim reads a few more candidates than its limit and locks the best free ones.
    # Another daemon's claim in flight may hold all of them: the claim must not come back empty (its
    # daemon would wait a poll interval with MTs due).
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        store = Store.for_engine(engine)
        async with store.transaction() as session:
            for carrier in ("movistar", "vodafone"):
                await queue_mts(session, [push(f"3465{n:07d}", carrier=carrier) for n in range(100)], T0)
        carriers = ["movistar", "vodafone"]
        async with store.transaction() as first:
            held = await claim(store, first, "gw-a", T0, limit=60, lease=60, carriers=carriers)
            async with store.transaction() as second:
                taken = await claim(store, second, "gw-b", T0, limit=10, lease=60, carriers=carriers)
    finally:
        await engine.dispose()
    assert len(held) == 60 and len(taken) == 10
    assert not {mt.id for mt in held} & {mt.id for mt in taken}


async def test_all_parts_accepted_then_delivered(store: Store) -> None:
    [mt_id] = await queue_and_claim(store)
    async with store.transaction() as session:
        assert await store.results.record(session, [accepted(mt_id, 1, 2, "m1")], T0, RETRY) == []
    assert (await status_of(store.sessions, mt_id)).status is MTStatus.SENDING
    async with store.transaction() as session:
        changes = await store.results.record(session, [accepted(mt_id, 2, 2, "m2")], T0, RETRY)
    assert [(c.mt_id, c.previous, c.status) for c in changes] == [
        (mt_id, MTStatus.SENDING, MTStatus.ACCEPTED)
    ]
    async with store.transaction() as session:
        interim = await store.receipts.record(session, [ReceiptIn("movistar", "m1", "ENROUTE", T0)], T0)
        first = await store.receipts.record(session, [ReceiptIn("movistar", "m1", "DELIVRD", T0)], T0)
        second = await store.receipts.record(session, [ReceiptIn("movistar", "m2", "DELIVRD", T0)], T0)
    assert interim.changes == [] and first.changes == [] and first.matched == 1
    assert [c.status for c in second.changes] == [MTStatus.DELIVERED]
    mt = await status_of(store.sessions, mt_id)
    assert (
        mt.status is MTStatus.DELIVERED and mt.final_at == T0 and mt.segments == 2 and mt.claim_owner is None
    )
    async with store.sessions() as session:
        history = (
            (
                await session.execute(
                    select(MTStatusHistory.status)
                    .where(MTStatusHistory.mt_id == mt_id)
                    .order_by(MTStatusHistory.id)
                )
            )
            .scalars()
            .all()
        )
    assert history == [MTStatus.QUEUED, MTStatus.SENDING, MTStatus.ACCEPTED, MTStatus.DELIVERED]


async def test_one_undeliverable_part_fails_the_message(store: Store) -> None:
    [mt_id] = await queue_and_claim(store)
    async with store.transaction() as session:
        await store.results.record(
            session, [accepted(mt_id, 1, 2, "m1"), accepted(mt_id, 2, 2, "m2")], T0, RETRY
        )
        outcome = await store.receipts.record(
            session, [ReceiptIn("movistar", "m2", "UNDELIV", T0, error_code=0x1F)], T0
        )
    assert [c.status for c in outcome.changes] == [MTStatus.FAILED]
    assert outcome.changes[0].detail == "receipt error 0x1F"
    async with store.transaction() as session:
        late = await store.receipts.record(session, [ReceiptIn("movistar", "m1", "DELIVRD", T0)], T0)
    assert late.changes == []
    assert (await status_of(store.sessions, mt_id)).status is MTStatus.FAILED


async def test_receipt_before_submit_response_is_applied_later(store: Store) -> None:
    [mt_id] = await queue_and_claim(store)
    async with store.transaction() as session:
        outcome = await store.receipts.record(session, [ReceiptIn("movistar", "m9", "DELIVRD", T0)], T0)
    assert (outcome.matched, outcome.early) == (0, 1)
    async with store.transaction() as session:
        changes = await store.results.record(session, [accepted(mt_id, 1, 1, "m9")], T0, RETRY)
    # the SMSC accepted it, then delivered it: the history shows both steps
    assert [(c.previous, c.status) for c in changes] == [
        (MTStatus.SENDING, MTStatus.ACCEPTED),
        (MTStatus.ACCEPTED, MTStatus.DELIVERED),
    ]
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(EarlyReceipt)) == 0
        part = (await session.execute(select(MTPart).where(MTPart.mt_id == mt_id))).scalar_one()
    assert part.status is PartStatus.DELIVERED and part.receipt_state == "DELIVRD"


async def test_a_part_given_twice_in_a_batch_takes_only_the_early_receipt_of_the_id_it_keeps(
    store: Store,
) -> None:
    """The later result of a part wins: its SMSC id's early receipt is applied with it; the earlier
    id's stays early (its part now has another id), instead of being taken and lost (PostgreSQL) or
    failing the batch for good (SQLite: a KeyError the recorder would have retried for ever)."""
    [mt_id] = await queue_and_claim(store)
    async with store.transaction() as session:
        early = [ReceiptIn("movistar", smsc_id, "DELIVRD", T0) for smsc_id in ("first", "second")]
        outcome = await store.receipts.record(session, early, T0)
    assert outcome.early == 2
    async with store.transaction() as session:
        changes = await store.results.record(
            session, [accepted(mt_id, 1, 1, "first"), accepted(mt_id, 1, 1, "second")], T0, RETRY
        )
    assert [c.status for c in changes] == [MTStatus.ACCEPTED, MTStatus.DELIVERED]
    async with store.sessions() as session:
        left = (await session.scalars(select(EarlyReceipt.smsc_message_id))).all()
        part = (await session.execute(select(MTPart).where(MTPart.mt_id == mt_id))).scalar_one()
    assert left == ["first"]
    assert (part.smsc_message_id, part.status) == ("second", PartStatus.DELIVERED)


async def test_on_postgresql_the_parts_statement_takes_their_early_receipts(pg_url: str) -> None:
    """The results' parts and the look for their early receipts are one round trip on PostgreSQL (the
    look finds none nearly always); an early receipt is still applied (the test above, both dialects)."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        store = Store.for_engine(engine)
        [mt_id] = await queue_and_claim(store)
        sent: list[str] = []
        async with store.transaction() as session:
            driver = (await (await session.connection()).get_raw_connection()).driver_connection
            assert driver is not None

            def log(record: object) -> None:
                sent.append(record.query)  # type: ignore[attr-defined]

            driver.add_query_logger(log)
            try:
                changes = await store.results.record(session, [accepted(mt_id, 1, 1, "m7")], T0, RETRY)
            finally:
                driver.remove_query_logger(log)
        assert [(c.previous, c.status) for c in changes] == [(MTStatus.SENDING, MTStatus.ACCEPTED)]
        early = [sql for sql in sent if "early_receipts" in sql]
        assert len(early) == 1 and "INSERT INTO mt_parts" in early[0], sent
    finally:
        await engine.dispose()


async def test_receipts_that_came_with_the_submit_results_are_written_with_the_parts(store: Store) -> None:
    delivered, failed, pending = await queue_and_claim(store, 3)
    t1 = T0 + timedelta(seconds=1)
    receipts = {
        ("movistar", "d1"): ReceiptIn("movistar", "d1", "DELIVRD", t1),
        ("movistar", "d2"): ReceiptIn("movistar", "d2", "DELIVRD", t1),
        ("movistar", "f1"): ReceiptIn("movistar", "f1", "UNDELIV", t1, error_code=0x0B),
        ("movistar", "p1"): ReceiptIn("movistar", "p1", "ENROUTE", t1),
    }
    results = [
        accepted(delivered, 1, 2, "d1"),
        accepted(delivered, 2, 2, "d2"),
        accepted(failed, 1, 1, "f1"),
        accepted(pending, 1, 1, "p1"),
    ]
    async with store.transaction() as session:
        changes = await store.results.record(session, results, t1, RETRY, receipts)
    assert [(c.mt_id, c.previous, c.status) for c in changes] == [
        (delivered, MTStatus.SENDING, MTStatus.ACCEPTED),
        (delivered, MTStatus.ACCEPTED, MTStatus.DELIVERED),
        (failed, MTStatus.SENDING, MTStatus.ACCEPTED),
        (failed, MTStatus.ACCEPTED, MTStatus.FAILED),
        (pending, MTStatus.SENDING, MTStatus.ACCEPTED),
    ]
    assert changes[3].detail == "receipt error 0xB"
    for mt_id, status, segments in (
        (delivered, MTStatus.DELIVERED, 2),
        (failed, MTStatus.FAILED, 1),
        (pending, MTStatus.ACCEPTED, 1),
    ):
        mt = await status_of(store.sessions, mt_id)
        assert (mt.status, mt.segments, mt.final_at is not None) == (status, segments, status.is_final)
    async with store.sessions() as session:
        parts = {(p.mt_id, p.part_no): p for p in (await session.execute(select(MTPart))).scalars()}
        history = (
            (
                await session.execute(
                    select(MTStatusHistory.status)
                    .where(MTStatusHistory.mt_id == delivered)
                    .order_by(MTStatusHistory.id)
                )
            )
            .scalars()
            .all()
        )
    assert [(parts[delivered, n].status, parts[delivered, n].receipt_state) for n in (1, 2)] == [
        (PartStatus.DELIVERED, "DELIVRD")
    ] * 2
    assert (parts[failed, 1].status, parts[failed, 1].error_code) == (PartStatus.UNDELIVERABLE, 0x0B)
    # an intermediate state is noted on the part, which stays accepted until its final receipt
    assert (parts[pending, 1].status, parts[pending, 1].receipt_state) == (PartStatus.ACCEPTED, "ENROUTE")
    assert history == [MTStatus.QUEUED, MTStatus.SENDING, MTStatus.ACCEPTED, MTStatus.DELIVERED]
    async with store.transaction() as session:
        later = await store.receipts.record(session, [ReceiptIn("movistar", "p1", "DELIVRD", t1)], t1)
    assert [(c.mt_id, c.status) for c in later.changes] == [(pending, MTStatus.DELIVERED)]


async def test_throttled_submit_is_retried_with_backoff_then_fails(store: Store) -> None:
    [mt_id] = await queue_and_claim(store)
    now = T0
    for attempt in (1, 2):
        async with store.transaction() as session:
            changes = await store.results.record(
                session, [rejected(mt_id, THROTTLED, retryable=True)], now, RETRY
            )
        assert [c.status for c in changes] == [MTStatus.QUEUED]
        mt = await status_of(store.sessions, mt_id)
        assert mt.next_attempt_at == now + timedelta(seconds=10 * 2 ** (attempt - 1))
        assert mt.last_error is not None and "0x00000058" in mt.last_error
        now = mt.next_attempt_at
        async with store.transaction() as session:
            [claimed] = await claim(store, session, "gw-a", now, limit=1, lease=60)
        assert claimed.attempts == attempt + 1
    async with store.transaction() as session:
        changes = await store.results.record(
            session, [rejected(mt_id, THROTTLED, retryable=True)], now, RETRY
        )
    assert [c.status for c in changes] == [MTStatus.FAILED]


async def test_permanent_rejection_fails_at_once(store: Store) -> None:
    [mt_id] = await queue_and_claim(store)
    async with store.transaction() as session:
        changes = await store.results.record(
            session, [rejected(mt_id, INVALID_DESTINATION, retryable=False)], T0, RETRY
        )
    assert [c.status for c in changes] == [MTStatus.FAILED]
    assert (await status_of(store.sessions, mt_id)).final_at == T0


async def test_retry_sends_only_the_parts_not_accepted(store: Store) -> None:
    [mt_id] = await queue_and_claim(store)
    second = PartResult(
        mt_id=mt_id,
        part_no=2,
        segments=2,
        carrier="movistar",
        submitted_at=T0,
        responded_at=T0,
        error_code=THROTTLED,
        retryable=True,
    )
    async with store.transaction() as session:
        await store.results.record(session, [accepted(mt_id, 1, 2, "m1"), second], T0, RETRY)
    async with store.transaction() as session:
        [claimed] = await claim(store, session, "gw-a", T0 + timedelta(minutes=1), limit=1, lease=60)
    assert claimed.done_parts == frozenset({1}) and claimed.segments == 2
    async with store.transaction() as session:
        changes = await store.results.record(session, [accepted(mt_id, 2, 2, "m2")], T0, RETRY)
    assert [c.status for c in changes] == [MTStatus.ACCEPTED]


def never_sent(mt_id: int, part_no: int, segments: int) -> PartResult:
    return PartResult(
        mt_id=mt_id,
        part_no=part_no,
        segments=segments,
        carrier="movistar",
        submitted_at=T0,
        responded_at=T0,
        error_code=0x10000002,
        error_text="movistar-1: closed by the peer",
        retryable=True,
        sent=False,
    )


async def test_segments_never_sent_requeue_at_once_without_spending_the_attempt(store: Store) -> None:
    whole, half, mixed = await queue_and_claim(store, 3)
    later = T0 + timedelta(seconds=3)
    async with store.transaction() as session:
        changes = await store.results.record(
            session,
            [
                never_sent(whole, 1, 1),
                accepted(half, 1, 2, "h1"),
                never_sent(half, 2, 2),
                # a segment lost in flight decides: the attempt counts, the retry waits its back-off
                PartResult(mixed, 1, 2, "movistar", T0, T0, error_code=0x10000002, retryable=True),
                never_sent(mixed, 2, 2),
            ],
            later,
            RETRY,
        )
    assert sorted((c.mt_id, c.status, c.detail) for c in changes) == sorted(
        [
            (whole, MTStatus.QUEUED, "not sent: movistar-1: closed by the peer"),
            (half, MTStatus.QUEUED, "not sent: movistar-1: closed by the peer"),
            (mixed, MTStatus.QUEUED, "retry: part 1 rejected (0x10000002)"),
        ]
    )
    for mt_id in (whole, half):
        mt = await status_of(store.sessions, mt_id)
        assert (mt.status, mt.attempts, mt.next_attempt_at, mt.claim_owner) == (
            MTStatus.QUEUED,
            0,
            later,
            None,
        )
    retried = await status_of(store.sessions, mixed)
    assert (retried.attempts, retried.next_attempt_at) == (1, later + timedelta(seconds=10))
    async with store.transaction() as session:
        claimed = {mt.id: mt for mt in await claim(store, session, "gw-a", later, limit=5, lease=60)}
    assert set(claimed) == {whole, half}  # due at once, on the next bind or connection
    assert claimed[half].done_parts == frozenset({1}) and claimed[whole].attempts == 1
    async with store.sessions() as session:
        parts = (await session.execute(select(MTPart.mt_id, MTPart.part_no))).all()
    assert sorted(parts) == sorted([(half, 1), (mixed, 1)])  # nothing written for a segment never sent


async def test_receipt_for_one_part_while_another_is_retried_does_not_fail_the_mt(store: Store) -> None:
    [mt_id] = await queue_and_claim(store)
    lost = PartResult(mt_id, 2, 2, "movistar", T0, T0, error_code=0x10000002, retryable=True)
    async with store.transaction() as session:
        await store.results.record(session, [accepted(mt_id, 1, 2, "m1"), lost], T0, RETRY)
    retry_at = T0 + timedelta(seconds=10)
    async with store.transaction() as session:
        [claimed] = await claim(store, session, "gw-a", retry_at, limit=1, lease=60)
        # part 1's receipt comes while part 2 is out again: the MT waits for part 2
        outcome = await store.receipts.record(
            session, [ReceiptIn("movistar", "m1", "DELIVRD", retry_at)], retry_at
        )
    assert claimed.done_parts == frozenset({1}) and outcome.matched == 1 and outcome.changes == []
    async with store.transaction() as session:
        # and a restart while part 2 is out sends part 2 again instead of failing the MT
        own = await store.claims.reconcile(session, retry_at, owner="gw-a")
    assert [(c.mt_id, c.status) for c in own] == [(mt_id, MTStatus.QUEUED)]
    async with store.transaction() as session:
        await claim(store, session, "gw-a", retry_at, limit=1, lease=60)
        changes = await store.results.record(session, [accepted(mt_id, 2, 2, "m2")], retry_at, RETRY)
        final = await store.receipts.record(
            session, [ReceiptIn("movistar", "m2", "DELIVRD", retry_at)], retry_at
        )
    assert [c.status for c in changes] == [MTStatus.ACCEPTED]
    assert [c.status for c in final.changes] == [MTStatus.DELIVERED]


async def test_reconcile_after_restart(store: Store) -> None:
    sent, unsent = await queue_and_claim(store, 2)
    async with store.transaction() as session:
        await store.results.record(session, [accepted(sent, 1, 2, "m1")], T0, RETRY)
        # The daemon died before part 2's response: part 1 is kept, the MT goes back to the queue.
        assert await store.claims.reconcile(session, T0 + timedelta(seconds=10)) == []
        changes = await store.claims.reconcile(session, T0 + timedelta(seconds=61))
    assert sorted((c.mt_id, c.status) for c in changes) == sorted(
        [(sent, MTStatus.QUEUED), (unsent, MTStatus.QUEUED)]
    )
    async with store.transaction() as session:
        claimed = await claim(store, session, "gw-b", T0 + timedelta(seconds=61), limit=5, lease=60)
        done = {mt.id: mt.done_parts for mt in claimed}
        await store.results.record(session, [accepted(sent, 2, 2, "m2")], T0, RETRY)
        own = await store.claims.reconcile(session, T0 + timedelta(seconds=62), owner="gw-b")
    assert done == {sent: frozenset({1}), unsent: frozenset()}
    assert [(c.mt_id, c.status) for c in own] == [(unsent, MTStatus.QUEUED)]
    assert (await status_of(store.sessions, sent)).status is MTStatus.ACCEPTED


async def test_renewed_lease_keeps_a_live_daemons_mts_from_reconciliation(store: Store) -> None:
    mine, other = await queue_and_claim(store, 2)
    async with store.transaction() as session:
        await session.execute(
            MTMessage.__table__.update().where(MTMessage.id == other).values(claim_owner="gw-dead")
        )
        assert await store.claims.renew_leases(session, "gw-a", T0 + timedelta(seconds=30), lease=60) == 1
        changes = await store.claims.reconcile(session, T0 + timedelta(seconds=61))
    assert [(c.mt_id, c.status) for c in changes] == [(other, MTStatus.QUEUED)]
    mt = await status_of(store.sessions, mine)
    assert mt.status is MTStatus.SENDING and mt.claim_expires_at == T0 + timedelta(seconds=90)


async def test_requeue_gives_the_attempt_back(store: Store) -> None:
    [mt_id] = await queue_and_claim(store)
    async with store.transaction() as session:
        changes = await store.claims.requeue(session, [mt_id], T0, delay=5, reason="bind down")
    assert [(c.status, c.detail) for c in changes] == [(MTStatus.QUEUED, "bind down")]
    mt = await status_of(store.sessions, mt_id)
    assert (mt.status, mt.attempts, mt.next_attempt_at) == (MTStatus.QUEUED, 0, T0 + timedelta(seconds=5))


async def test_reply_answers_the_conversation_and_stats_count_it(store: Store) -> None:
    key = dedup_key("movistar", "34600000001", "997745", 0, b"hola")
    async with store.transaction() as session:
        [mo] = await store.mos.ingest(
            session, [NewMO(key, "34600000001", "movistar", "997745", "hola", T0)], T0
        )
        assert mo.conversation_id is not None
        reply_at = T0 + timedelta(minutes=90)
        await queue_mt(session, push(kind=MTKind.REPLY, conversation_id=mo.conversation_id), reply_at)
    async with store.sessions() as session:
        conversation = await session.get(Conversation, mo.conversation_id)
        assert conversation is not None
        assert conversation.status is ConversationStatus.OPEN and conversation.waiting_since is None
        activity = await client_activity(
            session, mo.subscriber.id, T0, T0 + timedelta(days=1), ZoneInfo("Europe/Madrid")
        )
        history = await client_history(session, mo.subscriber.id)
    assert activity == [HourlyCount(T0.date(), 12, 1, 0), HourlyCount(T0.date(), 13, 0, 1)]
    assert [(entry.direction, entry.status) for entry in history] == [("mt", "queued"), ("mo", None)]


async def _queued_rows(store: Store, inserts: MTInserts, known: str) -> list[tuple[object, ...]]:
    """A batch through ``inserts`` (to a known subscriber, to unknown numbers, one given its subscriber,
    one held): each MT's row (id left out) with its history, and the subscriber's ``mt_count``."""
    async with store.transaction() as session:
        subscriber = await session.scalar(select(Subscriber).where(Subscriber.msisdn == known))
        assert subscriber is not None
        before = subscriber.mt_count
        mts = [
            push(known),
            push("34600000901", priority=3),
            NewMT(
                MTKind.SYSTEM,
                "movistar",
                "997745",
                "34600000902",
                "aviso",
                data_coding=8,
                bind_name="m-1",
                request_receipt=False,
                not_before=T0 + timedelta(hours=1),
                note="held for the quiet hours",
            ),
            push("34600000903", kind=MTKind.REPLY, conversation_id=None),
            NewMT(MTKind.PUSH, "movistar", "997745", known, "dada", subscriber_id=subscriber.id, charge=150),
        ]
        ids = await queue_mts(session, mts, T0, inserts)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # in the batch's order: the claim's order
    async with store.sessions() as session:
        rows = {mt.id: mt for mt in (await session.scalars(select(MTMessage).where(MTMessage.id.in_(ids))))}
        history = (
            await session.execute(
                select(
                    MTStatusHistory.mt_id, MTStatusHistory.status, MTStatusHistory.at, MTStatusHistory.detail
                ).where(MTStatusHistory.mt_id.in_(ids))
            )
        ).all()
        count = await session.scalar(select(Subscriber.mt_count).where(Subscriber.id == subscriber.id))
    notes = [mt.note for mt in mts]
    assert sorted(history) == [
        (mt_id, MTStatus.QUEUED, T0, note) for mt_id, note in zip(ids, notes, strict=True)
    ]
    columns = [column.key for column in MTMessage.__table__.columns if column.key != "id"]
    return [
        *(tuple(getattr(rows[mt_id], name) for name in columns) for mt_id in ids),
        ("mt_count", count - before),
    ]


async def test_the_stores_inserts_write_what_the_portable_ones_write(store: Store) -> None:
    """``Store.mt_inserts`` (on PostgreSQL one array statement) stores the same rows, history lines and
    counts as the SQLAlchemy Core statements any database runs."""
    known = "34600000900"
    async with store.transaction() as session:
        await store.mos.ingest(
            session,
            [NewMO(dedup_key("movistar", known, "997745", 0, b"x"), known, "movistar", "997745", "hola", T0)],
            T0,
        )
    portable = await _queued_rows(store, ANY_DATABASE, known)
    chosen = await _queued_rows(store, store.mt_inserts, known)
    assert chosen == portable
    subscriber_ids = {row[columns_index("subscriber_id")] for row in portable[:-1]}
    assert len(subscriber_ids - {None}) == 1 and portable[-1] == ("mt_count", 2)
    assert portable[2][columns_index("next_attempt_at")] == T0 + timedelta(hours=1)
    assert portable[4][columns_index("charge")] == 150


def columns_index(name: str) -> int:
    return [column.key for column in MTMessage.__table__.columns if column.key != "id"].index(name)


async def test_receipts_for_one_part_in_one_batch_apply_in_time_order(store: Store) -> None:
    first, second = await queue_and_claim(store, 2)
    async with store.transaction() as session:
        await store.results.record(
            session, [accepted(first, 1, 1, "a1"), accepted(second, 1, 1, "b1")], T0, RETRY
        )
    later = T0 + timedelta(seconds=5)
    async with store.transaction() as session:
        outcome = await store.receipts.record(
            session,
            [
                ReceiptIn("movistar", "a1", "DELIVRD", later),
                ReceiptIn("movistar", "a1", "UNDELIV", T0, error_code=0x0B),
                ReceiptIn("movistar", "b1", "ENROUTE", T0),
                ReceiptIn("movistar", "b1", "ACCEPTD", later),
            ],
            T0,
        )
    assert outcome.matched == 4 and outcome.early == 0
    assert [(c.mt_id, c.status) for c in outcome.changes] == [(first, MTStatus.DELIVERED)]
    async with store.sessions() as session:
        parts = {part.mt_id: part for part in (await session.execute(select(MTPart))).scalars()}
    assert parts[first].status is PartStatus.DELIVERED and parts[first].receipt_at == later
    assert parts[second].status is PartStatus.ACCEPTED and parts[second].receipt_state == "ACCEPTD"
    assert (await status_of(store.sessions, second)).status is MTStatus.ACCEPTED


async def test_receipts_for_two_parts_committed_at_once_deliver_the_mt(pg_url: str) -> None:
    """Two receipt batches in concurrent transactions, each with the receipt of one part of a two-part
    MT (the receipts pipeline commits two batches at a time on PostgreSQL): neither may decide the MT's
    status from a view without the other's part, or the MT stays ``accepted`` with both parts delivered."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    store = Store.for_engine(engine)
    try:
        [mt_id] = await queue_and_claim(store)
        async with store.transaction() as session:
            await store.results.record(
                session, [accepted(mt_id, 1, 2, "m1"), accepted(mt_id, 2, 2, "m2")], T0, RETRY
            )
        async with store.sessions() as first, store.sessions() as second, store.sessions() as observer:
            await first.begin()
            one = await store.receipts.record(first, [ReceiptIn("movistar", "m1", "DELIVRD", T0)], T0)
            await second.begin()
            other = asyncio.create_task(
                store.receipts.record(second, [ReceiptIn("movistar", "m2", "DELIVRD", T0)], T0)
            )

            async def blocked_or_done() -> bool:
                waiting = await observer.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
                await observer.rollback()
                return other.done() or bool(waiting)

            await eventually(blocked_or_done)
            await first.commit()
            two = await asyncio.wait_for(other, 10)
            await second.commit()
        assert one.changes == []
        assert [(c.mt_id, c.status) for c in two.changes] == [(mt_id, MTStatus.DELIVERED)]
        assert (await status_of(store.sessions, mt_id)).status is MTStatus.DELIVERED
    finally:
        await engine.dispose()


def plan_nodes(node: dict[str, object]) -> list[dict[str, object]]:
    """A plan node (EXPLAIN FORMAT JSON) and every node under it."""
    children = node.get("Plans", [])
    assert isinstance(children, list)
    return [node, *(found for child in children for found in plan_nodes(child))]


def claim_plan_sql(statement: str, limit: int, *, analyze: bool = False, carriers: str = "") -> str:
    """EXPLAIN of a PostgreSQL claim statement, its parameters written in (``:now``; ``carriers``)."""
    parameters = {
        "$1": "CAST(:now AS timestamptz)",
        "$2": str(limit),
        "$3": "'gw'",
        "$4": "CAST(:now AS timestamptz)",
        "$5": carriers,
    }
    for name, value in parameters.items():
        statement = statement.replace(name, value)
    return f"EXPLAIN ({'ANALYZE, ' if analyze else ''}FORMAT JSON) {statement}"


@pytest.mark.parametrize(
    ("statement", "carriers"),
    [(pg_claim_one_carrier, ["movistar"]), (pg_claim_carriers, ["movistar", "orange"])],
    ids=["one carrier", "carriers"],
)
async def test_a_claim_reads_its_carriers_due_mts_in_order_instead_of_sorting_the_outbox(
    pg_url: str, statement: str, carriers: list[str]
) -> None:
    # Ordering every due MT by priority and age sorted the whole backlog: 1.5 ms a claim of ten with
    # 10,000 queued, and more while another carrier's MTs wait (its binds down, or another daemon's).
    # The claim reads each carrier's priorities' due MTs in order from the claim-order index.
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        store = Store.for_engine(engine)
        async with store.transaction() as session:
            for carrier in ("movistar", "vodafone"):
                mts = [
                    push(f"3462{n:07d}", priority=(-10, 0, 10)[n % 3], carrier=carrier) for n in range(3000)
                ]
                await queue_mts(session, mts, T0)
        async with store.transaction() as session:
            await session.execute(text("ANALYZE mt_messages"))
        async with store.sessions() as session:
            written = f"'{carriers[0]}'" if len(carriers) == 1 else f"ARRAY{carriers!r}"
            plan = await session.scalar(
                text(claim_plan_sql(statement, 10, analyze=True, carriers=written)), {"now": T0}
            )
            await session.rollback()
        async with store.transaction() as session:
            claimed = await claim(store, session, "gw", T0, limit=10, lease=60, carriers=carriers)
    finally:
        await engine.dispose()
    assert [(mt.carrier, mt.priority) for mt in claimed] == [("movistar", 10)] * 10
    scans = [node for node in plan_nodes(plan[0]["Plan"]) if "Scan" in str(node.get("Node Type"))]
    read = [
        (
            node.get("Index Name"),
            int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
            + int(node.get("Rows Removed by Filter", 0)),
        )
        for node in scans
        if node.get("Relation Name") == "mt_messages"
    ]
    # the claim's limit and a margin from each of the carrier's three priorities at most, not its backlog
    assert sum(rows for _, rows in read) <= 150, read
    assert {name for name, _ in read} == {"ix_mt_messages_claim_order", "pk_mt_messages"}, read


async def test_only_the_claim_reads_the_claim_order_index(pg_url: str) -> None:
    # The held pushes' probe tests queued MTs too: it took the claim-order index for a small one and
    # scanned it whole, once per MO batch (the index's predicate now names the priority).
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    later = T0 + timedelta(hours=1)
    try:
        store = Store.for_engine(engine)
        async with store.transaction() as session:  # statistics of an outbox that had sent everything
            await queue_mts(session, [push(f"3463{n:07d}") for n in range(3000)], T0)
            await session.execute(text("UPDATE mt_messages SET status = 'delivered'"))
        async with store.transaction() as session:
            await session.execute(text("ANALYZE mt_messages"))
        async with store.transaction() as session:  # then pushes held for the clients' quiet hours
            await queue_mts(session, [push(f"3464{n:07d}", not_before=later) for n in range(3000)], T0)
        async with store.sessions() as session:
            # the MO statement's probe: per writer, or (hashed) all held MTs at once
            plan = await session.scalar(
                text(
                    "EXPLAIN (FORMAT JSON) WITH writers AS MATERIALIZED (SELECT id FROM subscribers)"
                    " SELECT w.id FROM writers AS w WHERE w.id < 0 OR EXISTS (SELECT 1 FROM mt_messages AS m"
                    f" WHERE m.subscriber_id = w.id AND {held_sql('m', 'CAST(:now AS timestamptz)')})"
                ),
                {"now": T0},
            )
    finally:
        await engine.dispose()
    used = {node.get("Index Name") for node in plan_nodes(plan[0]["Plan"])}
    assert "ix_mt_messages_claim_order" not in used, used


async def test_a_claim_takes_the_backlog_by_key_whatever_the_statistics_say(pg_url: str) -> None:
    # Statistics taken while nothing was queued (as autovacuum leaves them between bursts) made the
    # claim's update scan the outbox index once per due MT: quadratic in the backlog (600 ms a claim of
    # 200 with 12,000 queued). The plan must reach the claimed rows by primary key.
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        store = Store.for_engine(engine)
        async with store.transaction() as session:  # a running outbox: what was queued was sent
            await queue_mts(session, [push(f"3460{n:07d}") for n in range(3000)], T0)
            await session.execute(text("UPDATE mt_messages SET status = 'delivered'"))
        async with store.transaction() as session:
            await session.execute(text("ANALYZE mt_messages"))
        async with store.transaction() as session:  # then a burst
            await queue_mts(session, [push(f"3461{n:07d}") for n in range(3000)], T0)
        async with store.transaction() as session:
            plan = await session.scalar(text(claim_plan_sql(pg_claim_statement, 200)), {"now": T0})
            claimed = await claim(store, session, "gw", T0, limit=200, lease=60)
    finally:
        await engine.dispose()
    assert len(claimed) == 200
    update = next(node for node in plan_nodes(plan[0]["Plan"]) if node.get("Node Type") == "ModifyTable")
    scans = [node for node in plan_nodes(update) if "Scan" in str(node.get("Node Type"))]
    assert any(node.get("Index Name") == "pk_mt_messages" for node in scans), scans
    assert not any(node.get("Index Name") == "ix_mt_messages_outbox_status_next_attempt_at" for node in scans)
