"""The webhooks pages (issue 14): subscriptions made, changed, disabled and deleted by an admin with
clear 400s for bad input (URLs vetted as the worker does), the secret shown once and rotated, deliveries
listed by state and dead ones redelivered (one and all), each change audited; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from gatewayd.store.accounts import Account
from gatewayd.store.audit import AuditRecord
from gatewayd.store.webhooks import DeliveryState, WebhookDelivery, WebhookSubscription
from panel.app import create_app
from panel.settings import PanelSettings

from ..conftest import (
    BUILT_IN_PLUGINS,
    FAST_ARGON2,
    HTML,
    PanelClient,
    login,
    memory_bus,
    prepare_store,
    serving,
)

RECEIVER = "http://127.0.0.1:9999/hooks"


@pytest.fixture(params=["sqlite_url", "pg_url"], ids=["sqlite", "pg"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


@pytest.fixture
async def admin(database_url: str, example_on_path: None) -> AsyncIterator[PanelClient]:
    settings = PanelSettings(
        database_url=database_url,
        secure_cookies=False,
        argon2=FAST_ARGON2,
        webhooks_allow=("127.0.0.1:9999",),
    )
    await prepare_store(database_url)
    app: Starlette = create_app(settings, bus_factory=memory_bus, plugins=list(BUILT_IN_PLUGINS))
    async with serving(app) as client:
        assert (await login(client, "ana")).status_code == 303  # an admin, reading Spanish
        yield client


async def csrf(client: PanelClient, path: str = "/admin/webhooks") -> str:
    response = await client.get(path, headers=HTML)
    assert response.status_code == 200
    return response.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


async def post(client: PanelClient, path: str, form: dict[str, object] | None = None) -> tuple[int, str]:
    data = {"csrf_token": await csrf(client), **(form or {})}
    response = await client.post(path, data=data, headers=HTML)
    return response.status_code, response.text


async def subscriptions(client: PanelClient) -> list[WebhookSubscription]:
    async with client.runtime.sessionmaker() as session:
        return list(
            (await session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id))).all()
        )


async def audit_records(client: PanelClient, prefix: str = "webhook.") -> list[AuditRecord]:
    async with client.runtime.sessionmaker() as session:
        statement = select(AuditRecord).where(AuditRecord.action.startswith(prefix)).order_by(AuditRecord.seq)
        return list((await session.scalars(statement)).all())


VALID = {"name": "crm", "url": RECEIVER, "events": ["mo.received", "client.opt_out"], "active": "on"}


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({**VALID, "name": "  "}, "Indica un nombre de 1 a 64 caracteres."),
        ({**VALID, "name": "x" * 65}, "Indica un nombre de 1 a 64 caracteres."),
        ({**VALID, "events": []}, "Elige al menos un evento."),
        ({**VALID, "events": ["mo.received", "rm -rf"]}, "Elige eventos de la lista."),
        ({**VALID, "url": "ftp://crm.example.com/"}, "Indica una dirección http:// o https://"),
        ({**VALID, "url": "http://user:pw@crm.example.com/"}, "Indica una dirección http:// o https://"),
        ({**VALID, "url": "http://127.0.0.1:8080/"}, "red local, privada o reservada"),
        ({**VALID, "url": "http://169.254.169.254/latest"}, "red local, privada o reservada"),
        ({**VALID, "url": "http://10.0.0.7/"}, "red local, privada o reservada"),
        ({**VALID, "url": "http://" + "a" * 3000 + ".com/"}, "Indica una dirección http:// o https://"),
    ],
)
async def test_bad_subscriptions_are_refused_with_a_clear_400(
    admin: PanelClient, form: dict[str, object], message: str
) -> None:
    status, text = await post(admin, "/admin/webhooks", form)
    assert status == 400
    assert message in text
    assert await subscriptions(admin) == [] and await audit_records(admin) == []


async def test_a_subscription_shows_its_secret_once_and_is_audited_without_it(admin: PanelClient) -> None:
    status, text = await post(admin, "/admin/webhooks", {**VALID, "include_msisdn": "on"})
    assert status == 200
    (subscription,) = await subscriptions(admin)
    assert len(subscription.secret) == 64 and subscription.secret in text
    assert "Cópielo ahora: solo se muestra esta vez." in text
    assert subscription.event_set == {"mo.received", "client.opt_out"}
    assert subscription.include_msisdn and subscription.active and subscription.created_by == "ana"
    for path in ("/admin/webhooks", f"/admin/webhooks/{subscription.id}"):
        page = (await admin.get(path, headers=HTML)).text
        assert subscription.secret not in page and RECEIVER in page
    status, text = await post(admin, "/admin/webhooks", VALID)
    assert status == 400 and "Ya existe una suscripción con ese nombre." in text
    (record,) = await audit_records(admin)
    assert record.action == "webhook.create" and record.subject == f"webhook:{subscription.id}"
    assert record.details["after"]["url"] == RECEIVER and subscription.secret not in str(record.details)


async def test_change_disable_rotate_and_delete(admin: PanelClient) -> None:
    await post(admin, "/admin/webhooks", VALID)
    (subscription,) = await subscriptions(admin)
    path = f"/admin/webhooks/{subscription.id}"
    changed = {"name": "crm-2", "url": RECEIVER + "/v2", "events": ["mt.receipt"], "active": "off"}
    assert (await post(admin, path, changed))[0] == 303
    status, text = await post(admin, path, {**changed, "url": "http://192.168.1.1/"})
    assert status == 400 and "red local, privada o reservada" in text
    (changed_row,) = await subscriptions(admin)
    assert (changed_row.name, changed_row.url, changed_row.events, changed_row.active) == (
        "crm-2",
        RECEIVER + "/v2",
        "mt.receipt",
        False,
    )
    status, text = await post(admin, path + "/rotate")
    (rotated,) = await subscriptions(admin)
    assert status == 200 and rotated.secret != subscription.secret and rotated.secret in text
    await add_deliveries(admin, rotated.id, [DeliveryState.DEAD])
    assert (await post(admin, path + "/delete"))[0] == 303
    assert await subscriptions(admin) == []
    async with admin.runtime.sessionmaker() as session:
        assert (await session.scalars(select(WebhookDelivery))).all() == []
    actions = [record.action for record in await audit_records(admin)]
    assert actions == ["webhook.create", "webhook.update", "webhook.rotate_secret", "webhook.delete"]
    assert (await admin.get(path, headers=HTML)).status_code == 404
    assert (await post(admin, path + "/rotate"))[0] == 404


async def add_deliveries(client: PanelClient, subscription_id: int, states: list[DeliveryState]) -> list[int]:
    now = datetime.now(UTC)
    async with client.runtime.sessionmaker() as session, session.begin():
        rows = [
            WebhookDelivery(
                subscription_id=subscription_id,
                event="mo.received",
                ordering_key=f"client{index}",
                payload="{}",
                state=state.value,
                attempts=12 if state is DeliveryState.DEAD else 0,
                next_attempt_at=now,
                last_status=500 if state is DeliveryState.DEAD else None,
                last_error="HTTP 500" if state is DeliveryState.DEAD else None,
                created_at=now,
            )
            for index, state in enumerate(states)
        ]
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


async def states(client: PanelClient) -> dict[int, tuple[str, int]]:
    async with client.runtime.sessionmaker() as session:
        rows = (await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))).all()
        return {row.id: (row.state, row.attempts) for row in rows}


async def test_dead_deliveries_are_listed_and_redelivered_one_and_all(admin: PanelClient) -> None:
    await post(admin, "/admin/webhooks", VALID)
    (subscription,) = await subscriptions(admin)
    path = f"/admin/webhooks/{subscription.id}"
    dead1, delivered, dead2, dead3 = await add_deliveries(
        admin,
        subscription.id,
        [DeliveryState.DEAD, DeliveryState.DELIVERED, DeliveryState.DEAD, DeliveryState.DEAD],
    )
    page = (await admin.get(path + "?state=dead", headers=HTML)).text
    assert f'data-delivery="{dead1}"' in page and f'data-delivery="{delivered}"' not in page
    assert "HTTP 500" in page and "Reenviar todos los descartados" in page
    assert (await post(admin, f"{path}/deliveries/{dead2}/redeliver"))[0] == 303
    assert (await states(admin))[dead2] == ("pending", 0)
    assert (await states(admin))[dead1] == ("dead", 12)
    status, page = await post(admin, f"{path}/deliveries/{delivered}/redeliver")
    assert status == 409 and "Solo se puede reenviar una entrega descartada." in page  # not dead: untouched
    assert (await states(admin))[delivered] == ("delivered", 0)
    assert (await post(admin, path + "/redeliver"))[0] == 303
    assert {state for state, _ in (await states(admin)).values()} == {"pending", "delivered"}
    assert (await post(admin, f"{path}/deliveries/999999/redeliver"))[0] == 404
    records = [record for record in await audit_records(admin) if record.action == "webhook.redeliver"]
    assert [record.details["queued"] for record in records] == [1, 2]
    assert dead3 in (await states(admin))


async def test_ids_beyond_a_subscription_are_a_404_on_every_route(admin: PanelClient) -> None:
    """18 digits pass the panel's id convertor: beyond 32 bits they once overflowed PostgreSQL (500)."""
    path = "/admin/webhooks/999999999999999999"
    assert (await admin.get(path, headers=HTML)).status_code == 404
    for action in ("", "/rotate", "/delete", "/redeliver", "/deliveries/999999999999999999/redeliver"):
        assert (await post(admin, path + action, VALID))[0] == 404, action


