"""The webhook signature receivers check, and the retry backoff."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime, timedelta

import pytest

from gatewayd.config import WebhooksConfig
from gatewayd.store.webhooks import WebhookSubscription
from gatewayd.webhooks.delivery import Endpoint
from gatewayd.webhooks.signing import backoff, signature, verify
from gatewayd.webhooks.subscriptions import ROTATION_GRACE, rotate_secret

SECRET = "a" * 64
BODY = b'{"event":"mo.received","text":"hola"}'


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1_700_000_000, BODY) == f"t=1700000000,v1={expected}"


def test_verify_accepts_a_fresh_signature_and_refuses_tampering_old_or_malformed_ones() -> None:
    header = signature(SECRET, 1_700_000_000, BODY)
    assert verify(SECRET, header, BODY, now=1_700_000_100)
    assert not verify(SECRET, header, BODY + b" ", now=1_700_000_100)
    assert not verify("b" * 64, header, BODY, now=1_700_000_100)
    assert not verify(SECRET, header, BODY, now=1_700_000_000 + 301)
    assert not verify(SECRET, header.replace("t=1700000000", "t=1700000001"), BODY, now=1_700_000_000)
    assert not verify(SECRET, "garbage", BODY, now=1_700_000_000)
    assert not verify(SECRET, "t=x,v1=00", BODY, now=1_700_000_000)


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap_with_jitter_below() -> None:
    rng = random.Random(1)
    delays = [backoff(attempt, 5.0, 3600.0, rng) for attempt in range(1, 14)]
    for attempt, delay in enumerate(delays, start=1):
        nominal = min(3600.0, 5.0 * 2 ** (attempt - 1))
        assert 0.75 * nominal <= delay <= nominal
    assert delays[-1] > 2000  # capped near an hour, not growing past it
    assert len({round(backoff(3, 5.0, 60.0), 6) for _ in range(20)}) > 1  # jittered


def test_the_backoff_cap_may_not_be_below_the_initial_delay() -> None:
    with pytest.raises(ValueError, match="backoff_initial"):
        WebhooksConfig(backoff_initial=10, backoff_max=5)


def test_during_a_rotations_grace_both_secrets_sign_and_either_verifies() -> None:
    old = "b" * 64
    header = signature(SECRET, 1_700_000_000, BODY, old)
    assert header.count("v1=") == 2 and header.startswith(signature(SECRET, 1_700_000_000, BODY))
    assert verify(SECRET, header, BODY, now=1_700_000_000)
    assert verify(old, header, BODY, now=1_700_000_000)
    assert not verify("c" * 64, header, BODY, now=1_700_000_000)


def test_a_rotation_keeps_the_old_secret_for_its_grace_period_only() -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    subscription = WebhookSubscription(secret=SECRET)
    new = rotate_secret(subscription, now)
    assert new != SECRET and subscription.previous_secret == SECRET
    endpoint = Endpoint("http://x/", new, subscription.previous_secret, subscription.previous_secret_until)
    assert endpoint.secrets(now + ROTATION_GRACE - timedelta(seconds=1)) == (SECRET,)
    assert endpoint.secrets(now + ROTATION_GRACE) == ()
