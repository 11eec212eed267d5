"""Garbage-collector settings for the daemon's process.

The pipelines allocate a few dozen short-lived objects per message (PDUs, results, events, futures),
and a busy daemon holds tens of thousands of long-lived ones (MTs in flight, pooled connections, the
imported modules). With CPython's defaults the cyclic collector then runs a full collection every few
seconds that walks the whole heap, which cost as much CPU as the pipelines themselves at a few thousand
messages per second. The long-lived startup objects are frozen out of collection, and the youngest
generation is collected after more allocations, so most short-lived objects are freed by reference
counting before the collector ever looks at them.
"""

from __future__ import annotations

import gc

#: Allocations (net of deallocations) between collections of the youngest generation; default 700.
YOUNG_THRESHOLD = 50_000
#: Young collections between collections of the middle generation; default 10.
MIDDLE_THRESHOLD = 20
#: Middle collections between full collections; default 10. (CPython also waits until the objects
#: awaiting a full collection are a quarter of those already in the oldest generation.)
OLD_THRESHOLD = 100

_tuned = False


def tune_for_throughput() -> bool:
    """Once per process: collect, freeze what survives (modules, configuration, pools) and raise the
    thresholds. Returns False when the process was already tuned (a second daemon in one process)."""
    global _tuned
    if _tuned:
        return False
    _tuned = True
    gc.collect()  # cyclic garbage frozen now would never be freed
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    return True
