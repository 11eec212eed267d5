"""The chaos test (issue 15), short version: about a minute of MO, MT and receipt traffic through three
daemons and two panels while daemons are killed (SIGKILL) and stopped (SIGTERM), and PostgreSQL, the
broker and the simulator are each restarted once; then the database is checked against the
simulator's ledger. ``make chaos`` runs it for five minutes (``CHAOS_DURATION=300``); ``CHAOS_SEED``
replays a run's faults. See tests/chaos/harness.py."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from simulator.ledger import read_ledger
from tests.chaos.harness import BIND_SLOTS, Chaos, Plan, check_ledger, print_report

pytestmark = pytest.mark.integration


async def test_nothing_is_lost_while_daemons_databases_brokers_and_the_smsc_fail() -> None:
    began = time.monotonic()
    plan = Plan.from_environment(duration=60.0, daemon_faults=4)
    directory = Path(tempfile.mkdtemp(prefix="echat-chaos-"))
    os.chmod(directory, 0o755)  # PostgreSQL runs as its own user below it
    chaos = Chaos(directory, plan)
    passed = False
    try:
        await chaos.start()
        await chaos.run()
        await chaos.drain()
        report = check_ledger(read_ledger(chaos.ledger), await chaos.snapshot(), chaos.faults, chaos.traffic)
        await chaos.sample_binds()
        max_binds = chaos.max_binds
        print_report(chaos, report, max_binds, time.monotonic() - began)
        assert not report.problems, "\n".join(report.problems)
        assert not report.pending, "\n".join(report.pending)
        assert report.counts["MOs acknowledged (deliver_sm_resp OK)"] > plan.duration * plan.mo_rate / 2
        assert report.counts["receipts applied to their MT"] > plan.duration * plan.mt_rate / 3
        assert max_binds is not None, "the simulator does not count binds per system_id"
        assert max_binds <= BIND_SLOTS, f"{max_binds} binds at once, {BIND_SLOTS} configured"
        passed = True
    finally:
        if not passed:
            for child in chaos.children:
                print(f"--- {child.name} ({child.log}) ---\n{child.tail()}")
        chaos.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
