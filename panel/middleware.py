"""The panel's ASGI middleware: security headers, session loading and CSRF protection."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from panel.auth.identity import CurrentUser
from panel.auth.sessions import get_active_session, new_token, touch_session
from panel.i18n import negotiate_language
from panel.runtime import runtime_from_scope
from panel.web import CSRF_FIELD, CSRF_HEADER, CSRF_KEY, LANGUAGE_KEY, USER_KEY, error_response
from plugins.contract import LANGUAGES

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
STATIC_PREFIX = "/static/"
ANONYMOUS_CSRF_COOKIE = "echat_csrf"
LANGUAGE_COOKIE = "echat_lang"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def cookie_header(name: str, value: str, *, secure: bool, max_age: int | None = None) -> str:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def _with_cookies(send: Send, cookies: Iterable[str]) -> Send:
    pending = list(cookies)
    if not pending:
        return send

    async def send_with_cookies(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for cookie in pending:
                headers.append("set-cookie", cookie)
        await send(message)

    return send_with_cookies


class SecurityHeadersMiddleware:
    """CSP without inline script, no framing, no sniffing; pages are never cached (the back button after
    sign-out must show nothing)."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_static = scope["path"].startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", CONTENT_SECURITY_POLICY)
                headers.setdefault("x-frame-options", "DENY")
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "same-origin")
                headers.setdefault("cross-origin-opener-policy", "same-origin")
                headers.setdefault("permissions-policy", "camera=(), microphone=(), geolocation=()")
                if self.hsts:
                    headers.setdefault("strict-transport-security", "max-age=31536000")
                if not is_static:
                    headers["cache-control"] = "no-store"
                    headers["pragma"] = "no-cache"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SessionMiddleware:
    """Loads the signed-in user (or none) from the session cookie, picks the language and the CSRF
    token the next unsafe request must echo."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(STATIC_PREFIX):
            await self.app(scope, receive, send)
            return
        state = runtime_from_scope(scope)
        settings = state.settings
        connection = HTTPConnection(scope)
        cookies: list[str] = []
        user: CurrentUser | None = None
        token = connection.cookies.get(settings.session_cookie)
        if token:
            async with state.sessionmaker() as session:
                found = await get_active_session(session, token, settings)
                if found is not None:
                    record, account = found
                    user = CurrentUser(
                        account_id=account.id,
                        username=account.username,
                        display_name=account.display_name,
                        role=account.role,
                        permissions=state.permissions.effective(account.role, account.permissions),
                        language=account.language,
                        timezone=account.timezone,
                        presence=account.presence,
                        session_id=record.id,
                        csrf_token=record.csrf_token,
                    )
                    if touch_session(record):
                        await session.commit()
            if user is None:
                cookies.append(
                    cookie_header(settings.session_cookie, "", secure=settings.secure_cookies, max_age=0)
                )
        scope[USER_KEY] = user

        if user is not None:
            scope[CSRF_KEY] = user.csrf_token
            scope[LANGUAGE_KEY] = user.language
        else:
            anonymous_token = connection.cookies.get(ANONYMOUS_CSRF_COOKIE, "")
            if len(anonymous_token) < 32:
                anonymous_token = new_token()
                cookies.append(
                    cookie_header(ANONYMOUS_CSRF_COOKIE, anonymous_token, secure=settings.secure_cookies)
                )
            scope[CSRF_KEY] = anonymous_token
            chosen = connection.cookies.get(LANGUAGE_COOKIE, "")
            scope[LANGUAGE_KEY] = (
                chosen
                if chosen in LANGUAGES
                else negotiate_language(connection.headers.get("accept-language"), settings.default_language)
            )
        await self.app(scope, receive, _with_cookies(send, cookies))


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class CSRFMiddleware:
    """Every unsafe request must echo the session's CSRF token (form field `csrf_token` or header
    `X-CSRF-Token`, compared in constant time) and, when it sends Origin, come from the panel itself."""

    def __init__(self, app: ASGIApp, *, trusted_origins: Iterable[str] = (), max_body_bytes: int) -> None:
        self.app = app
        self.trusted_origins = frozenset(origin.rstrip("/") for origin in trusted_origins)
        self.max_body_bytes = max_body_bytes

    def _origin_allowed(self, connection: HTTPConnection) -> bool:
        origin = connection.headers.get("origin")
        if origin is None:
            return True
        own = f"{connection.url.scheme}://{connection.headers.get('host', '')}"
        return origin == own or origin in self.trusted_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        expected = scope.get(CSRF_KEY)
        if not self._origin_allowed(connection) or not isinstance(expected, str) or not expected:
            await error_response(Request(scope), 403, "panel.error.csrf")(scope, receive, send)
            return
        submitted = connection.headers.get(CSRF_HEADER)
        if submitted is None:
            try:
                body = await _read_body(receive, self.max_body_bytes)
            except _BodyTooLarge:
                await error_response(Request(scope), 413, "panel.error.too_large")(scope, receive, send)
                return
            receive = _replay(body, receive)
            form_request = Request(scope, _replay(body, receive))
            try:
                async with form_request.form() as form:
                    value = form.get(CSRF_FIELD)
                    submitted = value if isinstance(value, str) else None
            except (HTTPException, ValueError):  # an unparsable body carries no token either way
                submitted = None
        if submitted is None or not hmac.compare_digest(submitted.encode(), expected.encode()):
            await error_response(Request(scope), 403, "panel.error.csrf")(scope, receive, send)
            return
        await self.app(scope, receive, send)
