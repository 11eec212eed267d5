"""For benchmarks only: the daemon without the reports' rollups, to measure what they cost on the hot
path. Replaces, in this process, every pipeline's call of :mod:`gatewayd.store.rollups` with nothing."""

from __future__ import annotations

from typing import Any

import gatewayd.mo
import gatewayd.store.mt._pg
import gatewayd.store.mt.claims
import gatewayd.store.mt.queue
import gatewayd.store.mt.results
import gatewayd.store.mt.status
import gatewayd.store.repo_mo


async def _nothing(*_args: Any, **_kwargs: Any) -> None:
    return None


def _nothing_now(*_args: Any, **_kwargs: Any) -> None:
    return None


#: The status change's statement without the rollup keys it reads for the reports (its joins).
_CHANGE_STATUS_ALONE = """
SELECT u.id, u.status, u.final
FROM updated AS u
"""


def switch_rollups_off() -> None:
    for module, name in (
        (gatewayd.store.repo_mo, "count_mos"),
        (gatewayd.mo, "count_opt_outs"),
        (gatewayd.store.mt.queue, "count_mts"),
        (gatewayd.store.mt.status, "count_finals"),
        (gatewayd.store.mt.results, "count_finals"),
        (gatewayd.store.mt.claims, "count_finals"),
    ):
        assert hasattr(module, name), f"{module.__name__} no longer calls {name}"
        setattr(module, name, _nothing)
    assert hasattr(gatewayd.store.mt.status, "count_final_rows"), "the status change no longer counts"
    gatewayd.store.mt.status.count_final_rows = _nothing_now
    statement = gatewayd.store.mt._pg._CHANGE_STATUS
    head, joined, _ = statement.partition("SELECT u.id, u.status, u.final, ")
    assert joined, "the status change's statement changed: update _CHANGE_STATUS_ALONE"
    gatewayd.store.mt._pg._CHANGE_STATUS = head + _CHANGE_STATUS_ALONE.lstrip("\n")
