"""/admin/api-keys: the integrator API's keys. Making one shows its token on the answer page only
(it is never stored, only its hash); revoking stops it from the key's next request on. Both go
through :mod:`panel.api.keys` (as ``gatewayd apikey`` does), audited in the change's transaction."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gatewayd.store.apikeys import NAME_LENGTH, Scope, list_keys
from gatewayd.store.base import utcnow
from panel.access import requires
from panel.api import API_ROOT
from panel.api.keys import MAX_RATE, KeySpec, add_key, revoke
from panel.audit import client_address
from panel.auth.permissions import PANEL_ACCESS
from panel.web import db, db_read, render, require_user
from plugins.apikeys.permissions import APIKEYS_MANAGE
from plugins.clients.permissions import CLIENTS_CONTROL
from plugins.desk.permissions import OPERATOR_SEE_MSISDN, OPERATOR_SEE_OTHERS, PUSH_SEND
from translations import N_

KEYS_PATH = "/admin/api-keys"

SCOPES = (
    (Scope.SEND, N_("send: queue MTs")),
    (Scope.READ, N_("read: MTs, MOs, conversations, clients")),
    (Scope.ADMIN, N_("admin: opt-out, opt-in, ban, unban")),
    (Scope.MSISDN, N_("msisdn: see phone numbers")),
)
#: The panel power a person must hold to give a key each scope: a key never does more than its maker may.
SCOPE_POWERS = {
    Scope.SEND: PUSH_SEND,
    Scope.READ: OPERATOR_SEE_OTHERS,
    Scope.ADMIN: CLIENTS_CONTROL,
    Scope.MSISDN: OPERATOR_SEE_MSISDN,
}
BEYOND_POWERS = N_(
    'You may give a key only the scopes whose powers you hold yourself: send needs "Send push SMS by '
    'hand", read "Read other operators\' answers", admin "Client control: ban and '
    'unban", msisdn "See the client\'s '
    'full phone number".'
)
NOTICES = {"revoked": N_("The key was revoked: its next request is refused.")}
#: What a field's error says, by the field the validation names.
FIELD_ERRORS = {
    "name": N_("Give the key a name (at most 64 characters, no control characters)."),
    "scopes": N_("Choose at least one scope."),
    "allow": N_("Each allowed address must be an IP address or a network such as 10.0.0.0/8."),
    "rate": N_("The rate must be a number of requests a second from 0.001 to 10000."),
}


def _text(form: FormData, name: str, limit: int) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


async def _page(request: Request, status: int = 200, **context: Any) -> Response:
    async with db_read(request) as session:
        keys = await list_keys(session)
    values = {
        "title": N_("API keys"),
        "keys": keys,
        "scopes": SCOPES,
        "api_root": API_ROOT,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "errors": [],
        "token": None,
        "form": {"name": "", "scopes": [], "allow": "", "rate": ""},
        "max_rate": MAX_RATE,
        **context,
    }
    return render(request, "apikeys/apikeys.html", values, status_code=status)


@requires(PANEL_ACCESS, APIKEYS_MANAGE)
async def keys_page(request: Request) -> Response:
    return await _page(request)


def _spec(form: FormData) -> tuple[KeySpec | None, list[str], dict[str, Any]]:
    name = _text(form, "name", NAME_LENGTH * 4)
    scopes = [value for value in form.getlist("scope") if isinstance(value, str)][: len(SCOPES)]
    allow_text = _text(form, "allow", 4000)
    rate_text = _text(form, "rate", 32)
    kept = {"name": name, "scopes": scopes, "allow": allow_text, "rate": rate_text}
    allow = [item for item in allow_text.replace(",", " ").split() if item]
    errors: list[str] = []
    rate: float | None = None
    if rate_text:
        try:
            rate = float(rate_text)
        except ValueError:
            errors.append(FIELD_ERRORS["rate"])
    try:
        spec = KeySpec.model_validate({"name": name, "scopes": scopes, "allow": allow, "rate": rate})
    except ValidationError as error:
        fields = {str(item["loc"][0]) for item in error.errors()}
        named = [message for field, message in FIELD_ERRORS.items() if field in fields]
        errors += [message for message in named if message not in errors]
        return None, errors, kept
    return (None if errors else spec), errors, kept


@requires(PANEL_ACCESS, APIKEYS_MANAGE)
async def create(request: Request) -> Response:
    form = await request.form()
    spec, errors, kept = _spec(form)
    if spec is None:
        return await _page(request, 400, errors=errors, form=kept)
    user = require_user(request)
    if not user.has(*(SCOPE_POWERS[scope] for scope in spec.scopes)):
        return await _page(request, 403, errors=[BEYOND_POWERS], form=kept)
    async with db(request) as session, session.begin():
        made = await add_key(
            session,
            spec,
            actor=user.username,
            actor_id=user.account_id,
            source=client_address(request),
            now=utcnow(),
        )
    # The token is on this page only: it is not stored, so no reload or redirect can show it again.
    return await _page(request, 201, token=made.token, made=made.key)


@requires(PANEL_ACCESS, APIKEYS_MANAGE)
async def revoke_key(request: Request) -> Response:
    user = require_user(request)
    async with db(request) as session, session.begin():
        revoked = await revoke(
            session,
            request.path_params["key_id"],
            actor=user.username,
            actor_id=user.account_id,
            source=client_address(request),
            now=utcnow(),
        )
    if revoked is None:
        return await _page(request, 404, errors=[N_("There is no such key, or it was already revoked.")])
    return RedirectResponse(f"{KEYS_PATH}?notice=revoked", status_code=303)


routes = [
    Route(KEYS_PATH, keys_page, methods=["GET"]),
    Route(KEYS_PATH, create, methods=["POST"]),
    Route(KEYS_PATH + "/{key_id:id}/revoke", revoke_key, methods=["POST"]),
]
