"""The assignment decision: who may be offered a conversation of which pool, and whose turn it is."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, cast

from gatewayd.assignment import (
    DEFAULT_POOL,
    Assignment,
    AssignmentPolicy,
    AssignmentService,
    RoundRobin,
    choose_operator,
    pool_of,
    pools_served,
    serves,
)
from tests.waiting import eventually


def test_an_operator_in_no_pool_serves_the_default_pool_only() -> None:
    assert pools_served(()) == {DEFAULT_POOL}
    assert serves((), DEFAULT_POOL)
    assert serves((), None)  # a conversation from before pools were stored
    assert not serves((), "tarot")


def test_an_operator_in_pools_serves_those_pools_only() -> None:
    assert serves({"tarot"}, "tarot")
    assert not serves({"tarot"}, "alias")
    assert not serves({"tarot"}, DEFAULT_POOL)
    assert not serves({"tarot"}, None)
    assert serves({"tarot", DEFAULT_POOL}, None)
    assert pool_of(None) == DEFAULT_POOL and pool_of("tarot") == "tarot"


def test_a_conversation_waits_when_nobody_of_its_pool_has_room() -> None:
    robin = RoundRobin()
    members = {1: frozenset({"a"}), 2: frozenset({"b"})}
    # operator 2 (pool b) is free, operator 1 (pool a) is full
    assert choose_operator(robin, "a", {1: 0, 2: 3}, members) is None
    assert choose_operator(robin, "b", {1: 0, 2: 3}, members) == 2
    # an operator of no pool is not offered pool a either
    assert choose_operator(robin, "a", {3: 5}, {}) is None
    assert choose_operator(robin, None, {3: 5}, {}) == 3


def test_turns_are_kept_per_pool() -> None:
    robin = RoundRobin()
    members = {1: frozenset({"a", "b"}), 2: frozenset({"a"}), 3: frozenset({"b"})}
    free = {1: 5, 2: 5, 3: 5}
    picks_a = []
    for _ in range(4):
        operator_id = choose_operator(robin, "a", free, members)
        assert operator_id is not None
        robin.took("a", operator_id)
        picks_a.append(operator_id)
    assert picks_a == [1, 2, 1, 2]
    # pool b's turn did not move with pool a's
    assert choose_operator(robin, "b", free, members) == 1
    robin.took("b", 1)
    assert choose_operator(robin, "b", free, members) == 3


class _Recording(AssignmentService):
    """The daemon's loop with the database passes replaced by records; each pass of new conversations
    sees another MO noted meanwhile, as under steady traffic."""

    def __init__(self) -> None:
        super().__init__(cast(Any, None), None, AssignmentPolicy(sweep_interval=0.05, batch=3))
        self.sweeps = 0
        self.passes: list[list[int]] = []
        self.swept_again = asyncio.Event()
        self.noted = 100

    async def sweep(self) -> None:
        self.sweeps += 1
        if self.sweeps >= 3:
            self.swept_again.set()

    async def assign(self, conversation_ids: Sequence[int] | None = None) -> list[Assignment]:
        assert conversation_ids is not None
        self.passes.append(list(conversation_ids))
        self.noted += 1
        self.note_waiting(self.noted)  # an MO committed while this pass ran
        await asyncio.sleep(0)
        return []


async def test_the_sweep_still_comes_while_mos_keep_waking_the_loop() -> None:
    service = _Recording()
    for conversation_id in range(1, 8):
        service.note_waiting(conversation_id)
    running = asyncio.create_task(service.run_loop())
    try:
        await asyncio.wait_for(service.swept_again.wait(), 10)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    # noted conversations are handed out a batch at a time, the first ones before any later one
    assert service.passes[:3] == [[1, 2, 3], [4, 5, 6], [7]]


class _Absent(AssignmentService):
    """Passes recorded; every look finds nobody online."""

    def __init__(self, policy: AssignmentPolicy) -> None:
        super().__init__(cast(Any, None), None, policy)
        self.passes: list[list[int]] = []

    async def sweep(self) -> None:
        return None

    async def assign(self, conversation_ids: Sequence[int] | None = None) -> list[Assignment]:
        assert conversation_ids is not None
        self.passes.append(list(conversation_ids))
        self._nobody_online = True
        return []


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_while_nobody_is_online_new_conversations_wait_for_the_recheck() -> None:
    # one pass per MO batch would be a transaction per batch for nobody: the loop spaces them instead
    service = _Absent(AssignmentPolicy(sweep_interval=3600, note_interval=0.0, absence_recheck=3600))
    running = asyncio.create_task(service.run_loop())
    try:
        service.note_waiting(1)
        await eventually(lambda: service.passes == [[1]], what="the first pass")
        for conversation_id in range(2, 12):
            service.note_waiting(conversation_id)
            await _turns(5)
        assert service.passes == [[1]]  # nobody online: the next look waits for the recheck
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    service = _Absent(AssignmentPolicy(sweep_interval=3600, note_interval=0.0, absence_recheck=0.05))
    running = asyncio.create_task(service.run_loop())
    try:
        service.note_waiting(1)
        await eventually(lambda: service.passes == [[1]], what="the first pass")
        for conversation_id in range(2, 5):
            service.note_waiting(conversation_id)
        # everything noted meanwhile goes in one pass once the recheck is due
        await eventually(lambda: service.passes == [[1], [2, 3, 4]], what="the pass after the recheck")
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
