"""Where PostgreSQL's backends spend their CPU during a phase: ``perf record -g`` of the scratch
database's backends, then each sample put in one part of a statement's life by the functions on its
stack (PostgreSQL exports their names, so a release build needs no debug symbols).

pg_stat_statements' execution time counts the executor's run and finish only: for a statement of many
plan nodes run on small batches, the set-up of its plan (``ExecutorStart``, every node initialised at
every execution) and the COMMIT are as large, and only a profile of the backends shows them.
Needs ``perf`` and the right to trace the backends (root, or ``kernel.perf_event_paranoid`` <= 1 and
the same user as the server).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

#: The parts of a statement's life, by a function on the sample's stack, checked in this order.
PARTS = (
    ("set-up", "standard_ExecutorStart"),
    ("run", "standard_ExecutorRun"),
    ("finish", "standard_ExecutorFinish"),
    ("end", "standard_ExecutorEnd"),
    ("commit", "CommitTransactionCommand"),
    ("plan", "GetCachedPlan"),
    ("parameters", "ReceiveFunctionCall"),
    ("parse", "pg_parse_query"),
)
_OFFSET = re.compile(r"\+0x[0-9a-f]+$")


class PerfUnavailable(RuntimeError):
    """``perf`` is not installed or may not trace the backends."""


@asynccontextmanager
async def recorded(pids: Iterable[int], output: Path) -> AsyncIterator[None]:
    """``perf record -g`` of ``pids`` while the block runs, into ``output``."""
    perf = shutil.which("perf")
    targets = sorted(pids)
    if perf is None:
        raise PerfUnavailable("perf is not installed (Debian: linux-perf)")
    if not targets:
        raise PerfUnavailable("no backend to record")
    output.parent.mkdir(exist_ok=True)
    recorder = await asyncio.create_subprocess_exec(
        perf, "record", "-g", "-F", "999", "-o", str(output), "-p", ",".join(map(str, targets)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(0.3)  # attached
    if recorder.returncode is not None:
        error = (await recorder.stderr.read()).decode(errors="replace") if recorder.stderr else ""
        raise PerfUnavailable(f"perf record failed: {error.strip()[:300]}")
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        await recorder.wait()


def stacks(data: Path) -> Iterator[list[str]]:
    """Each sample's stack in ``data``, innermost function first, offsets removed."""
    script = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "ip,sym"], capture_output=True, text=True, check=True
    ).stdout
    stack: list[str] = []
    for line in script.splitlines():
        fields = line.split()
        if not fields:
            if stack:
                yield stack
            stack = []
        elif len(fields) >= 2:
            stack.append(_OFFSET.sub("", fields[1]))
    if stack:
        yield stack


def shares(samples: Iterable[list[str]]) -> tuple[int, dict[str, float]]:
    """The number of samples and the share of each part of :data:`PARTS`; ``other``: the rest (reading
    and writing the socket, being scheduled, and stacks perf could not walk through libc's allocator)."""
    counts = dict.fromkeys([name for name, _ in PARTS] + ["other"], 0)
    total = 0
    for stack in samples:
        total += 1
        functions = set(stack)
        part = next((name for name, function in PARTS if function in functions), "other")
        counts[part] += 1
    return total, {name: count / total for name, count in counts.items()} if total else {}


def summary(data: Path) -> str:
    """One line: the backends' CPU by part, in per cent of their samples."""
    total, parts = shares(stacks(data))
    if not total:
        return "postgres (perf): no samples"
    listed = ", ".join(f"{name} {100 * share:.0f} %" for name, share in parts.items())
    return f"postgres (perf, {total:,} samples): {listed}"
