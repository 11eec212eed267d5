"""Delivery receipts: correlate each to its MT part (durably, batched), derive MT final statuses, publish.

A receipt is answered (deliver_sm_resp 0) only once it is committed. Most receipts come right after
their submit_sm_resp, while the MT pipeline still holds that part's result: such a receipt is attached
to the part and written in the same transaction as the part (the MT goes ``sending`` -> ``accepted``
-> final in one update), then answered. A receipt that comes while the part's batch is being written
waits (unanswered, so nothing is lost in a crash) for that commit, up to ``PART_COMMIT_WAIT``, and is
then applied to the part by this pipeline's own group commit. A receipt whose part is not recorded by
the time it is committed (it overtook the submit_sm_resp, or the wait ran out) is stored as an early
receipt by the store and applied when the part is recorded: nothing is matched in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.batching import BatchObserver, CommitterClosed, CommitterFull, GroupCommitter, ride_out
from gatewayd.events import EventPublisher
from gatewayd.health import LoopHealth
from gatewayd.logging import log_event
from gatewayd.mo_message import BindInfo
from gatewayd.mt_policy import receipt_error_code
from gatewayd.pipeline_queries import sweep_early_receipts
from gatewayd.store.engine import concurrent_writers
from gatewayd.store.repo_mt import (
    MTStatusChange,
    PartResult,
    ReceiptIn,
    ReceiptOutcome,
    purge_early_receipts,
    record_receipts,
)
from smpp.constants import CommandStatus
from smpp.pdu import DeliverSM
from smpp.receipt import ReceiptParseError, normalise_message_id, parse_receipt

log = logging.getLogger("gatewayd.receipts")

#: Early receipts are looked at again this long after the last one arrived ...
SWEEP_WINDOW = 120.0
#: ... every this many seconds (or at once when the MT pipeline records parts).
SWEEP_INTERVAL = 0.25
#: Longest a receipt waits for its part's submit result to be committed before going the early way.
PART_COMMIT_WAIT = 2.0
#: Parts remembered as awaiting their commit; beyond this receipts simply go the early way.
MAX_PENDING_PARTS = 200_000
#: Early receipts never matched are dropped after a day.
EARLY_RECEIPT_TTL = timedelta(days=1)
PURGE_INTERVAL = 3600.0


PartKey = tuple[str, str]


@dataclass(slots=True)
class _PendingPart:
    """A part accepted by the SMSC whose result is not committed yet."""

    #: set once the part's result is in a record batch being written
    in_commit: bool = False
    #: what receipts that wait for the commit wait on, created by the first of them
    committed: asyncio.Future[None] | None = None
    #: a receipt handed to the part's own commit, and what its handler waits on
    receipt: ReceiptIn | None = None
    applied: asyncio.Future[bool] | None = None
    expiry: asyncio.TimerHandle | None = None


class PendingPartCommits:
    """Parts the SMSC accepted whose result the MT pipeline has not committed yet (by carrier and
    normalised SMSC message id). Bounded; a part never committed (the database is away) only costs its
    receipts the wait.

    A receipt for such a part is usually *attached* to it: the MT pipeline takes it with the part's
    result and writes both in one transaction, then the receipt is answered. A receipt that comes
    once the part's batch is being written (or a second receipt for the part) waits for that commit
    and goes its own way after it.
    """

    def __init__(self, *, wait_limit: float = PART_COMMIT_WAIT, max_pending: int = MAX_PENDING_PARTS) -> None:
        self._wait_limit = wait_limit
        self._max_pending = max_pending
        self._pending: dict[PartKey, _PendingPart] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def accepted(self, carrier: str, smsc_message_id: str) -> None:
        if len(self._pending) < self._max_pending:
            self._pending.setdefault((carrier, smsc_message_id), _PendingPart())

    def attach(self, receipt: ReceiptIn) -> asyncio.Future[bool] | None:
        """Hands ``receipt`` to its part's commit. The future says True once it was committed with the
        part, False when it must be recorded on its own after all (the part was not taken for writing
        within the wait limit, or its batch failed). None: the part is not pending, already being
        written, or already holds a receipt."""
        part = self._pending.get((receipt.carrier, receipt.smsc_message_id))
        if part is None or part.in_commit or part.receipt is not None:
            return None
        loop = asyncio.get_running_loop()
        part.receipt = receipt
        part.applied = loop.create_future()
        part.expiry = loop.call_later(self._wait_limit, self._detach, part)
        return part.applied

    def take(self, keys: Iterable[PartKey]) -> dict[PartKey, ReceiptIn]:
        """The MT pipeline is about to write these parts: their attached receipts go with them."""
        receipts: dict[PartKey, ReceiptIn] = {}
        for key in keys:
            part = self._pending.get(key)
            if part is None:
                continue
            part.in_commit = True
            if part.receipt is not None:
                receipts[key] = part.receipt
                if part.expiry is not None:
                    part.expiry.cancel()
        return receipts

    def committed(self, keys: Iterable[PartKey]) -> None:
        """The parts' results (and receipts taken with them) are committed."""
        for key in keys:
            part = self._pending.pop(key, None)
            if part is None:
                continue
            if part.applied is not None and not part.applied.done():
                part.applied.set_result(part.receipt is not None)
            if part.committed is not None and not part.committed.done():
                part.committed.set_result(None)

    def released(self, keys: Iterable[PartKey]) -> None:
        """Writing the parts failed (they will be written again): their receipts go their own way."""
        for key in keys:
            part = self._pending.get(key)
            if part is not None:
                part.in_commit = False
                self._detach(part)

    @staticmethod
    def _detach(part: _PendingPart) -> None:
        if part.in_commit:  # the batch holding it is being written: its outcome answers the receipt
            return
        part.receipt = None
        if part.applied is not None and not part.applied.done():
            part.applied.set_result(False)

    async def wait(self, carrier: str, smsc_message_id: str) -> bool:
        """Returns once the part is committed (at once when it is not pending); False if the wait ran out."""
        part = self._pending.get((carrier, smsc_message_id))
        if part is None:
            return True
        if part.committed is None:
            part.committed = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(part.committed), self._wait_limit)
        except TimeoutError:
            return False
        return True


