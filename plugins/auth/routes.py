"""Sign-in, sign-out, language switch and the user's own profile."""

from __future__ import annotations

from zoneinfo import available_timezones

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gatewayd.store.accounts import Account
from panel.access import public, requires
from panel.auth.accounts import AccountRejected, check_language, check_timezone, set_password
from panel.auth.login import LoginOutcome, authenticate
from panel.auth.passwords import PasswordRejected
from panel.auth.sessions import create_session, revoke_session
from panel.i18n import format_datetime
from panel.middleware import LANGUAGE_COOKIE, cookie_header
from panel.presence import announce_account_change
from panel.web import current_user, db, gettext, panel, render, require_user

FAILED_LOGIN_STATUS = {
    LoginOutcome.BAD_CREDENTIALS: 401,
    LoginOutcome.LOCKED: 423,
    LoginOutcome.TEMPORARILY_LOCKED: 423,
    LoginOutcome.RATE_LIMITED: 429,
}


def safe_next(value: object, default: str = "/") -> str:
    """Only a path on this site: no scheme, no host, no protocol-relative tricks."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ord(char) < 32 for char in value):
        return default
    return value


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


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
) -> Response:
    context = {"next": next_path, "username": username, "error": error, "notice": notice}
    return render(request, "auth/login.html", context, status_code=status_code)


@public
async def login_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if current_user(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    notice = gettext(request, "auth.login.signed_out") if request.query_params.get("signed_out") else None
    return _login_page(request, next_path=next_path, notice=notice)


@public
async def login(request: Request) -> Response:
    state = panel(request)
    form = await request.form()
    username = _form_text(form.get("username"), 64)
    password = _form_text(form.get("password"), 1024)
    next_path = safe_next(form.get("next"))
    async with db(request) as session, session.begin():
        result = await authenticate(
            session,
            state.passwords,
            state.settings,
            username=username,
            password=password,
            ip=_client_ip(request),
        )
        if result.outcome is LoginOutcome.OK and result.account is not None:
            issued = await create_session(
                session,
                result.account,
                state.settings,
                ip=_client_ip(request),
                user_agent=request.headers.get("user-agent"),
            )
            response: Response = RedirectResponse(next_path, status_code=303)
            response.headers.append(
                "set-cookie",
                cookie_header(
                    state.settings.session_cookie, issued.token, secure=state.settings.secure_cookies
                ),
            )
            return response
    timezone = result.account.timezone if result.account is not None else state.settings.default_timezone
    until = format_datetime(result.locked_until, timezone, "time") if result.locked_until else ""
    error = gettext(request, f"auth.login.{result.outcome.value}", until=until)
    return _login_page(
        request,
        next_path=next_path,
        username=username,
        error=error,
        status_code=FAILED_LOGIN_STATUS[result.outcome],
    )


@requires()
async def logout(request: Request) -> Response:
    state = panel(request)
    settings = state.settings
    token = request.cookies.get(settings.session_cookie, "")
    async with db(request) as session, session.begin():
        await revoke_session(session, token)
    # Open desks of this session end now; an operator with no other session leaves the desk.
    await announce_account_change(state.bus, require_user(request).account_id)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    response.headers.append(
        "set-cookie", cookie_header(settings.session_cookie, "", secure=settings.secure_cookies, max_age=0)
    )
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
            if account is not None:
                account.language = chosen
    settings = panel(request).settings
    response.headers.append(
        "set-cookie",
        cookie_header(LANGUAGE_COOKIE, chosen, secure=settings.secure_cookies, max_age=365 * 86400),
    )
    return response


def _sorted_timezones() -> list[str]:
    return sorted(zone for zone in available_timezones() if "/" in zone or zone == "UTC")


async def _profile_page(
    request: Request, *, message: str | None = None, error: str | None = None, status_code: int = 200
) -> Response:
    user = require_user(request)
    async with db(request) as session:
        account = await session.get(Account, user.account_id)
    context = {
        "account": account,
        "timezones": _sorted_timezones(),
        "message": message,
        "error": error,
    }
    return render(request, "auth/profile.html", context, status_code=status_code)


@requires()
async def profile(request: Request) -> Response:
    saved = request.query_params.get("saved") == "1"
    return await _profile_page(request, message=gettext(request, "auth.profile.saved") if saved else None)


@requires()
async def change_password(request: Request) -> Response:
    user = require_user(request)
    state = panel(request)
    form = await request.form()
    current = _form_text(form.get("current_password"), 1024)
    new = _form_text(form.get("new_password"), 1024)
    if new != _form_text(form.get("confirm_password"), 1024):
        return await _profile_page(request, error=gettext(request, "auth.profile.mismatch"), status_code=400)
    error: str | None = None
    async with db(request) as session, session.begin():
        account = await session.get(Account, user.account_id)
        if account is None or not state.passwords.verify(account.password_hash, current):
            error = gettext(request, "auth.profile.wrong_password")
        else:
            try:
                await set_password(session, state.passwords, account, new, keep_session_id=user.session_id)
            except PasswordRejected as rejected:
                error = gettext(request, rejected.key, **rejected.params)
    # Rendered once the transaction is over: the page opens a session of its own.
    if error is not None:
        return await _profile_page(request, error=error, status_code=400)
    await announce_account_change(state.bus, user.account_id)  # the other sessions' open desks end now
    return await _profile_page(request, message=gettext(request, "auth.profile.password_changed"))


@requires()
async def save_preferences(request: Request) -> Response:
    user = require_user(request)
    form = await request.form()
    try:
        chosen_language = check_language(_form_text(form.get("language"), 8))
        chosen_timezone = check_timezone(_form_text(form.get("timezone"), 64))
    except AccountRejected as rejected:
        return await _profile_page(request, error=gettext(request, rejected.key), status_code=400)
    async with db(request) as session, session.begin():
        account = await session.get(Account, user.account_id)
        if account is not None:
            account.language = chosen_language
            account.timezone = chosen_timezone
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
