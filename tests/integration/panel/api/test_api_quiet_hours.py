"""Quiet hours through the API, on SQLite and on PostgreSQL: a push to a client in their quiet hours is
queued, not refused, and the answer says when it leaves (``not_before``, in the schema), as does
GET /messages/{id} and the audit record; a push to a client who just wrote leaves at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.apikeys import Scope
from gatewayd.store.audit import AuditRecord
from gatewayd.store.base import utcnow
from panel.app import create_app
from panel.settings import PanelSettings
from plugins import auth
from routing.quiet_hours import QuietHours, QuietRule

from ..conftest import FAST_ARGON2, PanelClient, serving
from ..seeding import create_store_with_accounts
from .conftest import FREE, MakeKey, outbox_settings, seed_subscribers
from .test_api_send import bearer

pytestmark = pytest.mark.integration

NOBODY = "+34600000077"  # never wrote: Spanish by its number


def quiet_now(now: datetime) -> tuple[QuietRule, datetime]:
    """A rule whose quiet hours (UTC) hold ``now`` for two more hours at least, and their end."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    hours = QuietHours(time((hour.hour - 1) % 24), time((hour.hour + 2) % 24))
    return QuietRule(default=hours, default_zone=ZoneInfo("UTC")), hour + timedelta(hours=2)


@pytest.fixture
async def night(api_database_url: str) -> AsyncIterator[tuple[PanelClient, datetime]]:
    await create_store_with_accounts(
        api_database_url, [auth.plugin], {}, password="x" * 20, argon2=FAST_ARGON2
    )
    rule, ends = quiet_now(utcnow())
    settings = PanelSettings(
        database_url=api_database_url,
        secure_cookies=False,
        argon2=FAST_ARGON2,
        outbox=replace(outbox_settings(), quiet=rule),
    )
    app = create_app(settings, bus=MemoryBus(), plugins=[auth.plugin])
    async with serving(app, client_host="10.1.2.3") as client:
        yield client, ends


@pytest.fixture
def api(night: tuple[PanelClient, datetime]) -> PanelClient:
    """``make_key`` (conftest) makes its keys through this client."""
    return night[0]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


async def test_a_push_in_quiet_hours_is_held_and_says_when_it_leaves(
    night: tuple[PanelClient, datetime], make_key: MakeKey
) -> None:
    client, ends = night
    await seed_subscribers(client.runtime.settings.database_url)  # FREE wrote just now
    token = await make_key(Scope.SEND, Scope.READ)
    held = await client.post("/api/v1/messages", json={"to": NOBODY, "text": "oferta"}, headers=bearer(token))
    assert held.status_code == 201, held.text
    assert at(held.json()["not_before"]) == ends
    read = await client.get(f"/api/v1/messages/{held.json()['id']}", headers=bearer(token))
    assert read.json()["status"] == "queued" and at(read.json()["not_before"]) == ends

    batch = await client.post(
        "/api/v1/messages/batch",
        json={"items": [{"to": NOBODY, "text": "otra"}, {"to": FREE, "text": "¿sigues?"}]},
        headers=bearer(token),
    )
    assert batch.status_code == 201, batch.text
    later, answered = batch.json()["items"]
    assert at(later["not_before"]) == ends and answered["not_before"] is None  # FREE just wrote
    async with client.runtime.readers() as session:
        records = (
            await session.scalars(
                select(AuditRecord).where(AuditRecord.action == "api.send").order_by(AuditRecord.seq)
            )
        ).all()
    assert [set(record.details.get("held_until", {})) for record in records] == [
        {str(held.json()["id"])},
        {str(later["id"])},
    ]
    assert at(records[0].details["held_until"][str(held.json()["id"])]) == ends
