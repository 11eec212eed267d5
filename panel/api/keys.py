"""Making and revoking API keys, the one way for the admin page and ``gatewayd apikey``: what a key
may be (:class:`KeySpec`, every error at once) and the change with its audit record in one transaction."""

from __future__ import annotations

import ipaddress
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.apikeys import NAME_LENGTH, APIKey, NewKey, Scope, create_key, revoke_key
from gatewayd.store.audit import AuditEntry, append_audit

#: The lowest and the highest rate a key may be given (requests a second): one request in 1,000 s
#: keeps the bucket's wait a number a Retry-After can say.
MIN_RATE = 0.001
MAX_RATE = 10_000.0


class KeySpec(BaseModel):
    """A key to make: a name, at least one scope, CIDRs it may be used from (none: anywhere) and its
    rate in requests a second (None: unlimited)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$")
    scopes: list[Scope] = Field(min_length=1)
    allow: list[str] = Field(default_factory=list, max_length=50)
    rate: float | None = Field(None, ge=MIN_RATE, le=MAX_RATE)

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        networks = []
        for item in value:
            try:
                networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an address or a network (CIDR)") from None
        return networks


def _entry(action: str, key: APIKey, actor: str, actor_id: int | None, source: str | None) -> AuditEntry:
    details = {"name": key.name, "scopes": key.scopes, "allow": key.allow, "rate": key.rate}
    return AuditEntry(
        action, actor, actor_id=actor_id, source=source, subject=f"apikey:{key.public_id}", details=details
    )


async def add_key(
    session: AsyncSession,
    spec: KeySpec,
    *,
    actor: str,
    actor_id: int | None,
    source: str | None,
    now: datetime,
) -> NewKey:
    """Makes the key and records ``apikey.create`` in the caller's transaction; the token is in the
    answer only (show it once)."""
    made = await create_key(
        session,
        name=spec.name,
        scopes=spec.scopes,
        allow=spec.allow,
        rate=spec.rate,
        created_by=actor,
        now=now,
    )
    await append_audit(session, _entry("apikey.create", made.key, actor, actor_id, source), now=now)
    return made


async def revoke(
    session: AsyncSession,
    key_id: int,
    *,
    actor: str,
    actor_id: int | None,
    source: str | None,
    now: datetime,
) -> APIKey | None:
    """Revokes a live key and records ``apikey.revoke``; None when there is no live key ``key_id``."""
    key = await revoke_key(session, key_id, now)
    if key is not None:
        await append_audit(session, _entry("apikey.revoke", key, actor, actor_id, source), now=now)
    return key
