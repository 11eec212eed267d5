"""The MO pipeline: deliver_sm / data_sm -> (receipt? to receipts) -> reassembly -> normalise ->
duplicate check -> group commit -> deliver_sm_resp -> event.

The SMSC's ``deliver_sm_resp`` is the promise that the MO is ours. So the handler the bind calls
awaits the group commit that holds its MO and answers only then: 0 when stored (or already stored,
for a redelivery), ``ESME_RX_T_APPN`` when the database is unavailable, so the SMSC delivers it
again later and nothing is lost. The parts of a long MO are all answered once the reassembled
message is committed (or, when parts never come, once it is stored flagged incomplete).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.batching import BatchObserver, CommitterClosed, CommitterFull, GroupCommitter, ride_out
from gatewayd.events import EventPublisher
from gatewayd.logging import log_event
from gatewayd.mo_message import BindInfo, InboundMO, UnusableMO, build_inbound
from gatewayd.replies import reply_for
from gatewayd.routes import MORouter
from gatewayd.store.engine import concurrent_writers
from gatewayd.store.enums import MTKind
from gatewayd.store.repo_mo import IngestedMO, NewMO, ingest_mos
from gatewayd.store.repo_mt import NewMT, queue_mts
from gatewayd.store.repo_subscribers import set_opted_out
from routing.keywords import KeywordKind, KeywordSet
from smpp.aio import FutureMessageHandler
from smpp.concat import Reassembled, Reassembler, user_data
from smpp.constants import CommandStatus
from smpp.pdu import DataSM, DeliverSM
from smpp.receipt import is_receipt

log = logging.getLogger("gatewayd.mo")

#: How long a redelivered MO is recognised as the same one (an SMSC retries within seconds or minutes).
DEDUP_WINDOW = 120.0


@dataclass(slots=True)
class _PartWaiter:
    pdu: DeliverSM | DataSM
    future: asyncio.Future[int]


class MOPipeline:
    """Turns inbound PDUs into committed MOs. ``run_loop`` must run (the daemon's TaskGroup)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        events: EventPublisher,
        *,
        keywords_for: Callable[[str], KeywordSet],
        router: MORouter | None = None,
        receipts: Callable[[BindInfo, DeliverSM], int | asyncio.Future[int]] | None = None,
        mt_queued: Callable[[], None] | None = None,
        reassembly_timeout: float = 120.0,
        max_batch: int = 2000,
        on_batch: BatchObserver | None = None,
        on_committed: Callable[[Sequence[InboundMO], int], None] | None = None,
        on_incomplete: Callable[[str], None] | None = None,
        commit_retry_window: float = 4.0,
    ) -> None:
        self._sessions = sessions
        self._events = events
        self._keywords_for = keywords_for
        #: Gives each MO its service; the daemon swaps its table on reload.
        self.router = router or MORouter()
        self._receipts = receipts
        self._mt_queued = mt_queued
        self._on_committed = on_committed
        self._on_incomplete = on_incomplete
        self._commit_retry_window = commit_retry_window
        self._committer: GroupCommitter[InboundMO, int] = GroupCommitter(
            self._commit_batch,
            max_batch=max_batch,
            max_pending=max(50_000, max_batch),
            on_batch=on_batch,
            name="mo.group-commit",
            concurrency=concurrent_writers(sessions),
        )
        self._reassembler: Reassembler[_PartWaiter] = Reassembler(reassembly_timeout, max_pending=100_000)
        self._reassembly_wakeup = asyncio.Event()
        self._keyword_sets: dict[str, KeywordSet] = {}
        self._closing = False
        self.received = 0
        self.stored = 0
        self.duplicates = 0
        self.temporary_failures = 0

    # --- the bind-facing side ------------------------------------------------------------------------

    def handler(self, bind: BindInfo) -> FutureMessageHandler:
        """The ``on_message`` callback for one bind: the command_status of the response, or a future
        that holds it once the MO is committed (no task per PDU)."""
        return functools.partial(self.accept, bind)

    def accept(self, bind: BindInfo, pdu: DeliverSM | DataSM) -> int | asyncio.Future[int]:
        """Handle one inbound PDU: its response's command_status, now or (a future) once committed."""
        if isinstance(pdu, DeliverSM) and is_receipt(pdu.esm_class):
            if self._receipts is None:
                return CommandStatus.ESME_ROK
            return self._receipts(bind, pdu)
        if self._closing:
            return CommandStatus.ESME_RX_T_APPN
        self.received += 1
        info, payload = user_data(pdu)
        data_coding = pdu.data_coding
        now = datetime.now(UTC)
        if info is None:
            try:
                mo = build_inbound(bind, pdu, payload, data_coding, self._keywords(bind.country), now)
            except UnusableMO as error:
                log_event(
                    log,
                    "mo.refused",
                    logging.WARNING,
                    carrier=bind.carrier,
                    bind=bind.bind,
                    source=pdu.source_addr,
                    reason=str(error),
                )
                return error.status
            return self._store(mo)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        key = (bind, pdu.source_addr, pdu.destination_addr)
        flushed = self._reassembler.add(
            key, info, payload, data_coding, time.monotonic(), _PartWaiter(pdu, future)
        )
        if self._reassembler.next_deadline() is not None:
            self._reassembly_wakeup.set()
        for message in flushed:
            self._finish_reassembled(message)
        return future

    def _keywords(self, country: str) -> KeywordSet:
        keywords = self._keyword_sets.get(country)
        if keywords is None:
            keywords = self._keyword_sets[country] = self._keywords_for(country)
        return keywords

    def _store(self, mo: InboundMO) -> int | asyncio.Future[int]:
        """Queue one MO for the group commit: the future holds ``ESME_ROK`` once it is committed (a
        duplicate included), ``ESME_RX_T_APPN`` when the database stayed away (the SMSC delivers it
        again later)."""
        try:
            return self._committer.submit_nowait(mo)
        except CommitterClosed:
            return CommandStatus.ESME_RX_T_APPN
        except CommitterFull as error:
            self.temporary_failures += 1
            log_event(log, "mo.backlog_full", logging.WARNING, carrier=mo.carrier, error=str(error))
            return CommandStatus.ESME_RX_T_APPN

    def _finish_reassembled(self, message: Reassembled[_PartWaiter]) -> None:
        """Commit a reassembled (or flushed incomplete) message, then answer every one of its parts."""
        first = message.items[0]
        bind = message.key[0] if isinstance(message.key, tuple) else None
        waiters = message.items
        status: int | asyncio.Future[int]
        if not isinstance(bind, BindInfo):
            status = CommandStatus.ESME_RSYSERR
        else:
            try:
                mo = build_inbound(
                    bind,
                    first.pdu,
                    message.payload,
                    message.data_coding,
                    self._keywords(bind.country),
                    datetime.now(UTC),
                    reference=message.reference,
                    parts_total=message.total_parts,
                    parts_received=len(message.received_parts),
                )
            except UnusableMO as error:
                status = error.status
            else:
                if not message.complete:
                    log_event(
                        log,
                        "mo.incomplete",
                        logging.WARNING,
                        carrier=bind.carrier,
                        parts=f"{len(message.received_parts)}/{message.total_parts}",
                        reason=message.reason.value,
                    )
                    if self._on_incomplete is not None:
                        self._on_incomplete(bind.carrier)
                status = self._store(mo)

        def answer(outcome: int) -> None:
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_result(outcome)

        if isinstance(status, int):
            answer(status)
            return

        def committed(future: asyncio.Future[int]) -> None:
            failed = future.cancelled() or future.exception() is not None
            answer(CommandStatus.ESME_RX_T_APPN if failed else future.result())

        status.add_done_callback(committed)

    # --- loops ---------------------------------------------------------------------------------------

    async def run_loop(self) -> None:
        """The group committer and the reassembly timer; returns after :meth:`close` has drained."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._committer.run_loop(), name="mo.group-commit")
            group.create_task(self._reassembly_loop(), name="mo.reassembly")

    async def _reassembly_loop(self) -> None:
        while not self._closing:
            deadline = self._reassembler.next_deadline()
            self._reassembly_wakeup.clear()
            if deadline is None:
                await self._reassembly_wakeup.wait()
                continue
            delay = deadline - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._reassembly_wakeup.wait(), delay)
                except TimeoutError:
                    pass
                continue
            for message in self._reassembler.expire(time.monotonic()):
                self._finish_reassembled(message)
        for message in self._reassembler.drain():
            self._finish_reassembled(message)
        self._committer.close()

    def close(self) -> None:
        """Stop taking MOs: pending parts are flushed and stored, then the committer drains."""
        self._closing = True
        self._reassembly_wakeup.set()

    # --- the group commit ----------------------------------------------------------------------------

    async def _commit_batch(self, batch: Sequence[InboundMO]) -> list[int]:
        """One transaction for the batch, tried again through a database blip shorter than
        ``commit_retry_window``; each MO's response status (``ESME_RX_T_APPN`` for all of them when
        the database stayed away: the SMSC delivers them again later)."""
        try:
            stored, mts_queued = await ride_out(lambda: self._commit_once(batch), self._commit_retry_window)
        except Exception as error:
            self.temporary_failures += len(batch)
            log_event(
                log,
                "mo.commit_failed",
                logging.WARNING,
                mos=len(batch),
                error=repr(error),
                action="answered ESME_RX_T_APPN: the SMSC delivers them again",
            )
            return [CommandStatus.ESME_RX_T_APPN] * len(batch)
        self.stored += len(stored)
        self.duplicates += len(batch) - len(stored)
        if self._on_committed is not None:
            self._on_committed([mo for mo, _ in stored], len(batch) - len(stored))
        for mo, result in stored:
            await self._events.mo(mo, result.mo_id or 0, result.subscriber.client_id, result.conversation_id)
        if mts_queued and self._mt_queued is not None:
            self._mt_queued()
        return [CommandStatus.ESME_ROK] * len(batch)

    async def _commit_once(
        self, batch: Sequence[InboundMO]
    ) -> tuple[list[tuple[InboundMO, IngestedMO]], int]:
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            return await self._write_batch(session, batch, now)

    async def _write_batch(
        self, session: AsyncSession, batch: Sequence[InboundMO], now: datetime
    ) -> tuple[list[tuple[InboundMO, IngestedMO]], int]:
        """The MOs stored (duplicates left out) with what the store made of them, and how many reserved
        keyword confirmations were queued."""
        # a redelivery that straddles a bucket boundary carries last bucket's key: the store checks
        # both in the statement that inserts (no extra round trip)
        ingested = await ingest_mos(session, [self._new_mo(mo, *_window_keys(mo)) for mo in batch], now)
        stored = [
            (mo, result) for mo, result in zip(batch, ingested, strict=True) if result.mo_id is not None
        ]
        reserved = [(mo, result) for mo, result in stored if mo.is_reserved]
        mts_queued = await self._reserved_keywords(session, reserved, now) if reserved else 0
        return stored, mts_queued

    def _new_mo(self, mo: InboundMO, dedup: str, previous_dedup: str) -> NewMO:
        return NewMO(
            dedup_key=dedup,
            previous_dedup_key=previous_dedup,
            msisdn=mo.msisdn.removeprefix("+"),
            carrier=mo.carrier,
            short_code=mo.short_code,
            text=mo.text,
            received_at=mo.received_at,
            country=mo.country,
            data_coding=mo.data_coding,
            parts=mo.parts_total,
            incomplete=mo.incomplete,
            bind_name=mo.bind,
            service=self.router.service_of(mo),
            keyword=mo.keyword.keyword if mo.keyword else None,
            opens_conversation=not mo.is_reserved,
        )

    async def _reserved_keywords(
        self, session: AsyncSession, reserved: Sequence[tuple[InboundMO, IngestedMO]], now: datetime
    ) -> int:
        """BAJA / STOP / ALTA / help: record the opt-out or opt-in, queue the confirmation MT.

        Opt-in is recorded before its confirmation is queued and opt-out after, so that both
        confirmations reach the subscriber (the outbox refuses MTs to opted-out subscribers)."""
        confirmations: list[NewMT] = []
        opt_out: list[int] = []
        for mo, result in reserved:
            assert mo.keyword is not None
            subscriber_id = result.subscriber.id
            if mo.keyword.kind is KeywordKind.OPT_IN:
                await set_opted_out(session, subscriber_id, False, now)
            elif mo.keyword.kind is KeywordKind.OPT_OUT:
                opt_out.append(subscriber_id)
            confirmations.append(
                NewMT(
                    kind=MTKind.SYSTEM,
                    carrier=mo.carrier,
                    source=mo.short_code,
                    destination=mo.msisdn.removeprefix("+"),
                    text=reply_for(mo.keyword.kind, mo.country, mo.short_code),
                    priority=10,
                    bind_name=mo.bind,
                    subscriber_id=subscriber_id,
                    in_reply_to_mo_id=result.mo_id,
                )
            )
            log_event(
                log,
                "mo.reserved_keyword",
                keyword=mo.keyword.keyword,
                kind=mo.keyword.kind.value,
                carrier=mo.carrier,
                short_code=mo.short_code,
                client_id=result.subscriber.client_id,
            )
        queued = await queue_mts(session, confirmations, now)
        for subscriber_id in sorted(set(opt_out)):
            await set_opted_out(session, subscriber_id, True, now)
        return sum(1 for mt_id in queued.ids if mt_id is not None)


def _window_keys(mo: InboundMO) -> tuple[str, str]:
    """The MO's dedup key in its time bucket and in the bucket before: a redelivery within
    ``DEDUP_WINDOW`` (up to twice that) matches one of them."""
    bucket = int(mo.received_at.timestamp() // DEDUP_WINDOW)
    return f"{mo.dedup_key}:{bucket}", f"{mo.dedup_key}:{bucket - 1}"
