"""CSRF on every unsafe route of every plugin, and the permission matrix: every route of every plugin
(auth, home, desk, accounts, clients, conversations, services, audit, monitor, gallery, reports, campaigns,
apikeys and the example plugin) tried by each role and by an anonymous client, against a pinned table of
statuses. The matrix runs against a real uvicorn server, so the event streams (which never end) are covered
like any other route: their status and headers are read, then they are closed.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from gatewayd.store.accounts import get_account_by_username
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.messages import MTMessage
from panel.access import Access, access_of
from panel.api import API_ROOT
from panel.auth.permissions import PermissionRegistry
from panel.settings import PanelSettings

from .conftest import (
    ACCOUNTS,
    BUILT_IN_PLUGINS,
    HTML,
    PanelClient,
    Samples,
    load_example_plugin,
    login,
    page_csrf,
)
from .desk.conftest import live_server

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
# never-ending responses: only status and headers are read
STREAMS = frozenset({("GET", "/desk/events"), ("GET", "/admin/monitor/events")})


def plugin_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, Access]]:
    """(method, path template, access) of every plugin endpoint; static mounts hold no Route."""
    for route in routes:
        if isinstance(route, Mount) and route.path == API_ROOT:
            continue  # the integrator API: keys, not sessions (tests/integration/panel/api)
        if isinstance(route, Mount):
            yield from plugin_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            access = access_of(route.endpoint)
            assert access is not None, route.path
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, prefix + route.path, access


async def mt_count(settings: PanelSettings) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            return int((await session.execute(select(func.count()).select_from(MTMessage))).scalar_one())
    finally:
        await engine.dispose()


def test_the_app_serves_every_plugins_routes(app: Starlette) -> None:
    served = {(method, path) for method, path, _ in plugin_routes(app.routes)}
    assert {
        ("GET", "/login"),
        ("POST", "/logout"),
        ("GET", "/admin"),
        ("POST", "/notes/preview"),
        ("GET", "/desk"),
        ("GET", "/desk/events"),
        ("POST", "/desk/conversations/{conversation_id:id}/reply"),
    } <= served


async def test_every_unsafe_route_refuses_a_request_without_or_with_a_wrong_token(
    client: PanelClient, app: Starlette, samples: Samples, settings: PanelSettings
) -> None:
    routes = plugin_routes(app.routes)
    unsafe = [(method, samples.path(path)) for method, path, _ in routes if method in UNSAFE]
    desk_posts = {path for method, path in unsafe if path.startswith("/desk/")}
    assert desk_posts == {
        "/desk/presence",
        "/desk/draft",
        "/desk/push",
        f"/desk/clients/{samples.client_id}/details",
        f"/desk/conversations/{samples.conversation_id}/reply",
        f"/desk/conversations/{samples.conversation_id}/close",
    }
    assert len(unsafe) >= 12
    form = {
        "language": "en",
        "text": "hola",
        "presence": "online",
        "client_id": samples.client_id,
        "conversation_id": str(samples.conversation_id),
        "alias": "Pepe",
    }
    for who in (None, "ana", "oscar"):  # the holder of the sample conversation included
        if who is not None:
            await login(client, who)
        for method, path in unsafe:
            missing = await client.request(method, path, data=form, headers=HTML)
            assert missing.status_code == 403, (who, method, path)
            assert "formulario ha caducado" in missing.text
            wrong_token = {"x-csrf-token": "y" * 43}
            wrong_form = {**form, "csrf_token": "x" * 43}
            wrong = await client.request(method, path, data=wrong_form, headers=wrong_token)
            assert wrong.status_code == 403, (who, method, path)
        if who is not None:
            token = await page_csrf(client, "/profile")
            assert (await client.post("/logout", data={"csrf_token": token})).status_code == 303
    # The refused requests changed nothing: no reply or push queued, the conversation still open.
    assert await mt_count(settings) == 0
    await login(client, "oscar")
    page = await client.get(f"/desk?c={samples.conversation_id}", headers=HTML)
    assert page.status_code == 200 and 'action="/desk/conversations/' in page.text


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


# Every route, in the order the matrix requests them (the reply before the close, sign-out last):
# (method, path template) -> the form sent (values may name a path parameter), and who -> status.
# ana: admin; marta: master; oscar: operator holding the sample conversation; nadie: operator with no
# grants. Anonymous page requests are sent to the login form (303), other anonymous requests get 401.
FORMS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/login"): {"username": "", "password": ""},
    ("POST", "/language"): {"language": "es"},
    ("POST", "/profile/password"): {"current": "wrong", "password": "x", "confirm": "y"},
    ("POST", "/profile/preferences"): {"language": "es", "timezone": "Europe/Madrid"},
    ("POST", "/notes/preview"): {"text": "hola"},
    ("POST", "/desk/presence"): {"presence": "online"},
    ("POST", "/desk/draft"): {"text": "hola"},
    ("POST", "/desk/conversations/{conversation_id:id}/reply"): {"text": "hola"},
    ("POST", "/desk/clients/{client_id}/details"): {"conversation_id": "{conversation_id}", "alias": "Pepe"},
    ("POST", "/desk/push"): {"client_id": "{client_id}", "text": "hola"},
    # The accounts forms, each invalid: the matrix changes no account (each refusal has its test).
    ("POST", "/admin/accounts"): {"username": "nuevo", "role": ""},
    ("POST", "/admin/accounts/{account_id:id}"): {"role": ""},
    ("POST", "/admin/accounts/{account_id:id}/password"): {"password": "x", "confirm_password": "y"},
    ("POST", "/admin/accounts/{account_id:id}/lock"): {"reason": ""},
    ("POST", "/admin/diversion"): {"service": "no-such-service", "diverted": "on"},
    ("POST", "/admin/sessions"): {"numbers": "{client_id}\n600000001\nhola", "country": "ES"},
    # an unban of a client who is not banned: "already", nothing changes for the routes after it
    ("POST", "/admin/clients"): {"action": "unban", "ids": "{client_id}"},
    # a target that is no operator: refused (400), the sample conversation stays with its operator
    ("POST", "/admin/monitor/reassign"): {"operator": "nobody", "conversations": "{conversation_id}"},
    # the gallery: no file, a loopback address (refused before any connection), a photo that is not there
    ("POST", "/admin/gallery/upload"): {"album": "x"},
    ("POST", "/admin/gallery/import"): {"url": "http://127.0.0.1/x.png", "album": "x"},
    # the mass push: a campaign without its text (400), a counter, a campaign that is not there
    ("POST", "/admin/campaigns"): {"name": "x", "last_pushes": "2", "tps": "10"},
    ("POST", "/admin/campaigns/draft"): {"text": "hola", "last_pushes": "2"},
    ("POST", "/admin/campaigns/{campaign_id:id}/status"): {"action": "pause"},
    # API keys: a key with no name and no scope is refused; the sample key id is no key
    ("POST", "/admin/api-keys"): {"name": ""},
    # the webhooks: a loopback receiver (refused before anything is stored), a subscription not there
    ("POST", "/admin/webhooks"): {"name": "crm", "url": "http://127.0.0.1/hooks", "events": "mo.received"},
    ("POST", "/admin/webhooks/{subscription_id:id}"): {"name": "crm", "url": "http://127.0.0.1/hooks"},
}
REPORTS_ACCESS = {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403}
PINNED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/"): {"anonymous": 303, "ana": 303, "marta": 303, "oscar": 303, "nadie": 200},
    ("GET", "/login"): {"anonymous": 200, "ana": 303, "marta": 303, "oscar": 303, "nadie": 303},
    ("POST", "/login"): {"anonymous": 401, "ana": 401, "marta": 401, "oscar": 401, "nadie": 401},
    ("POST", "/language"): {"anonymous": 303, "ana": 303, "marta": 303, "oscar": 303, "nadie": 303},
    ("GET", "/profile"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 200, "nadie": 200},
    ("POST", "/profile/password"): {"anonymous": 401, "ana": 400, "marta": 400, "oscar": 400, "nadie": 400},
    ("POST", "/profile/preferences"): {
        "anonymous": 401,
        "ana": 303,
        "marta": 303,
        "oscar": 303,
        "nadie": 303,
    },
    ("GET", "/admin"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("GET", "/operator"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 200, "nadie": 403},
    ("GET", "/notes"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 200, "nadie": 403},
    ("GET", "/notes/settings"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("POST", "/notes/preview"): {"anonymous": 401, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("GET", "/notes/about"): {"anonymous": 200, "ana": 200, "marta": 200, "oscar": 200, "nadie": 200},
    ("GET", "/desk"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 200, "nadie": 403},
    ("GET", "/desk/events"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 200, "nadie": 403},
    ("POST", "/desk/presence"): {"anonymous": 401, "ana": 303, "marta": 303, "oscar": 303, "nadie": 403},
    ("POST", "/desk/draft"): {"anonymous": 401, "ana": 200, "marta": 200, "oscar": 200, "nadie": 403},
    ("POST", "/desk/conversations/{conversation_id:id}/reply"): {
        "anonymous": 401,
        "ana": 403,
        "marta": 403,
        "oscar": 303,
        "nadie": 403,
    },
    ("POST", "/desk/conversations/{conversation_id:id}/close"): {
        "anonymous": 401,
        "ana": 404,
        "marta": 404,
        "oscar": 303,
        "nadie": 403,
    },
    ("POST", "/desk/clients/{client_id}/details"): {
        "anonymous": 401,
        "ana": 303,
        "marta": 303,
        "oscar": 303,
        "nadie": 403,
    },
    ("GET", "/desk/push"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 200, "nadie": 403},
    ("POST", "/desk/push"): {"anonymous": 401, "ana": 303, "marta": 303, "oscar": 303, "nadie": 403},
    ("GET", "/admin/accounts"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("POST", "/admin/accounts"): {"anonymous": 401, "ana": 400, "marta": 400, "oscar": 403, "nadie": 403},
    ("GET", "/admin/accounts/new"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("GET", "/admin/accounts/{account_id:id}"): {
        "anonymous": 303,
        "ana": 200,
        "marta": 200,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/accounts/{account_id:id}"): {
        "anonymous": 401,
        "ana": 400,
        "marta": 400,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/accounts/{account_id:id}/password"): {
        "anonymous": 401,
        "ana": 400,
        "marta": 400,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/accounts/{account_id:id}/lock"): {
        "anonymous": 401,
        "ana": 400,
        "marta": 400,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/accounts/{account_id:id}/unlock"): {
        "anonymous": 401,
        "ana": 409,
        "marta": 409,
        "oscar": 403,
        "nadie": 403,
    },
    ("GET", "/admin/diversion"): {"anonymous": 303, "ana": 200, "marta": 403, "oscar": 403, "nadie": 403},
    ("POST", "/admin/diversion"): {"anonymous": 401, "ana": 404, "marta": 403, "oscar": 403, "nadie": 403},
    ("GET", "/admin/sessions"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("POST", "/admin/sessions"): {"anonymous": 401, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    # The audit trail: admins only (audit.view is no role's default; the master lacks it).
    ("GET", "/admin/audit"): {"anonymous": 303, "ana": 200, "marta": 403, "oscar": 403, "nadie": 403},
    ("GET", "/admin/audit.csv"): {"anonymous": 303, "ana": 200, "marta": 403, "oscar": 403, "nadie": 403},
    ("POST", "/admin/audit/verify"): {"anonymous": 401, "ana": 200, "marta": 403, "oscar": 403, "nadie": 403},
    ("GET", "/admin/clients"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("POST", "/admin/clients"): {"anonymous": 401, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    # The conversation browser: who may read other operators' answers (a master's default) in the panel.
    ("GET", "/admin/conversations"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("GET", "/admin/conversations/{conversation_id:id}"): {
        "anonymous": 303,
        "ana": 200,
        "marta": 200,
        "oscar": 403,
        "nadie": 403,
    },
    ("GET", "/admin/clients/{client_id}/history"): {
        "anonymous": 303,
        "ana": 200,
        "marta": 200,
        "oscar": 403,
        "nadie": 403,
    },
    # The live monitor: monitor.view is the master's by default (and every admin's).
    ("GET", "/admin/monitor"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("GET", "/admin/monitor/events"): {
        "anonymous": 303,
        "ana": 200,
        "marta": 200,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/monitor/reassign"): {
        "anonymous": 401,
        "ana": 400,
        "marta": 400,
        "oscar": 403,
        "nadie": 403,
    },
    # The photo gallery: gallery.manage is the master's by default; the public links need no session
    # (no photo has the sample token: 404 for everyone, never a sign-in redirect).
    ("GET", "/admin/gallery"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("POST", "/admin/gallery/upload"): {
        "anonymous": 401,
        "ana": 400,
        "marta": 400,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/gallery/import"): {
        "anonymous": 401,
        "ana": 400,
        "marta": 400,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/gallery/{photo_id:id}/delete"): {
        "anonymous": 401,
        "ana": 404,
        "marta": 404,
        "oscar": 403,
        "nadie": 403,
    },
    ("GET", "/p/{token}"): {"anonymous": 404, "ana": 404, "marta": 404, "oscar": 404, "nadie": 404},
    ("GET", "/p/{token}/thumb"): {"anonymous": 404, "ana": 404, "marta": 404, "oscar": 404, "nadie": 404},
    # The reports: reports.view is the master's by default; pages only read (no form to post).
    ("GET", "/admin/reports"): REPORTS_ACCESS,
    ("GET", "/admin/reports/operators"): REPORTS_ACCESS,
    ("GET", "/admin/reports/traffic"): REPORTS_ACCESS,
    ("GET", "/admin/reports/clients"): REPORTS_ACCESS,
    # The spend report is only where a service bills its clients (this panel's services bill nobody).
    ("GET", "/admin/reports/spend"): {"anonymous": 303, "ana": 404, "marta": 404, "oscar": 403, "nadie": 403},
    # The mass push: campaigns.manage is the master's by default. The audience count without its
    # filters is a 400 (the number of pushes is missing); the sample campaign does not exist.
    ("GET", "/admin/campaigns"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("POST", "/admin/campaigns"): {"anonymous": 401, "ana": 400, "marta": 400, "oscar": 403, "nadie": 403},
    ("GET", "/admin/campaigns/new"): {"anonymous": 303, "ana": 200, "marta": 200, "oscar": 403, "nadie": 403},
    ("GET", "/admin/campaigns/audience"): {
        "anonymous": 303,
        "ana": 400,
        "marta": 400,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/campaigns/draft"): {
        "anonymous": 401,
        "ana": 200,
        "marta": 200,
        "oscar": 403,
        "nadie": 403,
    },
    ("GET", "/admin/campaigns/{campaign_id:id}"): {
        "anonymous": 303,
        "ana": 404,
        "marta": 404,
        "oscar": 403,
        "nadie": 403,
    },
    ("GET", "/admin/campaigns/{campaign_id:id}/progress"): {
        "anonymous": 303,
        "ana": 404,
        "marta": 404,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/campaigns/{campaign_id:id}/status"): {
        "anonymous": 401,
        "ana": 404,
        "marta": 404,
        "oscar": 403,
        "nadie": 403,
    },
    # API keys: apikeys.manage is no role's by default, so only admins (every power) hold it.
    ("GET", "/admin/api-keys"): {"anonymous": 303, "ana": 200, "marta": 403, "oscar": 403, "nadie": 403},
    ("POST", "/admin/api-keys"): {"anonymous": 401, "ana": 400, "marta": 403, "oscar": 403, "nadie": 403},
    ("POST", "/admin/api-keys/{key_id:id}/revoke"): {
        "anonymous": 401,
        "ana": 404,
        "marta": 403,
        "oscar": 403,
        "nadie": 403,
    },
    # The webhooks: webhooks.manage is the admins' only; no subscription has the sample id (404).
    ("GET", "/admin/webhooks"): {"anonymous": 303, "ana": 200, "marta": 403, "oscar": 403, "nadie": 403},
    ("POST", "/admin/webhooks"): {"anonymous": 401, "ana": 400, "marta": 403, "oscar": 403, "nadie": 403},
    ("GET", "/admin/webhooks/{subscription_id:id}"): {
        "anonymous": 303,
        "ana": 404,
        "marta": 403,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/webhooks/{subscription_id:id}"): {
        "anonymous": 401,
        "ana": 404,
        "marta": 403,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/webhooks/{subscription_id:id}/rotate"): {
        "anonymous": 401,
        "ana": 404,
        "marta": 403,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/webhooks/{subscription_id:id}/delete"): {
        "anonymous": 401,
        "ana": 404,
        "marta": 403,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/webhooks/{subscription_id:id}/redeliver"): {
        "anonymous": 401,
        "ana": 404,
        "marta": 403,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/admin/webhooks/{subscription_id:id}/deliveries/{delivery_id:id}/redeliver"): {
        "anonymous": 401,
        "ana": 404,
        "marta": 403,
        "oscar": 403,
        "nadie": 403,
    },
    ("POST", "/logout"): {"anonymous": 401, "ana": 303, "marta": 303, "oscar": 303, "nadie": 303},
}


def test_every_route_of_every_plugin_is_pinned(app: Starlette) -> None:
    served = {(method, path) for method, path, _ in plugin_routes(app.routes)}
    assert served == set(PINNED)
    assert set(FORMS) <= set(PINNED)
    assert list(PINNED)[-1] == ("POST", "/logout")


@pytest.mark.parametrize("who", ["anonymous", *ACCOUNTS])
async def test_permission_matrix(app: Starlette, samples: Samples, settings: PanelSettings, who: str) -> None:
    accesses = {(method, path): access for method, path, access in plugin_routes(app.routes)}
    registry = PermissionRegistry.build([*BUILT_IN_PLUGINS, load_example_plugin()])
    permissions: frozenset[str] = frozenset()
    if who != "anonymous":
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session:
                account = await get_account_by_username(session, who)
                assert account is not None
                permissions = registry.effective(account.role, account.permissions)
        finally:
            await engine.dispose()
    mismatches: list[tuple[str, str, int, int]] = []
    async with live_server(app) as server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        if who != "anonymous":
            assert (await login(client, who)).status_code == 303
        token = await page_csrf(client, "/profile" if who != "anonymous" else "/login")
        for (method, template), expected_by_role in PINNED.items():
            path = samples.path(template)
            form = {name: samples.path(value) for name, value in FORMS.get((method, template), {}).items()}
            headers = {**HTML, "x-csrf-token": token}
            async with client.stream(method, path, data=form or None, headers=headers) as response:
                status = response.status_code  # the body is never read: a stream would not end
                location = response.headers.get("location", "")
                content_type = response.headers.get("content-type", "")
            if status != expected_by_role[who]:
                mismatches.append((method, template, status, expected_by_role[who]))
            if (method, template) in STREAMS and status == 200:
                assert content_type.startswith("text/event-stream"), (who, method, template)
            # The pinned table agrees with the access each route declares.
            access = accesses[(method, template)]
            if access.public:
                assert status != 403, (who, method, template)
            elif who == "anonymous":
                assert status == (303 if method == "GET" else 401), (who, method, template)
                if status == 303:
                    assert location.startswith("/login?next="), (who, method, template)
            elif access.permissions <= permissions:
                assert status not in (401, 403) or template.startswith("/desk/conversations/"), (
                    who,
                    method,
                    template,
                    status,
                )
            else:
                assert status == 403, (who, method, template)
    assert mismatches == [], mismatches
