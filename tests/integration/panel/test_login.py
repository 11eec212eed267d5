"""Sign-in and sign-out on SQLite and PostgreSQL: the session cookie, the progressive delay per user
name (the same for names that exist and names that do not), the per-address rate limit, the
administrator's lock, rehashing, and the session a browser presents when it signs in again."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from gatewayd.store.accounts import LoginAttempt, LoginThrottle, Role, WebSession, get_account_by_username
from panel.app import create_app
from panel.auth.accounts import create_account, lock_account
from panel.auth.admin import user_passwd, user_unlock
from panel.auth.passwords import PasswordPolicy
from panel.settings import Argon2Params, PanelSettings
from plugins import auth, home

from .conftest import FAST_ARGON2, HTML, PASSWORD, PanelClient, login, memory_bus, page_csrf, serving


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest) -> PanelSettings:
    """The panel's test settings (see conftest) on both databases; two failures per name are free,
    then waits of 30 s, 60 s, 120 s (the cap): long enough that no test outruns one by accident."""
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    return PanelSettings(
        database_url=url,
        secure_cookies=False,
        argon2=FAST_ARGON2,
        login_free_failures=2,
        login_delay_seconds=30.0,
        login_delay_max_seconds=120.0,
        ip_max_failures=10,
        ip_window_minutes=10,
        refusal_pause_seconds=0,  # the pause has its own test below
    )


async def failures_age(client: PanelClient, username: str, seconds: float) -> None:
    """As if ``seconds`` had passed since the last failure under ``username``."""
    async with client.runtime.sessionmaker() as session, session.begin():
        throttle = await session.get(LoginThrottle, username)
        assert throttle is not None
        throttle.last_failure_at -= timedelta(seconds=seconds)


async def attempts_recorded(client: PanelClient) -> int:
    async with client.runtime.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(LoginAttempt))).scalar_one())


def answer(response: httpx.Response) -> tuple[int, str | None, str]:
    """What a client learns from a failed sign-in: status, Retry-After and the message shown."""
    start = response.text.index('role="alert">') + len('role="alert">')
    return response.status_code, response.headers.get("retry-after"), response.text[start:].split("<")[0]


async def test_login_sets_an_httponly_lax_session_cookie_and_redirects_to_next(client: PanelClient) -> None:
    response = await login(client, "Ana", next="/notes")
    assert response.status_code == 303
    assert response.headers["location"] == "/notes"
    cookies = response.headers.get_list("set-cookie")
    cookie = next(value for value in cookies if value.startswith("echat_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert (await client.get("/admin", headers=HTML)).status_code == 200
    assert (await client.account("ana")).last_login_at is not None


async def test_login_never_redirects_off_site(client: PanelClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        client.cookies.clear()
        response = await login(client, "ana", next=target)
        assert response.headers["location"] == "/", target


async def test_logout_revokes_the_session_and_the_old_cookie_no_longer_works(client: PanelClient) -> None:
    await login(client, "ana")
    old_token = client.cookies["echat_session"]
    token = await page_csrf(client, "/profile")
    response = await client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    # Replaying the old cookie, as a copied cookie or the back button would, opens nothing.
    client.cookies.set("echat_session", old_token)
    page = await client.get("/admin", headers=HTML)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login?next=")
    assert (await client.get("/admin")).status_code == 401


async def test_a_known_and_an_unknown_name_fail_alike_message_delay_and_all(client: PanelClient) -> None:
    client.headers["accept-language"] = "en"
    seen: dict[str, list[tuple[int, str | None, str]]] = {}
    for name in ("oscar", "nobody-here"):
        seen[name] = [answer(await login(client, name, "wrong password!")) for _ in range(3)]
        seen[name].append(answer(await login(client, name, PASSWORD)))  # within the delay
    assert seen["oscar"] == seen["nobody-here"]
    assert seen["oscar"] == [
        (401, None, "Wrong user name or password."),
        (401, None, "Wrong user name or password."),
        (401, None, "Wrong user name or password."),
        (429, "30", "Too many failed attempts. Please wait 30 s and try again."),
    ]
    assert "echat_session" not in client.cookies


async def test_a_name_longer_than_any_account_signs_nobody_in(client: PanelClient) -> None:
    """A name of 64 characters, the most there is, and a script's longer one that starts with it: the
    longer one is nobody's, not the account its first 64 characters name."""
    longest = "o" * 64
    async with client.runtime.sessionmaker() as session, session.begin():
        await create_account(
            session,
            client.runtime.passwords,
            client.runtime.permissions,
            username=longest,
            password=PASSWORD,
            role=Role.OPERATOR,
        )
    assert (await login(client.another_browser(), longest + "x")).status_code == 401
    assert (await login(client.another_browser(), longest)).status_code == 303


