"""Who is making a request: a read-only snapshot taken when the session is loaded."""

from __future__ import annotations

from dataclasses import dataclass

from gatewayd.store.accounts import Presence, Role


@dataclass(frozen=True, slots=True)
class CurrentUser:
    account_id: int
    username: str
    display_name: str
    role: Role
    permissions: frozenset[str]
    language: str
    timezone: str
    presence: Presence
    session_id: str
    csrf_token: str

    def has(self, *permissions: str) -> bool:
        return all(permission in self.permissions for permission in permissions)
