"""A lean SMSC for the per-bind benchmark, run as its own process (``python bench/_lean_smsc.py``).

Built on ``smpp.aio.SMSCServer`` with a synchronous handler and no other work: a submit_sm is answered
at once with a message id and, when receipts are on and the submit_sm asks for one, followed in the
same write by its receipt (deliver_sm, DELIVRD); MOs are pushed as deliver_sm with at most ``window``
unanswered, as fast as the ESME answers or at a fixed rate, and the time from each deliver_sm to its
deliver_sm_resp is recorded. Its own process, so its CPU is not the daemon's and can be read alone.

Commands come one JSON object a line on stdin, each answered by one JSON line on stdout (the first
line out is ``{"port": N}``); times are ``time.monotonic()``, the same clock in every process:

  {"op": "wait_bound"}                         once an ESME is bound (its window is set then)
  {"op": "window", "window": W}                the deliver window of this and later binds
  {"op": "receipts", "on": true}               send a receipt after each submit_sm that asks for one
  {"op": "mo", "count": N, "subscribers": S, "tag": T, "rate": R | null}
                                               push N MOs from S numbers, answered once all are
                                               acknowledged: first/last times, latencies, failures
  {"op": "wait_submits", "total": N}           once N submit_sm were answered since the start: when
  {"op": "wait_receipts", "total": N}          once N receipts were acknowledged: when
  {"op": "submit_at", "number": N}             when the N-th submit_sm (from the start) was answered
  {"op": "counters"} / {"op": "stop"}
"""

from __future__ import annotations

import asyncio
import functools
import json
import statistics
import sys
import time
from array import array
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smpp.aio import BindRequest, Outcome, SMSCServer, SMSCSession  # noqa: E402
from smpp.constants import NPI, TON, ESMClass, MessageState  # noqa: E402
from smpp.pdu import PDU, DeliverSM, EnquireLink, EnquireLinkResp, GenericNack, SubmitSM, SubmitSMResp  # noqa: E402
from smpp.tlv import Tag, TLVs  # noqa: E402

SHORT_CODE = "997745"
#: Tick of the paced MO push: each tick sends the MOs due by then.
PACE_TICK = 0.001


def msisdn(index: int) -> str:
    """The subscriber numbers every benchmark part shares (E.164 digits, Spanish mobile)."""
    return f"3460{index % 10_000_000:07d}"


class _MORun:
    """One "mo" command: the PDUs to push, what was sent and answered, and when."""

    def __init__(
        self, pdus: list[DeliverSM], rate: float | None, done: asyncio.Future[dict[str, Any]]
    ) -> None:
        self.pdus = pdus
        self.rate = rate
        self.done = done
        self.next = 0
        #: how many of ``pdus`` may be sent by now (all of them when not paced)
        self.allowed = len(pdus) if rate is None else 0
        self.acked = 0
        self.failed = 0
        self.latencies: list[float] = []
        self.first_at = 0.0
        self.last_at = 0.0
        self.started = 0.0
        #: this process's CPU seconds when the first MO was pushed
        self.cpu_started = 0.0


