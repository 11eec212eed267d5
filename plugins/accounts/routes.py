"""Operators and masters: the list, the create and edit forms, password reset, lock and unlock.

Every change is made and audited in one transaction (``panel.audit``); the rules of who may manage
whom are `plugins.accounts.rules`, the last active admin is kept by `panel.auth.accounts`. Locking
or a new password ends the account's sessions and is announced on the bus, as ``gatewayd user lock``
does: the panels' desks then make a locked operator leave and their conversations go back to the
queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gatewayd.store.accounts import Account, Role
from gatewayd.store.base import MAX_INT32_ID
from gatewayd.store.repo_assignment import operator_pools, set_operator_pools
from panel.access import requires
from panel.audit import audit
from panel.auth.accounts import (
    MAX_CONVERSATIONS,
    MIN_CONVERSATIONS,
    AccountRejected,
    add_account,
    check_conversation_limit,
    check_language,
    check_pool_names,
    check_timezone,
    check_username,
    lock_account,
    set_role,
    store_password_hash,
    unlock_account,
)
from panel.auth.identity import CurrentUser
from panel.auth.passwords import HashingBusy, PasswordRejected, check_password_rules
from panel.auth.permissions import PANEL_ACCESS, UnknownPermission
from panel.i18n import LANGUAGES, timezone_choices
from panel.presence import announce_account_change
from panel.web import db, db_read, error_response, panel, render, require_user, translate
from plugins.accounts.rules import (
    ACCOUNTS_MANAGE,
    Refused,
    check_grants,
    check_manages,
    check_manages_account,
    check_not_self,
    check_role_change,
    may_manage_role,
)
from translations import N_

STATES = ("active", "locked")
MAX_QUERY = 64
MAX_REASON = 255
MAX_DISPLAY_NAME = 128
MAX_POOLS_TEXT = 1000
NOTICES = {
    "created": N_("Account created."),
    "saved": N_("Changes saved."),
    "password": N_("Password changed; the account's sessions have been closed."),
    "locked": N_("Account locked; its sessions have been closed and its conversations return to the queue."),
    "unlocked": N_("Account unlocked."),
}


@dataclass(frozen=True, slots=True)
class AccountForm:
    """The create and edit forms' fields, checked (the password only when creating)."""

    display_name: str
    role: Role
    language: str
    timezone: str
    pools: list[str]
    limit: int
    permissions: frozenset[str]


def _text(form: FormData, name: str, limit: int) -> str:
    """The field stripped and cut at ``limit``: what the form shows again, or what a check refuses
    anyway when it is longer (a role, a number, a language)."""
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _within(form: FormData, name: str, limit: int, too_long: str) -> str:
    """The field stripped, refused with ``too_long`` beyond ``limit`` characters, never cut: only a
    script gets past the form's maxlength, and what it stores must be what it sent."""
    value = _text(form, name, limit + 1)
    if len(value) > limit:
        raise Refused(too_long, limit=limit)
    return value


def _parse(request: Request, form: FormData) -> AccountForm:
    role_text = _text(form, "role", 16)
    if role_text not in {role.value for role in Role}:
        raise Refused(N_("Choose a role."))
    limit_text = _text(form, "max_open_conversations", 8)
    if not (limit_text.isascii() and limit_text.isdigit()):  # "²" is a digit to isdigit, not to int()
        raise Refused(
            N_("The conversation limit is a number from %(low)d to %(high)d."),
            low=MIN_CONVERSATIONS,
            high=MAX_CONVERSATIONS,
        )
    pools_text = _text(form, "pools", MAX_POOLS_TEXT + 1)
    if len(pools_text) > MAX_POOLS_TEXT:
        raise Refused(N_("Too many pools."))
    names = [str(name) for name in form.getlist("permissions") if isinstance(name, str)]
    try:
        return AccountForm(
            display_name=_within(
                form,
                "display_name",
                MAX_DISPLAY_NAME,
                N_("The display name may be at most %(limit)d characters long."),
            ),
            role=Role(role_text),
            language=check_language(_text(form, "language", 8)),
            timezone=check_timezone(_text(form, "timezone", 64)),
            pools=check_pool_names(pool for pool in pools_text.split(",") if pool.strip()),
            limit=check_conversation_limit(int(limit_text)),
            permissions=panel(request).permissions.validate(names),
        )
    except AccountRejected as rejected:
        raise Refused(rejected.key, **rejected.params) from rejected
    except UnknownPermission as unknown:
        raise Refused(N_("Unknown power: %(name)s."), name=unknown.name) from unknown


