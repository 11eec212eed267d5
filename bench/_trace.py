"""Where the daemon's time goes per MO cycle and per MT batch: a tracer installed into the daemon's
process by bench/_daemon.py (``--trace FILE``), and the report bench/per_bind.py prints from its file.

The tracer wraps, without changing the product's code, the few methods every message passes through
and records times (``time.monotonic()``, the clock the SMSC and the driver use too):

* each inbound deliver_sm (``ESMESession._message_received``), its answer (``_answer_message``) and
  every write to the socket (``_flush``);
* each group-commit batch (name, size, start, end, the sequence numbers of its MOs);
* each database call of the SQLAlchemy asyncpg adapter (pre-ping, BEGIN, statement, prepare missed,
  COMMIT, ROLLBACK) and each array statement sent on the driver's connection (``gatewayd.store._pg``),
  with the task that made it, so calls are attributed to their batch;
* the MT pipeline's claims and records, and the ESME window after every pump (in flight, queued);
* every callback the asyncio loop runs (count, and those that held the loop for over 1 ms).

At exit everything is written to FILE as JSON; :func:`report` slices it by the driver's phase spans.
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import functools
import json
import re
import statistics
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

monotonic = time.monotonic


class _Recorder:
    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.answers: dict[int, float] = {}
        self.flushes = array("d")
        #: name, size, start, end, task name, sequence numbers (MO batches), task id
        self.batches: list[tuple[str, int, float, float, str, list[int], int]] = []
        #: the database transaction of each MO batch: start, end, the batch task's id
        self.transactions: list[tuple[float, float, int]] = []
        #: kind, label, start, end, task name
        self.calls: list[tuple[str, str, float, float, str]] = []
        self.labels: dict[str, str] = {}
        self.claims: list[tuple[float, float, int]] = []
        self.records: list[tuple[float, float, int]] = []
        self.pumps: list[tuple[float, int, int]] = []
        self.callbacks = array("d")
        self.slow_callbacks: list[tuple[float, float, str]] = []
        self.future_sequence: dict[int, int] = {}

    def dump(self, path: Path) -> None:
        data = {
            "arrivals": list(self.arrivals.items()),
            "answers": list(self.answers.items()),
            "flushes": list(self.flushes),
            "batches": self.batches,
            "transactions": self.transactions,
            "calls": self.calls,
            "labels": self.labels,
            "claims": self.claims,
            "records": self.records,
            "pumps": self.pumps,
            "callbacks": list(self.callbacks),
            "slow_callbacks": self.slow_callbacks,
        }
        path.write_text(json.dumps(data))


_STATEMENT = re.compile(r"\b(INSERT INTO \w+|UPDATE \w+|DELETE FROM \w+|FROM \w+)", re.IGNORECASE)


def _label(recorder: _Recorder, operation: str) -> str:
    label = recorder.labels.get(operation)
    if label is None:
        found = _STATEMENT.findall(operation)
        head = " ".join(operation.split())[:70]
        label = f"{' / '.join(dict.fromkeys(found[:3]))} #{len(recorder.labels)}" if found else head
        recorder.labels[operation] = label
    return label


def _task_name() -> str:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return "-"
    return task.get_name() if task is not None else "-"


def install(path: Path) -> None:
    """Wraps the traced methods; the trace is written to ``path`` when the process exits."""
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.dialects.postgresql import asyncpg as adapter

    from gatewayd.batching import GroupCommitter
    from gatewayd.mo import MOPipeline
    from gatewayd.mt import MTPipeline
    from gatewayd.recorder import MTRecorder
    from smpp.aio.esme import ESMESession
    from smpp.aio.transport import SessionProtocol

    recorder = _Recorder()
    atexit.register(recorder.dump, path)

    # --- SMPP: arrival, answer, write ---------------------------------------------------------------
    received = ESMESession._message_received

    def message_received(self: ESMESession, pdu: Any) -> None:
        recorder.arrivals[pdu.sequence_number] = monotonic()
        received(self, pdu)

    answer = ESMESession._answer_message

    def answer_message(self: ESMESession, pdu: Any, status: int) -> None:
        recorder.answers[pdu.sequence_number] = monotonic()
        answer(self, pdu, status)

    flush = SessionProtocol._flush

    def traced_flush(self: SessionProtocol) -> None:
        if self._write_buffer:
            recorder.flushes.append(monotonic())
        flush(self)

    pump = ESMESession._pump

    def traced_pump(self: ESMESession) -> None:
        pump(self)
        recorder.pumps.append((monotonic(), self._in_flight, len(self._queue) + len(self._held)))

    ESMESession._message_received = message_received  # type: ignore[method-assign]
    ESMESession._answer_message = answer_message  # type: ignore[method-assign]
    SessionProtocol._flush = traced_flush  # type: ignore[method-assign]
    ESMESession._pump = traced_pump  # type: ignore[method-assign]

    # --- pipelines ----------------------------------------------------------------------------------
    accept = MOPipeline.accept

    def traced_accept(self: MOPipeline, bind: Any, pdu: Any) -> Any:
        result = accept(self, bind, pdu)
        if isinstance(result, asyncio.Future):
            recorder.future_sequence[id(result)] = pdu.sequence_number
        return result

    MOPipeline.accept = traced_accept  # type: ignore[method-assign]

    commit_batch = GroupCommitter._commit_batch

    async def traced_commit_batch(
        self: GroupCommitter[Any, Any], items: list[Any], futures: list[Any]
    ) -> None:
        sequences = [recorder.future_sequence.pop(id(future), -1) for future in futures]
        started = monotonic()
        try:
            await commit_batch(self, items, futures)
        finally:
            recorder.batches.append(
                (
                    self.name,
                    len(items),
                    started,
                    monotonic(),
                    _task_name(),
                    sequences,
                    id(asyncio.current_task()),
                )
            )

    GroupCommitter._commit_batch = traced_commit_batch  # type: ignore[method-assign]

    commit_once = MOPipeline._commit_once

    async def traced_commit_once(self: MOPipeline, batch: Any) -> Any:
        started = monotonic()
        try:
            return await commit_once(self, batch)
        finally:
            recorder.transactions.append((started, monotonic(), id(asyncio.current_task())))

    MOPipeline._commit_once = traced_commit_once  # type: ignore[method-assign]

    claim = MTPipeline._claim

    async def traced_claim(self: MTPipeline, limit: int, carriers: set[str]) -> Any:
        started = monotonic()
        claimed = await claim(self, limit, carriers)
        recorder.claims.append((started, monotonic(), len(claimed), limit))
        return claimed

    record = MTRecorder._record

    async def traced_record(self: MTRecorder, results: list[Any], requeue: Any, receipts: Any) -> Any:
        started = monotonic()
        try:
            return await record(self, results, requeue, receipts)
        finally:
            recorder.records.append((started, monotonic(), len(results)))

    MTPipeline._claim = traced_claim  # type: ignore[method-assign]
    MTRecorder._record = traced_record  # type: ignore[method-assign]

    # --- database calls -----------------------------------------------------------------------------
    connection_class = adapter.AsyncAdapt_asyncpg_connection
    cursor_class = adapter.AsyncAdapt_asyncpg_cursor

    def traced_sync(kind: str, method: Any) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any) -> Any:
            started = monotonic()
            try:
                return method(self, *args)
            finally:
                recorder.calls.append((kind, kind, started, monotonic(), _task_name()))

        return wrapper

    connection_class.ping = traced_sync("ping", connection_class.ping)  # type: ignore[method-assign]
    connection_class.commit = traced_sync("commit", connection_class.commit)  # type: ignore[method-assign]
    connection_class.rollback = traced_sync("rollback", connection_class.rollback)  # type: ignore[method-assign]

    start_transaction: Any = connection_class._start_transaction

    async def traced_begin(self: Any) -> None:
        started = monotonic()
        try:
            await start_transaction(self)
        finally:
            recorder.calls.append(("begin", "begin", started, monotonic(), _task_name()))

    connection_class._start_transaction = traced_begin  # type: ignore[method-assign]

    prepare: Any = connection_class._prepare

    async def traced_prepare(self: Any, operation: str, invalidate_timestamp: float) -> Any:
        cache = self._prepared_statement_cache
        if cache is None or operation not in cache:
            started = monotonic()
            try:
                return await prepare(self, operation, invalidate_timestamp)
            finally:
                recorder.calls.append(
                    ("prepare", _label(recorder, operation), started, monotonic(), _task_name())
                )
        return await prepare(self, operation, invalidate_timestamp)

    connection_class._prepare = traced_prepare  # type: ignore[method-assign]

    execute: Any = cursor_class._prepare_and_execute

    async def traced_execute(self: Any, operation: str, parameters: Any) -> None:
        started = monotonic()
        try:
            await execute(self, operation, parameters)
        finally:
            recorder.calls.append(
                ("execute", _label(recorder, operation), started, monotonic(), _task_name())
            )

    cursor_class._prepare_and_execute = traced_execute  # type: ignore[method-assign]

    executemany: Any = cursor_class._executemany

    async def traced_executemany(self: Any, operation: str, parameters: Any) -> Any:
        started = monotonic()
        try:
            return await executemany(self, operation, parameters)
        finally:
            recorder.calls.append(
                ("executemany", _label(recorder, operation), started, monotonic(), _task_name())
            )

    cursor_class._executemany = traced_executemany  # type: ignore[method-assign]

    # the pipelines' array statements (gatewayd.store._pg) go to the driver's connection directly
    driver_class = asyncpg.Connection

    def traced_driver(method: Any) -> Callable[..., Any]:
        @functools.wraps(method)
        async def wrapper(self: Any, query: str, *args: Any, **options: Any) -> Any:
            if not args:  # the adapter's BEGIN and COMMIT (traced above as such)
                return await method(self, query, *args, **options)
            started = monotonic()
            try:
                return await method(self, query, *args, **options)
            finally:
                label = _label(recorder, query)
                recorder.calls.append(("execute", label, started, monotonic(), _task_name()))

        return wrapper

    driver_class.fetch = traced_driver(driver_class.fetch)  # type: ignore[method-assign]
    driver_class.execute = traced_driver(driver_class.execute)  # type: ignore[method-assign]

    # --- the loop's callbacks (asyncio only; uvloop runs its handles in C) ---------------------------
    handle_run = asyncio.events.Handle._run

    def traced_run(self: asyncio.events.Handle) -> None:
        started = monotonic()
        handle_run(self)
        ended = monotonic()
        recorder.callbacks.append(started)
        if ended - started > 0.001:
            recorder.slow_callbacks.append((started, ended - started, repr(self)[:160]))

    asyncio.events.Handle._run = traced_run  # type: ignore[method-assign]


# --- the report (in the driver's process) ------------------------------------------------------------


def _stats(values: Sequence[float], scale: float = 1e6) -> str:
    """mean / p50 / p99 in µs (by default)."""
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    mean, p50 = statistics.fmean(ordered) * scale, ordered[len(ordered) // 2] * scale
    return f"mean {mean:8.0f}  p50 {p50:8.0f}  p99 {p99 * scale:8.0f}"


def report(path: Path, spans: Sequence[tuple[str, float, float]], window: int) -> None:
    """Prints, per timed phase, the MO cycle breakdown or the MT batches, from the trace at ``path``."""
    if not path.exists():
        print(f"  trace {path} missing (the daemon did not exit cleanly)")
        return
    data: dict[str, Any] = json.loads(path.read_text())
    for phase, start, end in spans:
        print(f"  trace w{window} {phase} ({end - start:.2f} s):")
        if phase in ("mo", "latency"):
            _report_mo(data, start, end)
        else:
            _report_mt(data, start, end, window)
        _report_calls(data, start, end)
        _report_loop(data, start, end)


def _report_mo(data: dict[str, Any], start: float, end: float) -> None:
    arrivals = dict((int(seq), at) for seq, at in data["arrivals"])
    answers = dict((int(seq), at) for seq, at in data["answers"])
    flushes: list[float] = data["flushes"]
    waits: list[float] = []
    commits: list[float] = []
    before_tx: list[float] = []
    in_tx: list[float] = []
    after_tx: list[float] = []
    transactions: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for began, ended, task in data.get("transactions", []):
        transactions[task].append((began, ended))
    afters: list[float] = []
    writes: list[float] = []
    totals: list[float] = []
    sizes: list[int] = []
    batches = [b for b in data["batches"] if b[0] == "mo.group-commit" and start <= b[2] <= end]
    for _name, size, began, ended, _task, sequences, task_id in batches:
        sizes.append(size)
        tx = next((tx for tx in transactions.get(task_id, ()) if began <= tx[0] <= ended), None)
        if tx is not None:
            before_tx.append(tx[0] - began)
            in_tx.append(tx[1] - tx[0])
            after_tx.append(ended - tx[1])
        for seq in sequences:
            arrived, answered = arrivals.get(seq), answers.get(seq)
            if arrived is None or answered is None:
                continue
            index = bisect.bisect_left(flushes, answered)
            written = flushes[index] if index < len(flushes) else answered
            waits.append(began - arrived)
            commits.append(ended - began)
            afters.append(answered - ended)
            writes.append(written - answered)
            totals.append(written - arrived)
    if not sizes:
        print("    no MO batches in this span")
        return
    print(
        f"    MO batches: {len(sizes)}, size mean {statistics.fmean(sizes):.1f}"
        f" p50 {statistics.median(sizes):.0f} max {max(sizes)}; {len(waits)} MOs"
    )
    print(f"    per MO, µs: arrival -> commit start   {_stats(waits)}")
    print(f"                commit (its batch)       {_stats(commits)}")
    if in_tx:
        print(f"      per batch: before the transaction  {_stats(before_tx)}")
        print(f"                 the transaction         {_stats(in_tx)}")
        print(f"                 after it (events)       {_stats(after_tx)}")
    print(f"                commit end -> answered   {_stats(afters)}")
    print(f"                answered -> written      {_stats(writes)}")
    print(f"                arrival -> written       {_stats(totals)}")
    overlap = _overlap([(b[2], b[3]) for b in batches], start, end)
    print(
        "    batches committing at once, share of the phase: "
        + ", ".join(f"{count}: {share:.0%}" for count, share in sorted(overlap.items()))
    )


def _overlap(intervals: Sequence[tuple[float, float]], start: float, end: float) -> dict[int, float]:
    events = sorted([(max(a, start), 1) for a, _ in intervals] + [(min(b, end), -1) for _, b in intervals])
    shares: dict[int, float] = defaultdict(float)
    level, last = 0, start
    for at, step in events:
        shares[level] += max(0.0, at - last)
        level += step
        last = at
    shares[level] += max(0.0, end - last)
    total = end - start
    return {count: seconds / total for count, seconds in shares.items()}


def _report_mt(data: dict[str, Any], start: float, end: float, window: int) -> None:
    claims = [c for c in data["claims"] if start <= c[0] <= end and c[2]]
    records = [r for r in data["records"] if start <= r[0] <= end and r[2]]
    receipt_batches = [b for b in data["batches"] if b[0] == "receipts.group-commit" and start <= b[2] <= end]
    pumps = [p for p in data["pumps"] if start <= p[0] <= end]
    for label, rows in (("claims", claims), ("records", records)):
        if rows:
            durations = [row[1] - row[0] for row in rows]
            print(
                f"    {label}: {len(rows)}, size mean {statistics.fmean(row[2] for row in rows):.0f};"
                f" µs each: {_stats(durations)}"
            )
    if claims and len(claims[0]) > 3:
        print(f"    claims asked for {statistics.fmean(c[3] for c in claims):.0f} MTs on average")
    if receipt_batches:
        durations = [b[3] - b[2] for b in receipt_batches]
        print(
            f"    receipt batches: {len(receipt_batches)}, size mean"
            f" {statistics.fmean(b[1] for b in receipt_batches):.1f}; µs each: {_stats(durations)}"
        )
    arrivals = [(int(seq), at) for seq, at in data["arrivals"] if start <= at <= end]
    if arrivals:
        answers = {int(seq): at for seq, at in data["answers"]}
        waits = [answers[seq] - at for seq, at in arrivals if seq in answers]
        own = sum(b[1] for b in receipt_batches)
        print(
            f"    deliver_sm (receipts) in: {len(arrivals)}; through the receipt group commit: {own};"
            f" arrival -> answered, µs: {_stats(waits)}"
        )
    if pumps:
        starved = sum(1 for _, in_flight, queued in pumps if in_flight < window and queued == 0)
        in_flight = statistics.fmean(p[1] for p in pumps)
        print(
            f"    ESME pumps: {len(pumps)}; window not full with nothing queued after"
            f" {starved / len(pumps):.0%} of them; in flight mean {in_flight:.0f},"
            f" queued mean {statistics.fmean(p[2] for p in pumps):.0f}"
        )
    if claims:
        gaps = [b[0] - a[1] for a, b in zip(claims, claims[1:], strict=False)]
        if gaps:
            print(f"    claim end -> next claim start, µs: {_stats(gaps)}")


def _report_calls(data: dict[str, Any], start: float, end: float) -> None:
    calls = [c for c in data["calls"] if start <= c[2] <= end]
    if not calls:
        return
    by_task: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    for kind, label, began, ended, task in calls:
        by_task[task.split("[")[0]].append((kind, label, ended - began))
    batches = Counter(b[4].split("[")[0] for b in data["batches"] if start <= b[2] <= end)
    batches["mt.claim_loop"] = sum(1 for c in data["claims"] if start <= c[0] <= end)
    batches["mt.record_loop"] = sum(1 for r in data["records"] if start <= r[0] <= end)
    for task, rows in sorted(by_task.items(), key=lambda item: -sum(row[2] for row in item[1])):
        total = sum(row[2] for row in rows)
        print(f"    database calls from {task}: {len(rows)} ({total * 1000:.0f} ms awaited)")
        grouped: dict[tuple[str, str], list[float]] = defaultdict(list)
        for kind, label, seconds in rows:
            grouped[(kind, label)].append(seconds)
        for (kind, label), durations in sorted(grouped.items(), key=lambda item: -sum(item[1]))[:8]:
            per = f" ({len(durations) / batches[task]:.1f} per batch)" if batches.get(task) else ""
            print(f"      {kind:11s} {len(durations):6d}{per:20s} µs {_stats(durations)}  {label[:60]}")


def _report_loop(data: dict[str, Any], start: float, end: float) -> None:
    callbacks: list[float] = data["callbacks"]
    count = bisect.bisect_right(callbacks, end) - bisect.bisect_left(callbacks, start)
    slow = [s for s in data["slow_callbacks"] if start <= s[0] <= end]
    if count:
        print(
            f"    loop callbacks: {count} ({count / (end - start):,.0f}/s); over 1 ms: {len(slow)},"
            f" {sum(s[1] for s in slow) * 1000:.0f} ms in all"
        )
        for _, seconds, name in sorted(slow, key=lambda s: -s[1])[:3]:
            print(f"      {seconds * 1000:6.1f} ms  {name[:120]}")


# --- py-spy profiles ---------------------------------------------------------------------------------

#: Where a sample's leaf frame lives -> the part of the stack it is charged to.
_PACKAGES = (
    ("sqlalchemy/", "sqlalchemy"),
    ("asyncpg/", "asyncpg"),
    ("aiomqtt/", "mqtt (aiomqtt, paho)"),
    ("paho/", "mqtt (aiomqtt, paho)"),
    ("greenlet", "sqlalchemy"),
    ("smpp/", "smpp (codec, session)"),
    ("gatewayd/bus/", "gatewayd bus + events"),
    ("gatewayd/events.py", "gatewayd bus + events"),
    ("gatewayd/store/", "gatewayd store (Python side)"),
    ("gatewayd/", "gatewayd pipelines"),
    ("routing/", "routing"),
    ("json/", "json"),
    ("logging/", "logging"),
    ("asyncio/", "asyncio loop"),
)


def _package(frame: str) -> str:
    location = frame[frame.rfind("(") + 1 :]
    for marker, name in _PACKAGES:
        if marker in location:
            return name
    return "other: " + location.split(":")[0][-40:]


def _activity(frames: Sequence[str]) -> str:
    """What the loop was running when the sample was taken: the frame right under the last
    ``Handle._run`` (a task's coroutine or a callback); a stack that never went through the loop (a
    greenlet's, the start-up) is named by its first frame."""
    for index in range(len(frames) - 1, -1, -1):
        if frames[index].startswith("Handle._run "):
            if index + 1 < len(frames):
                return frames[index + 1].split(" (")[0]
            return "asyncio (callback itself)"
        if frames[index].startswith(("BaseEventLoop._run_once", "EpollSelector.select")):
            return "asyncio (loop: select, timers)"
    return frames[0].split(" (")[0] if frames else "?"


def profile_summary(path: Path, top: int = 14) -> None:
    """Self time by package and the heaviest of our own functions (inclusive), from py-spy's raw
    (collapsed) output."""
    by_package: Counter[str] = Counter()
    by_activity: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        by_package[_package(frames[-1])] += count
        by_activity[_activity(frames)] += count
        for frame in dict.fromkeys(frames):
            if "gatewayd/" in frame or "smpp/" in frame:
                inclusive[frame] += count
    if not total:
        return
    print(
        "      self time by package: "
        + ", ".join(f"{name} {count / total:.0%}" for name, count in by_package.most_common(9))
    )
    print("      by activity (what the loop was running):")
    for name, count in by_activity.most_common(top):
        print(f"        {count / total:4.0%}  {name[:110]}")
    print("      our functions, inclusive:")
    for frame, count in inclusive.most_common(top):
        print(f"        {count / total:4.0%}  {frame[:110]}")
