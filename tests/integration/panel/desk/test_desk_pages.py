"""The desk's pages: reply (queued, refused), client card, MSISDN privacy, escaping, counter, push."""

from __future__ import annotations

from sqlalchemy import select

from gatewayd.store.accounts import Presence
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus, MTKind, MTStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.repo_subscribers import set_bans
from gatewayd.store.subscribers import Subscriber
from smpp.text import draft_info
from tests.waiting import eventually

from ..conftest import HTML, PanelClient, login, page_csrf
from .conftest import deliver_mo, holders

MSISDN = "34650000001"
EVIL = "<script>alert('x')</script>"


async def online_with_one_mo(client: PanelClient, text: str = "hola") -> int:
    runtime = client.runtime
    assert (await login(client, "olga")).status_code == 303
    token = await page_csrf(client, "/desk")
    await client.post("/desk/presence", data={"csrf_token": token, "presence": Presence.ONLINE.value})
    stored = await deliver_mo(runtime.sessionmaker, runtime.bus, MSISDN, text)
    assert stored.conversation_id is not None

    async def held() -> bool:
        return (await holders(runtime.sessionmaker)).get(stored.conversation_id) is not None

    await eventually(held)
    return stored.conversation_id


async def mts(client: PanelClient) -> list[MTMessage]:
    async with client.runtime.sessionmaker() as session:
        return list((await session.execute(select(MTMessage))).scalars())


async def test_reply_is_queued_published_and_answers_the_conversation(desk_client: PanelClient) -> None:
    conversation_id = await online_with_one_mo(desk_client)
    page = await desk_client.get("/desk", headers=HTML)
    assert f'data-conversation-id="{conversation_id}"' in page.text and "hola" in page.text
    token = await page_csrf(desk_client, "/desk")
    bus = desk_client.runtime.bus
    assert bus is not None
    async with bus.subscribe(bus.topics.all_mt_status()) as statuses:
        sent = await desk_client.post(
            f"/desk/conversations/{conversation_id}/reply",
            data={"csrf_token": token, "text": "¡Hola! ¿Qué tal?"},
        )
        event = await statuses.get()
    assert sent.status_code == 303
    (mt,) = await mts(desk_client)
    assert sent.headers["location"] == f"/desk?after={conversation_id}&notice=sent&mt={mt.id}"
    assert (mt.kind, mt.status, mt.destination) == (MTKind.REPLY, MTStatus.QUEUED, MSISDN)
    assert mt.source == "997745"
    assert mt.operator_id == (await desk_client.account("olga")).id and mt.conversation_id == conversation_id
    assert event.topic == bus.topics.mt_status(mt.id)
    assert event.payload["status"] == "queued" and event.payload["id"] == mt.id
    async with desk_client.runtime.sessionmaker() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None and conversation.status is ConversationStatus.OPEN
    shown = await desk_client.get(sent.headers["location"], headers=HTML)
    assert f'data-mt-id="{mt.id}"' in shown.text and "En cola" in shown.text
    assert f'id="desk-notice" class="flash ok desk-notice" role="status" data-mt-id="{mt.id}"' in shown.text


async def test_a_reply_with_line_breaks_is_sent_as_its_counter_counted_it(desk_client: PanelClient) -> None:
    """The box's live counter posts its value (LF line breaks); the form sends them as CRLF. The MT is
    the text the counter counted: 160 GSM characters with a line break are one SMS, not two."""
    conversation_id = await online_with_one_mo(desk_client)
    token = await page_csrf(desk_client, "/desk")
    typed = "a" * 79 + "\n" + "b" * 80
    counted = await desk_client.post("/desk/draft", data={"text": typed}, headers={"x-csrf-token": token})
    as_sent = await desk_client.post(
        "/desk/draft", data={"text": typed.replace("\n", "\r\n")}, headers={"x-csrf-token": token}
    )
    assert counted.json()["segments"] == as_sent.json()["segments"] == 1
    sent = await desk_client.post(
        f"/desk/conversations/{conversation_id}/reply",
        data={"csrf_token": token, "text": typed.replace("\n", "\r\n")},
    )
    assert sent.status_code == 303
    (mt,) = await mts(desk_client)
    assert mt.text == typed


