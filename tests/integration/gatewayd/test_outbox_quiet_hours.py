"""Quiet hours for single pushes, through the outbox and the real store (SQLite and PostgreSQL): a push
at 23:00 in Madrid is held to 09:00 (its history says so) and the claim leaves it until then; replies,
system messages and ban notices are never held, nor a push to a client who just wrote; a country's own
hours; a batch reads its clients' latest MOs in one statement as before."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.pool import Pool

from gatewayd.mo_message import dedup_key
from gatewayd.outbox import MTRequest, Outbox, OutboxSettings, Queued
from gatewayd.schema import upgrade
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage, MTStatusHistory
from gatewayd.store.mt.queue import RELEASED, queue_mts
from gatewayd.store.mt.values import NewMT
from gatewayd.store.repo_desk import last_mos_of_subscribers
from gatewayd.store.repo_mo import NewMO
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from routing.quiet_hours import QuietHours, QuietRule
from simulator.core import Simulator
from tests.waiting import eventually

from .helpers import MOVISTAR, MOVISTAR_SHORT_CODE, make_config, running_daemon
from .test_outbox import settings as plain_settings

pytestmark = pytest.mark.integration

MADRID = ZoneInfo("Europe/Madrid")
#: 23:00 in Madrid (UTC+1 in December); the quiet period ends at 09:00 local, 08:00 UTC.
NIGHT = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)
MORNING = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
SPAIN, BRITAIN, OTHER = "34600000003", "447700900123", "34600000004"


def quiet_settings() -> OutboxSettings:
    rule = QuietRule(
        default=QuietHours(time(22, 0), time(9, 0)),
        default_zone=MADRID,
        countries={"GB": QuietHours(time(21, 0), time(7, 0))},
        zones={"GB": ZoneInfo("Europe/London")},
        recent=timedelta(minutes=30),
    )
    plain = plain_settings()
    return OutboxSettings(plain.carriers, plain.services, plain.timezone, rule)


def mo_from(msisdn: str, at: datetime) -> NewMO:
    """An MO of the client to movistar's 997745 at ``at``."""
    return NewMO(
        dedup_key=dedup_key("movistar", msisdn, "997745", 0, uuid.uuid4().bytes),
        msisdn=msisdn,
        carrier="movistar",
        short_code="997745",
        text="hola",
        received_at=at,
        country="ES" if msisdn.startswith("34") else "GB",
    )


async def client_wrote(store: Store, msisdn: str, at: datetime) -> int:
    async with store.transaction() as session:
        (stored,) = await store.mos.ingest(session, [mo_from(msisdn, at)], at)
        return stored.subscriber.id


def outbox_of(store: Store, settings: OutboxSettings) -> Outbox:
    """The outbox as the daemon builds it: the store's own inserts (PostgreSQL's array statements)."""
    return Outbox(settings, sessions=store.sessions, inserts=store.mt_inserts)


async def queued(store: Store, outbox: Outbox, requests: list[MTRequest], now: datetime) -> list[Queued]:
    async with store.transaction() as session:
        batch = await outbox.queue_in(session, requests, now)
    assert all(isinstance(item, Queued) for item in batch.outcomes)
    return batch.queued


async def due_ids(store: Store, now: datetime) -> set[int]:
    async with store.transaction() as session:
        claimed = await store.claims.claim(session, "gw", now, limit=100, lease=30)
    return {mt.id for mt in claimed.mts}


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def test_a_push_at_23_in_madrid_is_held_to_09_and_leaves_then(store: Store) -> None:
    await client_wrote(store, SPAIN, NIGHT - timedelta(days=3))
    outbox = outbox_of(store, quiet_settings())
    (push,) = await queued(store, outbox, [MTRequest(SPAIN, "oferta")], NIGHT)
    assert push.held_until == MORNING

    async with store.sessions() as session:
        mt = await session.get(MTMessage, push.mt_id)
        history = (
            await session.scalars(select(MTStatusHistory).where(MTStatusHistory.mt_id == push.mt_id))
        ).all()
    assert mt is not None and aware(mt.next_attempt_at) == MORNING
    assert [line.detail for line in history] == [
        "held for quiet hours until 2026-12-07 09:00 Europe/Madrid (08:00 UTC)"
    ]
    assert await due_ids(store, NIGHT + timedelta(minutes=1)) == set()
    assert await due_ids(store, MORNING - timedelta(seconds=1)) == set()
    assert await due_ids(store, MORNING) == {push.mt_id}


