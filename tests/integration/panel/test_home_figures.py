"""The control panel's start page: today's figures in the reader's time zone (Madrid vs Bogotá around
midnight), operators online by the assignment's presence rule, binds up from the daemon's status event
(and "unknown" without one), links only into the sections the reader may open, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, update

from gatewayd.store.accounts import Account, Presence, WebSession
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus, MTKind, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.repo_stats import day_figures
from gatewayd.store.subscribers import Subscriber
from panel.auth.accounts import set_permissions
from panel.settings import PanelSettings
from plugins.clients.permissions import CLIENTS_CONTROL
from plugins.home.routes import today_range

from .conftest import HTML, PanelClient, login

MADRID = ZoneInfo("Europe/Madrid")
BOGOTA = ZoneInfo("America/Bogota")
_FIGURE = re.compile(
    r'data-figure="(\w+)">\s*(?:<a href="([^"]*)">)?\s*<span class="figure-label">[^<]*</span>\s*'
    r'<span class="figure-value">([^<]*)</span>'
)


def figures(html: str) -> dict[str, tuple[str, str]]:
    """{figure: (value, link or "")}"""
    return {key: (value, link) for key, link, value in _FIGURE.findall(html)}


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, settings: PanelSettings) -> PanelSettings:
    if request.param == "sqlite":
        return settings
    url = request.getfixturevalue("pg_url")
    return replace(settings, database_url=url)


async def seed_traffic(client: PanelClient, now: datetime) -> None:
    """Around now: MOs and MTs either side of midnight in Madrid, and of midnight in Bogotá."""
    madrid_start, _ = today_range(MADRID, now)
    bogota_start, _ = today_range(BOGOTA, now)
    async with client.runtime.sessionmaker() as session, session.begin():
        subscriber = Subscriber(msisdn="34600111222", carrier="movistar", country="ES", client_id="CHOME1")
        session.add(subscriber)
        await session.flush()
        moments = [madrid_start - timedelta(seconds=1), madrid_start, now]
        moments += [bogota_start - timedelta(seconds=1), bogota_start]
        for n, at in enumerate(moments):
            session.add(
                MOMessage(
                    dedup_key=f"home-{n}",
                    subscriber_id=subscriber.id,
                    carrier="movistar",
                    short_code="7777",
                    text="hola",
                    received_at=at,
                )
            )
        statuses = [
            (MTStatus.DELIVERED, madrid_start),
            (MTStatus.DELIVERED, now),
            (MTStatus.DELIVERED, now),
            (MTStatus.FAILED, now),
            (MTStatus.ACCEPTED, now),  # sent, no outcome yet
            (MTStatus.QUEUED, now),  # not sent
            (MTStatus.REFUSED, now),  # never sent
            (MTStatus.DELIVERED, madrid_start - timedelta(seconds=1)),  # yesterday in Madrid
        ]
        for status, at in statuses:
            session.add(
                MTMessage(
                    status=status,
                    kind=MTKind.REPLY,
                    text="hola",
                    carrier="movistar",
                    source="7777",
                    destination="34600111222",
                    subscriber_id=subscriber.id,
                    created_at=at,
                    updated_at=at,
                )
            )
        conversations = {"7777": ConversationStatus.WAITING, "7778": ConversationStatus.WAITING}
        conversations["7779"] = ConversationStatus.OPEN
        for short_code, status in conversations.items():
            session.add(Conversation(subscriber_id=subscriber.id, short_code=short_code, status=status))


async def test_day_figures_count_today_in_each_time_zone(client: PanelClient) -> None:
    # 00:30 in Madrid is still the day before in Bogotá (18:30): the two readers' "today" differ.
    now = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    await seed_traffic(client, now)
    grace, idle = timedelta(seconds=40), timedelta(minutes=30)
    async with client.runtime.readers() as session:
        madrid = await day_figures(session, *today_range(MADRID, now), now=now, grace=grace, idle=idle)
        bogota = await day_figures(session, *today_range(BOGOTA, now), now=now, grace=grace, idle=idle)
    # Madrid's day began at 23:00 UTC: the MO at 22:59:59 and Bogotá's 05:00 are of the day before.
    assert (madrid.mo_received, madrid.mt_sent, madrid.mt_delivered, madrid.mt_final) == (2, 5, 3, 4)
    assert madrid.delivered_percent == 75.0
    # Bogotá's day (2 March, from 05:00 UTC) holds everything but the MO a second before it.
    assert (bogota.mo_received, bogota.mt_sent, bogota.mt_delivered, bogota.mt_final) == (4, 6, 4, 5)
    assert madrid.waiting == bogota.waiting == 2
    assert madrid.operators_online == 0


async def test_a_day_with_no_outcome_shows_no_percentage(client: PanelClient) -> None:
    await login(client, "ana")
    page = await client.get("/admin", headers=HTML)
    assert page.status_code == 200
    shown = figures(page.text)
    assert shown["mo"][0] == "0" and shown["delivered"][0] == "—"
    assert shown["waiting"][0] == "0" and shown["operators"][0] == "0"


async def test_the_page_shows_todays_figures_and_operators_online(client: PanelClient) -> None:
    now = datetime.now(UTC)
    await seed_traffic(client, now)
    await login(client, "oscar")  # a live session...
    oscar = await client.account("oscar")
    async with client.runtime.sessionmaker() as session, session.begin():
        # ...and a desk seen just now, presence online: present by the assignment's rule.
        await session.execute(
            update(Account)
            .where(Account.id == oscar.id)
            .values(presence=Presence.ONLINE, desk_seen_at=datetime.now(UTC))
        )
    admin = client.another_browser()
    await login(admin, "ana")
    shown = figures((await admin.get("/admin", headers=HTML)).text)
    # the live monitor when it is installed, else the accounts (both in ana's menu)
    assert shown["operators"][0] == "1" and shown["operators"][1] in ("/admin/monitor", "/admin/accounts")
    assert shown["waiting"][0] == "2"
    assert int(shown["mo"][0]) >= 2 and shown["mt"][0] != "0"
    # The operator's sessions end: no longer online.
    async with client.runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(WebSession).where(WebSession.account_id == oscar.id).values(revoked_at=datetime.now(UTC))
        )
    shown = figures((await admin.get("/admin", headers=HTML)).text)
    assert shown["operators"][0] == "0"


async def test_figures_are_written_as_the_readers_language_writes_numbers(client: PanelClient) -> None:
    now = datetime.now(UTC)
    async with client.runtime.sessionmaker() as session, session.begin():
        subscriber = Subscriber(msisdn="34600111333", carrier="movistar", country="ES", client_id="CHOME2")
        session.add(subscriber)
        await session.flush()
        mo = {"subscriber_id": subscriber.id, "carrier": "movistar", "short_code": "7777", "text": "hola"}
        await session.execute(
            insert(MOMessage), [{**mo, "dedup_key": f"many-{n}", "received_at": now} for n in range(12345)]
        )
        for status in (MTStatus.DELIVERED, MTStatus.DELIVERED, MTStatus.DELIVERED, MTStatus.FAILED):
            session.add(
                MTMessage(
                    status=status,
                    kind=MTKind.REPLY,
                    text="hola",
                    carrier="movistar",
                    source="7777",
                    destination="34600111333",
                    subscriber_id=subscriber.id,
                    created_at=now,
                    updated_at=now,
                )
            )
    await login(client, "ana")  # in Spanish
    spanish = figures((await client.get("/admin", headers=HTML)).text)
    assert spanish["mo"][0] == "12.345" and spanish["delivered"][0] == "75\xa0%"
    english = client.another_browser()
    await login(english, "marta")
    shown = figures((await english.get("/admin", headers=HTML)).text)
    assert shown["mo"][0] == "12,345" and shown["delivered"][0] == "75%"


async def test_binds_up_come_from_the_daemons_status_event(client: PanelClient) -> None:
    await login(client, "ana")
    page = await client.get("/admin", headers=HTML)
    assert figures(page.text)["binds"][0] == "desconocido"  # ana reads Spanish
    bus = client.runtime.bus
    assert bus is not None
    async with bus.subscribe(bus.topics.status()) as heard:
        await bus.publish(
            bus.topics.status(),
            {"binds_up": {"movistar": 2, "vodafone": 0}, "binds": {"movistar": 2, "vodafone": 1}},
        )
        await anext(aiter(heard))
    # The panel's follower got it too (it subscribed first); wait on the page showing it.
    for _ in range(200):
        page = await client.get("/admin", headers=HTML)
        if figures(page.text)["binds"][0] != "desconocido":
            break
    assert figures(page.text)["binds"][0] == "2 / 3"
    assert "movistar 2/2 · vodafone 0/1" in page.text


async def test_the_menu_and_the_links_follow_the_readers_powers(client: PanelClient) -> None:
    await login(client, "ana")
    page = (await client.get("/admin", headers=HTML)).text
    assert 'href="/admin/clients"' in page and 'href="/admin/accounts"' in page
    registry = client.runtime.permissions
    async with client.runtime.sessionmaker() as session, session.begin():
        found = (await session.scalars(select(Account).where(Account.username == "marta"))).one()
        # a master: the control panel, without client control (a master's default power, taken away)
        await set_permissions(found, registry, [p for p in found.permissions if p != CLIENTS_CONTROL])
    marta = client.another_browser()
    await login(marta, "marta")
    page = (await marta.get("/admin", headers=HTML)).text
    assert page.count("Client control") == 0 and 'href="/admin/clients"' not in page
    assert (await marta.get("/admin/clients", headers=HTML)).status_code == 403
    nadie = client.another_browser()  # no power at all: no control panel
    await login(nadie, "nadie")
    assert (await nadie.get("/admin", headers=HTML)).status_code == 403
