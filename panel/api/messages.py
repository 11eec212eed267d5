"""Sending MTs (one, or a batch of up to 1,000) through the outbox, with ``Idempotency-Key``, and
reading one MT with its parts and receipts."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.masking import masked
from gatewayd.outbox import InvalidDestination, MTRequest, Outbox, OutboxError, Queued, TextRefused
from gatewayd.store.apikeys import IDEMPOTENCY_KEY_LENGTH, Scope, remember, remembered
from gatewayd.store.audit import AuditEntry, append_audit
from gatewayd.store.base import utcnow
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MTMessage, MTPart
from gatewayd.store.mt.recipients import Refusal
from gatewayd.store.subscribers import Subscriber
from panel.api import models
from panel.api.operations import Call, Reply
from panel.api.problems import Problem
from panel.audit import client_address
from panel.runtime import PanelRuntime, runtime

IDEMPOTENCY_HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotent-replayed"


class SentMessage(BaseModel):
    """The MT queued."""

    id: int = Field(description="The MT's id: GET /messages/{id}")
    status: str = "queued"
    not_before: datetime | None = Field(None, description=models.NOT_BEFORE)


def _idempotency_key(call: Call) -> str | None:
    value = call.request.headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if not (0 < len(value) <= IDEMPOTENCY_KEY_LENGTH) or not value.isascii() or not value.isprintable():
        raise Problem(
            400,
            "invalid-idempotency-key",
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LENGTH} printable ASCII characters.",
        )
    return value


def _fingerprint(call: Call) -> str:
    assert call.body is not None
    canonical = f"{call.request.method} {call.request.url.path}\n{call.body.model_dump_json()}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def _outcome(index: int, outcome: Queued | Refusal | OutboxError) -> models.Queued | models.Refused:
    if isinstance(outcome, Queued):
        return models.Queued(index=index, id=outcome.mt_id, not_before=outcome.held_until)
    if isinstance(outcome, Refusal):
        return models.Refused(index=index, reason=outcome.reason.value, detail=outcome.detail)
    if isinstance(outcome, TextRefused):
        return models.Refused(index=index, reason=outcome.reason, detail=str(outcome))
    reason = "invalid_number" if isinstance(outcome, InvalidDestination) else "no_route"
    return models.Refused(index=index, reason=reason, detail=str(outcome))


def _one_reply(result: models.Queued | models.Refused) -> Reply:
    if isinstance(result, models.Queued):
        return Reply.of(201, SentMessage(id=result.id, not_before=result.not_before))
    problem = Problem(422, "refused", result.detail, reason=result.reason)
    return Reply(422, problem.body(), media="application/problem+json")


def _batch_reply(results: list[models.Queued | models.Refused]) -> Reply:
    queued = sum(1 for item in results if isinstance(item, models.Queued))
    body = models.SendResult(queued=queued, refused=len(results) - queued, items=results)
    return Reply.of(201 if queued == len(results) else 207, body)


def _requests(items: Sequence[models.MessageIn]) -> list[MTRequest]:
    return [
        MTRequest(to=item.to, text=item.text, kind=MTKind.PUSH, carrier=item.carrier, source=item.source)
        for item in items
    ]


async def _send(call: Call, items: Sequence[models.MessageIn], *, batch: bool) -> Reply:
    """Queues ``items`` in one transaction that also keeps the answer under the Idempotency-Key and
    the audit record; a twin request committed first (the unique key) has its answer replayed."""
    key = _idempotency_key(call)
    fingerprint = _fingerprint(call) if key is not None else ""
    state = runtime(call.request)
    outbox = Outbox(
        state.settings.outbox, sessions=state.sessionmaker, bus=state.bus, inserts=state.store.mt_inserts
    )
    for attempt in range(2):
        try:
            async with state.sessionmaker() as session, session.begin():
                now = utcnow()
                if key is not None:
                    known = await remembered(session, call.caller.id, key, now)
                    if known is not None:
                        return _replayed(known.request_sha256, fingerprint, known.status, known.response)
                outcomes = await outbox.queue_each_in(session, _requests(items), now)
                results = [_outcome(index, outcome) for index, outcome in enumerate(outcomes)]
                reply = _batch_reply(results) if batch else _one_reply(results[0])
                # Kept only when something was sent: a request refused whole (a route not configured
                # yet, an opted-out client) sent nothing, so its retry is tried anew, not replayed.
                if key is not None and any(isinstance(outcome, Queued) for outcome in outcomes):
                    await remember(
                        session,
                        key_id=call.caller.id,
                        idempotency_key=key,
                        request_sha256=fingerprint,
                        status=reply.status,
                        response=reply.body,
                        now=now,
                    )
                await _audit_send(session, call, outcomes, key, now)
        except IntegrityError:
            if key is None or attempt:
                raise
            continue  # a twin with the same key committed first: replay its answer
        await outbox.announce([outcome for outcome in outcomes if isinstance(outcome, Queued)])
        return reply
    raise AssertionError("unreachable")


def _replayed(stored: str, fingerprint: str, status: int, body: dict[str, object]) -> Reply:
    if stored != fingerprint:
        raise Problem(
            422,
            "idempotency-key-reused",
            "This Idempotency-Key was used with another request; use a new key for a new request.",
        )
    media = "application/problem+json" if status >= 400 else "application/json"
    return Reply(status, dict(body), headers={REPLAYED_HEADER: "true"}, media=media)


async def _audit_send(
    session: AsyncSession,
    call: Call,
    outcomes: Sequence[Queued | Refusal | OutboxError],
    key: str | None,
    now: datetime,
) -> None:
    ids = [outcome.mt_id for outcome in outcomes if isinstance(outcome, Queued)]
    subject = f"mt:{ids[0]}" if len(outcomes) == 1 and ids else f"apikey:{call.caller.public_id}"
    details: dict[str, object] = {"key": call.caller.name, "mt_ids": ids, "refused": len(outcomes) - len(ids)}
    held = {
        str(outcome.mt_id): outcome.held_until.isoformat()
        for outcome in outcomes
        if isinstance(outcome, Queued) and outcome.held_until is not None
    }
    if held:
        details["held_until"] = held  # quiet hours: MT id -> when it leaves
    if key is not None:
        details["idempotency_key"] = key
    entry = AuditEntry(
        action="api.send",
        actor=call.caller.actor,
        source=client_address(call.request),
        subject=subject,
        details=details,
    )
    await append_audit(session, entry, now=now)


async def send_message(call: Call) -> Reply:
    assert isinstance(call.body, models.MessageIn)
    return await _send(call, [call.body], batch=False)


async def send_batch(call: Call) -> Reply:
    assert isinstance(call.body, models.BatchIn)
    return await _send(call, call.body.items, batch=True)


def _later(moment: datetime, now: datetime) -> datetime | None:
    """``moment`` (UTC; SQLite gives it back naive) when it is still to come."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware if aware > now else None


