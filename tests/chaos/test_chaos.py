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

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


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
        assert not chaos.unexpected_exits(), chaos.unexpected_exits()
        await chaos.drain()
        assert not chaos.unexpected_exits(), chaos.unexpected_exits()
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
        chaos.cleanup()
        if not passed:  # the ledger and every log, for the post-mortem; the database files are not kept
            kept = ARTIFACTS / f"chaos-{plan.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
            shutil.copytree(directory, kept, ignore=shutil.ignore_patterns("pg"))
            if chaos.pg.log.exists():
                shutil.copy(chaos.pg.log, kept / "postgresql.log")
            (kept / "faults.txt").write_text(
                "".join(f"{at:.3f} {kind}: {detail}\n" for at, kind, detail in chaos.faults.entries), "utf-8"
            )
            print(f"chaos: ledger and logs kept in {kept}")
        shutil.rmtree(directory, ignore_errors=True)
