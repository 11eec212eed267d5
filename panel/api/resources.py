"""Reading MOs, conversations and clients (cursor pages, filters) and the client actions: opt-out,
opt-in, ban, unban (through :mod:`gatewayd.client_control`, as the panel's client control does). The
MSISDN only for a key with the ``msisdn`` scope."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.assignment import publish_assignments
from gatewayd.client_control import change_bans, change_opt_out
from gatewayd.store.apikeys import Scope
from gatewayd.store.audit import AuditEntry
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.messages import MOMessage
from gatewayd.store.subscribers import Subscriber
from gatewayd.store.time_limits import time_limit
from panel.api import models
from panel.api.operations import Call, Reply
from panel.api.problems import Problem
from panel.audit import client_address
from panel.runtime import runtime

_CURSOR_PREFIX = b"v1:"
#: Seconds each statement of a list read may run (PostgreSQL; SQLite has no statement time limit). A
#: page walks at most 501 rows down the id index, milliseconds; a filter that makes it scan a large
#: table instead is given up (a 503 ``busy`` problem) before a few such reads hold every pooled
#: connection: with reads bounded so, a request queued for a connection waits seconds, well inside the
#: pool's 30 s wait.
LIST_READ_SECONDS = 3.0
#: A SELECT of any columns (SQLAlchemy types its rows variadically).
Statement = TypeVar("Statement", bound=Select[*tuple[Any, ...]])


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(_CURSOR_PREFIX + str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    digits = raw.removeprefix(_CURSOR_PREFIX)
    if not raw.startswith(_CURSOR_PREFIX) or not digits.isdigit() or len(digits) > 18:
        raise Problem(
            422,
            "invalid-request",
            "The cursor is not one this API gave.",
            errors=[{"loc": ["query", "cursor"], "msg": "not a cursor of this API", "type": "cursor"}],
        )
    return int(digits)


def _sees_numbers(call: Call) -> bool:
    return Scope.MSISDN.value in call.caller.scopes


async def _page(
    call: Call, statement: Statement, id_column: Any, query: models.ListQuery
) -> tuple[list[Any], str | None]:
    """Rows of ``statement`` newest first from the cursor on, and the next page's cursor; a statement
    over :data:`LIST_READ_SECONDS` raises :class:`~gatewayd.store.time_limits.TooSlow`."""
    if query.cursor is not None:
        statement = statement.where(id_column < decode_cursor(query.cursor))
    state = runtime(call.request)
    async with (
        state.readers() as session,
        time_limit(session, LIST_READ_SECONDS, enforced=state.store.statement_timeouts),
    ):
        ordered = statement.order_by(id_column.desc()).limit(query.limit + 1)
        rows = list((await session.execute(ordered)).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return rows, encode_cursor(rows[-1][0].id) if more and rows else None


def _window(statement: Statement, column: Any, query: models.ListQuery) -> Statement:
    if query.since is not None:
        statement = statement.where(column >= query.since)
    if query.until is not None:
        statement = statement.where(column < query.until)
    return statement


async def list_mos(call: Call) -> Reply:
    query = call.query
    assert isinstance(query, models.MOQuery)
    statement = select(MOMessage, Subscriber.client_id, Subscriber.msisdn).join(
        Subscriber, Subscriber.id == MOMessage.subscriber_id
    )
    statement = _window(statement, MOMessage.received_at, query)
    if query.short_code is not None:
        statement = statement.where(MOMessage.short_code == query.short_code)
    if query.client_id is not None:
        statement = statement.where(Subscriber.client_id == query.client_id.strip().upper())
    rows, cursor = await _page(call, statement, MOMessage.id, query)
    numbers = _sees_numbers(call)
    items = [
        models.MO(
            id=mo.id,
            client_id=client_id,
            msisdn=msisdn if numbers else None,
            carrier=mo.carrier,
            short_code=mo.short_code,
            service=mo.service,
            keyword=mo.keyword,
            text=mo.text,
            received_at=mo.received_at,
            conversation_id=mo.conversation_id,
        )
        for mo, client_id, msisdn in rows
    ]
    return Reply.of(200, models.MOPage(items=items, next_cursor=cursor))


async def list_conversations(call: Call) -> Reply:
    query = call.query
    assert isinstance(query, models.ConversationQuery)
    statement = select(Conversation, Subscriber.client_id).join(
        Subscriber, Subscriber.id == Conversation.subscriber_id
    )
    statement = _window(statement, Conversation.opened_at, query)
    if query.short_code is not None:
        statement = statement.where(Conversation.short_code == query.short_code)
    if query.client_id is not None:
        statement = statement.where(Subscriber.client_id == query.client_id.strip().upper())
    if query.status is not None:
        statement = statement.where(Conversation.status == query.status)
    rows, cursor = await _page(call, statement, Conversation.id, query)
    items = [
        models.Conversation(
            id=conversation.id,
            client_id=client_id,
            short_code=conversation.short_code,
            service=conversation.service,
            status=conversation.status.value,
            opened_at=conversation.opened_at,
            last_mo_at=conversation.last_mo_at,
            last_mt_at=conversation.last_mt_at,
            closed_at=conversation.closed_at,
        )
        for conversation, client_id in rows
    ]
    return Reply.of(200, models.ConversationPage(items=items, next_cursor=cursor))


def _client(subscriber: Subscriber, numbers: bool) -> models.Client:
    return models.Client(
        client_id=subscriber.client_id,
        msisdn=subscriber.msisdn if numbers else None,
        carrier=subscriber.carrier,
        country=subscriber.country,
        first_seen=subscriber.first_seen,
        last_seen=subscriber.last_seen,
        opted_out=subscriber.opted_out,
        banned=subscriber.banned,
        banned_reason=subscriber.banned_reason,
        mo_count=subscriber.mo_count,
        mt_count=subscriber.mt_count,
    )


async def list_clients(call: Call) -> Reply:
    query = call.query
    assert isinstance(query, models.ClientQuery)
    statement = _window(select(Subscriber), Subscriber.last_seen, query)
    if query.status == "banned":
        statement = statement.where(Subscriber.banned.is_(True))
    elif query.status == "opted_out":
        statement = statement.where(Subscriber.opted_out.is_(True))
    elif query.status == "active":
        statement = statement.where(Subscriber.banned.is_(False), Subscriber.opted_out.is_(False))
    rows, cursor = await _page(call, statement, Subscriber.id, query)
    items = [_client(subscriber, _sees_numbers(call)) for (subscriber,) in rows]
    return Reply.of(200, models.ClientPage(items=items, next_cursor=cursor))


async def _read_client(session: AsyncSession, client_id: str) -> Subscriber:
    found = await session.scalar(select(Subscriber).where(Subscriber.client_id == client_id.strip().upper()))
    if found is None:
        raise Problem(404, "not-found", f"No client {client_id}.")
    return found


async def get_client(call: Call) -> Reply:
    async with runtime(call.request).readers() as session:
        subscriber = await _read_client(session, call.request.path_params["client_id"])
    return Reply.of(200, _client(subscriber, _sees_numbers(call)))


def _recorder(call: Call) -> Callable[[str, str, Mapping[str, Any]], AuditEntry]:
    source = client_address(call.request)

    def record(action: str, subject: str, details: Mapping[str, Any]) -> AuditEntry:
        return AuditEntry(
            action,
            call.caller.actor,
            source=source,
            subject=subject,
            details={**details, "key": call.caller.name},
        )

    return record


async def _opt(call: Call, opted_out: bool) -> Reply:
    client_id = call.request.path_params["client_id"]
    async with runtime(call.request).sessionmaker() as session, session.begin():
        changed = await change_opt_out(
            session, client_id, opted_out=opted_out, now=utcnow(), record=_recorder(call)
        )
        if changed is None:
            raise Problem(404, "not-found", f"No client {client_id}.")
        subscriber = await _read_client(session, client_id)
        body = _client(subscriber, _sees_numbers(call))
    return Reply.of(200, body)


async def opt_out_client(call: Call) -> Reply:
    return await _opt(call, True)


async def opt_in_client(call: Call) -> Reply:
    return await _opt(call, False)


async def _bans(call: Call, reason: str | None) -> Reply:
    client_id = call.request.path_params["client_id"]
    state = runtime(call.request)
    async with state.sessionmaker() as session, session.begin():
        result = await change_bans(session, [client_id], reason=reason, now=utcnow(), record=_recorder(call))
        if result.outcome.unknown:
            raise Problem(404, "not-found", f"No client {client_id}.")
        body = _client(await _read_client(session, client_id), _sees_numbers(call))
    await publish_assignments(state.bus, result.withdrawn)
    return Reply.of(200, body)


async def ban_client(call: Call) -> Reply:
    assert isinstance(call.body, models.BanIn)
    return await _bans(call, call.body.reason)


async def unban_client(call: Call) -> Reply:
    return await _bans(call, None)
