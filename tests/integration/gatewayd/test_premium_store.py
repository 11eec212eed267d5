"""Premium accounts in the store, on SQLite and PostgreSQL: the claim applies the recipient rule's
premium holds at send time (an MT queued after the hold began is refused, one queued before it goes),
and a billed MT that ends refused gives its charge back."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.outbox import Batch, MTRequest, Outbox, OutboxSettings, Queued
from gatewayd.premium import ChatMO, Premium, PremiumSettings
from gatewayd.schema import upgrade
from gatewayd.store.audit import AuditRecord
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import MTKind, MTStatus, PartStatus
from gatewayd.store.errors import RefusalReason
from gatewayd.store.messages import MTMessage, MTPart
from gatewayd.store.mt.cancels import cancel_queued
from gatewayd.store.mt.recipients import Refusal
from gatewayd.store.premium import PremiumAccount, account_of, credit_finals
from gatewayd.store.premium_months import PremiumMonth
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from routing.premium import Billed, PremiumState, SpendStep, StepAction, Terms
from routing.quiet_hours import QuietHours, QuietRule
from tests.waiting import eventually

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TERMS = Terms(
    price_mo=0,
    price_mt=100,
    currency="EUR",
    provider="Acme",
    billed=Billed.MT,
    notice="{precio} {moneda}",
    acceptance=False,
    zone=ZoneInfo("Europe/Madrid"),
    steps=(SpendStep(200, StepAction.CONFIRM, "paused at {gasto}"),),
)
SETTINGS = OutboxSettings(
    premium=PremiumSettings(
        terms={"chat": TERMS}, services_by_code={"795500": "chat"}, countries={"chat": "ES"}
    )
)


def reply(subscriber_id: int, text: str) -> MTRequest:
    return MTRequest(
        to="34600555111",
        text=text,
        kind=MTKind.REPLY,
        carrier="vodafone",
        source="795500",
        subscriber_id=subscriber_id,
    )


async def noticed_client(session: AsyncSession, client_id: str, msisdn: str = "34600555111") -> Subscriber:
    """A client who wrote to the service and got its price notice (as the MO pipeline leaves them)."""
    subscriber = Subscriber(client_id=client_id, msisdn=msisdn, carrier="vodafone", country="ES")
    session.add(subscriber)
    await session.flush()
    session.add(
        PremiumAccount(
            subscriber_id=subscriber.id,
            service="chat",
            short_code="795500",
            noticed_at=NOW - timedelta(days=1),
            last_mo_at=NOW - timedelta(days=1),
        )
    )
    await session.flush()
    return subscriber


async def test_the_claim_holds_billed_mts_queued_after_the_hold_began(store: Store) -> None:
    outbox = Outbox(SETTINGS)
    async with store.transaction() as session:
        subscriber = await noticed_client(session, "CPREMIUM1")
        subscriber_id = subscriber.id
        first = (await outbox.queue_in(session, [reply(subscriber_id, "uno")], NOW)).queued
        # the second reaches 2.00: the confirm step pauses the chat after it, its notice follows
        second = await outbox.queue_in(session, [reply(subscriber_id, "dos")], NOW)
    assert [item.prepared.text for item in second.queued] == ["dos", "paused at 2.00"]
    async with store.transaction() as session:
        row = await session.get(PremiumAccount, (subscriber_id, "chat"))
        assert row is not None and row.state is PremiumState.PAUSED and row.spent == 200
        # an MT that slipped in after the pause began (another daemon, a race): queued while normal...
        late = MTMessage(
            kind=MTKind.REPLY,
            text="tres",
            carrier="vodafone",
            source="795500",
            destination="34600555111",
            subscriber_id=subscriber_id,
            charge=100,
            created_at=NOW + timedelta(seconds=1),
            next_attempt_at=NOW,
        )
        session.add(late)
        await session.execute(update(PremiumAccount).values(spent=PremiumAccount.spent + 100))
        await session.flush()
        late_id = late.id
    async with store.transaction() as session:
        claimed = await store.claims.claim(
            session, "test", NOW + timedelta(seconds=2), limit=10, lease=60, billed_short_codes={"795500"}
        )
    ids = [item.mt_id for item in first + second.queued if isinstance(item, Queued)]
    # queued before the pause began: the reply that crossed the step and its notice go
    assert sorted(mt.id for mt in claimed.mts) == sorted(ids)
    assert claimed.refused == [(late_id, "client has not confirmed the spend")]
    async with store.transaction() as session:
        refused = await session.get(MTMessage, late_id)
        row = await session.get(PremiumAccount, (subscriber_id, "chat"))
    assert refused is not None and refused.status is MTStatus.REFUSED
    assert row is not None and row.spent == 200  # the refused MT's charge given back


async def test_without_billed_short_codes_the_claim_reads_no_holds(store: Store) -> None:
    """A deployment without billing: the claim checks no premium hold (and pays no statement for it)."""
    async with store.transaction() as session:
        subscriber = Subscriber(client_id="CPREMIUM2", msisdn="34600555112", carrier="vodafone", country="ES")
        session.add(subscriber)
        await session.flush()
        session.add(
            PremiumAccount(
                subscriber_id=subscriber.id,
                service="chat",
                short_code="795500",
                state=PremiumState.CAPPED,
                month="2026-12",
                spent=4000,
                steps_passed=1,
                held_until=NOW + timedelta(days=20),
            )
        )
        await Outbox(OutboxSettings()).queue_in(session, [reply(subscriber.id, "hola")], NOW)
    async with store.transaction() as session:
        claimed = await store.claims.claim(session, "test", NOW, limit=10, lease=60)
        mts = (await session.execute(select(MTMessage))).scalars().all()
    assert len(claimed.mts) == 1 and claimed.refused == [] and mts[0].charge is None


async def test_a_step_notice_that_cannot_be_sent_leaves_the_reply_queued_and_is_audited(store: Store) -> None:
    too_long = replace(TERMS, steps=(SpendStep(100, StepAction.NOTIFY, "x" * 2000),))
    premium = PremiumSettings(
        terms={"chat": too_long}, services_by_code={"795500": "chat"}, countries={"chat": "ES"}
    )
    async with store.transaction() as session:
        subscriber = await noticed_client(session, "CPREMIUM3")
        batch = await Outbox(OutboxSettings(premium=premium)).queue_in(
            session, [reply(subscriber.id, "uno")], NOW
        )
    assert [item.prepared.text for item in batch.queued] == ["uno"]
    async with store.transaction() as session:
        records = (await session.execute(select(AuditRecord))).scalars().all()
        row = await session.get(PremiumAccount, (subscriber.id, "chat"))
    assert [(record.action, record.details["mt_id"]) for record in records] == [("premium.notify", None)]
    assert row is not None and row.spent == 100 and row.steps_passed == 1


async def test_the_notice_of_a_push_held_for_quiet_hours_waits_with_it(store: Store) -> None:
    """A billed push queued in the client's quiet hours is held till they end (charged now: the cap
    counts what waits); the step notice it crosses is held with it, not sent in the night."""
    hours = QuietHours(time((NOW.hour - 1) % 24), time((NOW.hour + 2) % 24))
    ends = NOW.replace(minute=0) + timedelta(hours=2)
    terms = replace(TERMS, steps=(SpendStep(100, StepAction.NOTIFY, "llevas {gasto}"),))
    premium = PremiumSettings(
        terms={"chat": terms}, services_by_code={"795500": "chat"}, countries={"chat": "ES"}
    )
    settings = OutboxSettings(quiet=QuietRule(default=hours, default_zone=ZoneInfo("UTC")), premium=premium)
    async with store.transaction() as session:
        subscriber = await noticed_client(session, "CPREMIUM4")
        push = replace(reply(subscriber.id, "buenas noches"), kind=MTKind.PUSH)
        batch = await Outbox(settings).queue_in(session, [push], NOW)
    assert [(item.prepared.text, item.held_until) for item in batch.queued] == [
        ("buenas noches", ends),
        ("llevas 1.00", ends),
    ]
    async with store.transaction() as session:
        mts = (await session.execute(select(MTMessage).order_by(MTMessage.id))).scalars().all()
    assert [(mt.kind, mt.next_attempt_at, mt.charge) for mt in mts] == [
        (MTKind.PUSH, ends, 100),
        (MTKind.SYSTEM, ends, None),
    ]


CAP_AT_TWO = replace(TERMS, steps=(SpendStep(200, StepAction.CAP, "tope {gasto}"),))


async def test_two_replies_racing_at_the_cap_on_postgresql_only_one_passes(pg_url: str) -> None:
    """Two operators answer the same client at once with 1.00 left before the cap: the second
    transaction waits on the first's lock of the client's account and reads the spend it wrote, so
    one reply goes (reaching the cap) and the other is refused; the spend is counted once each."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    store = Store.for_engine(engine)
    premium = PremiumSettings(
        terms={"chat": CAP_AT_TWO}, services_by_code={"795500": "chat"}, countries={"chat": "ES"}
    )
    outbox = Outbox(OutboxSettings(premium=premium))
    try:
        async with store.transaction() as session:
            subscriber_id = (await noticed_client(session, "CPREMIUM5")).id
            await outbox.queue_in(session, [reply(subscriber_id, "uno")], NOW)  # 1.00 spent
        first_holds_the_lock = asyncio.Event()

        async def second() -> Batch:
            await first_holds_the_lock.wait()
            async with store.transaction() as session:
                return await outbox.queue_in(session, [reply(subscriber_id, "segunda")], NOW)

        async def blocked_on_a_lock() -> bool:
            async with engine.connect() as connection:
                waiting = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    )
                )
            return bool(waiting)

        task = asyncio.create_task(second())
        async with store.transaction() as session:
            first = await outbox.queue_in(session, [reply(subscriber_id, "primera")], NOW)
            first_holds_the_lock.set()
            await eventually(blocked_on_a_lock, what="the second reply waiting on the first's lock")
        later = await task
        assert [item.prepared.text for item in first.queued] == ["primera", "tope 2.00"]
        assert later.queued == []
        assert [
            (outcome.reason, outcome.detail) for outcome in later.outcomes if isinstance(outcome, Refusal)
        ] == [(RefusalReason.SPEND_CAP, "client reached the month's spend cap")]
        async with store.transaction() as session:
            row = await session.get(PremiumAccount, (subscriber_id, "chat"))
            charges = (
                await session.execute(select(MTMessage.charge).where(MTMessage.charge.is_not(None)))
            ).all()
        assert row is not None and row.spent == 200 and row.state is PremiumState.CAPPED
        assert sum(charge for (charge,) in charges) == 200
    finally:
        await engine.dispose()


