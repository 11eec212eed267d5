"""gatewayd end to end against the simulator over 127.0.0.1, on SQLite and PostgreSQL, events on Mosquitto."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gatewayd import recorder as recorder_module
from gatewayd.bus import Subscription, create_bus
from gatewayd.store.enums import MTKind, MTStatus, PartStatus
from gatewayd.store.errors import MTRefused
from gatewayd.store.messages import MOMessage, MTMessage, MTPart, MTStatusHistory
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.mt.values import NewMT
from gatewayd.store.repo_subscribers import get_subscriber_by_msisdn, set_bans
from gatewayd.store.subscribers import Subscriber
from simulator.core import Simulator
from smpp.concat import user_data
from smpp.text import decode_text
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    make_config,
    running_daemon,
    simulator_config,
)
from tests.waiting import eventually

SUBSCRIBER = "+34600111222"


@asynccontextmanager
async def mqtt_subscriber(mqtt_url: str, topic_prefix: str, pattern: str) -> AsyncIterator[Subscription]:
    """A separate MQTT client (not the daemon's) listening on ``<prefix>/<pattern>``."""
    bus = create_bus(mqtt_url, topic_prefix=topic_prefix, client_id=f"{topic_prefix}-listener")
    async with bus, bus.subscribe(f"{topic_prefix}/{pattern}") as subscription:
        # connected means subscribed: the bus subscribes (and waits for the SUBACK) before it says so
        await bus.wait_connected()  # type: ignore[union-attr]
        yield subscription


async def test_mo_is_stored_and_published(
    tmp_path: Path, database_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str
) -> None:
    config = make_config(tmp_path, database_url, simulator, bus_url=mqtt_url, topic_prefix=topic_prefix)
    async with mqtt_subscriber(mqtt_url, topic_prefix, "+/mo") as events, running_daemon(config) as daemon:
        simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "ALIAS hola, ¿hay alguien?")
        async with asyncio.timeout(15):
            event = await events.get()
        assert event.topic == f"{topic_prefix}/{MOVISTAR_SHORT_CODE}/mo"
        assert event.payload["v"] == 1
        # Ids only: the subscriber's number and words stay in the database, off the broker.
        assert "msisdn" not in event.payload and "text" not in event.payload
        assert SUBSCRIBER[1:] not in json.dumps(event.payload) and "hola" not in json.dumps(event.payload)
        assert event.payload["carrier"] == MOVISTAR
        assert daemon.sessions is not None
        async with daemon.sessions() as session:
            stored = (await session.execute(select(MOMessage))).scalars().all()
            subscriber = await get_subscriber_by_msisdn(session, SUBSCRIBER[1:])
        assert [mo.text for mo in stored] == ["ALIAS hola, ¿hay alguien?"]
        assert stored[0].id == event.payload["id"]
        assert stored[0].service == "chat-movistar"
        assert stored[0].conversation_id is not None
        assert subscriber is not None and subscriber.carrier == MOVISTAR and subscriber.country == "ES"
        assert event.payload["client_id"] == subscriber.client_id
    assert simulator.carrier(MOVISTAR).counters.mo_delivered == 1