async def test_replies_system_messages_and_ban_notices_are_never_held(store: Store) -> None:
    subscriber_id = await client_wrote(store, SPAIN, NIGHT - timedelta(days=3))
    outbox = outbox_of(store, quiet_settings())
    async with store.sessions() as session:
        last = (await last_mos_of_subscribers(session, [subscriber_id]))[subscriber_id]
    requests = [
        MTRequest(SPAIN, "respuesta", kind=MTKind.REPLY, mo=last, subscriber_id=subscriber_id),
        MTRequest(SPAIN, "aviso", kind=MTKind.SYSTEM),
        MTRequest(SPAIN, "baneado", kind=MTKind.BAN_NOTICE),
        MTRequest(SPAIN, "campaña", kind=MTKind.MASS),  # the campaign's sender decides for those
    ]
    items = await queued(store, outbox, requests, NIGHT)
    assert [item.held_until for item in items] == [None] * 4
    assert await due_ids(store, NIGHT) == {item.mt_id for item in items}


async def test_a_push_to_a_client_who_just_wrote_is_not_held(store: Store) -> None:
    await client_wrote(store, SPAIN, NIGHT - timedelta(minutes=10))
    outbox = outbox_of(store, quiet_settings())
    (push,) = await queued(store, outbox, [MTRequest(SPAIN, "¿sigues ahí?")], NIGHT)
    assert push.held_until is None
    (later,) = await queued(store, outbox, [MTRequest(SPAIN, "buenas noches")], NIGHT + timedelta(minutes=31))
    assert later.held_until == MORNING
    assert await due_ids(store, NIGHT + timedelta(minutes=31)) == {push.mt_id}