async def test_the_lock_reads_the_account_afresh_after_an_earlier_read_on_postgresql(pg_url: str) -> None:
    """A session that read the account (the desk's card) and then queues a reply charges the spend
    as the lock finds it, not as it read it before another transaction added to it."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    store = Store.for_engine(engine)
    premium = PremiumSettings(
        terms={"chat": TERMS}, services_by_code={"795500": "chat"}, countries={"chat": "ES"}
    )
    outbox = Outbox(OutboxSettings(premium=premium))
    try:
        async with store.transaction() as session:
            subscriber_id = (await noticed_client(session, "CPREMIUM6")).id
        async with store.transaction() as session:
            card = await account_of(session, subscriber_id, "chat")  # the desk reads the card...
            assert card is not None and card.spent == 0
            async with store.transaction() as other:  # ...another operator's reply commits meanwhile
                await outbox.queue_in(other, [reply(subscriber_id, "otra")], NOW)
            await outbox.queue_in(session, [reply(subscriber_id, "mía")], NOW)
        async with store.transaction() as session:
            row = await session.get(PremiumAccount, (subscriber_id, "chat"))
        assert row is not None and row.spent == 200 and row.state is PremiumState.PAUSED
    finally:
        await engine.dispose()


async def test_a_cancelled_billed_mt_gives_its_charge_back(store: Store) -> None:
    """A mass push withdrawn while queued never reached the client: its charge leaves their spend."""
    outbox = Outbox(SETTINGS)
    async with store.transaction() as session:
        subscriber_id = (await noticed_client(session, "CPREMIUM7")).id
        mass = replace(reply(subscriber_id, "oferta"), kind=MTKind.MASS)
        queued = (await outbox.queue_in(session, [mass], NOW)).queued
    mt_id = queued[0].mt_id
    async with store.transaction() as session:
        charged = await account_of(session, subscriber_id, "chat")
        assert charged is not None and charged.spent == 100
        changes = await cancel_queued(
            session, select(MTMessage.id).where(MTMessage.id == mt_id), NOW, reason="campaign cancelled"
        )
    assert [change.status for change in changes] == [MTStatus.CANCELLED]
    async with store.transaction() as session:
        row = await session.get(PremiumAccount, (subscriber_id, "chat"))
    assert row is not None and row.spent == 0


async def test_no_billed_mt_to_a_client_never_sent_the_price_notice(store: Store) -> None:
    """Without acceptance too: a push to a known client who never wrote to the service, or to a number
    nobody knows, is refused (and charges nothing), the service's free SYSTEM MTs still go."""
    outbox = Outbox(SETTINGS)  # acceptance = false
    async with store.transaction() as session:
        subscriber = Subscriber(client_id="CPREMIUM8", msisdn="34600555118", carrier="vodafone", country="ES")
        session.add(subscriber)
        await session.flush()
        known = replace(reply(subscriber.id, "hola"), kind=MTKind.PUSH, to="34600555118")
        unknown = replace(reply(0, "hola"), kind=MTKind.PUSH, to="34600555119", subscriber_id=None)
        system = replace(known, kind=MTKind.SYSTEM)
        batch = await outbox.queue_in(session, [known, unknown, system], NOW)
    assert [getattr(outcome, "reason", "queued") for outcome in batch.outcomes] == [
        RefusalReason.AWAITING_ACCEPTANCE,
        RefusalReason.AWAITING_ACCEPTANCE,
        "queued",
    ]
    async with store.transaction() as session:
        charges = (await session.execute(select(MTMessage.kind, MTMessage.charge))).all()
    assert [(kind, charge) for kind, charge in charges] == [(MTKind.SYSTEM, None)]


