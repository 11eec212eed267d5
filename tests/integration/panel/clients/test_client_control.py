"""Client control through the panel (/admin/clients): ban and unban, one client or a pasted list with
its per-line report, the audit records, the client's card and history, number look-ups only for those
who may see numbers, bad input answered 4xx with a message; a ban takes the client's conversation
from the operator, who can no longer answer it, and a push to them is refused with the reason."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from gatewayd.store.accounts import Presence
from gatewayd.store.audit import AuditRecord, verify_audit
from gatewayd.store.base import utcnow
from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.repo_subscribers import get_subscriber_by_client_id, set_opted_out
from gatewayd.store.subscribers import Subscriber
from tests.waiting import eventually

from ..conftest import HTML, PanelClient, login, page_csrf
from ..desk.conftest import at_desk, deliver_mo, holders

NUMBERS = ("34650000001", "34650000002", "34650000003")


async def known_clients(client: PanelClient, count: int = 2) -> list[str]:
    """Clients who wrote once each (stored as the daemon stores them); their client IDs."""
    ids = []
    for msisdn in NUMBERS[:count]:
        stored = await deliver_mo(client.runtime.sessionmaker, None, msisdn, "hola")
        ids.append(stored.subscriber.client_id)
    return ids


async def subscriber(client: PanelClient, client_id: str) -> Subscriber:
    async with client.runtime.sessionmaker() as session:
        found = await get_subscriber_by_client_id(session, client_id)
    assert found is not None
    return found


async def records(client: PanelClient) -> list[AuditRecord]:
    """The audit records about clients (sign-ins have theirs too)."""
    async with client.runtime.sessionmaker() as session:
        about_clients = select(AuditRecord).where(AuditRecord.subject.like("client:%"))
        return list((await session.execute(about_clients.order_by(AuditRecord.seq))).scalars())


async def post(client: PanelClient, **form: str) -> tuple[int, str]:
    token = await page_csrf(client, "/admin/clients")
    response = await client.post("/admin/clients", data={"csrf_token": token, **form}, headers=HTML)
    return response.status_code, response.text


def report(page: str) -> list[tuple[str, str]]:
    """(line text, outcome) of the per-line report."""
    return re.findall(r'data-outcome="(\w+)">\s*<td>\d+</td><td>([^<]*)</td>', page)


async def test_a_master_bans_a_client_and_the_card_shows_it(clients_client: PanelClient) -> None:
    first, second = await known_clients(clients_client)
    assert (await login(clients_client, "marta")).status_code == 303
    status, page = await post(clients_client, action="ban", ids=first.lower(), reason="insultos")
    assert status == 200 and report(page) == [("banned", first.lower())]
    banned = await subscriber(clients_client, first)
    assert banned.banned and banned.banned_reason == "insultos" and banned.banned_at is not None
    assert not (await subscriber(clients_client, second)).banned

    (record,) = await records(clients_client)
    marta = await clients_client.account("marta")
    assert (record.action, record.subject, record.actor, record.actor_id) == (
        "client.ban",
        f"client:{first}",
        "marta",
        marta.id,
    )
    assert record.details == {
        "before": {"banned": False, "reason": None},
        "after": {"banned": True, "reason": "insultos"},
    }

    card = await clients_client.get(f"/admin/clients?q={first}", headers=HTML)
    assert card.status_code == 200
    assert f'data-client-id="{first}"' in card.text and "Bloqueado desde" in card.text
    assert "insultos" in card.text and 'data-action="client.ban"' in card.text
    assert "+34650000001" in card.text  # a master sees numbers

    # unban from the card: the history shows both, the reason that ended with it
    status, page = await post(clients_client, action="unban", ids=first)
    assert status == 200 and report(page) == [("unbanned", first)]
    assert not (await subscriber(clients_client, first)).banned
    ban, unban = await records(clients_client)
    assert unban.action == "client.unban" and unban.details == {
        "before": {"banned": True, "reason": "insultos"},
        "after": {"banned": False, "reason": None},
    }
    card = await clients_client.get(f"/admin/clients?q={first}", headers=HTML)
    assert card.text.index('data-action="client.unban"') < card.text.index('data-action="client.ban"')
    async with clients_client.runtime.sessionmaker() as session:
        assert (await verify_audit(session)).intact


async def test_a_pasted_list_is_reported_line_by_line(clients_client: PanelClient) -> None:
    first, second, third = await known_clients(clients_client, 3)
    assert (await login(clients_client, "ana")).status_code == 303
    status, _ = await post(clients_client, action="ban", ids=third, reason="spam")
    assert status == 200
    pasted = "\n".join(
        [f"  {first}  ", "", second.lower(), third, first, "CAAAAAAAA", "34650000001", "<b>hola</b>", ""]
    )
    status, page = await post(clients_client, action="ban", ids=pasted, reason="fraude")
    assert status == 200
    assert report(page) == [
        ("banned", first),
        ("banned", second.lower()),
        ("already", third),
        ("already", first),
        ("unknown", "CAAAAAAAA"),
        ("invalid", "34650000001"),
        ("invalid", "&lt;b&gt;hola&lt;/b&gt;"),
    ]
    assert "<b>hola</b>" not in page
    assert (await subscriber(clients_client, third)).banned_reason == "spam"  # already: left as it was
    assert [(r.action, r.subject) for r in await records(clients_client)] == [
        ("client.ban", f"client:{third}"),
        *sorted([("client.ban", f"client:{first}"), ("client.ban", f"client:{second}")]),
    ]
    status, page = await post(clients_client, action="unban", ids=f"{first}\n{second}\nCAAAAAAAA")
    assert report(page) == [("unbanned", first), ("unbanned", second), ("unknown", "CAAAAAAAA")]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"action": "ban", "ids": "CAAAAAAAA", "reason": "  "}, "hace falta un motivo"),
        ({"action": "ban", "ids": "CAAAAAAAA", "reason": "x" * 256}, "como máximo 255 caracteres"),
        ({"action": "ban", "ids": "\n \n", "reason": "x"}, "al menos un ID de cliente"),
        ({"action": "ban", "ids": "CAAAAAAAA\n" * 1001, "reason": "x"}, "Como máximo 1.000"),
        ({"action": "borrar", "ids": "CAAAAAAAA", "reason": "x"}, "Elige bloquear o desbloquear"),
        ({"ids": "CAAAAAAAA"}, "Elige bloquear o desbloquear"),
    ],
)
async def test_bad_input_is_refused_with_a_message(
    clients_client: PanelClient, form: dict[str, str], message: str
) -> None:
    assert (await login(clients_client, "marta")).status_code == 303
    status, page = await post(clients_client, **form)
    assert status == 400 and message in page
    assert await records(clients_client) == []


async def test_a_thousand_lines_are_taken(clients_client: PanelClient) -> None:
    (first,) = await known_clients(clients_client, 1)
    assert (await login(clients_client, "marta")).status_code == 303
    status, page = await post(
        clients_client, action="ban", ids=f"{first}\n" + "CAAAAAAAA\n" * 999, reason="x"
    )
    assert status == 200 and report(page)[0] == ("banned", first) and len(report(page)) == 1000


async def test_number_look_up_only_for_those_who_may_see_numbers(clients_client: PanelClient) -> None:
    (first,) = await known_clients(clients_client, 1)
    assert (await login(clients_client, "marta")).status_code == 303
    found = await clients_client.get("/admin/clients?q=%2B34650000001", headers=HTML)
    assert found.status_code == 200 and f'data-client-id="{first}"' in found.text
    missing = await clients_client.get("/admin/clients?q=34699999999", headers=HTML)
    assert missing.status_code == 404 and "No se ha encontrado" in missing.text

    async with clients_client.another_browser() as mario:
        assert (await login(mario, "mario")).status_code == 303
        refused = await mario.get("/admin/clients?q=34650000001", headers=HTML)
        assert refused.status_code == 400 and "C y 8 letras o cifras" in refused.text
        card = await mario.get(f"/admin/clients?q={first}", headers=HTML)
        assert card.status_code == 200 and f'data-client-id="{first}"' in card.text
        assert "34650000001" not in card.text  # the number stays hidden


async def test_the_card_shows_the_opt_out(clients_client: PanelClient) -> None:
    (first,) = await known_clients(clients_client, 1)
    async with clients_client.runtime.sessionmaker() as session, session.begin():
        await set_opted_out(session, (await subscriber(clients_client, first)).id, True, utcnow())
    assert (await login(clients_client, "marta")).status_code == 303
    card = await clients_client.get(f"/admin/clients?q={first}", headers=HTML)
    assert "De baja desde" in card.text and "No bloqueado" in card.text


async def test_a_ban_takes_the_conversation_from_its_operator_and_refuses_mts(
    clients_client: PanelClient,
) -> None:
    runtime = clients_client.runtime
    async with at_desk(clients_client, "olga", Presence.ONLINE) as olga:
        stored = await deliver_mo(runtime.sessionmaker, runtime.bus, NUMBERS[0], "hola")
        conversation_id = stored.conversation_id
        assert conversation_id is not None
        olga_id = (await clients_client.account("olga")).id

        async def held() -> bool:
            return (await holders(runtime.sessionmaker)).get(conversation_id) == olga_id

        await eventually(held)
        bus = runtime.bus
        assert bus is not None
        assert (await login(clients_client, "marta")).status_code == 303
        async with bus.subscribe(bus.topics.conversation_assigned(conversation_id)) as assigned:
            status, _ = await post(
                clients_client, action="ban", ids=stored.subscriber.client_id, reason="acoso"
            )
            event = await assigned.get()
        assert status == 200
        assert event.payload["operator_id"] is None and event.payload["previous_operator_id"] == olga_id
        assert (await holders(runtime.sessionmaker))[conversation_id] is None

        # her next MO is stored, and stays nobody's
        again = await deliver_mo(runtime.sessionmaker, runtime.bus, NUMBERS[0], "¿hola?")
        assert again.conversation_id == conversation_id
        other = await deliver_mo(runtime.sessionmaker, runtime.bus, NUMBERS[1], "buenas")

        async def other_held() -> bool:
            return (await holders(runtime.sessionmaker)).get(other.conversation_id or 0) == olga_id

        await eventually(other_held)
        assert (await holders(runtime.sessionmaker))[conversation_id] is None
        desk = await olga.get("/desk", headers=HTML)
        assert f'data-conversation-id="{conversation_id}"' not in desk.text

        # a push to the banned client is refused, with the reason shown
        token = await page_csrf(olga, "/desk/push")
        pushed = await olga.post(
            "/desk/push",
            data={"csrf_token": token, "client_id": stored.subscriber.client_id, "text": "¿sigues ahí?"},
            headers=HTML,
        )
        assert pushed.status_code == 409 and "el cliente está baneado" in pushed.text
        async with runtime.sessionmaker() as session:
            statuses = list((await session.execute(select(MTMessage.status))).scalars())
        assert MTStatus.QUEUED not in statuses


async def test_the_page_needs_the_client_control_power(clients_client: PanelClient) -> None:
    (first,) = await known_clients(clients_client, 1)
    for who in ("nico", "olga"):  # the control panel without the power; an operator
        async with clients_client.another_browser() as browser:
            assert (await login(browser, who)).status_code == 303
            assert (await browser.get("/admin/clients", headers=HTML)).status_code == 403
            token = await page_csrf(browser, "/profile")
            form = {"csrf_token": token, "action": "ban", "ids": first, "reason": "x"}
            assert (await browser.post("/admin/clients", data=form, headers=HTML)).status_code == 403
            menu = await browser.get("/profile", headers=HTML)
            assert 'href="/admin/clients"' not in menu.text
    assert not (await subscriber(clients_client, first)).banned
    assert (await login(clients_client, "marta")).status_code == 303
    assert 'href="/admin/clients"' in (await clients_client.get("/admin", headers=HTML)).text
