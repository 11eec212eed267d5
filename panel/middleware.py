"""The panel's ASGI middleware: security headers, request limits, session loading and CSRF protection."""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import FormData, MutableHeaders, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from panel.api import API_ROOT
from panel.auth.csrf import anonymous_token_valid, issue_anonymous_token
from panel.auth.identity import CurrentUser
from panel.auth.sessions import get_active_session, needs_touch, touch_session
from panel.i18n import LANGUAGES, negotiate_language
from panel.runtime import PanelRuntime, runtime_from_scope
from panel.settings import SESSION_COOKIE, PanelSettings
from panel.web import CSRF_FIELD, CSRF_HEADER, CSRF_KEY, FORM_KEY, LANGUAGE_KEY, USER_KEY, error_response
from translations import N_

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
STATIC_PREFIX = "/static/"
# The integrator API (panel.api): keys instead of cookies, its own body limit and problem answers, so
# none of the session, CSRF or form machinery applies to it. Only its own root: /api/nope is a panel path.
API_PREFIX = API_ROOT + "/"
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# Base names; with secure cookies they are sent as __Host-<name> (see PanelSettings.cookie_name).
ANONYMOUS_CSRF_COOKIE = "echat_csrf"
LANGUAGE_COOKIE = "echat_lang"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def cookie_header(settings: PanelSettings, name: str, value: str, *, max_age: int | None = None) -> str:
    """A Set-Cookie value for the panel cookie ``name`` (a base name such as ``LANGUAGE_COOKIE``):
    HttpOnly, SameSite=Lax, Path=/ and no Domain; Secure and __Host- prefixed when cookies are secure."""
    parts = [f"{settings.cookie_name(name)}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if settings.secure_cookies:
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
    sign-out must show nothing) — only a response that declares itself ``public`` (content anyone with
    the link may see, no session in it) keeps its Cache-Control; HSTS when the panel is served over HTTPS."""

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
                # A response that calls itself public (the photo gallery's public links) keeps its own.
                if not is_static and not headers.get("cache-control", "").startswith("public"):
                    headers["cache-control"] = "no-store"
                    headers["pragma"] = "no-cache"
            await send(message)

        await self.app(scope, receive, send_with_headers)


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


def _declared_length(connection: HTTPConnection) -> int | None:
    value = connection.headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 20 else None


# Text no database column can hold: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates (no UTF-8
# encoding; a multipart form may declare a charset such as unicode_escape that decodes to them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _form_has_unstorable_text(form: FormData) -> bool:
    for name, value in form.multi_items():
        text = (value.filename or "") if isinstance(value, UploadFile) else value
        if _UNSTORABLE.search(name) or _UNSTORABLE.search(text):
            return True
    return False


class RequestGuardMiddleware:
    """Refuses, before any other work, what no panel route can take, with a clear 4xx:

    - a NUL character in the path or the query (400): PostgreSQL cannot store one in text;
    - on unsafe methods, a body over ``max_body_bytes`` (413), counted as it arrives whatever
      Content-Length says, however the CSRF token is sent;
    - a form with more fields, files or bytes per part than the settings allow, or that does not
      parse (400), or with a NUL or a lone surrogate in a field (400): text no column can hold.

    The form is parsed here once, within those limits, and left in the scope for the CSRF check;
    the endpoint reads the same body again. A form posted to one of ``uploads`` (the paths plugins
    declare) may carry one file; others take ``max_form_files``."""

    def __init__(
        self, app: ASGIApp, *, settings: PanelSettings, uploads: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.settings = settings
        self.uploads = uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith((STATIC_PREFIX, API_PREFIX)):
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
            await error_response(
                Request(scope),
                400,
                N_("The request contains a character that is not allowed (NUL or invalid)."),
            )(scope, receive, send)
            return
        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        limit = self.settings.max_body_bytes
        declared = _declared_length(connection)
        try:
            if declared is not None and declared > limit:
                raise _BodyTooLarge
            body = await _read_body(receive, limit)
        except _BodyTooLarge:
            await error_response(Request(scope), 413, N_("The request is too large."))(scope, receive, send)
            return
        content_type = connection.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type not in FORM_TYPES:
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            form = await Request(scope, _replay(body, receive)).form(
                max_fields=self.settings.max_form_fields,
                max_files=max(1, self.settings.max_form_files)
                if scope["path"] in self.uploads
                else self.settings.max_form_files,
                max_part_size=self.settings.max_form_part_bytes,
            )
        except (HTTPException, MultiPartException):
            await error_response(
                Request(scope),
                400,
                N_("The form could not be read: too many fields or files, or a field too long."),
            )(scope, receive, send)
            return
        try:
            if _form_has_unstorable_text(form):
                await error_response(
                    Request(scope),
                    400,
                    N_("The request contains a character that is not allowed (NUL or invalid)."),
                )(scope, receive, send)
                return
            scope[FORM_KEY] = form
            await self.app(scope, _replay(body, receive), send)
        finally:
            await form.close()


class SessionMiddleware:
    """Loads the signed-in user (or none) from the session cookie, picks the language and the CSRF
    token the next unsafe request must echo. The lookup never takes SQLite's write lock; a session's
    last-seen time is written at most once a minute, after the response, so no page waits for it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith((STATIC_PREFIX, API_PREFIX)):
            await self.app(scope, receive, send)
            return
        state = runtime_from_scope(scope)
        settings = state.settings
        connection = HTTPConnection(scope)
        cookies: list[str] = []
        user: CurrentUser | None = None
        touch_due = False
        token = connection.cookies.get(settings.session_cookie)
        if token:
            user, touch_due = await _load_user(state, token)
            if user is None:
                cookies.append(cookie_header(settings, SESSION_COOKIE, "", max_age=0))
        scope[USER_KEY] = user

        if user is not None:
            scope[CSRF_KEY] = user.csrf_token
            scope[LANGUAGE_KEY] = user.language
        else:
            anonymous_token = connection.cookies.get(settings.cookie_name(ANONYMOUS_CSRF_COOKIE), "")
            now = time.time()
            if not anonymous_token_valid(anonymous_token, settings.secret_key, now):
                anonymous_token = issue_anonymous_token(settings.secret_key, now)
                cookies.append(cookie_header(settings, ANONYMOUS_CSRF_COOKIE, anonymous_token))
            scope[CSRF_KEY] = anonymous_token
            chosen = connection.cookies.get(settings.cookie_name(LANGUAGE_COOKIE), "")
            scope[LANGUAGE_KEY] = (
                chosen
                if chosen in LANGUAGES
                else negotiate_language(connection.headers.get("accept-language"), settings.default_language)
            )
        await self.app(scope, receive, _with_cookies(send, cookies))
        if user is not None and touch_due:
            await _mark_activity(state, user.session_id)


