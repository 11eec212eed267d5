"""What became of each MT part, in one place: its submit result, its delivery receipt, and where the
two meet.

The MT pipeline hands over each part the SMSC accepted as soon as its submit_sm_resp is in
(:meth:`MTRecorder.accepted`), each MT's results once all its segments are answered
(:meth:`MTRecorder.add`) and the claimed MTs going back to the outbox unsent
(:meth:`MTRecorder.give_back`); the binds hand over delivery receipts (:meth:`MTRecorder.receipt`).
A part's life here:

* **accepted** -- its result waits for the next record batch. Where the carrier's receipts follow
  their submit_sm_resp at once (an SMSC that delivers at once: lately a receipt came within
  :data:`RECEIPT_LINGER` of its part's acceptance), the batch waits for them, that long at most
  after the MT is complete, so that they are *attached*: written with the part in the batch's one
  transaction (the MT goes ``sending`` -> ``accepted`` -> final in one update), then answered;
* **being written** -- a receipt for it waits (unanswered, so nothing is lost in a crash) for that
  commit, up to :data:`PART_COMMIT_WAIT`, then goes the receipts' own group commit;
* **recorded** (or never accepted here: another daemon, an earlier run) -- its receipts go the group
  commit at once. A receipt whose part is not recorded when it is committed (it overtook the
  submit_sm_resp, or the wait ran out) is stored as an *early* receipt and applied when the part is
  recorded, or by the sweep: nothing is matched in memory only.

A receipt is answered (deliver_sm_resp 0) only once it is committed. A batch of results that fails
to commit stays here and is written again (nothing is forgotten while the database is away); its
attached receipts then go their own way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gatewayd.batching import BatchObserver, CommitterClosed, CommitterFull, GroupCommitter, ride_out
from gatewayd.events import EventPublisher
from gatewayd.health import LoopHealth
from gatewayd.logging import log_event
from gatewayd.mo_message import BindInfo
from gatewayd.mt_policy import LOCAL_SESSION_LOST, LOCAL_TIMEOUT, receipt_error_code
from gatewayd.store.enums import MTStatus
from gatewayd.store.errors import describe_error, is_data_error
from gatewayd.store.mt.values import MTStatusChange, PartResult, ReceiptIn, ReceiptOutcome, RetryPolicy
from gatewayd.store.store import Store
from gatewayd.store.webhooks import WebhookEvent
from gatewayd.webhooks.enqueue import WebhookTargets
from routing.quirks import CarrierQuirks, receipt_id_as_submitted
from smpp.constants import CommandStatus
from smpp.pdu import DataSM, DeliverSM
from smpp.receipt import ReceiptParseError, normalise_message_id, parse_receipt, stat_name
from smpp.tlv import Tag

log = logging.getLogger("gatewayd.recorder")

#: A part by (carrier, normalised SMSC message id), as receipts name it.
PartKey = tuple[str, str]

#: How long a complete MT's results wait at most before they are recorded, for receipts right behind
#: them (within this of their part's acceptance: the ones the wait can catch) ...
RECEIPT_LINGER = 0.02
#: ... where such a receipt came this recently (under load such a carrier's receipts do so all the
#: time; idle, a batch more costs nothing): elsewhere receipts come seconds later (the handset's), and
#: lingering would only hold the results, and the claims after them.
RECEIPTS_AT_ONCE_MEMORY = 1.0
#: Pause after the database failed to record results, before trying again.
DATABASE_RETRY_DELAY = 0.5
#: Longest a receipt waits for its part's submit result to be committed before going the early way.
PART_COMMIT_WAIT = 2.0
#: Parts remembered as awaiting their commit; beyond this receipts simply go the early way.
MAX_PENDING_PARTS = 200_000
#: Early receipts are looked at again this long after the last one arrived ...
SWEEP_WINDOW = 120.0
#: ... every this many seconds (or at once when results are recorded).
SWEEP_INTERVAL = 0.25
#: Early receipts never matched are dropped after a day.
EARLY_RECEIPT_TTL = timedelta(days=1)
PURGE_INTERVAL = 3600.0
#: Why an MT may reach the carrier twice (``mt.possible_duplicate``, the metric's label): its daemon
#: died with it in flight, or its submit_sm left and was never answered.
RESTART = "restart"
UNANSWERED = "unanswered"

#: Told (reason, count) of MTs sent again although the SMSC may have them.
DuplicateObserver = Callable[[str, int], None]


def possible_duplicates(
    mt_ids: Sequence[int], reason: str, why: str, observer: DuplicateObserver | None = None
) -> None:
    """At-least-once made visible: each MT sent again although the SMSC may already have it is logged
    (``mt.possible_duplicate``) and counted."""
    for mt_id in mt_ids:
        log_event(log, "mt.possible_duplicate", logging.WARNING, mt_id=mt_id, reason=reason, detail=why)
    if mt_ids and observer is not None:
        observer(reason, len(mt_ids))


@dataclass(slots=True)
class _PendingPart:
    """A part accepted by the SMSC whose result is not committed yet."""

    #: time.monotonic() of its submit_sm_resp
    accepted_at: float = 0.0
    #: set once the part's result is in a record batch being written
    in_commit: bool = False
    #: what receipts that wait for the commit wait on, created by the first of them
    committed: asyncio.Future[None] | None = None
    #: a receipt handed to the part's own commit, and what its handler waits on
    receipt: ReceiptIn | None = None
    applied: asyncio.Future[bool] | None = None
    expiry: asyncio.TimerHandle | None = None


class PendingParts:
    """The accepted parts whose result is not committed yet (by carrier and normalised SMSC message id),
    and the receipts that came for them: the state machine of a part's result meeting its receipt.
    Bounded; a part never committed (the database is away) only costs its receipts the wait.

    A receipt for such a part is *attached* to it (:meth:`attach`): taken with the part's result
    (:meth:`take`) and written in one transaction, then answered. A receipt that comes once the
    part's batch is being written (or a second receipt for the part) waits for that commit
    (:meth:`wait`) and goes its own way after it.
    """

    def __init__(self, *, wait_limit: float = PART_COMMIT_WAIT, max_pending: int = MAX_PENDING_PARTS) -> None:
        self._wait_limit = wait_limit
        self._max_pending = max_pending
        self._pending: dict[PartKey, _PendingPart] = {}
        #: the parts committed lately, with the time.monotonic() they were accepted at (in the order
        #: committed; dropped ``RECEIPT_LINGER`` after their acceptance)
        self._accepted_at: dict[PartKey, float] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def accepted(self, carrier: str, smsc_message_id: str) -> None:
        if len(self._pending) < self._max_pending:
            self._pending.setdefault((carrier, smsc_message_id), _PendingPart(time.monotonic()))

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

    def right_behind(self, key: PartKey) -> bool:
        """Whether a receipt for this part comes right behind its submit_sm_resp: within
        ``RECEIPT_LINGER`` of it, written meanwhile or not."""
        part = self._pending.get(key)
        accepted_at = part.accepted_at if part is not None else self._accepted_at.get(key)
        return accepted_at is not None and time.monotonic() - accepted_at < RECEIPT_LINGER

    def hold_receipts(self, results: Iterable[PartResult]) -> bool:
        """Whether no receipt is still to come for these results' parts before they are written: each
        accepted part holds its receipt (or is not tracked here, so none could be attached to it)."""
        for result in results:
            if result.smsc_message_id is None:
                continue
            part = self._pending.get((result.carrier, result.smsc_message_id))
            if part is not None and part.receipt is None:
                return False
        return True

    def take(self, keys: Iterable[PartKey]) -> dict[PartKey, ReceiptIn]:
        """These parts are about to be written: their attached receipts go with them."""
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
        recent = self._accepted_at
        cutoff = time.monotonic() - RECEIPT_LINGER
        while recent:
            oldest = next(iter(recent))
            if recent[oldest] > cutoff:
                break
            del recent[oldest]
        for key in keys:
            part = self._pending.pop(key, None)
            if part is None:
                continue
            recent.pop(key, None)  # a part written again goes to the end
            recent[key] = part.accepted_at
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


class MTRecorder:
    """Records MT parts' submit results and receipts; ``run_loop`` runs the record loop, the receipts'
    group commit and the early receipts' sweep until :meth:`close`."""

    def __init__(
        self,
        store: Store,
        events: EventPublisher,
        *,
        retry: RetryPolicy | None = None,
        max_batch: int = 2000,
        commit_retry_window: float = 4.0,
        on_written: Callable[[bool], None] | None = None,
        on_batch: BatchObserver | None = None,
        on_receipt: Callable[[str, str], None] | None = None,
        on_early: Callable[[str, int], None] | None = None,
        on_changes: Callable[[Sequence[MTStatusChange]], None] | None = None,
        on_possible_duplicates: DuplicateObserver | None = None,
        health: LoopHealth | None = None,
        webhooks: WebhookTargets | None = None,
    ) -> None:
        """``on_written(requeued)`` is told after each record batch is committed (room for more claims;
        ``requeued``: some MTs went back to the outbox)."""
        self._store = store
        self._events = events
        self._retry = retry or RetryPolicy()
        self._commit_retry_window = commit_retry_window
        self._on_written = on_written
        self._on_receipt = on_receipt
        self._on_early = on_early
        self._on_changes = on_changes
        self._on_possible_duplicates = on_possible_duplicates
        self._health = health or LoopHealth()
        #: The subscriptions whose deliveries are queued with the status moves (none: nothing queued).
        self._webhooks = webhooks or WebhookTargets(store.webhook_queue)
        self._pending = PendingParts()
        #: MTs' part results waiting to be recorded, each with the time.monotonic() it was complete at
        self._results: deque[tuple[float, list[PartResult]]] = deque()
        #: claimed MTs going back to the outbox unsent: (id, why, seconds before they are due again)
        self._requeue: list[tuple[int, str, float]] = []
        self._results_ready = asyncio.Event()
        #: set when a receipt is attached to its part: the results lingering for receipts look again
        self._receipt_attached = asyncio.Event()
        #: by carrier, the time.monotonic() a receipt last came right behind its part (``right_behind``)
        self._receipts_at_once: dict[str, float] = {}
        #: MTs handed over (results or give-backs) whose outcome is not written yet: still ``sending``
        self._unrecorded = 0
        #: Receipts answered ESME_RX_T_APPN because their commit failed (the SMSC delivers them again).
        self.temporary_failures = 0
        #: Receipts the database refused for their data, answered ESME_RX_P_APPN (never delivered again).
        self.refused_receipts = 0
        #: set while nothing handed over waits to be written
        self._all_written = asyncio.Event()
        self._all_written.set()
        #: results are written without lingering for receipts (the daemon is stopping)
        self._hurry = False
        self._committer: GroupCommitter[ReceiptIn, int] = GroupCommitter(
            self._commit_receipts,
            max_batch=max_batch,
            max_pending=max(50_000, max_batch),
            on_batch=on_batch,
            name="receipts.group-commit",
            concurrency=store.concurrent_writers,
        )
        self._sweep_until = 0.0
        self._sweep_wakeup = asyncio.Event()
        self._closing = False
        self.receipts_received = 0
        #: receipts written with their part's submit result, in the results' transaction
        self.with_part = 0
        self.waited_out = 0
        self.early = 0
        self.unparsable = 0
        #: Each carrier's quirks, by name (the MT pipeline, their owner, sets them): how its receipts
        #: write the message ids its submit_sm_resp gave.
        self.quirks: Mapping[str, CarrierQuirks] = {}

    # --- from the MT pipeline ------------------------------------------------------------------------

    @property
    def receipts_pending(self) -> int:
        """Receipts waiting to be committed."""
        return self._committer.pending

    @property
    def unrecorded(self) -> int:
        """MTs handed over whose outcome is not written yet."""
        return self._unrecorded

    def accepted(self, carrier: str, smsc_message_id: str) -> None:
        """The SMSC accepted a part (``smsc_message_id`` normalised); its result is on its way."""
        self._pending.accepted(carrier, smsc_message_id)

    def add(self, results: list[PartResult], *, linger: bool = True) -> None:
        """One MT's results, every segment answered (or none sent: ``linger`` False, no receipt to
        wait for). They linger for receipts where the carrier's come at once."""
        now = time.monotonic()
        at_once = self._receipts_at_once.get(results[0].carrier) if linger else None
        lingers = at_once is not None and now - at_once < RECEIPTS_AT_ONCE_MEMORY
        self._results.append((now if lingers else 0.0, results))
        self._handed_over()

    def give_back(self, mt_id: int, reason: str, delay: float = 0.0) -> None:
        """A claimed MT goes back to the outbox unsent, due again in ``delay`` seconds."""
        self._requeue.append((mt_id, reason, delay))
        self._handed_over()

    def _handed_over(self) -> None:
        self._unrecorded += 1
        self._all_written.clear()
        self._results_ready.set()

    async def flush(self) -> None:
        """Returns once everything handed over so far is written (a stop: the MTs in flight are
        recorded before the binds unbind); results no longer linger for receipts."""
        self._hurry = True
        self._results_ready.set()
        self._receipt_attached.set()
        await self._all_written.wait()

    # --- from the binds ------------------------------------------------------------------------------

    def receipt(self, bind: BindInfo, pdu: DeliverSM | DataSM) -> int | asyncio.Future[int]:
        """Handle one receipt (or intermediate notification), by deliver_sm or data_sm: the response's
        command_status, now or (a future) once committed."""
        self.receipts_received += 1
        try:
            parsed = parse_receipt(_report_text(pdu), pdu.tlvs)
        except ReceiptParseError as error:
            # nothing to correlate, and a redelivery would not change that: acknowledge and log
            self.unparsable += 1
            log_event(log, "receipt.unparsable", logging.WARNING, carrier=bind.carrier, error=str(error))
            return CommandStatus.ESME_ROK
        if self._on_receipt is not None:
            self._on_receipt(bind.carrier, parsed.state.name.lower())
        message_id = parsed.message_id
        quirks = self.quirks.get(bind.carrier)
        if quirks is not None:
            message_id = receipt_id_as_submitted(quirks, message_id)
        item = ReceiptIn(
            carrier=bind.carrier,
            smsc_message_id=normalise_message_id(message_id),
            # the standard name of what the receipt (text or message_state TLV) says: the store knows
            # those, where a carrier's own spelling (UNDELIVERED, 5) would leave the MT unfinished
            state=stat_name(parsed.state),
            received_at=datetime.now(UTC),
            error_code=receipt_error_code(parsed.err),
        )
        loop = asyncio.get_running_loop()
        if self._pending.right_behind((item.carrier, item.smsc_message_id)):
            # this carrier's receipts come at once: its results wait a little for them
            self._receipts_at_once[item.carrier] = time.monotonic()
        applied = self._pending.attach(item)
        if applied is not None:
            self._receipt_attached.set()  # the results lingering for it may hold all theirs now
            answer: asyncio.Future[int] = loop.create_future()
            applied.add_done_callback(functools.partial(self._after_attached, item, answer))
            return answer
        if (item.carrier, item.smsc_message_id) in self._pending:
            # its part is being written right now: after that commit, the receipt is applied to it
            return loop.create_task(self._record_after_part(item), name="receipts.after-part")
        return self._record_receipt(item)

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
        _settle(answer, self._record_receipt(item))

    async def _record_after_part(self, item: ReceiptIn) -> int:
        if not await self._pending.wait(item.carrier, item.smsc_message_id):
            self.waited_out += 1
        return await _as_awaitable(self._record_receipt(item))

    def _record_receipt(self, item: ReceiptIn) -> int | asyncio.Future[int]:
        """Queue the receipt for the receipts' group commit."""
        try:
            return self._committer.submit_nowait(item)
        except CommitterClosed:
            return CommandStatus.ESME_RX_T_APPN
        except CommitterFull as error:
            log_event(log, "receipt.backlog_full", logging.WARNING, carrier=item.carrier, error=str(error))
            return CommandStatus.ESME_RX_T_APPN

    # --- life ----------------------------------------------------------------------------------------

    async def run_loop(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._record_loop(), name="mt.record_loop")
            group.create_task(self._sweep_loop(), name="receipts.sweep_loop")
            await self._committer.run_loop()

    def close(self) -> None:
        """Stop taking receipts; the loops end once what they hold is written. They end on a flag, not
        by cancellation: on Python 3.11 ``asyncio.wait_for`` loses a cancellation that lands as its
        event is set, and a loop that lost it would keep the daemon from exiting."""
        self._closing = True
        self._hurry = True
        self._results_ready.set()
        self._receipt_attached.set()
        self._sweep_wakeup.set()
        self._committer.close()

    # --- results -------------------------------------------------------------------------------------

    async def _record_loop(self) -> None:
        while True:
            if not self._results and not self._requeue:
                if self._closing:
                    return
                self._results_ready.clear()
                await self._results_ready.wait()
                continue
            results = await self._results_to_record()
            requeue, self._requeue = self._requeue, []
            keys = [
                (result.carrier, result.smsc_message_id)
                for result in results
                if result.smsc_message_id is not None
            ]
            receipts = self._pending.take(keys) if keys else {}
            try:
                changes = await self._record(results, requeue, receipts)
            except Exception as error:  # keep them: nothing is forgotten while the database is away
                self._results.appendleft((0.0, results))
                self._requeue = requeue + self._requeue
                self._pending.released(keys)
                self._health.failed("mt.record", error)
                log_event(log, "mt.record_failed", logging.WARNING, results=len(results), error=repr(error))
                await asyncio.sleep(DATABASE_RETRY_DELAY)
                continue
            self._health.succeeded("mt.record")
            self._unrecorded -= len({result.mt_id for result in results}) + len(requeue)
            if not self._results and not self._requeue:
                self._all_written.set()
            if self._on_written is not None:  # before publishing: the claims go on meanwhile
                self._on_written(any(change.status is MTStatus.QUEUED for change in changes))
            if keys:
                self._pending.committed(keys)
                if self._sweep_until:  # early receipts may match the parts now
                    self._sweep_wakeup.set()
            self._unanswered_retried(results, changes)
            await self._published(changes)

    async def _results_to_record(self) -> list[PartResult]:
        """The results in the order they were complete, up to the first that still waits for receipts:
        one waits until it holds the receipts of all its accepted parts, ``RECEIPT_LINGER`` at most (the
        results behind it wait as long). The receipts that follow a submit_sm_resp within a few
        milliseconds (an SMSC that delivers at once) are then attached to their part and written with
        it, instead of in a transaction of their own."""
        while self._results and not self._hurry:
            complete_at, first = self._results[0]
            wait = complete_at + RECEIPT_LINGER - time.monotonic()
            if wait <= 0 or self._pending.hold_receipts(first):
                break
            self._receipt_attached.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._receipt_attached.wait()
        cutoff = time.monotonic() - RECEIPT_LINGER if not self._hurry else float("inf")
        results: list[PartResult] = []
        while self._results and (
            self._results[0][0] <= cutoff or self._pending.hold_receipts(self._results[0][1])
        ):
            results += self._results.popleft()[1]
        return results

    async def _record(
        self,
        results: list[PartResult],
        requeue: list[tuple[int, str, float]],
        receipts: dict[PartKey, ReceiptIn],
    ) -> list[MTStatusChange]:
        now = datetime.now(UTC)
        changes: list[MTStatusChange] = []
        async with self._store.transaction() as session:
            if results:
                changes += await self._store.results.record(session, results, now, self._retry, receipts)
            for reason, delay in sorted({(reason, delay) for _, reason, delay in requeue}):
                ids = [mt_id for mt_id, why, wait in requeue if why == reason and wait == delay]
                changes += await self._store.claims.requeue(session, ids, now, delay=delay, reason=reason)
            # receipts that came with the results move MTs on too: each change queued as what it is
            await self._webhooks.mt_changes(session, changes, now)
        return changes

    def _unanswered_retried(self, results: Sequence[PartResult], changes: Sequence[MTStatusChange]) -> None:
        """MTs going back to the outbox because a submit_sm that left got no answer (a timeout, the
        session lost): the SMSC may have accepted it, and it is sent again."""
        unanswered = {
            result.mt_id
            for result in results
            if result.sent and result.error_code in (LOCAL_TIMEOUT, LOCAL_SESSION_LOST)
        }
        if unanswered:
            possible_duplicates(
                [c.mt_id for c in changes if c.status is MTStatus.QUEUED and c.mt_id in unanswered],
                UNANSWERED,
                "its submit_sm left but was not answered",
                self._on_possible_duplicates,
            )

    async def _published(self, changes: Sequence[MTStatusChange]) -> None:
        if changes:
            await self._events.mt_changes(changes)
            if self._on_changes is not None:
                self._on_changes(changes)

    # --- receipts ------------------------------------------------------------------------------------

    async def _commit_receipts(self, batch: Sequence[ReceiptIn]) -> list[int]:
        """One transaction for the batch, tried again through a database blip shorter than
        ``commit_retry_window``; ``ESME_RX_T_APPN`` for every receipt when the database stayed away
        (the SMSC delivers them again)."""
        deadline = asyncio.get_running_loop().time() + self._commit_retry_window
        return await self._commit_receipts_or_split(batch, deadline)

    async def _commit_receipts_or_split(self, batch: Sequence[ReceiptIn], deadline: float) -> list[int]:
        """Commit ``batch``. When the database refuses its data, each half is committed on its own,
        down to the one receipt it refuses (answered ``ESME_RX_P_APPN``: it would be refused again,
        and the receipts around it must not wait for it)."""
        window = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            outcome = await ride_out(
                lambda: self._commit_receipts_once(batch),
                window,
                self._failed_receipts_commit,
                retry_if=lambda error: not is_data_error(error),
            )
        except Exception as error:
            if is_data_error(error):
                if len(batch) == 1:
                    return [self._refused_receipt(batch[0], error)]
                middle = len(batch) // 2
                first = await self._commit_receipts_or_split(batch[:middle], deadline)
                return first + await self._commit_receipts_or_split(batch[middle:], deadline)
            self.temporary_failures += len(batch)
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
        await self._published(outcome.changes)
        return [CommandStatus.ESME_ROK] * len(batch)

    def _failed_receipts_commit(self, error: BaseException) -> None:
        """A try of a receipt batch failed: the database is away (health), or refuses its data (split)."""
        if not is_data_error(error):
            self._health.failed("receipts.commit", error)

    def _refused_receipt(self, receipt: ReceiptIn, error: BaseException) -> int:
        self.refused_receipts += 1
        log_event(
            log,
            "receipt.refused",
            logging.ERROR,
            carrier=receipt.carrier,
            error=describe_error(error),
            action="answered ESME_RX_P_APPN: the database refuses it, the SMSC must not deliver it again",
        )
        return CommandStatus.ESME_RX_P_APPN

    async def _commit_receipts_once(self, batch: Sequence[ReceiptIn]) -> ReceiptOutcome:
        now = datetime.now(UTC)
        async with self._store.transaction() as session:
            outcome = await self._store.receipts.record(session, batch, now)
            await self._webhooks.mt_changes(session, outcome.changes, now, event=WebhookEvent.MT_RECEIPT)
            return outcome

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
                async with self._store.transaction() as session:
                    outcome = await self._store.receipts.sweep_early(session, now)
                    await self._webhooks.mt_changes(
                        session, outcome.changes, now, event=WebhookEvent.MT_RECEIPT
                    )
            except Exception as error:
                self._health.failed("receipts.sweep", error)
                log_event(log, "receipt.sweep_failed", logging.WARNING, error=repr(error))
            else:
                self._health.succeeded("receipts.sweep")
                await self._published(outcome.changes)
                if outcome.matched:
                    continue  # more may be waiting
            await self._sweep_pause(SWEEP_INTERVAL)

    async def _sweep_pause(self, seconds: float) -> None:
        """Until the sweep is woken or the recorder closes, ``seconds`` at most."""
        if self._closing:
            return
        self._sweep_wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._sweep_wakeup.wait()

    async def _purge(self) -> None:
        try:
            async with self._store.transaction() as session:
                dropped = await self._store.receipts.purge_early(
                    session, datetime.now(UTC) - EARLY_RECEIPT_TTL
                )
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


def _report_text(pdu: DeliverSM | DataSM) -> bytes:
    """A receipt's text: short_message, or message_payload when that is empty (always for data_sm)."""
    text = pdu.short_message if isinstance(pdu, DeliverSM) else b""
    return text or pdu.tlvs.get_bytes(Tag.MESSAGE_PAYLOAD) or b""
