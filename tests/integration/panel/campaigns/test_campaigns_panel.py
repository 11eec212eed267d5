"""The mass push through the panel (issue 13, 1.6): the audience size (JSON and the "Count audience"
button), the form's checks (400 with every message in the page), the live counter and the preview
for a sample client, a campaign created and audited, its progress as JSON, pause / resume / cancel
(audited; cancelling withdraws its queued MTs); on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette

from gatewayd.campaigns import CampaignSender, CampaignSettings
from gatewayd.config import ServiceConfig
from gatewayd.outbox import Outbox, OutboxSettings
from gatewayd.store.audit import AuditRecord
from gatewayd.store.base import utcnow
from gatewayd.store.campaigns import Campaign, CampaignStatus
from gatewayd.store.engine import create_engine
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from panel.app import create_app
from panel.settings import PanelSettings
from tests.integration.gatewayd.helpers_campaigns import answered_history, outbox_settings

from ..conftest import (
    BUILT_IN_PLUGINS,
    FAST_ARGON2,
    HTML,
    PanelClient,
    login,
    memory_bus,
    page_csrf,
    prepare_store,
    serving,
)

#: The audience of the last two pushes in the hand-built history (see ``answered_history``).
AUDIENCE = 6
SERVICES = (
    ServiceConfig(name="chat", short_code="997745", timezone="Europe/Madrid"),
    ServiceConfig(name="ligue", short_code="795500", timezone="Europe/Madrid"),
)


@pytest.fixture(params=["sqlite_url", "pg_url"], ids=["sqlite", "pg"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


@pytest.fixture
async def store(database_url: str, example_on_path: None) -> AsyncIterator[Store]:
    await prepare_store(database_url)
    engine = create_engine(database_url)
    try:
        yield Store.for_engine(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def admin(store: Store, database_url: str) -> AsyncIterator[PanelClient]:
    await answered_history(store)
    outbox = OutboxSettings(outbox_settings().carriers, SERVICES, "Europe/Madrid")
    settings = PanelSettings(
        database_url=database_url, secure_cookies=False, argon2=FAST_ARGON2, outbox=outbox
    )
    app: Starlette = create_app(settings, bus_factory=memory_bus, plugins=list(BUILT_IN_PLUGINS))
    async with serving(app) as client:
        assert (await login(client, "marta")).status_code == 303  # a master: campaigns.manage by default
        yield client


def form(**values: str) -> dict[str, str]:
    return {
        "name": "Vuelta al chat",
        "text": "Hola {telefono}, te echamos de menos",
        "last_pushes": "2",
        "include_new": "1",
        "service": "",
        "carrier": "",
        "country": "",
        "active_days": "",
        "tps": "50",
        "when": "now",
        "scheduled_at": "",
        "action": "send",
        **values,
    }


async def post(client: PanelClient, path: str, data: dict[str, str]) -> tuple[int, str, str]:
    token = await page_csrf(client, "/admin/campaigns/new")
    response = await client.post(path, data={"csrf_token": token, **data}, headers=HTML)
    return response.status_code, response.text, response.headers.get("location", "")


async def campaigns(client: PanelClient) -> list[Campaign]:
    async with client.runtime.sessionmaker() as session:
        return list((await session.scalars(select(Campaign).order_by(Campaign.id))).all())


async def audit_records(client: PanelClient, action: str) -> list[AuditRecord]:
    async with client.runtime.sessionmaker() as session:
        statement = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
        return list((await session.scalars(statement)).all())


async def test_the_audience_size_as_the_filters_change(admin: PanelClient) -> None:
    response = await admin.get("/admin/campaigns/audience", params={"last_pushes": "2", "include_new": "1"})
    assert response.status_code == 200 and response.json() == {
        "size": AUDIENCE,
        "label": f"{AUDIENCE} clients",
    }
    narrowed = await admin.get(
        "/admin/campaigns/audience", params={"last_pushes": "2", "carrier": "vodafone"}
    )
    assert narrowed.json()["size"] == 1
    without_new = await admin.get("/admin/campaigns/audience", params={"last_pushes": "1"})
    assert without_new.json()["size"] == 3
    bad = await admin.get("/admin/campaigns/audience", params={"last_pushes": "0", "country": "España"})
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"last_pushes", "country"}
    # without JavaScript: the "Count audience" button shows the form again with the size
    status, page, _ = await post(admin, "/admin/campaigns", form(action="count"))
    assert status == 200 and f"{AUDIENCE} clients" in page
    assert await campaigns(admin) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"text": "   "}, "Write the message"),
        ({"text": "\u200b\ufeff"}, "Write the message"),  # a zero-width space, a BOM: shows nothing
        ({"text": "x" * 2001}, "Write the message"),
        ({"name": ""}, "Give the campaign a name"),
        ({"last_pushes": "0"}, "from 1 to 100"),
        ({"last_pushes": "1000000000"}, "from 1 to 100"),
        ({"last_pushes": "dos"}, "from 1 to 100"),
        ({"active_days": "-3"}, "from 1 to 3650"),
        ({"tps": "0"}, "SMS per second from 1 to 1000"),
        ({"service": "nope"}, "Choose a service"),
        ({"when": "at", "scheduled_at": "mañana"}, "Give the date and time"),
        ({"when": "at", "scheduled_at": "2026-02-30T10:00"}, "Give the date and time"),
        ({"when": "at", "scheduled_at": "2020-01-01T10:00"}, "not in the past"),
        # marta is west of UTC: this one is past year 9999 in UTC
        ({"when": "at", "scheduled_at": "9999-12-31T23:59"}, "at most a year ahead"),
        ({"when": "at", "scheduled_at": "0001-01-01T00:00"}, "not in the past"),
        ({"when": "at", "scheduled_at": "2100-01-01T10:00"}, "at most a year ahead"),
        # only the form's Schedule button sends: no button, or another, schedules nothing
        ({"action": ""}, "Nothing was scheduled: press Schedule campaign"),
        ({"action": "explode"}, "Nothing was scheduled: press Schedule campaign"),
    ],
)
async def test_bad_input_is_a_400_with_its_message(
    admin: PanelClient, values: dict[str, str], message: str
) -> None:
    status, page, _ = await post(admin, "/admin/campaigns", form(**values))
    assert status == 400
    assert message in page
    assert await campaigns(admin) == []


async def test_a_text_with_line_breaks_is_taken_as_the_box_counted_it(admin: PanelClient) -> None:
    """The box's maxlength (2,000) and its live counter count a line break as one character (LF); the
    form sends it as two (CRLF). Such a text is taken, and stored as it was counted."""
    typed = "\n".join(["Vuelve al chat"] * 133)  # 1,994 characters in the box
    status, page, _ = await post(admin, "/admin/campaigns", form(text=typed.replace("\n", "\r\n")))
    assert status == 303, page
    (campaign,) = await campaigns(admin)
    assert campaign.text == typed


async def test_the_counter_and_the_preview_for_a_sample_client(admin: PanelClient) -> None:
    token = await page_csrf(admin, "/admin/campaigns/new")
    response = await admin.post(
        "/admin/campaigns/draft",
        data={"text": "Hola {telefono} desde {host}", "last_pushes": "2", "carrier": "vodafone"},
        headers={"X-CSRF-Token": token},
    )
    info = response.json()
    assert response.status_code == 200 and info["segments"] == 1 and info["fits"]
    # rendered for the audience's first client: the vodafone one (9th made), who last wrote to 795500
    assert info["preview"] == "Hola 34600000009 desde 795500"
    assert "SMS" in info["label"]


async def test_the_preview_client_is_picked_once_per_filter_set(admin: PanelClient, store: Store) -> None:
    token = await page_csrf(admin, "/admin/campaigns/new")

    async def preview_of(text: str, last_pushes: str) -> str:
        form = {"text": text, "last_pushes": last_pushes, "carrier": "vodafone"}
        response = await admin.post("/admin/campaigns/draft", data=form, headers={"X-CSRF-Token": token})
        assert response.status_code == 200
        return str(response.json()["preview"])

    assert await preview_of("Hola {telefono}", "2") == "Hola 34600000009"
    async with store.transaction() as session:  # no longer in the audience ...
        await session.execute(
            update(Subscriber).where(Subscriber.msisdn == "34600000009").values(opted_out=True)
        )
    # ... but each keystroke of the text does not look for a sample client again
    assert await preview_of("Hola {telefono}!", "2") == "Hola 34600000009!"
    # other filters: a client of their audience
    assert await preview_of("Hola {telefono}!", "3") != "Hola 34600000009!"


async def test_a_campaign_is_created_audited_followed_and_cancelled(admin: PanelClient, store: Store) -> None:
    status, _, location = await post(admin, "/admin/campaigns", form(tps="4"))
    assert status == 303
    (campaign,) = await campaigns(admin)
    assert location == f"/admin/campaigns/{campaign.id}?notice=started"  # sent now, not at a time chosen
    assert (campaign.status, campaign.last_pushes, campaign.tps, campaign.created_by) == (
        CampaignStatus.SCHEDULED,
        2,
        4,
        "marta",
    )
    (record,) = await audit_records(admin, "campaign.create")
    assert (
        record.subject == f"campaign:{campaign.id}"
        and record.details["after"]["audience"]["last_pushes"] == 2
    )
    page = await admin.get(location, headers=HTML)
    assert (
        page.status_code == 200 and "Vuelta al chat" in page.text and "The campaign is under way" in page.text
    )
    # the daemon's sender starts it: 4 MTs a second, half a second's worth at once
    settings = CampaignSettings(carrier_tps={"movistar": 100.0, "vodafone": 100.0})
    sender = CampaignSender(store, Outbox(outbox_settings()), settings)
    await sender.step(utcnow() + timedelta(seconds=1))
    progress = (await admin.get(f"/admin/campaigns/{campaign.id}/progress")).json()
    assert (progress["status"], progress["total"], progress["queued"], progress["pending"]) == (
        "running",
        AUDIENCE,
        2,
        4,
    )
    assert progress["actions"] == ["pause", "cancel"]
    # pause, and a second pause is refused (409): nothing is audited for it
    assert (await post(admin, f"/admin/campaigns/{campaign.id}/status", {"action": "pause"}))[0] == 303
    status, page, _ = await post(admin, f"/admin/campaigns/{campaign.id}/status", {"action": "pause"})
    assert status == 409 and "cannot do that now" in page
    assert len(await audit_records(admin, "campaign.pause")) == 1
    await sender.step(utcnow() + timedelta(seconds=30))
    assert (await admin.get(f"/admin/campaigns/{campaign.id}/progress")).json()["queued"] == 2
    assert (await post(admin, f"/admin/campaigns/{campaign.id}/status", {"action": "resume"}))[0] == 303
    await sender.step(utcnow() + timedelta(seconds=60))
    assert (await admin.get(f"/admin/campaigns/{campaign.id}/progress")).json()["queued"] == 4
    # cancel: the pending recipients and the queued MTs are withdrawn, in the audited transaction
    assert (await post(admin, f"/admin/campaigns/{campaign.id}/status", {"action": "cancel"}))[0] == 303
    (cancelled,) = await audit_records(admin, "campaign.cancel")
    assert cancelled.details == {"before": "running", "after": "cancelled", "withdrawn_mts": 4}
    async with admin.runtime.sessionmaker() as session:
        statuses = (
            await session.scalars(select(MTMessage.status).where(MTMessage.kind == MTKind.MASS))
        ).all()
    assert statuses == [MTStatus.CANCELLED] * 4
    await sender.step(utcnow() + timedelta(seconds=90))
    progress = (await admin.get(f"/admin/campaigns/{campaign.id}/progress")).json()
    assert (progress["status"], progress["cancelled"], progress["pending"], progress["queued"]) == (
        "cancelled",
        6,
        0,
        0,
    )
    listing = await admin.get("/admin/campaigns", headers=HTML)
    assert "Vuelta al chat" in listing.text and "Cancelled" in listing.text
    for missing in ("424242", "9223372036854775808", "99999999999999999999999"):  # none, beyond 64 bits
        assert (await post(admin, f"/admin/campaigns/{missing}/status", {"action": "resume"}))[0] == 404
        assert (await admin.get(f"/admin/campaigns/{missing}", headers=HTML)).status_code == 404
        assert (await admin.get(f"/admin/campaigns/{missing}/progress")).status_code == 404
    assert (await post(admin, f"/admin/campaigns/{campaign.id}/status", {"action": "explode"}))[0] == 400


async def test_a_campaign_for_a_time_chosen_says_it_is_scheduled(admin: PanelClient) -> None:
    tomorrow = (datetime.now(ZoneInfo("Europe/Madrid")) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    status, _, location = await post(admin, "/admin/campaigns", form(when="at", scheduled_at=tomorrow))
    assert status == 303
    (campaign,) = await campaigns(admin)
    assert location == f"/admin/campaigns/{campaign.id}?notice=created"
    page = await admin.get(location, headers=HTML)
    assert "The campaign is scheduled: the gateway sends it from the time you chose." in page.text