async def test_mt_is_submitted_and_receipt_gives_final_status(
    tmp_path: Path, database_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str
) -> None:
    config = make_config(tmp_path, database_url, simulator, bus_url=mqtt_url, topic_prefix=topic_prefix)
    async with (
        mqtt_subscriber(mqtt_url, topic_prefix, "mt/+/status") as events,
        running_daemon(config) as daemon,
    ):
        mt_id = await daemon.queue_mt(SUBSCRIBER, "Hola, soy Laura. ¿Qué tal?", carrier=MOVISTAR)
        statuses: list[str] = []
        async with asyncio.timeout(15):
            while "delivered" not in statuses:
                event = await events.get()
                if event.payload["id"] == mt_id:
                    statuses.append(event.payload["status"])
        assert statuses == ["queued", "accepted", "delivered"]  # the outbox announces what it queues
        records = simulator.store.query(carrier=MOVISTAR, destination=SUBSCRIBER[1:])
        assert len(records) == 1
        assert records[0].pdu.source_addr == MOVISTAR_SHORT_CODE
        assert daemon.sessions is not None
        async with daemon.sessions() as session:
            mt = (await session.execute(select(MTMessage).where(MTMessage.id == mt_id))).scalar_one()
            parts = (await session.execute(select(MTPart).where(MTPart.mt_id == mt_id))).scalars().all()
        assert mt.status is MTStatus.DELIVERED
        assert [(part.part_no, part.status) for part in parts] == [(1, PartStatus.DELIVERED)]
        assert parts[0].smsc_message_id == records[0].message_id.lstrip("0").lower()


