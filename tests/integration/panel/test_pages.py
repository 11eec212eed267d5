"""Layout, menus, escaping, security headers, statics, profile and language switch."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

from panel.auth.admin import user_pools
from panel.settings import PanelSettings

from .conftest import EVIL_NAME, HTML, PASSWORD, PanelClient, login, page_csrf


async def test_user_data_is_html_escaped(client: PanelClient) -> None:
    await login(client, "oscar")
    page = await client.get("/operator", headers=HTML)
    assert EVIL_NAME not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Óscar" in page.text
    await client.post("/logout", headers={"x-csrf-token": await page_csrf(client, "/profile")})
    await login(client, "ana")
    token = await page_csrf(client, "/profile")
    evil = '<img src=x onerror="y">'
    preview = await client.post("/notes/preview", data={"csrf_token": token, "text": evil})
    assert preview.status_code == 200
    assert "<img src=x" not in preview.text
    assert "&lt;img src=x onerror=&#34;y&#34;&gt;" in preview.text


async def test_security_headers_and_no_store_on_pages(client: PanelClient) -> None:
    await login(client, "ana")
    page = await client.get("/admin", headers=HTML)
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # no inline script anywhere in the layout


async def test_statics_of_the_core_and_of_each_plugin(client: PanelClient) -> None:
    css = await client.get("/static/panel/panel.css")
    assert css.status_code == 200 and "--sidebar" in css.text
    assert "no-store" not in css.headers.get("cache-control", "")
    assert (await client.get("/static/panel/panel.js")).status_code == 200
    assert (await client.get("/static/notes/notes.css")).status_code == 200
    assert (await client.get("/static/notes/../../conftest.py")).status_code == 404
    # pages name them with a digest of their content (a changed script is fetched again), and serve it
    await login(client, "ana")
    page = await client.get("/admin", headers=HTML)
    [script] = re.findall(r'<script src="(/static/panel/panel\.js\?v=[0-9a-f]{12})"', page.text)
    assert (await client.get(script)).text == (await client.get("/static/panel/panel.js")).text


async def test_menu_follows_permissions(client: PanelClient) -> None:
    await login(client, "oscar")
    operator_page = (await client.get("/operator", headers=HTML)).text
    assert 'href="/notes"' in operator_page
    assert 'href="/admin"' not in operator_page and 'href="/notes/settings"' not in operator_page
    await client.post("/logout", headers={"x-csrf-token": await page_csrf(client, "/profile")})
    await login(client, "marta")
    admin_page = (await client.get("/admin", headers=HTML)).text
    assert 'href="/notes/settings"' in admin_page and 'href="/operator"' in admin_page
    assert "Control panel" in admin_page  # marta reads English


async def test_profile_changes_password_and_ends_other_sessions(client: PanelClient, app: object) -> None:
    await login(client, "oscar")
    other_cookie = client.cookies["echat_session"]
    client.cookies.clear()
    await login(client, "oscar")
    token = await page_csrf(client, "/profile")
    new = "a much better password"
    base = {"csrf_token": token, "current_password": PASSWORD}
    mismatch = await client.post(
        "/profile/password",
        data={**base, "new_password": new, "confirm_password": "x"},
    )
    assert mismatch.status_code == 400
    short = await client.post(
        "/profile/password",
        data={**base, "new_password": "short", "confirm_password": "short"},
    )
    assert short.status_code == 400 and "al menos 10" in short.text
    done = await client.post(
        "/profile/password",
        data={**base, "new_password": new, "confirm_password": new},
    )
    assert done.status_code == 200 and "Contraseña cambiada" in done.text
    assert (await client.get("/profile", headers=HTML)).status_code == 200  # this session lives on
    client.cookies.set("echat_session", other_cookie)
    assert (await client.get("/profile", headers=HTML)).status_code == 303  # the other one ended
    client.cookies.clear()
    assert (await login(client, "oscar", new)).status_code == 303


async def test_preferences_and_time_zone_formatting(client: PanelClient) -> None:
    await login(client, "ana")
    token = await page_csrf(client, "/profile")
    bad = await client.post(
        "/profile/preferences", data={"csrf_token": token, "language": "en", "timezone": "Mars/Olympus"}
    )
    assert bad.status_code == 400
    saved = await client.post(
        "/profile/preferences", data={"csrf_token": token, "language": "en", "timezone": "Asia/Tokyo"}
    )
    assert saved.status_code == 303
    page = await client.get(saved.headers["location"], headers=HTML)
    assert "Preferences saved." in page.text
    account = await client.account("ana")
    assert (account.language, account.timezone) == ("en", "Asia/Tokyo")
    assert account.last_login_at is not None
    assert account.last_login_at.utcoffset() == timedelta(0)
    shown = account.last_login_at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert shown.strftime("%d/%m/%Y %H:%M:%S") in page.text


async def test_language_switch_for_visitors_and_users(client: PanelClient) -> None:
    token = await page_csrf(client, "/login")
    switched = await client.post("/language", data={"csrf_token": token, "language": "en", "next": "/login"})
    assert switched.status_code == 303 and switched.headers["location"] == "/login"
    assert "Sign in" in (await client.get("/login", headers=HTML)).text
    await login(client, "nadie")
    token = await page_csrf(client, "/profile")
    await client.post("/language", data={"csrf_token": token, "language": "en", "next": "/profile"})
    assert (await client.account("nadie")).language == "en"
    assert "My profile" in (await client.get("/profile", headers=HTML)).text


async def test_error_pages_speak_the_readers_language(client: PanelClient) -> None:
    missing = await client.get("/nowhere", headers={**HTML, "accept-language": "en"})
    assert missing.status_code == 404 and "This page does not exist." in missing.text
    missing = await client.get("/nowhere", headers={**HTML, "accept-language": "es"})
    assert "La página no existe." in missing.text


def test_secure_cookie_flag_is_on_by_default() -> None:
    assert PanelSettings(database_url="sqlite+aiosqlite://").secure_cookies is True


async def test_plugin_event_handlers_receive_bus_events(client: PanelClient) -> None:
    import asyncio

    import echat_notes

    bus = client.runtime.bus
    assert bus is not None
    received = echat_notes.NOTES.of(client.runtime).received  # this panel's, not another's
    assert received.empty()
    await bus.publish("echat/997745/mo", {"v": 1, "text": "explode"})
    await bus.publish("echat/997745/mo", {"v": 1, "text": "hola"})
    await bus.publish("echat/mt/7/status", {"v": 1, "status": "DELIVRD"})
    event = await asyncio.wait_for(received.get(), 10)
    assert event.topic == "echat/997745/mo" and event.payload["text"] == "hola"
    assert received.empty()


async def test_profile_shows_the_operator_pools(client: PanelClient, settings: PanelSettings) -> None:
    await login(client, "oscar")
    page = await client.get("/profile", headers=HTML)
    assert '<dd class="pools">default</dd>' in page.text  # in no pool: the default pool's
    assert await user_pools(settings.database_url, "oscar", ["tarot", "alias"]) == ["alias", "tarot"]
    page = await client.get("/profile", headers=HTML)
    assert "Grupos de operadores" in page.text
    assert '<dd class="pools">alias, tarot</dd>' in page.text
