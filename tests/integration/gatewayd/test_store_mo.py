"""Store: subscribers, conversations and MO ingestion on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from gatewayd.mo_message import dedup_key
from gatewayd.outbox import MTRequest, Outbox, OutboxSettings, Route
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus, MTKind
from gatewayd.store.messages import MOMessage, MOUnconfirmed
from gatewayd.store.repo_conversations import ConversationKey
from gatewayd.store.repo_desk import last_mo_of_subscriber
from gatewayd.store.repo_mo import (
    REDELIVERY_WINDOW,
    NewMO,
    confirm_answers,
    forget_unconfirmed,
    open_answers,
)
from gatewayd.store.repo_subscribers import (
    SubscriberSeen,
    get_subscriber,
    get_subscriber_by_client_id,
    set_bans,
)
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber

pytestmark = pytest.mark.integration

T0 = datetime(2024, 7, 1, 10, 0, 0, tzinfo=UTC)


def mo(
    msisdn: str,
    smsc_id: str,
    *,
    text: str = "HOLA",
    at: datetime = T0,
    short_code: str = "997745",
    opens_conversation: bool = True,
) -> NewMO:
    key = dedup_key("movistar", msisdn, short_code, 0, smsc_id.encode())
    return NewMO(
        dedup_key=key,
        msisdn=msisdn,
        carrier="movistar",
        short_code=short_code,
        text=text,
        received_at=at,
        country="ES",
        opens_conversation=opens_conversation,
    )


async def test_an_mo_is_a_redelivery_only_while_its_answer_is_unconfirmed(store: Store) -> None:
    later = T0 + timedelta(seconds=5)
    async with store.transaction() as session:
        [answer] = await open_answers(session, ["movistar-1"], T0)
        batch = [mo("34600000001", "a1"), mo("34600000001", "a1"), mo("34600000002", "b1", at=later)]
        for new in batch:
            new.answer_id = answer
        first = await store.mos.ingest(session, batch, T0)
    assert [result.duplicate for result in first] == [False, True, False]
    assert first[0].mo_id is not None and first[2].mo_id is not None
    # its answer may not have reached the SMSC (a crash, a lost connection): the same MO again is it
    async with store.transaction() as session:
        again = await store.mos.ingest(session, batch[:1], T0 + timedelta(minutes=1))
    assert again[0].duplicate
    assert again[0].subscriber.id == first[0].subscriber.id
    # once its answer is confirmed, the same text is a new MO (the subscriber wrote it twice)
    async with store.transaction() as session:
        await confirm_answers(session, [answer])
    async with store.transaction() as session:
        repeated = await store.mos.ingest(session, batch[:1], T0 + timedelta(minutes=2))
    assert not repeated[0].duplicate
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(MOMessage)) == 3
        subscriber = await get_subscriber(session, first[0].subscriber.id)
        assert subscriber is not None and subscriber.mo_count == 2


async def test_the_answers_a_batch_opens_are_stored_with_it_whatever_it_holds(store: Store) -> None:
    # On PostgreSQL the store reserves the ids and writes the rows with the batch's MO statement, or
    # at the commit when the batch has no whole MO (its parts wait): either way once, and never when
    # the batch is rolled back.
    async with store.transaction() as session:
        [with_mo] = await store.mos.open_answers(session, ["movistar-1"], T0)
        await store.mos.ingest(session, [replace(mo("34600000001", "a"), answer_id=with_mo)], T0)
    async with store.transaction() as session:
        parts_only, other_bind = await store.mos.open_answers(session, ["movistar-1", "movistar-2"], T0)
    async with store.sessions() as session, session.begin():
        [rolled_back] = await store.mos.open_answers(session, ["movistar-1"], T0)
        await session.rollback()
    async with store.transaction() as session:  # nothing of the rolled back batch is left to write
        await store.mos.ingest(session, [mo("34600000002", "b")], T0)
    async with store.sessions() as session:
        rows = await session.execute(
            select(MOUnconfirmed.id, MOUnconfirmed.bind_name, MOUnconfirmed.created_at)
        )
        stored = {row.id: (row.bind_name, row.created_at) for row in rows}
    assert stored == {
        with_mo: ("movistar-1", T0),
        parts_only: ("movistar-1", T0),
        other_bind: ("movistar-2", T0),
    }
    assert rolled_back not in stored and len({with_mo, parts_only, other_bind, rolled_back}) == 4
    # the MO delivered again is recognised by its answer
    async with store.transaction() as session:
        [again] = await store.mos.ingest(session, [mo("34600000001", "a")], T0 + timedelta(seconds=1))
    assert again.duplicate


async def test_an_unconfirmed_mo_is_matched_only_within_the_redelivery_window(store: Store) -> None:
    async with store.transaction() as session:
        [answer] = await open_answers(session, [None], T0)
        stored = mo("34600000003", "c1")
        stored.answer_id = answer
        await store.mos.ingest(session, [stored], T0)
    async with store.transaction() as session:
        inside = await store.mos.ingest(session, [mo("34600000003", "c1")], T0 + REDELIVERY_WINDOW)
        assembled = replace(mo("34600000003", "c1"), check_redelivery=False)
        known = await store.mos.ingest(session, [assembled], T0 + REDELIVERY_WINDOW)
        outside = await store.mos.ingest(session, [mo("34600000003", "c1")], T0 + REDELIVERY_WINDOW * 2)
    assert inside[0].duplicate and not known[0].duplicate and not outside[0].duplicate
    async with store.transaction() as session:
        assert await forget_unconfirmed(session, T0 + timedelta(seconds=1)) == 1
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(MOUnconfirmed)) == 0


async def test_the_octets_are_stored_beside_a_text_that_cannot_say_them(store: Store) -> None:
    cleaned = replace(mo("34600000005", "e1", text="hola\ufffd"), raw=b"\x00h\x00o\x00l\x00a\x00\x00")
    async with store.transaction() as session:
        result, _ = await store.mos.ingest(session, [cleaned, mo("34600000006", "f1")], T0)
    async with store.sessions() as session:
        stored = await session.get(MOMessage, result.mo_id)
        assert stored is not None and stored.text == "hola\ufffd" and stored.raw == cleaned.raw


async def test_ingest_opens_one_waiting_conversation_per_subscriber_and_short_code(store: Store) -> None:
    batch = [
        mo("34600000001", "a1", at=T0 + timedelta(seconds=30)),
        mo("34600000001", "a2", at=T0),
        mo("34600000001", "a3", short_code="795500"),
        mo("34600000003", "c1", opens_conversation=False),
    ]
    async with store.transaction() as session:
        results = await store.mos.ingest(session, batch, T0)
    assert results[0].conversation_id == results[1].conversation_id
    assert results[2].conversation_id not in (None, results[0].conversation_id)
    assert results[3].conversation_id is None
    async with store.sessions() as session:
        conversation = await session.get(Conversation, results[0].conversation_id)
        assert conversation is not None
        assert conversation.status is ConversationStatus.WAITING
        assert conversation.waiting_since == T0
        assert conversation.last_mo_at == T0 + timedelta(seconds=30)
        stored = await session.get(MOMessage, results[1].mo_id)
        assert stored is not None and stored.conversation_id == results[1].conversation_id


async def test_closed_conversation_is_replaced_by_a_new_one(store: Store) -> None:
    async with store.transaction() as session:
        [first] = await store.mos.ingest(session, [mo("34600000001", "a1")], T0)
        assert first.conversation_id is not None
        closing = update(Conversation).where(Conversation.id == first.conversation_id)
        await session.execute(closing.values(status=ConversationStatus.CLOSED, closed_at=T0))
        [second] = await store.mos.ingest(session, [mo("34600000001", "a2")], T0)
    assert second.conversation_id not in (None, first.conversation_id)


async def test_concurrent_upserts_agree_on_one_subscriber(store: Store) -> None:
    numbers = [f"3460000{n:04d}" for n in range(50)]

    async def upsert(order: list[str]) -> dict[str, int]:
        async with store.transaction() as session:
            refs = await store.subscribers.upsert(
                session, [SubscriberSeen(n, "movistar", "ES") for n in order], T0
            )
            return {msisdn: ref.id for msisdn, ref in refs.items()}

    one, two = await asyncio.gather(upsert(numbers), upsert(list(reversed(numbers))))
    assert one == two
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Subscriber)) == 50
        client_ids = (await session.execute(select(Subscriber.client_id))).scalars().all()
    assert len(set(client_ids)) == 50
    assert all(re.fullmatch(r"C[A-Z2-7]{8}", client_id) for client_id in client_ids)


async def test_ported_number_updates_its_carrier(store: Store) -> None:
    async with store.transaction() as session:
        await store.subscribers.upsert(session, [SubscriberSeen("34600000001", "movistar", "ES")], T0)
    async with store.transaction() as session:
        refs = await store.subscribers.upsert(session, [SubscriberSeen("34600000001", "vodafone", None)], T0)
    assert refs["34600000001"].carrier == "vodafone"
    assert refs["34600000001"].country == "ES"


async def test_ban_and_unban_by_client_id(store: Store) -> None:
    async with store.transaction() as session:
        refs = await store.subscribers.upsert(session, [SubscriberSeen("34600000001")], T0)
        client_id = refs["34600000001"].client_id
        outcome = await set_bans(session, [client_id.lower(), "CNOSUCH00"], reason="abuse", now=T0)
        assert list(outcome.changed) == [client_id] and outcome.unknown == {"CNOSUCH00"}
        banned = await get_subscriber_by_client_id(session, client_id)
        assert banned is not None and banned.banned and banned.banned_reason == "abuse"
    async with store.transaction() as session:
        outcome = await set_bans(session, [client_id], reason=None, now=T0)
        assert outcome.changed[client_id].reason_before == "abuse"
        unbanned = await get_subscriber_by_client_id(session, client_id)
        assert unbanned is not None and not unbanned.banned and unbanned.banned_at is None


async def test_a_subscriber_has_one_active_conversation_per_short_code(store: Store) -> None:
    async with store.transaction() as session:
        refs = await store.subscribers.upsert(session, [SubscriberSeen("34600000001")], T0)
        key = ConversationKey(refs["34600000001"].id, "997745")
        first = await store.conversations.get_or_open(session, [key], T0)
        again = await store.conversations.get_or_open(session, [key, key], T0)
        other = await store.conversations.get_or_open(
            session, [ConversationKey(key.subscriber_id, "795500")], T0
        )
    assert again == first and set(other.values()).isdisjoint(first.values())


async def test_a_stored_mos_variables_use_the_local_time_zone(store: Store) -> None:
    """The MO as the store gives it back (a reply's answered MO) renders in the service's zone."""
    async with store.transaction() as session:
        [result] = await store.mos.ingest(
            session,
            [mo("34600000001", "a1", text="ALIAS hola", at=datetime(2024, 12, 31, 23, 30, 5, tzinfo=UTC))],
            T0,
        )
    async with store.sessions() as session:
        answered = await last_mo_of_subscriber(session, result.subscriber.id)
    assert answered is not None and answered.id == result.mo_id
    request = MTRequest("34600000001", "x", kind=MTKind.REPLY, mo=answered)
    outbox = Outbox(OutboxSettings(timezone="Europe/Madrid"))
    variables = outbox.variables(request, "34600000001", None, Route("movistar", "997745", None), T0)
    assert variables == {
        "mensaje": "ALIAS hola",
        "host": "997745",
        "operador": "movistar",
        "telefono": "34600000001",
        "hora": "00:30:05",
        "fecha": "01/01/2025",
        "pais": "ES",
    }


async def test_concurrent_overlapping_batches_count_every_mo_once(store: Store) -> None:
    # Four batches share subscribers (in different orders) and the redelivery of an MO whose answer is
    # unconfirmed: no deadlock, one subscriber and one conversation per MSISDN, every distinct MO
    # counted once.
    numbers = [f"3460000{n:04d}" for n in range(40)]
    async with store.transaction() as session:
        [answer] = await open_answers(session, ["movistar-1"], T0)
        original = replace(mo(numbers[0], "redelivered"), answer_id=answer)
        await store.mos.ingest(session, [original], T0)
    batches = [
        [mo(number, f"{lane}-{index}") for index, number in enumerate(numbers[::step])]
        for lane, step in enumerate((1, -1, 2, -2))
    ]
    for batch in batches:
        batch.append(mo(numbers[0], "redelivered"))

    async def ingest(batch: list[NewMO]) -> None:
        async with store.transaction() as session:
            await store.mos.ingest(session, batch, T0)

    await asyncio.gather(*(ingest(batch) for batch in batches))
    async with store.sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(MOMessage))
        rows = await session.execute(select(Subscriber.msisdn, Subscriber.mo_count))
        counts = {row.msisdn: row.mo_count for row in rows}
        conversations = await session.scalar(select(func.count()).select_from(Conversation))
    distinct = sum(len(batch) - 1 for batch in batches) + 1
    assert stored == distinct == sum(counts.values())
    assert len(counts) == conversations == len(numbers)
    assert counts[numbers[0]] == 3 + 1  # in three of the batches, plus the one redelivered MO