async def count_reads(store: Store, outbox: Outbox, requests: list[MTRequest], now: datetime) -> int:
    statements: list[str] = []

    def seen(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = store.sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await queued(store, outbox, requests, now)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return sum(statement.lstrip().upper().startswith("SELECT") for statement in statements)


async def test_a_batch_costs_the_same_reads_whatever_its_size(store: Store) -> None:
    """The hot path: the clients' latest MOs (routing and quiet hours alike) in one statement, no read
    per MT (SQLite's inserts with RETURNING go row by row whatever the outbox does: not counted)."""
    clients = [f"3460000{index:04d}" for index in range(20)]  # twenty clients, all asleep
    for msisdn in clients:
        await client_wrote(store, msisdn, NIGHT - timedelta(days=1))
    outbox = outbox_of(store, quiet_settings())
    small = await count_reads(store, outbox, [MTRequest(msisdn, "a") for msisdn in clients[:2]], NIGHT)
    large = await count_reads(store, outbox, [MTRequest(msisdn, "a") for msisdn in clients], NIGHT)
    assert small == large


async def test_a_country_with_its_own_hours(store: Store) -> None:
    await client_wrote(store, SPAIN, NIGHT - timedelta(days=1))
    await client_wrote(store, BRITAIN, NIGHT - timedelta(days=1))
    outbox = outbox_of(store, quiet_settings())
    both = [MTRequest(SPAIN, "a"), MTRequest(BRITAIN, "b")]
    # 20:30 UTC: 21:30 in Madrid (awake), 20:30 in London (awake until 21:00)
    early = await queued(store, outbox, both, NIGHT - timedelta(hours=1, minutes=30))
    assert [item.held_until for item in early] == [None, None]
    # 21:30 UTC: 22:30 in Madrid and 21:30 in London, both quiet; London's end at 07:00 its time
    late = await queued(store, outbox, both, NIGHT - timedelta(minutes=30))
    assert [item.held_until for item in late] == [MORNING, datetime(2026, 12, 7, 7, 0, tzinfo=UTC)]


async def test_by_day_a_batch_that_names_its_way_out_reads_no_mo_for_the_quiet_hours(store: Store) -> None:
    """The API's batch with carrier and source given needs no latest MO to route: by day (nobody in
    quiet hours) it must cost what it cost without quiet hours, not one more statement per batch."""
    await client_wrote(store, SPAIN, NIGHT - timedelta(days=1))
    named = [MTRequest(SPAIN, "a", carrier="movistar", source="997745")] * 5
    day = NIGHT + timedelta(hours=12)  # 11:00 in Madrid
    without = await count_reads(store, outbox_of(store, plain_settings()), named, day)
    with_rule = await count_reads(store, outbox_of(store, quiet_settings()), named, day)
    assert with_rule == without
    # at night the same batch reads the clients' latest MOs (did they just write?) and is held
    night = await count_reads(store, outbox_of(store, quiet_settings()), named, NIGHT)
    assert night == without + 1


async def test_a_held_push_leaves_when_its_client_writes_in_their_quiet_hours(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    """Through the daemon and the simulator: a push held for the night is released by the client's MO
    (they are awake: the push leaves now, not at 09:00 after the chat it preceded), its history says
    why; a held push of another client stays held."""
    now = datetime.now(UTC)
    hours = f"{(now.hour - 1) % 24:02d}:00-{(now.hour + 2) % 24:02d}:00"  # now, for two hours at least
    config = make_config(
        tmp_path, database_url, simulator, quiet_hours=hours, extra_daemon='timezone = "UTC"'
    )
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None
        sessions = daemon.sessions
        store = Store.for_engine(sessions.kw["bind"])
        for msisdn in (SPAIN, OTHER):  # known clients who last wrote yesterday
            await client_wrote(store, msisdn, now - timedelta(days=1))
        pushed = await daemon.queue_mt("+" + SPAIN, "¿hablamos?")
        other = await daemon.queue_mt("+" + OTHER, "buenas")
        async with sessions() as session:
            held = [await session.get(MTMessage, mt_id) for mt_id in (pushed, other)]
        assert all(mt is not None and aware(mt.next_attempt_at) > now + timedelta(hours=1) for mt in held)

        simulator.inject_mo(MOVISTAR, "+" + SPAIN, MOVISTAR_SHORT_CODE, "hola, ¿estás?")

        async def pushed_left() -> bool:
            return bool(simulator.store.query(carrier=MOVISTAR, destination=SPAIN))

        await eventually(pushed_left)
        async with sessions() as session:
            lines = (
                await session.scalars(
                    select(MTStatusHistory.detail)
                    .where(MTStatusHistory.mt_id == pushed)
                    .order_by(MTStatusHistory.id)
                )
            ).all()
            still = await session.get(MTMessage, other)
        assert lines[0] is not None and lines[0].startswith("held for quiet hours until ")
        assert lines[1] == RELEASED
        assert still is not None and still.status == MTStatus.QUEUED
        assert aware(still.next_attempt_at) > now + timedelta(hours=1)


async def test_what_a_client_s_mo_releases(store: Store) -> None:
    """The client's held push and the premium notice held with it (SYSTEM) leave together; a push
    already due, one already tried (a retry's backoff), another client's and a campaign's MT stay."""
    mine = await client_wrote(store, SPAIN, NIGHT - timedelta(days=1))
    theirs = await client_wrote(store, OTHER, NIGHT - timedelta(days=1))

    def mt(kind: MTKind, subscriber_id: int, not_before: datetime | None = MORNING) -> NewMT:
        destination = SPAIN if subscriber_id == mine else OTHER
        return NewMT(
            kind, "movistar", "997745", destination, "x", subscriber_id=subscriber_id, not_before=not_before
        )

    async with store.transaction() as session:
        push, notice, due, tried, other, mass = await queue_mts(
            session,
            [
                mt(MTKind.PUSH, mine),
                mt(MTKind.SYSTEM, mine),
                mt(MTKind.PUSH, mine, None),
                mt(MTKind.PUSH, mine),
                mt(MTKind.PUSH, theirs),
                mt(MTKind.MASS, mine),
            ],
            NIGHT,
        )
        await session.execute(update(MTMessage).where(MTMessage.id == tried).values(attempts=1))
    later = NIGHT + timedelta(hours=2)
    async with store.transaction() as session:
        released = await store.mt_inserts.release_held(session, [mine], later)
    assert released == [push, notice]
    async with store.sessions() as session:
        rows = {row.id: row for row in (await session.scalars(select(MTMessage))).all()}
    assert [aware(rows[mt_id].next_attempt_at) for mt_id in (push, notice)] == [later, later]
    assert [aware(rows[mt_id].updated_at) for mt_id in (push, notice)] == [later, later]
    assert [aware(rows[mt_id].next_attempt_at) for mt_id in (tried, other, mass)] == [MORNING] * 3
    assert aware(rows[due].next_attempt_at) == NIGHT
    async with store.sessions() as session:
        history = await session.execute(
            select(MTStatusHistory.mt_id, MTStatusHistory.status, MTStatusHistory.at, MTStatusHistory.detail)
            .where(MTStatusHistory.detail == RELEASED)
            .order_by(MTStatusHistory.id)
        )
        released_lines = [(mt_id, status, aware(at), detail) for mt_id, status, at, detail in history]
    # one line each for the two released, in id order; none for those left held
    assert released_lines == [
        (push, MTStatus.QUEUED, later, RELEASED),
        (notice, MTStatus.QUEUED, later, RELEASED),
    ]


async def test_the_mo_statement_says_which_writers_have_pushes_held(store: Store, database_url: str) -> None:
    """Asked about writers in their quiet hours, the PostgreSQL ingest says in its one statement which
    have pushes held (a push or notice never tried, due later; not a campaign's MT, not one already
    tried), so that the pipeline sends a release statement only for those; a writer not asked about,
    and every writer on SQLite (no such statement), is unknown: released as before."""
    mine = await client_wrote(store, SPAIN, NIGHT - timedelta(days=1))
    theirs = await client_wrote(store, OTHER, NIGHT - timedelta(days=1))
    unasked = "34600000005"
    await client_wrote(store, unasked, NIGHT - timedelta(days=1))

    def mt(kind: MTKind, subscriber_id: int, destination: str) -> NewMT:
        return NewMT(
            kind, "movistar", "997745", destination, "x", subscriber_id=subscriber_id, not_before=MORNING
        )

    async with store.transaction() as session:
        tried, _ = await queue_mts(
            session, [mt(MTKind.PUSH, theirs, OTHER), mt(MTKind.MASS, theirs, OTHER)], NIGHT
        )
        await session.execute(update(MTMessage).where(MTMessage.id == tried).values(attempts=1))
        await queue_mts(session, [mt(MTKind.SYSTEM, mine, SPAIN)], NIGHT)
    later = NIGHT + timedelta(hours=1)
    newcomer = "34600000006"
    async with store.transaction() as session:
        ingested = await store.mos.ingest(
            session,
            [mo_from(msisdn, later) for msisdn in (SPAIN, OTHER, newcomer, unasked)],
            later,
            {SPAIN, OTHER, newcomer},
        )
    held = [result.held_pushes for result in ingested]
    if database_url.startswith("postgresql"):
        assert held == [True, False, False, None]
    else:
        assert held == [None] * 4


async def test_a_batch_whose_writers_have_nothing_held_sends_no_release_statement(
    tmp_path: Path, pg_url: str, simulator: Simulator
) -> None:
    """Through the daemon, on PostgreSQL: all night every MO batch's writers are in their quiet hours;
    a batch whose writers have no push held sends no release statement (a round trip a batch), one
    whose writer has sends it and the push leaves."""
    now = datetime.now(UTC)
    hours = f"{(now.hour - 1) % 24:02d}:00-{(now.hour + 2) % 24:02d}:00"
    config = make_config(tmp_path, pg_url, simulator, quiet_hours=hours, extra_daemon='timezone = "UTC"')
    statements: list[tuple[str, tuple[object, ...]]] = []

    def log_queries(dbapi_connection: object, _: object) -> None:
        driver = dbapi_connection.driver_connection  # type: ignore[attr-defined]
        driver.add_query_logger(lambda record: statements.append((record.query, tuple(record.args or ()))))

    def releases() -> int:
        return len([sql for sql, _ in statements if "WITH released AS" in sql])

    event.listen(Pool, "connect", log_queries)
    try:
        async with running_daemon(config) as daemon:
            assert daemon.sessions is not None
            sessions = daemon.sessions
            store = Store.for_engine(sessions.kw["bind"])
            for msisdn in (SPAIN, OTHER):
                await client_wrote(store, msisdn, now - timedelta(days=1))
            pushed = await daemon.queue_mt("+" + SPAIN, "¿hablamos?")

            async def mo_stored(msisdn: str, count: int) -> bool:
                async with sessions() as session:
                    rows = await session.scalars(
                        select(MOMessage.id)
                        .join(Subscriber, Subscriber.id == MOMessage.subscriber_id)
                        .where(Subscriber.msisdn == msisdn)
                    )
                    return len(rows.all()) == count

            simulator.inject_mo(MOVISTAR, "+" + OTHER, MOVISTAR_SHORT_CODE, "hola")
            await eventually(lambda: mo_stored(OTHER, 2))
            assert releases() == 0
            # the daemon's MO statement asked about its writer, in their quiet hours (the test's own
            # ingests above asked about nobody)
            # ($9: the writers asked about; the statement sent alone has parameters after it)
            asked = [args[8] for sql, args in statements if "ANY($9::varchar[])" in sql and args[8]]
            assert asked == [[OTHER]]

            simulator.inject_mo(MOVISTAR, "+" + SPAIN, MOVISTAR_SHORT_CODE, "hola, ¿estás?")

            async def pushed_left() -> bool:
                return bool(simulator.store.query(carrier=MOVISTAR, destination=SPAIN))

            await eventually(pushed_left)
            assert releases() == 1
            async with sessions() as session:
                lines = await session.scalars(
                    select(MTStatusHistory.detail).where(MTStatusHistory.mt_id == pushed)
                )
                assert RELEASED in lines.all()
    finally:
        event.remove(Pool, "connect", log_queries)


async def test_a_push_queued_while_the_mo_statement_waits_for_its_client_is_released(pg_url: str) -> None:
    """The MO statement reads the held pushes as of its snapshot; a push for the writer committed while
    the statement waited on that writer's row (queuing it counts on the row) is not in that snapshot,
    and the statement says so all the same: the release statement is sent and frees it."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    store = Store.for_engine(engine)
    try:
        mine = await client_wrote(store, SPAIN, NIGHT - timedelta(days=1))
        later = NIGHT + timedelta(hours=1)
        row = mo_from(SPAIN, later)
        pusher = store.sessions()
        async with pusher.begin():
            (push,) = await queue_mts(
                pusher,
                [
                    NewMT(
                        MTKind.PUSH, "movistar", "997745", SPAIN, "x", subscriber_id=mine, not_before=MORNING
                    )
                ],
                NIGHT,
                store.mt_inserts,
            )

            async def writes() -> list[int]:
                async with store.transaction() as session:
                    (stored,) = await store.mos.ingest(session, [row], later, held_for={SPAIN})
                    assert stored.held_pushes is True
                    return await store.mt_inserts.release_held(session, [stored.subscriber.id], later)

            writing = asyncio.create_task(writes())

            async def waits_for_the_pusher() -> bool:
                async with engine.connect() as connection:
                    waiting = await connection.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                    )
                    return bool(waiting)

            await eventually(waits_for_the_pusher)
        await pusher.close()
        assert await writing == [push]
    finally:
        await engine.dispose()
