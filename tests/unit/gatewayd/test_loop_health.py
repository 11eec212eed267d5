"""Which loops keep failing, as /healthz reports them."""

from __future__ import annotations

from gatewayd.health import FAILING_AFTER, FORGET_AFTER, LoopHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_failing_long_enough_is_reported_until_it_succeeds() -> None:
    clock = Clock()
    health = LoopHealth(clock)
    for _ in range(int(FAILING_AFTER / 0.5)):  # a claim every half second, all refused
        health.failed("mt.claim", ConnectionError("refused"))
        clock.now += 0.5
    assert health.failing() == {}  # a blip so far
    health.failed("mt.claim", ConnectionError("still refused"))
    assert health.failing() == {
        "mt.claim": {
            "for_seconds": FAILING_AFTER,
            "failures": int(FAILING_AFTER / 0.5) + 1,
            "last_error": "ConnectionError('still refused')",
        }
    }
    health.succeeded("mt.record")  # another loop's success changes nothing
    assert set(health.failing()) == {"mt.claim"}
    health.succeeded("mt.claim")
    assert health.failing() == {}


def test_a_loop_not_heard_of_for_a_while_is_forgotten() -> None:
    clock = Clock()
    health = LoopHealth(clock)
    health.failed("receipts.commit", TimeoutError())
    clock.now += FAILING_AFTER
    health.failed("receipts.commit", TimeoutError())
    assert set(health.failing()) == {"receipts.commit"}
    clock.now += FORGET_AFTER + 1  # no receipts came to try again with
    assert health.failing() == {}
    health.failed("receipts.commit", TimeoutError())  # a new failure starts a new count
    assert health.failing() == {}
