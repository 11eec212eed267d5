"""The desk's server-sent events: what concerns the signed-in operator, live from the bus.

Events: ``ready`` (subscribed, with my presence), ``assigned`` (a conversation came to me, with its
queue item), ``unassigned`` (it left me), ``mo`` (the subscriber wrote in one of my conversations),
``mt`` (an MT I watch changed status), ``presence`` (my presence changed: I left the desk, or chose
another in another tab), ``signout`` (the session ended; the stream ends too).

A bus event only says *which* row changed. What the desk shows -- texts, times, statuses, who holds a
conversation -- is read from the database by id, so whoever can publish on the broker cannot put words
on an operator's desk; the event's ids only pick which rows to read. Events that queued up while the
stream was busy are handled as one batch, with one query per kind.

At every heartbeat (a comment line goes out when nothing else did) the session is re-checked and the
desk marked live (``panel.presence``); an event about my account (signed out, locked, left the desk)
re-checks at once. The stream ends as soon as the panel begins to stop (``PanelRuntime.stopping``),
so it never holds the server's shutdown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gatewayd.bus.base import EventBus, Subscription
from gatewayd.bus.events import Event
from gatewayd.store.accounts import Presence
from gatewayd.store.base import utcnow
from gatewayd.store.repo_assignment import touch_desk
from gatewayd.store.repo_desk import (
    MOEntry,
    MTState,
    QueueItem,
    conversation_holder,
    held_conversation_ids,
    mo_entries,
    mt_states,
    operator_queue,
    watched_mt_ids,
)
from panel.access import requires
from panel.auth.identity import CurrentUser
from panel.auth.permissions import OPERATOR_MODE
from panel.auth.sessions import get_active_session
from panel.i18n import PRESENCE_LABELS, format_datetime
from panel.runtime import PanelRuntime
from panel.web import error_response, panel, require_user
from plugins.desk.labels import CONVERSATION_STATUS, FAILURES, MT_STATUS
from plugins.desk.service import desk_settings

T = TypeVar("T")


async def unbroken(work: Coroutine[Any, Any, T]) -> T:
    """Runs one unit of database work to its end even when the stream is cancelled meanwhile (the
    browser left: the server cancels the response). A transaction cut halfway would keep its
    connection, and on SQLite the write lock, stalling every other writer of the panel."""
    return await asyncio.shield(asyncio.ensure_future(work))


def sse(name: str, data: Mapping[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(slots=True)
class _Batch:
    """The ids a batch of bus events names, sorted by what must be read for them."""

    mo_ids: list[int] = field(default_factory=list)
    mt_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class OperatorStream:
    """Turns bus events into this operator's desk events."""

    runtime: PanelRuntime
    user: CurrentUser
    token: str
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
            "status_label": self.text(CONVERSATION_STATUS[item.status.value]),
            "overdue": item.overdue,
            "waiting_since": item.waiting_since.isoformat() if item.waiting_since else None,
            "last_text": item.last_text,
            "last_at": self.when(item.last_at),
        }

    def presence(self, presence: Presence) -> dict[str, str]:
        return {"presence": presence.value, "label": self.text(PRESENCE_LABELS[presence])}

    # -- the database --------------------------------------------------------------------------------

    async def open(self) -> Presence | None:
        """Loads what I hold and watch and marks my desk live; None when the session is over."""
        return await unbroken(self._open())

    async def _open(self) -> Presence | None:
        async with self.runtime.sessionmaker() as session, session.begin():
            presence = await self._alive(session, touch=True)
            if presence is not None:
                self.held = await held_conversation_ids(session, self.user.account_id)
                self.watched = await watched_mt_ids(session, self.user.account_id)
            return presence

    async def check_in(self, *, touch: bool) -> Presence | None:
        """My presence while the session lives (marking the desk live when ``touch``), else None."""
        return await unbroken(self._check_in(touch))

    async def _check_in(self, touch: bool) -> Presence | None:
        sessions = self.runtime.sessionmaker if touch else self.runtime.readers
        async with sessions() as session, session.begin():
            return await self._alive(session, touch=touch)

    async def _alive(self, session: AsyncSession, *, touch: bool) -> Presence | None:
        found = await get_active_session(session, self.token, self.runtime.settings)
        if found is None or found[0].id != self.user.session_id:
            return None
        if touch:
            await touch_desk(session, self.user.account_id, utcnow())
        return found[1].presence

    async def _read(self, batch: _Batch) -> tuple[dict[int, MOEntry], dict[int, MTState]]:
        async with self.runtime.readers() as session:
            return await mo_entries(session, batch.mo_ids), await mt_states(session, batch.mt_ids)

    async def _read_assigned(self, conversation_id: int) -> tuple[list[QueueItem], set[int]]:
        policy = desk_settings(self.runtime).policy
        async with self.runtime.readers() as session:
            items = await operator_queue(
                session,
                self.user.account_id,
                utcnow(),
                policy.overdue_after,
                conversation_ids=[conversation_id],
            )
            return items, await watched_mt_ids(session, self.user.account_id)

    async def _read_holder(self, conversation_id: int) -> int | None:
        async with self.runtime.readers() as session:
            return await conversation_holder(session, conversation_id)

    # -- bus events ----------------------------------------------------------------------------------

    def _batch(self, events: Sequence[Event]) -> _Batch:
        """The MOs and MTs worth reading: those whose event names one of my conversations or MTs (the
        database then says whether they really are mine)."""
        batch = _Batch()
        for event in events:
            levels = event.topic.split("/")
            payload = event.payload
            if len(levels) == 3 and levels[2] == "mo":
                mo_id = _integer(payload.get("id"))
                if mo_id is not None and _integer(payload.get("conversation_id")) in self.held:
                    batch.mo_ids.append(mo_id)
            elif len(levels) == 4 and levels[1] == "mt" and levels[3] == "status":
                mt_id = _integer(payload.get("id"))
                if mt_id is not None and (
                    mt_id in self.watched
                    or _integer(payload.get("operator_id")) == self.user.account_id
                    or _integer(payload.get("conversation_id")) in self.held
                ):
                    batch.mt_ids.append(mt_id)
        return batch

    async def handle(self, events: Sequence[Event]) -> tuple[list[str], bool]:
        """The desk events for a batch of bus events, in order, and whether the stream ends (signed
        out)."""
        batch = self._batch(events)
        mos, mts = await unbroken(self._read(batch)) if batch.mo_ids or batch.mt_ids else ({}, {})
        chunks: list[str] = []
        shown_mts: set[int] = set()
        for event in events:
            levels = event.topic.split("/")
            payload = event.payload
            chunk: str | None = None
            if len(levels) == 3 and levels[2] == "mo":
                chunk = self._mo(mos.get(_integer(payload.get("id")) or 0))
            elif len(levels) == 4 and levels[1] == "mt" and levels[3] == "status":
                mt_id = _integer(payload.get("id")) or 0
                if mt_id not in shown_mts:  # one event per MT and batch: its status now
                    shown_mts.add(mt_id)
                    chunk = self._mt(mts.get(mt_id))
            elif len(levels) == 4 and levels[1] == "conversation" and levels[3] == "assigned":
                chunk = await self._assigned(payload)
            elif len(levels) == 4 and levels[1] == "account" and levels[3] == "changed":
                if _integer(payload.get("account_id")) == self.user.account_id:
                    presence = await self.check_in(touch=False)
                    if presence is None:
                        chunks.append(sse("signout", {}))
                        return chunks, True
                    chunk = sse("presence", self.presence(presence))
            if chunk is not None:
                chunks.append(chunk)
        return chunks, False

    def _mo(self, mo: MOEntry | None) -> str | None:
        if mo is None or mo.conversation_id not in self.held:
            return None
        return sse(
            "mo",
            {
                "conversation_id": mo.conversation_id,
                "id": mo.id,
                "text": mo.text,
                "at": self.when(mo.received_at),
                "status_label": self.text(CONVERSATION_STATUS["waiting"]),
            },
        )

    def _mt(self, mt: MTState | None) -> str | None:
        if mt is None:
            return None
        mine = mt.operator_id == self.user.account_id or mt.conversation_id in self.held
        if mt.id not in self.watched and not mine:
            return None
        if mt.status.is_final:
            self.watched.discard(mt.id)
        else:
            self.watched.add(mt.id)
        return sse(
            "mt",
            {
                "id": mt.id,
                "status": mt.status.value,
                "label": self.text(MT_STATUS[mt.status.value]),
                "final": mt.status.is_final,
                "failure": self.text(FAILURES.get(mt.failure, mt.failure)) if mt.failure else "",
            },
        )

    async def _assigned(self, payload: Mapping[str, Any]) -> str | None:
        conversation_id = _integer(payload.get("conversation_id"))
        if conversation_id is None:
            return None
        if _integer(payload.get("operator_id")) == self.user.account_id:
            items, watched = await unbroken(self._read_assigned(conversation_id))
            self.watched |= watched
            if not items:  # not mine after all: closed, handed on again, or never
                return None
            self.held.add(conversation_id)
            return sse("assigned", self.queue_item(items[0]))
        if conversation_id in self.held:
            if await unbroken(self._read_holder(conversation_id)) == self.user.account_id:
                return None  # still mine: the event was stale or not the database's
            self.held.discard(conversation_id)
            return sse("unassigned", {"conversation_id": conversation_id})
        return None

    # -- the stream ----------------------------------------------------------------------------------

    async def run(self, bus: EventBus, heartbeat: float) -> AsyncIterator[str]:
        async with bus.subscribe(bus.topics.everything()) as subscription:
            # The panel stopping closes the subscription: the stream ends instead of holding shutdown.
            with self.runtime.stopping.ending(subscription.close):
                presence = await self.open()  # after subscribing: nothing published meanwhile is missed
                if presence is None:
                    yield sse("signout", {})
                    return
                yield "retry: 2000\n\n"
                yield sse("ready", {"held": len(self.held), **self.presence(presence)})
                async for chunk in self._events(subscription, heartbeat):
                    yield chunk

    async def _beat(self) -> list[str] | None:
        if await self.check_in(touch=True) is None:
            return None
        return [": heartbeat\n\n"]

    def _events(self, subscription: Subscription, heartbeat: float) -> AsyncIterator[str]:
        return bus_stream(subscription, heartbeat, self._beat, self.handle)


