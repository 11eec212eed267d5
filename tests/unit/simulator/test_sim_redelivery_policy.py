"""The simulator's redelivery backoff: doubling from ``initial`` to ``maximum``, inside a window."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simulator.profiles import CarrierProfile
from simulator.redelivery import RedeliveryPolicy


def test_waits_double_up_to_the_maximum() -> None:
    policy = RedeliveryPolicy(initial=1.0, maximum=60.0)
    assert [policy.delay(attempt) for attempt in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay(500) == 60.0


def test_gives_up_after_the_window_or_the_attempts() -> None:
    policy = RedeliveryPolicy(initial=1.0, maximum=60.0, window=3600.0, max_attempts=100)
    assert policy.next_due(1, first_at=0.0, now=0.5) == 1.5
    assert policy.next_due(10, first_at=0.0, now=3500.0) == 3560.0
    assert policy.next_due(10, first_at=0.0, now=3541.0) is None
    assert RedeliveryPolicy(max_attempts=3).next_due(3, first_at=0.0, now=1.0) is None


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        RedeliveryPolicy(initial=5.0, maximum=1.0)
    with pytest.raises(ValueError):
        RedeliveryPolicy(max_attempts=0)


def test_a_carrier_profile_reads_its_redelivery_table() -> None:
    data = {
        "name": "movistar",
        "country": "ES",
        "port": 0,
        "system_id": "echat",
        "password": "pw",
        "redelivery": {"initial": 0.5, "maximum": 30, "window": 600, "max_attempts": 12},
    }
    profile = CarrierProfile.model_validate(data)
    assert profile.redelivery == RedeliveryPolicy(initial=0.5, maximum=30.0, window=600.0, max_attempts=12)
    assert profile.to_dict()["redelivery"]["max_attempts"] == 12
    with pytest.raises(ValidationError, match="maximum"):
        CarrierProfile.model_validate({**data, "redelivery": {"initial": 10, "maximum": 1}})
