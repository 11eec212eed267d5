"""The mass push's sender ("animator mode", manual 1.6): a daemon loop that starts the campaigns
whose time came (their audience snapshotted into ``campaign_recipients``), feeds the running ones'
pending recipients into the outbox, and follows the MTs it queued so each campaign's counters say
how far it got.

Feeding goes through :meth:`gatewayd.outbox.Outbox.queue_in` (kind ``mass``, priority
:data:`CAMPAIGN_PRIORITY`, below the operators' replies), in the transaction that marks the
recipients ``queued`` with their MT: a crash sends nobody twice and loses nobody. It is paced three
ways: the campaign's own TPS (a token bucket kept on the campaign's row, taken from in the transaction
that feeds it: one pace however many daemons feed it), each carrier's binds'
TPS (no more than ``[campaigns] backlog_seconds`` of it waits in the outbox, so a reply queued now
leaves within seconds), and the quiet hours of the client's country (those recipients stay pending
until morning). Several daemons may share the database: the claims of recipients skip the rows
another holds (PostgreSQL), and the campaign row is locked while it is fed, so a pause or a cancel
waits for the batch in hand and then stops the next.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.config import CarrierConfig, Config
from gatewayd.logging import log_event
from gatewayd.outbox import MTRequest, Outbox, OutboxError, Queued, TextRefused
from gatewayd.store.campaigns import Campaign, CampaignStatus, RecipientState
from gatewayd.store.enums import MTKind
from gatewayd.store.mt.recipients import Refusal
from gatewayd.store.repo_campaigns import (
    Awake,
    PendingRecipient,
    campaign_backlog,
    cancel_requeued,
    claim_pending,
    finish_done,
    follow_mts,
    mark_queued,
    mark_unqueued,
    running_campaigns,
    shift,
    start_due,
)
from gatewayd.store.store import Store
from routing.quiet_hours import QuietRule

log = logging.getLogger("gatewayd.campaigns")

#: Campaign MTs leave after every reply (0) and keyword answer (10) queued before them.
CAMPAIGN_PRIORITY = -10
#: Open recipients whose MT moved on, followed per pass at most.
FOLLOW_BATCH = 5000
#: Seconds between passes while a campaign is being fed, and the most a campaign may queue at once,
#: in seconds of its TPS: small, frequent batches, so a reply queued meanwhile finds few campaign MTs
#: claimed ahead of it in the daemons' MT pipelines.
FEED_INTERVAL = 0.2
BURST_SECONDS = 0.5


@dataclass(slots=True)
class Pace:
    """A token bucket: ``rate`` MTs a second, at most ``burst`` at once. ``at``: seconds (a timestamp)
    of the last take; the state is kept on the campaign's row (:meth:`of`, :meth:`save`)."""

    rate: float
    burst: float
    tokens: float = 0.0
    at: float | None = None

    def take(self, now: float, wanted: int) -> int:
        """How many of ``wanted`` may go at ``now`` (seconds; taken from the bucket)."""
        if self.at is None:
            self.tokens = self.burst
        else:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        granted = max(0, min(wanted, math.floor(self.tokens)))
        self.tokens -= granted
        return granted

    def give_back(self, count: int) -> None:
        self.tokens = min(self.burst, self.tokens + count)

    @classmethod
    def of(cls, campaign: Campaign) -> Pace:
        """The campaign's bucket as its row holds it (full at first: a campaign starts with a burst)."""
        burst = max(1.0, campaign.tps * BURST_SECONDS)
        at = campaign.pace_at.timestamp() if campaign.pace_at is not None else None
        return cls(float(campaign.tps), burst, campaign.pace_tokens or 0.0, at)

    def save(self, campaign: Campaign) -> None:
        campaign.pace_tokens = self.tokens
        campaign.pace_at = datetime.fromtimestamp(self.at, UTC) if self.at is not None else None


def carrier_tps(carriers: Sequence[CarrierConfig]) -> dict[str, float]:
    """Each carrier's MTs a second: the TPS of its binds that send, times their sessions."""
    return {
        carrier.name: sum(bind.tps * bind.count for bind in carrier.binds if bind.can_send)
        for carrier in carriers
    }


