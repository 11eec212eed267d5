"""The desk's server-sent events: what concerns the signed-in operator, live from the bus.

Events: ``ready`` (subscribed), ``assigned`` (a conversation came to me, with its queue item),
``unassigned`` (it left me), ``mo`` (the subscriber wrote in one of my conversations), ``mt`` (an MT
I watch changed status), ``signout`` (the session ended; the stream ends too). A comment line goes
out when nothing happened for a heartbeat; the session is re-checked then. The stream ends as soon
as the panel begins to stop (``PanelRuntime.stopping``), so it never holds the server's shutdown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gatewayd.bus.base import EventBus, Subscription
from gatewayd.bus.events import Event
from gatewayd.store.base import utcnow
from gatewayd.store.enums import MTStatus
from panel.access import requires
from panel.auth.identity import CurrentUser
from panel.auth.permissions import OPERATOR_MODE
from panel.auth.sessions import get_active_session
from panel.i18n import format_datetime
from panel.runtime import PanelRuntime
from panel.web import error_response, panel, require_user
from plugins.desk.queries import QueueItem, held_conversation_ids, operator_queue, watched_mt_ids
from plugins.desk.service import desk_settings

T = TypeVar("T")


async def _unbroken(work: Coroutine[Any, Any, T]) -> T:
    """Runs one unit of database work to its end even when the stream is cancelled meanwhile (the
    browser left: the server cancels the response). A transaction cut halfway would keep its
    connection, and on SQLite the write lock, stalling every other writer of the panel."""
    return await asyncio.shield(asyncio.ensure_future(work))


def sse(name: str, data: Mapping[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(slots=True)
class OperatorStream:
    """Turns bus events into this operator's desk events."""

    runtime: PanelRuntime
    user: CurrentUser
    held: set[int] = field(default_factory=set)
    watched: set[int] = field(default_factory=set)

    def text(self, key: str) -> str:
        return self.runtime.catalog.gettext(self.user.language, key)

    def when(self, at: datetime | None) -> str:
        return format_datetime(at, self.user.timezone, "short")

    def queue_item(self, item: QueueItem) -> dict[str, Any]:
        return {
            "conversation_id": item.conversation_id,
            "label": item.label,
            "status": item.status.value,
            "status_label": self.text(f"desk.conversation.status.{item.status.value}"),
            "overdue": item.overdue,
            "waiting_since": item.waiting_since.isoformat() if item.waiting_since else None,
            "last_text": item.last_text,
            "last_at": self.when(item.last_at),
        }

    async def load(self) -> None:
        self.held, self.watched = await _unbroken(self._read_held_and_watched())

    async def _read_held_and_watched(self) -> tuple[set[int], set[int]]:
        async with self.runtime.readers() as session:
            held = await held_conversation_ids(session, self.user.account_id)
            return held, await watched_mt_ids(session, self.user.account_id)

    async def handle(self, event: Event) -> str | None:
        """The desk event for a bus event, or None when it does not concern this operator."""
        levels = event.topic.split("/")
        payload = event.payload
        if len(levels) == 3 and levels[2] == "mo":
            return self._mo(payload)
        if len(levels) == 4 and levels[1] == "mt" and levels[3] == "status":
            return self._mt(payload)
        if len(levels) == 4 and levels[1] == "conversation" and levels[3] == "assigned":
            return await self._assigned(payload)
        return None

    def _mo(self, payload: Mapping[str, Any]) -> str | None:
        conversation_id = _integer(payload.get("conversation_id"))
        if conversation_id is None or conversation_id not in self.held:
            return None
        text = payload.get("text")
        return sse(
            "mo",
            {
                "conversation_id": conversation_id,
                "id": _integer(payload.get("id")),
                "text": text if isinstance(text, str) else "",
                "at": self.when(_instant(payload.get("received_at"))),
                "status_label": self.text("desk.conversation.status.waiting"),
            },
        )

    def _mt(self, payload: Mapping[str, Any]) -> str | None:
        mt_id = _integer(payload.get("id"))
        if mt_id is None:
            mt_id = _integer(payload.get("mt_id"))
        try:
            status = MTStatus(str(payload.get("status")))
        except ValueError:
            return None
        if mt_id is None:
            return None
        if mt_id not in self.watched:
            mine = _integer(payload.get("operator_id")) == self.user.account_id
            if not (mine or _integer(payload.get("conversation_id")) in self.held):
                return None
            self.watched.add(mt_id)
        if status.is_final:
            self.watched.discard(mt_id)
        return sse(
            "mt",
            {
                "id": mt_id,
                "status": status.value,
                "label": self.text(f"desk.mt.status.{status.value}"),
                "final": status.is_final,
            },
        )

    async def _assigned(self, payload: Mapping[str, Any]) -> str | None:
        conversation_id = _integer(payload.get("conversation_id"))
        if conversation_id is None:
            return None
        if _integer(payload.get("operator_id")) == self.user.account_id:
            items, watched = await _unbroken(self._read_assigned(conversation_id))
            self.watched |= watched
            if not items:  # already closed or handed on again
                return None
            self.held.add(conversation_id)
            return sse("assigned", self.queue_item(items[0]))
        if conversation_id in self.held:
            self.held.discard(conversation_id)
            return sse("unassigned", {"conversation_id": conversation_id})
        return None

    async def _read_assigned(self, conversation_id: int) -> tuple[list[QueueItem], set[int]]:
        policy = desk_settings(self.runtime).policy
        async with self.runtime.readers() as session:
            items = await operator_queue(
                session, self.user.account_id, utcnow(), policy, conversation_ids=[conversation_id]
            )
            return items, await watched_mt_ids(session, self.user.account_id)

    async def session_alive(self, token: str) -> bool:
        return await _unbroken(self._read_session_alive(token))

    async def _read_session_alive(self, token: str) -> bool:
        async with self.runtime.readers() as session:
            found = await get_active_session(session, token, self.runtime.settings)
        return found is not None and found[0].id == self.user.session_id

    async def run(self, bus: EventBus, token: str, heartbeat: float) -> AsyncIterator[str]:
        async with bus.subscribe(bus.topics.everything()) as subscription:
            # The panel stopping closes the subscription: the stream ends instead of holding shutdown.
            with self.runtime.stopping.ending(subscription.close):
                await self.load()  # after subscribing: nothing published meanwhile is missed
                yield "retry: 2000\n\n"
                yield sse("ready", {"held": len(self.held)})
                async for chunk in self._events(subscription, token, heartbeat):
                    yield chunk

    async def _events(self, subscription: Subscription, token: str, heartbeat: float) -> AsyncIterator[str]:
        clock = asyncio.get_running_loop().time
        next_check = clock() + heartbeat
        while True:
            remaining = next_check - clock()
            if remaining <= 0:  # also under constant traffic: the session is checked every heartbeat
                if not await self.session_alive(token):
                    yield sse("signout", {})
                    return
                yield ": heartbeat\n\n"
                next_check = clock() + heartbeat
                continue
            try:
                event = await asyncio.wait_for(subscription.get(), timeout=remaining)
            except TimeoutError:
                continue
            except StopAsyncIteration:  # the panel is stopping, or its bus closed
                return
            chunk = await self.handle(event)
            if chunk is not None:
                yield chunk


@requires(OPERATOR_MODE)
async def desk_events(request: Request) -> Response:
    user = require_user(request)
    runtime = panel(request)
    if runtime.bus is None:
        return error_response(request, 503)
    token = request.cookies.get(runtime.settings.session_cookie, "")
    stream = OperatorStream(runtime, user)
    heartbeat = desk_settings(runtime).heartbeat
    return StreamingResponse(
        stream.run(runtime.bus, token, heartbeat),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
