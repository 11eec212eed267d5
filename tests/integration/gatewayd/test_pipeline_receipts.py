"""A receipt committed while its part's submit result was being committed (two transactions that
cannot see each other) is kept as early and still applied afterwards: no receipt is left behind."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from gatewayd.pipeline_queries import sweep_early_receipts
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import EarlyReceipt, MTMessage
from gatewayd.store.migrate import upgrade
from gatewayd.store.repo_mt import (
    NewMT,
    PartResult,
    ReceiptIn,
    RetryPolicy,
    claim_mts,
    queue_mts,
    record_part_results,
    record_receipts,
)


async def test_early_receipt_racing_its_part_is_applied_by_the_sweep(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    try:
        async with sessions() as session, session.begin():
            outcome = await queue_mts(
                session,
                [
                    NewMT(
                        kind=MTKind.PUSH,
                        carrier="movistar",
                        source="997745",
                        destination="34600111222",
                        text="hola",
                    )
                ],
                now,
            )
            claimed = await claim_mts(session, "test", now, limit=10, lease=60)
        mt_id = outcome.ids[0]
        assert [mt.id for mt in claimed] == [mt_id]
        part = PartResult(
            mt_id=mt_id or 0,
            part_no=1,
            segments=1,
            carrier="movistar",
            submitted_at=now,
            responded_at=now,
            smsc_message_id="abc123",
            bind_name="movistar-1",
        )
        receipt = ReceiptIn("movistar", "abc123", "DELIVRD", now)
        if database_url.startswith("postgresql"):
            # the part's transaction is open; the receipt's transaction cannot see its row and commits
            # the receipt as early; then the part's transaction commits, without having seen the receipt
            async with sessions() as part_session, part_session.begin():
                await record_part_results(part_session, [part], now, RetryPolicy())
                async with sessions() as receipt_session, receipt_session.begin():
                    early = await record_receipts(receipt_session, [receipt], now)
                assert early.early == 1
        else:
            # SQLite serialises writers, so the race cannot happen there; leave the same state behind
            async with sessions() as session, session.begin():
                await record_part_results(session, [part], now, RetryPolicy())
                await session.execute(
                    insert(EarlyReceipt).values(
                        carrier="movistar", smsc_message_id="abc123", state="DELIVRD", received_at=now
                    )
                )
        async with sessions() as session:
            status = (await session.execute(select(MTMessage.status).where(MTMessage.id == mt_id))).scalar()
        assert status is MTStatus.ACCEPTED  # the receipt is stranded as early
        async with sessions() as session, session.begin():
            swept = await sweep_early_receipts(session, now)
        assert [(change.mt_id, change.status) for change in swept.changes] == [(mt_id, MTStatus.DELIVERED)]
        async with sessions() as session:
            status = (await session.execute(select(MTMessage.status).where(MTMessage.id == mt_id))).scalar()
            left = (await session.execute(select(func.count()).select_from(EarlyReceipt))).scalar()
        assert status is MTStatus.DELIVERED
        assert left == 0
        async with sessions() as session, session.begin():
            again = await sweep_early_receipts(session, now)
        assert again.matched == 0 and again.changes == []
    finally:
        await engine.dispose()
