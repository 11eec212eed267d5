"""What a plugin's endpoint uses: the current user, the language, a database session, rendering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response

from panel.auth.identity import CurrentUser
from panel.runtime import PanelRuntime, PanelStateMissing, runtime

USER_KEY = "echat.user"
CSRF_KEY = "echat.csrf"
LANGUAGE_KEY = "echat.language"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def current_user(connection: HTTPConnection) -> CurrentUser | None:
    found = connection.scope.get(USER_KEY)
    return found if isinstance(found, CurrentUser) else None


def require_user(connection: HTTPConnection) -> CurrentUser:
    """The signed-in user inside a `@requires` endpoint (where one always exists)."""
    user = current_user(connection)
    if user is None:
        raise LookupError("no signed-in user: declare the route with @requires")
    return user


def csrf_token(connection: HTTPConnection) -> str:
    found = connection.scope.get(CSRF_KEY)
    return found if isinstance(found, str) else ""


def language(connection: HTTPConnection) -> str:
    found = connection.scope.get(LANGUAGE_KEY)
    if isinstance(found, str):
        return found
    return runtime(connection).settings.default_language


def gettext(connection: HTTPConnection, key: str, /, **params: object) -> str:
    return runtime(connection).catalog.gettext(language(connection), key, **params)


def db(connection: HTTPConnection) -> AsyncSession:
    """A new session (one unit of work): `async with db(request) as session, session.begin(): ...`."""
    return runtime(connection).sessionmaker()


def panel(connection: HTTPConnection) -> PanelRuntime:
    return runtime(connection)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Render a template with the layout's context (user, csrf_token, _, menu, language, time zone)."""
    return runtime(request).templates.TemplateResponse(
        request, template, dict(context or {}), status_code=status_code, headers=headers
    )


def error_response(connection: HTTPConnection, status: int, message_key: str | None = None) -> Response:
    """An error page in the reader's language (plain text when the panel state is not there)."""
    key = message_key or f"panel.error.{status}"
    try:
        state = runtime(connection)
    except PanelStateMissing:
        return PlainTextResponse(key, status_code=status)
    lang = language(connection)
    message = state.catalog.gettext(lang, key)
    if isinstance(connection, Request) and "text/html" in connection.headers.get("accept", ""):
        return state.templates.TemplateResponse(
            connection, "panel/error.html", {"status": status, "message": message}, status_code=status
        )
    return PlainTextResponse(message, status_code=status)
