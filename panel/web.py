"""What a plugin's endpoint uses: the current user, the language, a database session, rendering."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response

from panel.auth.identity import CurrentUser
from panel.i18n import negotiate_language
from panel.runtime import PanelRuntime, PanelStateMissing, runtime
from translations import N_

USER_KEY = "echat.user"
CSRF_KEY = "echat.csrf"
FORM_KEY = "echat.form"  # the unsafe request's form, parsed within the panel's limits
LANGUAGE_KEY = "echat.language"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class DatabaseIdConvertor(Convertor[int]):
    """``{name:id}`` in a route path: a database id, 1 to 18 digits, so it always fits a 64-bit
    column. Anything longer is no route (404), never an overflow in the database driver."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", DatabaseIdConvertor())


def textarea_text(form: Mapping[str, object], name: str, limit: int) -> str:
    """A ``<textarea>``'s text as its page counted it, at most ``limit`` characters ('' when the field
    is missing or a file). A browser submits each line break as CRLF but counts it as one LF (the box's
    maxlength, the live SMS counters that post the box's value): kept as CRLF, an SMS would cost one
    character more a line than the operator was shown, and text under maxlength would be over it."""
    value = form.get(name)
    return value[: 2 * limit].replace("\r\n", "\n")[:limit] if isinstance(value, str) else ""


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
    # Before the session middleware chose one (a request refused at the door): the browser's.
    default = runtime(connection).settings.default_language
    return negotiate_language(connection.headers.get("accept-language"), default)


def translate(connection: HTTPConnection, message: str, /, **params: object) -> str:
    """``message`` (English, ``%(name)s`` placeholders) in the reader's language; `make messages`
    extracts the second argument of each call."""
    return runtime(connection).catalog.gettext(language(connection), message, **params)


def translate_plural(
    connection: HTTPConnection, singular: str, plural: str, n: int, /, **params: object
) -> str:
    """The singular or a plural form for ``n`` (``%(num)d``) in the reader's language."""
    return runtime(connection).catalog.ngettext(language(connection), singular, plural, n, **params)


def db(connection: HTTPConnection) -> AsyncSession:
    """A new session (one unit of work): `async with db(request) as session, session.begin(): ...`."""
    return runtime(connection).sessionmaker()


def db_read(connection: HTTPConnection) -> AsyncSession:
    """A new session for a unit of work that only reads (`async with db_read(request) as session:`).
    On SQLite it never takes the write lock, so pages do not hold up the daemon's commits."""
    return runtime(connection).readers()


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


ERROR_MESSAGES = MappingProxyType(
    {
        400: N_("The request is not valid."),
        401: N_("Please sign in to see this page."),
        403: N_("Your account is not allowed to do this."),
        404: N_("This page does not exist."),
        405: N_("Method not allowed."),
        500: N_("Internal error. Please try again in a few minutes."),
    }
)


def error_response(connection: HTTPConnection, status: int, message: str | None = None) -> Response:
    """An error page in the reader's language (plain text when the panel state is not there); ``message``
    is an English text marked with ``N_``, the status's own by default."""
    key = message or ERROR_MESSAGES.get(status, ERROR_MESSAGES[400 if status < 500 else 500])
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
