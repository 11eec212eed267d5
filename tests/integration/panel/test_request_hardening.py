"""What the panel refuses before any route runs, on SQLite and PostgreSQL: bodies over the limit however
the CSRF token is sent, forms over their field and file limits, NUL characters in any form field,
path or query (PostgreSQL cannot store them), ids beyond 64 bits; the anonymous CSRF token only when
the panel signed it; cookie names and flags behind HTTPS. Each a clear 4xx, never a 500."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from gatewayd.bus.memory import MemoryBus
from panel.api import API_ROOT
from panel.app import create_app
from panel.auth.csrf import ANONYMOUS_TOKEN_LIFETIME_SECONDS, issue_anonymous_token
from panel.settings import PanelSettings
from plugins import auth, home

from .conftest import (
    FAST_ARGON2,
    HTML,
    PASSWORD,
    PanelClient,
    Samples,
    login,
    page_csrf,
    prepare_store,
    serving,
)

LIMIT = 64 * 1024


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest) -> PanelSettings:
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    return PanelSettings(
        database_url=url, secure_cookies=False, argon2=FAST_ARGON2, max_body_bytes=LIMIT, max_form_fields=20
    )


def unsafe_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount) and route.path == API_ROOT:
            continue  # JSON, not forms: tests/integration/panel/api checks its bodies
        if isinstance(route, Mount):
            yield from unsafe_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method not in ("GET", "HEAD"):
                    yield method, prefix + route.path


# Every field each unsafe route reads, with a value it accepts; a NUL in any of them must be a 400.
FIELDS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/login"): {"username": "oscar", "password": PASSWORD, "next": "/"},
    ("POST", "/logout"): {},
    ("POST", "/language"): {"language": "es", "next": "/"},
    ("POST", "/profile/password"): {
        "current_password": PASSWORD,
        "new_password": "another good password",
        "confirm_password": "another good password",
    },
    ("POST", "/profile/preferences"): {"language": "es", "timezone": "Europe/Madrid"},
    ("POST", "/notes/preview"): {"text": "hola"},
    ("POST", "/desk/presence"): {"presence": "online"},
    ("POST", "/desk/draft"): {"text": "hola"},
    ("POST", "/desk/conversations/{conversation_id:id}/reply"): {"text": "hola"},
    ("POST", "/desk/conversations/{conversation_id:id}/close"): {},
    ("POST", "/desk/clients/{client_id}/details"): {
        "conversation_id": "{conversation_id}",
        "alias": "Pepe",
        "notes": "llama por las tardes",
    },
    ("POST", "/desk/push"): {"client_id": "{client_id}", "text": "hola"},
    ("POST", "/admin/accounts"): {
        "username": "nueva",
        "display_name": "Nueva",
        "role": "operator",
        "password": PASSWORD,
        "confirm_password": PASSWORD,
        "language": "es",
        "timezone": "Europe/Madrid",
        "pools": "tarot",
        "max_open_conversations": "5",
        "permissions": "operator.mode",
    },
    ("POST", "/admin/accounts/{account_id:id}"): {
        "display_name": "Óscar",
        "role": "operator",
        "language": "es",
        "timezone": "Europe/Madrid",
        "pools": "tarot",
        "max_open_conversations": "5",
        "permissions": "operator.mode",
    },
    ("POST", "/admin/accounts/{account_id:id}/password"): {
        "password": PASSWORD,
        "confirm_password": PASSWORD,
    },
    ("POST", "/admin/accounts/{account_id:id}/lock"): {"reason": "baja"},
    ("POST", "/admin/accounts/{account_id:id}/unlock"): {},
    ("POST", "/admin/diversion"): {"service": "chat", "diverted": "on"},
    ("POST", "/admin/sessions"): {"numbers": "600000001", "country": "ES"},
    ("POST", "/admin/audit/verify"): {},
    ("POST", "/admin/clients"): {"action": "unban", "ids": "{client_id}", "reason": "spam"},
    ("POST", "/admin/monitor/reassign"): {
        "operator": "queue",
        "conversation": "{conversation_id}",
        "conversations": "{conversation_id}",
        "back": "state=waiting",
    },
    ("POST", "/admin/gallery/upload"): {"album": "verano"},
    ("POST", "/admin/gallery/import"): {"url": "http://127.0.0.1/x.png", "album": "verano"},
    ("POST", "/admin/gallery/{photo_id:id}/delete"): {},
    ("POST", "/admin/campaigns"): {
        "name": "verano",
        "text": "Hola, vuelve al chat",
        "last_pushes": "2",
        "include_new": "1",
        "service": "",
        "carrier": "",
        "country": "ES",
        "active_days": "30",
        "tps": "10",
        "when": "now",
        "scheduled_at": "",
        "action": "count",
    },
    ("POST", "/admin/campaigns/draft"): {"text": "hola", "last_pushes": "2"},
    ("POST", "/admin/campaigns/{campaign_id:id}/status"): {"action": "pause"},
    ("POST", "/admin/api-keys"): {"name": "crm", "scope": "send", "allow": "10.0.0.0/8", "rate": "5"},
    ("POST", "/admin/api-keys/{key_id:id}/revoke"): {},
    ("POST", "/admin/webhooks"): {
        "name": "crm",
        "url": "https://crm.example.com/hooks",
        "events": "mo.received",
        "include_msisdn": "on",
        "active": "on",
    },
    ("POST", "/admin/webhooks/{subscription_id:id}"): {
        "name": "crm",
        "url": "https://crm.example.com/hooks",
        "events": "mo.received",
        "include_msisdn": "on",
        "active": "on",
    },
    ("POST", "/admin/webhooks/{subscription_id:id}/rotate"): {},
    ("POST", "/admin/webhooks/{subscription_id:id}/delete"): {},
    ("POST", "/admin/webhooks/{subscription_id:id}/redeliver"): {},
    ("POST", "/admin/webhooks/{subscription_id:id}/deliveries/{delivery_id:id}/redeliver"): {},
}


def test_every_unsafe_route_has_its_fields_listed(app: Starlette) -> None:
    assert set(unsafe_routes(app.routes)) == set(FIELDS)


async def test_a_nul_in_any_form_field_of_any_route_is_a_400(
    client: PanelClient, app: Starlette, samples: Samples
) -> None:
    await login(client, "oscar")  # the holder of the sample conversation
    token = await page_csrf(client, "/profile")
    for (method, template), fields in FIELDS.items():
        path = samples.path(template)
        for name in fields:
            form = {key: samples.path(value) for key, value in fields.items()}
            form[name] = f"{form[name]}\x00x"
            response = await client.request(method, path, data={**form, "csrf_token": token}, headers=HTML)
            assert response.status_code == 400, (path, name, response.status_code)
            assert "carácter no permitido (NUL" in response.text
    # A NUL in a field name, or in a path or query, is refused the same way.
    named = await client.post("/desk/draft", data={"csrf_token": token, "te\x00xt": "hola"})
    assert named.status_code == 400
    in_path = await client.post(
        "/desk/clients/%00abc/details", data={"csrf_token": token, "conversation_id": "1"}
    )
    assert in_path.status_code == 400
    assert (await client.get("/desk?c=%00", headers=HTML)).status_code == 400


async def test_a_lone_surrogate_in_a_form_field_is_a_400(client: PanelClient) -> None:
    # A multipart form may name any Python codec as its charset; unicode_escape decodes "\\ud800" to a
    # lone surrogate, which no UTF-8 column can hold.
    token = await page_csrf(client, "/login")
    body = (
        b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\noscar\\ud800\r\n'
        b'--b\r\nContent-Disposition: form-data; name="password"\r\n\r\nx\r\n--b--\r\n'
    )
    headers = {
        "content-type": "multipart/form-data; boundary=b; charset=unicode_escape",
        "x-csrf-token": token,
    }
    response = await client.post("/login", content=body, headers=headers)
    assert response.status_code == 400


async def test_a_client_address_longer_than_an_ip_column_is_cut_to_fit(
    app: Starlette, settings: PanelSettings
) -> None:
    # uvicorn takes the address from X-Forwarded-For when a trusted proxy sends it: any text at all.
    async with serving(app, client_host="203.0.113.7, " * 10) as client:
        assert (await login(client, "oscar", "wrong password!")).status_code == 401
        assert (await login(client, "oscar")).status_code == 303


async def test_ids_beyond_64_bits_are_no_route(client: PanelClient, samples: Samples) -> None:
    await login(client, "oscar")
    token = await page_csrf(client, "/profile")
    for conversation_id in ("9223372036854775808", "99999999999999999999999"):
        for action in ("reply", "close"):
            path = f"/desk/conversations/{conversation_id}/{action}"
            response = await client.post(path, data={"csrf_token": token, "text": "hola"}, headers=HTML)
            assert response.status_code == 404, (path, response.status_code)
    assert (await client.get("/desk?c=99999999999999999999", headers=HTML)).status_code == 200


async def test_ids_beyond_a_32_bit_column_name_nothing(client: PanelClient, samples: Samples) -> None:
    """accounts, api_keys and photos have 32-bit ids: a larger one (PostgreSQL refuses to compare the
    column with it) is no such account, key or photo, or a filter refused with its message."""
    await login(client, "ana")
    token = await page_csrf(client, "/profile")
    big = "2147483648"
    for path in (
        f"/admin/accounts/{big}",
        f"/admin/accounts/{big}/password",
        f"/admin/accounts/{big}/lock",
        f"/admin/accounts/{big}/unlock",
        f"/admin/api-keys/{big}/revoke",
        f"/admin/gallery/{big}/delete",
    ):
        form = {"csrf_token": token, "display_name": "x", "password": "x", "reason": "x"}
        response = await client.post(path, data=form, headers=HTML)
        assert response.status_code == 404, (path, response.status_code)
    assert (await client.get(f"/admin/accounts/{big}", headers=HTML)).status_code == 404
    filtered = await client.get(f"/admin/monitor?operator={big}", headers=HTML)
    assert filtered.status_code == 400 and "Filtro de operador desconocido." in filtered.text
    moved = await client.post(
        "/admin/monitor/reassign",
        data={"csrf_token": token, "operator": big, "conversation": str(samples.conversation_id)},
        headers=HTML,
    )
    assert moved.status_code == 400 and "Elige un operador o la cola." in moved.text


async def test_the_body_limit_holds_whichever_way_the_csrf_token_comes(client: PanelClient) -> None:
    token = await page_csrf(client, "/login")
    big = {"username": "oscar", "password": "x" * (LIMIT + 1)}
    by_header = await client.post("/login", data=big, headers={"x-csrf-token": token})
    assert by_header.status_code == 413
    by_field = await client.post("/login", data={**big, "csrf_token": token})
    assert by_field.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b"username=oscar&password="
        for _ in range(LIMIT // 1024 + 1):
            yield b"x" * 1024

    streamed = await client.post(
        "/login",
        content=chunks(),
        headers={"x-csrf-token": token, "content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert (await login(client, "oscar")).status_code == 303  # a normal form still passes


async def test_forms_beyond_their_field_and_file_limits_are_a_400(client: PanelClient) -> None:
    token = await page_csrf(client, "/login")
    headers = {"x-csrf-token": token}
    upload = await client.post(
        "/login", data={"username": "oscar"}, files={"password": ("a.txt", b"x")}, headers=headers
    )
    assert upload.status_code == 400  # the panel takes no files
    many = {f"field{number}": "x" for number in range(21)}
    assert (await client.post("/login", data=many, headers=headers)).status_code == 400
    english = await client.post("/login", data=many, headers={**headers, "accept-language": "en"})
    assert "too many fields" in english.text


async def test_the_anonymous_csrf_token_counts_only_when_this_panel_signed_it(
    client: PanelClient, settings: PanelSettings
) -> None:
    form = {"username": "oscar", "password": PASSWORD}
    # A value planted in the cookie (cookie tossing from a sibling site) and echoed in the form.
    planted = "t" * 43
    client.cookies.set("echat_csrf", planted)
    tossed = await client.post("/login", data={**form, "csrf_token": planted}, headers=HTML)
    assert tossed.status_code == 403
    assert "echat_session" not in client.cookies
    # Well-formed and dated, but signed with another key; or signed by us, but too old.
    for token in (
        issue_anonymous_token(SecretStr("another panel's secret key"), time.time()),
        issue_anonymous_token(settings.secret_key, time.time() - ANONYMOUS_TOKEN_LIFETIME_SECONDS - 60),
    ):
        client.cookies.set("echat_csrf", token)
        refused = await client.post("/login", data={**form, "csrf_token": token}, headers=HTML)
        assert refused.status_code == 403
    # What the panel issues (the refusals above replaced the cookie) is accepted.
    issued = await page_csrf(client, "/login")
    assert issued != planted and issued.count(".") == 2
    assert (await client.post("/login", data={**form, "csrf_token": issued})).status_code == 303


async def test_behind_https_cookies_are_host_prefixed_and_secure_with_hsts(
    sqlite_url: str, example_on_path: None
) -> None:
    settings = PanelSettings(database_url=sqlite_url, secure_cookies=True, argon2=FAST_ARGON2)
    await prepare_store(sqlite_url)
    app = create_app(settings, bus=MemoryBus(), plugins=[auth.plugin, home.plugin])
    async with serving(app, base_url="https://testserver") as client:
        page = await client.get("/login", headers=HTML)
        assert page.headers["strict-transport-security"] == "max-age=31536000"
        (anonymous,) = page.headers.get_list("set-cookie")
        assert anonymous.startswith("__Host-echat_csrf=")
        signed_in = await login(client, "ana")
        (session_cookie,) = signed_in.headers.get_list("set-cookie")
        assert session_cookie.startswith("__Host-echat_session=")
        for cookie in (anonymous, session_cookie):
            flags = cookie.split("; ")[1:]
            assert {"Secure", "Path=/", "HttpOnly", "SameSite=Lax"} <= set(flags)
            assert not any(flag.lower().startswith("domain=") for flag in flags)
        assert (await client.get("/admin", headers=HTML)).status_code == 200
        token = await page_csrf(client, "/profile")
        chosen = await client.post("/language", data={"csrf_token": token, "language": "en", "next": "/"})
        assert chosen.headers["set-cookie"].startswith("__Host-echat_lang=en;")
    plain = create_app(
        PanelSettings(database_url=sqlite_url, secure_cookies=False, argon2=FAST_ARGON2),
        bus=MemoryBus(),
        plugins=[auth.plugin, home.plugin],
    )
    async with serving(plain) as client:  # the demo on http://127.0.0.1: plain names, no Secure
        page = await client.get("/login", headers=HTML)
        assert "strict-transport-security" not in page.headers
        assert page.headers["set-cookie"].startswith("echat_csrf=")
        assert "Secure" not in page.headers["set-cookie"]


async def test_report_days_near_the_calendars_ends_are_a_400(client: PanelClient) -> None:
    # A month, a week or a time zone around year 9999 (or year 1, east of UTC) steps off the calendar.
    await login(client, "marta")  # a master, west of UTC (America/Bogota)
    queries = ("date=9999-12-31", "period=week&date=9999-12-31", "from=9999-12-31", "from=0001-01-01")
    for query in queries:
        response = await client.get(f"/admin/reports?{query}", headers=HTML)
        assert response.status_code == 400, (query, response.status_code)
    token = await page_csrf(client, "/profile")
    preferences = {"language": "en", "timezone": "Asia/Tokyo", "csrf_token": token}
    assert (await client.post("/profile/preferences", data=preferences)).status_code in (200, 303)
    for path in ("/admin/reports", "/admin/reports/operators", "/admin/reports/traffic"):
        for query in queries:
            response = await client.get(f"{path}?{query}", headers=HTML)
            assert response.status_code == 400, (path, query, response.status_code)
            assert "Reports cover days from 2000-01-01 to 2100-12-31." in response.text
    # this panel bills no service: its spend tab does not exist, whatever the dates asked
    for query in queries:
        response = await client.get(f"/admin/reports/spend?{query}", headers=HTML)
        assert response.status_code == 404, (query, response.status_code)