async def test_a_long_reply_is_charged_per_part(store: Store) -> None:
    outbox = Outbox(SETTINGS)
    async with store.transaction() as session:
        subscriber_id = (await noticed_client(session, "CPREMIUM9")).id
        batch = await outbox.queue_in(session, [reply(subscriber_id, "x" * 200)], NOW)  # 2 GSM segments
    assert len(batch.queued) == 2  # the reply and the confirm step's notice (2.00 reached)
    async with store.transaction() as session:
        mt = await session.get(MTMessage, batch.queued[0].mt_id)
        row = await session.get(PremiumAccount, (subscriber_id, "chat"))
    assert mt is not None and mt.charge == 200
    assert row is not None and row.spent == 200 and row.state is PremiumState.PAUSED


async def test_a_clients_mo_and_a_reply_racing_on_postgresql_do_not_deadlock(pg_url: str) -> None:
    """The MO pipeline holds the client's subscriber row (its upsert) when it locks their account; the
    outbox takes the same two in the same order, so a reply queued meanwhile waits for the MO's
    transaction instead of locking the account first and deadlocking with it."""
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    store = Store.for_engine(engine)
    premium = PremiumSettings(
        terms={"chat": TERMS}, services_by_code={"795500": "chat"}, countries={"chat": "ES"}
    )
    outbox = Outbox(OutboxSettings(premium=premium))
    try:
        async with store.transaction() as session:
            subscriber = await noticed_client(session, "CPREMIUM10")
            subscriber_id, client_id = subscriber.id, subscriber.client_id
        mo_holds_the_client = asyncio.Event()

        async def operator() -> Batch:
            await mo_holds_the_client.wait()
            async with store.transaction() as session:
                return await outbox.queue_in(session, [reply(subscriber_id, "hola")], NOW)

        async def blocked_on_a_lock() -> bool:
            async with engine.connect() as connection:
                waiting = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    )
                )
            return bool(waiting)

        task = asyncio.create_task(operator())
        async with store.transaction() as session:
            # the MO pipeline's upsert of the client's row, then its premium step
            await session.execute(
                update(Subscriber)
                .where(Subscriber.id == subscriber_id)
                .values(mo_count=Subscriber.mo_count + 1)
            )
            mo_holds_the_client.set()
            await eventually(blocked_on_a_lock, what="the reply waiting on the MO's transaction")
            mo = ChatMO(0, subscriber_id, client_id, "chat", "795500", "¿sigues?", "ES", "vodafone")
            assert await Premium(premium).after_mos(session, [mo], NOW) == []
        batch = await asyncio.wait_for(task, 30)
        assert [item.prepared.text for item in batch.queued] == ["hola"]
        async with store.transaction() as session:
            row = await session.get(PremiumAccount, (subscriber_id, "chat"))
        assert row is not None and row.spent == 100 and row.last_mo_at == NOW
    finally:
        await engine.dispose()


