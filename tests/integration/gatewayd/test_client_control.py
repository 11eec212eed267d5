"""Client control in the running daemon (simulator -> daemon, no panel open): a banned client's MOs
are stored but never assigned, their conversation is taken from the operator who held it, the
service's ``banned_reply`` goes once however often they write; an opted-out client's conversation
takes no operator's slot until ALTA; BAJA and ALTA leave audit records (actor ``sms``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.assignment import withdraw_clients
from gatewayd.config import load_config
from gatewayd.store.audit import AuditRecord, verify_audit
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import MTKind
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.repo_subscribers import get_subscriber_by_msisdn, set_bans
from panel.auth.admin import user_add
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import MOVISTAR, MOVISTAR_SHORT_CODE, running_daemon, write_config
from tests.integration.gatewayd.test_assignment_pools import FAST_ARGON2, PASSWORD, at_desk
from tests.waiting import eventually

BANNED, OTHER = "+34600000011", "+34600000012"
NOTICE = "Este servicio no está disponible para tu número."


def configure(tmp_path: Path, database_url: str, simulator: Simulator) -> Path:
    path = write_config(tmp_path / "gatewayd.toml", database_url, simulator)
    text = path.read_text(encoding="utf-8")
    service = f'name = "chat-movistar"\nshort_code = "{MOVISTAR_SHORT_CODE}"\n'
    assert service in text
    text = text.replace(service, service + f'banned_reply = "{NOTICE}"\n')
    path.write_text(text + "\n[assignment]\nsweep_interval = 0.2\n", encoding="utf-8")
    return path


async def conversation_of(sessions: async_sessionmaker[AsyncSession], msisdn: str) -> Conversation | None:
    async with sessions() as session:
        subscriber = await get_subscriber_by_msisdn(session, msisdn[1:])
        if subscriber is None:
            return None
        statement = select(Conversation).where(Conversation.subscriber_id == subscriber.id)
        return (
            await session.execute(statement.order_by(Conversation.id.desc()).limit(1))
        ).scalar_one_or_none()


async def mo_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(MOMessage)) or 0)


async def held_by(sessions: async_sessionmaker[AsyncSession], msisdn: str, operator_id: int) -> bool:
    conversation = await conversation_of(sessions, msisdn)
    return conversation is not None and conversation.assigned_operator_id == operator_id


async def test_a_banned_client_is_never_assigned_and_gets_one_notice(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    config = load_config(configure(tmp_path, database_url, simulator), environ={})
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None and daemon.assignment is not None
        sessions = daemon.sessions
        await user_add(database_url, "olga", "operator", PASSWORD, argon2=FAST_ARGON2)
        olga = await at_desk(sessions, database_url, "olga")
        simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, "hola")
        await eventually(lambda: held_by(sessions, BANNED, olga))

        # banned while olga holds the conversation: it is taken from her, and stays nobody's
        async with sessions() as session, session.begin():
            subscriber = await get_subscriber_by_msisdn(session, BANNED[1:])
            assert subscriber is not None
            outcome = await set_bans(session, [subscriber.client_id], reason="insultos", now=utcnow())
            withdrawn = await withdraw_clients(session, [subscriber.id], utcnow())
        assert list(outcome.changed) == [subscriber.client_id]
        assert [(a.operator_id, a.previous_operator_id) for a in withdrawn] == [(None, olga)]

        for text in ("eh", "contesta", "hola?"):
            simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, text)
        simulator.inject_mo(MOVISTAR, OTHER, MOVISTAR_SHORT_CODE, "buenas")

        async def stored_and_other_assigned() -> bool:
            return await mo_count(sessions) == 5 and await held_by(sessions, OTHER, olga)

        await eventually(stored_and_other_assigned)
        assert await daemon.assignment.assign() == []  # a pass more hands out nothing
        banned = await conversation_of(sessions, BANNED)
        assert banned is not None and banned.assigned_operator_id is None

        def notices() -> list[object]:
            return simulator.store.query(carrier=MOVISTAR, destination=BANNED[1:])

        async def notice_arrived() -> bool:
            return bool(notices())

        await eventually(notice_arrived)
        async with sessions() as session:
            kinds = list(
                (
                    await session.execute(select(MTMessage.kind).where(MTMessage.destination == BANNED[1:]))
                ).scalars()
            )
        # three MOs after the ban, one answer: every MT row is there (queued with its MO's commit)
        assert kinds == [MTKind.BAN_NOTICE]
        assert len(notices()) == 1
        # the other client's MO got no notice
        assert simulator.store.query(carrier=MOVISTAR, destination=OTHER[1:]) == []


async def opted_out(sessions: async_sessionmaker[AsyncSession], msisdn: str, wanted: bool) -> bool:
    async with sessions() as session:
        subscriber = await get_subscriber_by_msisdn(session, msisdn[1:])
        return subscriber is not None and subscriber.opted_out is wanted


async def test_an_opted_out_client_takes_no_slot_and_baja_alta_are_audited(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    config = load_config(configure(tmp_path, database_url, simulator), environ={})
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None and daemon.assignment is not None
        sessions = daemon.sessions
        await user_add(database_url, "olga", "operator", PASSWORD, argon2=FAST_ARGON2)
        olga = await at_desk(sessions, database_url, "olga")
        simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, "BAJA")
        await eventually(lambda: opted_out(sessions, BANNED, True))
        simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, "una pregunta")
        simulator.inject_mo(MOVISTAR, OTHER, MOVISTAR_SHORT_CODE, "buenas")

        async def other_assigned() -> bool:
            return await mo_count(sessions) == 3 and await held_by(sessions, OTHER, olga)

        await eventually(other_assigned)
        assert await daemon.assignment.assign() == []
        waiting = await conversation_of(sessions, BANNED)
        assert waiting is not None and waiting.assigned_operator_id is None

        # ALTA: the client is back, and the sweep hands their conversation out
        simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, "alta")
        await eventually(lambda: held_by(sessions, BANNED, olga))

        async with sessions() as session:
            # the records about clients (the CLI that made the operators has its own)
            about_clients = select(AuditRecord).where(AuditRecord.subject.like("client:%"))
            records = list((await session.execute(about_clients.order_by(AuditRecord.seq))).scalars())
            subscriber = await get_subscriber_by_msisdn(session, BANNED[1:])
            check = await verify_audit(session)
        assert subscriber is not None and check.intact
        assert [(r.action, r.actor, r.source, r.subject) for r in records] == [
            ("client.opt_out", "sms", MOVISTAR, f"client:{subscriber.client_id}"),
            ("client.opt_in", "sms", MOVISTAR, f"client:{subscriber.client_id}"),
        ]
        assert records[0].details["before"] == {"opted_out": False}
        assert records[0].details["after"] == {"opted_out": True}
        assert records[0].details["keyword"] == "BAJA"
        assert BANNED[1:] not in str([r.details for r in records])  # no phone number in the trail


async def test_banned_reply_follows_a_reload(tmp_path: Path, database_url: str, simulator: Simulator) -> None:
    """Without ``banned_reply`` a banned client's MO gets no answer; after a reload that adds it, the
    next one does."""
    plain = write_config(tmp_path / "plain.toml", database_url, simulator)
    async with running_daemon(load_config(plain, environ={})) as daemon:
        assert daemon.sessions is not None
        sessions = daemon.sessions
        simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, "hola")
        await eventually(lambda: conversation_of(sessions, BANNED))
        async with sessions() as session, session.begin():
            subscriber = await get_subscriber_by_msisdn(session, BANNED[1:])
            assert subscriber is not None
            await set_bans(session, [subscriber.client_id], reason="spam", now=utcnow())
        simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, "sin respuesta")
        await eventually(lambda: mo_count_is(sessions, 2))
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(MTMessage)) == 0

        daemon.reload(load_config(configure(tmp_path, database_url, simulator), environ={}))
        simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, "¿y ahora?")

        async def answered() -> bool:
            return bool(simulator.store.query(carrier=MOVISTAR, destination=BANNED[1:]))

        await eventually(answered)
        async with sessions() as session:
            kinds = list((await session.execute(select(MTMessage.kind))).scalars())
        assert kinds == [MTKind.BAN_NOTICE]


async def mo_count_is(sessions: async_sessionmaker[AsyncSession], wanted: int) -> bool:
    return await mo_count(sessions) == wanted


async def test_baja_takes_the_held_conversation_from_the_operator(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    """A client who opts out while an operator holds their conversation frees that operator's slot at
    the daemon's next sweep (no panel involved); their ALTA makes it assignable again."""
    config = load_config(configure(tmp_path, database_url, simulator), environ={})
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None and daemon.assignment is not None
        sessions = daemon.sessions
        await user_add(database_url, "olga", "operator", PASSWORD, argon2=FAST_ARGON2)
        olga = await at_desk(sessions, database_url, "olga")
        simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, "hola")
        await eventually(lambda: held_by(sessions, BANNED, olga))
        simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, "BAJA")

        async def released() -> bool:
            conversation = await conversation_of(sessions, BANNED)
            return conversation is not None and conversation.assigned_operator_id is None

        await eventually(released)
        assert await daemon.assignment.withdraw_barred() == []  # nothing more to take
        simulator.inject_mo(MOVISTAR, BANNED, MOVISTAR_SHORT_CODE, "ALTA")
        await eventually(lambda: held_by(sessions, BANNED, olga))
