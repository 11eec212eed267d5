"""Operators and masters from the control panel (plugins/accounts): who may manage whom, the last
admin, the lock that returns an operator's conversations to the queue, an audit record per action,
and bad input refused with a 4xx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gatewayd.store.accounts import Account, Role
from gatewayd.store.audit import AuditRecord
from gatewayd.store.conversations import Conversation
from gatewayd.store.repo_assignment import operator_pools
from panel.auth.admin import UserCommandError, user_lock
from panel.settings import PanelSettings
from tests.waiting import eventually

from .conftest import HTML, PASSWORD, PanelClient, Samples, login, page_csrf

NEW_PASSWORD = "otra clave muy larga"


async def signed_in(client: PanelClient, username: str) -> PanelClient:
    """``username`` at a browser of their own, reading the panel in English."""
    browser = client.another_browser()
    assert (await login(browser, username)).status_code == 303
    assert (await post(browser, "/language", {"language": "en"})).status_code == 303
    return browser


async def post(browser: httpx.AsyncClient, path: str, form: dict[str, Any]) -> httpx.Response:
    token = await page_csrf(browser, "/profile")
    return await browser.post(path, data={"csrf_token": token, **form}, headers=HTML)


def new_operator(**changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "username": "olivia",
        "display_name": "Olivia",
        "role": "operator",
        "password": PASSWORD,
        "confirm_password": PASSWORD,
        "language": "es",
        "timezone": "Europe/Madrid",
        "pools": "tarot, amor",
        "max_open_conversations": "7",
        "permissions": ["operator.mode", "push.send"],
    }
    form.update(changes)
    return form


def edit_form(account: Account, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "display_name": account.display_name,
        "role": account.role.value,
        "language": account.language,
        "timezone": account.timezone,
        "pools": "",
        "max_open_conversations": str(account.max_open_conversations),
        "permissions": list(account.permissions),
    }
    form.update(changes)
    return form


async def records(client: PanelClient, action: str) -> list[AuditRecord]:
    async with client.runtime.sessionmaker() as session:
        found = await session.execute(select(AuditRecord).where(AuditRecord.action == action))
        return list(found.scalars())


async def test_an_admin_creates_an_operator_who_signs_in(client: PanelClient) -> None:
    ana = await signed_in(client, "ana")
    created = await post(ana, "/admin/accounts", new_operator())
    assert created.status_code == 303
    olivia = await client.account("olivia")
    assert created.headers["location"] == f"/admin/accounts/{olivia.id}?done=created"
    assert (olivia.role, olivia.display_name, olivia.max_open_conversations) == (Role.OPERATOR, "Olivia", 7)
    assert olivia.permissions == ["operator.mode", "push.send"]
    async with client.runtime.sessionmaker() as session:
        assert (await operator_pools(session, [olivia.id]))[olivia.id] == {"amor", "tarot"}
    (record,) = await records(client, "account.create")
    assert (record.actor, record.subject) == ("ana", f"account:{olivia.id}")
    assert record.details["after"]["pools"] == ["amor", "tarot"]
    assert PASSWORD not in str(record.details) and "password" not in str(record.details)
    # The list shows them, and they can sign in and reach the desk.
    listed = await ana.get("/admin/accounts?role=operator&state=active&q=oliv", headers=HTML)
    assert 'data-username="olivia"' in listed.text and 'data-username="ana"' not in listed.text
    olivia_browser = await signed_in(client, "olivia")
    assert (await olivia_browser.get("/desk", headers=HTML)).status_code == 200


async def test_the_list_filters_by_role_state_and_text(client: PanelClient) -> None:
    ana = await signed_in(client, "ana")
    admins = await ana.get("/admin/accounts?role=admin", headers=HTML)
    assert 'data-username="ana"' in admins.text and 'data-username="oscar"' not in admins.text
    locked = await ana.get("/admin/accounts?state=locked", headers=HTML)
    assert 'data-username="' not in locked.text
    found = await ana.get("/admin/accounts?q=MAR", headers=HTML)
    assert 'data-username="marta"' in found.text and 'data-username="oscar"' not in found.text
    odd = await ana.get("/admin/accounts?role=root&state=x&q=%25_%5C", headers=HTML)
    assert odd.status_code == 200 and 'data-username="' not in odd.text


async def test_a_master_manages_operators_only(client: PanelClient) -> None:
    marta = await signed_in(client, "marta")
    ana = await client.account("ana")
    oscar = await client.account("oscar")
    # Creating a master or an admin, editing, locking or resetting an admin: refused.
    for role in ("master", "admin"):
        refused = await post(marta, "/admin/accounts", new_operator(role=role))
        assert refused.status_code == 403, role
        assert "Only an administrator manages administrators and masters." in refused.text
    assert (await marta.get(f"/admin/accounts/{ana.id}", headers=HTML)).status_code == 403
    for path, form in (
        (f"/admin/accounts/{ana.id}", edit_form(ana)),
        (f"/admin/accounts/{ana.id}/lock", {"reason": "x"}),
        (f"/admin/accounts/{ana.id}/password", {"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}),
    ):
        assert (await post(marta, path, form)).status_code == 403, path
    # Promoting an operator: refused; the operator's other fields are hers to change.
    promoted = await post(marta, f"/admin/accounts/{oscar.id}", edit_form(oscar, role="master"))
    assert promoted.status_code == 403 and "Only an administrator changes roles." in promoted.text
    saved = await post(marta, f"/admin/accounts/{oscar.id}", edit_form(oscar, max_open_conversations="9"))
    assert saved.status_code == 303
    after = await client.account("oscar")
    assert (after.role, after.max_open_conversations) == (Role.OPERATOR, 9)
    assert (await client.account("ana")).locked is False
    assert [record.action for record in await records(client, "account.edit")] == ["account.edit"]


async def test_a_master_grants_only_the_powers_they_hold(client: PanelClient) -> None:
    registry = client.runtime.permissions
    async with client.runtime.sessionmaker() as session, session.begin():
        found = await session.execute(select(Account).where(Account.username == "marta"))
        marta_account = found.scalar_one()
        marta_account.permissions = sorted(set(marta_account.permissions) - {"operator.see_msisdn"})
    not_held = sorted(registry.names - registry.effective(Role.MASTER, marta_account.permissions))
    assert "operator.see_msisdn" in not_held
    not_held = ["operator.see_msisdn"]
    marta = await signed_in(client, "marta")
    refused = await post(marta, "/admin/accounts", new_operator(permissions=["operator.mode", not_held[0]]))
    assert refused.status_code == 403
    assert "You cannot grant or take away a power you do not hold." in refused.text
    oscar = await client.account("oscar")
    granting = edit_form(oscar, permissions=[*oscar.permissions, not_held[0]])
    assert (await post(marta, f"/admin/accounts/{oscar.id}", granting)).status_code == 403
    assert (await client.account("oscar")).permissions == oscar.permissions
    # A power she holds, she grants and takes away.
    held = sorted(set(registry.effective(Role.MASTER, marta_account.permissions)) - set(oscar.permissions))
    changed = [*[name for name in oscar.permissions if name != "push.send"], held[0]]
    assert (
        await post(marta, f"/admin/accounts/{oscar.id}", edit_form(oscar, permissions=changed))
    ).status_code == 303
    (record,) = await records(client, "account.permissions")
    assert record.details == {"granted": [held[0]], "revoked": ["push.send"]}
    assert (record.actor, record.subject) == ("marta", f"account:{oscar.id}")


async def test_an_admin_edits_each_kind_of_change_audited(client: PanelClient) -> None:
    ana = await signed_in(client, "ana")
    oscar = await client.account("oscar")
    form = edit_form(
        oscar,
        display_name="Óscar R.",
        language="en",
        role="master",
        pools="noche",
        permissions=[*oscar.permissions, "operator.see_msisdn"],
    )
    assert (await post(ana, f"/admin/accounts/{oscar.id}", form)).status_code == 303
    after = await client.account("oscar")
    assert (after.display_name, after.language, after.role) == ("Óscar R.", "en", Role.MASTER)
    (edit,) = await records(client, "account.edit")
    assert edit.details == {
        "before": {"display_name": oscar.display_name, "language": "es"},
        "after": {"display_name": "Óscar R.", "language": "en"},
    }
    (role,) = await records(client, "account.role")
    assert role.details == {"before": "operator", "after": "master"}
    (powers,) = await records(client, "account.permissions")
    assert powers.details == {"granted": ["operator.see_msisdn"], "revoked": []}
    (pools,) = await records(client, "account.pools")
    assert pools.details == {"before": [], "after": ["noche"]}
    # Saving the same values again changes and records nothing.
    again = edit_form(after, pools="noche")
    assert (await post(ana, f"/admin/accounts/{oscar.id}", again)).status_code == 303
    assert len(await records(client, "account.edit")) == 1
    assert len(await records(client, "account.pools")) == 1


async def test_nobody_removes_the_last_admin_or_locks_themselves(
    client: PanelClient, settings: PanelSettings
) -> None:
    ana_account = await client.account("ana")
    ana = await signed_in(client, "ana")
    demoted = await post(ana, f"/admin/accounts/{ana_account.id}", edit_form(ana_account, role="master"))
    assert demoted.status_code == 403
    assert "The last active administrator cannot be locked or lose the role." in demoted.text
    locked = await post(ana, f"/admin/accounts/{ana_account.id}/lock", {"reason": "oops"})
    assert locked.status_code == 403 and "You cannot lock your own account." in locked.text
    # The command line keeps the last admin too.
    with pytest.raises(UserCommandError, match="last active administrator"):
        await user_lock(settings.database_url, "ana", "oops")
    after = await client.account("ana")
    assert (after.role, after.locked) == (Role.ADMIN, False)
    assert await records(client, "account.role") == [] and await records(client, "account.lock") == []
    # With a second admin, the first may step down.
    promoted = await post(ana, "/admin/accounts", new_operator(username="alba", role="admin"))
    assert promoted.status_code == 303
    assert (
        await post(ana, f"/admin/accounts/{ana_account.id}", edit_form(after, role="master"))
    ).status_code == 303
    assert (await client.account("ana")).role is Role.MASTER


async def test_a_lock_ends_the_sessions_and_returns_the_conversations_to_the_queue(
    client: PanelClient, samples: Samples
) -> None:
    oscar_browser = await signed_in(client, "oscar")
    assert (await oscar_browser.get("/desk", headers=HTML)).status_code == 200
    ana = await signed_in(client, "ana")
    no_reason = await post(ana, f"/admin/accounts/{samples.account_id}/lock", {"reason": "  "})
    assert no_reason.status_code == 400 and "Say why the account is locked." in no_reason.text
    too_long = await post(ana, f"/admin/accounts/{samples.account_id}/lock", {"reason": "r" * 256})
    assert too_long.status_code == 400
    assert "The reason may be at most 255 characters long." in too_long.text
    locked = await post(ana, f"/admin/accounts/{samples.account_id}/lock", {"reason": "left the company"})
    assert locked.status_code == 303

    async def back_in_queue() -> bool:
        async with client.runtime.sessionmaker() as session:
            conversation = await session.get(Conversation, samples.conversation_id)
            return conversation is not None and conversation.assigned_operator_id is None

    await eventually(back_in_queue)
    assert (await oscar_browser.get("/desk", headers=HTML)).status_code == 303  # signed out
    assert (await login(client.another_browser(), "oscar")).status_code == 401
    (record,) = await records(client, "account.lock")
    assert record.details["reason"] == "left the company" and record.details["sessions_ended"] >= 1
    listed = await ana.get("/admin/accounts?state=locked", headers=HTML)
    assert 'data-username="oscar"' in listed.text
    again = await post(ana, f"/admin/accounts/{samples.account_id}/lock", {"reason": "again"})
    assert again.status_code == 409
    # Unlocked, they sign in again.
    assert (await post(ana, f"/admin/accounts/{samples.account_id}/unlock", {})).status_code == 303
    (unlocked,) = await records(client, "account.unlock")
    assert unlocked.details == {"before": {"reason": "left the company"}}
    assert (await login(client.another_browser(), "oscar")).status_code == 303


async def test_a_password_reset_ends_the_sessions_and_records_no_secret(client: PanelClient) -> None:
    oscar = await client.account("oscar")
    oscar_browser = await signed_in(client, "oscar")
    ana = await signed_in(client, "ana")
    path = f"/admin/accounts/{oscar.id}/password"
    differ = await post(ana, path, {"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD + "x"})
    assert differ.status_code == 400 and "The two passwords differ." in differ.text
    short = await post(ana, path, {"password": "corta", "confirm_password": "corta"})
    assert short.status_code == 400
    assert await records(client, "account.password") == []
    reset = await post(ana, path, {"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert reset.status_code == 303
    assert (await oscar_browser.get("/operator", headers=HTML)).status_code == 303
    assert (await login(client.another_browser(), "oscar")).status_code == 401
    assert (await login(client.another_browser(), "oscar", NEW_PASSWORD)).status_code == 303
    (record,) = await records(client, "account.password")
    assert record.subject == f"account:{oscar.id}" and NEW_PASSWORD not in str(record.details)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_open_conversations": "0"}, "The conversation limit is a number from 1 to 50."),
        ({"max_open_conversations": "51"}, "The conversation limit is a number from 1 to 50."),
        ({"max_open_conversations": "diez"}, "The conversation limit is a number from 1 to 50."),
        ({"max_open_conversations": "9" * 30}, "The conversation limit is a number from 1 to 50."),
        ({"role": "root"}, "Choose a role."),
        ({"language": "xx"}, "Language not available."),
        ({"timezone": "Mars/Base"}, "Unknown time zone."),
        ({"permissions": ["nope.nothing"]}, "Unknown power: nope.nothing."),
        ({"pools": "a, " + "p" * 65}, "A pool name has 1 to 64 characters."),
        ({"username": "A B"}, "Invalid user name"),
        # past the form's maxlength (a script): refused, never stored cut
        ({"username": "o" * 65}, "Invalid user name"),
        ({"display_name": "D" * 129}, "The display name may be at most 128 characters long."),
        ({"username": "oscar"}, "That user name already exists."),
        ({"confirm_password": "otra"}, "The two passwords differ."),
        ({"password": "olivia", "confirm_password": "olivia"}, "The password must have at least"),
    ],
)
async def test_bad_input_is_a_400_with_its_reason(
    client: PanelClient, changes: dict[str, Any], message: str
) -> None:
    ana = await signed_in(client, "ana")
    refused = await post(ana, "/admin/accounts", new_operator(**changes))
    assert refused.status_code == 400, refused.text
    assert message in refused.text
    oscar = await client.account("oscar")
    if "username" not in changes and "password" not in changes and "confirm_password" not in changes:
        edit = await post(ana, f"/admin/accounts/{oscar.id}", edit_form(oscar, **changes))
        assert edit.status_code == 400 and message in edit.text
    assert await records(client, "account.create") == []
    assert await records(client, "account.edit") == []


async def test_unknown_accounts_are_404(client: PanelClient) -> None:
    ana = await signed_in(client, "ana")
    for path in ("/admin/accounts/999999", "/admin/accounts/999999999999999999"):
        assert (await ana.get(path, headers=HTML)).status_code == 404
        assert (await post(ana, path + "/unlock", {})).status_code == 404
    assert (await ana.get("/admin/accounts/9999999999999999999", headers=HTML)).status_code == 404


async def test_a_master_cannot_take_over_an_operator_with_a_power_the_master_lacks(
    client: PanelClient,
) -> None:
    """Else a master sets a new password for an operator an admin gave ``audit.view`` and signs in
    as them (review finding: the password reset checked the role only)."""
    oscar = await client.account("oscar")
    async with client.runtime.sessionmaker() as session, session.begin():
        held = await session.get(Account, oscar.id)
        assert held is not None
        held.permissions = sorted({*held.permissions, "audit.view"})
    marta = await signed_in(client, "marta")
    password = {"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    for path, form in (
        (f"/admin/accounts/{oscar.id}/password", password),
        (f"/admin/accounts/{oscar.id}/lock", {"reason": "x"}),
        (f"/admin/accounts/{oscar.id}", edit_form(await client.account("oscar"), max_open_conversations="9")),
    ):
        refused = await post(marta, path, form)
        assert refused.status_code == 403, path
        assert "You cannot manage an account that holds powers you do not hold." in refused.text
    after = await client.account("oscar")
    assert (after.password_hash, after.locked, after.max_open_conversations) == (
        oscar.password_hash,
        False,
        oscar.max_open_conversations,
    )
    # An admin may.
    ana = await signed_in(client, "ana")
    assert (await post(ana, f"/admin/accounts/{oscar.id}/password", password)).status_code == 303


@pytest.mark.parametrize("limit", ["²", "١٢", "3.5", "-1"])
async def test_a_conversation_limit_that_is_not_ascii_digits_is_a_400(
    client: PanelClient, limit: str
) -> None:
    ana = await signed_in(client, "ana")
    answer = await post(ana, "/admin/accounts", new_operator(max_open_conversations=limit))
    assert answer.status_code == 400 and "The conversation limit is a number" in answer.text