class LeanSMSC:
    """The ``SMSCHandler``: accepts any bind, answers at once, pushes MOs and receipts."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.window = 100
        self.session: SMSCSession | None = None
        self.bound = asyncio.Event()
        self.receipts = False
        self.submits = 0
        self.receipts_sent = 0
        self.receipts_acked = 0
        self.receipts_failed = 0
        self.last_submit_at = 0.0
        self.last_receipt_at = 0.0
        #: when each submit_sm was answered, in order
        self.submit_times = array("d")
        self._message_id = 0
        self._receipt_queue: deque[DeliverSM] = deque()
        self._mo: _MORun | None = None
        self._waiters: list[tuple[str, int, asyncio.Future[float]]] = []
        self._date = ("", 0)

    # --- SMSCHandler ---------------------------------------------------------------------------------

    def authenticate(self, session: SMSCSession, bind: BindRequest) -> int:
        return 0

    def on_bound(self, session: SMSCSession) -> None:
        session.window = self.window
        self.session = session
        self.bound.set()

    def on_closed(self, session: SMSCSession) -> None:
        if self.session is session:
            self.session = None
            self.bound.clear()

    def on_request(self, session: SMSCSession, pdu: PDU) -> PDU | None:
        if type(pdu) is SubmitSM:
            self._message_id += 1
            message_id = f"{self._message_id:x}"
            # answered here rather than returned, so that its receipt leaves after it in the same write
            session.respond(pdu, SubmitSMResp(message_id=message_id))
            self.submits += 1
            self.last_submit_at = time.monotonic()
            self.submit_times.append(self.last_submit_at)
            if self.receipts and pdu.registered_delivery & 1:
                self._receipt_queue.append(self._receipt(message_id, pdu))
                self._push()
            self._wake("submits", self.submits, self.last_submit_at)
            return None
        if type(pdu) is EnquireLink:
            return EnquireLinkResp()
        response_class = pdu.response_class or GenericNack
        return response_class(command_status=0x03)  # ESME_RINVCMDID: nothing else is expected

    # --- receipts ------------------------------------------------------------------------------------

    def _receipt(self, message_id: str, submit: SubmitSM) -> DeliverSM:
        now = int(time.time())
        date, second = self._date
        if second != now:
            date = datetime.fromtimestamp(now, UTC).strftime("%y%m%d%H%M")
            self._date = (date, now)
        text = (
            f"id:{message_id} sub:001 dlvrd:001 submit date:{date} done date:{date} stat:DELIVRD err:000 "
            f"Text:"
        ).encode() + submit.short_message[:20]
        return DeliverSM(
            source_addr_ton=TON.INTERNATIONAL,
            source_addr_npi=NPI.ISDN,
            source_addr=submit.destination_addr,
            dest_addr_ton=submit.source_addr_ton,
            dest_addr_npi=submit.source_addr_npi,
            destination_addr=submit.source_addr,
            esm_class=ESMClass.DELIVERY_RECEIPT,
            short_message=text,
            tlvs=TLVs(
                ((Tag.RECEIPTED_MESSAGE_ID, message_id), (Tag.MESSAGE_STATE, int(MessageState.DELIVERED)))
            ),
        )

    def _receipt_answered(self, outcome: Outcome) -> None:
        if isinstance(outcome, PDU) and outcome.command_status == 0:
            self.receipts_acked += 1
            self.last_receipt_at = time.monotonic()
            self._wake("receipts", self.receipts_acked, self.last_receipt_at)
        else:
            self.receipts_failed += 1
        self._push()

    # --- MOs -----------------------------------------------------------------------------------------

    def start_mo(
        self, count: int, subscribers: int, tag: str, rate: float | None
    ) -> asyncio.Future[dict[str, Any]]:
        pdus = [
            DeliverSM(
                source_addr_ton=TON.INTERNATIONAL,
                source_addr_npi=NPI.ISDN,
                source_addr=msisdn(index % subscribers),
                destination_addr=SHORT_CODE,
                short_message=f"{tag} {index} hola que tal".encode(),
            )
            for index in range(count)
        ]
        run = self._mo = _MORun(pdus, rate, self.loop.create_future())
        run.started = time.monotonic()
        if rate is not None:
            self._pace()
        self._push()
        return run.done

    def _pace(self) -> None:
        run = self._mo
        if run is None or run.rate is None or run.allowed >= len(run.pdus):
            return
        run.allowed = min(len(run.pdus), int((time.monotonic() - run.started) * run.rate) + 1)
        self._push()
        self.loop.call_later(PACE_TICK, self._pace)

    def _mo_answered(self, sent_at: float, outcome: Outcome) -> None:
        run = self._mo
        if run is None:
            return
        now = time.monotonic()
        if isinstance(outcome, PDU) and outcome.command_status == 0:
            run.acked += 1
            run.latencies.append(now - sent_at)
        else:
            run.failed += 1
        if run.acked + run.failed == len(run.pdus):
            run.last_at = now
            self._mo = None
            run.done.set_result(_mo_summary(run))
            return
        self._push()

    # --- pushing -------------------------------------------------------------------------------------

    def _push(self) -> None:
        """Fill the deliver window: receipts first, then MOs."""
        session = self.session
        if session is None:
            return
        queue = self._receipt_queue
        while queue:
            if not session.deliver_nowait(queue[0], self._receipt_answered):
                return
            queue.popleft()
            self.receipts_sent += 1
        run = self._mo
        if run is None:
            return
        pdus, answered = run.pdus, self._mo_answered
        while run.next < run.allowed:
            now = time.monotonic()
            if not session.deliver_nowait(pdus[run.next], functools.partial(answered, now)):
                return
            if run.next == 0:
                run.first_at, run.cpu_started = now, time.process_time()
            run.next += 1

    # --- waiting for counts --------------------------------------------------------------------------

    def wait_for(self, what: str, total: int) -> asyncio.Future[float]:
        """The time the ``what`` count reached ``total``."""
        future: asyncio.Future[float] = self.loop.create_future()
        current, at = (
            (self.submits, self.last_submit_at)
            if what == "submits"
            else (self.receipts_acked, self.last_receipt_at)
        )
        if current >= total:
            future.set_result(at)
        else:
            self._waiters.append((what, total, future))
        return future

    def _wake(self, what: str, count: int, at: float) -> None:
        if not self._waiters:
            return
        for waiter in [waiter for waiter in self._waiters if waiter[0] == what and count >= waiter[1]]:
            self._waiters.remove(waiter)
            waiter[2].set_result(at)

    def counters(self) -> dict[str, Any]:
        session = self.session
        return {
            "bound": session is not None,
            "submits": self.submits,
            "receipts_sent": self.receipts_sent,
            "receipts_acked": self.receipts_acked,
            "receipts_failed": self.receipts_failed,
            "in_flight": session.in_flight if session is not None else 0,
            "cpu": time.process_time(),
        }


def _mo_summary(run: _MORun) -> dict[str, Any]:
    latencies = sorted(run.latencies)
    return {
        "sent": run.next,
        "acked": run.acked,
        "failed": run.failed,
        "first_at": run.first_at,
        "cpu": time.process_time() - run.cpu_started,
        "last_at": run.last_at,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p90_ms": latencies[int(len(latencies) * 0.90)] * 1000 if latencies else 0.0,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else 0.0,
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
    }


async def serve() -> None:
    loop = asyncio.get_running_loop()
    smsc = LeanSMSC()
    # deliver_window is per session: on_bound sets the current one
    async with SMSCServer(
        smsc, deliver_window=smsc.window, response_timeout=60.0, name="lean-smsc"
    ) as server:
        print(json.dumps({"port": server.port}), flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            op = command["op"]
            answer: Any = {"ok": True}
            if op == "stop":
                print(json.dumps(answer), flush=True)
                return
            if op == "wait_bound":
                await smsc.bound.wait()
            elif op == "window":
                smsc.window = int(command["window"])
                if smsc.session is not None:
                    smsc.session.window = smsc.window
            elif op == "receipts":
                smsc.receipts = bool(command["on"])
            elif op == "mo":
                answer = await smsc.start_mo(
                    int(command["count"]),
                    int(command["subscribers"]),
                    str(command["tag"]),
                    command.get("rate"),
                )
            elif op in ("wait_submits", "wait_receipts"):
                answer = {"at": await smsc.wait_for(op.removeprefix("wait_"), int(command["total"]))}
            elif op == "submit_at":
                answer = {"at": smsc.submit_times[int(command["number"]) - 1]}
            elif op == "counters":
                answer = smsc.counters()
            else:
                answer = {"error": f"unknown op {op!r}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(serve())