def _stored_permissions(account: Account) -> frozenset[str]:
    return frozenset(account.permissions)


async def _pools_of(session: AsyncSession, account_id: int) -> list[str]:
    return sorted((await operator_pools(session, [account_id])).get(account_id, frozenset()))


def _form_context(
    request: Request, actor: CurrentUser, values: dict[str, Any], *, account: Account | None
) -> dict[str, Any]:
    roles = [role.value for role in Role if may_manage_role(actor, role)]
    return {
        "title": N_("Edit account") if account is not None else N_("New account"),
        "account": account,
        "values": values,
        "roles": roles,
        "may_change_role": actor.role is Role.ADMIN,
        "groups": panel(request).permissions.grouped(),
        "actor_permissions": actor.permissions,
        "actor_is_admin": actor.role is Role.ADMIN,
        "languages": LANGUAGES,
        "timezones": timezone_choices(),
        "low": MIN_CONVERSATIONS,
        "high": MAX_CONVERSATIONS,
        "self_edit": account is not None and account.id == actor.account_id,
        "notice": None,
        "error": None,
    }


def _values_of(account: Account, pools: list[str]) -> dict[str, Any]:
    return {
        "username": account.username,
        "display_name": account.display_name,
        "role": account.role.value,
        "language": account.language,
        "timezone": account.timezone,
        "pools": ", ".join(pools),
        "max_open_conversations": str(account.max_open_conversations),
        "permissions": _stored_permissions(account),
    }


def _values_from(form: FormData) -> dict[str, Any]:
    """What the person typed, shown again with the error."""
    return {
        "username": _text(form, "username", 64),
        "display_name": _text(form, "display_name", MAX_DISPLAY_NAME),
        "role": _text(form, "role", 16),
        "language": _text(form, "language", 8),
        "timezone": _text(form, "timezone", 64),
        "pools": _text(form, "pools", MAX_POOLS_TEXT),
        "max_open_conversations": _text(form, "max_open_conversations", 8),
        "permissions": frozenset(name for name in form.getlist("permissions") if isinstance(name, str)),
    }


def _refusal(request: Request, refused: Refused | AccountRejected | PasswordRejected) -> str:
    return translate(request, refused.key, **refused.params)


# -- the list -------------------------------------------------------------------------------------


@requires(PANEL_ACCESS, ACCOUNTS_MANAGE)
async def account_list(request: Request) -> Response:
    actor = require_user(request)
    role = request.query_params.get("role", "")
    state = request.query_params.get("state", "")
    query = request.query_params.get("q", "").strip()[:MAX_QUERY]
    statement = select(Account).order_by(Account.username)
    if role in {member.value for member in Role}:
        statement = statement.where(Account.role == Role(role))
    if state in STATES:
        statement = statement.where(Account.locked.is_(state == "locked"))
    if query:
        pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(
            Account.username.like(pattern, escape="\\") | Account.display_name.ilike(pattern, escape="\\")
        )
    async with db_read(request) as session:
        accounts = list((await session.execute(statement)).scalars())
        pools = await operator_pools(session, [account.id for account in accounts])
    rows = [
        {
            "account": account,
            "state": "locked" if account.locked else "active",
            "pools": sorted(pools.get(account.id, frozenset())),
            "manageable": may_manage_role(actor, account.role),
        }
        for account in accounts
    ]
    notice = NOTICES.get(request.query_params.get("done", ""))
    context = {
        "title": N_("Operators and masters"),
        "rows": rows,
        "filters": {"role": role, "state": state, "q": query},
        "notice": notice,
    }
    return render(request, "accounts/list.html", context)


