"""A receipt committed while its part's submit result was being committed (two transactions that
cannot see each other) is kept as early and still applied afterwards: no receipt is left behind."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select

from gatewayd.schema import upgrade
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import EarlyReceipt, MTMessage
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.mt.values import NewMT, PartResult, ReceiptIn, RetryPolicy
from gatewayd.store.store import Store
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import make_config, running_daemon
from tests.waiting import eventually


async def test_early_receipt_racing_its_part_is_applied_by_the_sweep(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    store = Store.for_engine(engine)
    sessions = store.sessions
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
            claimed = await store.claims.claim(session, "test", now, limit=10, lease=60)
        mt_id = outcome[0]
        assert [mt.id for mt in claimed.mts] == [mt_id]
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
                await store.results.record(part_session, [part], now, RetryPolicy())
                async with sessions() as receipt_session, receipt_session.begin():
                    early = await store.receipts.record(receipt_session, [receipt], now)
                assert early.early == 1
        else:
            # SQLite serialises writers, so the race cannot happen there; leave the same state behind
            async with sessions() as session, session.begin():
                await store.results.record(session, [part], now, RetryPolicy())
                await session.execute(
                    insert(EarlyReceipt).values(
                        carrier="movistar", smsc_message_id="abc123", state="DELIVRD", received_at=now
                    )
                )
        async with sessions() as session:
            status = (await session.execute(select(MTMessage.status).where(MTMessage.id == mt_id))).scalar()
        assert status is MTStatus.ACCEPTED  # the receipt is stranded as early
        async with sessions() as session, session.begin():
            swept = await store.receipts.sweep_early(session, now)
        assert [(change.mt_id, change.status) for change in swept.changes] == [(mt_id, MTStatus.DELIVERED)]
        async with sessions() as session:
            status = (await session.execute(select(MTMessage.status).where(MTMessage.id == mt_id))).scalar()
            left = (await session.execute(select(func.count()).select_from(EarlyReceipt))).scalar()
        assert status is MTStatus.DELIVERED
        assert left == 0
        async with sessions() as session, session.begin():
            again = await store.receipts.sweep_early(session, now)
        assert again.matched == 0 and again.changes == []
    finally:
        await engine.dispose()


async def test_receipt_stranded_by_a_stopped_daemon_is_applied_when_the_next_one_starts(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    """A daemon stopped right after the race above (its sweep never ran) leaves a delivered MT as
    ``accepted``, its receipt kept as early: the next daemon applies it at start, with no new receipt
    to set it off."""
    config = make_config(tmp_path, database_url, simulator)
    await upgrade(database_url)
    engine = create_engine(database_url)
    store = Store.for_engine(engine)
    sessions = store.sessions
    now = datetime.now(UTC)
    try:
        async with sessions() as session, session.begin():
            outcome = await queue_mts(
                session,
                [NewMT(MTKind.PUSH, "movistar", "997745", "34600111222", "hola")],
                now,
            )
            await store.claims.claim(session, "earlier", now, limit=1, lease=60)
            mt_id = outcome[0]
            part = PartResult(mt_id, 1, 1, "movistar", now, now, smsc_message_id="ab12")
            await store.results.record(session, [part], now, RetryPolicy())
            await session.execute(
                insert(EarlyReceipt).values(
                    carrier="movistar", smsc_message_id="ab12", state="DELIVRD", received_at=now
                )
            )

        async def delivered() -> bool:
            async with sessions() as session:
                query = select(MTMessage.status).where(MTMessage.id == mt_id)
                return (await session.execute(query)).scalar() is MTStatus.DELIVERED

        assert not await delivered()
        async with running_daemon(config, migrate=False):
            await eventually(delivered)
    finally:
        await engine.dispose()
