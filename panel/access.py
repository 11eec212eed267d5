"""How a route declares who may call it. Every plugin route must carry one of these (deny by default).

    @public                         anyone, signed in or not (the login page)
    @requires()                     any signed-in account
    @requires("push.send", ...)     signed-in accounts holding every named permission

A page request (GET/HEAD accepting HTML) from an anonymous visitor is redirected to the login page;
other anonymous requests get 401. A signed-in account lacking a permission gets 403.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from panel.web import current_user, error_response

Endpoint = Callable[[Request], Awaitable[Response]]
LOGIN_PATH = "/login"
_ACCESS_ATTRIBUTE = "__echat_access__"


@dataclass(frozen=True, slots=True)
class Access:
    public: bool
    permissions: frozenset[str] = frozenset()


def access_of(endpoint: Any) -> Access | None:
    found = getattr(endpoint, _ACCESS_ATTRIBUTE, None)
    return found if isinstance(found, Access) else None


def _mark(endpoint: Endpoint, access: Access) -> Endpoint:
    setattr(endpoint, _ACCESS_ATTRIBUTE, access)
    return endpoint


def public(endpoint: Endpoint) -> Endpoint:
    return _mark(endpoint, Access(public=True))


def wants_page(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='')}", status_code=303)


def requires(*permissions: str) -> Callable[[Endpoint], Endpoint]:
    needed = frozenset(permissions)

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            user = current_user(request)
            if user is None:
                return login_redirect(request) if wants_page(request) else error_response(request, 401)
            if not user.has(*needed):
                return error_response(request, 403)
            return await endpoint(request)

        return _mark(guarded, Access(public=False, permissions=needed))

    return decorate