# -- create ---------------------------------------------------------------------------------------


@requires(PANEL_ACCESS, ACCOUNTS_MANAGE)
async def new_account(request: Request) -> Response:
    actor = require_user(request)
    registry = panel(request).permissions
    values = {
        "username": "",
        "display_name": "",
        "role": Role.OPERATOR.value,
        "language": "es",
        "timezone": "Europe/Madrid",
        "pools": "",
        "max_open_conversations": "5",
        "permissions": registry.defaults_for(Role.OPERATOR) & actor.permissions,
    }
    return render(request, "accounts/form.html", _form_context(request, actor, values, account=None))


@requires(PANEL_ACCESS, ACCOUNTS_MANAGE)
async def create(request: Request) -> Response:
    actor = require_user(request)
    form = await request.form()
    try:
        checked = _parse(request, form)
        # cut only far beyond the rule, which refuses more than 64 characters: never stored cut
        username = check_username(_text(form, "username", 256))
        password = form.get("password")
        password = password[:1024] if isinstance(password, str) else ""
        if password != form.get("confirm_password"):
            raise Refused(N_("The two passwords differ."))
        check_manages(actor, checked.role)
        check_grants(actor, frozenset(), checked.permissions)
        check_password_rules(password, username)
        password_hash = await panel(request).hashing.hash(password)
        async with db(request) as session, session.begin():
            account = await add_account(
                session,
                panel(request).permissions,
                username=username,
                password_hash=password_hash,
                role=checked.role,
                display_name=checked.display_name or username,
                language=checked.language,
                timezone=checked.timezone,
                permissions=checked.permissions,
                created_by=actor.account_id,
                max_open_conversations=checked.limit,
            )
            await set_operator_pools(session, account.id, checked.pools)
            await audit(
                session,
                request,
                "account.create",
                subject=f"account:{account.id}",
                details={
                    "after": {
                        "username": account.username,
                        "display_name": account.display_name,
                        "role": account.role.value,
                        "language": account.language,
                        "timezone": account.timezone,
                        "pools": checked.pools,
                        "max_open_conversations": account.max_open_conversations,
                        "permissions": sorted(checked.permissions),
                    }
                },
            )
    except (Refused, AccountRejected, PasswordRejected) as refused:
        status = refused.status if isinstance(refused, Refused) else 400
        context = _form_context(request, actor, _values_from(form), account=None)
        context["error"] = _refusal(request, refused)
        return render(request, "accounts/form.html", context, status_code=status)
    except HashingBusy:
        return error_response(request, 503, N_("The server is busy. Please try again in a moment."))
    return RedirectResponse(f"/admin/accounts/{account.id}?done=created", status_code=303)


# -- edit -----------------------------------------------------------------------------------------


async def _target(session: AsyncSession, account_id: int, *, for_update: bool = False) -> Account | None:
    if account_id > MAX_INT32_ID:
        return None
    return await session.get(Account, account_id, with_for_update=for_update)


@requires(PANEL_ACCESS, ACCOUNTS_MANAGE)
async def edit_page(request: Request) -> Response:
    actor = require_user(request)
    async with db_read(request) as session:
        account = await _target(session, request.path_params["account_id"])
        if account is None:
            return error_response(request, 404)
        pools = await _pools_of(session, account.id)
    if not may_manage_role(actor, account.role):
        return error_response(request, 403, N_("Only an administrator manages administrators and masters."))
    context = _form_context(request, actor, _values_of(account, pools), account=account)
    context["notice"] = NOTICES.get(request.query_params.get("done", ""))
    return render(request, "accounts/form.html", context)