async def test_the_reply_notice_shows_the_status_of_its_mt(desk_client: PanelClient) -> None:
    conversation_id = await online_with_one_mo(desk_client)
    token = await page_csrf(desk_client, "/desk")
    sent = await desk_client.post(
        f"/desk/conversations/{conversation_id}/reply", data={"csrf_token": token, "text": "hola"}
    )
    (mt,) = await mts(desk_client)
    queued = await desk_client.get(sent.headers["location"], headers=HTML)
    notice = queued.text.split('id="desk-notice"', 1)[1].split("</p>", 1)[0]
    assert 'data-final="no"' in notice and "Respuesta en cola de envío." in notice
    assert '<span class="mt-status status-queued">En cola</span>' in notice
    async with desk_client.runtime.sessionmaker() as session, session.begin():
        stored = await session.get(MTMessage, mt.id)
        assert stored is not None
        stored.status = MTStatus.DELIVERED
    delivered = await desk_client.get(sent.headers["location"], headers=HTML)
    notice = delivered.text.split('id="desk-notice"', 1)[1].split("</p>", 1)[0]
    assert 'data-final="yes"' in notice and "status-delivered" in notice  # the script fades it
    assert "Tu respuesta:" in notice and "en cola" not in notice
    # Someone else's MT id in the address shows no status; the plain notice stays (the script fades it).
    await desk_client.post("/logout", data={"csrf_token": token})
    await login(desk_client, "otto")
    foreign = await desk_client.get(f"/desk?notice=sent&mt={mt.id}", headers=HTML)
    notice = foreign.text.split('id="desk-notice"', 1)[1].split("</p>", 1)[0]
    assert "data-mt-id" not in notice and "mt-status" not in notice and "Reply queued" in notice


async def test_reply_to_a_banned_subscriber_is_refused_clearly(desk_client: PanelClient) -> None:
    conversation_id = await online_with_one_mo(desk_client)
    async with desk_client.runtime.sessionmaker() as session, session.begin():
        subscriber = (await session.execute(select(Subscriber))).scalar_one()
        await set_bans(session, [subscriber.client_id], reason="abuse", now=utcnow())
    token = await page_csrf(desk_client, "/desk")
    refused = await desk_client.post(
        f"/desk/conversations/{conversation_id}/reply",
        data={"csrf_token": token, "text": "hola"},
        headers=HTML,
    )
    assert refused.status_code == 409
    assert "No enviado: el cliente está baneado." in refused.text
    assert await mts(desk_client) == []


async def test_reply_without_csrf_token_is_refused(desk_client: PanelClient) -> None:
    conversation_id = await online_with_one_mo(desk_client)
    refused = await desk_client.post(f"/desk/conversations/{conversation_id}/reply", data={"text": "hola"})
    assert refused.status_code == 403
    assert await mts(desk_client) == []


async def test_client_card_edit_is_saved_and_escaped(desk_client: PanelClient) -> None:
    conversation_id = await online_with_one_mo(desk_client)
    async with desk_client.runtime.sessionmaker() as session:
        client_id = (await session.execute(select(Subscriber.client_id))).scalar_one()
    token = await page_csrf(desk_client, "/desk")
    saved = await desk_client.post(
        f"/desk/clients/{client_id}/details",
        data={
            "csrf_token": token,
            "conversation_id": str(conversation_id),
            "alias": "<b>Pepe</b>",
            "notes": "Le gusta el tarot",
        },
    )
    assert saved.status_code == 303
    page = await desk_client.get(saved.headers["location"], headers=HTML)
    assert "&lt;b&gt;Pepe&lt;/b&gt;" in page.text and "<b>Pepe</b>" not in page.text
    assert "Le gusta el tarot" in page.text
    async with desk_client.runtime.sessionmaker() as session:
        subscriber = (await session.execute(select(Subscriber))).scalar_one()
    assert (subscriber.alias, subscriber.notes) == ("<b>Pepe</b>", "Le gusta el tarot")
    assert '<svg viewBox="0 0 240 60"' in page.text  # the charts, drawn on the server


async def test_client_notes_are_kept_whole_or_refused_never_cut(desk_client: PanelClient) -> None:
    """The notes box's maxlength (2,000) counts a line break as one character; the browser sends it
    as two (CRLF): such notes are kept whole. Longer ones (no browser sends them) are refused."""
    conversation_id = await online_with_one_mo(desk_client)
    async with desk_client.runtime.sessionmaker() as session:
        client_id = (await session.execute(select(Subscriber.client_id))).scalar_one()
    token = await page_csrf(desk_client, "/desk")
    lines = "\n".join(["llama por las tardes"] * 95)  # 1,994 characters as the browser counts them
    form = {"csrf_token": token, "conversation_id": str(conversation_id), "alias": "Pepe"}
    path = f"/desk/clients/{client_id}/details"
    saved = await desk_client.post(path, data={**form, "notes": lines.replace("\n", "\r\n")})
    assert saved.status_code == 303

    async def details() -> tuple[str | None, str | None]:
        async with desk_client.runtime.sessionmaker() as session:
            subscriber = (await session.execute(select(Subscriber))).scalar_one()
        return subscriber.alias, subscriber.notes

    assert await details() == ("Pepe", lines)
    for field, value in (("notes", "x" * 2001), ("alias", "y" * 65)):
        refused = await desk_client.post(path, data={**form, field: value}, headers=HTML)
        assert refused.status_code == 400
        assert "No se ha guardado nada" in refused.text
        assert await details() == ("Pepe", lines)