async def _load_user(state: PanelRuntime, token: str) -> tuple[CurrentUser | None, bool]:
    """The signed-in user, and whether the session's last-seen time is due to be written."""
    async with state.readers() as session:
        found = await get_active_session(session, token, state.settings)
    if found is None:
        return None, False
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
    return user, needs_touch(record)


async def _mark_activity(state: PanelRuntime, session_id: str) -> None:
    """Runs once the response is sent. A miss costs nothing but a log line: the next request of the
    session writes it."""
    try:
        async with state.sessionmaker() as session, session.begin():
            await touch_session(session, session_id)
    except SQLAlchemyError as error:
        logger.warning("panel: session activity not recorded, the next request retries: %s", error)


class CSRFMiddleware:
    """Every unsafe request must echo the CSRF token the session middleware chose (form field
    `csrf_token` or header `X-CSRF-Token`, compared in constant time) and, when it sends Origin, come
    from the panel itself or a trusted origin."""

    def __init__(self, app: ASGIApp, *, trusted_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted_origins = frozenset(origin.rstrip("/") for origin in trusted_origins)

    def _origin_allowed(self, connection: HTTPConnection) -> bool:
        origin = connection.headers.get("origin")
        if origin is None:
            return True
        own = f"{connection.url.scheme}://{connection.headers.get('host', '')}"
        return origin == own or origin in self.trusted_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS or scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        expected = scope.get(CSRF_KEY)
        submitted = connection.headers.get(CSRF_HEADER)
        if submitted is None:
            form = scope.get(FORM_KEY)
            value = form.get(CSRF_FIELD) if isinstance(form, FormData) else None
            submitted = value if isinstance(value, str) else None
        if (
            not self._origin_allowed(connection)
            or not isinstance(expected, str)
            or not expected
            or submitted is None
            or not submitted.isascii()
            or not hmac.compare_digest(submitted, expected)
        ):
            await error_response(
                Request(scope),
                403,
                N_("The form has expired or did not come from this panel. Please reload the page."),
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)
