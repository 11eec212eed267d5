"""Queue an MT from outside a conversation (``gatewayd send``, the daemon's in-process API).

Picks the carrier (given, the subscriber's own, or the one serving the number's country) and the
source short code, queues the MT through the store and can wait for its final status.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.config import CarrierConfig, Config
from gatewayd.store.enums import MTKind
from gatewayd.store.mt.queue import queue_mt
from gatewayd.store.mt.status import MTState, mt_state
from gatewayd.store.mt.values import NewMT
from gatewayd.store.repo_subscribers import get_subscriber_by_msisdn
from routing.errors import InvalidNumber
from routing.numbers import country_of, normalise_msisdn, to_international


class SendError(ValueError):
    """The MT cannot be queued as asked (unknown carrier, unreadable number, no carrier for it)."""


def pick_carrier(config: Config, e164: str, *, carrier: str | None, known: str | None) -> CarrierConfig:
    """The named carrier; else the subscriber's known carrier; else the first serving their country."""
    if carrier is not None:
        try:
            return config.carrier(carrier)
        except KeyError:
            names = ", ".join(item.name for item in config.carriers) or "none"
            raise SendError(f"unknown carrier {carrier!r} (configured: {names})") from None
    if known is not None:
        for item in config.carriers:
            if item.name == known:
                return item
    country = country_of(e164)
    for item in config.carriers:
        if item.country == country:
            return item
    raise SendError(f"no carrier serves {e164} (country {country or 'unknown'}); give --carrier")


async def queue_message(
    sessions: async_sessionmaker[AsyncSession],
    config: Config,
    to: str,
    text: str,
    *,
    carrier: str | None = None,
    source: str | None = None,
    kind: MTKind = MTKind.PUSH,
    priority: int = 0,
) -> int:
    """Queue one MT; returns its id. Raises :class:`SendError`, or the store's ``MTRefused`` for a
    subscriber who opted out or is banned."""
    if not text:
        raise SendError("the text is empty")
    default_country = config.carriers[0].country if config.carriers else None
    try:
        e164 = normalise_msisdn(to, default_country)
    except InvalidNumber as error:
        raise SendError(str(error)) from error
    digits = to_international(e164)
    async with sessions() as session, session.begin():
        subscriber = await get_subscriber_by_msisdn(session, digits)
        chosen = pick_carrier(
            config, e164, carrier=carrier, known=subscriber.carrier if subscriber is not None else None
        )
        if source is None:
            if not chosen.short_codes:
                raise SendError(f"carrier {chosen.name} has no short code; give --source")
            source = chosen.short_codes[0]
        return await queue_mt(
            session,
            NewMT(
                kind=kind,
                carrier=chosen.name,
                source=source,
                destination=digits,
                text=text,
                priority=priority,
                subscriber_id=subscriber.id if subscriber is not None else None,
            ),
            datetime.now(UTC),
        )


async def wait_final(sessions: async_sessionmaker[AsyncSession], mt_id: int, *, poll: float = 0.2) -> MTState:
    """Poll the MT (queued by this process: it exists) until it reaches a final status (the caller
    bounds the wait with a timeout)."""
    while True:
        async with sessions() as session:
            state = await mt_state(session, mt_id)
        assert state is not None, f"MT {mt_id} vanished"
        if state.status.is_final:
            return state
        await asyncio.sleep(poll)
