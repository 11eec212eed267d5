"""One simulated carrier: the ``SMSCHandler`` behind its SMPP port, its binds, its outbound queue.

The request path is synchronous and allocation-light (it runs 50,000 times a second): count, check
one ``faults.active`` flag, answer. Receipts and slow answers go to the simulator's timer wheel; MOs
and receipts leave through ``deliver_nowait`` with a callback, never a task per PDU.
"""

from __future__ import annotations

import bisect
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from simulator.counters import Counters
from simulator.events import EventHub
from simulator.faults import FaultState, carrier_bucket
from simulator.ledger import Ledger
from simulator.message_states import MessageStates, format_message_id, message_number
from simulator.mo import MOMessage
from simulator.mtstore import MTPDU, MTRecord, MTStore
from simulator.pdu_json import as_message, message_content
from simulator.profiles import RECEIPT_STATES, CarrierProfile
from simulator.timerwheel import TimerWheel
from smpp.aio import BindRequest, SMSCSession
from smpp.concat import user_data
from smpp.constants import (
    NPI,
    TEMPORARY_STATUSES,
    TON,
    CommandID,
    CommandStatus,
    ESMClass,
    MessageState,
    RegisteredDelivery,
)
from smpp.errors import LocalProtocolError, ResponseTimeout, SessionClosed, SMPPError
from smpp.pdu import (
    PDU,
    CancelSM,
    CancelSMResp,
    DataSM,
    DataSMResp,
    DeliverSM,
    EnquireLinkResp,
    GenericNack,
    QuerySM,
    QuerySMResp,
    ReplaceSMResp,
    SMEAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSM,
    SubmitSMResp,
)
from smpp.text import decode_text
from smpp.tlv import Tag, TLVs

DueItem = tuple[Callable[[Any], None], Any]

log = logging.getLogger("simulator.carrier")

_ENQUIRE_LINK = int(CommandID.ENQUIRE_LINK)
_SUBMIT_SM = int(CommandID.SUBMIT_SM)
_DATA_SM = int(CommandID.DATA_SM)
_DELIVER_SM = int(CommandID.DELIVER_SM)
_SUBMIT_MULTI = int(CommandID.SUBMIT_MULTI)
_SUBMITS = frozenset({_SUBMIT_SM, _DATA_SM, _SUBMIT_MULTI})
# Plain ints: IntFlag arithmetic costs a microsecond per operation on the hot path.
#: Answers after which a deliver_sm is tried again later (with backoff): the temporary errors, and
#: ESME_RINVBNDSTS, which an unbinding ESME gives a deliver_sm that crossed its unbind (the session
#: refused it, not the message: the next attempt goes to a bind still up).
_RETRIED_STATUSES = frozenset({*TEMPORARY_STATUSES, CommandStatus.ESME_RINVBNDSTS})
_RECEIPT_REQUEST = int(RegisteredDelivery.FINAL | RegisteredDelivery.FAILURE)
_FAILURE_ONLY = int(RegisteredDelivery.FAILURE)
_UDHI = int(ESMClass.UDHI)
_RECEIPT_ESM_CLASS = int(ESMClass.DELIVERY_RECEIPT)
_ENROUTE = int(MessageState.ENROUTE)
_RECEIPTED_MESSAGE_ID = int(Tag.RECEIPTED_MESSAGE_ID)
_MESSAGE_STATE = int(Tag.MESSAGE_STATE)
_INTERNATIONAL = TON.INTERNATIONAL
_ISDN = NPI.ISDN
#: The longest address a deliver_sm holds (SMPP 3.4 §4.6.1, 21-octet C-strings), as many digits as
#: GSM 03.40 gives a handset's TP-OA / TP-DA. data_sm allows 64 (for non-GSM networks): an MT with a
#: longer address could be neither answered by an MO nor given its receipt, so it is refused.
MAX_ADDRESS = 20
#: Message states kept for query_sm.
MAX_TRACKED_STATES = 100_000
#: Per receipt stat: the message_state TLV value, the dlvrd field, and the text after the dates.
_RECEIPT_FIELDS: dict[str, tuple[int, str, str]] = {
    stat: (
        int(state),
        "001" if stat == "DELIVRD" else "000",
        f" stat:{stat} err:{'000' if stat == 'DELIVRD' else '001'} Text:",
    )
    for stat, state in RECEIPT_STATES.items()
}
#: GSM 03.38 codes that decode to the ASCII character of the same code (letters, digits, most
#: punctuation): a receipt excerpt made only of these is its own octets, with no decoding.
_GSM_SAME_AS_ASCII = bytes(
    code for code in range(0x80) if code != 0x1B and decode_text(bytes((code,)), 0) == chr(code)
)


