"""A client's journey on a billed service at the simulator (issue 14's acceptance), on SQLite and
PostgreSQL: first MO -> price notice at the phone -> the operator's reply refused while awaiting
acceptance -> "Sí" -> chat -> reminder at the threshold -> paused until "SI" -> cap reached -> cap
notice and no further billed MT. Each step asserted: MT texts at the simulator, MT statuses and
charges, refusal reasons, the account and the audit trail."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, select

from gatewayd.daemon import Daemon
from gatewayd.outbox import MTRequest
from gatewayd.store.audit import AuditRecord
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.errors import MTRefused, RefusalReason
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.premium import PremiumAccount
from routing.premium import PremiumState
from simulator.core import Simulator
from smpp.concat import user_data
from smpp.text import decode_text
from tests.integration.gatewayd.helpers import (
    VODAFONE,
    VODAFONE_SHORT_CODE,
    make_config,
    running_daemon,
    simulator_config,
)
from tests.waiting import eventually

SUBSCRIBER = "34600555111"

#: chat-vodafone (the last [[services]] of the test configuration) bills each operator MT 1.00 EUR,
#: asks for acceptance, reminds at 2.00, pauses at 3.00 and stops at 5.00.
BILLING = """
[services.billing]
price_mt = 1.00
currency = "EUR"
provider = "Chat Acme SL"
billed = "mt"
notice = "{host}: chat a {precio} {moneda}/mensaje, de {proveedor}. Responde SI para aceptar."
acceptance = true
notice_again_after_days = 30
steps = [
  {at = 2, action = "notify", text = "Llevas {gasto} {moneda} este mes en {host}."},
  {at = 3, action = "confirm"},
  {at = 5, action = "cap"},
]
"""


def phone_texts(simulator: Simulator) -> list[str]:
    """What the subscriber's phone received from the billed short code, in order."""
    texts = []
    for record in simulator.store.query(carrier=VODAFONE, destination=SUBSCRIBER):
        _, body = user_data(record.pdu)
        texts.append(decode_text(body, record.pdu.data_coding))
    return texts


async def account(daemon: Daemon) -> PremiumAccount:
    assert daemon.sessions is not None
    async with daemon.sessions() as session:
        return (await session.execute(select(PremiumAccount))).scalar_one()


async def latest_mo_id(daemon: Daemon) -> tuple[int, int]:
    assert daemon.sessions is not None
    async with daemon.sessions() as session:
        mo = (await session.execute(select(MOMessage).order_by(MOMessage.id.desc()).limit(1))).scalar_one()
    assert mo.conversation_id is not None
    return mo.subscriber_id, mo.conversation_id


async def reply(daemon: Daemon, text: str) -> int:
    """The operator's answer as the desk queues it (kind ``reply`` in the conversation)."""
    assert daemon.outbox is not None
    subscriber_id, conversation_id = await latest_mo_id(daemon)
    request = MTRequest(
        to=SUBSCRIBER,
        text=text,
        kind=MTKind.REPLY,
        subscriber_id=subscriber_id,
        conversation_id=conversation_id,
        operator_id=None,
    )
    return (await daemon.outbox.queue(request)).mt_id


async def statuses(daemon: Daemon) -> dict[int, tuple[MTKind, MTStatus, int | None]]:
    assert daemon.sessions is not None
    async with daemon.sessions() as session:
        rows = (await session.execute(select(MTMessage).order_by(MTMessage.id))).scalars().all()
    return {mt.id: (mt.kind, mt.status, mt.charge) for mt in rows}


async def audit_actions(daemon: Daemon) -> list[str]:
    assert daemon.sessions is not None
    async with daemon.sessions() as session:
        rows = (await session.execute(select(AuditRecord).order_by(AuditRecord.seq))).scalars().all()
    return [row.action for row in rows if row.action.startswith("premium.")]


