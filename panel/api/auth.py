"""Who calls: the key in ``Authorization: Bearer``, read from the database on every request (a revoked
key is refused from the next request on: nothing caches it), its IP allow-list and its rate.

The rate is a token bucket per key IN THIS PROCESS: two panel processes allow twice the rate."""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.requests import Request

from gatewayd.store.apikeys import APIKey, Scope, authenticate, touch_key
from panel.api.problems import Problem
from panel.runtime import runtime

#: last_used_at is written at most this often per key (one UPDATE a minute, not one per request).
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Caller:
    """The key a request came with, as this request saw it."""

    id: int
    public_id: str
    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        """The audit trail's actor for what this key does."""
        return f"apikey:{self.public_id}"


class TokenBucket:
    """``rate`` requests a second, bursts of up to ``rate`` (at least one)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.at = time.monotonic()

    def take(self) -> float:
        """0 when the request may go; else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class KeyLimits:
    """The buckets and last touches of this process's keys."""

    def __init__(self) -> None:
        self._buckets: dict[int, TokenBucket] = {}
        self._touched: dict[int, datetime] = {}

    def wait(self, key: APIKey) -> float:
        if key.rate is None:
            self._buckets.pop(key.id, None)
            return 0.0
        bucket = self._buckets.get(key.id)
        if bucket is None or bucket.rate != key.rate:
            bucket = self._buckets[key.id] = TokenBucket(key.rate)
        return bucket.take()

    def touch_due(self, key: APIKey, now: datetime) -> bool:
        last = self._touched.get(key.id) or key.last_used_at
        if last is not None and now - last < TOUCH_EVERY:
            return False
        self._touched[key.id] = now
        return True


def _allowed(address: str | None, allow: list[str]) -> bool:
    if not allow:
        return True
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    # A dual-stack listener shows an IPv4 client as ::ffff:a.b.c.d; the allow-list names it as a.b.c.d.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in allow)


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "unauthorized",
            "Send the API key as `Authorization: Bearer ek_...`.",
            headers={"www-authenticate": 'Bearer realm="echat"'},
        )
    return token.strip()


async def authorise(request: Request, limits: KeyLimits, scope: Scope | None, now: datetime) -> Caller:
    """The caller of ``request`` if its key is live, allowed from its address, under its rate and holds
    ``scope``; else the problem (401, 403, 429). Writes the key's last use when due."""
    token = _bearer(request)
    state = runtime(request)
    async with state.lookups() as session:
        key = await authenticate(session, token)
    if key is None:
        raise Problem(
            401,
            "unauthorized",
            "The API key is unknown or revoked.",
            headers={"www-authenticate": 'Bearer realm="echat", error="invalid_token"'},
        )
    if not _allowed(request.client.host if request.client else None, key.allow):
        raise Problem(403, "forbidden-address", "The API key may not be used from this address.")
    wait = limits.wait(key)
    if wait > 0:
        raise Problem(
            429,
            "rate-limited",
            f"The API key's rate ({key.rate:g} requests a second) is used up.",
            headers={"retry-after": str(max(1, math.ceil(wait)))},
        )
    if scope is not None and scope.value not in key.scopes:
        raise Problem(403, "missing-scope", f"The API key lacks the scope {scope.value!r}.")
    if limits.touch_due(key, now):
        async with state.sessionmaker() as session, session.begin():
            await touch_key(session, key.id, now)
    return Caller(key.id, key.public_id, key.name, frozenset(key.scopes))