async def test_msisdn_hidden_from_operators_shown_with_the_permission(desk_client: PanelClient) -> None:
    conversation_id = await online_with_one_mo(desk_client)
    operator_page = await desk_client.get(f"/desk?c={conversation_id}", headers=HTML)
    assert operator_page.status_code == 200
    assert MSISDN not in operator_page.text
    token = await page_csrf(desk_client, "/desk")
    await desk_client.post("/logout", data={"csrf_token": token})
    await login(desk_client, "marta")  # a master: sees others' conversations and phone numbers
    master_page = await desk_client.get(f"/desk?c={conversation_id}", headers=HTML)
    assert master_page.status_code == 200
    assert MSISDN in master_page.text


async def test_html_in_an_mo_is_shown_as_text(desk_client: PanelClient) -> None:
    await online_with_one_mo(desk_client, text=EVIL)
    page = await desk_client.get("/desk", headers=HTML)
    assert EVIL not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text


async def test_the_counter_is_the_one_smpp_computes(desk_client: PanelClient) -> None:
    await login(desk_client, "olga")
    token = await page_csrf(desk_client, "/desk")
    for text in ("hola", "ñandú €" * 30, "привет", "x" * 161):
        answer = await desk_client.post("/desk/draft", data={"text": text}, headers={"x-csrf-token": token})
        expected = draft_info(text, max_segments=10)
        body = answer.json()
        assert (body["encoding"], body["segments"], body["units_left"]) == (
            expected.encoding,
            expected.segments,
            expected.units_left,
        )


async def test_the_counter_counts_in_the_operators_language_with_plural_forms(
    desk_client: PanelClient,
) -> None:
    labels = {}
    for username in ("olga", "otto"):  # Spanish, English
        await login(desk_client, username)
        token = await page_csrf(desk_client, "/desk")
        for text in ("x" * 159, "x" * 4):
            answer = await desk_client.post(
                "/desk/draft", data={"text": text}, headers={"x-csrf-token": token}
            )
            labels[username, len(text)] = answer.json()["label"]
        await desk_client.post("/logout", data={"csrf_token": token})
    assert labels["olga", 159] == "GSM-7 · 1 SMS · queda 1 carácter"
    assert labels["olga", 4] == "GSM-7 · 1 SMS · quedan 156 caracteres"
    assert labels["otto", 159] == "GSM-7 · 1 SMS · 1 character left"
    assert labels["otto", 4] == "GSM-7 · 1 SMS · 156 characters left"


async def test_push_is_queued_and_refused_for_unknown_or_banned_clients(desk_client: PanelClient) -> None:
    await online_with_one_mo(desk_client)
    async with desk_client.runtime.sessionmaker() as session:
        client_id = (await session.execute(select(Subscriber.client_id))).scalar_one()
    token = await page_csrf(desk_client, "/desk/push")
    pushed = await desk_client.post(
        "/desk/push", data={"csrf_token": token, "client_id": client_id, "text": "Oferta"}
    )
    assert pushed.status_code == 303
    (mt,) = await mts(desk_client)
    assert (mt.kind, mt.status, mt.destination) == (MTKind.PUSH, MTStatus.QUEUED, MSISDN)
    listing = await desk_client.get(pushed.headers["location"], headers=HTML)
    assert f'data-mt-id="{mt.id}"' in listing.text
    unknown = await desk_client.post(
        "/desk/push", data={"csrf_token": token, "client_id": "CNOPE", "text": "x"}, headers=HTML
    )
    assert unknown.status_code == 404
    async with desk_client.runtime.sessionmaker() as session, session.begin():
        await set_bans(session, [client_id], reason="abuse", now=utcnow())
    banned = await desk_client.post(
        "/desk/push", data={"csrf_token": token, "client_id": client_id, "text": "Oferta"}, headers=HTML
    )
    assert banned.status_code == 409 and "baneado" in banned.text
    assert len(await mts(desk_client)) == 1


async def test_anonymous_and_unauthorised_access(desk_client: PanelClient) -> None:
    anonymous = await desk_client.get("/desk", headers=HTML)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
    assert (await desk_client.get("/desk/events")).status_code == 401
    await login(desk_client, "olga")
    page = await desk_client.get("/desk", headers=HTML)
    assert page.status_code == 200 and "<script>" not in page.text
