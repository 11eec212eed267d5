"""Sign-in, sign-out, failed-login lock, per-address rate limit, administrator's lock."""

from __future__ import annotations

from gatewayd.store.accounts import get_account_by_username
from panel.auth.accounts import lock_account
from panel.auth.passwords import PasswordPolicy
from panel.settings import Argon2Params

from .conftest import HTML, PASSWORD, PanelClient, login, page_csrf


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


async def test_wrong_passwords_lock_the_account_for_a_while(client: PanelClient) -> None:
    for attempt in range(2):
        response = await login(client, "oscar", "wrong password!")
        assert response.status_code == 401, attempt
    assert (await client.account("oscar")).failed_logins == 2
    third = await login(client, "oscar", "wrong password!")
    assert third.status_code == 423
    locked = await client.account("oscar")
    assert locked.locked_until is not None
    # While locked even the right password is refused (the lock is no password oracle).
    assert (await login(client, "oscar", PASSWORD)).status_code == 423
    assert "echat_session" not in client.cookies


async def test_lock_message_speaks_the_readers_language(client: PanelClient) -> None:
    for _ in range(3):
        await login(client, "oscar", "wrong password!")
    client.headers["accept-language"] = "en-GB,en;q=0.9,es;q=0.5"
    english = await login(client, "oscar", PASSWORD)
    assert "Too many failed attempts" in english.text
    client.headers["accept-language"] = "es-ES,es;q=0.9"
    spanish = await login(client, "oscar", PASSWORD)
    assert "Demasiados intentos fallidos" in spanish.text


async def test_a_success_clears_the_failure_count(client: PanelClient) -> None:
    await login(client, "oscar", "wrong password!")
    await login(client, "oscar", "wrong password!")
    assert (await login(client, "oscar")).status_code == 303
    assert (await client.account("oscar")).failed_logins == 0


async def test_too_many_failures_from_one_address_are_rate_limited(client: PanelClient) -> None:
    # Spread over unknown names so no account lock is involved: only the address counts.
    for number in range(6):
        assert (await login(client, f"ghost{number}", "whatever it is")).status_code == 401
    limited = await login(client, "ana", PASSWORD)
    assert limited.status_code == 429
    assert "echat_session" not in client.cookies


async def test_an_administrators_lock_ends_open_sessions_and_refuses_sign_in(client: PanelClient) -> None:
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
    assert refused.status_code == 423
    assert "This account is locked" in refused.text


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
        from sqlalchemy import select

        from gatewayd.store.accounts import WebSession

        async with state.sessionmaker() as session:
            return list((await session.execute(select(WebSession.id))).scalars())

    ids = await session_ids()
    assert ids and token not in ids