class ReceiptPipeline:
    """Receipts in, part statuses and MT final statuses out; ``run_loop`` runs the group commit."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        events: EventPublisher,
        *,
        max_batch: int = 2000,
        on_batch: BatchObserver | None = None,
        on_receipt: Callable[[str, str], None] | None = None,
        on_early: Callable[[str, int], None] | None = None,
        on_changes: Callable[[Sequence[MTStatusChange]], None] | None = None,
        commit_retry_window: float = 4.0,
        health: LoopHealth | None = None,
    ) -> None:
        self._sessions = sessions
        self._health = health or LoopHealth()
        self._events = events
        self._on_receipt = on_receipt
        self._on_changes = on_changes
        self._on_early = on_early
        self._commit_retry_window = commit_retry_window
        self._committer: GroupCommitter[ReceiptIn, int] = GroupCommitter(
            self._commit_batch,
            max_batch=max_batch,
            max_pending=max(50_000, max_batch),
            on_batch=on_batch,
            name="receipts.group-commit",
            concurrency=concurrent_writers(sessions),
        )
        self._sweep_until = 0.0
        self._sweep_wakeup = asyncio.Event()
        self._closing = False
        self._pending_parts = PendingPartCommits()
        self.received = 0
        #: receipts written with their part's submit result, in the MT pipeline's transaction
        self.with_part = 0
        self.waited_out = 0
        self.early = 0
        self.unparsable = 0

    def accept(self, bind: BindInfo, pdu: DeliverSM) -> int | asyncio.Future[int]:
        """Handle one receipt: the deliver_sm_resp command_status, now or (a future) once committed."""
        self.received += 1
        try:
            receipt = parse_receipt(pdu.short_message, pdu.tlvs)
        except ReceiptParseError as error:
            # nothing to correlate, and a redelivery would not change that: acknowledge and log
            self.unparsable += 1
            log_event(log, "receipt.unparsable", logging.WARNING, carrier=bind.carrier, error=str(error))
            return CommandStatus.ESME_ROK
        if self._on_receipt is not None:
            self._on_receipt(bind.carrier, receipt.state.name.lower())
        item = ReceiptIn(
            carrier=bind.carrier,
            smsc_message_id=normalise_message_id(receipt.message_id),
            state=receipt.stat or receipt.state.name,
            received_at=datetime.now(UTC),
            error_code=receipt_error_code(receipt.err),
        )
        loop = asyncio.get_running_loop()
        applied = self._pending_parts.attach(item)
        if applied is not None:
            answer: asyncio.Future[int] = loop.create_future()
            applied.add_done_callback(functools.partial(self._after_attached, item, answer))
            return answer
        if (item.carrier, item.smsc_message_id) in self._pending_parts:
            # its part is being written right now: after that commit, the receipt is applied to it
            return loop.create_task(self._record_after_part(item), name="receipts.after-part")
        return self._record(item)

    def _after_attached(
        self, item: ReceiptIn, answer: asyncio.Future[int], applied: asyncio.Future[bool]
    ) -> None:
        if answer.done():
            return
        if not applied.cancelled() and applied.result():
            self.with_part += 1
            answer.set_result(CommandStatus.ESME_ROK)
            return
        self.waited_out += 1
        _settle(answer, self._record(item))

    async def _record_after_part(self, item: ReceiptIn) -> int:
        if not await self._pending_parts.wait(item.carrier, item.smsc_message_id):
            self.waited_out += 1
        return await _as_awaitable(self._record(item))

    def _record(self, item: ReceiptIn) -> int | asyncio.Future[int]:
        """Queue the receipt for this pipeline's group commit."""
        try:
            return self._committer.submit_nowait(item)
        except CommitterClosed:
            return CommandStatus.ESME_RX_T_APPN
        except CommitterFull as error:
            log_event(log, "receipt.backlog_full", logging.WARNING, carrier=item.carrier, error=str(error))
            return CommandStatus.ESME_RX_T_APPN

    async def _commit_batch(self, batch: Sequence[ReceiptIn]) -> list[int]:
        """One transaction for the batch, tried again through a database blip shorter than
        ``commit_retry_window``; ``ESME_RX_T_APPN`` for every receipt when the database stayed away
        (the SMSC delivers them again)."""
        try:
            outcome = await ride_out(
                lambda: self._commit_once(batch),
                self._commit_retry_window,
                functools.partial(self._health.failed, "receipts.commit"),
            )
        except Exception as error:
            log_event(
                log,
                "receipt.commit_failed",
                logging.WARNING,
                receipts=len(batch),
                error=repr(error),
                action="answered ESME_RX_T_APPN: the SMSC delivers them again",
            )
            return [CommandStatus.ESME_RX_T_APPN] * len(batch)
        self._health.succeeded("receipts.commit")
        self.early += outcome.early
        if outcome.early:
            self._sweep_until = asyncio.get_running_loop().time() + SWEEP_WINDOW
            self._sweep_wakeup.set()
        if outcome.early and self._on_early is not None:
            carriers = {receipt.carrier for receipt in batch}
            self._on_early(carriers.pop() if len(carriers) == 1 else "multiple", outcome.early)
        await self._events.mt_changes(outcome.changes)
        if self._on_changes is not None and outcome.changes:
            self._on_changes(outcome.changes)
        return [CommandStatus.ESME_ROK] * len(batch)

    async def _commit_once(self, batch: Sequence[ReceiptIn]) -> ReceiptOutcome:
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            return await record_receipts(session, batch, now)

    async def run_loop(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._sweep_loop(), name="receipts.sweep_loop")
            await self._committer.run_loop()

    def close(self) -> None:
        """Stop taking receipts; the loops end once the committer has drained. They end on a flag, not
        by cancellation: on Python 3.11 ``asyncio.wait_for`` loses a cancellation that lands as its
        event is set, and a sweep loop that lost it would keep the daemon from exiting."""
        self._closing = True
        self._sweep_wakeup.set()
        self._committer.close()

    def part_accepted(self, carrier: str, smsc_message_id: str) -> None:
        """The SMSC accepted a part (``smsc_message_id`` normalised); its result is not committed yet."""
        self._pending_parts.accepted(carrier, smsc_message_id)

    def take_attached(self, keys: Iterable[PartKey]) -> dict[PartKey, ReceiptIn]:
        """The MT pipeline is writing these parts: the receipts that came for them go along."""
        return self._pending_parts.take(keys)

    def parts_not_recorded(self, keys: Iterable[PartKey]) -> None:
        """Writing these parts failed: receipts attached to them are recorded on their own."""
        self._pending_parts.released(keys)

    def parts_recorded(self, results: Sequence[PartResult] = ()) -> None:
        """The MT pipeline committed these part results: receipts waiting for them go on, and early
        receipts may match them now."""
        self._pending_parts.committed(
            (result.carrier, result.smsc_message_id)
            for result in results
            if result.smsc_message_id is not None
        )
        if self._sweep_until:
            self._sweep_wakeup.set()

    async def _sweep_loop(self) -> None:
        """While early receipts are recent, apply those whose part has been recorded since; once an
        hour, drop early receipts that never matched (their MT was not ours). The first pass is at
        start: a receipt left early by a daemon that stopped before sweeping it is applied now."""
        loop = asyncio.get_running_loop()
        next_purge = loop.time() + PURGE_INTERVAL
        self._sweep_until = max(self._sweep_until, loop.time() + SWEEP_INTERVAL)
        while not self._closing:
            if loop.time() >= next_purge:
                await self._purge()
                next_purge = loop.time() + PURGE_INTERVAL
            if not self._sweep_until or loop.time() > self._sweep_until:
                self._sweep_until = 0.0
                await self._sweep_pause(PURGE_INTERVAL)
                continue
            try:
                now = datetime.now(UTC)
                async with self._sessions() as session, session.begin():
                    outcome = await sweep_early_receipts(session, now)
            except Exception as error:
                self._health.failed("receipts.sweep", error)
                log_event(log, "receipt.sweep_failed", logging.WARNING, error=repr(error))
            else:
                self._health.succeeded("receipts.sweep")
                if outcome.changes:
                    await self._events.mt_changes(outcome.changes)
                    if self._on_changes is not None:
                        self._on_changes(outcome.changes)
                if outcome.matched:
                    continue  # more may be waiting
            await self._sweep_pause(SWEEP_INTERVAL)

    async def _sweep_pause(self, seconds: float) -> None:
        """Until the sweep is woken or the pipeline closes, ``seconds`` at most."""
        if self._closing:
            return
        self._sweep_wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._sweep_wakeup.wait()

    async def _purge(self) -> None:
        try:
            async with self._sessions() as session, session.begin():
                dropped = await purge_early_receipts(session, datetime.now(UTC) - EARLY_RECEIPT_TTL)
        except Exception as error:
            log_event(log, "receipt.purge_failed", logging.WARNING, error=repr(error))
            return
        if dropped:
            log_event(log, "receipt.early_purged", count=dropped)


def _settle(answer: asyncio.Future[int], status: int | asyncio.Future[int]) -> None:
    """``answer`` gets ``status``, at once or when that future is done (``ESME_RX_T_APPN`` if it failed)."""
    if isinstance(status, int):
        answer.set_result(status)
        return

    def copy(done: asyncio.Future[int]) -> None:
        if not answer.done():
            failed = done.cancelled() or done.exception() is not None
            answer.set_result(CommandStatus.ESME_RX_T_APPN if failed else done.result())

    status.add_done_callback(copy)


async def _as_awaitable(status: int | asyncio.Future[int]) -> int:
    return status if isinstance(status, int) else await status