async def get_message(call: Call) -> Reply:
    mt_id = int(call.request.path_params["mt_id"])
    state: PanelRuntime = runtime(call.request)
    async with state.readers() as session:
        mt = await session.get(MTMessage, mt_id)
        if mt is None:
            raise Problem(404, "not-found", f"No MT {mt_id}.")
        parts = (
            await session.scalars(select(MTPart).where(MTPart.mt_id == mt_id).order_by(MTPart.part_no))
        ).all()
        client_id = (
            await session.scalar(select(Subscriber.client_id).where(Subscriber.id == mt.subscriber_id))
            if mt.subscriber_id is not None
            else None
        )
    # Without the msisdn scope the number is hidden wherever it shows: a {telefono} in the text, an error.
    seer = Scope.MSISDN.value in call.caller.scopes
    body = models.Message(
        id=mt.id,
        kind=mt.kind.value,
        status=mt.status.value,
        carrier=mt.carrier,
        source=mt.source,
        to=mt.destination if seer else None,
        client_id=client_id,
        text=masked(mt.text, mt.destination, seer),
        segments=mt.segments,
        created_at=mt.created_at,
        not_before=_later(mt.next_attempt_at, utcnow()) if mt.status is MTStatus.QUEUED else None,
        last_error=masked(mt.last_error, mt.destination, seer) if mt.last_error is not None else None,
        parts=[
            models.Part(
                segment=part.part_no,
                status=part.status.value,
                smsc_message_id=part.smsc_message_id,
                submitted_at=part.submitted_at,
                receipt_state=part.receipt_state,
                receipt_at=part.receipt_at,
                error_code=part.error_code,
            )
            for part in parts
        ],
    )
    return Reply.of(200, body)
