"""The group committer: batches form under load, each caller is answered after its own commit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from gatewayd.batching import CommitterClosed, CommitterFull, GroupCommitter, ride_out
from gatewayd.store.errors import ClosedMeanwhile, is_conflict


class RecordingStore:
    """A commit function that records the batches it saw and can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail_with: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def commit(self, items: Sequence[int]) -> list[int]:
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.batches.append(list(items))
        return [item * 10 for item in items]


class HeldCommits:
    """A commit function that records each batch as it starts and holds it until ``release`` is set."""

    def __init__(self) -> None:
        self.started: list[list[int]] = []
        self.release = asyncio.Event()

    async def commit(self, items: Sequence[int]) -> list[int]:
        self.started.append(list(items))
        await self.release.wait()
        return list(items)


async def test_each_caller_gets_its_own_result_after_commit() -> None:
    store = RecordingStore()
    committer: GroupCommitter[int, int] = GroupCommitter(store.commit, max_batch=100)
    loop_task = asyncio.create_task(committer.run_loop())
    results = await asyncio.gather(*(committer.submit(number) for number in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert sum(len(batch) for batch in store.batches) == 5
    committer.close()
    await loop_task


async def test_items_queued_during_a_commit_form_one_batch() -> None:
    store = RecordingStore()
    committer: GroupCommitter[int, int] = GroupCommitter(store.commit, max_batch=1000)
    loop_task = asyncio.create_task(committer.run_loop())
    first = asyncio.create_task(committer.submit(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    store.gate.clear()  # the first commit is now "slow"; 50 more callers arrive meanwhile
    waiting = [asyncio.create_task(committer.submit(number)) for number in range(1, 51)]
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(first, *waiting)
    assert [len(batch) for batch in store.batches] in ([1, 50], [51])
    committer.close()
    await loop_task


async def test_batches_never_exceed_max_batch() -> None:
    store = RecordingStore()
    committer: GroupCommitter[int, int] = GroupCommitter(store.commit, max_batch=7)
    loop_task = asyncio.create_task(committer.run_loop())
    await asyncio.gather(*(committer.submit(number) for number in range(30)))
    assert max(len(batch) for batch in store.batches) <= 7
    assert sorted(item for batch in store.batches for item in batch) == list(range(30))
    committer.close()
    await loop_task


async def test_a_failed_commit_fails_every_caller_of_that_batch_only() -> None:
    store = RecordingStore()
    committer: GroupCommitter[int, int] = GroupCommitter(store.commit)
    loop_task = asyncio.create_task(committer.run_loop())
    store.fail_with = ConnectionError("database down")
    outcomes = await asyncio.gather(
        *(committer.submit(number) for number in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    store.fail_with = None
    assert await committer.submit(4) == 40  # the loop survived the failure
    committer.close()
    await loop_task


async def test_close_drains_the_queue_then_refuses_new_items() -> None:
    store = RecordingStore()
    committer: GroupCommitter[int, int] = GroupCommitter(store.commit)
    pending = [asyncio.create_task(committer.submit(number)) for number in range(4)]
    await asyncio.sleep(0)
    committer.close()
    await committer.run_loop()
    assert await asyncio.gather(*pending) == [0, 10, 20, 30]
    with pytest.raises(CommitterClosed):
        await committer.submit(9)


async def test_wrong_result_count_is_reported_to_callers() -> None:
    async def short_commit(items: Sequence[int]) -> list[int]:
        return []

    committer: GroupCommitter[int, int] = GroupCommitter(short_commit)
    loop_task = asyncio.create_task(committer.run_loop())
    with pytest.raises(RuntimeError, match="0 results for 1"):
        await committer.submit(1)
    committer.close()
    await loop_task


async def test_observer_sees_sizes_and_errors() -> None:
    seen: list[tuple[int, bool]] = []
    store = RecordingStore()
    committer: GroupCommitter[int, int] = GroupCommitter(
        store.commit, on_batch=lambda size, seconds, error: seen.append((size, error is None))
    )
    loop_task = asyncio.create_task(committer.run_loop())
    await committer.submit(1)
    store.fail_with = OSError("gone")
    with pytest.raises(OSError):
        await committer.submit(2)
    assert seen == [(1, True), (1, False)]
    committer.close()
    await loop_task


def test_invalid_limits_are_refused() -> None:
    async def commit(items: Sequence[int]) -> list[int]:
        return list(items)

    with pytest.raises(ValueError):
        GroupCommitter(commit, max_batch=0)
    with pytest.raises(ValueError):
        GroupCommitter(commit, max_batch=10, max_pending=5)


async def test_concurrency_two_commits_the_next_batch_while_one_is_in_flight() -> None:
    started: list[list[int]] = []
    release = asyncio.Event()

    async def slow_commit(items: Sequence[int]) -> list[int]:
        started.append(list(items))
        await release.wait()
        return [item + 1 for item in items]

    committer: GroupCommitter[int, int] = GroupCommitter(slow_commit, concurrency=2)
    loop_task = asyncio.create_task(committer.run_loop())
    first = asyncio.create_task(committer.submit(1))
    for _ in range(3):
        await asyncio.sleep(0)
    second = asyncio.create_task(committer.submit(2))
    third = asyncio.create_task(committer.submit(3))
    for _ in range(3):
        await asyncio.sleep(0)
    assert started == [[1], [2, 3]]  # two batches in flight; nothing answered before its commit
    assert not (first.done() or second.done() or third.done())
    fourth = asyncio.create_task(committer.submit(4))
    for _ in range(3):
        await asyncio.sleep(0)
    assert started == [[1], [2, 3]]  # a third batch waits for a free slot
    release.set()
    assert list(await asyncio.gather(first, second, third, fourth)) == [2, 3, 4, 5]
    assert started == [[1], [2, 3], [4]]
    committer.close()
    await loop_task


async def test_a_burst_finding_no_batch_committing_is_shared_over_the_slots() -> None:
    held = HeldCommits()
    committer: GroupCommitter[int, int] = GroupCommitter(held.commit, concurrency=2, split_from=4)
    loop_task = asyncio.create_task(committer.run_loop())
    burst = [committer.submit_nowait(number) for number in range(7)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert held.started == [[0, 1, 2, 3], [4, 5, 6]]  # both slots busy, neither idle
    held.release.set()
    assert list(await asyncio.gather(*burst)) == list(range(7))
    small = [committer.submit_nowait(number) for number in range(10, 13)]
    assert list(await asyncio.gather(*small)) == [10, 11, 12]
    assert held.started[2:] == [[10, 11, 12]]  # below split_from: one batch
    committer.close()
    await loop_task


async def test_a_shared_burst_keeps_each_keys_items_whole_and_in_order() -> None:
    held = HeldCommits()
    committer: GroupCommitter[int, int] = GroupCommitter(
        held.commit, concurrency=2, split_from=4, split_by=lambda item: item % 10
    )
    loop_task = asyncio.create_task(committer.run_loop())
    # keys 1 (four items), 2, 3 (two items), 4 and 5, interleaved
    burst = [committer.submit_nowait(number) for number in (11, 12, 21, 13, 31, 23, 41, 14, 15)]
    for _ in range(3):
        await asyncio.sleep(0)
    # the first share takes whole keys, in order of their first item, until it holds half the burst
    assert held.started == [[11, 12, 21, 31, 41], [13, 23, 14, 15]]
    held.release.set()
    await asyncio.gather(*burst)
    committer.close()
    await loop_task


async def test_a_key_with_more_items_than_a_batch_is_shared_by_position() -> None:
    held = HeldCommits()
    committer: GroupCommitter[int, int] = GroupCommitter(
        held.commit, max_batch=3, concurrency=2, split_from=4, split_by=lambda item: "one key"
    )
    loop_task = asyncio.create_task(committer.run_loop())
    burst = [committer.submit_nowait(number) for number in range(6)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert held.started == [[0, 1, 2], [3, 4, 5]]
    held.release.set()
    assert list(await asyncio.gather(*burst)) == list(range(6))
    committer.close()
    await loop_task


async def test_a_burst_arriving_while_a_batch_commits_is_not_split() -> None:
    held = HeldCommits()
    committer: GroupCommitter[int, int] = GroupCommitter(held.commit, concurrency=2, split_from=4)
    loop_task = asyncio.create_task(committer.run_loop())
    first = committer.submit_nowait(0)
    for _ in range(3):
        await asyncio.sleep(0)
    burst = [committer.submit_nowait(number) for number in range(1, 9)]
    for _ in range(3):
        await asyncio.sleep(0)
    # the free slot takes the whole burst: the batch in flight keeps the other core busy already
    assert held.started == [[0], list(range(1, 9))]
    held.release.set()
    assert list(await asyncio.gather(first, *burst)) == list(range(9))
    committer.close()
    await loop_task


async def test_concurrent_batches_fail_alone_and_close_drains_both() -> None:
    async def commit(items: Sequence[int]) -> list[int]:
        await asyncio.sleep(0)
        if 13 in items:
            raise OSError("unlucky batch")
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(commit, max_batch=1, concurrency=2)
    loop_task = asyncio.create_task(committer.run_loop())
    results = await asyncio.gather(
        *(committer.submit(number) for number in (11, 12, 13, 14)), return_exceptions=True
    )
    assert results[:2] == [11, 12] and results[3] == 14
    assert isinstance(results[2], OSError)
    committer.close()
    await loop_task
    assert committer.committed == 3


def test_concurrency_below_one_is_refused() -> None:
    async def commit(items: Sequence[int]) -> list[int]:
        return list(items)

    with pytest.raises(ValueError):
        GroupCommitter(commit, concurrency=0)
    with pytest.raises(ValueError):
        GroupCommitter(commit, concurrency=2, split_from=1)


async def test_submit_nowait_hands_back_a_future_and_refuses_past_max_pending() -> None:
    store = RecordingStore()
    store.gate.clear()  # the first batch holds the loop: the rest queue up
    committer: GroupCommitter[int, int] = GroupCommitter(store.commit, max_batch=2, max_pending=3)
    loop_task = asyncio.create_task(committer.run_loop())
    first = committer.submit_nowait(1)
    await asyncio.sleep(0)  # the loop takes [1] and waits at the gate
    queued = [committer.submit_nowait(number) for number in (2, 3, 4)]
    with pytest.raises(CommitterFull):
        committer.submit_nowait(5)
    store.gate.set()
    assert [await future for future in (first, *queued)] == [10, 20, 30, 40]
    committer.close()
    await loop_task
    with pytest.raises(CommitterClosed):
        committer.submit_nowait(6)


async def test_ride_out_tries_again_through_a_short_failure() -> None:
    attempts: list[int] = []
    failures: list[str] = []

    async def flaky() -> str:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise ConnectionError("database restarting")
        return "committed"

    outcome = await ride_out(flaky, window=5.0, on_failure=lambda error: failures.append(str(error)))
    assert outcome == "committed"
    assert len(attempts) == 3 and failures == ["database restarting"] * 2


async def test_ride_out_gives_up_after_its_window() -> None:
    attempts = 0

    async def down() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("database down")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectionError):
        await ride_out(down, window=0.3)
    # tries at 0, 0.05 and 0.15 s; the next would start at 0.35 s, past the window
    assert attempts == 3
    assert loop.time() - started < 0.3


async def test_ride_out_raises_at_once_what_trying_again_cannot_fix() -> None:
    attempts = 0

    async def refused() -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError("the database refuses this row")

    with pytest.raises(ValueError):
        await ride_out(refused, window=5.0, retry_if=lambda error: not isinstance(error, ValueError))
    assert attempts == 1


async def test_ride_out_tries_a_collision_again_without_a_pause() -> None:
    """A transaction another one collided with (a deadlock, a conversation closed under an MO batch)
    is tried again at once: the other has moved on. Within a window too short for even one pause."""
    attempts = 0

    async def collides_twice() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ClosedMeanwhile({7})
        return "committed"

    outcome = await ride_out(collides_twice, window=0.01, again_at_once_if=is_conflict)
    assert outcome == "committed" and attempts == 3
    attempts = 0
    with pytest.raises(ClosedMeanwhile):  # the same window with a pause between tries: given up
        await ride_out(collides_twice, window=0.01)
    assert attempts == 1
