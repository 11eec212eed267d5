"""The MT pipeline: outbox -> claim in batches -> route to a bind -> split -> submit.

One claim loop takes due MTs from the outbox (many per statement, leased to this daemon), picks
the bind each leaves by (the one its subscriber came in on, else another bind of the carrier),
splits long texts the way the carrier wants and hands the segments to the session with
``submit_nowait``: the session's window and TPS pace them, and its throttling backoff keeps them
in order. MTs below the default priority (a mass push's) go as the session's bulk: a reply claimed
after a campaign's burst is sent before what is left of it. Responses are gathered per MT; once
all segments of an MT are answered its results go to the :class:`~gatewayd.recorder.MTRecorder`,
which writes them with the receipts that came for them (temporary errors go back to the outbox
with a backoff, up to the retry limit).

On start the MTs this instance had in flight when it stopped are reconciled: segments the SMSC
accepted (their message ids are recorded) are never sent again, the others are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gatewayd.binds import BindSupervisor
from gatewayd.config import CarrierConfig
from gatewayd.events import EventPublisher
from gatewayd.health import LoopHealth
from gatewayd.logging import log_event
from gatewayd.mt_policy import (
    LOCAL_ENCODING,
    LOCAL_NO_ROUTE,
    LOCAL_SESSION_LOST,
    LOCAL_TIMEOUT,
    error_code_of,
    is_temporary,
)
from gatewayd.recorder import RESTART, DuplicateObserver, MTRecorder, possible_duplicates
from gatewayd.store.enums import MTStatus
from gatewayd.store.mt.values import ClaimedMT, MTStatusChange, PartResult
from gatewayd.store.store import Store
from gatewayd.webhooks.enqueue import WebhookTargets
from routing.errors import InvalidAddress
from routing.quirks import CarrierQuirks, mt_header
from smpp.aio import ESMESession, Outcome
from smpp.concat import Segment, split_message
from smpp.constants import RegisteredDelivery
from smpp.errors import LocalProtocolError, NegativeResponseError, ResponseTimeout, SessionClosed, SMPPError
from smpp.pdu import SubmitSM, SubmitSMResp
from smpp.receipt import normalise_message_id
from smpp.text import ConcatMode, choose_encoding

log = logging.getLogger("gatewayd.mt")

#: Delay before an MT whose carrier has no bind up is tried again (not counted as an attempt).
NO_BIND_DELAY = 2.0
#: Pause after the database failed in a loop, before trying again.
DATABASE_RETRY_DELAY = 0.5
#: MTs claimed and not yet recorded at most: the windows of the binds that can send, this many times
#: over (what a crash leaves ``sending``, to be sent again as possible duplicates) ...
WINDOWS_AHEAD = 8
#: ... of which waiting their turn or in flight at most this many windows (a window in flight, the
#: next ones queued behind it); the rest are answered and being recorded, so that a small window
#: never drains while the recorder writes the answers of the previous ones.
SENDING_AHEAD = 4


@dataclass(slots=True)
class _InFlight:
    """An MT whose segments are out, waiting for their responses."""

    mt: ClaimedMT
    pending: int
    results: list[PartResult] = field(default_factory=list)


def carrier_quirks(carrier: CarrierConfig) -> CarrierQuirks:
    """The carrier's ``quirks`` table as routing's transform (defaults when there is none).
    Raises ``InvalidQuirks`` naming the bad key."""
    if not carrier.quirks:
        return CarrierQuirks(name=carrier.name)
    return CarrierQuirks.from_dict(carrier.quirks, name=carrier.name)


# the carrier's ``long_message`` setting by value, without an enum lookup per MT
_CONCAT_MODES: Mapping[str, ConcatMode] = {mode.value: mode for mode in ConcatMode}


def build_submits(
    mt: ClaimedMT, carrier: CarrierConfig, quirks: CarrierQuirks
) -> tuple[int, list[tuple[Segment, SubmitSM]]]:
    """(total segments, [(segment, submit_sm)] for the segments still to send) of one MT, each
    submit_sm written the way the carrier's quirks say (source/destination TON-NPI and format,
    service_type, vendor TLVs, registered_delivery ceiling).

    Raises ``LocalProtocolError`` for a text the coding cannot carry or one too long to send, and
    ``InvalidAddress`` for a destination the carrier's format cannot write.
    """
    data_coding = (
        mt.data_coding
        if mt.data_coding is not None
        else choose_encoding(mt.text, allow_latin1=carrier.allow_latin1)
    )
    mode = _CONCAT_MODES[carrier.long_message.value]
    reference = mt.id % (0x100 if mode is ConcatMode.UDH8 else 0x10000)
    segments = split_message(mt.text, data_coding, mode=mode, reference=reference)
    registered = RegisteredDelivery.FINAL if mt.request_receipt else RegisteredDelivery.NONE
    done = mt.done_parts
    # the carrier's header fields once per MT, then each segment's submit_sm built directly
    build = mt_header(quirks, mt.source, mt.destination, registered_delivery=registered).submit_sm
    return len(segments), [
        (segment, build(segment.short_message, data_coding, segment.esm_class_flags, segment.tlvs))
        for segment in segments
        if segment.part_number not in done
    ]


class MTPipeline:
    """Sends the outbox. ``run_loop`` runs the claim loop until :meth:`close`; what becomes of each MT
    sent is the ``recorder``'s to write."""

    def __init__(
        self,
        store: Store,
        events: EventPublisher,
        binds: BindSupervisor,
        carriers: Sequence[CarrierConfig],
        recorder: MTRecorder,
        *,
        owner: str,
        claim_batch: int = 500,
        lease: float = 60.0,
        poll_interval: float = 1.0,
        max_in_flight: int = 5000,
        on_submitted: Callable[[str, str, float], None] | None = None,
        on_changes: Callable[[Sequence[MTStatusChange]], None] | None = None,
        on_possible_duplicates: DuplicateObserver | None = None,
        on_reclaimed: Callable[[int], None] | None = None,
        health: LoopHealth | None = None,
        webhooks: WebhookTargets | None = None,
    ) -> None:
        self._store = store
        self._events = events
        self._binds = binds
        #: The subscriptions whose mt.status deliveries are queued with the reconciled moves.
        self._webhooks = webhooks or WebhookTargets(store.webhook_queue)
        self._carriers: Mapping[str, CarrierConfig] = {carrier.name: carrier for carrier in carriers}
        self._quirks = {carrier.name: carrier_quirks(carrier) for carrier in carriers}
        self._recorder = recorder
        recorder.quirks = self._quirks  # how each carrier's receipts write the ids we got
        #: The short codes of billed services (their billed MTs meet the premium holds at claim time);
        #: the daemon sets it from the configuration, and again on reload.
        self.billed_short_codes: frozenset[str] = frozenset()
        self._owner = owner
        self._claim_batch = claim_batch
        self._lease = lease
        self._poll_interval = poll_interval
        self._max_in_flight = max_in_flight
        self._on_submitted = on_submitted
        self._on_changes = on_changes
        self._on_possible_duplicates = on_possible_duplicates
        #: Told how many MTs another daemon's expired claim left unanswered were taken over.
        self._on_reclaimed = on_reclaimed
        self._health = health or LoopHealth()
        self._wakeup = asyncio.Event()
        self._capacity = asyncio.Event()
        self._in_flight: dict[int, _InFlight] = {}
        #: Subscribers with an MT in flight, and the MTs to them waiting their turn.
        self._busy: dict[str, deque[ClaimedMT]] = {}
        self._waiting = 0
        #: set while no MT is in flight or waiting its turn
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.submitted = 0
        self.accepted = 0
        self.rejected = 0
        #: segments given back unsent by a session that closed or stopped sending
        self.unsent = 0

    # --- control -------------------------------------------------------------------------------------

    def wake(self) -> None:
        """An MT was queued in this process: claim now instead of at the next poll."""
        self._wakeup.set()

    def recorded(self, requeued: bool) -> None:
        """The recorder wrote a batch: there is room to claim again, and MTs due now when
        ``requeued``."""
        self._capacity.set()
        if requeued:
            self._wakeup.set()

    def update_carriers(self, carriers: Sequence[CarrierConfig]) -> None:
        """A reload; raises ``InvalidQuirks`` (and changes nothing) when a carrier's quirks are bad."""
        quirks = {carrier.name: carrier_quirks(carrier) for carrier in carriers}
        self._carriers = {carrier.name: carrier for carrier in carriers}
        self._quirks = quirks
        self._recorder.quirks = quirks

    @property
    def closing(self) -> bool:
        """:meth:`close` was called: no new claims; what is under way is finished and recorded."""
        return self._closing

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def close(self) -> None:
        """Stop claiming; the MTs in flight get their answers and are recorded, those not sent yet go
        back to the outbox (the attempt not counted) instead of trickling out at the carrier's pace;
        then the loops end. The drain takes at most a response timeout, whatever the backlog."""
        self._closing = True
        self._binds.stop_sending()
        self._wakeup.set()
        self._capacity.set()
        self._binds.bound_changed.set()  # ends the bind-watch loop, which otherwise waits for a bind change

    async def run_loop(self) -> None:
        """Claims and sends until :meth:`close`, then returns once every MT sent is recorded."""
        await self._reconcile()
        async with asyncio.TaskGroup() as group:
            watch = group.create_task(self._bind_watch_loop(), name="mt.bind_watch_loop")
            await group.create_task(self._claim_loop(), name="mt.claim_loop")
            await self._idle.wait()
            watch.cancel()
        await self._recorder.flush()

    # --- claim ---------------------------------------------------------------------------------------

    async def _reconcile(self, *, own: bool = True) -> None:
        """MTs this instance left in ``sending`` (a crash, a kill) and expired leases of others."""
        while not self._closing:
            try:
                now = datetime.now(UTC)
                async with self._store.transaction() as session:
                    changes = await self._store.claims.reconcile(
                        session, now, owner=self._owner if own else None
                    )
                    await self._webhooks.mt_changes(session, changes, now)
            except Exception as error:
                self._health.failed("mt.reconcile", error)
                log_event(log, "mt.reconcile_failed", logging.WARNING, error=repr(error))
                await asyncio.sleep(DATABASE_RETRY_DELAY)
                continue
            self._health.succeeded("mt.reconcile")
            if changes:
                log_event(log, "mt.reconciled", count=len(changes))
                reclaimed = sum(1 for change in changes if change.status is MTStatus.QUEUED)
                if not own and reclaimed and self._on_reclaimed is not None:
                    # another daemon's claims whose lease ran out: it died (or was cut off) with them in
                    # flight, so each may have reached the SMSC; at most what it had in flight
                    self._on_reclaimed(reclaimed)
                # sent again, though their submit_sm may have reached the SMSC before the daemon died
                possible_duplicates(
                    [change.mt_id for change in changes if change.status is MTStatus.QUEUED],
                    RESTART,
                    "its daemon stopped (or its lease ran out) before recording an answer",
                    self._on_possible_duplicates,
                )
                await self._published(changes)
            return

    async def _renew_leases(self) -> None:
        """Every half lease, the MTs this daemon holds get a fresh lease: one waiting behind a slow
        carrier's throttle, or whose answer waits for the database, is not taken for one a dead
        daemon left (and sent twice)."""
        try:
            now = datetime.now(UTC)
            async with self._store.transaction() as session:
                await self._store.claims.renew_leases(session, self._owner, now, lease=self._lease)
        except Exception as error:
            self._health.failed("mt.lease", error)
            log_event(log, "mt.lease_renewal_failed", logging.WARNING, error=repr(error))
            return
        self._health.succeeded("mt.lease")

    async def _bind_watch_loop(self) -> None:
        """A bind coming up is a reason to look at the outbox again."""
        while not self._closing:
            self._binds.bound_changed.clear()
            await self._binds.bound_changed.wait()
            self._wakeup.set()

    async def _claim_loop(self) -> None:
        next_reconcile = time.monotonic() + self._lease / 2
        while not self._closing:
            if time.monotonic() >= next_reconcile:
                await self._renew_leases()
                await self._reconcile(own=False)
                next_reconcile = time.monotonic() + self._lease / 2
            carriers = self._binds.carriers_up() & set(self._carriers)
            if not carriers:
                await self._wait(self._wakeup, self._poll_interval)
                continue
            room = self._claim_room()
            if room <= 0:
                await self._wait(self._capacity, self._poll_interval)
                continue
            self._wakeup.clear()
            try:
                claimed = await self._claim(min(room, self._claim_batch), carriers)
            except Exception as error:
                self._health.failed("mt.claim", error)
                log_event(log, "mt.claim_failed", logging.WARNING, error=repr(error))
                await asyncio.sleep(DATABASE_RETRY_DELAY)
                continue
            self._health.succeeded("mt.claim")
            if not claimed:
                await self._wait(self._wakeup, self._poll_interval)
                continue
            for mt in claimed:
                self._dispatch(mt)

    def _claim_room(self) -> int:
        """How many MTs to claim now; 0: wait. The MTs claimed and not yet answered (waiting their
        turn, in flight) are at most the windows of the binds that can send, ``SENDING_AHEAD`` times
        over, claimed once a quarter of that is free: an MT claimed far ahead of its turn would wait
        long in a session's queue behind a slow carrier. Everything claimed and not yet recorded
        (answered MTs lingering for their receipts or being committed included), which is what a
        crash leaves ``sending`` to be sent again as possible duplicates, is at most
        ``WINDOWS_AHEAD`` windows (and ``max_in_flight``): the answered ones have room of their own,
        so a small window never drains while the recorder writes the previous ones' answers."""
        window = self._binds.sending_window()
        limit = window * SENDING_AHEAD
        sending = len(self._in_flight) + self._waiting
        held = sending + self._recorder.unrecorded
        room = min(limit - sending, min(self._max_in_flight, window * WINDOWS_AHEAD) - held)
        if sending and room < min(self._claim_batch, max(1, limit // 4)):
            return 0
        return max(0, room)

    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        event.clear()

    async def _claim(self, limit: int, carriers: set[str]) -> list[ClaimedMT]:
        """Claim due MTs; those whose subscriber opted out or was banned since are refused by the store."""
        now = datetime.now(UTC)
        async with self._store.transaction() as session:
            claimed = await self._store.claims.claim(
                session,
                self._owner,
                now,
                limit=limit,
                lease=self._lease,
                carriers=carriers,
                billed_short_codes=self.billed_short_codes,
            )
        for mt_id, reason in claimed.refused:
            log_event(log, "mt.refused", mt_id=mt_id, reason=reason)
            await self._events.mt_status(mt_id, MTStatus.REFUSED.value, reason, now)
        return claimed.mts

    # --- submit --------------------------------------------------------------------------------------

    def _dispatch(self, mt: ClaimedMT) -> None:
        """Send ``mt`` now, or after the MT to the same subscriber that is still in flight: a
        subscriber reads their messages in the order they were queued, throttling or not."""
        self._idle.clear()
        waiting = self._busy.get(mt.destination)
        if waiting is not None:
            waiting.append(mt)
            self._waiting += 1
            return
        self._busy[mt.destination] = deque()
        self._send(mt)

    def _release(self, destination: str) -> None:
        """The MT to ``destination`` is done: the next one waiting for it goes."""
        waiting = self._busy.get(destination)
        if waiting:
            self._waiting -= 1
            self._send(waiting.popleft())
        else:
            self._busy.pop(destination, None)
        if not self._in_flight and not self._waiting:
            self._idle.set()

    def _send(self, mt: ClaimedMT) -> None:
        if self._closing:  # an MT that waited for its subscriber's previous one: another run sends it
            self._recorder.give_back(mt.id, "not sent: the daemon is stopping")
            self._release(mt.destination)
            return
        carrier = self._carriers.get(mt.carrier)
        if carrier is None:
            self._finish_now(
                mt, 1, datetime.now(UTC), LOCAL_NO_ROUTE, f"no carrier {mt.carrier!r} configured", False
            )
            return
        choice = self._binds.choose(mt.carrier, mt.bind_name, destination=mt.destination, source=mt.source)
        if choice is None:
            self._recorder.give_back(mt.id, f"no bind of {mt.carrier} is up", NO_BIND_DELAY)
            self._release(mt.destination)
            return
        bind_name, session = choice
        try:
            segments, submits = build_submits(mt, carrier, self._quirks[mt.carrier])
        except (LocalProtocolError, InvalidAddress) as error:
            self._finish_now(mt, 1, datetime.now(UTC), LOCAL_ENCODING, str(error), False)
            return
        if not submits:
            # every segment was accepted on an earlier attempt: lease expiry reconciles it
            log_event(log, "mt.nothing_to_send", mt_id=mt.id)
            self._release(mt.destination)
            return
        flight = _InFlight(mt, len(submits))
        self._in_flight[mt.id] = flight
        for segment, pdu in submits:
            self._submit(flight, session, bind_name, segments, segment.part_number, pdu)

    def _submit(
        self,
        flight: _InFlight,
        session: ESMESession,
        bind_name: str,
        segments: int,
        part_no: int,
        pdu: SubmitSM,
    ) -> None:
        submitted_at = datetime.now(UTC)
        started = time.perf_counter()
        mt = flight.mt

        def done(outcome: Outcome) -> None:
            result = self._part_result(mt, part_no, segments, bind_name, submitted_at, outcome)
            if self._on_submitted is not None and result.sent:
                self._on_submitted(
                    mt.carrier, "accepted" if result.accepted else "rejected", time.perf_counter() - started
                )
            self._collect(flight, result)

        self.submitted += 1
        try:
            session.submit_nowait(pdu, done, bulk=mt.priority < 0)
        except SMPPError as error:  # the session closed between choosing it and now
            done(error)

    def _part_result(
        self,
        mt: ClaimedMT,
        part_no: int,
        segments: int,
        bind_name: str,
        submitted_at: datetime,
        outcome: Outcome,
    ) -> PartResult:
        responded_at = datetime.now(UTC)
        if isinstance(outcome, SubmitSMResp) and outcome.command_status == 0:
            self.accepted += 1
            message_id = normalise_message_id(outcome.message_id)
            # its receipt may come before the MT's other segments are answered: the recorder knows it
            self._recorder.accepted(mt.carrier, message_id)
            return PartResult(
                mt_id=mt.id,
                part_no=part_no,
                segments=segments,
                carrier=mt.carrier,
                submitted_at=submitted_at,
                responded_at=responded_at,
                bind_name=bind_name,
                smsc_message_id=message_id,
            )
        if isinstance(outcome, SessionClosed) and not outcome.sent:
            # it never left: no attempt spent, the MT goes back to the outbox for the next bind at once
            self.unsent += 1
            return PartResult(
                mt_id=mt.id,
                part_no=part_no,
                segments=segments,
                carrier=mt.carrier,
                submitted_at=submitted_at,
                responded_at=responded_at,
                bind_name=bind_name,
                error_code=LOCAL_SESSION_LOST,
                error_text=str(outcome),
                retryable=True,
                sent=False,
            )
        self.rejected += 1
        if isinstance(outcome, NegativeResponseError):
            code, text, retryable = error_code_of(outcome.status), str(outcome), is_temporary(outcome.status)
        elif isinstance(outcome, ResponseTimeout):
            code, text, retryable = LOCAL_TIMEOUT, "no response", True
        elif isinstance(outcome, SMPPError):
            code, text, retryable = LOCAL_SESSION_LOST, str(outcome) or "session lost", True
        else:
            code = error_code_of(outcome.command_status)
            retryable = is_temporary(outcome.command_status)
            text = f"unexpected {type(outcome).__name__} status 0x{outcome.command_status:08X}"
        return PartResult(
            mt_id=mt.id,
            part_no=part_no,
            segments=segments,
            carrier=mt.carrier,
            submitted_at=submitted_at,
            responded_at=responded_at,
            bind_name=bind_name,
            error_code=code,
            error_text=text,
            retryable=retryable,
        )

    def _collect(self, flight: _InFlight, result: PartResult) -> None:
        flight.results.append(result)
        flight.pending -= 1
        if flight.pending == 0:
            del self._in_flight[flight.mt.id]
            self._recorder.add(flight.results)
            self._release(flight.mt.destination)
            self._capacity.set()  # room in the windows: claim the next ones before they drain

    def _finish_now(
        self, mt: ClaimedMT, segments: int, now: datetime, code: int, text: str, retryable: bool
    ) -> None:
        log_event(log, "mt.not_sent", logging.WARNING, mt_id=mt.id, carrier=mt.carrier, reason=text)
        self._recorder.add(
            [
                PartResult(
                    mt_id=mt.id,
                    part_no=1,
                    segments=segments,
                    carrier=mt.carrier,
                    submitted_at=now,
                    responded_at=now,
                    error_code=code,
                    error_text=text,
                    retryable=retryable,
                )
            ],
            linger=False,
        )
        self._release(mt.destination)

    async def _published(self, changes: Sequence[MTStatusChange]) -> None:
        await self._events.mt_changes(changes)
        if self._on_changes is not None and changes:
            self._on_changes(changes)
