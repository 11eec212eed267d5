"""Which bind slots a daemon should own, given the configured slots and the live daemons: pure (no
I/O, no clock), so every daemon computes the same answer from the same view.

The slots are dealt like cards: carriers in name order, each carrier's slots one by one to the live
instances in name order, the deal continuing where the previous carrier's ended. So the first
``total % live`` instances get ``ceil(total / live)`` slots and the others ``floor``, and every
carrier is spread as evenly as it can be (a carrier with two binds on two daemons gets one on each).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


def quotas(slots: Mapping[str, str], instances: Collection[str]) -> dict[str, dict[str, int]]:
    """How many slots of each carrier each instance should own: instance -> carrier -> count.
    ``slots`` maps each slot to its carrier."""
    live = sorted(set(instances))
    shares: dict[str, dict[str, int]] = {instance: {} for instance in live}
    if not live:
        return shares
    per_carrier: dict[str, int] = {}
    for carrier in slots.values():
        per_carrier[carrier] = per_carrier.get(carrier, 0) + 1
    position = 0
    for carrier in sorted(per_carrier):
        for _ in range(per_carrier[carrier]):
            share = shares[live[position % len(live)]]
            share[carrier] = share.get(carrier, 0) + 1
            position += 1
    return shares


@dataclass(frozen=True, slots=True)
class Plan:
    """What one daemon does at a heartbeat: unbind and give up ``release``, then try to take
    ``acquire`` (slots nobody holds, in order)."""

    release: tuple[str, ...]
    acquire: tuple[str, ...]


def plan(
    me: str,
    slots: Mapping[str, str],
    live: Collection[str],
    held: Mapping[str, str],
) -> Plan:
    """The moves that bring ``me`` to its quota. ``slots``: slot -> carrier, as configured here;
    ``live``: the live instances (``me`` counts as live); ``held``: slot -> owner of every lease not
    expired. Slots ``me`` holds beyond its quota of a carrier are released (the last ones by name),
    and so are those no longer configured; free slots are taken up to the quota (the first by name).
    A slot another daemon holds is never taken here: that daemon releases it, or its lease expires."""
    share = quotas(slots, {*live, me})[me]
    mine: dict[str, list[str]] = {}
    free: dict[str, list[str]] = {}
    for slot in sorted(slots):
        carrier = slots[slot]
        owner = held.get(slot)
        if owner == me:
            mine.setdefault(carrier, []).append(slot)
        elif owner is None:
            free.setdefault(carrier, []).append(slot)
    release = [slot for slot, owner in sorted(held.items()) if owner == me and slot not in slots]
    acquire: list[str] = []
    for carrier in sorted(set(slots.values())):
        owned, wanted = mine.get(carrier, []), share.get(carrier, 0)
        if len(owned) > wanted:
            release.extend(owned[wanted:])
        else:
            acquire.extend(free.get(carrier, [])[: wanted - len(owned)])
    return Plan(tuple(sorted(release)), tuple(acquire))


def unowned(slots: Mapping[str, str], held: Mapping[str, str], live: Sequence[str]) -> dict[str, int]:
    """Per carrier, the configured slots that no live daemon holds (``gatewayd status``'s alarm)."""
    alive = set(live)
    missing: dict[str, int] = {}
    for slot, carrier in slots.items():
        if held.get(slot) not in alive:
            missing[carrier] = missing.get(carrier, 0) + 1
    return missing