async def test_a_clients_journey_on_a_billed_service(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, database_url, simulator, extra=BILLING)
    async with running_daemon(config) as daemon:
        # 1. first MO: the price notice reaches the phone before anything else
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "Hola, ¿hay alguien?")
        await eventually(lambda: len(phone_texts(simulator)) == 1)
        assert phone_texts(simulator) == [
            "795500: chat a 1.00 EUR/mensaje, de Chat Acme SL. Responde SI para aceptar."
        ]
        assert (await account(daemon)).state is PremiumState.AWAITING
        assert await audit_actions(daemon) == ["premium.notice"]

        # 2. the operator's reply is refused while the client has not accepted
        with pytest.raises(MTRefused) as refused:
            await reply(daemon, "Hola, soy Laura")
        assert refused.value.reason is RefusalReason.AWAITING_ACCEPTANCE

        # 3. the client accepts ("Sí": accents and case do not matter); the chat opens
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "Sí")

        async def accepted() -> bool:
            return (await account(daemon)).state is PremiumState.NORMAL

        await eventually(accepted)
        first = await reply(daemon, "Hola, soy Laura")
        await eventually(lambda: "Hola, soy Laura" in phone_texts(simulator))
        assert (await account(daemon)).spent == 100

        # 4. the second billed MT reaches 2.00: the reminder follows it
        await reply(daemon, "¿Qué tal tu día?")
        await eventually(lambda: "Llevas 2.00 EUR este mes en 795500." in phone_texts(simulator))

        # 5. the third reaches 3.00: the confirm step's notice, and the chat pauses
        await reply(daemon, "Cuéntame más")
        await eventually(lambda: any("3.00 EUR" in text for text in phone_texts(simulator)))
        confirm = next(text for text in phone_texts(simulator) if "3.00 EUR" in text)
        assert "SI" in confirm  # the default text in Spanish asks for the acceptance keyword
        paused = await account(daemon)
        assert paused.state is PremiumState.PAUSED and paused.spent == 300
        with pytest.raises(MTRefused) as refused:
            await reply(daemon, "¿Sigues ahí?")
        assert refused.value.reason is RefusalReason.AWAITING_CONFIRMATION

        # 6. "SI" lifts the pause
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "si")
        await eventually(accepted)
        await reply(daemon, "Sigo aquí")
        await reply(daemon, "Un beso")  # 5.00: the cap is reached, its notice follows
        await eventually(lambda: any("5.00 EUR" in text for text in phone_texts(simulator)))
        capped = await account(daemon)
        assert capped.state is PremiumState.CAPPED and capped.spent == 500
        assert capped.held_until is not None

        # 7. no further billed MT
        with pytest.raises(MTRefused) as refused:
            await reply(daemon, "¿Hola?")
        assert refused.value.reason is RefusalReason.SPEND_CAP

        async def all_final() -> bool:
            return all(status.is_final for _, status, _ in (await statuses(daemon)).values())

        await eventually(all_final)
        mts = await statuses(daemon)
        replies = [(status, charge) for kind, status, charge in mts.values() if kind is MTKind.REPLY]
        notices = [(status, charge) for kind, status, charge in mts.values() if kind is MTKind.SYSTEM]
        assert replies == [(MTStatus.DELIVERED, 100)] * 5  # the refused ones were never queued
        assert notices == [(MTStatus.DELIVERED, None)] * 4  # price notice, reminder, confirm, cap: free
        assert min(mts) < first
        texts = phone_texts(simulator)
        assert len(texts) == 9 and texts[-1] == next(text for text in texts if "5.00 EUR" in text)
        assert await audit_actions(daemon) == [
            "premium.notice",
            "premium.accept",
            "premium.notify",
            "premium.confirm",
            "premium.accept",
            "premium.cap",
        ]


MO_BILLED = """
[services.billing]
price_mo = 1.00
currency = "EUR"
provider = "Chat Acme SL"
billed = "mo"
notice = "{host}: cada mensaje que envias cuesta {precio} {moneda}. {proveedor}."
steps = [{at = 2, action = "confirm", text = "Llevas {gasto} {moneda}. Responde SI para seguir."}]
"""


async def test_an_mo_billed_service_counts_each_chat_mo(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    """MO-billed without acceptance: the notice goes, the chat opens at once; each chat MO adds its
    price, the second crosses the confirm step: the operator's replies wait for the client's yes."""
    config = make_config(tmp_path, database_url, simulator, extra=MO_BILLED)
    async with running_daemon(config) as daemon:
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "Hola")
        await eventually(lambda: len(phone_texts(simulator)) == 1)
        assert phone_texts(simulator) == ["795500: cada mensaje que envias cuesta 1.00 EUR. Chat Acme SL."]
        assert (await account(daemon)).spent == 100
        await reply(daemon, "Hola, soy Laura")  # no acceptance required: the chat is open
        await eventually(lambda: "Hola, soy Laura" in phone_texts(simulator))
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "¿Qué tal?")
        await eventually(lambda: "Llevas 2.00 EUR. Responde SI para seguir." in phone_texts(simulator))
        assert (await account(daemon)).state is PremiumState.PAUSED
        with pytest.raises(MTRefused) as refused:
            await reply(daemon, "Bien")
        assert refused.value.reason is RefusalReason.AWAITING_CONFIRMATION
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "SI")

        async def confirmed() -> bool:
            found = await account(daemon)
            return found.state is PremiumState.NORMAL and found.spent == 300  # the yes is an MO too

        await eventually(confirmed)
        await reply(daemon, "Bien")
        await eventually(lambda: "Bien" in phone_texts(simulator))
        assert all(charge is None for _, _, charge in (await statuses(daemon)).values())  # MTs are free


