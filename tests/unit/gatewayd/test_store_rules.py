"""The store's pure rules: MT status from its parts, receipt states, client IDs, back-off."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from gatewayd.store.enums import MTStatus, PartStatus
from gatewayd.store.mt.values import RetryPolicy, derive_mt_status, receipt_part_status
from gatewayd.store.repo_subscribers import new_client_id, new_client_ids

A, D, U, E, R = (
    PartStatus.ACCEPTED,
    PartStatus.DELIVERED,
    PartStatus.UNDELIVERABLE,
    PartStatus.EXPIRED,
    PartStatus.REJECTED,
)


@pytest.mark.parametrize(
    ("segments", "parts", "expected"),
    [
        (2, [A], None),
        (2, [A, A], MTStatus.ACCEPTED),
        (2, [D, A], MTStatus.ACCEPTED),
        (2, [D, D], MTStatus.DELIVERED),
        (3, [D, U], MTStatus.FAILED),
        (2, [E, D], MTStatus.EXPIRED),
        (2, [E, U], MTStatus.FAILED),
        # a rejected part is one whose resend is pending (the rejection itself failed or retried the MT)
        (1, [R], None),
        (2, [D, R], None),
        (2, [R, U], MTStatus.FAILED),
        (0, [], None),
    ],
)
def test_mt_status_from_parts(segments: int, parts: list[PartStatus], expected: MTStatus | None) -> None:
    assert derive_mt_status(segments, parts) is expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("DELIVRD", PartStatus.DELIVERED),
        ("delivered", PartStatus.DELIVERED),
        ("UNDELIV", PartStatus.UNDELIVERABLE),
        ("REJECTD", PartStatus.UNDELIVERABLE),
        ("DELETED", PartStatus.UNDELIVERABLE),
        (" EXPIRED ", PartStatus.EXPIRED),
        ("ENROUTE", None),
        ("ACCEPTD", None),
        ("UNKNOWN", None),
    ],
)
def test_receipt_states(state: str, expected: PartStatus | None) -> None:
    assert receipt_part_status(state) is expected


def test_client_ids_are_pseudonymous() -> None:
    ids = {new_client_id() for _ in range(200)}
    assert len(ids) == 200 and all(re.fullmatch(r"C[A-Z2-7]{8}", client_id) for client_id in ids)


def test_client_ids_made_in_bulk_look_the_same_and_differ() -> None:
    ids = new_client_ids(500)
    assert len(set(ids)) == 500 and all(re.fullmatch(r"C[A-Z2-7]{8}", client_id) for client_id in ids)
    assert new_client_ids(0) == []


def test_retry_backoff_doubles_up_to_the_maximum() -> None:
    policy = RetryPolicy(limit=3, initial=5.0, maximum=30.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [timedelta(seconds=s) for s in (5, 10, 20, 30, 30)]
    assert policy.may_retry(3) and not policy.may_retry(4)
