"""The mass push through the real store (SQLite and PostgreSQL): the audience against a hand-built
history, the snapshot, the sender's feeding through the outbox (pace, carriers' room, quiet hours),
pause / resume / cancel, restarts and two senders at once, and replies leaving before campaign MTs."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text, update

from gatewayd.campaigns import CAMPAIGN_PRIORITY, CampaignSender, CampaignSettings
from gatewayd.outbox import MTRequest, Outbox
from gatewayd.schema import upgrade
from gatewayd.store.campaigns import Campaign, CampaignRecipient, CampaignStatus, RecipientState
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.mt.claims import requeue_mts
from gatewayd.store.repo_campaigns import (
    FOLLOWED_AFTER_FINISH,
    AudienceSpec,
    TooSlow,
    audience,
    audience_sample,
    audience_size,
    cancel_campaign_mts,
    change_status,
    time_limit,
)
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from routing.quiet_hours import QuietHours, QuietRule
from tests.integration.gatewayd.helpers_campaigns import T0, answered_history, new_campaign, outbox_settings

pytestmark = pytest.mark.integration

NOW = T0 + timedelta(hours=1)
EVERYONE = {"last", "middle", "reset", "voda", "mexico", "new"}


def sender(store: Store, **options: object) -> CampaignSender:
    values: dict[str, object] = {
        "carrier_tps": {"movistar": 1000.0, "vodafone": 1000.0},
        **options,
    }
    return CampaignSender(store, Outbox(outbox_settings()), CampaignSettings(**values))  # type: ignore[arg-type]


async def campaign_mts(store: Store) -> list[MTMessage]:
    async with store.sessions() as session:
        return list((await session.scalars(select(MTMessage).where(MTMessage.kind == MTKind.MASS))).all())


async def campaign(store: Store, campaign_id: int) -> Campaign:
    async with store.sessions() as session:
        found = await session.get(Campaign, campaign_id)
        assert found is not None
        return found


@pytest.mark.parametrize(
    ("spec", "now", "expected"),
    [
        (AudienceSpec(2), NOW, EVERYONE),
        (AudienceSpec(2, include_new=False), NOW, {"last", "middle", "voda", "mexico"}),
        (AudienceSpec(1, include_new=False), NOW, {"last", "voda", "mexico"}),
        (AudienceSpec(3, include_new=False), NOW, {"last", "middle", "old", "voda", "mexico"}),
        (AudienceSpec(2, carrier="vodafone"), NOW, {"voda"}),
        (AudienceSpec(2, country="MX"), NOW, {"mexico"}),
        (AudienceSpec(2, service="ligue"), NOW, {"voda"}),
        (AudienceSpec(2, active_days=1), T0 + timedelta(days=1, minutes=36), {"new"}),
    ],
)
async def test_the_audience_is_who_answered_one_of_the_last_pushes(
    store: Store, spec: AudienceSpec, now: object, expected: set[str]
) -> None:
    history = await answered_history(store)
    async with store.sessions() as session:
        found = set((await session.scalars(audience(spec, now))).all())  # type: ignore[arg-type]
        size = await audience_size(session, spec, now)  # type: ignore[arg-type]
        sample = await audience_sample(session, spec, now)  # type: ignore[arg-type]
    assert history.names(found) == expected
    assert size == len(expected)
    assert sample == min(found)


async def test_the_sender_queues_each_recipient_once_through_the_outbox(store: Store) -> None:
    history = await answered_history(store)
    campaign_id = await new_campaign(store)
    assert not await sender(store).step(NOW - timedelta(minutes=1))  # not due yet
    first = sender(store)
    assert await first.step(NOW)
    mts = await campaign_mts(store)
    assert history.names({mt.subscriber_id for mt in mts if mt.subscriber_id}) == EVERYONE
    assert len(mts) == len(EVERYONE)
    assert {(mt.priority, mt.status) for mt in mts} == {(CAMPAIGN_PRIORITY, MTStatus.QUEUED)}
    voda = next(mt for mt in mts if mt.subscriber_id == history.ids["voda"])
    assert (voda.carrier, voda.source) == ("vodafone", "795500")  # the way the client last wrote
    assert voda.text.startswith("Hola 346")  # the manual's variables rendered
    # a restart (a new sender, nothing in memory) sends nobody twice; the campaign is finished
    await sender(store).step(NOW + timedelta(seconds=5))
    assert len(await campaign_mts(store)) == len(EVERYONE)
    done = await campaign(store, campaign_id)
    assert (done.status, done.total, done.pending, done.queued) == (CampaignStatus.FINISHED, 6, 0, 6)
    async with store.sessions() as session:
        rows = (await session.scalars(select(CampaignRecipient))).all()
    assert {row.mt_id for row in rows} == {mt.id for mt in mts}


async def test_the_counters_follow_the_campaign_mts(store: Store) -> None:
    await answered_history(store)
    campaign_id = await new_campaign(store)
    await sender(store).step(NOW)
    mts = await campaign_mts(store)
    outcomes = [MTStatus.DELIVERED, MTStatus.DELIVERED, MTStatus.FAILED, MTStatus.ACCEPTED, MTStatus.REFUSED]
    async with store.transaction() as session:
        for mt, status in zip(mts, outcomes, strict=False):
            await session.execute(update(MTMessage).where(MTMessage.id == mt.id).values(status=status))
    await sender(store).step(NOW + timedelta(seconds=1))
    counts = await campaign(store, campaign_id)
    assert (counts.queued, counts.sent, counts.delivered, counts.failed, counts.refused) == (1, 1, 2, 1, 1)


async def test_a_campaign_finished_days_ago_is_no_longer_followed(store: Store) -> None:
    await answered_history(store)
    campaign_id = await new_campaign(store)
    await sender(store).step(NOW)
    async with store.transaction() as session:
        await session.execute(
            update(MTMessage).where(MTMessage.kind == MTKind.MASS).values(status=MTStatus.ACCEPTED)
        )
    later = NOW + timedelta(seconds=1)
    await sender(store).step(later)
    finished = await campaign(store, campaign_id)
    assert (finished.status, finished.sent, finished.finished_at) == (CampaignStatus.FINISHED, 6, NOW)
    # receipts that come within the SMSCs' validity period are followed; after it, nothing is read
    async with store.transaction() as session:
        await session.execute(
            update(MTMessage).where(MTMessage.kind == MTKind.MASS).values(status=MTStatus.DELIVERED)
        )
    await sender(store).step(NOW + FOLLOWED_AFTER_FINISH + timedelta(seconds=1))
    assert (await campaign(store, campaign_id)).sent == 6
    await sender(store).step(NOW + FOLLOWED_AFTER_FINISH - timedelta(seconds=1))
    followed = await campaign(store, campaign_id)
    assert (followed.sent, followed.delivered) == (0, 6)


async def test_the_pace_and_the_carriers_room_limit_each_pass(store: Store) -> None:
    await answered_history(store)
    campaign_id = await new_campaign(store, tps=4)
    paced = sender(store)
    await paced.step(NOW)
    assert len(await campaign_mts(store)) == 2  # the campaign's 4 MTs a second, half a second's worth
    await paced.step(NOW + timedelta(milliseconds=250))
    assert len(await campaign_mts(store)) == 3
    # the carriers' share of the outbox: 1 MT a second, 3 seconds' worth at most
    roomy = await new_campaign(store, name="room")
    narrow = sender(store, carrier_tps={"movistar": 1.0, "vodafone": 1.0}, backlog_seconds=3.0)
    async with store.transaction() as session:
        await change_status(session, campaign_id, "pause", NOW)
    await narrow.step(NOW)
    async with store.sessions() as session:
        per_carrier = dict(
            (
                await session.execute(
                    select(MTMessage.carrier, func.count())
                    .where(MTMessage.kind == MTKind.MASS)
                    .group_by(MTMessage.carrier)
                )
            ).all()
        )
    assert per_carrier["movistar"] <= 3 and per_carrier["vodafone"] <= 3
    assert (await campaign(store, roomy)).pending > 0


async def test_daemons_feeding_one_campaign_share_its_pace(store: Store) -> None:
    # two daemons' senders on one database: the campaign's 4 MTs a second hold for both together
    await answered_history(store)
    await new_campaign(store, tps=4)
    first, second = sender(store), sender(store)
    await first.step(NOW)
    await second.step(NOW)
    assert len(await campaign_mts(store)) == 2  # half a second's worth, once
    await second.step(NOW + timedelta(milliseconds=250))
    await first.step(NOW + timedelta(milliseconds=250))
    assert len(await campaign_mts(store)) == 3
    await first.step(NOW + timedelta(milliseconds=500))
    await second.step(NOW + timedelta(milliseconds=750))
    assert len(await campaign_mts(store)) == 5


async def test_recipients_in_quiet_hours_wait_for_morning(store: Store) -> None:
    history = await answered_history(store)
    await new_campaign(store)
    # 14:00 in Madrid, 07:00 in Mexico City: Mexico sleeps until 09:00
    quiet = sender(
        store,
        quiet=QuietRule(
            default=QuietHours.parse("22:00-09:00"),
            default_zone=ZoneInfo("Europe/Madrid"),
            zones={"MX": ZoneInfo("America/Mexico_City")},
        ),
    )
    await quiet.step(NOW)
    sent = {mt.subscriber_id for mt in await campaign_mts(store)}
    assert history.names(sent) == EVERYONE - {"mexico"}
    await quiet.step(NOW + timedelta(hours=1, minutes=59))  # 08:59 in Mexico City
    assert len(await campaign_mts(store)) == len(EVERYONE) - 1
    await quiet.step(NOW + timedelta(hours=2))  # 09:00
    assert history.names({mt.subscriber_id for mt in await campaign_mts(store)}) == EVERYONE


async def test_pause_resume_and_cancel(store: Store) -> None:
    await answered_history(store)
    campaign_id = await new_campaign(store, tps=4)
    feeding = sender(store)
    await feeding.step(NOW)
    async with store.transaction() as session:
        assert await change_status(session, campaign_id, "pause", NOW) == (
            CampaignStatus.RUNNING,
            CampaignStatus.PAUSED,
        )
        assert await change_status(session, campaign_id, "pause", NOW) is None  # already paused
    await feeding.step(NOW + timedelta(seconds=5))
    assert len(await campaign_mts(store)) == 2
    async with store.transaction() as session:
        await change_status(session, campaign_id, "resume", NOW)
    await feeding.step(NOW + timedelta(seconds=10))
    assert len(await campaign_mts(store)) == 4
    async with store.transaction() as session:
        assert await change_status(session, campaign_id, "cancel", NOW) is not None
        changes = await cancel_campaign_mts(session, campaign_id, NOW)
    assert len(changes) == 4
    assert {mt.status for mt in await campaign_mts(store)} == {MTStatus.CANCELLED}
    await feeding.step(NOW + timedelta(seconds=15))
    assert len(await campaign_mts(store)) == 4
    counts = await campaign(store, campaign_id)
    assert (counts.status, counts.pending, counts.queued, counts.cancelled) == (
        CampaignStatus.CANCELLED,
        0,
        0,
        6,
    )


async def test_an_mt_being_sent_at_the_cancel_and_given_back_is_cancelled_too(store: Store) -> None:
    await answered_history(store)
    campaign_id = await new_campaign(store, tps=4)
    await sender(store).step(NOW)  # two of them queued
    async with store.transaction() as session:
        claimed = await store.claims.claim(session, "test", NOW, limit=1, lease=30)
    [in_flight] = [mt.id for mt in claimed.mts]
    async with store.transaction() as session:
        assert await change_status(session, campaign_id, "cancel", NOW) is not None
        assert len(await cancel_campaign_mts(session, campaign_id, NOW)) == 1
    async with store.transaction() as session:  # its bind went down: back in the outbox
        await requeue_mts(session, [in_flight], NOW, reason="bind down")
    await sender(store).step(NOW + timedelta(seconds=1))
    assert {mt.status for mt in await campaign_mts(store)} == {MTStatus.CANCELLED}
    await sender(store).step(NOW + timedelta(seconds=2))
    counts = await campaign(store, campaign_id)
    assert (counts.queued, counts.cancelled) == (0, len(EVERYONE))


async def test_two_senders_at_once_send_nobody_twice(store: Store) -> None:
    history = await answered_history(store)
    for index in range(3):
        await new_campaign(store, name=f"c{index}", tps=1000)
    senders = [sender(store, batch=2) for _ in range(3)]
    for round_ in range(4):
        await asyncio.gather(*(one.step(NOW + timedelta(seconds=round_)) for one in senders))
    mts = await campaign_mts(store)
    assert len(mts) == 3 * len(EVERYONE)
    async with store.sessions() as session:
        pairs = (await session.execute(select(CampaignRecipient.campaign_id, CampaignRecipient.mt_id))).all()
    assert len({mt_id for _, mt_id in pairs}) == len(pairs) == len(mts)
    assert history.names({mt.subscriber_id for mt in mts if mt.subscriber_id}) == EVERYONE


async def test_a_reply_queued_during_a_campaign_leaves_first(store: Store) -> None:
    history = await answered_history(store)
    await new_campaign(store)
    await sender(store).step(NOW)
    outbox = Outbox(outbox_settings(), sessions=store.sessions)
    async with store.transaction() as session:
        client = await session.get(Subscriber, history.ids["silent"])
        assert client is not None
        request = MTRequest(client.msisdn, "respuesta", kind=MTKind.REPLY, subscriber_id=client.id)
        reply = await outbox.queue_one_in(session, request, NOW + timedelta(seconds=1))
    async with store.transaction() as session:
        claimed = await store.claims.claim(session, "test", NOW + timedelta(seconds=2), limit=1, lease=30)
    assert [mt.id for mt in claimed.mts] == [reply.mt_id]


async def test_clients_opted_out_or_banned_after_the_audience_was_taken_are_refused(store: Store) -> None:
    history = await answered_history(store)
    campaign_id = await new_campaign(store)
    await sender(store, carrier_tps={}).step(NOW)  # started; no carrier has room: nobody fed yet
    assert (await campaign(store, campaign_id)).pending == len(EVERYONE)
    async with store.transaction() as session:
        await session.execute(
            update(Subscriber).where(Subscriber.id == history.ids["last"]).values(opted_out=True)
        )
        await session.execute(
            update(Subscriber).where(Subscriber.id == history.ids["voda"]).values(banned=True)
        )
    await sender(store).step(NOW + timedelta(seconds=1))
    counts = await campaign(store, campaign_id)
    assert (counts.queued, counts.refused, counts.skipped) == (4, 2, 0)
    async with store.sessions() as session:
        rows = (await session.scalars(select(CampaignRecipient))).all()
    refused = {row.subscriber_id: (row.state, row.reason) for row in rows if row.mt_id is None}
    assert refused == {
        history.ids["last"]: (RecipientState.REFUSED, "opted_out"),
        history.ids["voda"]: (RecipientState.REFUSED, "banned"),
    }


async def test_a_time_limit_stops_a_slow_statement_on_postgresql(pg_url: str) -> None:
    await upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        store = Store.for_engine(engine)
        assert store.statement_timeouts
        async with store.sessions() as session:
            async with time_limit(session, 5, enforced=store.statement_timeouts):
                assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
            with pytest.raises(TooSlow):
                async with time_limit(session, 0.05, enforced=store.statement_timeouts):
                    await session.execute(text("SELECT pg_sleep(2)"))
    finally:
        await engine.dispose()
