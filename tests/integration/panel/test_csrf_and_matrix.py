"""CSRF on every unsafe route of every plugin, and the permission matrix over every route and role."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from panel.access import Access, access_of

from .conftest import ACCOUNTS, HTML, PanelClient, login, page_csrf

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def plugin_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, Access]]:
    """(method, path, access) of every plugin endpoint; static mounts hold no Route."""
    for route in routes:
        if isinstance(route, Mount):
            yield from plugin_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            access = access_of(route.endpoint)
            assert access is not None, route.path
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, prefix + route.path, access


def test_the_app_serves_every_plugins_routes(app: Starlette) -> None:
    served = {(method, path) for method, path, _ in plugin_routes(app.routes)}
    assert {("GET", "/login"), ("POST", "/logout"), ("GET", "/admin"), ("POST", "/notes/preview")} <= served


async def test_every_unsafe_route_refuses_a_request_without_or_with_a_wrong_token(
    client: PanelClient, app: Starlette
) -> None:
    unsafe = [(method, path) for method, path, _ in plugin_routes(app.routes) if method in UNSAFE]
    assert len(unsafe) >= 5
    for signed_in in (False, True):
        if signed_in:
            await login(client, "ana")
        for method, path in unsafe:
            missing = await client.request(method, path, data={"language": "en"}, headers=HTML)
            assert missing.status_code == 403, (signed_in, method, path)
            assert "formulario ha caducado" in missing.text
            wrong_token = {"x-csrf-token": "y" * 43}
            wrong = await client.request(method, path, data={"csrf_token": "x" * 43}, headers=wrong_token)
            assert wrong.status_code == 403, (signed_in, method, path)
    # The refused sign-out changed nothing.
    assert (await client.get("/admin", headers=HTML)).status_code == 200


async def test_the_anonymous_token_does_not_work_once_signed_in(client: PanelClient) -> None:
    anonymous_token = await page_csrf(client, "/login")
    await login(client, "ana")
    refused = await client.post("/logout", data={"csrf_token": anonymous_token})
    assert refused.status_code == 403
    session_token = await page_csrf(client, "/profile")
    assert session_token != anonymous_token
    assert (await client.post("/logout", headers={"x-csrf-token": session_token})).status_code == 303


async def test_a_foreign_origin_is_refused_even_with_the_right_token(client: PanelClient) -> None:
    await login(client, "ana")
    token = await page_csrf(client, "/profile")
    foreign = await client.post(
        "/logout", data={"csrf_token": token}, headers={"origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    own = await client.post("/logout", data={"csrf_token": token}, headers={"origin": "http://testserver"})
    assert own.status_code == 303


# Pinned expectations for the built-in panels and the example plugin: (method, path) -> role -> status.
PINNED = {
    ("GET", "/admin"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("GET", "/operator"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 200, "nadie": 403},
    ("GET", "/notes"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 200, "nadie": 403},
    ("GET", "/notes/settings"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("POST", "/notes/preview"): {"anonymous": 401, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("GET", "/profile"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 200, "nadie": 200},
    ("GET", "/login"): {"anonymous": 200, "ana": 303, "marta": 303, "oscar": 303, "nadie": 303},
    ("GET", "/notes/about"): {"anonymous": 200, "ana": 200, "marta": 200, "oscar": 200, "nadie": 200},
}


@pytest.mark.parametrize("who", ["anonymous", *ACCOUNTS])
async def test_permission_matrix(client: PanelClient, app: Starlette, who: str) -> None:
    permissions: frozenset[str] = frozenset()
    if who != "anonymous":
        assert (await login(client, who)).status_code == 303
        account = await client.account(who)
        permissions = client.runtime.permissions.effective(account.role, account.permissions)
    token = await page_csrf(client, "/profile" if who != "anonymous" else "/login")
    routes = sorted(plugin_routes(app.routes), key=lambda entry: entry[1] == "/logout")  # sign out last
    for method, path, access in routes:
        response = await client.request(method, path, headers={**HTML, "x-csrf-token": token})
        status = response.status_code
        if (method, path) in PINNED:
            assert status == PINNED[(method, path)][who], (who, method, path)
        if access.public:
            assert status != 403, (who, method, path)
        elif who == "anonymous":
            expected = 303 if method == "GET" else 401
            assert status == expected, (who, method, path)
            if status == 303:
                assert response.headers["location"].startswith("/login?next=")
        elif access.permissions <= permissions:
            assert status not in (401, 403), (who, method, path, status)
        else:
            assert status == 403, (who, method, path)
