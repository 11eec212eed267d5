"""Group commit: many callers, one batch per database transaction, each caller answered after it.

A caller ``await committer.submit(item)`` and gets its own result once the batch holding its item
has been committed. One loop takes everything that queued up while the previous transaction ran
(up to ``max_batch``), so under load batches grow by themselves and when idle an item is committed
at once: no timer adds latency. If the commit raises, every caller in that batch gets the error and
decides (the MO pipeline answers ``ESME_RX_T_APPN`` so the SMSC retries).

With ``concurrency=2`` the next batch starts while the previous one is still committing, so the
process keeps preparing work during the database's commit round trip instead of idling (PostgreSQL;
SQLite has a single writer and keeps ``concurrency=1``). Callers are answered per batch, so with
overlapping batches a later item may be answered before an earlier one.

A bind's window arrives as a burst once the previous batch is answered, all of it queued before the
loop runs again; with ``split_from`` a burst that finds no batch committing is split over the free
slots, so the database runs one part while the process prepares the next, instead of one batch taking
it all while the other slot idles.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

CommitFunction = Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT]]]
T = TypeVar("T")
BatchObserver = Callable[[int, float, BaseException | None], None]


class CommitterClosed(RuntimeError):
    """The committer is shut down: the item was not committed."""


class CommitterFull(RuntimeError):
    """``max_pending`` items wait already: :meth:`GroupCommitter.submit_nowait` took nothing."""


class GroupCommitter(Generic[ItemT, ResultT]):
    """Collects items from concurrent callers and commits them in batches through ``commit``.

    ``commit(items)`` must return one result per item, in order. ``on_batch(size, seconds, error)``
    is told about every batch (for metrics and logs). At most ``concurrency`` batches commit at once.
    ``split_from``: when at least that many items wait and no batch is committing, they are shared out
    evenly over the ``concurrency`` slots (None: a batch takes all it may); with ``split_by``, the items
    of one key stay together and in order (batches committing side by side may commit in either order).
    """

    def __init__(
        self,
        commit: CommitFunction[ItemT, ResultT],
        *,
        max_batch: int = 2000,
        max_pending: int = 50_000,
        on_batch: BatchObserver | None = None,
        name: str = "group-commit",
        concurrency: int = 1,
        split_from: int | None = None,
        split_by: Callable[[ItemT], Hashable] | None = None,
    ) -> None:
        if max_batch < 1 or max_pending < max_batch:
            raise ValueError("need 1 <= max_batch <= max_pending")
        if concurrency < 1:
            raise ValueError("need concurrency >= 1")
        if split_from is not None and split_from < concurrency:
            raise ValueError("need split_from >= concurrency")
        self._concurrency = concurrency
        self._split_from = split_from
        self._split_by = split_by
        self.name = name
        self._commit = commit
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._on_batch = on_batch
        self._items: list[ItemT] = []
        self._futures: list[asyncio.Future[ResultT]] = []
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self.batches = 0
        self.committed = 0

    @property
    def pending(self) -> int:
        return len(self._items)

    async def submit(self, item: ItemT) -> ResultT:
        """Queue ``item`` and wait until its batch is committed; returns its result or raises."""
        while len(self._items) >= self._max_pending and not self._closed:
            self._room.clear()
            await self._room.wait()
        return await self.submit_nowait(item)

    def submit_nowait(self, item: ItemT) -> asyncio.Future[ResultT]:
        """Queue ``item``; the future holds its result once its batch is committed. For callers that
        answer through a future instead of a task of their own. Raises :class:`CommitterClosed`, or
        :class:`CommitterFull` when ``max_pending`` items wait already."""
        if self._closed:
            raise CommitterClosed(f"{self.name} is closed")
        if len(self._items) >= self._max_pending:
            raise CommitterFull(f"{self.name} holds {len(self._items)} items")
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._futures.append(future)
        self._wakeup.set()
        return future

    async def run_loop(self) -> None:
        """Commit batches until :meth:`close` is called and the queue is drained."""
        if self._concurrency == 1:
            while await self._next_batch_ready():
                await self._commit_batch(*self._take_batch())
            return
        slots = asyncio.Semaphore(self._concurrency)
        running: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            slots.release()

        try:
            while await self._next_batch_ready():
                await slots.acquire()  # items keep queueing meanwhile: the batch grows while we wait
                if not self._items:  # failed meanwhile (fail_pending)
                    slots.release()
                    continue
                batch = self._take_batch() if running else self._take_share()
                task = asyncio.get_running_loop().create_task(
                    self._commit_batch(*batch), name=f"{self.name}.batch"
                )
                running.add(task)
                task.add_done_callback(finished)
            if running:
                await asyncio.gather(*running)
        except asyncio.CancelledError:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise

    async def _next_batch_ready(self) -> bool:
        """Waits for items; False once closed with nothing left to commit."""
        while not self._items:
            if self._closed:
                return False
            self._wakeup.clear()
            await self._wakeup.wait()
        return True

    def _take_share(self) -> tuple[list[ItemT], list[asyncio.Future[ResultT]]]:
        """The next batch when none is committing: all it may take, or its share (see ``split_from``),
        whole keys in their order, the others left in theirs."""
        waiting = len(self._items)
        if self._split_from is None or waiting < self._split_from:
            return self._take_batch()
        share = min(self._max_batch, -(-waiting // self._concurrency))
        # without split_by every item is a key of its own: the first ``share`` of them
        keys = [self._split_by(item) for item in self._items] if self._split_by else list(range(waiting))
        whole: set[Hashable] = set()
        count = 0
        for key, items_of_key in Counter(keys).items():  # in order of each key's first item
            if count >= share or count + items_of_key > self._max_batch:
                break
            whole.add(key)
            count += items_of_key
        if not whole:  # one key has more than a batch may hold: its first ones, by position
            return self._take_batch(share)
        taken = [index for index, key in enumerate(keys) if key in whole]
        chosen = set(taken)
        items = [self._items[index] for index in taken]
        futures = [self._futures[index] for index in taken]
        self._items = [item for index, item in enumerate(self._items) if index not in chosen]
        self._futures = [future for index, future in enumerate(self._futures) if index not in chosen]
        self._room.set()
        return items, futures

    def _take_batch(self, size: int | None = None) -> tuple[list[ItemT], list[asyncio.Future[ResultT]]]:
        size = self._max_batch if size is None else min(size, self._max_batch)
        items = self._items[:size]
        futures = self._futures[:size]
        del self._items[:size]
        del self._futures[:size]
        self._room.set()
        return items, futures

    async def _commit_batch(self, items: list[ItemT], futures: list[asyncio.Future[ResultT]]) -> None:
        started = time.perf_counter()
        try:
            results = await self._commit(items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: commit returned {len(results)} results for {len(items)}")
        except asyncio.CancelledError:
            for future in futures:
                if not future.done():
                    future.set_exception(CommitterClosed(f"{self.name} was cancelled"))
            raise
        except Exception as error:  # every caller of the batch learns of the failure
            self._observe(len(items), time.perf_counter() - started, error)
            for future in futures:
                if not future.done():
                    future.set_exception(error)
            return
        self._observe(len(items), time.perf_counter() - started, None)
        self.batches += 1
        self.committed += len(items)
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _observe(self, size: int, seconds: float, error: BaseException | None) -> None:
        if self._on_batch is not None:
            self._on_batch(size, seconds, error)

    def close(self) -> None:
        """Stop accepting items; :meth:`run_loop` returns after committing what is queued."""
        self._closed = True
        self._wakeup.set()
        self._room.set()

    def fail_pending(self, error: BaseException) -> None:
        """Fail every queued, uncommitted item (used when the loop is gone)."""
        futures, self._futures, self._items = self._futures, [], []
        for future in futures:
            if not future.done():
                future.set_exception(error)


async def ride_out(
    attempt: Callable[[], Awaitable[T]],
    window: float,
    on_failure: Callable[[BaseException], None] | None = None,
    *,
    retry_if: Callable[[BaseException], bool] | None = None,
    again_at_once_if: Callable[[BaseException], bool] | None = None,
) -> T:
    """``attempt()`` again after a failure (0.05 s, doubling up to 1 s) until it succeeds or the next
    try would start more than ``window`` seconds after the first; then the last error is raised. A
    database blip shorter than the window costs a batch a little latency instead of failing it. An
    error ``retry_if`` says no to is raised at once: trying again would fail the same way. After an
    error ``again_at_once_if`` says yes to (a collision with another transaction, which has moved on
    by now), the next try starts without a pause."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window
    delay = 0.05
    while True:
        try:
            return await attempt()
        except Exception as error:
            if on_failure is not None:
                on_failure(error)
            at_once = again_at_once_if is not None and again_at_once_if(error)
            pause = 0.0 if at_once else delay
            if loop.time() + pause > deadline or (retry_if is not None and not retry_if(error)):
                raise
        if not at_once:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