async def test_an_opted_out_clients_mos_are_counted_on_an_mo_billed_service_without_a_notice(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    """The carrier bills an MO-billed service's MO whoever sends it: a client who sent BAJA gets no
    price notice or reminder, but their chat MOs count (a crossed step audited as quiet), so after
    ALTA the month's spend is what they paid and the notice goes at their next MO."""
    config = make_config(tmp_path, database_url, simulator, extra=MO_BILLED)
    async with running_daemon(config) as daemon:
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "BAJA")
        await eventually(lambda: len(phone_texts(simulator)) == 1)  # the opt-out's confirmation
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "Hola")
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "¿Sigues ahí?")

        async def counted() -> bool:
            assert daemon.sessions is not None
            async with daemon.sessions() as session:
                found = (await session.execute(select(PremiumAccount))).scalar_one_or_none()
            return found is not None and found.spent == 200

        await eventually(counted)
        quiet = await account(daemon)
        assert quiet.state is PremiumState.PAUSED and quiet.noticed_at is None
        # no notice and no reminder was queued: the only MT is the answer to BAJA
        assert [kind for kind, _, _ in (await statuses(daemon)).values()] == [MTKind.SYSTEM]
        assert await audit_actions(daemon) == ["premium.confirm"]
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "ALTA")
        await eventually(lambda: len(phone_texts(simulator)) == 2)
        simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "Hola otra vez")
        await eventually(lambda: len(phone_texts(simulator)) == 3)
        assert phone_texts(simulator)[-1] == "795500: cada mensaje que envias cuesta 1.00 EUR. Chat Acme SL."
        assert (await account(daemon)).spent == 300


async def test_a_service_without_billing_reads_no_premium_table(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    """Nothing billed in the configuration: an MO and a reply never touch the premium accounts."""
    config = make_config(tmp_path, database_url, simulator)
    statements: list[str] = []
    async with running_daemon(config) as daemon:
        assert daemon.engine is not None

        def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
            statements.append(statement)

        event.listen(daemon.engine.sync_engine, "before_cursor_execute", seen)
        try:
            simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "Hola")

            async def stored() -> bool:
                assert daemon.sessions is not None
                async with daemon.sessions() as session:
                    return (await session.execute(select(MOMessage.id))).first() is not None

            await eventually(stored)
            await reply(daemon, "Hola, soy Laura")
            await eventually(lambda: "Hola, soy Laura" in phone_texts(simulator))
        finally:
            event.remove(daemon.engine.sync_engine, "before_cursor_execute", seen)
    assert statements and not [statement for statement in statements if "premium_accounts" in statement]


async def test_a_billed_mt_that_fails_gives_its_charge_back(tmp_path: Path, database_url: str) -> None:
    """The carrier's receipt says UNDELIV: the MT ends failed and the client's spend drops back (the
    receipts' path, which on PostgreSQL reads what it needs in the status change's own round trip)."""
    base = simulator_config()
    receipts = base.carriers[1].receipts.model_copy(update={"overrides": {SUBSCRIBER: "UNDELIV"}})
    carriers = (base.carriers[0], base.carriers[1].model_copy(update={"receipts": receipts}))
    async with Simulator(base.model_copy(update={"carriers": carriers})) as simulator:
        config = make_config(
            tmp_path, database_url, simulator, extra=BILLING.replace("acceptance = true", "")
        )
        async with running_daemon(config) as daemon:
            simulator.inject_mo(VODAFONE, SUBSCRIBER, VODAFONE_SHORT_CODE, "Hola")
            await eventually(lambda: len(phone_texts(simulator)) == 1)  # the notice (it fails too: free)
            mt_id = await reply(daemon, "Hola, soy Laura")
            # charged when queued: the MT's charge is written with the spend, in one transaction (the
            # spend itself is not read here: the receipt may already have given it back)
            assert (await statuses(daemon))[mt_id][2] == 100

            async def failed() -> bool:
                return (await statuses(daemon))[mt_id][1] is MTStatus.FAILED

            await eventually(failed)
            assert (await statuses(daemon))[mt_id][2] == 100  # the MT keeps what it was charged
            assert (await account(daemon)).spent == 0
