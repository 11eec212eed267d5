"""The signature receivers check, and when a failed delivery is tried again. Pure: time is passed in."""

from __future__ import annotations

import hashlib
import hmac
import random

SIGNATURE_HEADER = "X-Echat-Signature"
DELIVERY_HEADER = "X-Echat-Delivery"
EVENT_HEADER = "X-Echat-Event"


def signature(secret: str, timestamp: int, body: bytes, *older: str) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``: the timestamp is signed with the body so
    that a receiver can refuse a replayed old delivery. ``older`` secrets (a rotation's grace period) add
    one more ``v1=`` each, after the current one."""
    digests = [
        hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        for key in (secret, *older)
    ]
    return f"t={timestamp}," + ",".join(f"v1={digest}" for digest in digests)


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of ``now`` (the
    receiver's side, as docs/WEBHOOKS.md shows it)."""
    pairs = [part.split("=", 1) for part in header.split(",") if "=" in part]
    try:
        timestamp = int(dict(pairs)["t"])
    except (KeyError, ValueError):
        return False
    expected = signature(secret, timestamp, body).partition(",v1=")[2]
    signed = any(hmac.compare_digest(expected, value) for name, value in pairs if name == "v1")
    return abs(now - timestamp) <= tolerance and signed


def backoff(attempts: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after ``attempts`` failed ones: ``initial`` doubled per failure, capped
    at ``maximum``, then jittered down by up to a quarter so that many failures do not retry in step."""
    delay = min(maximum, initial * 2 ** max(0, attempts - 1))
    jitter: float = (rng or random).random()
    return float(delay) * (1 - 0.25 * jitter)
