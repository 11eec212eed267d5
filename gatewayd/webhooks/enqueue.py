"""Queues webhook deliveries in the transaction that stores their events: the one hook the pipelines
call (MO ingest, opt-out / opt-in, the MT recorder's status moves and receipts).

:class:`WebhookTargets` holds the active subscriptions in memory (the daemon reads them again when a
panel announces a change, and every ``refresh_interval``): with no subscription wanting an event, queuing
it costs a dictionary look-up and no statement. Otherwise each batch makes ONE insert of a row per
(event, subscription wanting it). Payloads carry the client ID; the MSISDN only for subscriptions made
with ``include_msisdn``. Their JSON is documented in docs/WEBHOOKS.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import among, chunks, table_of
from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.mt.values import MTStatusChange
from gatewayd.store.subscribers import Subscriber
from gatewayd.store.webhooks import (
    DELIVERIES,
    DeliveryQueue,
    DeliveryState,
    WebhookEvent,
    WebhookSubscription,
    headed,
)

MTS = table_of(MTMessage)
SUBSCRIBERS = table_of(Subscriber)


@dataclass(frozen=True, slots=True)
class Target:
    """An active subscription as the enqueue side needs it."""

    subscription_id: int
    include_msisdn: bool


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One event to queue: its type, the client it concerns (the ordering key), its payload without and
    with the MSISDN."""

    event: WebhookEvent
    client_id: str
    msisdn: str
    payload: Mapping[str, Any]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class WebhookTargets:
    """Per event type, the active subscriptions that want it; ``queue`` locks the clients' queues."""

    queue: DeliveryQueue
    by_event: dict[str, tuple[Target, ...]] = field(default_factory=dict)

    def replace(self, subscriptions: Sequence[WebhookSubscription]) -> None:
        by_event: dict[str, list[Target]] = {}
        for subscription in subscriptions:
            for event in subscription.event_set:
                by_event.setdefault(event, []).append(Target(subscription.id, subscription.include_msisdn))
        self.by_event = {event: tuple(targets) for event, targets in by_event.items()}

    def wants(self, event: WebhookEvent) -> bool:
        return event.value in self.by_event

    @property
    def subscription_ids(self) -> list[int]:
        return sorted({target.subscription_id for targets in self.by_event.values() for target in targets})

    async def mt_changes(
        self,
        session: AsyncSession,
        changes: Sequence[MTStatusChange],
        now: datetime,
        *,
        event: WebhookEvent | None = None,
    ) -> int:
        """Queues an event for each MT status change, in the transaction that wrote them: ``event`` for
        all of them (``mt.receipt`` from the receipt paths), or when None each one's own
        (:func:`mt_event`: a submit result's batch also applies the receipts that came with it)."""
        if not changes or not (self.wants(WebhookEvent.MT_STATUS) or self.wants(WebhookEvent.MT_RECEIPT)):
            return 0
        recipients: dict[int, tuple[str | None, str, str, str]] = {}
        for chunk in chunks(sorted({change.mt_id for change in changes})):
            rows = await session.execute(
                select(MTS.c.id, SUBSCRIBERS.c.client_id, MTS.c.destination, MTS.c.kind, MTS.c.carrier)
                .select_from(MTS.outerjoin(SUBSCRIBERS, SUBSCRIBERS.c.id == MTS.c.subscriber_id))
                .where(among(MTS.c.id, chunk))
            )
            for mt_id, client_id, destination, kind, carrier in rows:
                recipients[mt_id] = (client_id, destination, str(getattr(kind, "value", kind)), carrier)
        occurrences = []
        for change in changes:
            found = recipients.get(change.mt_id)
            if found is not None:
                client_id, destination, kind, carrier = found
                moved = event or mt_event(change)
                occurrences.append(mt_changed(moved, change, client_id, destination, kind, carrier))
        return await self.enqueue(session, occurrences, now)

    async def enqueue(self, session: AsyncSession, occurrences: Sequence[Occurrence], now: datetime) -> int:
        """Queues ``occurrences`` for every subscription that wants them (in the caller's transaction);
        returns how many deliveries. Each row waits behind its client's head; a client with none gets its
        oldest one due now."""
        rows: list[dict[str, Any]] = []
        for occurrence in occurrences:
            for target in self.by_event.get(occurrence.event.value, ()):
                body = dict(occurrence.payload)
                if target.include_msisdn:
                    body["msisdn"] = occurrence.msisdn
                rows.append(
                    {
                        "subscription_id": target.subscription_id,
                        "event": occurrence.event.value,
                        "ordering_key": occurrence.client_id,
                        "payload": json.dumps(body, separators=(",", ":"), ensure_ascii=False),
                        "state": DeliveryState.WAITING.value,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
        if rows:
            keys = {(row["subscription_id"], row["ordering_key"]) for row in rows}
            await self.queue.lock_keys(session, keys)
            headless = keys - await headed(session, keys)
            for row in rows:  # the first row of an empty queue is its head, due now
                key = (row["subscription_id"], row["ordering_key"])
                if key in headless:
                    row["state"] = DeliveryState.PENDING.value
                    headless.discard(key)
            await session.execute(insert(DELIVERIES), rows)
        return len(rows)


def mo_received(
    *,
    mo_id: int,
    client_id: str,
    msisdn: str,
    short_code: str,
    service: str | None,
    carrier: str,
    country: str | None,
    keyword: str | None,
    text: str,
    parts: int,
    conversation_id: int | None,
    received_at: datetime,
) -> Occurrence:
    payload = {
        "event": WebhookEvent.MO_RECEIVED.value,
        "mo_id": mo_id,
        "client_id": client_id,
        "short_code": short_code,
        "service": service,
        "carrier": carrier,
        "country": country,
        "keyword": keyword,
        "text": text,
        "parts": parts,
        "conversation_id": conversation_id,
        "received_at": iso(received_at),
    }
    return Occurrence(WebhookEvent.MO_RECEIVED, client_id, msisdn, payload)


def mt_event(change: MTStatusChange) -> WebhookEvent:
    """``mt.receipt`` for a move from ``accepted`` to a final status (only a delivery receipt makes
    one), ``mt.status`` for the others (submit results, retries, requeues)."""
    if change.previous is MTStatus.ACCEPTED and change.status.is_final:
        return WebhookEvent.MT_RECEIPT
    return WebhookEvent.MT_STATUS


def mt_changed(
    event: WebhookEvent,
    change: MTStatusChange,
    client_id: str | None,
    destination: str,
    kind: str,
    carrier: str,
) -> Occurrence:
    payload = {
        "event": event.value,
        "mt_id": change.mt_id,
        "client_id": client_id,
        "kind": kind,
        "carrier": carrier,
        "status": change.status.value,
        "previous": change.previous.value,
        "detail": change.detail,
        "at": iso(change.at),
    }
    # an MT to a number that never wrote has no client: its number orders its deliveries
    return Occurrence(event, client_id or destination, destination, payload)


def opt_changed(
    *, opted_out: bool, client_id: str, msisdn: str, short_code: str, keyword: str, mo_id: int, at: datetime
) -> Occurrence:
    event = WebhookEvent.CLIENT_OPT_OUT if opted_out else WebhookEvent.CLIENT_OPT_IN
    payload = {
        "event": event.value,
        "client_id": client_id,
        "short_code": short_code,
        "keyword": keyword,
        "mo_id": mo_id,
        "at": iso(at),
    }
    return Occurrence(event, client_id, msisdn, payload)
