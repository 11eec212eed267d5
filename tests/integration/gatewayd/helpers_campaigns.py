"""A hand-built push / MO history for the mass push's tests: who answered which push, and when."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr
from sqlalchemy import update

from gatewayd.config import BindConfig, CarrierConfig
from gatewayd.mo_message import dedup_key
from gatewayd.outbox import OutboxSettings
from gatewayd.store.campaigns import Campaign, CampaignStatus
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.mt.values import NewMT
from gatewayd.store.repo_mo import NewMO
from gatewayd.store.repo_subscribers import set_bans, set_opted_out
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)  # a Monday, 13:00 in Madrid, 06:00 in Mexico City (UTC-6)
SHORT_CODES = {"movistar": "997745", "vodafone": "795500"}


def outbox_settings() -> OutboxSettings:
    carriers = tuple(
        CarrierConfig(
            name=name,
            country="ES",
            short_codes=(code,),
            binds=(
                BindConfig(
                    name=f"{name}-1", host="127.0.0.1", port=2775, system_id="e", password=SecretStr("p")
                ),
            ),
        )
        for name, code in SHORT_CODES.items()
    )
    return OutboxSettings(carriers=carriers, timezone="Europe/Madrid")


@dataclass
class History:
    """Builds subscribers with MOs and pushes at given minutes after :data:`T0`."""

    store: Store
    ids: dict[str, int] = field(default_factory=dict)
    _next: int = 0

    async def client(
        self,
        name: str,
        *,
        carrier: str = "movistar",
        country: str = "ES",
        service: str | None = "chat",
        first_mo: int = 0,
    ) -> int:
        self._next += 1
        prefix = "52155" if country == "MX" else "346"
        msisdn = f"{prefix}{self._next:08d}"
        await self.mo(name, first_mo, msisdn=msisdn, carrier=carrier, country=country, service=service)
        return self.ids[name]

    async def mo(
        self,
        name: str,
        minute: int,
        *,
        msisdn: str | None = None,
        carrier: str = "movistar",
        country: str = "ES",
        service: str | None = "chat",
    ) -> None:
        at = T0 + timedelta(minutes=minute)
        async with self.store.transaction() as session:
            if msisdn is None:
                subscriber = await session.get(Subscriber, self.ids[name])
                assert subscriber is not None
                msisdn, carrier, country = (
                    subscriber.msisdn,
                    subscriber.carrier or carrier,
                    subscriber.country or country,
                )
            code = SHORT_CODES[carrier]
            mo = NewMO(
                dedup_key=dedup_key(carrier, msisdn, code, 0, uuid.uuid4().bytes),
                msisdn=msisdn,
                carrier=carrier,
                short_code=code,
                text=f"mo {name} {minute}",
                received_at=at,
                country=country,
                service=service,
            )
            stored = await self.store.mos.ingest(session, [mo], at)
        self.ids[name] = stored[0].subscriber.id

    async def push(
        self, name: str, minute: int, *, kind: MTKind = MTKind.PUSH, status: MTStatus | None = None
    ) -> None:
        at = T0 + timedelta(minutes=minute)
        async with self.store.transaction() as session:
            subscriber = await session.get(Subscriber, self.ids[name])
            assert subscriber is not None
            carrier = subscriber.carrier or "movistar"
            mt = NewMT(
                kind, carrier, SHORT_CODES[carrier], subscriber.msisdn, "push", subscriber_id=subscriber.id
            )
            (mt_id,) = await queue_mts(session, [mt], at)
            final = status or MTStatus.DELIVERED
            await session.execute(update(MTMessage).where(MTMessage.id == mt_id).values(status=final))

    async def reset(self, name: str, minute: int) -> None:
        async with self.store.transaction() as session:
            await session.execute(
                update(Subscriber)
                .where(Subscriber.id == self.ids[name])
                .values(session_reset_at=T0 + timedelta(minutes=minute))
            )

    async def opt_out(self, name: str) -> None:
        async with self.store.transaction() as session:
            await set_opted_out(session, self.ids[name], True, T0)

    async def ban(self, name: str) -> None:
        async with self.store.transaction() as session:
            subscriber = await session.get(Subscriber, self.ids[name])
            assert subscriber is not None
            await set_bans(session, [subscriber.client_id], reason="abuse", now=T0)

    def names(self, ids: set[int]) -> set[str]:
        return {name for name, sid in self.ids.items() if sid in ids}


async def answered_history(store: Store) -> History:
    """The clients of the tests, pushes at minutes 10, 20, 30 and MOs around them:

    - ``last``: answered the last push; ``middle``: answered the push before the last;
    - ``old``: answered only the third-latest push; ``silent``: answered none;
    - ``new``: never got a push; ``reset``: answered, then their session was reset (no push since);
    - ``reset_silent``: answered before a reset, one push since, not answered;
    - ``opted_out`` / ``banned``: answered the last push, but may not receive a mass push;
    - ``voda``: answered the last push, a vodafone client; ``mexico``: the same in Mexico.
    """
    history = History(store)
    for name in ("last", "middle", "old", "silent", "opted_out", "banned", "reset", "reset_silent"):
        await history.client(name)
    await history.client("voda", carrier="vodafone", service="ligue")
    await history.client("mexico", country="MX")
    await history.client("new", first_mo=40)
    for name in (
        "last",
        "middle",
        "old",
        "silent",
        "opted_out",
        "banned",
        "voda",
        "mexico",
        "reset",
        "reset_silent",
    ):
        for minute in (10, 20, 30):
            # accepted by the SMSC, no receipt yet: sent, so one of the last pushes
            accepted = MTStatus.ACCEPTED if (name, minute) == ("middle", 30) else None
            await history.push(name, minute, status=accepted)
    for name in ("last", "opted_out", "banned", "voda", "mexico"):
        await history.mo(name, 35)
    await history.mo("middle", 25)
    await history.mo("old", 15)
    await history.mo("reset", 35)
    await history.reset("reset", 36)
    await history.mo("reset_silent", 35)
    await history.reset("reset_silent", 36)
    await history.push("reset_silent", 37)
    # a push not sent (being sent, refused, cancelled, failed, expired) was never received: it is
    # not one of the last pushes
    for minute, never_sent in enumerate(
        (MTStatus.REFUSED, MTStatus.CANCELLED, MTStatus.FAILED, MTStatus.EXPIRED, MTStatus.SENDING), start=38
    ):
        await history.push("last", minute, status=never_sent)
    await history.opt_out("opted_out")
    await history.ban("banned")
    return history


async def new_campaign(
    store: Store, *, status: CampaignStatus = CampaignStatus.SCHEDULED, **values: object
) -> int:
    fields: dict[str, object] = {
        "name": "promo",
        "text": "Hola {telefono}, vuelve al chat",
        "last_pushes": 2,
        "include_new": True,
        "tps": 100,
        "status": status,
        "scheduled_at": T0 + timedelta(hours=1),
        "created_by": "ana",
        "created_at": T0,
        "updated_at": T0,
        **values,
    }
    async with store.transaction() as session:
        campaign = Campaign(**fields)
        session.add(campaign)
        await session.flush()
        return campaign.id
