"""The monitor's server-sent events: every live conversation's row as it changes, live from the bus.

Events: ``ready`` (subscribed), ``rows`` (compact rows of the conversations that changed, and the ids
of those that left the monitor's view: closed, or no longer matching its filters), ``operators`` (the
presence strip, when an assignment or an account changed), ``signout`` (the session ended).

As on the desk (whose machinery this reuses, :func:`plugins.desk.stream.bus_stream`), a bus event only
says *which* conversation changed: rows are read from the database by id, one batch of events at a time
(two queries per batch, whatever its size). Rows are compact (one-letter keys, ISO instants): the
browser computes colours and elapsed times itself and redraws at most once per animation frame. At
every heartbeat the session is re-checked, the shown conversations that were closed meanwhile drop
off and the strip is refreshed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gatewayd.bus.base import EventBus
from gatewayd.bus.events import Event
from gatewayd.store.base import utcnow
from gatewayd.store.repo_monitor import (
    MonitorFilters,
    MonitorRow,
    OperatorLoad,
    closed_among,
    conversations_of_mts,
    live_conversations,
    monitor_state,
    operator_loads,
)
from panel.auth.identity import CurrentUser
from panel.auth.sessions import get_active_session
from panel.i18n import PRESENCE_LABELS
from panel.runtime import PanelRuntime
from plugins.desk.labels import MT_STATUS
from plugins.desk.service import desk_settings
from plugins.desk.stream import bus_stream, sse, unbroken


def iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).isoformat()


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _kind(topic: str) -> str | None:
    """What a bus topic tells the monitor about: ``mo``, ``mt`` (a status), ``assigned``, ``account``."""
    levels = topic.split("/")
    if len(levels) == 3 and levels[2] == "mo":
        return "mo"
    if len(levels) == 4 and levels[1] == "mt" and levels[3] == "status":
        return "mt"
    if len(levels) == 4 and levels[1] == "conversation" and levels[3] == "assigned":
        return "assigned"
    if len(levels) == 4 and levels[1] == "account" and levels[3] == "changed":
        return "account"
    return None


@dataclass(slots=True)
class MonitorView:
    """What one monitor shows: its filters and each service's overdue threshold; turns rows and
    operators into their compact, translated form."""

    runtime: PanelRuntime
    user: CurrentUser
    filters: MonitorFilters
    thresholds: Mapping[str, timedelta]
    default_threshold: timedelta

    def text(self, key: str) -> str:
        return self.runtime.catalog.gettext(self.user.language, key)

    def threshold(self, service: str | None) -> timedelta:
        return self.thresholds.get(service or "", self.default_threshold)

    def visible(self, rows: Sequence[MonitorRow], now: datetime) -> list[MonitorRow]:
        """The rows the state filter lets through (the others are filtered in SQL)."""
        wanted = self.filters.state
        if wanted is None:
            return list(rows)
        return [row for row in rows if monitor_state(row, now, self.threshold(row.service)) is wanted]

    def row(self, row: MonitorRow, now: datetime) -> dict[str, Any]:
        status = row.last_mt_status
        return {
            "i": row.conversation_id,
            "l": row.label,
            "x": monitor_state(row, now, self.threshold(row.service)).value,
            "s": row.status.value,
            "v": row.service,
            "c": row.short_code,
            "k": row.carrier,
            "o": row.operator_id,
            "n": row.operator_name,
            "w": iso(row.waiting_since),
            "t": iso(row.since),
            "m": row.last_mt_text,
            "d": status.value if status is not None else None,
            "dl": self.text(MT_STATUS[status.value]) if status is not None else None,
        }

    def operator(self, load: OperatorLoad) -> dict[str, Any]:
        return {
            "i": load.account_id,
            "n": load.display_name,
            "p": load.presence.value,
            "pl": self.text(PRESENCE_LABELS[load.presence]),
            "c": load.open_conversations,
            "m": load.limit,
            "r": load.has_room,
        }


@dataclass(slots=True)
class MonitorStream:
    view: MonitorView
    token: str
    shown: set[int] = field(default_factory=set)

    @property
    def runtime(self) -> PanelRuntime:
        return self.view.runtime

    async def _alive(self) -> bool:
        async with self.runtime.readers() as session:
            found = await get_active_session(session, self.token, self.runtime.settings)
        return found is not None and found[0].id == self.view.user.session_id

    async def _open(self) -> bool:
        if not await unbroken(self._alive()):
            return False
        async with self.runtime.readers() as session:
            rows = await live_conversations(session, self.view.filters)
        self.shown = {row.conversation_id for row in self.view.visible(rows, utcnow())}
        return True

    async def _operators(self) -> str:
        policy = desk_settings(self.runtime).policy
        async with self.runtime.readers() as session:
            loads = await operator_loads(session, utcnow(), policy.presence_grace, policy.session_idle)
        return sse("operators", {"operators": [self.view.operator(load) for load in loads]})

    async def _rows(self, conversation_ids: Sequence[int], mt_ids: Sequence[int] = ()) -> str | None:
        async with self.runtime.readers() as session:
            conversation_ids = sorted({*conversation_ids, *await conversations_of_mts(session, mt_ids)})
            if not conversation_ids:
                return None
            rows = await live_conversations(session, self.view.filters, conversation_ids=conversation_ids)
        now = utcnow()
        visible = self.view.visible(rows, now)
        seen = {row.conversation_id for row in visible}
        gone = sorted(set(conversation_ids) - seen)
        self.shown -= set(gone)
        self.shown |= seen
        return sse("rows", {"rows": [self.view.row(row, now) for row in visible], "gone": gone})

    async def handle(self, events: Sequence[Event]) -> tuple[list[str], bool]:
        """The monitor events for a batch of bus events, and whether the stream ends (signed out)."""
        changed: set[int] = set()
        mts: set[int] = set()  # MTs whose event does not name their conversation (a receipt's)
        strip = False
        for event in events:
            kind = _kind(event.topic)
            if kind == "account":
                strip = True
                if _integer(event.payload.get("account_id")) == self.view.user.account_id:
                    if not await unbroken(self._alive()):
                        return [sse("signout", {})], True
                continue
            conversation_id = _integer(event.payload.get("conversation_id"))
            mt_id = _integer(event.payload.get("id"))
            if kind is not None and conversation_id is not None:
                changed.add(conversation_id)
            elif kind == "mt" and mt_id is not None:
                mts.add(mt_id)
            strip = strip or kind == "assigned"
        chunks: list[str] = []
        if changed or mts:
            rows = await unbroken(self._rows(sorted(changed), sorted(mts)))
            if rows is not None:
                chunks.append(rows)
        if strip:
            chunks.append(await unbroken(self._operators()))
        return chunks, False

    async def _beat(self) -> list[str] | None:
        if not await unbroken(self._alive()):
            return None
        chunks = [": heartbeat\n\n"]
        async with self.runtime.readers() as session:
            closed = await closed_among(session, sorted(self.shown))
        if closed:
            self.shown -= closed
            chunks.append(sse("rows", {"rows": [], "gone": sorted(closed)}))
        chunks.append(await unbroken(self._operators()))
        return chunks

    async def run(self, bus: EventBus, heartbeat: float) -> AsyncIterator[str]:
        async with bus.subscribe(bus.topics.everything()) as subscription:
            with self.runtime.stopping.ending(subscription.close):
                if not await self._open():  # after subscribing: nothing published meanwhile is missed
                    yield sse("signout", {})
                    return
                yield "retry: 2000\n\n"
                yield sse("ready", {"shown": len(self.shown)})
                async for chunk in bus_stream(subscription, heartbeat, self._beat, self.handle):
                    yield chunk


def stream_response(request: Request, view: MonitorView, bus: EventBus) -> Response:
    runtime = view.runtime
    token = request.cookies.get(runtime.settings.session_cookie, "")
    stream = MonitorStream(view, token)
    return StreamingResponse(
        stream.run(bus, desk_settings(runtime).heartbeat),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
