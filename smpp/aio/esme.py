"""asyncio ESME session: one TCP connection, one bind.

Submissions wait for a free slot in the window and a token of the throttle; a request answered
ESME_RTHROTTLED or ESME_RMSGQFUL is held and sent again, before anything submitted after it, once
the backoff pause is over. Inbound deliver_sm / data_sm go to the application's handler, whose
result is the command_status of the answer.

A handler may be a coroutine function (each PDU then runs in a task of its own), or, on the hot path,
a plain function that returns the status at once or an ``asyncio.Future`` of it: the answer is then
sent when the future is done, with no task and no coroutine per PDU.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from smpp.aio.throttle import TokenBucket
from smpp.aio.transport import Callback, Outcome, Outstanding, SessionProtocol
from smpp.connection import Role
from smpp.constants import BindType, CommandID, CommandStatus
from smpp.errors import LocalProtocolError, NegativeResponseError, ResponseTimeout, SessionClosed, SMPPError
from smpp.pdu import (
    PDU,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CancelSM,
    DataSM,
    DataSMResp,
    DeliverSM,
    DeliverSMResp,
    GenericNack,
    QuerySM,
    ReplaceSM,
    SubmitMulti,
    SubmitSM,
    Unbind,
    UnbindResp,
)

#: Answers that mean "slow down and send it again", not "this message failed".
THROTTLE_STATUSES: Final = frozenset({CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL})
#: Longest pause after repeated throttling, as a multiple of ``throttle_backoff``.
_MAX_BACKOFF_FACTOR: Final = 32

SubmitPDU = SubmitSM | DataSM | SubmitMulti | QuerySM | CancelSM | ReplaceSM
#: A coroutine function: awaited in a task per PDU; its result is the command_status of the answer.
MessageHandler = Callable[[DeliverSM | DataSM], Awaitable[int]]
#: The task-free handler: returns the command_status now (an int), or a future that will hold it. A
#: future that fails is answered ESME_RX_T_APPN, as a handler that raises; one cancelled is not
#: answered (as a cancelled task). The session never cancels such a future: its owner does.
FutureMessageHandler = Callable[[DeliverSM | DataSM], int | asyncio.Future[int]]
AnyMessageHandler = MessageHandler | FutureMessageHandler

_BIND_CLASSES: Final[dict[BindType, type[BindTransmitter | BindReceiver | BindTransceiver]]] = {
    BindType.TRANSMITTER: BindTransmitter,
    BindType.RECEIVER: BindReceiver,
    BindType.TRANSCEIVER: BindTransceiver,
}


@dataclass(frozen=True, slots=True)
class ESMEConfig:
    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    bind_type: BindType = BindType.TRANSCEIVER
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    window: int = 10  # max outstanding requests on this bind
    tps: float | None = None  # token bucket, submits per second; None = unlimited
    response_timeout: float = 10.0
    bind_timeout: float = 10.0
    enquire_link_interval: float = 30.0  # sent when nothing was received for this long
    enquire_link_timeout: float = 10.0  # no answer -> connection dropped (ESMEClient reconnects)
    ssl: ssl.SSLContext | None = None
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    throttle_backoff: float = 0.5  # first pause after ESME_RTHROTTLED / ESME_RMSGQFUL
    name: str = "esme"  # for logs and task names


class _Batch:
    """One ``submit_many`` call: its PDU iterator and the outcomes, in submission order."""

    __slots__ = ("pdus", "outcomes", "remaining", "exhausted", "done")

    def __init__(self, pdus: Iterator[SubmitPDU], done: asyncio.Future[None]) -> None:
        self.pdus = pdus
        self.outcomes: list[Outcome | None] = []
        self.remaining = 0
        self.exhausted = False
        self.done = done

    def slot(self) -> Callback:
        """A callback that stores the outcome of the next PDU at its place."""
        index = len(self.outcomes)
        self.outcomes.append(None)
        self.remaining += 1

        def settle(outcome: Outcome) -> None:
            self.outcomes[index] = outcome
            self.remaining -= 1
            self.settle_if_complete()

        return settle

    def settle_if_complete(self) -> None:
        if self.exhausted and self.remaining == 0 and not self.done.done():
            self.done.set_result(None)


class ESMESession(SessionProtocol):
    """One bind. ``async with`` connects and binds; leaving the block unbinds gracefully.

    Reusable (it can be entered again after it closed) but not re-entrant.
    """

    def __init__(self, config: ESMEConfig, on_message: AnyMessageHandler | None = None) -> None:
        if config.window < 1:
            raise ValueError("window must be at least 1")
        self.config = config
        self.system_id = ""  # the SMSC's, from the bind response
        self._on_message = on_message
        super().__init__(
            Role.ESME,
            config.name,
            enquire_link_interval=config.enquire_link_interval,
            enquire_link_timeout=config.enquire_link_timeout,
        )

    def _reset(self) -> None:
        super()._reset()
        config = self.config
        self._queue: deque[Outstanding] = deque()
        #: Bulk submissions (a mass push): they go out only when nothing else waits, so a reply
        #: submitted after them overtakes them instead of queueing behind a campaign's burst.
        self._bulk: deque[Outstanding] = deque()
        #: Throttled requests by original submission order: they go out before anything in the queue.
        self._held: list[tuple[int, Outstanding]] = []
        self._bucket = TokenBucket(config.tps, now=self._loop.time()) if config.tps else None
        self._next_order = 1
        self._in_flight = 0
        self._backoff = config.throttle_backoff
        self._throttled_until = 0.0
        self._pump_handle: asyncio.TimerHandle | None = None
        self._accepting = False
        #: why submissions are refused while the connection is up
        self._refusal = "not bound"
        self._drained: asyncio.Future[None] | None = None
        #: True once the SMSC answered our unbind: it read all we wrote before it, every answer included.
        self.unbind_answered = False
        self._message_tasks: set[asyncio.Task[None]] = set()
        #: Inbound messages handed to the handler and not answered yet; :meth:`unbind` waits for them.
        self._unanswered = 0
        self._all_answered: asyncio.Future[None] | None = None
        self._batches: deque[_Batch] = deque()

    # --- properties -------------------------------------------------------------------------------

    @property
    def window(self) -> int:
        return self.config.window

    @property
    def in_flight(self) -> int:
        """Submissions sent and not yet answered."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Submissions waiting for the window, the throttle or a backoff pause (the PDUs that
        ``submit_many`` has not read from its iterable yet are not counted)."""
        return len(self._queue) + len(self._bulk) + len(self._held)

    # --- connect, bind, unbind --------------------------------------------------------------------

    async def __aenter__(self) -> ESMESession:
        if self._transport is not None:
            raise SMPPError(f"{self.name}: session already open")
        self._reset()
        config = self.config
        async with asyncio.timeout(config.bind_timeout):
            await self._loop.create_connection(lambda: self, config.host, config.port, ssl=config.ssl)
        bind = _BIND_CLASSES[config.bind_type](
            system_id=config.system_id,
            password=config.password,
            system_type=config.system_type,
            addr_ton=config.addr_ton,
            addr_npi=config.addr_npi,
            address_range=config.address_range,
        )
        answer: asyncio.Future[PDU] = self._loop.create_future()
        try:
            self.send_request(Outstanding(bind, None, answer), config.bind_timeout)
            response = await answer
        except BaseException:
            self.abort()
            raise
        if response.command_status != 0:
            self.drop("bind refused")
            await self.wait_closed()
            raise NegativeResponseError(response)
        self.system_id = getattr(response, "system_id", "")
        self._accepting = True
        self._start_keepalive()
        self.log.info(
            "%s: bound %s to %s:%d as %r (SMSC %r)",
            self.name,
            config.bind_type.name.lower(),
            config.host,
            config.port,
            config.system_id,
            self.system_id,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            self.abort()
            return
        await self.unbind()

    def stop_sending(self) -> None:
        """Stop taking submissions and give back those not sent yet: each fails with ``SessionClosed``
        whose ``sent`` is False, at once. Those in flight still get their responses, inbound messages
        are still answered; :meth:`unbind` then closes the session once they are done. For a shutdown
        that must not wait for a long queue to trickle out at the carrier's pace."""
        self._refusal = "stopped sending"
        self._give_back(SessionClosed(f"{self.name}: stopped sending", sent=False))
        self._after_events()

    async def unbind(self) -> None:
        """Stop taking submissions, wait for those already taken to be answered, and for the inbound
        messages the handler still holds to be answered (at most ``response_timeout``), unbind, close.

        An inbound message left unanswered when the session closes is delivered again by the SMSC,
        maybe at once on another bind, maybe to another process that cannot yet see what this one's
        handler is storing: it would be stored twice (the chaos test found it at a daemon's SIGTERM)."""
        self._accepting = False
        self._refusal = "unbinding"
        if self._transport is None:
            return
        if self._in_flight or self._waiting():
            self._drained = self._loop.create_future()
            await asyncio.shield(self._drained)
        if self._unanswered and self._transport is not None:
            self._all_answered = self._loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._all_answered), self.config.response_timeout)
            except TimeoutError:
                self.log.warning("%s: unbinding with %d message(s) unanswered", self.name, self._unanswered)
            self._all_answered = None
        if self.bound:
            answer: asyncio.Future[PDU] = self._loop.create_future()
            try:
                self.send_request(Outstanding(Unbind(), None, answer), self.config.response_timeout)
                await answer
                self.unbind_answered = True
            except (ResponseTimeout, SessionClosed) as error:
                self.log.warning("%s: unbind not answered: %s", self.name, error)
        self.drop("unbound")
        await self.wait_closed()

    # --- submitting -------------------------------------------------------------------------------

    async def submit(self, pdu: SubmitPDU) -> PDU:
        """Send ``pdu`` when the window and the throttle allow, and return its (successful) response.

        Raises ``NegativeResponseError`` for a final error status, ``ResponseTimeout`` when this request
        was not answered in time, ``SessionClosed`` when the connection ends first.
        """
        future: asyncio.Future[PDU] = self._loop.create_future()
        self._enqueue(Outstanding(pdu, None, future, self._take_order(), True))
        return await future

    def submit_nowait(self, pdu: SubmitPDU, callback: Callback, *, bulk: bool = False) -> None:
        """Queue ``pdu`` and call ``callback`` with its response, or the ``SMPPError`` it failed with
        (``NegativeResponseError``, ``ResponseTimeout``, ``SessionClosed``). No coroutine, no future:
        the fast path for pipelines that submit many messages. ``bulk``: it waits until no other
        submission does (the window and the throttle serve everything else first)."""
        if not self._accepting:
            raise self._not_accepting()
        order = self._next_order
        self._next_order = order + 1
        (self._bulk if bulk else self._queue).append(Outstanding(pdu, callback, None, order, True))
        if self._in_flight < self.config.window and self._pump_handle is None:
            self._pump()

    async def submit_many(self, pdus: Iterable[SubmitPDU]) -> list[Outcome]:
        """Submit all of ``pdus`` pipelined through the window; their outcomes in the same order.

        ``pdus`` is read lazily, one PDU whenever the window has room, so a generator over a large
        outbox costs memory for the window only (plus the outcomes)."""
        if not self._accepting:
            raise self._not_accepting()
        batch = _Batch(iter(pdus), self._loop.create_future())
        self._batches.append(batch)
        if self._in_flight < self.config.window and self._pump_handle is None:
            self._pump()
        try:
            await batch.done
        except asyncio.CancelledError:
            if batch in self._batches:
                self._batches.remove(batch)
            raise
        return batch.outcomes  # type: ignore[return-value]  # every slot is filled once done

    def _pull(self) -> Outstanding | None:
        """The next PDU of the oldest submit_many batch, as a request; None when all are exhausted."""
        batches = self._batches
        while batches:
            batch = batches[0]
            try:
                pdu = next(batch.pdus, None)
            except Exception as error:  # the caller's iterator failed: that batch fails, not the session
                batches.popleft()
                if not batch.done.done():
                    batch.done.set_exception(error)
                continue
            if pdu is None:
                batches.popleft()
                batch.exhausted = True
                batch.settle_if_complete()
                continue
            order = self._next_order
            self._next_order = order + 1
            return Outstanding(pdu, batch.slot(), None, order, True)
        return None

    def _take_order(self) -> int:
        order = self._next_order
        self._next_order = order + 1
        return order

    def _enqueue(self, request: Outstanding) -> None:
        if not self._accepting:
            raise self._not_accepting()
        self._queue.append(request)
        if self._in_flight < self.config.window and self._pump_handle is None:
            self._pump()

    def _pump(self) -> None:
        """Send what the window, the throttle and any backoff pause allow, held requests first."""
        self._pump_handle = None
        if self._paused or self._transport is None:
            return
        window = self.config.window
        if self._in_flight >= window:
            return
        now = self._loop.time()
        held = self._held
        if held and now < self._throttled_until:
            self._pump_later(self._throttled_until)
            return
        queue = self._queue
        bulk = self._bulk
        bucket = self._bucket
        connection = self._connection
        pending = self._pending
        buffer = self._write_buffer
        flushes = self._flushes
        deadline = now + self.config.response_timeout
        in_flight = self._in_flight
        wiretap = self.wiretap
        # The hot path of the ESME: what send_request() does, inlined, once per loop instead of per call.
        while in_flight < window:
            if held:
                request = held[0][1]
            elif queue:
                request = queue[0]
            elif bulk:
                request = bulk[0]
            else:
                pulled = self._pull() if self._batches else None
                if pulled is None:
                    break
                queue.append(pulled)
                request = pulled
            future = request.future
            abandoned = future is not None and future.done()
            if bucket is not None and not abandoned:
                wait = bucket.take(now)
                if wait:
                    self._pump_later(now + wait)
                    break
            if held:
                heapq.heappop(held)
            elif queue:
                queue.popleft()
            else:
                bulk.popleft()
            if abandoned:
                continue
            try:
                sequence_number, data = connection.send_request(request.pdu)
            except LocalProtocolError as error:  # the session is unbinding: this one cannot go out
                request.finish(error)
                continue
            buffer.append(data)
            if wiretap is not None:
                wiretap(self, "out", request.pdu, sequence_number)
            request.deadline = deadline
            request.flush = flushes
            pending[sequence_number] = request
            in_flight += 1
        if in_flight != self._in_flight:
            self._in_flight = in_flight
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush)
            if self._sweep_handle is None or deadline < self._sweep_at:
                self._arm_sweep(deadline)

    def _waiting(self) -> bool:
        """Whether submissions wait to be sent."""
        return bool(self._queue or self._bulk or self._held or self._batches)

    def _pump_later(self, when: float) -> None:
        if self._pump_handle is None:
            self._pump_handle = self._loop.call_at(when, self._pump)

    def _after_events(self) -> None:
        if self._pump_handle is None and self._waiting():
            self._pump()
        if self._drained is not None and not (self._in_flight or self._waiting()):
            if not self._drained.done():
                self._drained.set_result(None)
            self._drained = None

    # --- responses ------------------------------------------------------------------------------

    def _response_received(self, pdu: PDU, request_command_id: int) -> None:
        request = self._pending.pop(pdu.sequence_number, None)
        if request is None:
            return
        if not request.windowed:
            request.finish(pdu)
            return
        self._in_flight -= 1
        status = pdu.command_status
        if status == 0 and type(pdu) is not GenericNack:
            self._backoff = self.config.throttle_backoff
            request.finish(pdu)
        elif status in THROTTLE_STATUSES:
            self._hold(request, pdu)
        else:
            request.finish(NegativeResponseError(pdu))

    def _hold(self, request: Outstanding, pdu: PDU) -> None:
        now = self._loop.time()
        if now >= self._throttled_until:
            # A new throttling episode; answers to requests sent in the same burst do not extend it.
            self._throttled_until = now + self._backoff
            self.log.info("%s: SMSC answered %s: pausing %.2fs", self.name, type(pdu).__name__, self._backoff)
            self._backoff = min(self._backoff * 2, self.config.throttle_backoff * _MAX_BACKOFF_FACTOR)
        heapq.heappush(self._held, (request.order, request))

    def _request_failed(self, request: Outstanding, error: SMPPError) -> None:
        if request.windowed:
            self._in_flight -= 1
        request.finish(error)

    def _session_ended(self, error: SessionClosed) -> None:
        self._give_back(error)
        self._in_flight = 0
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        for task in self._message_tasks:
            task.cancel()

    def _give_back(self, error: SessionClosed) -> None:
        """Stop taking submissions and fail those not sent yet with ``error``, in submission order."""
        self._accepting = False
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None
        waiting = sorted(
            [request for _, request in self._held] + list(self._queue) + list(self._bulk),
            key=lambda request: request.order,
        )
        self._held.clear()
        self._queue.clear()
        self._bulk.clear()
        for request in waiting:
            request.finish(error)
        while (unsent := self._pull()) is not None:  # what submit_many had not handed over yet
            unsent.finish(error)

    def _not_accepting(self) -> SessionClosed:
        return SessionClosed(f"{self.name}: {self.close_reason or self._refusal}", sent=False)

    # --- requests from the SMSC -------------------------------------------------------------------

    def _request_received(self, pdu: PDU) -> None:
        command_id = pdu.command_id
        if command_id == _DELIVER_SM or command_id == _DATA_SM:
            assert isinstance(pdu, DeliverSM | DataSM)
            self._message_received(pdu)
        elif command_id == CommandID.ENQUIRE_LINK:
            self._answer_enquire_link(pdu)
        elif command_id == CommandID.UNBIND:
            self.respond(pdu, UnbindResp())
            self._accepting = False
            self.drop("unbound by the SMSC")
        else:  # alert_notification, outbind: nothing to answer on this bind
            self.log.info("%s: ignored %s from the SMSC", self.name, type(pdu).__name__)

    def _message_received(self, pdu: DeliverSM | DataSM) -> None:
        handler = self._on_message
        if handler is None:
            self.log.warning(
                "%s: %s received but no handler is set: answering ESME_RX_T_APPN",
                self.name,
                type(pdu).__name__,
            )
            self._answer_message(pdu, CommandStatus.ESME_RX_T_APPN)
            return
        try:
            result = handler(pdu)
        except Exception:
            self._handler_failed(pdu)
            self._answer_message(pdu, CommandStatus.ESME_RX_T_APPN)
            return
        if isinstance(result, int):
            self._answer_message(pdu, result)
        elif isinstance(result, asyncio.Future):
            if result.done():
                self._message_done(pdu, result)
            else:
                self._unanswered += 1
                result.add_done_callback(functools.partial(self._message_settled, pdu))
        else:
            self._unanswered += 1
            task = self._loop.create_task(self._await_message(pdu, result), name=f"bind[{self.name}].message")
            self._message_tasks.add(task)
            task.add_done_callback(self._message_tasks.discard)

    async def _await_message(self, pdu: DeliverSM | DataSM, pending: Awaitable[int]) -> None:
        try:
            try:
                status = await pending
            except Exception:
                self._handler_failed(pdu)
                status = CommandStatus.ESME_RX_T_APPN
            self._answer_message(pdu, status)
        finally:
            self._one_answered()

    def _message_settled(self, pdu: DeliverSM | DataSM, future: asyncio.Future[int]) -> None:
        try:
            self._message_done(pdu, future)
        finally:  # an answer that could not be written must not keep an unbind waiting for it
            self._one_answered()

    def _one_answered(self) -> None:
        self._unanswered -= 1
        waiter = self._all_answered
        if not self._unanswered and waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _message_done(self, pdu: DeliverSM | DataSM, future: asyncio.Future[int]) -> None:
        if future.cancelled():
            self.log.debug(
                "%s: handler of %s sequence_number %d was cancelled: not answered",
                self.name,
                type(pdu).__name__,
                pdu.sequence_number,
            )
            return
        error = future.exception()
        if error is not None:
            self._handler_failed(pdu, error)
            self._answer_message(pdu, CommandStatus.ESME_RX_T_APPN)
        else:
            self._answer_message(pdu, future.result())

    def _handler_failed(self, pdu: DeliverSM | DataSM, error: BaseException | None = None) -> None:
        self.log.error(
            "%s: message handler failed on %s sequence_number %d",
            self.name,
            type(pdu).__name__,
            pdu.sequence_number,
            exc_info=error or True,
        )

    def _answer_message(self, pdu: DeliverSM | DataSM, status: int) -> None:
        if self._transport is None:
            return
        response: PDU
        if isinstance(pdu, DeliverSM):
            response = _DELIVER_SM_RESP_OK if status == 0 else DeliverSMResp(command_status=status)
        else:
            response = DataSMResp(command_status=status)
        self.respond(pdu, response)


_DELIVER_SM: Final = int(CommandID.DELIVER_SM)
_DATA_SM: Final = int(CommandID.DATA_SM)
#: The answer to nearly every deliver_sm; ``respond`` numbers it after the request.
_DELIVER_SM_RESP_OK: Final = DeliverSMResp()