@dataclass(frozen=True, slots=True)
class CampaignSettings:
    #: ``[quiet_hours]``: the rule the outbox's pushes follow too (none by default here).
    quiet: QuietRule = field(default_factory=QuietRule)
    carrier_tps: Mapping[str, float] = field(default_factory=dict)
    backlog_seconds: float = 5.0
    batch: int = 500
    poll_interval: float = 1.0

    @classmethod
    def from_config(cls, config: Config) -> CampaignSettings:
        section = config.campaigns
        return cls(
            quiet=config.quiet_rule(),
            carrier_tps=carrier_tps(config.carriers),
            backlog_seconds=section.backlog_seconds,
            batch=section.batch,
            poll_interval=section.poll_interval,
        )

    def awake(self, now: datetime) -> Awake:
        """Where it is not quiet hours at ``now``."""
        rule = self.quiet
        own = rule.own_countries
        awake = frozenset(country for country in own if not rule.quiet_for(country, now))
        return Awake(awake, own, not rule.quiet_for(None, now))

    def room(self, carrier: str, backlog: int) -> int:
        """How many more campaign MTs the carrier's share of the outbox takes now."""
        return max(0, math.ceil(self.carrier_tps.get(carrier, 0.0) * self.backlog_seconds) - backlog)


#: What became of one recipient's request: the MT queued, the recipient rule's refusal, or the reason
#: the outbox could not take it.
Outcome = Queued | Refusal | str


