"""Campaigns' statements: the audience (counted, sampled and snapshotted set-based, on both
databases), the status changes an admin or the sender makes, the claim of pending recipients and the
following of their MTs. The caller frames the transaction.

The audience of a campaign (:func:`audience`) is, among the subscribers the recipient rule lets a
mass push reach (:func:`gatewayd.store.mt.recipients.may_receive`) and that match its filters, those
who sent an MO after at least one of the last ``X`` pushes (kind ``push`` or ``mass``, accepted by
the SMSC: delivered or awaiting its receipt) they got since their session reset; that is, after the
X-th latest of them (after the oldest, when there are fewer). With ``include_new``, those who got no
push since they first wrote or since their reset count too. Each subscriber costs a few probes of
``ix_mt_messages_subscriber_id_created_at`` and ``ix_mo_messages_subscriber_id_received_at``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import table_of
from gatewayd.store.campaigns import (
    OPEN_STATES,
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    RecipientState,
)
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.mt.cancels import cancel_queued
from gatewayd.store.mt.recipients import may_receive
from gatewayd.store.mt.values import MTStatusChange
from gatewayd.store.subscribers import Subscriber
from gatewayd.store.time_limits import TooSlow as TooSlow
from gatewayd.store.time_limits import time_limit as time_limit

CAMPAIGNS = table_of(Campaign)
RECIPIENTS = table_of(CampaignRecipient)
SUBSCRIBERS = table_of(Subscriber)
MT_MESSAGES = table_of(MTMessage)
MO_MESSAGES = table_of(MOMessage)

#: The most pushes back an audience may look.
MAX_LAST_PUSHES = 100
#: The pushes that count: what an operator or a campaign sent to the client ...
PUSH_KINDS = (MTKind.PUSH, MTKind.MASS)
#: ... and the SMSC accepted (delivered or awaiting its receipt): one still queued, refused, withdrawn,
#: failed or expired never reached the client.
SENT = (MTStatus.ACCEPTED, MTStatus.DELIVERED)

#: How long a finished campaign's MTs are still followed: longer than the SMSCs keep an MT trying
#: (its validity period), so the receipts that will ever come have come.
FOLLOWED_AFTER_FINISH = timedelta(days=3)

#: The recipient state an MT's status puts its recipient in.
STATE_OF_MT = {
    MTStatus.QUEUED: RecipientState.QUEUED,
    MTStatus.SENDING: RecipientState.QUEUED,
    MTStatus.ACCEPTED: RecipientState.SENT,
    MTStatus.DELIVERED: RecipientState.DELIVERED,
    MTStatus.FAILED: RecipientState.FAILED,
    MTStatus.EXPIRED: RecipientState.FAILED,
    MTStatus.REFUSED: RecipientState.REFUSED,
    MTStatus.CANCELLED: RecipientState.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class AudienceSpec:
    """Who a campaign goes to (see the module's docstring); ``None`` filters are "any"."""

    last_pushes: int
    include_new: bool = True
    service: str | None = None
    carrier: str | None = None
    country: str | None = None
    active_days: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.last_pushes <= MAX_LAST_PUSHES:
            raise ValueError(f"last_pushes must be 1 to {MAX_LAST_PUSHES}")

    @classmethod
    def of(cls, campaign: Campaign) -> AudienceSpec:
        return cls(
            campaign.last_pushes,
            campaign.include_new,
            campaign.service,
            campaign.carrier,
            campaign.country,
            campaign.active_days,
        )


def _among(column: ColumnElement[str], *values: StrEnum) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` with the values written in the statement, not bound: PostgreSQL's
    generic plans (the daemon's) can then use the partial indexes whose predicate names them
    (``ix_campaign_recipients_pending`` / ``_open``, the outbox index of ``mt_messages``)."""
    return column.in_([literal_column(f"'{value.value}'") for value in values])


def audience(spec: AudienceSpec, now: datetime) -> Select[int]:
    """The ids of the subscribers a campaign with ``spec`` goes to (one statement, no order)."""
    s, mt, mo = SUBSCRIBERS, MT_MESSAGES, MO_MESSAGES
    since_reset = or_(s.c.session_reset_at.is_(None), mt.c.created_at > s.c.session_reset_at)
    pushes = (
        select(mt.c.created_at)
        .where(
            mt.c.subscriber_id == s.c.id,
            mt.c.kind.in_(PUSH_KINDS),
            mt.c.status.in_(SENT),
            since_reset,
        )
        .correlate(s)
    )
    xth_latest = pushes.order_by(mt.c.created_at.desc()).limit(1).offset(spec.last_pushes - 1)
    oldest = pushes.with_only_columns(func.min(mt.c.created_at))
    # COALESCE stops at its first non-null argument: the oldest push is read only for clients with
    # fewer than X pushes
    threshold = func.coalesce(xth_latest.scalar_subquery(), oldest.scalar_subquery())
    answered = exists(
        select(mo.c.id).where(mo.c.subscriber_id == s.c.id, mo.c.received_at > threshold).correlate(s)
    )
    wanted: ColumnElement[bool] = answered
    if spec.include_new:
        wanted = or_(answered, ~exists(pushes.with_only_columns(literal(1))))
    conditions: list[ColumnElement[bool]] = [may_receive(MTKind.MASS), wanted]
    if spec.carrier is not None:
        conditions.append(s.c.carrier == spec.carrier)
    if spec.country is not None:
        conditions.append(s.c.country == spec.country)
    if spec.active_days is not None:
        conditions.append(s.c.last_seen >= now - timedelta(days=spec.active_days))
    if spec.service is not None:
        conditions.append(
            exists(
                select(mo.c.id).where(mo.c.subscriber_id == s.c.id, mo.c.service == spec.service)
            ).correlate(s)
        )
    return select(s.c.id).where(and_(*conditions))


async def audience_size(session: AsyncSession, spec: AudienceSpec, now: datetime) -> int:
    count = select(func.count()).select_from(audience(spec, now).subquery())
    return int(await session.scalar(count) or 0)


async def audience_sample(session: AsyncSession, spec: AudienceSpec, now: datetime) -> int | None:
    """One subscriber of the audience (the lowest id), for the text's preview; None when empty."""
    statement = audience(spec, now).order_by(SUBSCRIBERS.c.id).limit(1)
    found: int | None = (await session.scalars(statement)).first()
    return found


# --- the campaign's life -------------------------------------------------------------------------------


async def get_campaign(session: AsyncSession, campaign_id: int) -> Campaign | None:
    return await session.get(Campaign, campaign_id)


async def list_campaigns(session: AsyncSession, limit: int = 200) -> list[Campaign]:
    statement = select(Campaign).order_by(Campaign.id.desc()).limit(limit)
    return list((await session.scalars(statement)).all())


async def start_due(session: AsyncSession, now: datetime) -> list[tuple[int, int]]:
    """Starts the scheduled campaigns whose time came: each one's audience is snapshotted into its
    recipients and it runs. (campaign id, recipients) of each started. Several daemons may call it
    at once: a campaign is locked (``SKIP LOCKED`` on PostgreSQL) and moved from ``scheduled`` once."""
    due = (
        select(Campaign)
        .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.scheduled_at <= now)
        .order_by(Campaign.id)
        .with_for_update(skip_locked=True)
    )
    started: list[tuple[int, int]] = []
    for campaign in (await session.scalars(due)).all():
        snapshot = audience(AudienceSpec.of(campaign), now).subquery()
        inserted = await session.execute(
            insert(RECIPIENTS).from_select(
                ["campaign_id", "subscriber_id", "state"],
                select(literal(campaign.id), snapshot.c.id, literal(RecipientState.PENDING.value)),
            )
        )
        count = int(getattr(inserted, "rowcount", 0))
        await session.execute(
            update(CAMPAIGNS)
            .where(CAMPAIGNS.c.id == campaign.id)
            .values(
                status=CampaignStatus.RUNNING,
                started_at=now,
                updated_at=now,
                total=count,
                pending=count,
            )
        )
        started.append((campaign.id, count))
    return started


#: The statuses each admin action moves a campaign from, and to.
_TRANSITIONS: Mapping[str, tuple[tuple[CampaignStatus, ...], CampaignStatus]] = {
    "pause": ((CampaignStatus.RUNNING, CampaignStatus.SCHEDULED), CampaignStatus.PAUSED),
    "resume": ((CampaignStatus.PAUSED,), CampaignStatus.RUNNING),
    "cancel": (
        (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED),
        CampaignStatus.CANCELLED,
    ),
}
ACTIONS = tuple(_TRANSITIONS)


async def change_status(
    session: AsyncSession, campaign_id: int, action: str, now: datetime
) -> tuple[CampaignStatus, CampaignStatus] | None:
    """Applies an admin's ``action`` (:data:`ACTIONS`); (before, after), or None when the campaign's
    status does not allow it. A campaign paused before it started resumes as scheduled (its
    audience is taken when it starts). Cancelling also cancels its recipients still pending and its
    MTs still queued (see :func:`cancel_campaign_mts`)."""
    sources, target = _TRANSITIONS[action]
    campaign = await session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None or campaign.status not in sources:
        return None
    before = campaign.status
    if action == "resume" and campaign.started_at is None:
        target = CampaignStatus.SCHEDULED
    values: dict[str, object] = {"status": target, "updated_at": now}
    if target is CampaignStatus.CANCELLED:
        values["finished_at"] = now
    await session.execute(update(CAMPAIGNS).where(CAMPAIGNS.c.id == campaign_id).values(**values))
    if target is CampaignStatus.CANCELLED:
        moved = await session.execute(
            update(RECIPIENTS)
            .where(
                RECIPIENTS.c.campaign_id == campaign_id, _among(RECIPIENTS.c.state, RecipientState.PENDING)
            )
            .values(state=RecipientState.CANCELLED)
        )
        count = int(getattr(moved, "rowcount", 0))
        await shift(session, campaign_id, {RecipientState.PENDING: -count, RecipientState.CANCELLED: count})
    await session.refresh(campaign)
    return before, target


async def cancel_campaign_mts(session: AsyncSession, campaign_id: int, now: datetime) -> list[MTStatusChange]:
    """The cancelled campaign's MTs still in the outbox, cancelled (their recipients follow when the
    sender reads their MTs again)."""
    queued = select(RECIPIENTS.c.mt_id).where(
        RECIPIENTS.c.campaign_id == campaign_id, _among(RECIPIENTS.c.state, *OPEN_STATES)
    )
    return await cancel_queued(session, queued, now, reason=f"campaign {campaign_id} cancelled")


async def cancel_requeued(session: AsyncSession, now: datetime) -> list[MTStatusChange]:
    """MTs of campaigns cancelled lately back in the outbox: ones being sent when the cancel came, put
    back by a bind that went down (the sender calls it each pass; a read of the small ``campaigns``
    table while no cancelled campaign has an MT in the outbox)."""
    c = CAMPAIGNS
    cancelled = select(c.c.id).where(
        c.c.status == CampaignStatus.CANCELLED,
        c.c.queued > 0,
        c.c.finished_at > now - FOLLOWED_AFTER_FINISH,
    )
    changes: list[MTStatusChange] = []
    for campaign_id in (await session.scalars(cancelled.order_by(c.c.id))).all():
        changes += await cancel_campaign_mts(session, campaign_id, now)
    return changes


async def finish_done(session: AsyncSession, now: datetime) -> list[int]:
    """Running campaigns with no pending recipient left are finished; their ids."""
    result = await session.execute(
        update(CAMPAIGNS)
        .where(CAMPAIGNS.c.status == CampaignStatus.RUNNING, CAMPAIGNS.c.pending <= 0)
        .values(status=CampaignStatus.FINISHED, finished_at=now, updated_at=now)
        .returning(CAMPAIGNS.c.id)
    )
    return sorted(result.scalars())


async def shift(session: AsyncSession, campaign_id: int, moves: Mapping[RecipientState, int]) -> None:
    """Moves the campaign's per-state counters by ``moves``."""
    values = {state.value: CAMPAIGNS.c[state.value] + delta for state, delta in moves.items() if delta}
    if values:
        await session.execute(update(CAMPAIGNS).where(CAMPAIGNS.c.id == campaign_id).values(**values))


# --- the sender's statements ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingRecipient:
    id: int
    subscriber_id: int
    msisdn: str


@dataclass(frozen=True, slots=True)
class Awake:
    """Where it is not quiet hours now: the countries with a zone of their own that are awake, the
    ones with a zone of their own (asleep or not), and whether the default zone is awake (for every
    other country and for clients of unknown country)."""

    countries: frozenset[str]
    zoned: frozenset[str]
    others: bool

    @classmethod
    def everywhere(cls) -> Awake:
        return cls(frozenset(), frozenset(), True)


def _awake(awake: Awake) -> ColumnElement[bool]:
    country = SUBSCRIBERS.c.country
    conditions: list[ColumnElement[bool]] = []
    if awake.countries:
        conditions.append(country.in_(sorted(awake.countries)))
    if awake.others:
        other: ColumnElement[bool] = country.is_(None)
        if awake.zoned:
            other = or_(other, country.not_in(sorted(awake.zoned)))
        else:
            other = or_(other, country.is_not(None))
        conditions.append(other)
    return or_(false(), *conditions)


async def claim_pending(
    session: AsyncSession,
    campaign_id: int,
    limit: int,
    *,
    awake: Awake,
    carriers: Collection[str] | None = None,
    other_carriers: Collection[str] = (),
) -> list[PendingRecipient]:
    """Up to ``limit`` pending recipients of the campaign (lowest ids first) who are awake and are
    clients of ``carriers`` (None: any; with ``other_carriers``, those of unknown carrier or of none
    of these instead), locked for the caller's transaction (``SKIP LOCKED`` on PostgreSQL: two
    daemons take different ones; SQLite has one writer)."""
    r, s = RECIPIENTS, SUBSCRIBERS
    statement = (
        select(r.c.id, r.c.subscriber_id, s.c.msisdn)
        .join(s, s.c.id == r.c.subscriber_id)
        .where(r.c.campaign_id == campaign_id, _among(r.c.state, RecipientState.PENDING), _awake(awake))
        .order_by(r.c.id)
        .limit(limit)
        .with_for_update(of=r, skip_locked=True)
    )
    if carriers is not None:
        statement = statement.where(s.c.carrier.in_(sorted(carriers)))
    elif other_carriers:
        statement = statement.where(or_(s.c.carrier.is_(None), s.c.carrier.not_in(sorted(other_carriers))))
    rows = (await session.execute(statement)).all()
    return [PendingRecipient(row.id, row.subscriber_id, row.msisdn) for row in rows]


async def mark_queued(session: AsyncSession, queued: Sequence[tuple[int, int]]) -> None:
    """Recipients (id, mt_id) whose MT is in the outbox."""
    if queued:
        statement = (
            update(RECIPIENTS)
            .where(RECIPIENTS.c.id == bindparam("r_id"))
            .values(state=RecipientState.QUEUED, mt_id=bindparam("r_mt_id"))
        )
        await session.execute(statement, [{"r_id": rid, "r_mt_id": mt_id} for rid, mt_id in queued])


async def mark_unqueued(
    session: AsyncSession, state: RecipientState, recipients: Sequence[tuple[int, str]]
) -> None:
    """Recipients (id, reason) the outbox would not queue: ``refused`` by the recipient rule (opted
    out or banned since the audience was taken), ``skipped`` when it could not route or render."""
    if recipients:
        statement = (
            update(RECIPIENTS)
            .where(RECIPIENTS.c.id == bindparam("r_id"))
            .values(state=state, reason=bindparam("r_reason"))
        )
        await session.execute(
            statement, [{"r_id": rid, "r_reason": reason[:64]} for rid, reason in recipients]
        )


async def campaign_backlog(session: AsyncSession) -> dict[str, int]:
    """Mass-push MTs waiting in the outbox (queued or being sent), per carrier."""
    mt = MT_MESSAGES
    statement = (
        select(mt.c.carrier, func.count())
        .where(_among(mt.c.status, MTStatus.QUEUED, MTStatus.SENDING), mt.c.kind == MTKind.MASS)
        .group_by(mt.c.carrier)
    )
    return {carrier: int(count) for carrier, count in (await session.execute(statement)).all()}


async def running_campaigns(session: AsyncSession) -> list[Campaign]:
    statement = select(Campaign).where(Campaign.status == CampaignStatus.RUNNING).order_by(Campaign.id)
    return list((await session.scalars(statement)).all())


def _state_of_mt() -> ColumnElement[str]:
    return case(
        {status.value: state.value for status, state in STATE_OF_MT.items()},
        value=MT_MESSAGES.c.status,
    )


async def follow_mts(session: AsyncSession, limit: int, now: datetime) -> dict[int, Counter[RecipientState]]:
    """Moves up to ``limit`` open recipients (MT queued or sent) whose MT moved on to the state it
    implies, and their campaigns' counters; the moves per campaign. Only campaigns not finished, or
    finished less than :data:`FOLLOWED_AFTER_FINISH` ago: an MT the SMSC accepted and never sent a
    receipt for would otherwise be read again every pass, forever."""
    r, mt, c = RECIPIENTS, MT_MESSAGES, CAMPAIGNS
    implied = _state_of_mt()
    followed = select(c.c.id).where(
        or_(c.c.finished_at.is_(None), c.c.finished_at > now - FOLLOWED_AFTER_FINISH)
    )
    statement = (
        select(r.c.id, r.c.campaign_id, r.c.state, implied.label("implied"))
        .join(mt, mt.c.id == r.c.mt_id)
        .where(r.c.campaign_id.in_(followed), _among(r.c.state, *OPEN_STATES), implied != r.c.state)
        .limit(limit)
        .with_for_update(of=r, skip_locked=True)
    )
    rows = (await session.execute(statement)).all()
    if not rows:
        return {}
    await session.execute(
        update(r).where(r.c.id == bindparam("r_id")).values(state=bindparam("r_state")),
        [{"r_id": row.id, "r_state": RecipientState(row.implied)} for row in rows],
    )
    moves: dict[int, Counter[RecipientState]] = {}
    for row in rows:
        counter = moves.setdefault(row.campaign_id, Counter())
        counter[RecipientState(row.state)] -= 1
        counter[RecipientState(row.implied)] += 1
    for campaign_id, counter in sorted(moves.items()):
        await shift(session, campaign_id, counter)
    return moves
