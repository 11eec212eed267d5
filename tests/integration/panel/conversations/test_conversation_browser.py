"""The conversation browser (/admin/conversations) and a client's whole history, on SQLite and
PostgreSQL: every search filter, newest first a page at a time, bad filters and ids answered 4xx,
numbers masked for those who may not see them, only those who may read other operators' answers let
in; and the desk's thread with who wrote each MT, why one failed, the pushes, and a returning client's
earlier messages."""

from __future__ import annotations

import importlib
import re
from datetime import datetime, timedelta
from html import unescape
from zoneinfo import ZoneInfo

import pytest

from gatewayd.store.repo_desk import mt_states

from ..conftest import HTML, PanelClient, login
from .story import ANA_NUMBER, Story, set_alias, tell


async def found(browser: PanelClient, /, **params: str) -> list[int]:
    """The conversation ids the browser lists for these filters, in its order."""
    response = await browser.get("/admin/conversations", params=params, headers=HTML)
    assert response.status_code == 200, response.text
    return [int(value) for value in re.findall(r'<tr data-conversation-id="(\d+)"', response.text)]


def thread_of(page: str) -> str:
    """The visible text of a page, entities decoded and tags dropped (what a reader sees)."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", page)).split())


async def test_the_desk_shows_who_wrote_each_mt_why_it_failed_the_push_and_earlier_messages(
    browser_client: PanelClient,
) -> None:
    story = await tell(browser_client)
    assert (await login(browser_client, "olga")).status_code == 303
    page = (await browser_client.get(f"/desk?c={story.second}", headers=HTML)).text
    # The returning client's earlier conversation, collapsed above the thread.
    section = re.search(r'<details class="earlier">(.*?)</details>', page, re.S)
    assert section is not None
    earlier, thread = section.group(1), page.split('<ol id="thread"', 1)[1]
    assert "Mensajes anteriores de este cliente (3)" in earlier
    earlier_text = thread_of(earlier)
    assert "hola, busco pareja" in earlier_text
    assert "Oferta especial para ti" in earlier_text and "Push" in earlier_text
    assert re.search(rf'data-mt-id="{story.reply_id}">.*?mt-author">Olga<', earlier, re.S)
    assert "No entregable (UNDELIV)" in earlier_text
    assert "vuelvo a escribir" in thread and "vuelvo a escribir" not in earlier
    # Olga may not see numbers: the one her reply carried is masked, in the earlier section too.
    assert ANA_NUMBER not in page and "Tu número: " + "\u2022" * len(ANA_NUMBER) in earlier_text

    # The first conversation's own thread shows the push sent while it was open.
    first = (await browser_client.get(f"/desk?c={story.first}", headers=HTML)).text
    push = re.search(rf'<li class="msg mt push" data-mt-id="{story.push_id}">(.*?)</li>', first, re.S)
    assert push is not None and "Oferta especial para ti" in push.group(1) and "Olga" in push.group(1)
    # A reply refused by policy says so.
    third = thread_of((await browser_client.get(f"/desk?c={story.third}", headers=HTML)).text)
    assert "Claro, Bea" in third and "Rechazado por la política: el cliente está baneado" in third
    # What the desk's live stream reads when an MT's status changes: the same reasons.
    async with browser_client.runtime.sessionmaker() as session:
        states = await mt_states(session, [story.reply_id, story.push_id, story.refused_id])
    assert [states[mt_id].failure for mt_id in (story.reply_id, story.push_id, story.refused_id)] == [
        "UNDELIV",
        None,
        "banned",
    ]


async def test_search_by_every_filter_newest_first(browser_client: PanelClient) -> None:
    story = await tell(browser_client)
    await set_alias(browser_client, story.ana, "Anita")
    assert (await login(browser_client, "marta")).status_code == 303
    everything = [story.third, story.second, story.first]
    assert await found(browser_client) == everything
    assert await found(browser_client, text="pareja") == [story.first]  # an MO's text
    assert await found(browser_client, text="SOY OLGA") == [story.first]  # an MT's, any case
    assert await found(browser_client, text="%") == []  # a literal, not a pattern
    assert await found(browser_client, client=story.ana.lower()) == [story.second, story.first]
    assert await found(browser_client, alias="nit") == [story.second, story.first]
    olga = await browser_client.account("olga")
    otto = await browser_client.account("otto")
    assert await found(browser_client, operator=str(olga.id)) == everything
    assert await found(browser_client, operator=str(otto.id)) == []
    assert await found(browser_client, service="citas") == [story.third]
    marta = await browser_client.account("marta")
    today = datetime.now(ZoneInfo(marta.timezone)).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    assert await found(browser_client, since=today.isoformat(), until=today.isoformat()) == everything
    assert await found(browser_client, until=yesterday) == []
    assert await found(browser_client, since=(today + timedelta(days=1)).isoformat()) == []
    assert await found(browser_client, text="Claro", client=story.ana) == []  # filters AND-ed


async def test_pages_follow_the_keyset(browser_client: PanelClient, monkeypatch: pytest.MonkeyPatch) -> None:
    story = await tell(browser_client)
    # (the package's ``routes`` attribute is the list of routes: the module is fetched by name)
    monkeypatch.setattr(importlib.import_module("plugins.conversations.routes"), "PAGE_SIZE", 2)
    assert (await login(browser_client, "marta")).status_code == 303
    first_page = await browser_client.get("/admin/conversations", params={"text": "a"}, headers=HTML)
    assert re.findall(r'<tr data-conversation-id="(\d+)"', first_page.text) == [
        str(story.third),
        str(story.second),
    ]
    older = re.search(r'<a href="([^"]+)" rel="next">', first_page.text)
    assert older is not None and f"before={story.second}" in unescape(older.group(1))
    second_page = await browser_client.get(unescape(older.group(1)), headers=HTML)
    assert re.findall(r'<tr data-conversation-id="(\d+)"', second_page.text) == [str(story.first)]
    assert 'rel="next"' not in second_page.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"client": "xyz"}, "Escribe un ID de cliente"),
        ({"since": "2026-13-01"}, "Las fechas se escriben AAAA-MM-DD."),
        ({"until": "ayer"}, "Las fechas se escriben AAAA-MM-DD."),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "La primera fecha no puede ser posterior"),
        ({"operator": "abc"}, "Elige un operador de la lista."),
        ({"operator": "999999"}, "Elige un operador de la lista."),
        ({"before": "-1"}, "Esa página no existe."),
        # "²" is a digit to str.isdigit, not to int(); the calendar's last day has no day after it,
        # its first none in UTC from a zone east of Greenwich.
        ({"before": "²"}, "Esa página no existe."),
        ({"operator": "²"}, "Elige un operador de la lista."),
        ({"until": "9999-12-31"}, "Las fechas se escriben AAAA-MM-DD."),
        ({"since": "0001-01-01"}, "Las fechas se escriben AAAA-MM-DD."),
        ({"text": "x" * 101}, "como mucho 100 caracteres"),
    ],
)
async def test_bad_filters_are_refused_with_a_message(
    browser_client: PanelClient, params: dict[str, str], message: str
) -> None:
    assert (await login(browser_client, "marta")).status_code == 303
    response = await browser_client.get("/admin/conversations", params=params, headers=HTML)
    assert response.status_code == 400 and message in response.text


async def test_numbers_are_masked_without_the_power_to_see_them(browser_client: PanelClient) -> None:
    story = await tell(browser_client)
    assert (await login(browser_client, "marta")).status_code == 303
    listing = await browser_client.get("/admin/conversations", headers=HTML)
    assert f"+{ANA_NUMBER}" in listing.text
    page = (await browser_client.get(f"/admin/conversations/{story.first}", headers=HTML)).text
    assert f"Tu número: {ANA_NUMBER}" in thread_of(page)

    async with browser_client.another_browser() as mario:
        assert (await login(mario, "mario")).status_code == 303
        listing = await mario.get("/admin/conversations", headers=HTML)
        assert listing.status_code == 200 and ANA_NUMBER not in listing.text
        for path in (f"/admin/conversations/{story.first}", f"/admin/clients/{story.ana}/history"):
            page = (await mario.get(path, headers=HTML)).text
            assert ANA_NUMBER not in page
            assert "Tu número: " + "\u2022" * len(ANA_NUMBER) in thread_of(page)


async def test_only_those_who_read_others_answers_may_browse(browser_client: PanelClient) -> None:
    story = await tell(browser_client)
    paths = (
        "/admin/conversations",
        f"/admin/conversations/{story.first}",
        f"/admin/clients/{story.ana}/history",
    )
    for username, status in (("olga", 403), ("nico", 403), ("mario", 200), ("marta", 200), ("ana", 200)):
        async with browser_client.another_browser() as browser:
            assert (await login(browser, username)).status_code == 303
            for path in paths:
                assert (await browser.get(path, headers=HTML)).status_code == status, (username, path)
            home = await browser.get("/admin" if username != "olga" else "/desk", headers=HTML)
            assert ('href="/admin/conversations"' in home.text) is (status == 200), username


async def test_a_conversation_whole_and_the_clients_history_across_conversations(
    browser_client: PanelClient,
) -> None:
    story: Story = await tell(browser_client)
    assert (await login(browser_client, "marta")).status_code == 303
    page = (await browser_client.get(f"/admin/conversations/{story.first}", headers=HTML)).text
    text = thread_of(page)
    assert "hola, busco pareja" in text and "Oferta especial para ti" in text
    assert "No entregable (UNDELIV)" in text and "Olga" in text
    assert "vuelvo a escribir" not in text
    assert f'href="/admin/clients/{story.ana}/history"' in page

    history = (await browser_client.get(f"/admin/clients/{story.ana}/history", headers=HTML)).text
    text = thread_of(history)
    assert "hola, busco pareja" in text and "vuelvo a escribir" in text and "Oferta especial para ti" in text
    assert "Claro, Bea" not in text and "quiero informacion" not in text
    groups = re.findall(r'<section class="history-group" data-conversation-id="(\d*)"', history)
    # In order: the first conversation, the push (sent outside any conversation), the second one.
    assert groups == [str(story.first), "", str(story.second)]
    outside = history.split('data-conversation-id=""', 1)[1].split("</section>", 1)[0]
    assert "Oferta especial para ti" in outside and "Fuera de una conversación" in outside
    assert text.index("hola, busco pareja") < text.index("vuelvo a escribir")
    # The client control's card leads there, for those who may read it.
    card = await browser_client.get("/admin/clients", params={"q": story.ana}, headers=HTML)
    assert f'href="/admin/clients/{story.ana}/history"' in card.text


@pytest.mark.parametrize(
    "path",
    [
        "/admin/conversations/999999",
        "/admin/conversations/abc",
        "/admin/conversations/99999999999999999999999",
        "/admin/clients/CAAAAAAAA/history",
        "/admin/clients/not-an-id/history",
    ],
)
async def test_bad_ids_are_not_found(browser_client: PanelClient, path: str) -> None:
    assert (await login(browser_client, "marta")).status_code == 303
    assert (await browser_client.get(path, headers=HTML)).status_code == 404
