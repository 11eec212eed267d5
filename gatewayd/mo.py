"""The MO pipeline: deliver_sm / data_sm (not a receipt: the bind's dispatcher sends those to the MT
recorder) -> normalise -> group commit -> deliver_sm_resp -> event (published after the answers, by a
loop of its own: the bus is never on the way to a ``deliver_sm_resp``).

The SMSC's ``deliver_sm_resp`` is the promise that the MO is ours. So the handler the bind calls
awaits the group commit that holds its MO and answers only then: 0 when stored (or when it is a
redelivery of an MO stored already), ``ESME_RX_T_APPN`` when the database is unavailable (the SMSC
delivers it again later and nothing is lost), ``ESME_RX_P_APPN`` for the rare MO the database
refuses to store: trying again would fail the same way, so it is not brought back forever, and the
MOs committed with it are split from it and stored.

Each part of a long MO is stored and answered in the group commit it arrives in (an SMSC that waits
for each answer before sending the next part is never kept waiting). The transaction that stores the
last missing part assembles the whole MO from the stored parts, whichever bind and whichever daemon
run the others came through; parts that stop coming become one MO flagged incomplete after
``reassembly_timeout``, read from the store (so it survives a restart).

Redeliveries: an SMSC delivers an MO again only when it did not get our answer. Every batch records
its answers unconfirmed, per bind connection, in the same transaction; they are confirmed
:data:`ANSWER_GRACE` seconds after they went out, unless that connection was lost meanwhile (an answer
written just before may never have arrived) or they went out later than ``answer_deadline`` after
their PDU came (the SMSC may have stopped waiting). The store takes an MO for a redelivery only when
an MO with the same content has its answer unconfirmed: the same text twice is two MOs. An MO with
the same content as one still in flight in this process waits for that one's answer to be decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.batching import BatchObserver, CommitterClosed, CommitterFull, GroupCommitter, ride_out
from gatewayd.events import EventPublisher
from gatewayd.health import LoopHealth
from gatewayd.logging import log_event
from gatewayd.mo_message import (
    BindInfo,
    InboundMO,
    InboundPart,
    UnusableMO,
    build_inbound,
    build_part,
    inbound_mo,
)
from gatewayd.outbox import AnsweredMO, MTRequest, Outbox, OutboxError, OutboxSettings, Queued
from gatewayd.premium import ChatMO, Premium
from gatewayd.replies import reply_template
from gatewayd.routes import MORouter
from gatewayd.store._tables import among
from gatewayd.store.audit import AuditEntry, append_audit
from gatewayd.store.enums import MTKind
from gatewayd.store.errors import ClosedMeanwhile, NeedsTransaction, describe_error, is_data_error
from gatewayd.store.messages import MTMessage
from gatewayd.store.repo_mo import (
    REDELIVERY_WINDOW,
    IngestedMO,
    MOAlone,
    NewMO,
    confirm_answers,
    forget_unconfirmed,
)
from gatewayd.store.repo_mo_parts import (
    NewPart,
    StoredPart,
    expired_part_sets,
    forget_assembled_parts,
    mark_assembled,
    oldest_waiting_part,
    store_parts,
    waiting_parts,
)
from gatewayd.store.repo_subscribers import set_opted_out
from gatewayd.store.rollups import count_opt_outs
from gatewayd.store.store import Store
from gatewayd.store.webhooks import WebhookEvent
from gatewayd.webhooks.enqueue import Occurrence, WebhookTargets, mo_received, opt_changed
from routing.keywords import KeywordKind, KeywordSet
from routing.premium import Billed
from smpp.concat import user_data
from smpp.constants import CommandStatus
from smpp.pdu import DataSM, DeliverSM

log = logging.getLogger("gatewayd.mo")

#: How long a connection must stay up after answers went out on it for them to count as arrived: one
#: lost sooner may have lost them on the way (the peer resets it, we learn of it a round trip later).
ANSWER_GRACE = 1.0
#: Least time between two confirmations: under load one transaction confirms the answers of many batches.
CONFIRM_INTERVAL = 0.25
#: How often what the redelivery window no longer needs (unconfirmed answers, assembled parts) is dropped.
UPKEEP_INTERVAL = 60.0
#: How long after a failed attempt to store expired parts the next one is made.
FLUSH_RETRY = 5.0
#: A burst of at least this many MOs that finds no batch committing is stored as batches side by side
#: (``GroupCommitter.split_from``), each subscriber's in one of them: below it a second batch's fixed
#: cost eats what the overlap gains (docs/SCALING.md, "A window's burst shared between the two commits").
SPLIT_FROM = 64

#: At most one ``banned_reply`` per client in this time: a banned client texting in a loop is not
#: charged a reply for each MO.
BANNED_REPLY_INTERVAL = timedelta(hours=24)
#: The audit trail's actor of what a client did by SMS (BAJA / ALTA); the source is the carrier.
SMS_ACTOR = "sms"

#: A whole MO or one part of a long one: what a deliver_sm / data_sm becomes.
Unit = InboundMO | InboundPart
RefusalObserver = Callable[[str, str], None]


@dataclass(slots=True)
class _Arrival:
    """One MO or part on its way to the store, with what the fate of its answer depends on."""

    unit: Unit
    #: The bind's connection when it arrived (see :meth:`MOPipeline.bind_state`).
    generation: int
    #: ``time.monotonic()`` when it arrived.
    arrived: float


@dataclass(slots=True)
class _Answers:
    """The answers one batch gave on one bind connection, waiting to be confirmed."""

    answer_id: int
    bind: str
    generation: int
    #: Content keys of what they answered (released when decided).
    keys: list[str]
    #: ``time.monotonic()`` when they count as arrived, the connection still being up.
    due: float


@dataclass(slots=True)
class _Confirmation:
    """Answers whose grace is over, to confirm in the next group commit (no transaction of their own:
    on SQLite a second writer would make the MOs' batches wait for the lock)."""

    answers: list[_Answers]


#: What the group commit takes: MOs and parts to store, answers to confirm.
_Item = _Arrival | _Confirmation


@dataclass(slots=True)
class _Written:
    """What one committed transaction did with its batch's arrivals."""

    #: Per arrival: new in the store (False: a redelivery of what is stored already).
    new: list[bool]
    #: The MOs stored, assembled ones included, with what the store made of them.
    stored: list[tuple[InboundMO, IngestedMO]]
    #: The keyword answers queued with them, announced once committed.
    mts_queued: list[Queued]
    #: Per bind connection of the batch: (bind, generation, answer id, arrival indexes).
    answers: list[tuple[str, int, int, list[int]]] = field(default_factory=list)


def _writer(item: _Item) -> str:
    """Whose MO (or part) it is: one subscriber's stay in one batch of a burst, in order, so that what
    they wrote (a BAJA, then an ALTA) is stored in the order they wrote it."""
    return item.unit.msisdn if isinstance(item, _Arrival) else ""


def _by_connection(batch: Sequence[_Arrival]) -> dict[tuple[str, int], list[int]]:
    """The batch's arrivals (their indexes) per bind connection (bind, generation): one answer each."""
    connections: dict[tuple[str, int], list[int]] = {}
    for index, arrival in enumerate(batch):
        connections.setdefault((arrival.unit.bind, arrival.generation), []).append(index)
    return connections


def _answers(
    answer_ids: Sequence[int], connections: Mapping[tuple[str, int], list[int]]
) -> list[tuple[str, int, int, list[int]]]:
    """(bind, generation, answer id, arrival indexes) per connection, its answer id given in order."""
    return [
        (bind, generation, answer_id, indexes)
        for answer_id, ((bind, generation), indexes) in zip(answer_ids, connections.items(), strict=True)
    ]


class MOPipeline:
    """Turns inbound PDUs into committed MOs. ``run_loop`` must run (the daemon's TaskGroup)."""

    def __init__(
        self,
        store: Store,
        events: EventPublisher,
        *,
        keywords_for: Callable[[str], KeywordSet],
        router: MORouter | None = None,
        outbox: Outbox | None = None,
        banned_replies: Mapping[str, str] | None = None,
        reassembly_timeout: float = 120.0,
        answer_deadline: float = 5.0,
        max_batch: int = 2000,
        on_batch: BatchObserver | None = None,
        on_committed: Callable[[Sequence[InboundMO], int], None] | None = None,
        on_incomplete: Callable[[str], None] | None = None,
        on_refused: RefusalObserver | None = None,
        on_in_transaction: Callable[[str], None] | None = None,
        commit_retry_window: float = 4.0,
        health: LoopHealth | None = None,
        webhooks: WebhookTargets | None = None,
    ) -> None:
        self._store = store
        self._events = events
        self._keywords_for = keywords_for
        #: Gives each MO its service; the daemon swaps its table on reload.
        self.router = router or MORouter()
        #: Queues the keyword answers in the MOs' own commit and announces them after it.
        self._outbox = outbox or Outbox(OutboxSettings())
        #: Per service, the answer a banned client's MO gets (``[[services]] banned_reply``); the daemon
        #: swaps it on reload.
        self.banned_replies: Mapping[str, str] = banned_replies or {}
        self._reassembly_timeout = timedelta(seconds=reassembly_timeout)
        self._answer_deadline = answer_deadline
        self._on_committed = on_committed
        self._on_incomplete = on_incomplete
        self._on_refused = on_refused
        #: Told the reason (``NeedsTransaction.Reason``) of a plain batch given to a transaction.
        self._on_in_transaction = on_in_transaction
        self._commit_retry_window = commit_retry_window
        self._health = health or LoopHealth()
        #: The subscriptions whose deliveries are queued with the MOs (none: nothing queued).
        self._webhooks = webhooks or WebhookTargets(store.webhook_queue)
        self._committer: GroupCommitter[_Item, int] = GroupCommitter(
            self._commit_batch,
            max_batch=max_batch,
            max_pending=max(50_000, max_batch),
            on_batch=on_batch,
            name="mo.group-commit",
            concurrency=store.concurrent_writers,
            split_from=SPLIT_FROM,
            split_by=_writer,
        )
        self._keyword_sets: dict[str, KeywordSet] = {}
        #: Per bind: how many times its connection was lost (answers given before are then in doubt).
        self._generations: dict[str, int] = {}
        #: Content keys in flight (arrived, answer not decided yet), with what arrived since with the
        #: same content and waits (None: nothing waits).
        self._in_flight: dict[str, list[tuple[_Arrival, asyncio.Future[int]]] | None] = {}
        self._settling: deque[_Answers] = deque()
        self._settle_wakeup = asyncio.Event()
        #: When the first stored part still waiting for its message times out (None: none known).
        self._parts_deadline: datetime | None = None
        self._reassembly_wakeup = asyncio.Event()
        #: Committed MOs whose events are still to be published (see :meth:`_event_loop`).
        self._unpublished: list[tuple[InboundMO, IngestedMO]] = []
        self._unannounced: list[Queued] = []
        self._publish_wakeup = asyncio.Event()
        self._closing = False
        self._drained = False
        self.received = 0
        self.stored = 0
        self.duplicates = 0
        self.temporary_failures = 0
        #: MOs and parts refused with a permanent error because the database would not store them.
        self.rejected = 0

    # --- the bind-facing side ------------------------------------------------------------------------

    def accept(self, bind: BindInfo, pdu: DeliverSM | DataSM) -> int | asyncio.Future[int]:
        """Handle one MO (or part of one): its response's command_status, now or (a future) once
        committed (no task per PDU)."""
        if self._closing:
            return CommandStatus.ESME_RX_T_APPN
        self.received += 1
        info, payload = user_data(pdu)
        now = datetime.now(UTC)
        unit: Unit
        try:
            if info is None:
                unit = build_inbound(bind, pdu, payload, pdu.data_coding, self._keywords(bind.country), now)
            else:
                unit = build_part(bind, pdu, info, payload, now)
        except UnusableMO as error:
            self._refuse(bind, error)
            return error.status
        return self._admit(_Arrival(unit, self._generations.get(bind.bind, 0), time.monotonic()))

    def bind_state(self, carrier: str, bind: str, up: bool, *, unbound: bool = False) -> None:
        """A bind's connection came up or was lost. Answers given on a lost connection within
        :data:`ANSWER_GRACE` (or not given at all: their PDU's commit ends after the loss) may never
        have arrived: they stay unconfirmed, so the SMSC's redelivery of their MOs is recognised.
        ``unbound``: the connection ended with the SMSC answering our unbind (a stop, a reload), so it
        read every answer written before: those are confirmed at once, and the same text sent again
        after a restart is a new MO."""
        if up:
            return
        self._generations[bind] = self._generations.get(bind, 0) + 1
        given = [answers for answers in self._settling if answers.bind == bind]
        if not given:
            return
        self._settling = deque(answers for answers in self._settling if answers.bind != bind)
        if unbound:
            self._confirm_now(given)
            return
        in_doubt = given
        # INFO: the bind's own loss is the warning
        log_event(
            log,
            "mo.answers_in_doubt",
            carrier=carrier,
            bind=bind,
            mos=sum(len(answers.keys) for answers in in_doubt),
            reason="connection closed right after they were answered",
        )
        for answers in in_doubt:
            self._release(answers.keys)

    def _confirm_now(self, answers: list[_Answers]) -> None:
        """Confirm ``answers`` in the next group commit, before their grace is over."""
        keys = [key for given in answers for key in given.keys]
        try:
            confirmation = self._committer.submit_nowait(_Confirmation(answers))
        except (CommitterClosed, CommitterFull):  # left unconfirmed: the safe side
            self._release(keys)
            return

        def decided(done: asyncio.Future[int]) -> None:
            if not done.cancelled():
                done.exception()  # a failed confirmation leaves them unconfirmed: the safe side
            self._release(keys)

        confirmation.add_done_callback(decided)

    def _keywords(self, country: str) -> KeywordSet:
        keywords = self._keyword_sets.get(country)
        if keywords is None:
            keywords = self._keyword_sets[country] = self._keywords_for(country)
        return keywords

    def _refuse(self, bind: BindInfo, error: UnusableMO) -> None:
        reason = "source" if error.status == CommandStatus.ESME_RINVSRCADR else "destination"
        log_event(log, "mo.refused", logging.WARNING, carrier=bind.carrier, bind=bind.bind, reason=str(error))
        if self._on_refused is not None:
            self._on_refused(bind.carrier, reason)

    def _admit(self, arrival: _Arrival) -> int | asyncio.Future[int]:
        """Queue the arrival for the group commit, unless the same content is in flight already: then
        it waits until that one's answer is decided (stored as new, or matched as its redelivery)."""
        key = arrival.unit.dedup_key
        if key in self._in_flight:
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            waiting = self._in_flight[key]
            if waiting is None:
                self._in_flight[key] = [(arrival, future)]
            else:
                waiting.append((arrival, future))
            return future
        self._in_flight[key] = None
        return self._submit(arrival)

    def _submit(self, arrival: _Arrival) -> int | asyncio.Future[int]:
        """Hand the arrival to the group commit: the future holds ``ESME_ROK`` once it is committed (a
        redelivery included), ``ESME_RX_T_APPN`` when the database stayed away (the SMSC delivers it
        again later)."""
        try:
            return self._committer.submit_nowait(arrival)
        except CommitterClosed:
            pass
        except CommitterFull as error:
            self.temporary_failures += 1
            log_event(log, "mo.backlog_full", logging.WARNING, carrier=arrival.unit.carrier, error=str(error))
        self._release((arrival.unit.dedup_key,))
        return CommandStatus.ESME_RX_T_APPN

    def _release(self, keys: Sequence[str]) -> None:
        """The answers for these contents are decided: the next arrival waiting on each goes ahead."""
        in_flight = self._in_flight
        for key in keys:
            waiting = in_flight.pop(key, None)
            if not waiting:
                continue
            (arrival, future), rest = waiting[0], waiting[1:]
            in_flight[key] = rest or None
            _resolve_with(future, self._submit(arrival))

    # --- loops ---------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """MOs (and confirmations) waiting to be committed."""
        return self._committer.pending

    async def run_loop(self) -> None:
        """The group committer, the answer confirmations and the reassembly timer; returns after
        :meth:`close` has drained them."""
        async with asyncio.TaskGroup() as group:
            committing = group.create_task(self._committer.run_loop(), name="mo.group-commit")
            group.create_task(self._settle_loop(), name="mo.settle")
            group.create_task(self._reassembly_loop(), name="mo.reassembly")
            group.create_task(self._event_loop(), name="mo.events")
            await committing
            self._drained = True
            self._settle_wakeup.set()
            self._publish_wakeup.set()

    def close(self) -> None:
        """Stop taking MOs: the committer drains; stored parts wait for the next run."""
        self._closing = True
        self._reassembly_wakeup.set()

    async def _settle_loop(self) -> None:
        """Confirms each batch's answers once their grace is over, the connection still up."""
        next_round = time.monotonic()
        while True:
            settling = self._settling
            if self._drained:
                # shutting down: what is not confirmed yet stays unconfirmed (on the safe side)
                self._settling = deque()
                for answers in settling:
                    self._release(answers.keys)
                self._release(list(self._in_flight))
                return
            now = time.monotonic()
            if not settling or max(settling[0].due, next_round) > now:
                delay = max(settling[0].due, next_round) - now if settling else None
                self._settle_wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._settle_wakeup.wait(), delay)
                continue
            due: list[_Answers] = []
            while settling and settling[0].due <= now:
                due.append(settling.popleft())
            next_round = now + CONFIRM_INTERVAL
            # a confirmation that fails (database away, committer closed) leaves them unconfirmed: on
            # the safe side, the same texts within the redelivery window count as redelivered
            with contextlib.suppress(CommitterClosed):
                await self._committer.submit(_Confirmation(due))
            for answers in due:
                self._release(answers.keys)

    async def _reassembly_loop(self) -> None:
        """Stores as incomplete the long MOs whose parts stopped coming, and drops what the redelivery
        window no longer needs. Reads the store, so parts stored before a restart count."""
        upkeep_at = time.monotonic()
        while not self._closing:
            if time.monotonic() >= upkeep_at:
                await self._upkeep()
                upkeep_at = time.monotonic() + UPKEEP_INTERVAL
                continue
            delay = upkeep_at - time.monotonic()
            if self._parts_deadline is not None:
                delay = min(delay, (self._parts_deadline - datetime.now(UTC)).total_seconds())
            if delay <= 0:
                await self._flush_expired()
                continue
            # no await since the loop's test: a close() or a new deadline from now on wakes the wait
            self._reassembly_wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reassembly_wakeup.wait(), delay)
        self._committer.close()

    async def _upkeep(self) -> None:
        now = datetime.now(UTC)
        try:
            async with self._store.transaction() as session:
                await forget_unconfirmed(session, now - REDELIVERY_WINDOW)
                await forget_assembled_parts(session, now - REDELIVERY_WINDOW)
                oldest = await oldest_waiting_part(session)
        except Exception as error:
            log_event(log, "mo.upkeep_failed", logging.WARNING, error=describe_error(error))
            return
        self._parts_deadline = None if oldest is None else oldest + self._reassembly_timeout

    async def _flush_expired(self) -> None:
        """Store as one MO flagged incomplete each message whose first part is older than the timeout."""
        try:
            stored, mts_queued, oldest = await ride_out(
                self._flush_once,
                self._commit_retry_window,
                retry_if=lambda error: not is_data_error(error),
                again_at_once_if=_closed_meanwhile,
            )
        except Exception as error:
            log_event(log, "mo.flush_failed", logging.WARNING, error=describe_error(error))
            self._parts_deadline = datetime.now(UTC) + timedelta(seconds=FLUSH_RETRY)
            return
        self._parts_deadline = None if oldest is None else oldest + self._reassembly_timeout
        for mo, _ in stored:
            if mo.incomplete:
                log_event(
                    log,
                    "mo.incomplete",
                    logging.WARNING,
                    carrier=mo.carrier,
                    parts=f"{mo.parts_received}/{mo.parts_total}",
                    reason="timeout",
                )
                if self._on_incomplete is not None:
                    self._on_incomplete(mo.carrier)
        self._published(stored, 0, mts_queued)

    async def _flush_once(self) -> tuple[list[tuple[InboundMO, IngestedMO]], list[Queued], datetime | None]:
        now = datetime.now(UTC)
        async with self._store.transaction() as session:
            expired = await expired_part_sets(session, now - self._reassembly_timeout)
            stored: list[tuple[InboundMO, IngestedMO]] = []
            mts_queued: list[Queued] = []
            if expired:
                await self._store.mo_parts.lock(session, expired)
                # read again under the lock: another daemon may have assembled some meanwhile
                waiting = await waiting_parts(session, expired)
                stored, mts_queued = await self._assemble(session, list(waiting.values()), now)
            return stored, mts_queued, await oldest_waiting_part(session)

    # --- the group commit ----------------------------------------------------------------------------

    async def _commit_batch(self, batch: Sequence[_Item]) -> list[int]:
        """One transaction for the batch, tried again through a database blip shorter than
        ``commit_retry_window``; each arrival's response status (ignored for a confirmation)."""
        deadline = asyncio.get_running_loop().time() + self._commit_retry_window
        return await self._commit_or_split(batch, deadline)

    async def _commit_or_split(self, batch: Sequence[_Item], deadline: float) -> list[int]:
        """Commit ``batch``. When the database refuses its data, each half is committed on its own,
        down to the one arrival it refuses (answered ``ESME_RX_P_APPN``: it would be refused again).
        When the database stays away until ``deadline``, the batch is answered ``ESME_RX_T_APPN``."""
        window = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            written = await ride_out(
                lambda: self._commit_once(batch),
                window,
                self._failed_commit,
                retry_if=lambda error: not is_data_error(error),
                again_at_once_if=_closed_meanwhile,
            )
        except Exception as error:
            if not is_data_error(error):
                return self._failed(batch, error)
            if len(batch) == 1:
                return [self._reject(batch[0], error)]
            middle = len(batch) // 2
            first = await self._commit_or_split(batch[:middle], deadline)
            return first + await self._commit_or_split(batch[middle:], deadline)
        self._health.succeeded("mo.commit")
        await self._committed([item for item in batch if isinstance(item, _Arrival)], written)
        return [CommandStatus.ESME_ROK] * len(batch)

    def _failed_commit(self, error: BaseException) -> None:
        """A try of a batch failed: the database is away (health), refuses its data (split), or an
        operator closed one of its conversations meanwhile (tried again at once)."""
        if isinstance(error, ClosedMeanwhile):
            log_event(
                log,
                "mo.batch_retried",
                logging.INFO,
                reason="conversation_closed",
                conversations=len(error.conversation_ids),
                action="tried again at once: the MOs go to the pair's next conversation",
            )
        elif not is_data_error(error):
            self._health.failed("mo.commit", error)

    def _declined(self, declined: NeedsTransaction) -> None:
        """A plain batch turned out to need a transaction (stored in one at once)."""
        if self._on_in_transaction is not None:
            self._on_in_transaction(declined.reason)
        if declined.reason == NeedsTransaction.Reason.CLOSED_MEANWHILE:
            log_event(
                log,
                "mo.batch_retried",
                logging.INFO,
                reason="conversation_closed",
                action="tried again at once: the MOs go to the pair's next conversation",
            )
        else:
            log.debug("an MO batch needs a transaction: %s", declined.reason)

    def _failed(self, batch: Sequence[_Item], error: BaseException) -> list[int]:
        arrivals = [item for item in batch if isinstance(item, _Arrival)]
        self.temporary_failures += len(arrivals)
        log_event(
            log,
            "mo.commit_failed",
            logging.WARNING,
            mos=len(arrivals),
            error=describe_error(error),
            action="answered ESME_RX_T_APPN: the SMSC delivers them again",
        )
        # whether the commit went through is unknown: their answers stay unconfirmed in the store
        self._release([arrival.unit.dedup_key for arrival in arrivals])
        return [CommandStatus.ESME_RX_T_APPN] * len(batch)

    def _reject(self, item: _Item, error: BaseException) -> int:
        if isinstance(item, _Confirmation):  # a DELETE by id refused: left unconfirmed (the safe side)
            return self._failed([item], error)[0]
        self.rejected += 1
        unit = item.unit
        log_event(
            log,
            "mo.rejected",
            logging.ERROR,
            carrier=unit.carrier,
            bind=unit.bind,
            data_coding=unit.data_coding,
            part=isinstance(unit, InboundPart),
            error=describe_error(error),
            action="answered ESME_RX_P_APPN: the database refuses it, the SMSC must not deliver it again",
        )
        if self._on_refused is not None:
            self._on_refused(unit.carrier, "data_error")
        self._release((unit.dedup_key,))
        return CommandStatus.ESME_RX_P_APPN

    async def _commit_once(self, batch: Sequence[_Item]) -> _Written:
        now = datetime.now(UTC)
        confirmed = [
            answers.answer_id for item in batch if isinstance(item, _Confirmation) for answers in item.answers
        ]
        arrivals = [item for item in batch if isinstance(item, _Arrival)]
        alone = self._store.mos_alone
        if alone is not None and not confirmed:
            rows = self._plain_rows(arrivals)
            if rows is not None:
                written = await self._write_alone(alone, arrivals, rows, now)
                if written is not None:
                    return written
        async with self._store.transaction() as session:
            if confirmed:
                await confirm_answers(session, confirmed)
            return await self._write_batch(session, arrivals, now)

    def _plain_rows(self, batch: Sequence[_Arrival]) -> list[NewMO] | None:
        """The batch's MO rows when all it may need besides them is what their statement sent alone
        finds out (``MOAlone``; :meth:`_assemble` does the rest): whole MOs of writers of a known
        country (their quiet hours follow from it), no reserved keyword (an opt-out, its answer), no
        billed service (a premium notice), no webhook for them. None otherwise."""
        if self._webhooks.wants(WebhookEvent.MO_RECEIVED):
            return None
        terms = self._outbox.settings.premium.terms
        rows: list[NewMO] = []
        for arrival in batch:
            unit = arrival.unit
            if not isinstance(unit, InboundMO) or unit.is_reserved or not unit.country:
                return None
            row = self._new_mo(unit, None, check_redelivery=True)
            if row.service in terms:
                return None
            rows.append(row)
        return rows

    async def _write_alone(
        self, alone: MOAlone, batch: Sequence[_Arrival], rows: list[NewMO], now: datetime
    ) -> _Written | None:
        """:meth:`_write_batch` of a plain batch (``rows``: :meth:`_plain_rows`) by one statement
        committed as it ends; None (nothing stored) when the batch needs a transaction after all."""
        connections = _by_connection(batch)
        quiet_writers = self._outbox.msisdns_in_quiet_hours(((row.country, row.msisdn) for row in rows), now)
        async with alone.connection() as connection:
            answer_ids = await alone.answer_ids(connection, len(connections))
            answers = _answers(answer_ids, connections)
            for _, _, answer_id, indexes in answers:
                for index in indexes:
                    rows[index].answer_id = answer_id
            try:
                ingested = await alone.ingest(
                    connection,
                    rows,
                    [(answer_id, bind, now) for bind, _, answer_id, _ in answers],
                    now,
                    held_for=quiet_writers,
                    banned_need_transaction=bool(self.banned_replies),
                )
            except NeedsTransaction as declined:
                self._declined(declined)
                return None
        mos = [arrival.unit for arrival in batch if isinstance(arrival.unit, InboundMO)]
        stored = [(mo, result) for mo, result in zip(mos, ingested, strict=True) if result.mo_id is not None]
        new = [result.mo_id is not None for result in ingested]
        return _Written(new=new, stored=stored, mts_queued=[], answers=answers)

    async def _committed(self, batch: Sequence[_Arrival], written: _Written) -> None:
        """Counters, events and the answers' confirmation, once the batch is committed."""
        duplicates = written.new.count(False)
        self.duplicates += duplicates
        answered = time.monotonic()
        released: list[str] = []
        for bind, generation, answer_id, indexes in written.answers:
            # a redelivery's answer is now the answer of what it delivers again: decided the same way
            keys = [batch[index].unit.dedup_key for index in indexes]
            lost = self._generations.get(bind, 0) != generation
            late = any(answered - batch[index].arrived > self._answer_deadline for index in indexes)
            if lost or late:
                # the connection is gone, or the SMSC may have stopped waiting: left unconfirmed
                released.extend(keys)
                continue
            self._settling.append(_Answers(answer_id, bind, generation, keys, answered + ANSWER_GRACE))
        self._settle_wakeup.set()
        self._release(released)
        self._note_parts(batch, written)
        self._published(written.stored, duplicates, written.mts_queued)

    def _note_parts(self, batch: Sequence[_Arrival], written: _Written) -> None:
        """Parts stored in this batch may start a message: wake the timer if it now times out sooner."""
        earliest: datetime | None = None
        for arrival, new in zip(batch, written.new, strict=True):
            if new and isinstance(arrival.unit, InboundPart):
                at = arrival.unit.received_at
                earliest = at if earliest is None else min(earliest, at)
        if earliest is None:
            return
        deadline = earliest + self._reassembly_timeout
        if self._parts_deadline is None or deadline < self._parts_deadline:
            self._parts_deadline = deadline
            self._reassembly_wakeup.set()

    def _published(
        self, stored: Sequence[tuple[InboundMO, IngestedMO]], duplicates: int, mts_queued: Sequence[Queued]
    ) -> None:
        """Counters now; the MOs' events and the keyword answers' announcement (which wakes the
        sender) once the MOs' answers are out (the event loop runs the answers' callbacks, queued when
        the batch's futures are resolved, before :meth:`_event_loop` gets to them)."""
        self.stored += len(stored)
        if self._on_committed is not None:
            self._on_committed([mo for mo, _ in stored], duplicates)
        if stored or mts_queued:
            self._unpublished.extend(stored)
            self._unannounced.extend(mts_queued)
            self._publish_wakeup.set()

    async def _event_loop(self) -> None:
        """Publishes the committed MOs' events after their answers: never on the way to a
        ``deliver_sm_resp``. Ends once the group commit is drained and everything is published."""
        while True:
            if not self._unpublished and not self._unannounced:
                if self._drained:
                    return
                self._publish_wakeup.clear()
                await self._publish_wakeup.wait()
                # woken as a batch was committed: its answers' callbacks go first
                await asyncio.sleep(0)
                continue
            stored, self._unpublished = self._unpublished, []
            queued, self._unannounced = self._unannounced, []
            for mo, result in stored:
                subscriber = result.subscriber
                await self._events.mo(mo, result.mo_id or 0, subscriber.client_id, result.conversation_id)
            await self._outbox.announce(queued)  # after the MOs they answer

    async def _write_batch(self, session: AsyncSession, batch: Sequence[_Arrival], now: datetime) -> _Written:
        """Store the batch: its answers (unconfirmed), its parts and the messages they complete, its
        whole MOs; redeliveries are left out."""
        connections = _by_connection(batch)
        answer_ids = await self._store.mos.open_answers(session, [bind for bind, _ in connections], now)
        answers = _answers(answer_ids, connections)
        answer_of: list[int | None] = [None] * len(batch)
        for _, _, answer_id, indexes in answers:
            for index in indexes:
                answer_of[index] = answer_id
        new = [True] * len(batch)
        part_indexes = [index for index, arrival in enumerate(batch) if isinstance(arrival.unit, InboundPart)]
        complete: list[list[StoredPart]] = []
        if part_indexes:
            complete = await self._store_parts(session, batch, part_indexes, answer_of, new, now)
        mo_indexes = [index for index, arrival in enumerate(batch) if isinstance(arrival.unit, InboundMO)]
        whole = [(batch[index].unit, answer_of[index]) for index in mo_indexes]
        stored, mts_queued = await self._assemble(session, complete, now, whole=whole, new=new, at=mo_indexes)
        return _Written(new=new, stored=stored, mts_queued=mts_queued, answers=answers)

    async def _store_parts(
        self,
        session: AsyncSession,
        batch: Sequence[_Arrival],
        indexes: Sequence[int],
        answer_of: Sequence[int | None],
        new: list[bool],
        now: datetime,
    ) -> list[list[StoredPart]]:
        """Store the batch's parts (``new`` set to False for those stored already); the parts of every
        message they complete."""
        parts: list[InboundPart] = []
        rows: list[NewPart] = []
        for index in indexes:
            part = batch[index].unit
            assert isinstance(part, InboundPart)
            parts.append(part)
            rows.append(_new_part(part, answer_of[index]))
        await self._store.mo_parts.lock(session, [part.set_key for part in parts])
        stored = await store_parts(session, rows, now)
        for index, was_stored in zip(indexes, stored, strict=True):
            new[index] = was_stored
        touched = sorted({part.set_key for part, was_stored in zip(parts, stored, strict=True) if was_stored})
        if not touched:
            return []
        waiting = await waiting_parts(session, touched)
        return [
            parts for parts in waiting.values() if len({part.part_no for part in parts}) == parts[0].total
        ]

    async def _assemble(
        self,
        session: AsyncSession,
        sets: Sequence[Sequence[StoredPart]],
        now: datetime,
        *,
        whole: Sequence[tuple[Unit, int | None]] = (),
        new: list[bool] | None = None,
        at: Sequence[int] = (),
    ) -> tuple[list[tuple[InboundMO, IngestedMO]], list[Queued]]:
        """Store the whole MOs (``new[at[i]]`` set to False for a redelivery of ``whole[i]``) and one MO
        per set of stored parts; the MOs stored and the reserved keyword confirmations queued."""
        assembled = [self._assembled(parts, now) for parts in sets]
        mos: list[InboundMO] = []
        rows: list[NewMO] = []
        for unit, answer_id in whole:
            assert isinstance(unit, InboundMO)
            mos.append(unit)
            rows.append(self._new_mo(unit, answer_id, check_redelivery=True))
        for mo in assembled:
            mos.append(mo)
            rows.append(self._new_mo(mo, None, check_redelivery=False))
        quiet_writers = self._outbox.msisdns_in_quiet_hours(((row.country, row.msisdn) for row in rows), now)
        ingested = await self._store.mos.ingest(session, rows, now, held_for=quiet_writers)
        if new is not None:
            for index, result in zip(at, ingested, strict=False):
                new[index] = result.mo_id is not None
        done = [
            (result.mo_id, [part.id for part in parts])
            for parts, result in zip(sets, ingested[len(whole) :], strict=True)
            if result.mo_id is not None
        ]
        await mark_assembled(session, done)
        stored = [(mo, result) for mo, result in zip(mos, ingested, strict=True) if result.mo_id is not None]
        # a writer the ingest found without held pushes needs no release statement (nearly all, at night)
        writers = [
            (result.subscriber.id, result.subscriber.country, mo.msisdn)
            for mo, result in stored
            if result.held_pushes is not False
        ]
        await self._outbox.release_held(session, writers, now)
        occurrences: list[Occurrence] = []
        if self._webhooks.wants(WebhookEvent.MO_RECEIVED):
            occurrences.extend(_mo_received(mo, result) for mo, result in stored)
        reserved = [(mo, result) for mo, result in stored if mo.is_reserved]
        mts_queued = await self._reserved_keywords(session, reserved, now, occurrences) if reserved else []
        banned = [(mo, result) for mo, result in stored if result.subscriber.banned and not mo.is_reserved]
        if banned and self.banned_replies:
            mts_queued += await self._banned_replies(session, banned, now)
        terms = self._outbox.settings.premium.terms
        if terms:  # no billed service: not even this look
            # a client opted out (as of their MO, a BAJA earlier in the batch included) or banned gets
            # no notice; an MO-billed service still counts their MO (quiet)
            opted_out = _opted_out_as_of(stored)
            billed = [
                (mo, result, result.subscriber.banned or opted_out[index])
                for index, (mo, result) in enumerate(stored)
                if result.mo.service in terms and not mo.is_reserved
            ]
            billed = [
                (mo, result, quiet)
                for mo, result, quiet in billed
                if not quiet or terms[result.mo.service or ""].billed is Billed.MO
            ]
            if billed:
                mts_queued += await self._premium_terms(session, billed, now)
        if occurrences:
            # each opt-out / opt-in right after its own MO: a client's events in the order they happened
            position = {result.mo_id: index for index, (_, result) in enumerate(stored)}
            occurrences.sort(key=lambda occurrence: position.get(occurrence.payload["mo_id"], len(position)))
            await self._webhooks.enqueue(session, occurrences, now)
        return stored, mts_queued

    def _assembled(self, parts: Sequence[StoredPart], now: datetime) -> InboundMO:
        """The MO the stored parts of one message make: complete, or flagged incomplete."""
        first_of_number: dict[int, StoredPart] = {}
        for part in parts:
            first_of_number.setdefault(part.part_no, part)
        numbers = sorted(first_of_number)
        head = first_of_number[numbers[0]]  # part 1 when it came: its coding is the message's
        latest = max(parts, key=lambda part: part.received_at)  # the bind a reply should leave by
        country = head.country or ""
        return inbound_mo(
            head.carrier,
            latest.bind_name or "",
            country,
            head.msisdn,
            head.short_code,
            b"".join(first_of_number[number].payload for number in numbers),
            head.data_coding,
            self._keywords(country),
            now,
            reference=head.reference,
            parts_total=head.total,
            parts_received=len(numbers),
        )

    def _new_mo(self, mo: InboundMO, answer_id: int | None, *, check_redelivery: bool) -> NewMO:
        route = self.router.route_of(mo)
        return NewMO(
            dedup_key=mo.dedup_key,
            msisdn=mo.msisdn,
            carrier=mo.carrier,
            short_code=mo.short_code,
            text=mo.text,
            received_at=mo.received_at,
            country=mo.country,
            data_coding=mo.data_coding,
            parts=mo.parts_total,
            incomplete=mo.incomplete,
            bind_name=mo.bind or None,
            service=route.service,
            operator_pool=route.operator_pool,
            callcentre=route.callcentre,
            keyword=mo.keyword.keyword if mo.keyword else None,
            opens_conversation=not mo.is_reserved,
            raw=mo.raw,
            answer_id=answer_id,
            check_redelivery=check_redelivery,
        )

    async def _reserved_keywords(
        self,
        session: AsyncSession,
        reserved: Sequence[tuple[InboundMO, IngestedMO]],
        now: datetime,
        occurrences: list[Occurrence],
    ) -> list[Queued]:
        """BAJA / STOP / ALTA / help: record the opt-out or opt-in (and its webhook ``occurrences``), queue
        the confirmation MT through the outbox in this transaction (announced after the commit). The
        recipient rule lets the gateway's own answers (``SYSTEM``) reach an opted-out subscriber, so the
        confirmation of an opt-out goes."""
        confirmations: list[MTRequest] = []
        opted_out = {result.subscriber.id: result.subscriber.opted_out for _, result in reserved}
        newly_opted_out: list[IngestedMO] = []
        for mo, result in reserved:
            assert mo.keyword is not None and result.mo_id is not None
            subscriber_id = result.subscriber.id
            if mo.keyword.kind in (KeywordKind.OPT_IN, KeywordKind.OPT_OUT):
                wanted = mo.keyword.kind is KeywordKind.OPT_OUT
                await set_opted_out(session, subscriber_id, wanted, now)
                if opted_out[subscriber_id] != wanted:
                    # only these MOs take the audit head's lock: the chat MOs of the batch never do
                    await append_audit(session, _opt_entry(mo, result.subscriber.client_id, wanted), now=now)
                    opted_out[subscriber_id] = wanted
                    if wanted:
                        newly_opted_out.append(result)
                    occurrences.append(
                        opt_changed(
                            opted_out=wanted,
                            client_id=result.subscriber.client_id,
                            msisdn=mo.msisdn,
                            short_code=mo.short_code,
                            keyword=mo.keyword.keyword,
                            mo_id=result.mo_id,
                            at=now,
                        )
                    )
            confirmations.append(
                MTRequest(
                    to=mo.msisdn,
                    text=reply_template(mo.keyword.kind, mo.country),
                    kind=MTKind.SYSTEM,
                    priority=10,
                    subscriber_id=subscriber_id,
                    mo=self._answered(mo, result.mo_id),
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
        await count_opt_outs(session, newly_opted_out, now)
        return await self._queue_answers(session, confirmations, now)

    def _answered(self, mo: InboundMO, mo_id: int) -> AnsweredMO:
        return AnsweredMO(
            id=mo_id,
            carrier=mo.carrier,
            bind_name=mo.bind or None,
            short_code=mo.short_code,
            text=mo.text,
            received_at=mo.received_at,
            country=mo.country or None,
            service=self.router.service_of(mo),
        )

    async def _banned_replies(
        self, session: AsyncSession, banned: Sequence[tuple[InboundMO, IngestedMO]], now: datetime
    ) -> list[Queued]:
        """The service's ``banned_reply`` to banned clients' MOs, queued in this transaction: at most
        one per client per :data:`BANNED_REPLY_INTERVAL` (none if one went out, or is queued, since)."""
        subscriber_ids = sorted({result.subscriber.id for _, result in banned})
        answered_lately = set(
            (
                await session.execute(
                    select(MTMessage.subscriber_id).where(
                        among(MTMessage.subscriber_id, subscriber_ids),
                        MTMessage.kind == MTKind.BAN_NOTICE,
                        MTMessage.created_at >= now - BANNED_REPLY_INTERVAL,
                    )
                )
            ).scalars()
        )
        replies: list[MTRequest] = []
        for mo, result in banned:
            text = self.banned_replies.get(self.router.service_of(mo))
            if text is None or result.subscriber.id in answered_lately or result.mo_id is None:
                continue
            answered_lately.add(result.subscriber.id)
            replies.append(
                MTRequest(
                    to=mo.msisdn,
                    text=text,
                    kind=MTKind.BAN_NOTICE,
                    priority=10,
                    subscriber_id=result.subscriber.id,
                    mo=self._answered(mo, result.mo_id),
                )
            )
        return await self._queue_answers(session, replies, now) if replies else []

    async def _premium_terms(
        self, session: AsyncSession, billed: Sequence[tuple[InboundMO, IngestedMO, bool]], now: datetime
    ) -> list[Queued]:
        """The chat MOs of billed services applied to their clients' premium accounts
        (``gatewayd.premium``): the price notices and spend-step notices queued in this transaction as
        ``SYSTEM`` MTs answering their MO (before any operator can answer it), each audited with its MT."""
        chat = [
            ChatMO(
                index,
                result.subscriber.id,
                result.subscriber.client_id,
                result.mo.service or "",
                mo.short_code,
                mo.text,
                mo.country or None,
                mo.carrier,
                quiet,
            )
            for index, (mo, result, quiet) in enumerate(billed)
        ]
        notices = await Premium(self._outbox.settings.premium).after_mos(session, chat, now)
        if not notices:
            return []
        requests = []
        for notice in notices:
            mo, result, _ = billed[notice.index]
            assert result.mo_id is not None
            requests.append(
                MTRequest(
                    to=mo.msisdn,
                    text=notice.text,
                    kind=MTKind.SYSTEM,
                    priority=10,
                    subscriber_id=result.subscriber.id,
                    conversation_id=result.conversation_id,  # in the thread the operator reads
                    mo=self._answered(mo, result.mo_id),
                    extra_variables=tuple(notice.variables.items()),
                )
            )
        outcomes: list[Queued | None] = []
        try:
            batch = await self._outbox.queue_in(session, requests, now)
            outcomes = [outcome if isinstance(outcome, Queued) else None for outcome in batch.outcomes]
        except OutboxError:
            for request in requests:  # as _queue_answers: the one that cannot go is logged, the others go
                try:
                    outcome = (await self._outbox.queue_in(session, [request], now)).outcomes[0]
                except OutboxError as error:
                    log_event(log, "mo.premium_notice_not_queued", logging.WARNING, reason=str(error))
                    outcome = None
                outcomes.append(outcome if isinstance(outcome, Queued) else None)
        await Premium.audit(
            session,
            [
                (notice, outcome.mt_id if outcome is not None else None)
                for notice, outcome in zip(notices, outcomes, strict=True)
            ],
            now,
        )
        return [outcome for outcome in outcomes if outcome is not None]

    async def _queue_answers(
        self, session: AsyncSession, answers: list[MTRequest], now: datetime
    ) -> list[Queued]:
        """Queues the automatic answers of a batch's MOs in its transaction."""
        confirmations = answers
        try:
            return (await self._outbox.queue_in(session, confirmations, now)).queued
        except OutboxError:
            # One answer the outbox cannot send (nothing was written) must not fail the MOs' commit,
            # which would be tried again and again: the others go, that one is logged.
            queued: list[Queued] = []
            for request in confirmations:
                try:
                    queued += (await self._outbox.queue_in(session, [request], now)).queued
                except OutboxError as error:
                    log_event(log, "mo.keyword_answer_not_queued", logging.WARNING, reason=str(error))
            return queued


def _mo_received(mo: InboundMO, result: IngestedMO) -> Occurrence:
    assert result.mo_id is not None
    return mo_received(
        mo_id=result.mo_id,
        client_id=result.subscriber.client_id,
        msisdn=mo.msisdn,
        short_code=mo.short_code,
        service=result.mo.service,
        carrier=mo.carrier,
        country=mo.country or None,
        keyword=mo.keyword.keyword if mo.keyword else None,
        text=mo.text,
        parts=mo.parts_total,
        conversation_id=result.conversation_id,
        received_at=mo.received_at,
    )


def _opted_out_as_of(stored: Sequence[tuple[InboundMO, IngestedMO]]) -> list[bool]:
    """Per stored MO, whether its client was opted out when it came: as their row was read, then as
    their BAJA / ALTA earlier in the batch left it (applied in the same transaction)."""
    state: dict[int, bool] = {}
    found: list[bool] = []
    for mo, result in stored:
        subscriber_id = result.subscriber.id
        keyword = mo.keyword
        if (
            mo.is_reserved
            and keyword is not None
            and keyword.kind in (KeywordKind.OPT_IN, KeywordKind.OPT_OUT)
        ):
            state[subscriber_id] = keyword.kind is KeywordKind.OPT_OUT
        found.append(state.get(subscriber_id, result.subscriber.opted_out))
    return found


def _opt_entry(mo: InboundMO, client_id: str, opted_out: bool) -> AuditEntry:
    """The audit record of a client's BAJA (``client.opt_out``) or ALTA (``client.opt_in``)."""
    return AuditEntry(
        action="client.opt_out" if opted_out else "client.opt_in",
        actor=SMS_ACTOR,
        source=mo.carrier,
        subject=f"client:{client_id}",
        details={
            "keyword": mo.keyword.keyword if mo.keyword else None,
            "short_code": mo.short_code,
            "before": {"opted_out": not opted_out},
            "after": {"opted_out": opted_out},
        },
    )


def _new_part(part: InboundPart, answer_id: int | None) -> NewPart:
    return NewPart(
        set_key=part.set_key,
        dedup_key=part.dedup_key,
        carrier=part.carrier,
        bind_name=part.bind,
        country=part.country,
        msisdn=part.msisdn,
        short_code=part.short_code,
        reference=part.reference,
        total=part.total,
        part_no=part.part_number,
        data_coding=part.data_coding,
        payload=part.payload,
        received_at=part.received_at,
        answer_id=answer_id,
    )


def _resolve_with(future: asyncio.Future[int], outcome: int | asyncio.Future[int]) -> None:
    """Settle ``future`` (a waiting arrival's answer) with ``outcome``, now or once it is done."""
    if isinstance(outcome, int):
        if not future.done():
            future.set_result(outcome)
        return

    def copy(done: asyncio.Future[int]) -> None:
        if future.done():
            return
        failed = done.cancelled() or done.exception() is not None
        future.set_result(CommandStatus.ESME_RX_T_APPN if failed else done.result())

    outcome.add_done_callback(copy)


def _closed_meanwhile(error: BaseException) -> bool:
    """The batch found a conversation open that an operator closed before it could mark it: the other
    transaction is done, so the batch is tried again without a pause (a deadlock keeps the back-off:
    two batches tried again at once may collide again in step)."""
    return isinstance(error, ClosedMeanwhile)
