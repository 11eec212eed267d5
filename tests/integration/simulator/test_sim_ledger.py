"""The ledger: every MT accepted, every MO and receipt with the answer it got, in a file that a restart
appends to, with message ids that go on after the ones handed out before the restart."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from simulator import Simulator
from simulator.cli import add_simulator_command, run_simulator
from simulator.ledger import read_ledger
from smpp.aio import ESMESession
from smpp.constants import CommandStatus, RegisteredDelivery
from smpp.pdu import DataSM, DeliverSM, SubmitSM
from tests.integration.simulator.simharness import esme_config, make_config
from tests.waiting import eventually

pytestmark = pytest.mark.integration


class RefusingInbox:
    """Answers every deliver_sm OK except MOs whose text is "refuse me" (a permanent error)."""

    def __init__(self) -> None:
        self.pdus: list[DeliverSM | DataSM] = []

    async def __call__(self, pdu: DeliverSM | DataSM) -> int:
        self.pdus.append(pdu)
        if pdu.short_message == b"refuse me":
            return int(CommandStatus.ESME_RX_P_APPN)
        return 0


async def submit(session: ESMESession, text: str) -> str:
    response = await session.submit(
        SubmitSM(
            source_addr="997745",
            destination_addr="34600000001",
            short_message=text.encode(),
            registered_delivery=RegisteredDelivery.FINAL,
        )
    )
    return str(response.message_id)


async def test_the_ledger_records_outcomes_and_survives_a_restart(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    config = make_config().model_copy(update={"ledger_path": str(ledger)})
    first_ids: list[str] = []
    async with Simulator(config) as simulator:
        inbox = RefusingInbox()
        async with ESMESession(esme_config(simulator), inbox) as session:
            first_ids = [await submit(session, "uno"), await submit(session, "dos")]
            simulator.inject_mo("movistar", "34600111222", "997745", "hola")
            simulator.inject_mo("movistar", "34600111222", "997745", "refuse me")
            counters = simulator.carrier("movistar").counters
            await eventually(lambda: counters.receipts_sent == 2 and counters.mo_delivered == 1)
            await eventually(lambda: counters.mo_failed == 1)
    async with Simulator(config) as simulator:  # the restart: same file
        async with ESMESession(esme_config(simulator), RefusingInbox()) as session:
            after = await submit(session, "tres")
            counters = simulator.carrier("movistar").counters
            await eventually(lambda: counters.receipts_sent == 1)

    assert int(after, 16) == int(first_ids[-1], 16) + 1  # never an id handed out before the restart
    events = list(read_ledger(ledger))
    assert [event["kind"] for event in events if event["kind"] == "start"] == ["start", "start"]
    submits = [event for event in events if event["kind"] == "submit"]
    assert [(event["text"], event["message_id"], event["system_id"]) for event in submits] == [
        ("uno", first_ids[0], "echat"),
        ("dos", first_ids[1], "echat"),
        ("tres", after, "echat"),
    ]
    assert all(event["destinations"] == ["34600000001"] for event in submits)
    mos = {event["text"]: event for event in events if event["kind"] == "mo"}
    assert mos["hola"]["result"] == "ok" and mos["hola"]["from"] == "34600111222"
    assert mos["refuse me"]["result"] == "error"
    assert mos["refuse me"]["status"] == CommandStatus.ESME_RX_P_APPN
    receipts = [event for event in events if event["kind"] == "receipt"]
    assert sorted(event["message_id"] for event in receipts) == sorted([*first_ids, after])
    assert {(event["result"], event["stat"]) for event in receipts} == {("ok", "DELIVRD")}


def test_a_line_cut_short_by_a_crash_is_left_out_and_the_next_run_starts_a_new_line(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text(
        '{"kind": "submit", "carrier": "movistar", "number": 300, "at": 1}\n{"kind": "sub', "utf-8"
    )
    config = make_config().model_copy(update={"ledger_path": str(ledger)})
    simulator = Simulator(config)
    assert simulator.ledger is not None and simulator.ledger.last_numbers == {"movistar": 300}
    simulator.ledger.close()
    assert [event["kind"] for event in read_ledger(ledger)] == ["submit", "start"]
    assert ledger.read_text("utf-8").splitlines()[1] == '{"kind": "sub'


def test_the_command_line_takes_a_ledger_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_simulator_command(parser.add_subparsers(dest="command"))
    bad = tmp_path / "no-such-dir" / "ledger.jsonl"
    args = parser.parse_args(["simulator", "--ledger", str(bad), "--control-port", "0"])
    assert args.ledger == str(bad)
    assert run_simulator(args) == 2
    assert f"ledger: cannot open {bad}: No such file or directory" in capsys.readouterr().err