async def test_a_long_mt_that_fails_after_a_segment_went_keeps_that_segments_charge(store: Store) -> None:
    """Two segments charged 2.00; the first delivered, the second undeliverable: the MT fails, but a
    segment reached the phone (the carrier may bill it), so nothing is given back: the spend may be
    overstated, never understated."""
    outbox = Outbox(SETTINGS)
    async with store.transaction() as session:
        subscriber_id = (await noticed_client(session, "CPREMIUM11")).id
        batch = await outbox.queue_in(session, [reply(subscriber_id, "y" * 200)], NOW)
    mt_id = batch.queued[0].mt_id
    async with store.transaction() as session:
        await session.execute(update(MTMessage).where(MTMessage.id == mt_id).values(segments=2))
        for part_no, status in ((1, PartStatus.DELIVERED), (2, PartStatus.UNDELIVERABLE)):
            session.add(
                MTPart(mt_id=mt_id, part_no=part_no, carrier="vodafone", status=status, submitted_at=NOW)
            )
        await session.flush()
        mt = await session.get(MTMessage, mt_id)
        assert mt is not None and mt.charge == 200
        await credit_finals(session, [(mt, MTStatus.FAILED)])
        spent = await session.scalar(
            select(PremiumAccount.spent).where(PremiumAccount.subscriber_id == subscriber_id)
        )
    assert spent == 200