async def _page_with_error(
    request: Request, actor: CurrentUser, account_id: int, message: str, status: int, form: FormData | None
) -> Response:
    async with db_read(request) as session:
        account = await _target(session, account_id)
        if account is None:
            return error_response(request, 404)
        pools = await _pools_of(session, account.id)
    if not may_manage_role(actor, account.role):
        return error_response(request, status, message)
    values = _values_from(form) if form is not None else _values_of(account, pools)
    if form is not None:
        values["username"] = account.username
    context = _form_context(request, actor, values, account=account)
    context["error"] = message
    return render(request, "accounts/form.html", context, status_code=status)


@requires(PANEL_ACCESS, ACCOUNTS_MANAGE)
async def save(request: Request) -> Response:
    actor = require_user(request)
    account_id: int = request.path_params["account_id"]
    form = await request.form()
    try:
        checked = _parse(request, form)
        async with db(request) as session, session.begin():
            account = await _target(session, account_id, for_update=True)
            if account is None:
                return error_response(request, 404)
            check_manages_account(actor, account)
            check_role_change(actor, account.role, checked.role)
            before_permissions = _stored_permissions(account)
            check_grants(actor, before_permissions, checked.permissions)
            await _apply(request, session, account, checked, before_permissions)
    except (Refused, AccountRejected) as refused:
        # An AccountRejected here is the last active admin's role (the form's own are Refused).
        status = refused.status if isinstance(refused, Refused) else 403
        return await _page_with_error(request, actor, account_id, _refusal(request, refused), status, form)
    return RedirectResponse(f"/admin/accounts/{account_id}?done=saved", status_code=303)


async def _apply(
    request: Request,
    session: AsyncSession,
    account: Account,
    checked: AccountForm,
    before_permissions: frozenset[str],
) -> None:
    """Makes the edit form's changes, each kind audited on its own (fields, role, powers, pools)."""
    subject = f"account:{account.id}"
    display_name = checked.display_name or account.username
    fields: dict[str, tuple[object, object]] = {
        "display_name": (account.display_name, display_name),
        "language": (account.language, checked.language),
        "timezone": (account.timezone, checked.timezone),
        "max_open_conversations": (account.max_open_conversations, checked.limit),
    }
    changed = {name: pair for name, pair in fields.items() if pair[0] != pair[1]}
    if changed:
        account.display_name = display_name
        account.language = checked.language
        account.timezone = checked.timezone
        account.max_open_conversations = checked.limit
        before = {name: pair[0] for name, pair in changed.items()}
        after = {name: pair[1] for name, pair in changed.items()}
        await audit(
            session, request, "account.edit", subject=subject, details={"before": before, "after": after}
        )
    if checked.role is not account.role:
        before_role = account.role.value
        await set_role(session, account, checked.role)
        await audit(
            session,
            request,
            "account.role",
            subject=subject,
            details={"before": before_role, "after": checked.role.value},
        )
    if checked.permissions != before_permissions:
        account.permissions = sorted(checked.permissions)
        granted = sorted(checked.permissions - before_permissions)
        revoked = sorted(before_permissions - checked.permissions)
        await audit(
            session,
            request,
            "account.permissions",
            subject=subject,
            details={"granted": granted, "revoked": revoked},
        )
    pools_before = await _pools_of(session, account.id)
    if pools_before != checked.pools:
        await set_operator_pools(session, account.id, checked.pools)
        await audit(
            session,
            request,
            "account.pools",
            subject=subject,
            details={"before": pools_before, "after": checked.pools},
        )


# -- password, lock, unlock -----------------------------------------------------------------------