class ReceiptPlan:
    """A receipt profile prepared for the hot path: cumulative weights, overrides as a dict."""

    __slots__ = (
        "enabled",
        "delay",
        "states",
        "cumulative",
        "total",
        "overrides",
        "fixed_state",
        "same_state",
        "fixed_delay",
    )

    def __init__(self, profile: CarrierProfile) -> None:
        receipts = profile.receipts
        self.enabled = receipts.enabled
        self.delay = receipts.delay
        self.states = list(receipts.statuses)
        self.cumulative = list(accumulate(receipts.statuses.values()))
        self.total = self.cumulative[-1]
        self.overrides = dict(receipts.overrides)
        positive = [stat for stat, weight in receipts.statuses.items() if weight > 0]
        self.fixed_state = positive[0] if len(positive) == 1 else None
        #: The state of every receipt when no draw or override can change it, else None.
        self.same_state = self.fixed_state if not self.overrides else None
        #: The receipt delay when it is always the same, else None.
        self.fixed_delay = receipts.delay.seconds if receipts.delay.kind == "fixed" else None

    def pick(self, destination: str, rng: random.Random) -> str:
        if self.overrides:
            stat = self.overrides.get(destination)
            if stat is not None:
                return stat
        if self.fixed_state is not None:
            return self.fixed_state
        return self.states[bisect.bisect_right(self.cumulative, rng.random() * self.total)]


