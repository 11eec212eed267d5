"""The reports' rollups, kept by the real pipelines (MO ingest, outbox, claims, receipts from the
simulator), equal a recount from the message tables; ``rebuild`` gives the same figures; concurrent
upserts of one key neither deadlock nor lose counts."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text

from echat.cli import main
from gatewayd.outbox import MTRequest
from gatewayd.schema import upgrade
from gatewayd.store.accounts import Account, Role
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.mt.values import NewMT
from gatewayd.store.repo_mo import NewMO
from gatewayd.store.repo_subscribers import get_subscriber_by_msisdn, set_bans
from gatewayd.store.rollups import (
    FINAL_MEASURE,
    OPERATOR_MEASURES,
    TRAFFIC_MEASURES,
    OperatorFirstResponse,
    OperatorHourly,
    Tally,
    TrafficHourly,
    hour_of,
    pending,
    response_floor,
    traffic_key,
)
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    VODAFONE,
    VODAFONE_SHORT_CODE,
    make_config,
    running_daemon,
)
from tests.waiting import eventually

ANA = "+34600111001"
BEA = "+34600111002"
CARLOS = "+34700111003"
DANI = "+34600111004"

Figures = tuple[
    dict[tuple[object, ...], dict[str, int]],
    dict[tuple[object, ...], dict[str, int]],
    dict[tuple[object, ...], int],
]


async def rollups(store: Store) -> Figures:
    """What the rollup tables hold, their shards summed (counters that are 0 left out)."""
    traffic: dict[tuple[object, ...], Counter[str]] = {}
    operators: dict[tuple[object, ...], Counter[str]] = {}
    responses: Counter[tuple[object, ...]] = Counter()
    async with store.sessions() as session:
        for row in (await session.scalars(select(TrafficHourly))).all():
            key = (row.hour, row.service, row.short_code, row.carrier, row.country)
            traffic.setdefault(key, Counter()).update({name: getattr(row, name) for name in TRAFFIC_MEASURES})
        for row in (await session.scalars(select(OperatorHourly))).all():
            counts = {name: getattr(row, name) for name in OPERATOR_MEASURES}
            operators.setdefault((row.hour, row.operator_id), Counter()).update(counts)
        for row in (await session.scalars(select(OperatorFirstResponse))).all():
            responses[(row.hour, row.operator_id, row.over_s)] += row.replies
    return (
        {key: {k: v for k, v in value.items() if v} for key, value in traffic.items() if +value},
        {key: {k: v for k, v in value.items() if v} for key, value in operators.items() if +value},
        dict(responses),
    )


async def recount(store: Store) -> Figures:
    """The same figures counted again, in Python, from the message tables."""
    tally = Tally.empty()
    async with store.sessions() as session:
        mos = (await session.scalars(select(MOMessage).order_by(MOMessage.received_at, MOMessage.id))).all()
        mts = (await session.scalars(select(MTMessage).order_by(MTMessage.created_at, MTMessage.id))).all()
        subscribers = {s.id: s for s in (await session.scalars(select(Subscriber))).all()}
        services = {c.id: c.service for c in (await session.scalars(select(Conversation))).all()}
    first_mo: set[int] = set()
    for mo in mos:
        key = traffic_key(mo.received_at, mo.service, mo.short_code, mo.carrier, mo.country)
        tally.add(key, "mo")
        if mo.subscriber_id not in first_mo:
            first_mo.add(mo.subscriber_id)
            tally.add(key, "new_clients")
    for subscriber in subscribers.values():
        if subscriber.opted_out and subscriber.opted_out_at is not None:
            asked = [
                mo
                for mo in mos
                if mo.subscriber_id == subscriber.id and mo.received_at <= subscriber.opted_out_at
            ]
            mo = asked[-1]
            tally.add(
                traffic_key(subscriber.opted_out_at, mo.service, mo.short_code, mo.carrier, mo.country),
                "opt_outs",
            )
    last_reply: dict[int, datetime] = {}
    handled: set[tuple[int, int]] = set()
    for mt in mts:
        subscriber = subscribers.get(mt.subscriber_id) if mt.subscriber_id is not None else None
        service = services.get(mt.conversation_id) if mt.conversation_id is not None else None
        key = traffic_key(
            mt.created_at, service, mt.source, mt.carrier, subscriber.country if subscriber else None
        )
        tally.add(key, "mt")
        if mt.status in FINAL_MEASURE:
            tally.add(key, FINAL_MEASURE[mt.status])
        hour = hour_of(mt.created_at)
        if mt.operator_id is not None:
            tally.add_operator((hour, mt.operator_id), "mts_sent")
            if mt.status is MTStatus.DELIVERED:
                tally.add_operator((hour, mt.operator_id), "mts_delivered")
        if mt.kind is not MTKind.REPLY or mt.conversation_id is None:
            continue
        previous = last_reply.get(mt.conversation_id)
        last_reply[mt.conversation_id] = mt.created_at
        if mt.operator_id is None:
            continue
        if (mt.conversation_id, mt.operator_id) not in handled:
            handled.add((mt.conversation_id, mt.operator_id))
            tally.add_operator((hour, mt.operator_id), "conversations")
        waited = [
            mo
            for mo in mos
            if mo.conversation_id == mt.conversation_id
            and mo.received_at <= mt.created_at
            and (previous is None or mo.received_at > previous)
        ]
        if waited:
            tally.add_operator((hour, mt.operator_id), "mos_answered", len(waited))
            seconds = (mt.created_at - waited[0].received_at).total_seconds()
            tally.responses[(hour, mt.operator_id, response_floor(seconds))] += 1
    return (
        {key: {k: v for k, v in counts.items() if v} for key, counts in tally.traffic.items()},
        {key: {k: v for k, v in counts.items() if v} for key, counts in tally.operators.items()},
        dict(tally.responses),
    )


async def count(store: Store, statement: object) -> int:
    async with store.sessions() as session:
        return int((await session.execute(statement)).scalar_one())  # type: ignore[call-overload]


async def test_rollups_equal_a_recount_and_a_rebuild(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, database_url, simulator)
    engine = create_engine(database_url)
    store = Store.for_engine(engine)
    async with running_daemon(config) as daemon:
        assert daemon.outbox is not None
        async with store.transaction() as session:
            operator = Account(username="ana.op", display_name="Ana", password_hash="-", role=Role.OPERATOR)
            session.add(operator)
        simulator.inject_mo(MOVISTAR, ANA, MOVISTAR_SHORT_CODE, "hola")
        simulator.inject_mo(MOVISTAR, ANA, MOVISTAR_SHORT_CODE, "¿hay alguien?")
        simulator.inject_mo(MOVISTAR, BEA, MOVISTAR_SHORT_CODE, "buenas")
        simulator.inject_mo(VODAFONE, CARLOS, VODAFONE_SHORT_CODE, "hola")
        simulator.inject_mo(MOVISTAR, DANI, MOVISTAR_SHORT_CODE, "baja")

        async def stored(n: int) -> bool:
            return await count(store, select(func.count()).select_from(MOMessage)) == n

        await eventually(lambda: stored(5))
        async with store.sessions() as session:
            conversations = {
                (await session.get(Subscriber, c.subscriber_id)).msisdn: c.id  # type: ignore[union-attr]
                for c in (await session.scalars(select(Conversation))).all()
            }

        async def reply(msisdn: str, text: str) -> None:
            assert daemon.outbox is not None
            await daemon.outbox.queue(
                MTRequest(
                    to=msisdn,
                    text=text,
                    kind=MTKind.REPLY,
                    conversation_id=conversations[msisdn[1:]],
                    operator_id=operator.id,
                )
            )

        await reply(ANA, "Hola Ana")  # answers two MOs, a conversation handled
        await reply(ANA, "¿Sigues?")  # answers nothing new
        await reply(CARLOS, "Hola Carlos")
        simulator.inject_mo(MOVISTAR, ANA, MOVISTAR_SHORT_CODE, "sí")
        await eventually(lambda: stored(6))
        await reply(ANA, "Perfecto")  # answers one more MO, the same conversation
        # a push queued while allowed, refused by the sender after a ban
        async with store.transaction() as session:
            now = datetime.now(UTC)
            bea = await get_subscriber_by_msisdn(session, BEA[1:])
            assert bea is not None
            await queue_mts(
                session,
                [
                    NewMT(
                        kind=MTKind.PUSH,
                        carrier=MOVISTAR,
                        source=MOVISTAR_SHORT_CODE,
                        destination=BEA[1:],
                        text="¿Qué tal?",
                        operator_id=operator.id,
                        not_before=now + timedelta(seconds=0.5),
                    )
                ],
                now,
            )
            await set_bans(session, [bea.client_id], reason="abuse", now=now)
        unfinished = (
            select(func.count())
            .select_from(MTMessage)
            .where(MTMessage.status.notin_([MTStatus.DELIVERED, MTStatus.REFUSED, MTStatus.FAILED]))
        )

        async def all_final() -> bool:
            return await count(store, unfinished) == 0

        await eventually(all_final)
        incremental = await rollups(store)
        expected = await recount(store)
        assert incremental == expected
        traffic, operators, responses = incremental
        assert sum(c.get("mo", 0) for c in traffic.values()) == 6
        assert sum(c.get("new_clients", 0) for c in traffic.values()) == 4
        assert sum(c.get("opt_outs", 0) for c in traffic.values()) == 1
        assert sum(c.get("mt_refused", 0) for c in traffic.values()) == 1
        assert sum(c.get("mt_delivered", 0) for c in traffic.values()) == 5  # 4 replies + BAJA's answer
        [figures] = operators.values()
        assert figures == {"conversations": 2, "mos_answered": 4, "mts_sent": 5, "mts_delivered": 4}
        assert sum(responses.values()) == 3
        # rebuilt from scratch, and again from today: the same figures
        async with store.transaction() as session:
            await store.rollup_rebuild.rebuild(session)
        assert await rollups(store) == incremental
        async with store.transaction() as session:
            await store.rollup_rebuild.rebuild(session, datetime.now(UTC) - timedelta(hours=1))
        assert await rollups(store) == incremental
    await engine.dispose()


async def test_concurrent_transactions_counting_the_same_keys_lose_nothing(pg_url: str) -> None:
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    store = Store.for_engine(engine)
    hour = hour_of(datetime.now(UTC))
    keys = [traffic_key(hour, "chat", code, "movistar", "ES") for code in ("997745", "795500", "222")]
    try:

        async def writer(order: list[int]) -> None:
            for _ in range(20):
                async with store.transaction() as session:
                    # as two pipeline calls in one transaction, each counting its own key, with I/O between
                    for index in order:
                        pending(session).add(keys[index], "mo")
                        await session.execute(select(1))
                    pending(session).add_operator((hour, 1), "mts_sent")

        # opposite orders of arrival: written at commit, sorted, so they queue rather than deadlock
        await asyncio.gather(*(writer([0, 1, 2] if n % 2 else [2, 1, 0]) for n in range(6)))
        async with store.sessions() as session:
            by_code = select(TrafficHourly.short_code, func.sum(TrafficHourly.mo)).group_by(
                TrafficHourly.short_code
            )
            mos = {code: int(count) for code, count in await session.execute(by_code)}
            sent = (await session.execute(select(func.sum(OperatorHourly.mts_sent)))).scalar_one()
            shards = (await session.execute(select(func.count(TrafficHourly.shard.distinct())))).scalar_one()
        assert mos == {"997745": 120, "795500": 120, "222": 120}
        assert sent == 120
        assert shards > 1  # concurrent connections added to rows of their own
    finally:
        await engine.dispose()


async def test_counts_added_in_a_savepoint_rolled_back_are_not_written(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    store = Store.for_engine(engine)
    key = traffic_key(datetime.now(UTC), "chat", "997745", "movistar", "ES")
    try:
        async with store.transaction() as session:
            pending(session).add(key, "mo")
            with pytest.raises(ValueError):
                async with session.begin_nested():
                    pending(session).add(key, "mo", 10)
                    raise ValueError
            async with session.begin_nested():
                pending(session).add(key, "mo", 100)
        traffic, _, _ = await rollups(store)
        assert traffic == {key: {"mo": 101}}
    finally:
        await engine.dispose()


async def test_two_replies_racing_in_one_waiting_conversation_count_it_once(pg_url: str) -> None:
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    store = Store.for_engine(engine)
    now = datetime.now(UTC)
    msisdn = ANA[1:]
    try:
        async with store.transaction() as session:
            operator = Account(username="ana.op", display_name="Ana", password_hash="-", role=Role.OPERATOR)
            session.add(operator)
            mos = [
                NewMO(f"w{n}", msisdn, MOVISTAR, MOVISTAR_SHORT_CODE, "hola", now, "ES", service="chat")
                for n in range(2)
            ]
            await store.mos.ingest(session, mos, now)
        async with store.sessions() as session:
            conversation = (await session.scalars(select(Conversation))).one()
        assert conversation.waiting_since is not None

        def reply(words: str) -> NewMT:
            return NewMT(
                kind=MTKind.REPLY,
                carrier=MOVISTAR,
                source=MOVISTAR_SHORT_CODE,
                destination=msisdn,
                text=words,
                conversation_id=conversation.id,
                operator_id=operator.id,
            )

        async def second_reply() -> None:
            async with store.transaction() as session:
                await queue_mts(session, [reply("¿Sigues?")], datetime.now(UTC))

        async def one_waits_on_a_lock() -> bool:
            async with store.sessions() as session:
                waiting = text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
                return bool((await session.execute(waiting)).scalar_one())

        # the second reply is queued while the first's transaction is still open
        async with store.transaction() as session:
            await queue_mts(session, [reply("Hola")], datetime.now(UTC))
            second = asyncio.create_task(second_reply())
            await eventually(one_waits_on_a_lock)
        await second
        _, operators, responses = await rollups(store)
        [figures] = operators.values()
        assert figures == {"conversations": 1, "mos_answered": 2, "mts_sent": 2}
        assert sum(responses.values()) == 1
    finally:
        await engine.dispose()


def test_gatewayd_reports_rebuild_counts_traffic_stored_before_the_rollups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'echat.db'}"
    config = tmp_path / "gatewayd.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    received = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)

    async def store_traffic_then_forget_its_rollups() -> Figures:
        await upgrade(url)
        engine = create_engine(url)
        store = Store.for_engine(engine)
        try:
            async with store.transaction() as session:
                await store.mos.ingest(
                    session,
                    [
                        NewMO(
                            f"k{n}",
                            msisdn,
                            MOVISTAR,
                            MOVISTAR_SHORT_CODE,
                            "hola",
                            received,
                            "ES",
                            service="chat",
                        )
                        for n, msisdn in enumerate(("34600111001", "34600111001", "34600111002"))
                    ],
                    received,
                )
            expected = await rollups(store)
            async with store.transaction() as session:  # as a database from before migration 0014 has it
                await session.execute(delete(TrafficHourly))
            assert await rollups(store) == ({}, {}, {})
            return expected
        finally:
            await engine.dispose()

    async def figures() -> Figures:
        engine = create_engine(url)
        try:
            return await rollups(Store.for_engine(engine))
        finally:
            await engine.dispose()

    expected = asyncio.run(store_traffic_then_forget_its_rollups())
    [(key, counts)] = expected[0].items()
    assert key[0] == datetime(2026, 11, 30, 23, tzinfo=UTC) and counts == {"mo": 3, "new_clients": 2}
    assert main(["reports", "rebuild", "--config", str(config), "--since", "2026-12-01"]) == 0
    assert "rollups rebuilt from 2026-12-01 00:00 UTC" in capsys.readouterr().out
    assert asyncio.run(figures()) == ({}, {}, {})  # the traffic is of the day before
    assert main(["reports", "rebuild", "--config", str(config)]) == 0
    assert asyncio.run(figures()) == expected
    assert main(["reports", "rebuild", "--config", str(config)]) == 0  # idempotent
    assert asyncio.run(figures()) == expected
    with pytest.raises(SystemExit):
        main(["reports", "rebuild", "--config", str(config), "--since", "yesterday"])
    assert "invalid fromisoformat value" in capsys.readouterr().err