async def test_receipts_right_behind_their_responses_are_written_with_the_parts(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SMSC that sends each receipt at once: once a receipt shows it, the receipts ride along with
    their part's submit result (one transaction per batch, not two), and every MT's history still shows
    accepted, then delivered."""
    # however slow the machine: the results wait until their receipts are in, and the habit is kept
    monkeypatch.setattr(recorder_module, "RECEIPT_LINGER", 600.0)
    monkeypatch.setattr(recorder_module, "RECEIPTS_AT_ONCE_MEMORY", 600.0)
    async with Simulator(simulator_config(receipt_delay=0.0)) as simulator:
        config = make_config(tmp_path, database_url, simulator)
        async with running_daemon(config) as daemon:
            assert daemon.bus is not None and daemon.recorder is not None and daemon.sessions is not None
            sessions = daemon.sessions
            first = await daemon.queue_mt("+34600110000", "hola", carrier=MOVISTAR)

            async def first_delivered() -> bool:  # its receipt showed the SMSC's habit
                async with sessions() as session:
                    status = await session.scalar(select(MTMessage.status).where(MTMessage.id == first))
                return status is MTStatus.DELIVERED

            await eventually(first_delivered)
            async with daemon.bus.subscribe(daemon.bus.topics.all_mt_status()) as events:
                ids = [
                    await daemon.queue_mt(f"+3460011{index:04d}", f"hola {index}", carrier=MOVISTAR)
                    for index in range(20)
                ]
                seen: dict[int, list[str]] = {mt_id: [] for mt_id in ids}
                async with asyncio.timeout(15):
                    while any("delivered" not in statuses for statuses in seen.values()):
                        event = await events.get()
                        seen.setdefault(event.payload["id"], []).append(event.payload["status"])
            assert all(seen[mt_id] == ["queued", "accepted", "delivered"] for mt_id in ids)
            assert daemon.recorder.with_part > 0
            async with daemon.sessions() as session:
                history = (
                    await session.execute(
                        select(MTStatusHistory.mt_id, MTStatusHistory.status).order_by(MTStatusHistory.id)
                    )
                ).all()
                parts = (await session.execute(select(MTPart))).scalars().all()
        for mt_id in [first, *ids]:
            assert [status for owner, status in history if owner == mt_id] == [
                MTStatus.QUEUED,
                MTStatus.SENDING,
                MTStatus.ACCEPTED,
                MTStatus.DELIVERED,
            ]
        assert sorted(part.mt_id for part in parts) == sorted([first, *ids])
        assert all(part.status is PartStatus.DELIVERED and part.receipt_state == "DELIVRD" for part in parts)


async def test_long_ucs2_mt_three_parts_three_receipts_delivered(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, database_url, simulator)
    text = "Привет! Это длинное сообщение на кириллице, часть. " * 3  # UCS-2: 67 characters per part
    assert 134 < len(text) <= 201
    async with running_daemon(config) as daemon:
        mt_id = await daemon.queue_mt(SUBSCRIBER, text, carrier=MOVISTAR)
        assert daemon.sessions is not None
        sessions = daemon.sessions

        async def delivered() -> bool:
            async with sessions() as session:
                query = select(MTMessage.status).where(MTMessage.id == mt_id)
                status = (await session.execute(query)).scalar()
            return status is MTStatus.DELIVERED

        await eventually(delivered)
        async with sessions() as session:
            parts = (
                (await session.execute(select(MTPart).where(MTPart.mt_id == mt_id).order_by(MTPart.part_no)))
                .scalars()
                .all()
            )
        assert [part.part_no for part in parts] == [1, 2, 3]
        assert all(part.status is PartStatus.DELIVERED and part.receipt_state for part in parts)
        assert len({part.smsc_message_id for part in parts}) == 3
    records = simulator.store.query(carrier=MOVISTAR, destination=SUBSCRIBER[1:])
    assert len(records) == 3
    assert all(record.pdu.data_coding == 0x08 for record in records)
    assert simulator.carrier(MOVISTAR).counters.receipts_sent == 3


async def test_baja_records_opt_out_and_sends_confirmation(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, database_url, simulator)
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None
        sessions = daemon.sessions
        simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "baja")

        async def confirmation_sent() -> bool:
            return bool(simulator.store.query(carrier=MOVISTAR, destination=SUBSCRIBER[1:]))

        await eventually(confirmation_sent)
        async with sessions() as session:
            subscriber = await get_subscriber_by_msisdn(session, SUBSCRIBER[1:])
            mo = (await session.execute(select(MOMessage))).scalar_one()
        assert subscriber is not None and subscriber.opted_out
        assert mo.keyword == "BAJA" and mo.conversation_id is None
        record = simulator.store.query(carrier=MOVISTAR, destination=SUBSCRIBER[1:])[0]
        _, body = user_data(record.pdu)
        assert "baja" in decode_text(body, record.pdu.data_coding)
        # after BAJA, a chat MT to them is refused
        with pytest.raises(MTRefused, match="opted out"):
            await daemon.queue_mt(SUBSCRIBER, "¿Sigues ahí?", carrier=MOVISTAR)


async def test_banned_subscriber_mt_is_refused_with_reason(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, database_url, simulator)
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None
        sessions = daemon.sessions
        simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola")

        async def known() -> bool:
            async with sessions() as session:
                return (await session.execute(select(Subscriber.id))).first() is not None

        await eventually(known)
        # an MT queued while allowed (due in a second), then the admin bans the subscriber
        now = datetime.now(UTC)
        async with sessions() as session, session.begin():
            subscriber = await get_subscriber_by_msisdn(session, SUBSCRIBER[1:])
            assert subscriber is not None
            [early_mt] = await queue_mts(
                session,
                [
                    NewMT(
                        kind=MTKind.REPLY,
                        carrier=MOVISTAR,
                        source=MOVISTAR_SHORT_CODE,
                        destination=SUBSCRIBER[1:],
                        text="Hola, ¿qué tal?",
                        not_before=now + timedelta(seconds=1),
                    )
                ],
                now,
            )
            await set_bans(session, [subscriber.client_id], reason="abusive language", now=now)
        # a new MT is refused when queued ...
        with pytest.raises(MTRefused, match="banned"):
            await daemon.queue_mt(SUBSCRIBER, "Hola", carrier=MOVISTAR)

        # ... and the one queued before the ban is refused by the sender, with the reason
        async def refused() -> bool:
            async with sessions() as session:
                row = (
                    await session.execute(
                        select(MTMessage.status, MTMessage.last_error).where(MTMessage.id == early_mt)
                    )
                ).one()
            return row.status is MTStatus.REFUSED

        await eventually(refused)
        async with sessions() as session:
            mt = (await session.execute(select(MTMessage).where(MTMessage.id == early_mt))).scalar_one()
        assert mt.last_error == "subscriber banned: abusive language"
        assert simulator.store.query(carrier=MOVISTAR, destination=SUBSCRIBER[1:]) == []