class CampaignSender:
    """Feeds the running campaigns into the outbox (see the module's docstring)."""

    def __init__(self, store: Store, outbox: Outbox, settings: CampaignSettings) -> None:
        self.store = store
        self.outbox = outbox
        self.settings = settings

    async def run_loop(self) -> None:
        """Two loops: one starts the due campaigns, the other feeds, follows and finishes them. Taking
        a large audience is one long transaction (about 44 s at a million clients): apart, it holds
        up neither the other campaigns' sending nor the following of their MTs."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._every_pass(self.start), name="campaigns.start")
            group.create_task(self._every_pass(self.send), name="campaigns.send")

    async def _every_pass(self, work: Callable[[datetime], Awaitable[bool]]) -> None:
        """``work`` every ``poll_interval`` seconds, every :data:`FEED_INTERVAL` while there is work;
        a pass that fails is logged and tried again at the next."""
        while True:
            busy = False
            try:
                busy = await work(datetime.now(UTC))
            except Exception as error:  # the database went away: the next pass tries again
                log_event(log, "campaigns.pass_failed", logging.WARNING, error=repr(error))
            await asyncio.sleep(FEED_INTERVAL if busy else self.settings.poll_interval)

    async def step(self, now: datetime | None = None) -> bool:
        """One pass of both loops: start what is due, then :meth:`send`. Whether it did anything
        (another pass may find more)."""
        now = now or datetime.now(UTC)
        await self.start(now)
        return await self.send(now)

    async def start(self, now: datetime) -> bool:
        """Starts the campaigns whose time came (their audience taken); whether there were any."""
        async with self.store.transaction() as session:
            started = await start_due(session, now)
        for campaign_id, count in started:
            log_event(log, "campaign.started", campaign=campaign_id, recipients=count)
        return bool(started)

    async def send(self, now: datetime) -> bool:
        """Feed what runs, follow MTs, finish what is done; whether it fed or followed anything."""
        async with self.store.transaction() as session:
            campaigns = await running_campaigns(session)
            backlog = await campaign_backlog(session) if campaigns else {}
        fed = 0
        for campaign in campaigns:
            fed += await self._feed(campaign, backlog, now)
        async with self.store.transaction() as session:
            moves = await follow_mts(session, FOLLOW_BATCH, now)
            await cancel_requeued(session, now)
            finished = await finish_done(session, now)
        for campaign_id in finished:
            log_event(log, "campaign.finished", campaign=campaign_id)
        return bool(fed or moves)

    async def _feed(self, campaign: Campaign, backlog: dict[str, int], now: datetime) -> int:
        """Queues what the campaign's pace, the carriers' room and the quiet hours allow now."""
        awake = Awake.everywhere() if campaign.ignore_quiet_hours else self.settings.awake(now)
        claimed = 0
        carriers = sorted(self.settings.carrier_tps)
        rooms = {name: self.settings.room(name, backlog.get(name, 0)) for name in carriers}
        for name in carriers:
            wanted = min(self.settings.batch - claimed, rooms[name])
            if wanted <= 0:
                continue
            fed = await self._queue(campaign.id, wanted, awake, now, carriers=[name])
            if fed is None:
                return claimed  # no longer running
            count, paced_out = fed
            claimed += count
            backlog[name] = backlog.get(name, 0) + count
            if paced_out:
                return claimed
        # clients of no configured carrier (the outbox routes them by their number's country)
        wanted = min(self.settings.batch - claimed, min(rooms.values(), default=0))
        if wanted > 0:
            fed = await self._queue(campaign.id, wanted, awake, now, others=carriers)
            claimed += fed[0] if fed is not None else 0
        return claimed

    async def _queue(
        self,
        campaign_id: int,
        limit: int,
        awake: Awake,
        now: datetime,
        *,
        carriers: Sequence[str] | None = None,
        others: Sequence[str] = (),
    ) -> tuple[int, bool] | None:
        """One transaction: the campaign locked and still running (else None), as many of its pending
        recipients as ``limit`` and its pace allow claimed, queued through the outbox and marked; how
        many were claimed, and whether the pace has nothing left for now."""
        async with self.store.transaction() as session:
            locked = select(Campaign).where(Campaign.id == campaign_id).with_for_update()
            campaign = await session.scalar(locked)
            if campaign is None or campaign.status is not CampaignStatus.RUNNING:
                return None
            pace = Pace.of(campaign)
            granted = pace.take(now.timestamp(), limit)
            pending: list[PendingRecipient] = []
            if granted:
                pending = await claim_pending(
                    session, campaign_id, granted, awake=awake, carriers=carriers, other_carriers=others
                )
            pace.give_back(granted - len(pending))
            pace.save(campaign)
            paced_out = pace.tokens < 1
            if not pending:
                return 0, paced_out
            outcomes = await self._queue_in(session, [_request(item, campaign.text) for item in pending], now)
            queued = [
                (item.id, o.mt_id) for item, o in zip(pending, outcomes, strict=True) if isinstance(o, Queued)
            ]
            refused = [
                (item.id, o.reason.value)
                for item, o in zip(pending, outcomes, strict=True)
                if isinstance(o, Refusal)
            ]
            skipped = [(item.id, o) for item, o in zip(pending, outcomes, strict=True) if isinstance(o, str)]
            await mark_queued(session, queued)
            await mark_unqueued(session, RecipientState.REFUSED, refused)
            await mark_unqueued(session, RecipientState.SKIPPED, skipped)
            await shift(
                session,
                campaign_id,
                {
                    RecipientState.PENDING: -len(pending),
                    RecipientState.QUEUED: len(queued),
                    RecipientState.REFUSED: len(refused),
                    RecipientState.SKIPPED: len(skipped),
                },
            )
        await self.outbox.announce([o for o in outcomes if isinstance(o, Queued)])
        return len(pending), paced_out

    async def _queue_in(
        self, session: AsyncSession, requests: list[MTRequest], now: datetime
    ) -> list[Outcome]:
        """The batch through the outbox; when one request cannot be routed or rendered, each on its
        own (a savepoint each), the failing ones with their reason."""
        try:
            async with session.begin_nested():
                return list((await self.outbox.queue_in(session, requests, now)).outcomes)
        except OutboxError:
            pass
        outcomes: list[Outcome] = []
        for request in requests:
            try:
                async with session.begin_nested():
                    outcomes.append((await self.outbox.queue_in(session, [request], now)).outcomes[0])
            except TextRefused as error:
                outcomes.append(f"text_{error.reason}")
            except OutboxError:
                outcomes.append("no_route")
        return outcomes


def _request(item: PendingRecipient, text: str) -> MTRequest:
    return MTRequest(
        item.msisdn, text, kind=MTKind.MASS, priority=CAMPAIGN_PRIORITY, subscriber_id=item.subscriber_id
    )
