"""The daemon's garbage-collector settings are applied once per process."""

from __future__ import annotations

import gc

from gatewayd.gc_tuning import MIDDLE_THRESHOLD, OLD_THRESHOLD, YOUNG_THRESHOLD, tune_for_throughput


def test_tuning_raises_the_thresholds_once_per_process() -> None:
    tune_for_throughput()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    assert gc.get_freeze_count() > 0
    assert tune_for_throughput() is False
