"""Helpers shared by the fault tests: bulk MTs, counting what each end saw."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.mt.values import NewMT
from simulator.core import Simulator
from smpp.concat import user_data
from smpp.pdu import SubmitSM
from smpp.text import decode_text


def subscriber(index: int) -> str:
    """A distinct Spanish mobile number per index, E.164 digits without '+'."""
    return f"3460{index:07d}"


async def queue_many(
    sessions: async_sessionmaker[AsyncSession],
    carrier: str,
    short_code: str,
    texts: list[str],
    *,
    destinations: int = 50,
    request_receipt: bool = True,
) -> list[int]:
    """Queue one MT per text in one transaction; returns their ids in order."""
    now = datetime.now(UTC)
    mts = [
        NewMT(
            kind=MTKind.PUSH,
            carrier=carrier,
            source=short_code,
            destination=subscriber(index % destinations),
            text=text,
            request_receipt=request_receipt,
        )
        for index, text in enumerate(texts)
    ]
    async with sessions() as session, session.begin():
        outcome = await queue_mts(session, mts, now)
    ids = list(outcome)
    assert len(ids) == len(texts)
    return ids


async def mo_texts(sessions: async_sessionmaker[AsyncSession]) -> Counter[str]:
    async with sessions() as session:
        return Counter((await session.execute(select(MOMessage.text))).scalars())


async def mo_ids(sessions: async_sessionmaker[AsyncSession]) -> set[int]:
    async with sessions() as session:
        return set((await session.execute(select(MOMessage.id))).scalars())


async def mt_status_counts(sessions: async_sessionmaker[AsyncSession]) -> Counter[MTStatus]:
    async with sessions() as session:
        rows = await session.execute(select(MTMessage.status, func.count()).group_by(MTMessage.status))
        return Counter({MTStatus(status): count for status, count in rows})


def texts_at_simulator(simulator: Simulator, carrier: str) -> list[str]:
    """Every MT text the simulator accepted from ``carrier``'s binds, in arrival order."""
    records = simulator.store.query(carrier=carrier, limit=1_000_000)
    texts = []
    for record in records:
        pdu = record.pdu
        assert isinstance(pdu, SubmitSM)
        _, body = user_data(pdu)
        texts.append(decode_text(body, pdu.data_coding))
    return texts