async def test_wrong_passwords_delay_the_next_try_briefly_never_lock_the_owner_out(
    client: PanelClient,
) -> None:
    delays = []
    for _ in range(6):
        response = await login(client, "oscar", "wrong password!")
        if response.status_code == 429:  # within the delay: not checked, not counted
            delays.append(int(response.headers["retry-after"]))
            await failures_age(client, "oscar", delays[-1])
            response = await login(client, "oscar", "wrong password!")
        assert response.status_code == 401
    assert delays == [30, 60, 120]  # doubling from the third failure on ...
    capped = await login(client, "oscar", PASSWORD)
    assert (capped.status_code, capped.headers["retry-after"]) == (429, "120")  # ... up to the cap
    # Once the delay has passed, the owner's right password works: no lock-out.
    await failures_age(client, "oscar", 120)
    assert (await login(client, "oscar", PASSWORD)).status_code == 303
    async with client.runtime.sessionmaker() as session:
        assert await session.get(LoginThrottle, "oscar") is None  # a success forgets the failures


async def test_failures_older_than_the_window_are_forgotten(client: PanelClient) -> None:
    for _ in range(3):
        assert (await login(client, "ghost", "whatever it is")).status_code == 401
    await failures_age(client, "ghost", 15 * 60 + 1)
    # The count starts again: two free failures and a third try, not a doubled wait.
    for _ in range(3):
        assert (await login(client, "ghost", "whatever it is")).status_code == 401


async def test_an_unlock_or_a_new_password_lifts_the_delay(
    client: PanelClient, settings: PanelSettings
) -> None:
    for name in ("oscar", "marta"):
        for _ in range(3):
            assert (await login(client, name, "wrong password!")).status_code == 401
        assert (await login(client, name, PASSWORD)).status_code == 429
    await user_unlock(settings.database_url, "oscar")
    assert (await login(client, "oscar", PASSWORD)).status_code == 303
    client.cookies.clear()
    await user_passwd(settings.database_url, "marta", "a brand new password", argon2=FAST_ARGON2)
    assert (await login(client, "marta", "a brand new password")).status_code == 303


