"""The desk's push in the client's quiet hours: queued, and the confirmation says until when it is held
on the client's clock (Spanish here; the audit record keeps it); a push to a client who just wrote is
not held."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from gatewayd.outbox import OutboxSettings
from gatewayd.store.audit import AuditRecord
from gatewayd.store.base import utcnow
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.subscribers import Subscriber
from panel.settings import PanelSettings
from routing.quiet_hours import QuietHours, QuietRule

from ..conftest import HTML, PanelClient, page_csrf
from .test_desk_pages import online_with_one_mo


@pytest.fixture
def ends() -> datetime:
    """The end of quiet hours that hold the test's run: from an hour before it to two hours after
    (UTC), so a push is held until then, shown as HH:00 on the client's (here UTC) clock."""
    return utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)


@pytest.fixture
def desk_panel_settings(desk_panel_settings: PanelSettings, ends: datetime) -> PanelSettings:
    hours = QuietHours(time((ends.hour - 3) % 24), time(ends.hour))
    rule = QuietRule(default=hours, default_zone=ZoneInfo("UTC"))
    return replace(desk_panel_settings, outbox=OutboxSettings(quiet=rule))


async def push(client: PanelClient, client_id: str) -> str:
    token = await page_csrf(client, "/desk/push")
    pushed = await client.post(
        "/desk/push", data={"csrf_token": token, "client_id": client_id, "text": "Oferta"}
    )
    assert pushed.status_code == 303
    return (await client.get(pushed.headers["location"], headers=HTML)).text


async def test_a_push_in_quiet_hours_says_until_when_it_is_held(
    desk_client: PanelClient, ends: datetime
) -> None:
    await online_with_one_mo(desk_client)
    async with desk_client.runtime.sessionmaker() as session:
        client_id = (await session.execute(select(Subscriber.client_id))).scalar_one()

    page = await push(desk_client, client_id)  # the client wrote a moment ago: not held
    assert "Push en cola de envío; su estado se actualiza solo." in page and "retenido" not in page

    async with desk_client.runtime.sessionmaker() as session, session.begin():
        await session.execute(update(MOMessage).values(received_at=utcnow() - timedelta(hours=2)))
    page = await push(desk_client, client_id)
    shown = f"{ends:%H:%M}"
    assert f"Push en cola de envío: retenido hasta las {shown} (hora del cliente)" in page
    async with desk_client.runtime.sessionmaker() as session:
        held = (await session.scalars(select(MTMessage).order_by(MTMessage.id.desc()))).first()
        records = (
            await session.scalars(
                select(AuditRecord).where(AuditRecord.action == "mt.sent").order_by(AuditRecord.seq)
            )
        ).all()
    assert held is not None
    leaves = held.next_attempt_at if held.next_attempt_at.tzinfo else held.next_attempt_at.replace(tzinfo=UTC)
    assert leaves == ends
    assert ["held_until" in record.details for record in records] == [False, True]
    assert datetime.fromisoformat(records[1].details["held_until"]) == ends


async def test_a_push_waiting_for_another_reason_is_not_said_to_be_held_for_quiet_hours(
    desk_client: PanelClient,
) -> None:
    """A push the client's MO spared, then given back to the queue for a while (a bind went down):
    queued with a later next attempt, but the confirmation must not blame the quiet hours."""
    await online_with_one_mo(desk_client)
    async with desk_client.runtime.sessionmaker() as session:
        client_id = (await session.execute(select(Subscriber.client_id))).scalar_one()
    token = await page_csrf(desk_client, "/desk/push")
    pushed = await desk_client.post(
        "/desk/push", data={"csrf_token": token, "client_id": client_id, "text": "Oferta"}
    )
    assert pushed.status_code == 303 and "held" not in pushed.headers["location"]
    async with desk_client.runtime.sessionmaker() as session, session.begin():
        await session.execute(update(MTMessage).values(next_attempt_at=utcnow() + timedelta(minutes=5)))
    page = (await desk_client.get(pushed.headers["location"], headers=HTML)).text
    assert "Push en cola de envío; su estado se actualiza solo." in page and "retenido" not in page
