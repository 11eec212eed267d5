"""The PDU trace: one JSON line per PDU in either direction, decoded, written to a file.

Buffered by the file object and flushed by the simulator's clock, so tracing costs a dict and a
``json.dumps`` per PDU, and nothing at all when it is off.
"""

from __future__ import annotations

import json
import time
from typing import IO

from simulator.pdu_json import pdu_to_dict
from smpp.pdu import PDU


class PDUTracer:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        self.lines = 0

    def pdu(self, direction: str, carrier: str, peer: tuple[str, int] | None, pdu: PDU) -> None:
        """``direction`` is ``in`` (from the ESME) or ``out`` (to the ESME)."""
        record = {
            "ts": round(time.time(), 6),
            "dir": direction,
            "carrier": carrier,
            "peer": None if peer is None else f"{peer[0]}:{peer[1]}",
            **pdu_to_dict(pdu),
        }
        self._file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.lines += 1

    def event(
        self, direction: str, carrier: str, peer: tuple[str, int] | None, what: dict[str, object]
    ) -> None:
        """A PDU the SMPP layer handled itself (a bind, as the handler sees it)."""
        record = {
            "ts": round(time.time(), 6),
            "dir": direction,
            "carrier": carrier,
            "peer": None if peer is None else f"{peer[0]}:{peer[1]}",
            **what,
        }
        self._file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.lines += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
