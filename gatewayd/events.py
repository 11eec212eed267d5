"""The daemon's events on the bus: one place that knows the topics and builds the JSON payloads.

Topics come from the bus (``<prefix>/<shortcode>/mo``, ``<prefix>/mt/<id>/status``,
``<prefix>/bind/<carrier>/state``, ``<prefix>/status``); the bus adds ``"v": 1``. Publishing never
waits on a broker: the bus buffers and counts what it drops, so an outage never slows SMPP traffic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gatewayd.bus import EventBus
from gatewayd.logging import log_event

if TYPE_CHECKING:
    from gatewayd.mo_message import InboundMO
    from gatewayd.store.mt.values import MTStatusChange

log = logging.getLogger("gatewayd.events")

Payload = dict[str, Any]


def mo_payload(mo: InboundMO, mo_id: int, client_id: str, conversation_id: int | None) -> Payload:
    """Ids and routing facts only: the subscriber's number and words stay in the database (whoever
    shows an MO reads it there by ``id``); ``client_id`` is the manual's pseudonymous client ID."""
    return {
        "id": mo_id,
        "short_code": mo.short_code,
        "carrier": mo.carrier,
        "bind": mo.bind,
        "country": mo.country,
        "client_id": client_id,
        "conversation_id": conversation_id,
        "parts": mo.parts_total,
        "incomplete": mo.incomplete,
        "keyword": mo.keyword.keyword if mo.keyword else None,
        "received_at": mo.received_at.isoformat(),
    }


def mt_status_payload(
    mt_id: int, status: str, previous: str | None, detail: str | None, at: datetime
) -> Payload:
    return {"id": mt_id, "status": status, "previous": previous, "detail": detail, "at": at.isoformat()}


def bind_state_payload(carrier: str, bind: str, up: bool, binds_up: int) -> Payload:
    return {
        "carrier": carrier,
        "bind": bind,
        "up": up,
        "binds_up": binds_up,
        "at": datetime.now(UTC).isoformat(),
    }


def status_payload(binds_up: Mapping[str, int], binds: Mapping[str, int], instance: str) -> Payload:
    """Binds up in this daemon (``instance``) and binds configured per carrier, as it sees them now
    (several daemons share the configured binds: a panel adds up what each has up)."""
    return {
        "binds_up": dict(binds_up),
        "binds": dict(binds),
        "instance": instance,
        "at": datetime.now(UTC).isoformat(),
    }


class EventPublisher:
    """Publishes the daemon's events on ``bus``; a failing publish is logged, never raised into the
    pipelines (the message is already committed: its event is best effort)."""

    def __init__(self, bus: EventBus, *, on_conversation: Callable[[int], None] | None = None) -> None:
        self.bus = bus
        self.topics = bus.topics
        #: Told the conversation of each MO published (the daemon's assignment hands it out).
        self.on_conversation = on_conversation
        self._tasks: set[asyncio.Task[None]] = set()
        self.failed = 0

    async def _publish(self, topic: str, payload: Payload) -> None:
        try:
            await self.bus.publish(topic, payload)
        except Exception as error:
            self.failed += 1
            log_event(log, "event.publish_failed", logging.WARNING, topic=topic, error=repr(error))

    async def mo(self, mo: InboundMO, mo_id: int, client_id: str, conversation_id: int | None) -> None:
        await self._publish(self.topics.mo(mo.short_code), mo_payload(mo, mo_id, client_id, conversation_id))
        if conversation_id is not None and self.on_conversation is not None:
            self.on_conversation(conversation_id)

    async def mt_changes(self, changes: Iterable[MTStatusChange]) -> None:
        stamps: dict[datetime, str] = {}  # a batch's changes share their time: formatted once
        for change in changes:
            at = stamps.get(change.at)
            if at is None:
                at = stamps[change.at] = change.at.isoformat()
            await self._publish(
                self.topics.mt_status(change.mt_id),
                {
                    "id": change.mt_id,
                    "status": change.status.value,
                    "previous": change.previous.value,
                    "detail": change.detail,
                    "at": at,
                },
            )

    async def mt_status(self, mt_id: int, status: str, detail: str | None, at: datetime) -> None:
        await self._publish(self.topics.mt_status(mt_id), mt_status_payload(mt_id, status, None, detail, at))

    def bind_state(self, carrier: str, bind: str, up: bool, binds_up: int) -> None:
        """From a synchronous state callback: published by a short task (binds change rarely)."""
        task = asyncio.get_running_loop().create_task(
            self._publish(self.topics.bind_state(carrier), bind_state_payload(carrier, bind, up, binds_up)),
            name=f"events.bind_state[{bind}]",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def status(self, binds_up: Mapping[str, int], binds: Mapping[str, int], *, instance: str) -> None:
        await self._publish(self.topics.status(), status_payload(binds_up, binds, instance))
