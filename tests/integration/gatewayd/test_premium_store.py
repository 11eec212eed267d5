"""Premium accounts in the store, on SQLite and PostgreSQL: the claim applies the recipient rule's
premium holds at send time (an MT queued after the hold began is refused, one queued before it goes),
and a billed MT that ends refused gives its charge back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from gatewayd.outbox import MTRequest, Outbox, OutboxSettings, Queued
from gatewayd.premium import PremiumSettings
from gatewayd.store.audit import AuditRecord
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.premium import PremiumAccount, credit_finals
from gatewayd.store.premium_months import PremiumMonth
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from routing.premium import Billed, PremiumState, SpendStep, StepAction, Terms
from routing.quiet_hours import QuietHours, QuietRule

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


async def test_the_claim_holds_billed_mts_queued_after_the_hold_began(store: Store) -> None:
    outbox = Outbox(SETTINGS)
    async with store.transaction() as session:
        subscriber = Subscriber(client_id="CPREMIUM1", msisdn="34600555111", carrier="vodafone", country="ES")
        session.add(subscriber)
        await session.flush()
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
        subscriber = Subscriber(client_id="CPREMIUM3", msisdn="34600555111", carrier="vodafone", country="ES")
        session.add(subscriber)
        await session.flush()
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
        subscriber = Subscriber(client_id="CPREMIUM4", msisdn="34600555111", carrier="vodafone", country="ES")
        session.add(subscriber)
        await session.flush()
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
        subscriber = Subscriber(client_id="CPREMIUM5", msisdn="34600555111", carrier="vodafone", country="ES")
        session.add(subscriber)
        await session.flush()
        subscriber_id = subscriber.id
    for text, when in (("uno", november), ("dos", november), ("tres", NOW), ("cuatro", NOW)):
        async with store.transaction() as session:
            await outbox.queue_in(session, [reply(subscriber_id, text)], when)

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
