"""Sign-in, sign-out, language switch and the user's own profile."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gatewayd.assignment import pools_served
from gatewayd.store.accounts import Account
from gatewayd.store.repo_assignment import operator_pools
from panel.access import public, requires
from panel.audit import audit, entry_for
from panel.auth.accounts import (
    AccountRejected,
    check_language,
    check_timezone,
    store_password_hash,
)
from panel.auth.identity import CurrentUser
from panel.auth.login import LoginOutcome, SignIn, sign_in
from panel.auth.passwords import HashingBusy, PasswordRejected, check_password_rules
from panel.auth.sessions import revoke_session
from panel.i18n import timezone_choices
from panel.middleware import LANGUAGE_COOKIE, cookie_header
from panel.presence import announce_account_change
from panel.settings import SESSION_COOKIE
from panel.web import current_user, db, db_read, panel, render, require_user, translate
from translations import N_

# Unknown names, wrong passwords and locked accounts share one status and one message.
FAILED_LOGIN_STATUS = {
    LoginOutcome.BAD_CREDENTIALS: 401,
    LoginOutcome.LOCKED: 401,
    LoginOutcome.DELAYED: 429,
    LoginOutcome.RATE_LIMITED: 429,
    LoginOutcome.BUSY: 503,
}
FAILED_LOGIN_MESSAGE = {
    LoginOutcome.BAD_CREDENTIALS: N_("Wrong user name or password."),
    LoginOutcome.LOCKED: N_("Wrong user name or password."),
    LoginOutcome.DELAYED: N_("Too many failed attempts. Please wait %(seconds)s s and try again."),
    LoginOutcome.RATE_LIMITED: N_("Too many attempts from this connection. Please wait a few minutes."),
    LoginOutcome.BUSY: N_("The server is busy. Please try again in a moment."),
}


def safe_next(value: object, default: str = "/") -> str:
    """Only a path on this site: no scheme, no host, no protocol-relative tricks."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ord(char) < 32 for char in value):
        return default
    return value


# What the ip columns hold: an IPv6 address in full. A proxy header may carry anything longer.
MAX_IP_LENGTH = 45


def _client_ip(request: Request) -> str | None:
    return request.client.host[:MAX_IP_LENGTH] if request.client else None


def _form_text(value: object, limit: int = 512) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _login_page(
    request: Request,
    *,
    next_path: str,
    username: str = "",
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
    retry_after: int | None = None,
) -> Response:
    context = {"next": next_path, "username": username, "error": error, "notice": notice}
    headers = {"retry-after": str(retry_after)} if retry_after is not None else None
    return render(request, "auth/login.html", context, status_code=status_code, headers=headers)


