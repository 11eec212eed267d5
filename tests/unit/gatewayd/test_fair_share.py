"""The fair share of bind slots among live daemons (pure): every daemon computes the same deal."""

from __future__ import annotations

import itertools

import pytest

from gatewayd.fair_share import plan, quotas, unowned

#: Two carriers: movistar 2 binds x 2 copies, vodafone 3 slots.
SLOTS = {
    "movistar-1#1": "movistar",
    "movistar-1#2": "movistar",
    "movistar-2#1": "movistar",
    "movistar-2#2": "movistar",
    "vodafone-1#1": "vodafone",
    "vodafone-1#2": "vodafone",
    "vodafone-1#3": "vodafone",
}


def totals(shares: dict[str, dict[str, int]]) -> dict[str, int]:
    return {instance: sum(share.values()) for instance, share in shares.items()}


@pytest.mark.parametrize("live", [1, 2, 3, 4, 5, 7, 8, 10])
def test_the_first_total_mod_live_instances_get_the_ceiling_and_the_rest_the_floor(live: int) -> None:
    instances = [f"node-{index:02d}" for index in range(live)]
    shares = quotas(SLOTS, reversed(instances))  # the order given does not matter
    total = len(SLOTS)
    assert list(shares) == instances
    expected = [total // live + (1 if index < total % live else 0) for index in range(live)]
    assert list(totals(shares).values()) == expected
    for carrier in ("movistar", "vodafone"):  # every carrier spread as evenly as it can be
        counts = [share.get(carrier, 0) for share in shares.values()]
        assert max(counts) - min(counts) <= 1
        assert sum(counts) == sum(1 for c in SLOTS.values() if c == carrier)


def test_no_live_instance_gets_nothing() -> None:
    assert quotas(SLOTS, []) == {}


def test_a_lone_daemon_takes_every_free_slot() -> None:
    moves = plan("a", SLOTS, [], {})
    assert moves.release == ()
    assert moves.acquire == tuple(sorted(SLOTS))


def test_a_daemon_over_its_share_releases_the_last_slots_by_name() -> None:
    held = dict.fromkeys(SLOTS, "a")
    moves = plan("a", SLOTS, ["a", "b"], held)
    # a gets ceil(7/2) = 4: movistar 2 (dealt a, b, a, b), vodafone 2 (a, b, a)
    assert moves.release == ("movistar-2#1", "movistar-2#2", "vodafone-1#3")
    assert moves.acquire == ()
    # and the newcomer takes nothing another daemon holds: it waits for the release
    assert plan("b", SLOTS, ["a", "b"], held) == plan("b", SLOTS, ["a", "b"], held)
    assert plan("b", SLOTS, ["a", "b"], held).acquire == ()


def test_free_and_expired_slots_are_taken_up_to_the_share_only() -> None:
    held = {"movistar-1#1": "a", "movistar-1#2": "b"}  # expired leases are not in ``held``
    moves = plan("b", SLOTS, ["a", "b"], held)
    assert moves.release == ()
    # b's share: movistar 2 (has 1), vodafone 1
    assert moves.acquire == ("movistar-2#1", "vodafone-1#1")


def test_slots_no_longer_configured_are_released() -> None:
    held = {"gone-1": "a", "movistar-1#1": "a"}
    assert "gone-1" in plan("a", SLOTS, ["a"], held).release


def test_converges_to_one_owner_per_slot_from_any_start() -> None:
    """Daemons applying their plans in turn reach the fair deal, and never hold a slot twice."""
    for live in (["a", "b"], ["a", "b", "c"]):
        held: dict[str, str] = {}
        for _ in range(4):
            for me in live:
                moves = plan(me, SLOTS, live, held)
                for slot in moves.release:
                    del held[slot]
                for slot in moves.acquire:
                    assert slot not in held
                    held[slot] = me
        counts = {me: sum(1 for owner in held.values() if owner == me) for me in live}
        assert counts == totals(quotas(SLOTS, live))
        # joining: everyone rebalances to the new deal without a slot ever held twice
        newcomer = live + ["z"]
        for _, me in itertools.product(range(4), newcomer):
            moves = plan(me, SLOTS, newcomer, held)
            for slot in moves.release:
                del held[slot]
            for slot in moves.acquire:
                assert slot not in held
                held[slot] = me
        counts = {me: sum(1 for owner in held.values() if owner == me) for me in newcomer}
        assert counts == totals(quotas(SLOTS, newcomer))


def test_unowned_counts_slots_without_a_live_owner_per_carrier() -> None:
    held = {"movistar-1#1": "a", "movistar-1#2": "dead", "vodafone-1#1": "a"}
    assert unowned(SLOTS, held, ["a"]) == {"movistar": 3, "vodafone": 2}
    assert unowned(SLOTS, dict.fromkeys(SLOTS, "a"), ["a"]) == {}