class Carrier:
    """The SMSC of one carrier. Implements ``smpp.aio.SMSCHandler``."""

    def __init__(
        self,
        profile: CarrierProfile,
        index: int,
        *,
        store: MTStore,
        hub: EventHub,
        wheel: TimerWheel[DueItem],
        rng: random.Random,
        clock: Callable[[], float],
    ) -> None:
        self.profile = profile
        self.name = profile.name
        self.store = store
        self.hub = hub
        self.wheel = wheel
        self.rng = rng
        self.clock = clock
        #: Called with each accepted MT while someone observes MTs (the engine sets it), else None.
        self.mt_observer: Callable[[Carrier, MTRecord], None] | None = None
        #: Where accepted MTs and the answers to MOs and receipts are recorded, if anywhere.
        self.ledger: Ledger | None = None
        self.counters = Counters()
        self.faults = FaultState()
        self.sessions: list[SMSCSession] = []
        self.receivers: list[SMSCSession] = []
        #: deliver_sm waiting for a receiver's window: the PDU, the attempt number it will be, and when
        #: its first attempt was made (None before that).
        self.outbox: deque[tuple[DeliverSM, int, float | None]] = deque()
        self.message_states = MessageStates(MAX_TRACKED_STATES)
        self._next_message_number = (index + 1) << 28
        self._round_robin = 0
        self._receipt_dates: dict[int, str] = {}
        self._mo_reference = self.rng.randrange(256)
        self.apply_profile(profile)
        self.faults.apply(profile.faults, self.clock(), profile.tps)

    def keep_ledger(self, ledger: Ledger) -> None:
        """Record into ``ledger``, and number MTs after the last one it holds for this carrier (the
        ids handed out before a restart are never given again)."""
        self.ledger = ledger
        self._next_message_number = max(self._next_message_number, ledger.last_numbers.get(self.name, 0) + 1)

    def apply_profile(self, profile: CarrierProfile) -> None:
        self.profile = profile
        self.bucket = None if profile.tps is None else carrier_bucket(profile.tps, self.clock())
        self.receipt_plan = ReceiptPlan(profile)
        self.hex_ids = profile.message_id_format == "hex"
        self.allowed_bind_types = profile.allowed_bind_types

    # --- SMSCHandler ------------------------------------------------------------------------------

    def authenticate(self, session: SMSCSession, bind: BindRequest) -> int:
        status = self._bind_status(bind)
        if status:
            self.counters.binds_refused += 1
        return status

    def _bind_status(self, bind: BindRequest) -> int:
        profile = self.profile
        if self.faults.refuse_binds_status is not None:
            return self.faults.refuse_binds_status
        if bind.system_id != profile.system_id:
            return CommandStatus.ESME_RINVSYSID
        if bind.password != profile.password:
            return CommandStatus.ESME_RINVPASWD
        if bind.bind_type not in self.allowed_bind_types:
            return CommandStatus.ESME_RBINDFAIL
        if len(self.sessions) >= profile.max_binds:
            return CommandStatus.ESME_RBINDFAIL
        return CommandStatus.ESME_ROK

    def on_bound(self, session: SMSCSession) -> None:
        self.counters.binds_accepted += 1
        self.counters.bound(session.system_id)
        self.sessions.append(session)
        if session.can_receive:
            self.receivers.append(session)
            self.pump()
        self._publish_binds()

    def on_closed(self, session: SMSCSession) -> None:
        if session in self.sessions:
            self.sessions.remove(session)
            self.counters.connections_closed += 1
            self.counters.unbound(session.system_id)
        if session in self.receivers:
            self.receivers.remove(session)
        self._publish_binds()

    def _publish_binds(self) -> None:
        if self.hub.listening:
            self.hub.publish({"type": "binds", "carrier": self.name, "binds": len(self.sessions)})

    def on_request(self, session: SMSCSession, pdu: PDU) -> PDU | None:
        command_id = pdu.command_id
        counters = self.counters
        pdus_in = counters.pdus_in
        pdus_in[command_id] = pdus_in.get(command_id, 0) + 1
        if self.faults.active:
            response = self._answer_with_faults(session, pdu)
        elif command_id == _ENQUIRE_LINK:
            response = EnquireLinkResp(sequence_number=pdu.sequence_number)
        else:
            response = self._answer(session, pdu)
        if response is not None:
            pdus_out = counters.pdus_out
            response_id = response.command_id
            pdus_out[response_id] = pdus_out.get(response_id, 0) + 1
        return response

    # --- answers --------------------------------------------------------------------------------

    def _answer(self, session: SMSCSession, pdu: PDU) -> PDU:
        command_id = pdu.command_id
        if command_id == _SUBMIT_SM:  # nearly every request
            bucket = self.bucket
            if bucket is not None and bucket.take(self.clock()) > 0.0:  # no token: throttled
                self.counters.mt_rejected += 1
                return _error(pdu, CommandStatus.ESME_RTHROTTLED)
            assert isinstance(pdu, SubmitSM)
            return SubmitSMResp(
                sequence_number=pdu.sequence_number,
                message_id=self._accept(session, pdu, (pdu.destination_addr,)),
            )
        if command_id in _SUBMITS:
            if command_id == _DATA_SM:
                assert isinstance(pdu, DataSM)
                status = _address_status(pdu)
                if status:
                    self.counters.mt_rejected += 1
                    return _error(pdu, status)
            bucket = self.bucket
            if bucket is not None and bucket.take(self.clock()) > 0.0:  # no token: throttled
                self.counters.mt_rejected += 1
                return _error(pdu, CommandStatus.ESME_RTHROTTLED)
            if command_id == _DATA_SM:
                assert isinstance(pdu, DataSM)
                return DataSMResp(
                    sequence_number=pdu.sequence_number,
                    message_id=self._accept(session, pdu, (pdu.destination_addr,)),
                )
            assert isinstance(pdu, SubmitMulti)
            destinations = tuple(d.address for d in pdu.dest_addresses if isinstance(d, SMEAddress))
            if not destinations:
                return _error(pdu, CommandStatus.ESME_RINVNUMDESTS)
            return SubmitMultiResp(
                sequence_number=pdu.sequence_number, message_id=self._accept(session, pdu, destinations)
            )
        if isinstance(pdu, QuerySM):
            state = self.message_state(pdu.message_id)
            if state is None:
                return _error(pdu, CommandStatus.ESME_RQUERYFAIL)
            return QuerySMResp(
                sequence_number=pdu.sequence_number, message_id=pdu.message_id, message_state=state
            )
        if isinstance(pdu, CancelSM):
            return CancelSMResp(sequence_number=pdu.sequence_number)
        if command_id == CommandID.REPLACE_SM:
            return ReplaceSMResp(sequence_number=pdu.sequence_number)
        if command_id == _ENQUIRE_LINK:
            return EnquireLinkResp(sequence_number=pdu.sequence_number)
        return GenericNack(sequence_number=pdu.sequence_number, command_status=CommandStatus.ESME_RINVCMDID)

    def _answer_with_faults(self, session: SMSCSession, pdu: PDU) -> PDU | None:
        faults = self.faults
        if faults.count_for_drop():
            session.abort()
            return None
        if pdu.command_id == _ENQUIRE_LINK:
            if faults.ignore_enquire_link:
                return None
            return EnquireLinkResp(sequence_number=pdu.sequence_number)
        if faults.no_response:
            return None
        if faults.generic_nack:
            return GenericNack(sequence_number=pdu.sequence_number, command_status=CommandStatus.ESME_RSYSERR)
        now = self.clock()
        response: PDU
        if pdu.command_id in _SUBMITS and faults.throttle is not None and faults.throttle.take(now) > 0.0:
            self.counters.mt_rejected += 1
            response = _error(pdu, CommandStatus.ESME_RTHROTTLED)
        elif pdu.command_id in _SUBMITS and faults.queue_full(now):
            self.counters.mt_rejected += 1
            response = _error(pdu, CommandStatus.ESME_RMSGQFUL)
        else:
            response = self._answer(session, pdu)
        if faults.slow_seconds:
            self.wheel.schedule(now + faults.slow_seconds, (self._respond_late, (session, pdu, response)))
            return None
        return response

    def _respond_late(self, item: tuple[SMSCSession, PDU, PDU]) -> None:
        session, request, response = item
        if session not in self.sessions:
            return  # the connection went away meanwhile
        self.counters.count_out(response.command_id)
        session.respond(request, response)

    # --- MT ---------------------------------------------------------------------------------------

    def _accept(self, session: SMSCSession, pdu: MTPDU, destinations: tuple[str, ...]) -> str:
        number = self._next_message_number
        self._next_message_number = number + 1
        message_id = format_message_id(number, self.hex_ids)
        self.counters.mt_accepted += 1
        record = self.store.add(self.name, session.system_id, time.time(), pdu, message_id)
        if self.ledger is not None:
            self.ledger.submit(self.name, session.system_id, record, number)
        registered = pdu.registered_delivery
        if registered & _RECEIPT_REQUEST and self.receipt_plan.enabled:
            self._schedule_receipts(record, number, destinations, registered)
        observer = self.mt_observer
        if observer is not None:
            observer(self, record)
        return message_id

    def _schedule_receipts(
        self, record: MTRecord, number: int, destinations: tuple[str, ...], registered: int
    ) -> None:
        plan = self.receipt_plan
        failure_only = registered & _RECEIPT_REQUEST == _FAILURE_ONLY
        now = self.clock()
        # The usual profile has one state and a fixed delay: nothing to draw per receipt.
        same_state = plan.same_state
        same_delay = plan.fixed_delay
        send_receipt = self._send_receipt
        schedule = self.wheel.schedule
        for destination in destinations:
            stat = same_state if same_state is not None else plan.pick(destination, self.rng)
            if failure_only and stat == "DELIVRD":
                continue
            delay = same_delay if same_delay is not None else plan.delay.sample(self.rng)
            schedule(now + delay, (send_receipt, (record, destination, stat)))
        self.message_states.set(number, _ENROUTE)

    def receipt_text(
        self, message_id: str, stat: str, submitted_at: float, done_at: float, excerpt: str
    ) -> str:
        """The Appendix B receipt text, as ``smpp.receipt.format_receipt`` writes it, with dates cached
        per minute: that formatter's two strftime calls would be a third of the receipt cost."""
        return self._receipt_head(message_id, stat, submitted_at, done_at) + excerpt

    def _receipt_head(self, message_id: str, stat: str, submitted_at: float, done_at: float) -> str:
        """The receipt text up to and including ``Text:``."""
        _, delivered, tail = _RECEIPT_FIELDS[stat]
        dates = self._receipt_dates
        submitted = dates.get(int(submitted_at // 60)) or self._receipt_date(submitted_at)
        done = dates.get(int(done_at // 60)) or self._receipt_date(done_at)
        return f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{submitted} done date:{done}{tail}"

    def _receipt_date(self, timestamp: float) -> str:
        minute = int(timestamp // 60)
        cache = self._receipt_dates
        text = cache.get(minute)
        if text is None:
            if len(cache) > 1000:
                cache.clear()
            text = cache[minute] = time.strftime("%y%m%d%H%M", time.localtime(minute * 60))
        return text

    def message_state(self, message_id: str) -> int | None:
        """The state the last receipt of an MT of this carrier reported (query_sm), if known."""
        number = message_number(message_id, self.hex_ids)
        return None if number is None else self.message_states.get(number)

    def _send_receipt(self, item: tuple[MTRecord, str, str]) -> None:
        record, destination, stat = item
        state = _RECEIPT_FIELDS[stat][0]
        pdu = record.pdu
        message_id = record.message_id
        head = self._receipt_head(message_id, stat, record.received_at, time.time())
        receipt = DeliverSM(
            source_addr_ton=_INTERNATIONAL,
            source_addr_npi=_ISDN,
            source_addr=destination,
            dest_addr_ton=pdu.source_addr_ton,
            dest_addr_npi=pdu.source_addr_npi,
            destination_addr=pdu.source_addr,
            esm_class=_RECEIPT_ESM_CLASS,
            short_message=head.encode("ascii", "replace") + receipt_excerpt(pdu),
            tlvs=TLVs(((_RECEIPTED_MESSAGE_ID, message_id), (_MESSAGE_STATE, state))),
        )
        number = message_number(message_id, self.hex_ids)
        if number is not None:  # None: the profile's id format changed since the MT was accepted
            self.message_states.set(number, state)
        if self.hub.listening:
            self.hub.publish(
                {
                    "type": "receipt",
                    "carrier": self.name,
                    "msisdn": destination,
                    "message_id": message_id,
                    "status": stat,
                }
            )
        self.enqueue(receipt)

    # --- deliver_sm (MO and receipts) -------------------------------------------------------------

    def enqueue(self, pdu: DeliverSM) -> None:
        """Send ``pdu`` to a bound receiver, or keep it (bounded) until one binds."""
        outbox = self.outbox
        if len(outbox) >= self.profile.queue_size:
            outbox.popleft()
            self.counters.queue_dropped += 1
        outbox.append((pdu, 1, None))
        if self.receivers:
            self.pump()

    def pump(self) -> None:
        """Hand queued deliver_sm to the receivers, round robin, as far as their windows allow."""
        outbox = self.outbox
        receivers = self.receivers
        count = len(receivers)
        refused = 0
        pdus_out = self.counters.pdus_out
        delivered = self._delivered
        while outbox and refused < count:
            session = receivers[self._round_robin % count]
            self._round_robin += 1
            if session.in_flight >= session.window:
                # Full, the usual answer while a burst waits: no callback built, no clock read.
                refused += 1
                continue
            pdu, attempt, first_at = outbox[0]
            if first_at is None:
                first_at = self.clock()
            try:
                sent = session.deliver_nowait(pdu, functools.partial(delivered, pdu, attempt, first_at))
            except LocalProtocolError as error:
                # The bind can receive (checked there), so it is the PDU that cannot be encoded, on
                # any bind: it goes, or it would stop the queue, and raise in whoever pumps next.
                outbox.popleft()
                self._unencodable(pdu, attempt, error)
                continue
            if sent:
                outbox.popleft()
                pdus_out[_DELIVER_SM] = pdus_out.get(_DELIVER_SM, 0) + 1
                refused = 0
            else:
                refused += 1

    def _unencodable(self, pdu: DeliverSM, attempt: int, error: LocalProtocolError) -> None:
        self.counters.deliveries_unencodable += 1
        if self.ledger is not None:
            self.ledger.delivered(self.name, pdu, attempt, error)
        log.warning(
            "%s: %s from %r to %r dropped: it cannot be encoded: %s",
            self.name,
            "receipt" if pdu.esm_class & _RECEIPT_ESM_CLASS else "MO",
            pdu.source_addr,
            pdu.destination_addr,
            error,
        )

    def _delivered(self, pdu: DeliverSM, attempt: int, first_at: float, outcome: PDU | SMPPError) -> None:
        """Count the answer; a temporary error or no answer is redelivered later, with backoff; a
        permanent error drops the deliver_sm (counted in ``mo_failed``)."""
        counters = self.counters
        if self.ledger is not None:
            self.ledger.delivered(self.name, pdu, attempt, outcome)
        if isinstance(outcome, PDU):
            pdus_in = counters.pdus_in
            command_id = outcome.command_id
            pdus_in[command_id] = pdus_in.get(command_id, 0) + 1
            status = outcome.command_status
            if status == 0:
                if pdu.esm_class & _RECEIPT_ESM_CLASS:
                    counters.receipts_sent += 1
                else:
                    counters.mo_delivered += 1
            elif status in _RETRIED_STATUSES:
                self._redeliver_later(pdu, attempt, first_at)
            else:
                counters.mo_failed += 1
        elif isinstance(outcome, ResponseTimeout):
            self._redeliver_later(pdu, attempt, first_at)
        elif isinstance(outcome, SessionClosed):
            # the bind went away, not the ESME refusing: the next receiver gets it at once
            self.outbox.appendleft((pdu, attempt + 1, first_at))
        else:
            counters.mo_failed += 1
        if self.outbox and self.receivers:
            self.pump()

    def _redeliver_later(self, pdu: DeliverSM, attempt: int, first_at: float) -> None:
        now = self.clock()
        due = self.profile.redelivery.next_due(attempt, first_at, now)
        if due is None:
            self.counters.deliveries_expired += 1
            return
        self.counters.redeliveries += 1
        self.wheel.schedule(due, (self._redeliver, (pdu, attempt + 1, first_at)))

    def _redeliver(self, item: tuple[DeliverSM, int, float | None]) -> None:
        # in front of the queue: what has waited longest goes first
        self.outbox.appendleft(item)
        if self.receivers:
            self.pump()

    # --- MO ---------------------------------------------------------------------------------------

    def next_mo_reference(self) -> int:
        self._mo_reference = (self._mo_reference + 1) & 0xFF
        return self._mo_reference

    # --- the event stream (the virtual phone) -------------------------------------------------------

    def publish_mo(self, message: MOMessage) -> None:
        if self.hub.listening:
            self.hub.publish(
                {
                    "type": "mo",
                    "carrier": self.name,
                    "msisdn": message.msisdn,
                    "short_code": message.short_code,
                    "text": message.text,
                    "at": time.time(),
                }
            )

    def publish_mt(self, record: MTRecord) -> None:
        if self.hub.listening:
            content = message_content(record.pdu)
            for destination in record.destinations:
                self.hub.publish(
                    {
                        "type": "mt",
                        "carrier": self.name,
                        "msisdn": destination,
                        "short_code": record.pdu.source_addr,
                        "text": content["text"],
                        "concat": content["concat"],
                        "message_id": record.message_id,
                        "id": record.id,
                        "at": record.received_at,
                    }
                )

    # --- control ----------------------------------------------------------------------------------

    def drop_connections(self) -> int:
        sessions = list(self.sessions)
        for session in sessions:
            session.abort()
        return len(sessions)

    def reset(self) -> None:
        self.counters = Counters()
        for session in self.sessions:  # the binds open now are the new maximum's start
            self.counters.bound(session.system_id)
        self.message_states.clear()

    def status(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "binds": [
                {
                    "system_id": s.system_id,
                    "peer": f"{s.peer[0]}:{s.peer[1]}",
                    "bind_type": s.bind_type.name.lower() if s.bind_type is not None else None,
                    "in_flight": s.in_flight,
                }
                for s in self.sessions
            ],
            "queued": len(self.outbox),
            "faults": self.faults.to_dict(now),
        }


def receipt_excerpt(pdu: MTPDU) -> bytes:
    """The first 20 characters of the message as a receipt's ``Text:`` field carries them (ASCII, ``?``
    for what ASCII cannot show). Plain ASCII text, the usual case, is its own excerpt: no decoding."""
    if isinstance(pdu, SubmitSM) and not pdu.esm_class & _UDHI and pdu.short_message:
        body = pdu.short_message
        head = body[:20]
        data_coding = pdu.data_coding
        if data_coding == 0:
            if not head.translate(None, _GSM_SAME_AS_ASCII):
                return head
        elif (data_coding == 1 or data_coding == 3) and head.isascii():  # IA5 and Latin-1
            return head
    else:
        _, body = user_data(as_message(pdu))
    return decode_text(body[:40], pdu.data_coding)[:20].encode("ascii", "replace")


def _address_status(pdu: DataSM) -> int:
    """ESME_RINVSRCADR / ESME_RINVDSTADR for a data_sm address longer than ``MAX_ADDRESS``, else 0."""
    if len(pdu.source_addr) > MAX_ADDRESS:
        return CommandStatus.ESME_RINVSRCADR
    if len(pdu.destination_addr) > MAX_ADDRESS:
        return CommandStatus.ESME_RINVDSTADR
    return 0


def _error(pdu: PDU, status: int) -> PDU:
    response_class = pdu.response_class
    if response_class is None:
        return GenericNack(sequence_number=pdu.sequence_number, command_status=status)
    return response_class(sequence_number=pdu.sequence_number, command_status=status)