@public
async def login_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if current_user(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    notice = translate(request, "You have signed out.") if request.query_params.get("signed_out") else None
    return _login_page(request, next_path=next_path, notice=notice)


@public
async def login(request: Request) -> Response:
    state = panel(request)
    form = await request.form()
    username = _form_text(form.get("username"), 256)  # sign_in tells a longer one from a real name
    next_path = safe_next(form.get("next"))
    attempt = SignIn(
        username=username,
        password=_form_text(form.get("password"), 1024),
        ip=_client_ip(request),
        user_agent=request.headers.get("user-agent"),
        presented_token=request.cookies.get(state.settings.session_cookie),
    )
    result = await sign_in(state, attempt, audit=entry_for(request, "auth.login"))
    if result.issued is not None:
        previous = current_user(request)
        if previous is not None:  # the session this browser presented has ended: its desks end now
            await announce_account_change(state.bus, previous.account_id)
        response: Response = RedirectResponse(next_path, status_code=303)
        response.headers.append(
            "set-cookie", cookie_header(state.settings, SESSION_COOKIE, result.issued.token)
        )
        return response
    return _login_page(
        request,
        next_path=next_path,
        username=username,
        error=translate(request, FAILED_LOGIN_MESSAGE[result.outcome], seconds=result.retry_after),
        status_code=FAILED_LOGIN_STATUS[result.outcome],
        retry_after=result.retry_after,
    )


@requires()
async def logout(request: Request) -> Response:
    state = panel(request)
    settings = state.settings
    token = request.cookies.get(settings.session_cookie, "")
    user = require_user(request)
    async with db(request) as session, session.begin():
        await revoke_session(session, token)
        await audit(session, request, "auth.logout", subject=f"account:{user.account_id}")
    # Open desks of this session end now; an operator with no other session leaves the desk.
    await announce_account_change(state.bus, user.account_id)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    response.headers.append("set-cookie", cookie_header(settings, SESSION_COOKIE, "", max_age=0))
    return response


@public
async def switch_language(request: Request) -> Response:
    form = await request.form()
    chosen = _form_text(form.get("language"), 8)
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    try:
        check_language(chosen)
    except AccountRejected:
        return response
    user = current_user(request)
    if user is not None:
        async with db(request) as session, session.begin():
            account = await session.get(Account, user.account_id)
            if account is not None and account.language != chosen:
                before = {"language": account.language}
                account.language = chosen
                await audit(
                    session,
                    request,
                    "account.profile",
                    subject=f"account:{account.id}",
                    details={"before": before, "after": {"language": chosen}},
                )
    settings = panel(request).settings
    response.headers.append(
        "set-cookie", cookie_header(settings, LANGUAGE_COOKIE, chosen, max_age=365 * 86400)
    )
    return response


async def _profile_page(
    request: Request, *, message: str | None = None, error: str | None = None, status_code: int = 200
) -> Response:
    user = require_user(request)
    async with db_read(request) as session:
        account = await session.get(Account, user.account_id)
        listed = (await operator_pools(session, [user.account_id])).get(user.account_id, frozenset())
    context = {
        "account": account,
        # the pools whose conversations the operator is offered (gatewayd.assignment)
        "pools": sorted(pools_served(listed)),
        "timezones": timezone_choices(),
        "message": message,
        "error": error,
    }
    return render(request, "auth/profile.html", context, status_code=status_code)


@requires()
async def profile(request: Request) -> Response:
    saved = request.query_params.get("saved") == "1"
    return await _profile_page(request, message=translate(request, "Preferences saved.") if saved else None)


async def _new_password_hash(
    request: Request, user: CurrentUser, current: str, new: str
) -> tuple[str, str] | None:
    """(the hash the current password was verified against, the new password's hash), or None when
    the current password is wrong. Hashing runs in the panel's workers, outside any transaction.
    Raises `PasswordRejected` (a rule of new passwords) or `HashingBusy`."""
    state = panel(request)
    check_password_rules(new, user.username)
    async with db_read(request) as session:
        account = await session.get(Account, user.account_id)
    if account is None or not await state.hashing.verify(account.password_hash, current):
        return None
    return account.password_hash, await state.hashing.hash(new)


@requires()
async def change_password(request: Request) -> Response:
    user = require_user(request)
    form = await request.form()
    current = _form_text(form.get("current_password"), 1024)
    new = _form_text(form.get("new_password"), 1024)
    if new != _form_text(form.get("confirm_password"), 1024):
        return await _profile_page(
            request, error=translate(request, "The two new passwords differ."), status_code=400
        )
    try:
        hashes = await _new_password_hash(request, user, current, new)
    except PasswordRejected as rejected:
        return await _profile_page(
            request, error=translate(request, rejected.key, **rejected.params), status_code=400
        )
    except HashingBusy:
        return await _profile_page(
            request,
            error=translate(request, "The server is busy. Please try again in a moment."),
            status_code=503,
        )
    stored = False
    if hashes is not None:
        verified_hash, new_hash = hashes
        async with db(request) as session, session.begin():
            account = await session.get(Account, user.account_id, with_for_update=True)
            # Stored only if the password did not change since the current one was verified.
            if account is not None and account.password_hash == verified_hash:
                ended = await store_password_hash(session, account, new_hash, keep_session_id=user.session_id)
                await audit(
                    session,
                    request,
                    "account.password",
                    subject=f"account:{account.id}",
                    details={"by": "self", "sessions_ended": ended},
                )
                stored = True
    # Rendered once the transaction is over: the page opens a session of its own.
    if not stored:
        error = translate(request, "The current password is not right.")
        return await _profile_page(request, error=error, status_code=400)
    await announce_account_change(
        panel(request).bus, user.account_id
    )  # the other sessions' open desks end now
    return await _profile_page(
        request, message=translate(request, "Password changed. Your other open sessions have been closed.")
    )


@requires()
async def save_preferences(request: Request) -> Response:
    user = require_user(request)
    form = await request.form()
    try:
        chosen_language = check_language(_form_text(form.get("language"), 8))
        chosen_timezone = check_timezone(_form_text(form.get("timezone"), 64))
    except AccountRejected as rejected:
        return await _profile_page(request, error=translate(request, rejected.key), status_code=400)
    async with db(request) as session, session.begin():
        account = await session.get(Account, user.account_id)
        if account is not None:
            before = {"language": account.language, "timezone": account.timezone}
            after = {"language": chosen_language, "timezone": chosen_timezone}
            account.language = chosen_language
            account.timezone = chosen_timezone
            if before != after:
                await audit(
                    session,
                    request,
                    "account.profile",
                    subject=f"account:{account.id}",
                    details={"before": before, "after": after},
                )
    return RedirectResponse("/profile?saved=1", status_code=303)


routes = [
    Route("/login", login_form, methods=["GET"], name="auth.login_form"),
    Route("/login", login, methods=["POST"], name="auth.login"),
    Route("/logout", logout, methods=["POST"], name="auth.logout"),
    Route("/language", switch_language, methods=["POST"], name="auth.language"),
    Route("/profile", profile, methods=["GET"], name="auth.profile"),
    Route("/profile/password", change_password, methods=["POST"], name="auth.password"),
    Route("/profile/preferences", save_preferences, methods=["POST"], name="auth.preferences"),
]
