"""The chaos test's ledger check on ledgers made up here: what it accepts, what it explains, what fails."""

from __future__ import annotations

from typing import Any

from tests.chaos.harness import FaultLog, Snapshot, Traffic, check_ledger

T0 = 1_000_000.0


def faults(*entries: tuple[float, str]) -> FaultLog:
    log = FaultLog(started=T0)
    log.entries = [(T0 + at, kind, "") for at, kind in entries]
    return log


def submit(token: str, message_id: str, at: float) -> dict[str, Any]:
    return {"kind": "submit", "text": f"{token} hola", "message_id": message_id, "at": T0 + at}


def receipt(message_id: str, stat: str = "DELIVRD", result: str = "ok") -> dict[str, Any]:
    return {"kind": "receipt", "message_id": message_id, "stat": stat, "result": result, "at": T0}


def mo(token: str, result: str = "ok") -> dict[str, Any]:
    return {"kind": "mo", "text": f"{token} hola", "result": result, "at": T0}


def test_a_clean_run_passes_with_its_counts() -> None:
    events = [mo("chaos-mo-1"), submit("chaos-mt-1", "a1", 1.0), receipt("a1")]
    snapshot = Snapshot(
        mo_counts={"chaos-mo-1": 1},
        mts={7: ("delivered", "chaos-mt-1")},
        parts=[(7, "a1", "delivered", "DELIVRD")],
    )
    traffic = Traffic(mo_offered={"chaos-mo-1": T0}, mt_queued={"chaos-mt-1": 7})
    report = check_ledger(events, snapshot, faults(), traffic)
    assert report.problems == [] and report.pending == []
    assert report.counts["MOs stored exactly once"] == 1
    assert report.counts["receipts applied to their MT"] == 1
    assert "| MTs delivered" in report.table()


def test_a_duplicate_submit_needs_a_sigkill_between_its_copies() -> None:
    events = [submit("chaos-mt-1", "a1", 1.0), submit("chaos-mt-1", "a2", 9.0), receipt("a1"), receipt("a2")]
    snapshot = Snapshot(
        mo_counts={}, mts={7: ("delivered", "chaos-mt-1")}, parts=[(7, "a2", "delivered", "DELIVRD")]
    )
    traffic = Traffic(mt_queued={"chaos-mt-1": 7})
    explained = check_ledger(events, snapshot, faults((2.0, "sigkill")), traffic)
    assert explained.problems == [] and explained.pending == []
    assert explained.counts["  of which explained by a SIGKILL in flight"] == 1
    assert explained.counts["receipts of a duplicate's other copy"] == 1
    unexplained = check_ledger(events, snapshot, faults((2.0, "sigterm"), (10.0, "sigkill")), traffic)
    assert len(unexplained.problems) == 1 and "no SIGKILL between" in unexplained.problems[0]


def test_an_mo_stored_twice_fails_and_one_not_stored_is_pending() -> None:
    events = [mo("chaos-mo-1"), mo("chaos-mo-2")]
    snapshot = Snapshot(mo_counts={"chaos-mo-1": 2}, mts={}, parts=[])
    report = check_ledger(events, snapshot, faults(), Traffic())
    assert report.problems == [
        "MOs stored more than once: ['chaos-mo-1']",
        "  chaos-mo-1: the simulator saw +0.00s ok; faults about then: none",
    ]
    assert report.pending == ["1 acknowledged MOs not stored, e.g. ['chaos-mo-2']"]


def test_what_only_a_simulator_restart_explains() -> None:
    """An MO offered and never acknowledged, an MT whose receipt never came: explained by a simulator
    restart soon after; pending (and, drained, failing) otherwise."""
    events = [submit("chaos-mt-1", "a1", 1.0)]
    snapshot = Snapshot(
        mo_counts={}, mts={7: ("accepted", "chaos-mt-1")}, parts=[(7, "a1", "accepted", None)]
    )
    traffic = Traffic(mo_offered={"chaos-mo-1": T0 + 1.0}, mt_queued={"chaos-mt-1": 7})
    restarted = check_ledger(events, snapshot, faults((3.0, "simulator-down")), traffic)
    assert restarted.problems == [] and restarted.pending == []
    assert restarted.counts["  of which offered just before the simulator restarted"] == 1
    assert restarted.counts["  of which submitted just before the simulator restarted"] == 1
    alone = check_ledger(events, snapshot, faults(), traffic)
    assert len(alone.pending) == 2


def test_an_acknowledged_receipt_not_applied_and_an_mt_still_queued_are_pending() -> None:
    events = [submit("chaos-mt-1", "a1", 1.0), receipt("a1", "UNDELIV")]
    snapshot = Snapshot(
        mo_counts={},
        mts={7: ("accepted", "chaos-mt-1"), 8: ("queued", "chaos-mt-2")},
        parts=[(7, "a1", "accepted", None)],
    )
    traffic = Traffic(mt_queued={"chaos-mt-1": 7, "chaos-mt-2": 8})
    report = check_ledger(events, snapshot, faults(), traffic)
    assert any("receipt a1 UNDELIV not applied" in line for line in report.pending)
    assert any("MTs queued or sending" in line for line in report.pending)


def test_mts_the_api_queued_must_be_in_the_database_and_the_simulator_must_know_sent_ones() -> None:
    snapshot = Snapshot(mo_counts={}, mts={7: ("delivered", "chaos-mt-1")}, parts=[])
    traffic = Traffic(mt_queued={"chaos-mt-1": 7, "chaos-mt-2": 8})
    report = check_ledger([], snapshot, faults(), traffic)
    assert "MTs answered 201 but not in the database: [8]" in report.problems
    assert "MT 7 (chaos-mt-1) is delivered but the simulator never got it" in report.problems
