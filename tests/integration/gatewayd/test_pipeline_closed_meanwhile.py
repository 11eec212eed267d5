"""An operator closes a conversation while the daemon's MO batch for it waits on its row (PostgreSQL;
SQLite has one writer, so nothing closes under a batch there).

The batch found the conversation open; another batch opened the pair's next conversation in the
closing transaction. Setting the closed one waiting again would break "one active conversation per
pair" and the MO would be refused: instead the batch is rolled back and tried again at once, and the
MO, acknowledged with success, joins the next conversation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text, update

from gatewayd.logging import EventFormatter
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.messages import MOMessage
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import MOVISTAR, MOVISTAR_SHORT_CODE, make_config, running_daemon
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SUBSCRIBER = "+34600111333"


async def test_an_mo_whose_conversation_an_operator_closes_meanwhile_joins_the_next_one(
    tmp_path: Path, pg_url: str, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = make_config(tmp_path, pg_url, simulator)
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with running_daemon(config), sessions() as operator, sessions() as observer:

            async def stored(expected: int) -> bool:
                count = await observer.scalar(select(func.count()).select_from(MOMessage))
                await observer.rollback()
                return count == expected

            simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola")
            await eventually(lambda: stored(1), what="the first MO stored")
            first = (
                await observer.execute(
                    select(MOMessage.conversation_id, MOMessage.subscriber_id, MOMessage.short_code)
                )
            ).one()
            await observer.rollback()
            assert first.conversation_id is not None

            await operator.begin()
            await operator.execute(
                update(Conversation)
                .where(Conversation.id == first.conversation_id)
                .values(status=ConversationStatus.CLOSED, waiting_since=None, closed_at=utcnow())
            )
            successor = await operator.scalar(
                insert(Conversation)
                .values(
                    subscriber_id=first.subscriber_id,
                    short_code=first.short_code,
                    status=ConversationStatus.OPEN,
                    opened_at=utcnow(),
                )
                .returning(Conversation.id)
            )
            closer = await operator.scalar(text("SELECT pg_backend_pid()"))

            simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "¿sigues ahí?")

            async def batch_waits_on_the_close() -> bool:
                waiting = await observer.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE CAST(:closer AS integer) = ANY(pg_blocking_pids(pid))"
                    ),
                    {"closer": closer},
                )
                await observer.rollback()
                return bool(waiting)

            await eventually(batch_waits_on_the_close, what="the MO batch waiting on the closing operator")
            await operator.commit()
            await eventually(lambda: stored(2), what="the second MO stored")

            second = (
                await observer.execute(
                    select(MOMessage.conversation_id, MOMessage.received_at).where(
                        MOMessage.text == "¿sigues ahí?"
                    )
                )
            ).one()
            statuses = {
                row.id: row.status
                for row in await observer.execute(select(Conversation.id, Conversation.status))
            }
            waiting_since = await observer.scalar(
                select(Conversation.waiting_since).where(Conversation.id == successor)
            )
        assert second.conversation_id == successor
        assert statuses == {
            first.conversation_id: ConversationStatus.CLOSED,
            successor: ConversationStatus.WAITING,
        }
        assert waiting_since == second.received_at
        formatter = EventFormatter()
        retried = [line for line in map(formatter.format, caplog.records) if " mo.batch_retried " in line]
        assert len(retried) == 1 and "reason=conversation_closed" in retried[0]
        counters = simulator.carrier(MOVISTAR).counters
        assert counters.mo_delivered == 2 and counters.mo_failed == 0 and counters.redeliveries == 0
    finally:
        await engine.dispose()
