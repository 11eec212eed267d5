"""The API's Starlette application: the route table, the OpenAPI document and its page, and problem
details for every error (unknown path, wrong method, a database conflict, a bug)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gatewayd.store.apikeys import Scope
from gatewayd.store.errors import is_conflict
from gatewayd.store.time_limits import TooSlow
from panel.api import API_ROOT, messages, models, resources, webhooks
from panel.api.auth import KeyLimits
from panel.api.docs_page import STATIC, render_docs
from panel.api.operations import MAX_BATCH_BODY, Operation, openapi_document, routes
from panel.api.problems import Problem

logger = logging.getLogger(__name__)

TITLE = "eChat Gateway API"
VERSION = "1.0.0"
#: Seconds a client waits before repeating a request a concurrent transaction collided with.
CONFLICT_RETRY_AFTER = 1
#: Seconds a client waits before repeating a request the database was too busy for: longer than a
#: list read may run (``resources.LIST_READ_SECONDS``), so the connections held then are free again.
BUSY_RETRY_AFTER = 5
IDEMPOTENCY = (
    (
        "Idempotency-Key",
        "Up to 128 printable ASCII characters: the same key and body within 24 h replays the first "
        "answer (Idempotent-Replayed: true) and sends nothing again; another body is a 422 problem. "
        "An answer that sent nothing (every MT refused) is not kept: its retry is tried anew.",
    ),
)
REPLAYED = (("Idempotent-Replayed", '"true" when this is the kept answer of an earlier request'),)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/messages",
        messages.send_message,
        Scope.SEND,
        "Send one MT",
        {201: messages.SentMessage},
        body=models.MessageIn,
        headers=IDEMPOTENCY,
        reply_headers=REPLAYED,
    ),
    Operation(
        "POST",
        "/messages/batch",
        messages.send_batch,
        Scope.SEND,
        "Send up to 1,000 MTs: per item its id or why it was refused",
        {201: models.SendResult, 207: models.SendResult},
        body=models.BatchIn,
        headers=IDEMPOTENCY,
        reply_headers=REPLAYED,
        max_body=MAX_BATCH_BODY,
    ),
    Operation(
        "GET",
        "/messages/{mt_id:id}",
        messages.get_message,
        Scope.READ,
        "An MT with its parts and their receipts",
        {200: models.Message},
    ),
    Operation(
        "GET",
        "/mos",
        resources.list_mos,
        Scope.READ,
        "MOs, newest first, a page at a time",
        {200: models.MOPage},
        query=models.MOQuery,
    ),
    Operation(
        "GET",
        "/conversations",
        resources.list_conversations,
        Scope.READ,
        "Conversations, newest first, a page at a time",
        {200: models.ConversationPage},
        query=models.ConversationQuery,
    ),
    Operation(
        "GET",
        "/clients",
        resources.list_clients,
        Scope.READ,
        "Clients, newest first, a page at a time",
        {200: models.ClientPage},
        query=models.ClientQuery,
    ),
    Operation(
        "GET",
        "/clients/{client_id}",
        resources.get_client,
        Scope.READ,
        "A client by client ID",
        {200: models.Client},
    ),
    *(
        Operation(
            "POST",
            f"/clients/{{client_id}}/{verb}",
            handler,
            Scope.ADMIN,
            summary,
            {200: models.Client},
            body=body,
        )
        for verb, handler, summary, body in (
            (
                "opt-out",
                resources.opt_out_client,
                "Opt the client out (only the gateway's own MTs reach them)",
                None,
            ),
            ("opt-in", resources.opt_in_client, "Opt the client back in", None),
            (
                "ban",
                resources.ban_client,
                "Ban the client (their MTs refused, taken off the desks)",
                models.BanIn,
            ),
            ("unban", resources.unban_client, "Lift the client's ban", None),
        )
    ),
    Operation(
        "GET",
        "/webhooks",
        webhooks.list_webhooks,
        Scope.ADMIN,
        "The webhook subscriptions, by name",
        {200: models.WebhookPage},
    ),
    Operation(
        "POST",
        "/webhooks",
        webhooks.create_webhook,
        Scope.ADMIN,
        "Subscribe a URL to events: the answer shows the signing secret this once",
        {201: models.WebhookCreated},
        body=models.WebhookIn,
        reply_headers=(("Location", "The subscription's path"),),
        problems=(409,),
    ),
    Operation(
        "GET",
        "/webhooks/{webhook_id:id}",
        webhooks.get_webhook,
        Scope.ADMIN,
        "A webhook subscription (never its secret)",
        {200: models.Webhook},
    ),
    Operation(
        "PATCH",
        "/webhooks/{webhook_id:id}",
        webhooks.update_webhook,
        Scope.ADMIN,
        "Change a subscription's name, URL, events, MSISDN flag or active (the fields given)",
        {200: models.Webhook},
        body=models.WebhookChange,
        problems=(409,),
    ),
    Operation(
        "DELETE",
        "/webhooks/{webhook_id:id}",
        webhooks.delete_webhook,
        Scope.ADMIN,
        "Delete a subscription with its queued and past deliveries",
        {204: None},
    ),
    Operation(
        "POST",
        "/webhooks/{webhook_id:id}/secret",
        webhooks.rotate_webhook_secret,
        Scope.ADMIN,
        "Rotate the secret: the new one shown this once, the old one also signs for 24 h",
        {200: models.WebhookSecret},
    ),
    Operation(
        "GET",
        "/webhooks/{webhook_id:id}/deliveries",
        webhooks.list_webhook_deliveries,
        Scope.ADMIN,
        "A subscription's deliveries, newest first, a page at a time",
        {200: models.DeliveryPage},
        query=models.DeliveryQuery,
    ),
    Operation(
        "POST",
        "/webhooks/{webhook_id:id}/deliveries/{delivery_id:id}/redeliver",
        webhooks.redeliver_webhook_delivery,
        Scope.ADMIN,
        "Queue a dead delivery again (409 when it is not dead)",
        {200: models.Redelivered},
        problems=(409,),
    ),
)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    kinds = {404: "not-found", 405: "method-not-allowed"}
    if status == 500:
        logger.exception("api: %s %s failed", request.method, request.url.path, exc_info=exc)
    # Starlette's 405 names the methods the path takes (Allow): a problem keeps them.
    headers = dict(exc.headers) if isinstance(exc, HTTPException) and exc.headers else None
    return Problem(status, kinds.get(status, "error"), headers=headers).response()


async def _database_error(request: Request, exc: Exception) -> Response:
    if not is_conflict(exc):
        return await _http_error(request, exc)
    return Problem(
        503,
        "conflict",
        "Another change was being made at the same moment; nothing was done. Try again.",
        headers={"retry-after": str(CONFLICT_RETRY_AFTER)},
    ).response()


async def _busy(request: Request, exc: Exception) -> Response:
    """A read given up at its time limit, or no pooled connection free within the pool's wait: the
    database is busy, not the request wrong (a 503, not a 500)."""
    if isinstance(exc, TooSlow):
        why = "the read ran past its time limit"
        detail = "The read took too long and was given up. Try again later, or narrow it (since, until)."
    else:
        why = "no database connection was free in time"
        detail = "The service is too busy to answer now. Try again later."
    logger.warning("api: %s %s answered 503: %s", request.method, request.url.path, why)
    return Problem(503, "busy", detail, headers={"retry-after": str(BUSY_RETRY_AFTER)}).response()


def create_api(operations: Sequence[Operation] = OPERATIONS) -> Starlette:
    """The API application the panel mounts at :data:`API_ROOT`; it reads the panel's runtime from the
    scope's state (engine, bus, settings)."""
    document = openapi_document(operations, title=TITLE, version=VERSION, server=API_ROOT)

    page = render_docs(document)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    # The document and its page need no key: they hold no data, only the API's shape.
    table = [
        *routes(operations, KeyLimits()),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="api-static"),
    ]
    return Starlette(
        routes=table,
        exception_handlers={
            HTTPException: _http_error,
            DBAPIError: _database_error,
            TooSlow: _busy,
            PoolTimeout: _busy,
            Exception: _http_error,
        },
    )