@requires(PANEL_ACCESS, ACCOUNTS_MANAGE)
async def reset_password(request: Request) -> Response:
    actor = require_user(request)
    account_id: int = request.path_params["account_id"]
    form = await request.form()
    password = form.get("password")
    password = password[:1024] if isinstance(password, str) else ""
    try:
        async with db_read(request) as session:
            found = await _target(session, account_id)
        if found is None:
            return error_response(request, 404)
        check_manages_account(actor, found)
        if password != form.get("confirm_password"):
            raise Refused(N_("The two passwords differ."))
        check_password_rules(password, found.username)
        password_hash = await panel(request).hashing.hash(password)
        async with db(request) as session, session.begin():
            account = await _target(session, account_id, for_update=True)
            if account is None:
                return error_response(request, 404)
            check_manages_account(actor, account)
            keep = actor.session_id if account.id == actor.account_id else None
            ended = await store_password_hash(session, account, password_hash, keep_session_id=keep)
            details = {"sessions_ended": ended}
            await audit(
                session, request, "account.password", subject=f"account:{account_id}", details=details
            )
    except (Refused, PasswordRejected) as refused:
        status = refused.status if isinstance(refused, Refused) else 400
        return await _page_with_error(request, actor, account_id, _refusal(request, refused), status, None)
    except HashingBusy:
        return error_response(request, 503, N_("The server is busy. Please try again in a moment."))
    await announce_account_change(panel(request).bus, account_id)
    return RedirectResponse(f"/admin/accounts/{account_id}?done=password", status_code=303)


@requires(PANEL_ACCESS, ACCOUNTS_MANAGE)
async def lock(request: Request) -> Response:
    actor = require_user(request)
    account_id: int = request.path_params["account_id"]
    form = await request.form()
    reason = _text(form, "reason", MAX_REASON + 1)
    try:
        async with db(request) as session, session.begin():
            account = await _target(session, account_id, for_update=True)
            if account is None:
                return error_response(request, 404)
            check_manages_account(actor, account)
            check_not_self(actor, account)
            if not reason:
                raise Refused(N_("Say why the account is locked."))
            if len(reason) > MAX_REASON:  # never stored cut
                raise Refused(N_("The reason may be at most %(limit)d characters long."), limit=MAX_REASON)
            if account.locked:
                raise Refused(N_("The account is locked already."), 409)
            ended = await lock_account(session, account, reason)
            details = {"reason": reason, "sessions_ended": ended}
            await audit(session, request, "account.lock", subject=f"account:{account_id}", details=details)
    except (Refused, AccountRejected) as refused:
        status = refused.status if isinstance(refused, Refused) else 403  # the last active admin
        return await _page_with_error(request, actor, account_id, _refusal(request, refused), status, None)
    # Its open desks end; once it is no longer at the desk its conversations go back to the queue.
    await announce_account_change(panel(request).bus, account_id)
    return RedirectResponse(f"/admin/accounts/{account_id}?done=locked", status_code=303)


@requires(PANEL_ACCESS, ACCOUNTS_MANAGE)
async def unlock(request: Request) -> Response:
    actor = require_user(request)
    account_id: int = request.path_params["account_id"]
    try:
        async with db(request) as session, session.begin():
            account = await _target(session, account_id, for_update=True)
            if account is None:
                return error_response(request, 404)
            check_manages_account(actor, account)
            if not account.locked:
                raise Refused(N_("The account is not locked."), 409)
            details = {"before": {"reason": account.lock_reason}}
            await unlock_account(session, account)
            await audit(session, request, "account.unlock", subject=f"account:{account_id}", details=details)
    except Refused as refused:
        return await _page_with_error(
            request, actor, account_id, _refusal(request, refused), refused.status, None
        )
    return RedirectResponse(f"/admin/accounts/{account_id}?done=unlocked", status_code=303)


routes = [
    Route("/admin/accounts", account_list, methods=["GET"], name="accounts.list"),
    Route("/admin/accounts", create, methods=["POST"], name="accounts.create"),
    Route("/admin/accounts/new", new_account, methods=["GET"], name="accounts.new"),
    Route("/admin/accounts/{account_id:id}", edit_page, methods=["GET"], name="accounts.edit"),
    Route("/admin/accounts/{account_id:id}", save, methods=["POST"], name="accounts.save"),
    Route(
        "/admin/accounts/{account_id:id}/password", reset_password, methods=["POST"], name="accounts.password"
    ),
    Route("/admin/accounts/{account_id:id}/lock", lock, methods=["POST"], name="accounts.lock"),
    Route("/admin/accounts/{account_id:id}/unlock", unlock, methods=["POST"], name="accounts.unlock"),
]