async def test_the_failing_tab_finds_a_failing_delivery_behind_many_newer_pending_ones(
    admin: PanelClient,
) -> None:
    await post(admin, "/admin/webhooks", VALID)
    (subscription,) = await subscriptions(admin)
    (failing,) = await add_deliveries(admin, subscription.id, [DeliveryState.PENDING])
    async with admin.runtime.sessionmaker() as session, session.begin():
        delivery = await session.get(WebhookDelivery, failing)
        assert delivery is not None
        delivery.attempts, delivery.last_error = 3, "HTTP 503"
    await add_deliveries(admin, subscription.id, [DeliveryState.PENDING] * 120)  # newer, never tried
    page = (await admin.get(f"/admin/webhooks/{subscription.id}?state=failing", headers=HTML)).text
    assert f'data-delivery="{failing}"' in page and page.count("data-delivery=") == 1


async def test_an_account_that_may_not_see_numbers_cannot_make_a_subscription_carry_them(
    admin: PanelClient,
) -> None:
    # ana (an admin) makes one that carries numbers; marta manages webhooks without operator.see_msisdn
    await post(admin, "/admin/webhooks", {**VALID, "include_msisdn": "on"})
    (carrying,) = await subscriptions(admin)
    async with admin.runtime.sessionmaker() as session, session.begin():
        marta = await session.scalar(select(Account).where(Account.username == "marta"))
        assert marta is not None
        marta.permissions = ["panel.access", "webhooks.manage"]
    admin.cookies.clear()  # signed out: marta signs in
    assert (await login(admin, "marta")).status_code == 303

    page = (await admin.get("/admin/webhooks", headers=HTML)).text
    assert 'name="include_msisdn" disabled' in page and "Only an account that may see" in page
    status, text = await post(admin, "/admin/webhooks", {**VALID, "name": "crm-2", "include_msisdn": "on"})
    assert status == 403 and "may not see clients' phone numbers" in text
    assert [item.name for item in await subscriptions(admin)] == ["crm"]

    status, _ = await post(admin, "/admin/webhooks", {**VALID, "name": "crm-2"})
    assert status == 200
    # a change by marta (the box disabled: not sent) leaves the numbers where ana put them
    path = f"/admin/webhooks/{carrying.id}"
    assert (await post(admin, path, {**VALID, "name": "crm-renamed"}))[0] == 303
    by_name = {item.name: item for item in await subscriptions(admin)}
    assert by_name["crm-renamed"].include_msisdn and not by_name["crm-2"].include_msisdn
