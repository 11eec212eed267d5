"""The PDU trace: one JSON line per PDU in either direction, decoded, written to a file.

Fed by the SMPP sessions' wiretap (``smpp.aio.SessionProtocol.wiretap``), so it holds every PDU on
the wire, binds and the SMSC's own requests included, with the sequence number the ESME saw.
Buffered by the file object and flushed by the simulator's clock, so tracing costs a dict and a
``json.dumps`` per PDU, and nothing at all when it is off.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import IO

from simulator.errors import SettingsError
from simulator.pdu_json import pdu_to_dict
from smpp.pdu import PDU

#: A trace file the control API may name: no directory part, not hidden, and a ``.jsonl`` file, so
#: no request can reach a file outside the trace directory or one that is not a trace.
TRACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.jsonl")


def trace_file(directory: str, name: str) -> str:
    """The path of the trace file ``name`` in ``directory`` (the control API names files; only the
    simulator's operator chooses where they go)."""
    if not TRACE_NAME.fullmatch(name):
        raise SettingsError(
            f"name: {name[:80]!r} is not a trace file name: letters, digits, '.', '_' or '-', "
            f"ending in .jsonl (the file goes in the trace directory {directory})"
        )
    return os.path.abspath(os.path.join(directory, name))


class PDUTracer:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        self.lines = 0

    def pdu(
        self, direction: str, carrier: str, peer: tuple[str, int] | None, pdu: PDU, sequence_number: int
    ) -> None:
        """``direction`` is ``in`` (from the ESME) or ``out`` (to the ESME); ``sequence_number`` is the
        one on the wire (a PDU the SMSC sends is numbered as it is encoded)."""
        record = {
            "ts": round(time.time(), 6),
            "dir": direction,
            "carrier": carrier,
            "peer": None if peer is None else f"{peer[0]}:{peer[1]}",
            **pdu_to_dict(pdu),
            "sequence_number": sequence_number,
        }
        self._file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.lines += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