Beat = Callable[[], Awaitable[list[str] | None]]
Handler = Callable[[Sequence[Event]], Awaitable[tuple[list[str], bool]]]


async def bus_stream(
    subscription: Subscription, heartbeat: float, beat: Beat, handle: Handler
) -> AsyncIterator[str]:
    """The machinery of a panel's event stream (the desk's, the monitor's): bus events that queued up
    while the stream was busy are handled as one batch (``handle`` returns the chunks and whether the
    stream ends); every ``heartbeat`` seconds, also under constant traffic, ``beat`` re-checks the
    session (None: it is over, ``signout`` is sent and the stream ends) and returns what to send (at
    least a comment line, so the connection is seen alive). Ends when the subscription closes."""
    clock = asyncio.get_running_loop().time
    next_check = clock() + heartbeat
    while True:
        remaining = next_check - clock()
        if remaining <= 0:
            chunks = await beat()
            if chunks is None:
                yield sse("signout", {})
                return
            for chunk in chunks:
                yield chunk
            next_check = clock() + heartbeat
            continue
        try:
            first = await asyncio.wait_for(subscription.get(), timeout=remaining)
        except TimeoutError:
            continue
        except StopAsyncIteration:  # the panel is stopping, or its bus closed
            return
        chunks, ended = await handle([first, *subscription.take_queued()])
        for chunk in chunks:
            yield chunk
        if ended:
            return


@requires(OPERATOR_MODE)
async def desk_events(request: Request) -> Response:
    user = require_user(request)
    runtime = panel(request)
    if runtime.bus is None:
        return error_response(request, 503)
    token = request.cookies.get(runtime.settings.session_cookie, "")
    stream = OperatorStream(runtime, user, token)
    heartbeat = desk_settings(runtime).heartbeat
    return StreamingResponse(
        stream.run(runtime.bus, heartbeat),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
