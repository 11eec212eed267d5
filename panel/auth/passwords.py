"""Password rules and argon2id hashing, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from panel.settings import Argon2Params
from translations import N_

T = TypeVar("T")

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256


class PasswordRejected(ValueError):
    """A new password breaks a rule: `key` (English, translated where shown) and `params` say which."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key % params if params else key)
        self.key = key
        self.params = params


def check_password_rules(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(
            N_("The password must have at least %(min)s characters."), min=MIN_PASSWORD_LENGTH
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(
            N_("The password cannot have more than %(max)s characters."), max=MAX_PASSWORD_LENGTH
        )
    if password.strip().lower() == username.strip().lower():
        raise PasswordRejected(N_("The password cannot be the user name."))


class PasswordPolicy:
    """Hashes and verifies passwords with one argon2id cost setting."""

    def __init__(self, params: Argon2Params) -> None:
        self._hasher = PasswordHasher(
            time_cost=params.time_cost, memory_cost=params.memory_cost, parallelism=params.parallelism
        )
        # Verified against when the user name is unknown, so both paths cost one argon2 run.
        self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def verify_or_decoy(self, stored_hash: str | None, password: str) -> bool:
        """Verify against ``stored_hash``, or against a decoy when there is none (an unknown user
        name), so both cost one argon2 run and timing tells nothing."""
        if stored_hash is None:
            self.verify(self._decoy_hash, password)
            return False
        return self.verify(stored_hash, password)


# Niceness of the hashing threads (and the threads argon2 starts for its lanes, which inherit it).
HASHING_NICENESS = 10


def _yield_to_the_event_loop() -> None:
    """Runs in each hashing thread as it starts: on a busy machine the event loop (the panel's other
    requests and, in the demo, the daemon's SMPP traffic) gets the CPU first. Linux sets niceness
    per thread; elsewhere the thread keeps its priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


class HashingBusy(Exception):
    """Every argon2 worker is busy and the queue in front of them is full: try again shortly."""


class PasswordHashing:
    """argon2 for the panel's requests, run in ``workers`` threads of its own: a hash takes tens of
    milliseconds of CPU, which on the event loop would stall every request (and, in the demo, the
    daemon's SMPP traffic). At most ``queue`` more calls wait for a worker; further calls raise
    `HashingBusy` at once rather than pile up. Start and stop it with ``async with``."""

    def __init__(self, policy: PasswordPolicy, *, workers: int, queue: int) -> None:
        self.policy = policy
        self._workers = workers
        self._limit = workers + queue
        self._admitted = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> PasswordHashing:
        self._executor = ThreadPoolExecutor(
            self._workers, thread_name_prefix="panel-argon2", initializer=_yield_to_the_event_loop
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, work: Callable[..., T], *args: str | None) -> T:
        if self._executor is None:
            raise RuntimeError("PasswordHashing is not started: use it with `async with`")
        with self._lock:
            if self._admitted >= self._limit:
                raise HashingBusy
            self._admitted += 1
        job = self._executor.submit(work, *args)
        # Released when the work is done or dropped from the queue, not when a caller that went away
        # stops waiting for it: queued and running work together stay within the limit.
        job.add_done_callback(self._release)
        return await asyncio.wrap_future(job)

    def _release(self, _: object) -> None:
        with self._lock:  # called in the worker thread
            self._admitted -= 1

    async def verify(self, stored_hash: str, password: str) -> bool:
        return await self._run(self.policy.verify, stored_hash, password)

    async def verify_or_decoy(self, stored_hash: str | None, password: str) -> bool:
        return await self._run(self.policy.verify_or_decoy, stored_hash, password)

    async def hash(self, password: str) -> str:
        return await self._run(self.policy.hash, password)