async def test_every_month_is_kept_and_a_charge_given_back_lowers_its_own_month(store: Store) -> None:
    """The account keeps the current month; ``premium_months`` keeps November when the client is billed
    in December. A December charge given back lowers December; a November one, given back once the
    account is in December, lowers nothing (a closed month is not reopened, here as in the account)."""
    november = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    settings = OutboxSettings(
        premium=PremiumSettings(
            terms={"chat": replace(TERMS, steps=())},
            services_by_code={"795500": "chat"},
            countries={"chat": "ES"},
        )
    )
    outbox = Outbox(settings)
    async with store.transaction() as session:
        subscriber_id = (await noticed_client(session, "CPREMIUM9")).id
    for words, when in (("uno", november), ("dos", november), ("tres", NOW), ("cuatro", NOW)):
        async with store.transaction() as session:
            await outbox.queue_in(session, [reply(subscriber_id, words)], when)

    async def spend() -> tuple[int, dict[str, int]]:
        async with store.transaction() as session:
            account = await session.get(PremiumAccount, (subscriber_id, "chat"))
            months = await session.execute(
                select(PremiumMonth.month, PremiumMonth.spent).where(
                    PremiumMonth.subscriber_id == subscriber_id, PremiumMonth.service == "chat"
                )
            )
            assert account is not None
            return account.spent, {month: spent for month, spent in months}

    assert await spend() == (200, {"2026-11": 200, "2026-12": 200})
    async with store.transaction() as session:
        mts = {mt.text: mt for mt in (await session.execute(select(MTMessage))).scalars()}
        await credit_finals(session, [(mts["tres"], MTStatus.FAILED), (mts["uno"], MTStatus.EXPIRED)])
    assert await spend() == (100, {"2026-11": 200, "2026-12": 100})
