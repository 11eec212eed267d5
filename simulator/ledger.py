"""The ledger: an append-only JSON-lines file of what the simulated network saw, kept across restarts.

Where the PDU trace (``simulator.trace``) records the wire, the ledger records outcomes, one line per
event, so that a test can check the gateway against what the carrier knows after anything restarted:

- ``start``: the simulator (re)started;
- ``mo``: an MO deliver_sm was answered (or not): ``result`` is ``ok``, ``error`` (with ``status``),
  ``timeout`` or ``closed`` (the bind went away before the answer; the MO is offered again);
- ``submit``: an MT accepted (submit_sm, data_sm, submit_multi): the ``system_id`` that sent it, its
  ``text``, the ``message_id`` answered (and its ``number``), the ``destinations``;
- ``receipt``: a delivery receipt deliver_sm was answered (or not), with the ``message_id`` and ``stat``
  it carried and ``result`` as for ``mo``.

Opened again after a restart, the file is appended to, and the message ids the carriers hand out go on
after the highest one it holds: a receipt never names an id that an MT before the restart was given.

Lines are buffered by the file object and flushed by the simulator's clock and when it stops; with no
ledger configured nothing here runs (a carrier checks one attribute per event).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from simulator.errors import SettingsError
from simulator.mtstore import MTRecord
from simulator.pdu_json import message_content
from smpp.constants import ESMClass
from smpp.errors import ResponseTimeout, SessionClosed, SMPPError
from smpp.pdu import PDU, DeliverSM
from smpp.tlv import Tag

_RECEIPT_ESM_CLASS = int(ESMClass.DELIVERY_RECEIPT)


def read_ledger(path: str | Path) -> Iterator[dict[str, Any]]:
    """The ledger's events, oldest first; a line cut short (the process killed while writing it: the
    next run starts on a new line) is left out."""
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


class Ledger:
    def __init__(self, path: str) -> None:
        self.path = path
        #: Per carrier, the highest message number given to an MT in the file so far.
        self.last_numbers: dict[str, int] = {}
        if Path(path).exists():
            for event in read_ledger(path):
                if event["kind"] == "submit":
                    carrier = event["carrier"]
                    self.last_numbers[carrier] = max(self.last_numbers.get(carrier, 0), event["number"])
        try:
            self._file: IO[str] = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        except OSError as exc:
            raise SettingsError(f"ledger: cannot open {path}: {exc.strerror or exc}") from None
        if Path(path).stat().st_size and not self._ends_with_newline():
            self._file.write("\n")  # a line cut short by a crash stays alone, and unread
        self._dirty = False
        self.lines = 0
        self._write({"kind": "start"})

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as file:
            file.seek(-1, 2)
            return file.read(1) == b"\n"

    def _write(self, event: dict[str, Any]) -> None:
        event["at"] = round(time.time(), 6)
        self._file.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._dirty = True
        self.lines += 1

    def submit(self, carrier: str, system_id: str, record: MTRecord, number: int) -> None:
        self._write(
            {
                "kind": "submit",
                "carrier": carrier,
                "system_id": system_id,
                "message_id": record.message_id,
                "number": number,
                "source": record.pdu.source_addr,
                "destinations": list(record.destinations),
                "text": message_content(record.pdu)["text"],
            }
        )

    def delivered(self, carrier: str, pdu: DeliverSM, attempt: int, outcome: PDU | SMPPError) -> None:
        """One answer (or the lack of one) to an MO or a receipt the carrier sent."""
        event: dict[str, Any] = {"carrier": carrier, "attempt": attempt, **_result(outcome)}
        if pdu.esm_class & _RECEIPT_ESM_CLASS:
            event["kind"] = "receipt"
            event["message_id"] = pdu.tlvs.get_str(Tag.RECEIPTED_MESSAGE_ID) or ""
            text = pdu.short_message.decode("ascii", "replace")
            event["stat"] = text.split(" stat:", 1)[1].split(" ", 1)[0] if " stat:" in text else None
        else:
            event["kind"] = "mo"
            event["from"] = pdu.source_addr
            event["to"] = pdu.destination_addr
            event["text"] = message_content(pdu)["text"]
        self._write(event)

    def flush(self) -> None:
        if self._dirty:
            self._file.flush()
            self._dirty = False

    def close(self) -> None:
        self._file.close()


def _result(outcome: PDU | SMPPError) -> dict[str, Any]:
    if isinstance(outcome, PDU):
        if outcome.command_status == 0:
            return {"result": "ok"}
        return {"result": "error", "status": outcome.command_status}
    if isinstance(outcome, ResponseTimeout):
        return {"result": "timeout"}
    if isinstance(outcome, SessionClosed):
        return {"result": "closed"}
    return {"result": "error", "status": None, "error": str(outcome)}
