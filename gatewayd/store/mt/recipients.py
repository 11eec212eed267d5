"""Who may receive an MT: the one rule, and the subscriber facts it reads.

The outbox (``gatewayd.outbox``) applies :func:`refusal` when an MT is queued; the claim applies the
same function again when the MT is sent, because a ban, an opt-out or a premium hold can arrive in
between. Nobody else decides it. A premium hold (``gatewayd.store.premium``, ``routing.premium``:
awaiting acceptance of the price notice, paused until the client confirms, the month's cap reached)
stops the MTs the client pays for (:data:`BILLED_KINDS`) from the billed service's short code.
:func:`may_receive` is the same rule as an SQL condition, for statements that pick recipients by the
thousand (the mass push's audience), premium holds left to the outbox; a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, and_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import among, chunks, table_of
from gatewayd.store.enums import MTKind
from gatewayd.store.errors import RefusalReason
from gatewayd.store.premium import Hold, held, holds_of
from gatewayd.store.subscribers import Subscriber
from routing.premium import PremiumState

#: The MTs a client pays for on a billed service: an operator's (reply, push) and the mass push's.
#: The gateway's own (``SYSTEM``: notices, keyword answers) and ``BAN_NOTICE`` are free.
BILLED_KINDS = frozenset({MTKind.REPLY, MTKind.PUSH, MTKind.MASS})

_HELD = {
    PremiumState.AWAITING: (RefusalReason.AWAITING_ACCEPTANCE, "client has not accepted the price notice"),
    PremiumState.PAUSED: (RefusalReason.AWAITING_CONFIRMATION, "client has not confirmed the spend"),
    PremiumState.CAPPED: (RefusalReason.SPEND_CAP, "client reached the month's spend cap"),
}
#: Each premium refusal's reason with the detail an MT's last error then starts with.
HELD_DETAILS = tuple(_HELD.values())


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an MT may not go to its subscriber: ``reason`` for the panel's message, ``detail`` for the
    MT's history and last error."""

    reason: RefusalReason
    detail: str


def refusal(
    kind: MTKind,
    *,
    opted_out: bool,
    banned: bool,
    ban_reason: str | None = None,
    held: PremiumState | None = None,
) -> Refusal | None:
    """Why an MT of ``kind`` may not go to a subscriber with these flags (None: it may). A ban stops
    every MT but the service's notice of the ban itself (``BAN_NOTICE``, ``[[services]] banned_reply``);
    an opt-out every MT but the gateway's own (``SYSTEM``: the answers to BAJA / ALTA / AYUDA, the
    confirmation of the opt-out itself included): a client who sent BAJA gets no charged notice of a
    ban either. ``held``: the client's premium hold on the MT's short code now (awaiting acceptance,
    paused, capped), which stops the MTs they would pay for (:data:`BILLED_KINDS`) and lets the
    gateway's notices through."""
    if kind is MTKind.BAN_NOTICE and not opted_out:
        return None
    if banned and kind is not MTKind.BAN_NOTICE:
        return Refusal(RefusalReason.BANNED, "subscriber banned" + (f": {ban_reason}" if ban_reason else ""))
    if opted_out and kind is not MTKind.SYSTEM:
        return Refusal(RefusalReason.OPTED_OUT, "subscriber opted out")
    if held is not None and kind in BILLED_KINDS:
        reason, detail = _HELD[held]
        return Refusal(reason, detail)
    return None


def may_receive(kind: MTKind) -> ColumnElement[bool]:
    """:func:`refusal` as a condition on ``subscribers``: true for the subscribers it lets an MT of
    ``kind`` go to, premium holds left out (they depend on the short code the MT leaves from, which
    the mass push's audience does not know: the outbox refuses those MTs when it queues them)."""
    if kind is MTKind.BAN_NOTICE:
        return Subscriber.opted_out.is_(False)
    conditions: list[ColumnElement[bool]] = [Subscriber.banned.is_(False)]
    if kind is not MTKind.SYSTEM:
        conditions.append(Subscriber.opted_out.is_(False))
    return and_(true(), *conditions)


@dataclass(frozen=True, slots=True)
class Recipient:
    """A known subscriber as the outbox needs them: identity, carrier and country, and the flags the
    rule reads."""

    id: int
    msisdn: str
    carrier: str | None
    country: str | None
    opted_out: bool
    banned: bool
    ban_reason: str | None
    #: Premium holds by short code (read only where a service bills: :func:`recipients` ``premium``).
    holds: Mapping[str, Hold] = field(default_factory=dict)
    client_id: str = ""

    def refusal(
        self, kind: MTKind, short_code: str | None = None, now: datetime | None = None
    ) -> Refusal | None:
        """:func:`refusal` for this subscriber, an MT of ``kind`` from ``short_code`` at ``now``."""
        hold = held(self.holds, short_code, now) if short_code is not None and now is not None else None
        return refusal(
            kind, opted_out=self.opted_out, banned=self.banned, ban_reason=self.ban_reason, held=hold
        )


_SUBSCRIBERS = table_of(Subscriber)
# The table's columns, not the entity's: a Core statement, which the session runs without the ORM's
# compile and loading steps (the outbox reads up to a thousand subscribers per batch).
_RECIPIENTS = select(
    _SUBSCRIBERS.c.id,
    _SUBSCRIBERS.c.msisdn,
    _SUBSCRIBERS.c.carrier,
    _SUBSCRIBERS.c.country,
    _SUBSCRIBERS.c.opted_out,
    _SUBSCRIBERS.c.banned,
    _SUBSCRIBERS.c.banned_reason,
    _SUBSCRIBERS.c.client_id,
)


async def recipients(
    session: AsyncSession, *, ids: Collection[int] = (), msisdns: Collection[str] = (), premium: bool = False
) -> list[Recipient]:
    """The subscribers with these ids or these MSISDNs (E.164 digits); unknown ones are left out.
    ``premium`` (a service bills): with their premium holds (one more statement)."""
    found: dict[int, Recipient] = {}
    wanted_ids, wanted_msisdns = sorted(set(ids)), sorted(set(msisdns))
    for id_part in chunks(wanted_ids):
        await _read(session, found, among(_SUBSCRIBERS.c.id, id_part))
    for msisdn_part in chunks(wanted_msisdns):
        await _read(session, found, among(_SUBSCRIBERS.c.msisdn, msisdn_part))
    if premium and found:
        holds = await holds_of(session, found)
        for subscriber_id, by_code in holds.items():
            recipient = found[subscriber_id]
            found[subscriber_id] = Recipient(
                recipient.id,
                recipient.msisdn,
                recipient.carrier,
                recipient.country,
                recipient.opted_out,
                recipient.banned,
                recipient.ban_reason,
                by_code,
                recipient.client_id,
            )
    return list(found.values())


async def _read(session: AsyncSession, found: dict[int, Recipient], condition: ColumnElement[bool]) -> None:
    for row in await session.execute(_RECIPIENTS.where(condition)):
        found[row.id] = Recipient(
            row.id,
            row.msisdn,
            row.carrier,
            row.country,
            row.opted_out,
            row.banned,
            row.banned_reason,
            client_id=row.client_id,
        )