async def test_too_many_failures_from_one_address_are_rate_limited_without_hashing(
    client: PanelClient, settings: PanelSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spread over unknown names so no name's delay is involved: only the address counts.
    for number in range(settings.ip_max_failures):
        assert (await login(client, f"ghost{number}", "whatever it is")).status_code == 401
    recorded = await attempts_recorded(client)

    def no_hashing(*_: object) -> bool:
        raise AssertionError("a rate-limited sign-in must not run argon2")

    monkeypatch.setattr(client.runtime.passwords, "verify_or_decoy", no_hashing)
    limited = await login(client, "ana", PASSWORD)
    assert limited.status_code == 429
    assert 0 < int(limited.headers["retry-after"]) <= 600
    assert "echat_session" not in client.cookies
    assert await attempts_recorded(client) == recorded  # refused at the door: nothing written


async def test_a_refusal_without_hashing_comes_after_the_pause_which_holds_up_nobody_else(
    app: Starlette, settings: PanelSettings
) -> None:
    """A client repeating refused attempts back to back gets one answer per pause: in the demo the
    panel shares the daemon's event loop, and refusals answered at once would take its time."""
    pause = 1.5
    paced = create_app(
        dataclasses.replace(settings, refusal_pause_seconds=pause),
        bus_factory=memory_bus,
        plugins=[auth.plugin, home.plugin],
    )
    async with serving(paced) as client:
        for number in range(settings.ip_max_failures):  # hashed and refused: no pause
            assert (await login(client, f"ghost{number}", "whatever it is")).status_code == 401
        recorded = await attempts_recorded(client)
        loop = asyncio.get_running_loop()
        started = loop.time()
        refused = asyncio.create_task(login(client, "ana", PASSWORD))
        # while the refusal waits, another browser is served: the pause is a sleep, not a lock
        other = client.another_browser()
        page = await other.get("/login", headers=HTML)
        assert page.status_code == 200 and not refused.done()
        limited = await refused
        assert limited.status_code == 429 and loop.time() - started >= pause
        assert await attempts_recorded(client) == recorded


async def test_an_administrators_lock_ends_sessions_and_sign_in_fails_like_a_wrong_password(
    client: PanelClient,
) -> None:
    await login(client, "oscar")
    assert (await client.get("/operator", headers=HTML)).status_code == 200
    state = client.runtime

    async def lock() -> None:
        async with state.sessionmaker() as session, session.begin():
            target = await get_account_by_username(session, "oscar")
            assert target is not None
            await lock_account(session, target, "left the company")

    await lock()
    assert (await client.get("/operator", headers=HTML)).status_code == 303
    client.headers["accept-language"] = "en"
    refused = await login(client, "oscar")
    # Even the right password tells a guesser nothing: the locked account answers like a wrong one.
    assert answer(refused) == (401, None, "Wrong user name or password.")
    async with state.sessionmaker() as session:
        latest = select(LoginAttempt.outcome).order_by(LoginAttempt.id.desc()).limit(1)
        assert (await session.execute(latest)).scalar_one() == "locked"  # the audit trail says why


async def test_a_weaker_stored_hash_is_rehashed_at_sign_in(client: PanelClient) -> None:
    state = client.runtime
    old_policy = PasswordPolicy(Argon2Params(time_cost=2, memory_cost=64, parallelism=1))

    async def weaken() -> str:
        async with state.sessionmaker() as session, session.begin():
            target = await get_account_by_username(session, "marta")
            assert target is not None
            target.password_hash = old_policy.hash(PASSWORD)
            return target.password_hash

    old_hash = await weaken()
    assert (await login(client, "marta")).status_code == 303
    new_hash = (await client.account("marta")).password_hash
    assert new_hash != old_hash
    assert not state.passwords.needs_rehash(new_hash)
    assert state.passwords.verify(new_hash, PASSWORD)


async def test_signing_in_again_revokes_the_session_the_browser_presented(client: PanelClient) -> None:
    await login(client, "ana")
    anas_cookie = client.cookies["echat_session"]
    # Signed in as ana, the same browser signs in as oscar (the form posted with ana's token).
    form = {"username": "oscar", "password": PASSWORD, "csrf_token": await page_csrf(client, "/profile")}
    assert (await client.post("/login", data=form, headers=HTML)).status_code == 303
    assert client.cookies["echat_session"] != anas_cookie
    client.cookies.set("echat_session", anas_cookie)
    assert (await client.get("/admin")).status_code == 401  # ana's session ended with the new sign-in


async def test_activity_is_written_at_most_once_a_minute(client: PanelClient) -> None:
    await login(client, "ana")
    async with client.runtime.sessionmaker() as session, session.begin():
        record = (await session.execute(select(WebSession))).scalar_one()
        record.last_seen_at -= timedelta(seconds=61)
        earlier = record.last_seen_at
    assert (await client.get("/admin", headers=HTML)).status_code == 200
    async with client.runtime.sessionmaker() as session:
        touched = (await session.execute(select(WebSession.last_seen_at))).scalar_one()
    assert touched - earlier >= timedelta(seconds=60)
    assert (await client.get("/admin", headers=HTML)).status_code == 200
    async with client.runtime.sessionmaker() as session:
        assert (await session.execute(select(WebSession.last_seen_at))).scalar_one() == touched


async def test_signed_in_visitor_of_the_login_page_goes_home(client: PanelClient) -> None:
    await login(client, "ana")
    response = await client.get("/login", headers=HTML)
    assert response.status_code == 303


async def test_home_sends_each_role_to_its_mode(client: PanelClient) -> None:
    await login(client, "ana")
    assert (await client.get("/", headers=HTML)).headers["location"] == "/admin"
    client.cookies.clear()
    await login(client, "oscar")
    assert (await client.get("/", headers=HTML)).headers["location"] == "/operator"
    client.cookies.clear()
    await login(client, "nadie")
    page = await client.get("/", headers=HTML)
    assert page.status_code == 200
    assert "no tiene acceso a ninguna secci" in page.text


async def test_sessions_are_stored_hashed(client: PanelClient) -> None:
    await login(client, "ana")
    token = client.cookies["echat_session"]
    state = client.runtime

    async def session_ids() -> list[str]:
        async with state.sessionmaker() as session:
            return list((await session.execute(select(WebSession.id))).scalars())

    ids = await session_ids()
    assert ids and token not in ids
