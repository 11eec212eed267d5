"""Password rules and argon2id hashing."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from panel.settings import Argon2Params

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256


class PasswordRejected(ValueError):
    """A new password breaks a rule; `key` and `params` give the message to show."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


def check_password_rules(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected("panel.password.too_short", min=MIN_PASSWORD_LENGTH)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected("panel.password.too_long", max=MAX_PASSWORD_LENGTH)
    if password.strip().lower() == username.strip().lower():
        raise PasswordRejected("panel.password.same_as_username")


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

    def spend_decoy(self, password: str) -> None:
        self.verify(self._decoy_hash, password)
