"""Who may receive an MT: the one rule, and the subscriber facts it reads.

The outbox (``gatewayd.outbox``) applies :func:`refusal` when an MT is queued; the claim applies the
same function again when the MT is sent, because a ban or an opt-out can arrive in between. Nobody
else decides it. :func:`may_receive` is the same rule as an SQL condition, for statements that pick
recipients by the thousand (the mass push's audience); a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import chunks
from gatewayd.store.enums import MTKind
from gatewayd.store.errors import RefusalReason
from gatewayd.store.subscribers import Subscriber


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an MT may not go to its subscriber: ``reason`` for the panel's message, ``detail`` for the
    MT's history and last error."""

    reason: RefusalReason
    detail: str


def refusal(kind: MTKind, *, opted_out: bool, banned: bool, ban_reason: str | None = None) -> Refusal | None:
    """Why an MT of ``kind`` may not go to a subscriber with these flags (None: it may). A ban stops
    every MT but the service's notice of the ban itself (``BAN_NOTICE``, ``[[services]] banned_reply``);
    an opt-out every MT but the gateway's own (``SYSTEM``: the answers to BAJA / ALTA / AYUDA, the
    confirmation of the opt-out itself included): a client who sent BAJA gets no charged notice of a
    ban either."""
    if kind is MTKind.BAN_NOTICE and not opted_out:
        return None
    if banned and kind is not MTKind.BAN_NOTICE:
        return Refusal(RefusalReason.BANNED, "subscriber banned" + (f": {ban_reason}" if ban_reason else ""))
    if opted_out and kind is not MTKind.SYSTEM:
        return Refusal(RefusalReason.OPTED_OUT, "subscriber opted out")
    return None


def may_receive(kind: MTKind) -> ColumnElement[bool]:
    """:func:`refusal` as a condition on ``subscribers``: true for the subscribers it lets an MT of
    ``kind`` go to."""
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

    def refusal(self, kind: MTKind) -> Refusal | None:
        return refusal(kind, opted_out=self.opted_out, banned=self.banned, ban_reason=self.ban_reason)


_RECIPIENTS = select(
    Subscriber.id,
    Subscriber.msisdn,
    Subscriber.carrier,
    Subscriber.country,
    Subscriber.opted_out,
    Subscriber.banned,
    Subscriber.banned_reason,
)


async def recipients(
    session: AsyncSession, *, ids: Collection[int] = (), msisdns: Collection[str] = ()
) -> list[Recipient]:
    """The subscribers with these ids or these MSISDNs (E.164 digits); unknown ones are left out."""
    found: dict[int, Recipient] = {}
    wanted_ids, wanted_msisdns = sorted(set(ids)), sorted(set(msisdns))
    for id_part in chunks(wanted_ids):
        await _read(session, found, Subscriber.id.in_(id_part))
    for msisdn_part in chunks(wanted_msisdns):
        await _read(session, found, Subscriber.msisdn.in_(msisdn_part))
    return list(found.values())


async def _read(session: AsyncSession, found: dict[int, Recipient], condition: ColumnElement[bool]) -> None:
    for row in await session.execute(_RECIPIENTS.where(condition)):
        found[row.id] = Recipient(
            row.id, row.msisdn, row.carrier, row.country, row.opted_out, row.banned, row.banned_reason
        )
