"""The live monitor's colour of a conversation: a pure function of the row, the clock and the
service's overdue threshold (the browser applies the same rule every second)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gatewayd.store.enums import ConversationStatus
from gatewayd.store.repo_monitor import MonitorRow, MonitorState, monitor_state

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LIMIT = timedelta(seconds=120)
ROW = MonitorRow(
    conversation_id=1,
    client_id="CABCDEFGH",
    alias=None,
    status=ConversationStatus.WAITING,
    service="chat",
    short_code="997745",
    carrier="movistar",
    operator_id=None,
    operator_name=None,
    opened_at=NOW - timedelta(minutes=10),
    waiting_since=NOW - timedelta(seconds=30),
    last_at=NOW - timedelta(seconds=30),
    last_mt_text=None,
    last_mt_status=None,
)


@pytest.mark.parametrize(
    ("changes", "state"),
    [
        ({}, MonitorState.WAITING),
        ({"operator_id": 7}, MonitorState.ASSIGNED),
        ({"waiting_since": NOW - timedelta(seconds=120)}, MonitorState.WAITING),  # at the limit: not yet
        ({"waiting_since": NOW - timedelta(seconds=121)}, MonitorState.OVERDUE),
        ({"waiting_since": NOW - timedelta(seconds=121), "operator_id": 7}, MonitorState.OVERDUE),
        ({"status": ConversationStatus.OPEN, "waiting_since": None, "operator_id": 7}, MonitorState.ANSWERED),
        ({"status": ConversationStatus.WAITING, "waiting_since": None}, MonitorState.WAITING),
    ],
)
def test_the_state_of_a_row(changes: dict[str, object], state: MonitorState) -> None:
    assert monitor_state(replace(ROW, **changes), NOW, LIMIT) is state  # type: ignore[arg-type]


def test_the_clock_starts_at_the_wait_else_the_last_message_else_the_opening() -> None:
    assert ROW.since == ROW.waiting_since
    answered = replace(ROW, waiting_since=None)
    assert answered.since == ROW.last_at
    assert replace(answered, last_at=None).since == ROW.opened_at
    assert replace(ROW, alias="Pepe").label == "Pepe" and ROW.label == "CABCDEFGH"
