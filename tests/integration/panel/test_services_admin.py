"""The services plugin through the panel: the call-centre diversion page (one row per configured
service, the switch stored, audited in its transaction, announced on the bus and applied by this
panel's assignment at once, for a conversation already waiting too) and the session reset (a pasted
or uploaded list, a per-line report with numbers masked for who may not see them, the client's open
conversation closed, one audit record per reset client), with their refusals of bad input."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette

from gatewayd.config import ServiceConfig
from gatewayd.mo_message import dedup_key
from gatewayd.outbox import OutboxSettings
from gatewayd.store.accounts import Account, Presence
from gatewayd.store.audit import AuditRecord
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.repo_assignment import set_presence, touch_desk
from gatewayd.store.repo_mo import NewMO
from gatewayd.store.services import ServiceSetting
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from panel.app import create_app
from panel.auth.admin import user_add
from panel.auth.sessions import create_session
from panel.settings import PanelSettings
from plugins import auth, desk, home, services
from plugins.desk.service import assignment_service
from plugins.services.permissions import CLIENTS_SESSION_RESET

from .conftest import (
    FAST_ARGON2,
    HTML,
    PASSWORD,
    PanelClient,
    login,
    memory_bus,
    page_csrf,
    prepare_store,
    seed_conversation,
    serving,
)

SERVICES = (
    ServiceConfig(name="chat-movistar", short_code="997745", timezone="Europe/Madrid"),
    ServiceConfig(name="chat-vodafone", short_code="795500", callcentre=True, timezone="Europe/Madrid"),
)


@pytest.fixture
def services_settings(sqlite_url: str) -> PanelSettings:
    return PanelSettings(
        database_url=sqlite_url,
        secure_cookies=False,
        argon2=FAST_ARGON2,
        outbox=OutboxSettings(services=SERVICES),
        callcentre_pool="cc-team",
    )


@pytest.fixture
async def services_client(
    services_settings: PanelSettings, example_on_path: None
) -> AsyncIterator[PanelClient]:
    await prepare_store(services_settings.database_url)
    app: Starlette = create_app(
        services_settings,
        bus_factory=memory_bus,
        plugins=[auth.plugin, desk.plugin, home.plugin, services.plugin],
    )
    async with serving(app) as client:
        yield client


async def waiting_mo(client: PanelClient, msisdn: str, service: str, short_code: str = "997745") -> int:
    """An MO of ``service`` stored as the daemon stores it; its conversation waits, nobody holds it."""
    now = utcnow()
    mo = NewMO(
        dedup_key=dedup_key("movistar", msisdn, short_code, 0, uuid.uuid4().bytes),
        msisdn=msisdn,
        carrier="movistar",
        short_code=short_code,
        text="hola",
        received_at=now,
        country="ES",
        service=service,
        operator_pool="default",
    )
    store = Store.for_engine(client.runtime.engine)
    async with store.transaction() as session:
        (stored,) = await store.mos.ingest(session, [mo], now)
    assert stored.conversation_id is not None
    return stored.conversation_id


async def call_centre_operator_at_desk(client: PanelClient, url: str) -> int:
    await user_add(url, "carla", "operator", PASSWORD, argon2=FAST_ARGON2, pools=["cc-team"])
    account = await client.account("carla")
    async with client.runtime.sessionmaker() as session, session.begin():
        await create_session(session, account, PanelSettings(database_url=url), ip=None, user_agent=None)
        await set_presence(session, account.id, Presence.ONLINE)
        await touch_desk(session, account.id, utcnow())
    return account.id


async def audit_records(client: PanelClient, action: str) -> list[AuditRecord]:
    async with client.runtime.sessionmaker() as session:
        statement = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
        return list((await session.execute(statement)).scalars())


async def holder(client: PanelClient, conversation_id: int) -> int | None:
    async with client.runtime.sessionmaker() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        return conversation.assigned_operator_id


# --- diversion -----------------------------------------------------------------------------------


async def test_the_admin_diverts_a_service_and_its_waiting_conversation_goes_to_the_call_centre(
    services_client: PanelClient, services_settings: PanelSettings
) -> None:
    client = services_client
    waiting = await waiting_mo(client, "34611000001", "chat-movistar")
    carla = await call_centre_operator_at_desk(client, services_settings.database_url)
    assert await assignment_service(client.runtime).assign() == []  # not diverted: carla is not its pool
    await login(client, "ana")
    page = await client.get("/admin/diversion", headers=HTML)
    assert page.status_code == 200
    assert page.text.count('<tr data-service="') == 2
    movistar_row = page.text.split('data-service="chat-movistar"')[1].split("</tr>")[0]
    assert "No" in movistar_row and 'class="waiting">1<' in movistar_row
    vodafone_row = page.text.split('data-service="chat-vodafone"')[1].split("</tr>")[0]
    assert "Sí" in vodafone_row and "configuración" in vodafone_row  # the configuration's value
    assert "cc-team" in page.text

    bus = client.runtime.bus
    assert bus is not None
    async with bus.subscribe(bus.topics.all_service_diversions()) as heard:
        token = await page_csrf(client, "/admin/diversion")
        switched = await client.post(
            "/admin/diversion", data={"csrf_token": token, "service": "chat-movistar", "diverted": "on"}
        )
        assert switched.status_code == 303
        event = await asyncio.wait_for(heard.get(), 5)
    assert event.topic == "echat/service/chat-movistar/diversion"
    assert event.payload["diverted"] is True and event.payload["version"] == 1
    # this panel's assignment applied it at once: the waiting conversation is carla's
    assert await holder(client, waiting) == carla
    assert "chat-movistar" in assignment_service(client.runtime).diversion.services

    async with client.runtime.sessionmaker() as session:
        row = await session.get(ServiceSetting, "chat-movistar")
    assert row is not None and row.callcentre_diverted and row.changed_by == "ana"
    (record,) = await audit_records(client, "service.diversion")
    assert record.actor == "ana" and record.subject == "service:chat-movistar"
    assert record.details == {"before": {"diverted": False}, "after": {"diverted": True}}

    page = await client.get(switched.headers["location"], headers=HTML)
    assert "chat-movistar se desvía ahora al call center" in page.text
    movistar_row = page.text.split('data-service="chat-movistar"')[1].split("</tr>")[0]
    assert "Sí" in movistar_row and "ana" in movistar_row and "Devolver a sus operadores" in movistar_row

    # switched back: stored and audited again; the conversation carla holds stays hers
    token = await page_csrf(client, "/admin/diversion")
    back = await client.post(
        "/admin/diversion", data={"csrf_token": token, "service": "chat-movistar", "diverted": "off"}
    )
    assert back.status_code == 303
    assert "chat-movistar" not in assignment_service(client.runtime).diversion.services
    assert await holder(client, waiting) == carla
    records = await audit_records(client, "service.diversion")
    assert [r.details["after"] for r in records] == [{"diverted": True}, {"diverted": False}]


async def test_the_diversion_switch_refuses_bad_input_and_other_roles(services_client: PanelClient) -> None:
    client = services_client
    await login(client, "ana")
    token = await page_csrf(client, "/admin/diversion")
    unknown = await client.post(
        "/admin/diversion", data={"csrf_token": token, "service": "nope", "diverted": "on"}, headers=HTML
    )
    assert unknown.status_code == 404 and "No existe ese servicio" in unknown.text
    vague = await client.post(
        "/admin/diversion",
        data={"csrf_token": token, "service": "chat-movistar", "diverted": "maybe"},
        headers=HTML,
    )
    assert vague.status_code == 400 and "Elige si el servicio se desvía" in vague.text
    assert await audit_records(client, "service.diversion") == []
    # a master holds no diversion power by default
    master = client.another_browser()
    async with master:
        await login(master, "marta")
        assert (await master.get("/admin/diversion", headers=HTML)).status_code == 403


# --- session reset -------------------------------------------------------------------------------


async def subscriber(client: PanelClient, msisdn: str) -> Subscriber:
    async with client.runtime.sessionmaker() as session:
        found = (await session.execute(select(Subscriber).where(Subscriber.msisdn == msisdn))).scalar_one()
        return found


def report_rows(html: str) -> list[str]:
    body = html.split('<table class="report')[1].split("</table>")[0]
    return [row.split("</tr>")[0] for row in body.split('<tr class="outcome-')[1:]]


async def test_a_pasted_list_is_reported_line_by_line_and_resets_the_clients_found(
    services_client: PanelClient, services_settings: PanelSettings
) -> None:
    client = services_client
    url = services_settings.database_url
    held = await seed_conversation(url, "oscar", "34611000001")  # open, held by oscar
    other = await seed_conversation(url, "oscar", "34622000002")
    pasted = "\n".join(
        [
            "611 000 001",  # national Spanish number: the first client
            "",  # blank: skipped
            other.client_id.lower(),  # a client ID, any case
            "+34 699 999 999",  # valid, nobody has it
            "hola",  # not a number
            "12",  # too short
            "0034611000001",  # the first client again, international form
        ]
    )
    await login(client, "ana")
    token = await page_csrf(client, "/admin/sessions")
    before = utcnow()
    response = await client.post(
        "/admin/sessions", data={"csrf_token": token, "numbers": pasted, "country": "ES"}, headers=HTML
    )
    assert response.status_code == 200
    rows = report_rows(response.text)
    assert [row.split('"')[0] for row in rows] == ["reset", "reset", "unknown", "invalid", "invalid", "reset"]
    assert ">1<" in rows[0] and "611 000 001" in rows[0] and held.client_id in rows[0]
    assert "se cerró la conversación abierta" in rows[0]
    assert other.client_id in rows[1]
    assert "No hay ningún cliente" in rows[2]
    assert "No es un número de teléfono" in rows[3] and "No es un número" in rows[4]
    assert ">7<" in rows[5] and "se reinicia una sola vez" in rows[5]
    # an admin may see numbers: nothing is masked
    assert "+34 699 999 999" in rows[2]

    for client_msisdn, sample in (("34611000001", held), ("34622000002", other)):
        found = await subscriber(client, client_msisdn)
        assert found.session_reset_at is not None and found.session_reset_at >= before
        async with client.runtime.sessionmaker() as session:
            conversation = await session.get(Conversation, sample.conversation_id)
        assert conversation is not None and conversation.status is ConversationStatus.CLOSED
    records = await audit_records(client, "client.session_reset")
    assert sorted(r.subject or "" for r in records) == sorted(
        [f"client:{held.client_id}", f"client:{other.client_id}"]
    )
    assert all("34611000001" not in str(r.details) and r.actor == "ana" for r in records)
    assert records[0].details["after"]["closed_conversations"] == [held.conversation_id]


async def test_numbers_are_masked_for_a_user_who_may_not_see_them(
    services_client: PanelClient, services_settings: PanelSettings
) -> None:
    client = services_client
    held = await seed_conversation(services_settings.database_url, "oscar", "34611000001")
    async with client.runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(Account)
            .where(Account.username == "nadie")
            .values(permissions=["panel.access", CLIENTS_SESSION_RESET])
        )
    await login(client, "nadie")
    token = await page_csrf(client, "/admin/sessions")
    response = await client.post(
        "/admin/sessions",
        data={"csrf_token": token, "numbers": "611000001\n699999999\n61100000x"},
        headers=HTML,
    )
    assert response.status_code == 200
    rows = report_rows(response.text)
    assert [row.split('"')[0] for row in rows] == ["reset", "unknown", "invalid"]
    assert "611000001" not in response.text and "699999999" not in response.text
    # nor whose number it is: the client ID would lead back to the number's owner
    assert "\u2022" * 9 in rows[0] and held.client_id not in response.text
    # a line that names the client ID shows it: the user typed it
    by_id = await client.post(
        "/admin/sessions", data={"csrf_token": token, "numbers": held.client_id}, headers=HTML
    )
    assert by_id.status_code == 200 and held.client_id in report_rows(by_id.text)[0]


async def test_an_uploaded_csv_file_is_read_and_bad_uploads_are_refused(
    services_client: PanelClient, services_settings: PanelSettings
) -> None:
    client = services_client
    held = await seed_conversation(services_settings.database_url, "oscar", "34611000001")
    await login(client, "ana")
    token = await page_csrf(client, "/admin/sessions")
    csv = f"telefono;nombre\n34611000001;Pepe\n{held.client_id};Pepe otra vez\n".encode()
    response = await client.post(
        "/admin/sessions",
        data={"csrf_token": token, "country": "ES"},
        files={"file": ("clientes.csv", csv, "text/csv")},
        headers=HTML,
    )
    assert response.status_code == 200
    rows = report_rows(response.text)
    assert [row.split('"')[0] for row in rows] == ["reset", "reset"]  # the header row is skipped
    assert ">2<" in rows[0] and "se reinicia una sola vez" in rows[1]
    assert len(await audit_records(client, "client.session_reset")) == 1

    binary = await client.post(
        "/admin/sessions",
        data={"csrf_token": token},
        files={"file": ("foto.png", b"\x89PNG\x00\x00", "image/png")},
        headers=HTML,
    )
    assert binary.status_code == 400 and "texto o CSV" in binary.text
    too_many = "\n".join(f"6110{number:05d}" for number in range(10_001))
    long = await client.post("/admin/sessions", data={"csrf_token": token, "numbers": too_many}, headers=HTML)
    assert long.status_code == 400 and "10.000 líneas" in long.text
    empty = await client.post("/admin/sessions", data={"csrf_token": token, "numbers": " \n "}, headers=HTML)
    assert empty.status_code == 400 and "Pega al menos" in empty.text
    country = await client.post(
        "/admin/sessions", data={"csrf_token": token, "numbers": "611000001", "country": "ZZ"}, headers=HTML
    )
    assert country.status_code == 400
    # a file goes only to the page that takes one: elsewhere a form with a file is still refused
    elsewhere = await client.post(
        "/admin/diversion", data={"csrf_token": token}, files={"file": ("a.txt", b"x")}, headers=HTML
    )
    assert elsewhere.status_code == 400
    assert len(await audit_records(client, "client.session_reset")) == 1
