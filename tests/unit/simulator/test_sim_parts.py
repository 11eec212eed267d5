"""Faults, token bucket, timer wheel, receipt plan, MO building, MT store and the load generator's maths."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime

import pytest
from pydantic import ValidationError

from simulator.carrier import ReceiptPlan
from simulator.errors import SettingsError
from simulator.faults import FaultPatch, FaultState, carrier_bucket
from simulator.loadgen import poisson
from simulator.mo import MOError, build_mo
from simulator.mtstore import MTStore, assemble
from simulator.profiles import RECEIPT_STATES, CarrierProfile, ReceiptProfile
from simulator.timerwheel import TimerWheel
from smpp.concat import Reassembler, split_message, user_data
from smpp.constants import CommandStatus, MessageState
from smpp.pdu import SubmitSM
from smpp.receipt import format_receipt
from smpp.text import ConcatMode


def test_a_carrier_admits_its_rate_per_second() -> None:
    bucket = carrier_bucket(10, now=0.0)
    assert sum(bucket.take(0.0) == 0.0 for _ in range(20)) == 10  # a second's burst
    assert bucket.take(0.05) > 0.0
    assert bucket.take(0.1) == 0.0  # one token back after 0.1 s


def test_fault_patch_sets_and_clears_single_faults() -> None:
    faults = FaultState()
    assert not faults.active
    faults.apply(FaultPatch.model_validate({"no_response": True, "slow": {"seconds": 0.5}}), now=0.0)
    assert faults.active and faults.no_response and faults.slow_seconds == 0.5
    faults.apply(FaultPatch.model_validate({"no_response": False, "slow": None}), now=0.0)
    assert not faults.active


def test_invalid_fault_patch_changes_nothing() -> None:
    faults = FaultState()
    with pytest.raises(ValidationError, match="slow.seconds"):
        faults.apply(FaultPatch.model_validate({"generic_nack": True, "slow": {"seconds": -1}}), now=0.0)
    assert not faults.generic_nack and not faults.active
    with pytest.raises(SettingsError, match="throttle: the carrier has no tps"):
        faults.apply(FaultPatch.model_validate({"generic_nack": True, "throttle": True}), now=0.0)
    assert not faults.generic_nack and not faults.active


def test_msgqful_by_count_and_by_time() -> None:
    faults = FaultState()
    faults.apply(FaultPatch.model_validate({"msgqful": {"count": 2}}), now=0.0)
    assert [faults.queue_full(0.0) for _ in range(3)] == [True, True, False]
    assert not faults.active
    faults.apply(FaultPatch.model_validate({"msgqful": {"seconds": 1}}), now=10.0)
    assert faults.queue_full(10.5) and not faults.queue_full(11.0)


def test_drop_after_counts_requests_once() -> None:
    faults = FaultState()
    assert faults.apply(FaultPatch.model_validate({"drop": {"after_pdus": 3}}), now=0.0) is False
    assert [faults.count_for_drop() for _ in range(4)] == [False, False, True, False]
    assert faults.apply(FaultPatch.model_validate({"drop": {"now": True}}), now=0.0) is True


def test_refuse_binds_by_name_number_or_default() -> None:
    faults = FaultState()
    faults.apply(FaultPatch.model_validate({"refuse_binds": True}), now=0.0)
    assert faults.refuse_binds_status == CommandStatus.ESME_RBINDFAIL
    faults.apply(FaultPatch.model_validate({"refuse_binds": {"status": 0x58}}), now=0.0)
    assert faults.refuse_binds_status == CommandStatus.ESME_RTHROTTLED
    assert faults.to_dict(0.0)["refuse_binds"] == {"status": "ESME_RTHROTTLED"}


def test_timer_wheel_fires_in_deadline_order_and_only_when_due() -> None:
    wheel: TimerWheel[str] = TimerWheel(0.01, now=100.0)
    wheel.schedule(100.05, "b")
    wheel.schedule(100.02, "a")
    wheel.schedule(99.0, "late")  # already past: next drain
    assert list(wheel.drain(100.001)) == ["late"]
    assert list(wheel.drain(100.03)) == ["a"]
    assert len(wheel) == 1
    assert list(wheel.drain(500.0)) == ["b"]  # after a long pause
    assert len(wheel) == 0


def test_receipt_plan_follows_weights_and_overrides() -> None:
    receipts = ReceiptProfile(
        statuses={"DELIVRD": 70, "UNDELIV": 20, "EXPIRED": 10}, overrides={"34699999999": "REJECTD"}
    )
    profile = CarrierProfile(name="c", country="ES", port=0, system_id="a", password="b", receipts=receipts)
    plan = ReceiptPlan(profile)
    rng = random.Random(4)
    mix = Counter(plan.pick("34600000000", rng) for _ in range(10_000))
    assert abs(mix["DELIVRD"] / 100 - 70) < 2 and abs(mix["UNDELIV"] / 100 - 20) < 2
    assert plan.pick("34699999999", rng) == "REJECTD"


def test_receipt_states_cover_the_six_final_states() -> None:
    assert set(RECEIPT_STATES) == {"DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN"}


def test_fast_receipt_text_matches_the_standard_formatter() -> None:
    from simulator.carrier import Carrier
    from simulator.core import Simulator
    from simulator.profiles import default_config

    carrier: Carrier = Simulator(default_config()).carriers["movistar"]
    when = datetime(2026, 3, 1, 12, 30).timestamp()
    for stat in RECEIPT_STATES:
        state = RECEIPT_STATES[stat]
        submitted, done = datetime.fromtimestamp(when), datetime.fromtimestamp(when + 60)
        expected = format_receipt(
            "1a2b",
            state,
            submitted,
            done,
            err="000" if state == MessageState.DELIVERED else "001",
            text="Hola",
        )
        assert carrier.receipt_text("1a2b", stat, when, when + 60, "Hola") == expected


def test_build_mo_splits_and_orders_parts() -> None:
    text = "Necesito hablar contigo urgentemente, ¿puedes? " * 8
    message = build_mo("34600111222", "997745", text, order="reverse", reference=300)
    numbers = [info.part_number for info in (user_data(p)[0] for p in message.parts) if info]
    assert numbers == list(range(len(message.parts), 0, -1)) and len(numbers) > 2
    reassembler: Reassembler[int] = Reassembler(timeout=1, max_pending=1)
    done = []
    for part in message.parts:
        info, body = user_data(part)
        assert info is not None and info.reference == 300 & 0xFF
        done += reassembler.add("k", info, body, part.data_coding, 0.0, 0)
    assert done[0].text == text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": ""}, "must not be empty"),
        ({"text": "é", "encoding": "ascii"}, "'ascii' is not one of"),
        ({"text": "ü" * 200, "encoding": "ucs2", "max_parts": 2}, "needs 3 parts, at most 2"),
        ({"text": "x", "order": "random"}, "'random' is not one of"),
    ],
)
def test_build_mo_rejects_what_it_cannot_send(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(MOError, match=message):
        build_mo("34600111222", "997745", **kwargs)  # type: ignore[arg-type]


def test_latin1_and_auto_encodings() -> None:
    assert build_mo("34600111222", "997745", "Olá", encoding="latin1").data_coding == 3
    assert build_mo("34600111222", "997745", "Hola ñ").data_coding == 0
    assert build_mo("34600111222", "997745", "Hola 😊").data_coding == 8


def test_mt_store_is_a_bounded_ring_with_filters() -> None:
    store = MTStore(3)
    for number in range(5):
        store.add(
            "movistar" if number % 2 else "vodafone",
            "echat",
            float(number),
            SubmitSM(destination_addr=f"3460000000{number}", short_message=b"x"),
            str(number),
        )
    assert [r.id for r in store.query()] == [3, 4, 5]
    assert [r.id for r in store.query(carrier="movistar")] == [4]
    assert [r.id for r in store.query(since_id=3)] == [4, 5]
    assert [r.id for r in store.query(since_time=3.5)] == [5]
    store.clear()
    assert store.query() == [] and store.last_id == 5


def test_assemble_joins_parts_in_any_order_and_flags_incomplete() -> None:
    store = MTStore(100)
    segments = split_message("abc" * 100, 0, mode=ConcatMode.UDH16, reference=7)
    for segment in reversed(segments[1:]):  # part 1 missing
        store.add(
            "m",
            "e",
            0.0,
            SubmitSM(
                destination_addr="34600000001",
                esm_class=segment.esm_class_flags,
                short_message=segment.short_message,
            ),
            "id",
        )
    [message] = assemble(store.query())
    assert not message["complete"] and message["missing_parts"] == [1]
    store.add(
        "m",
        "e",
        0.0,
        SubmitSM(
            destination_addr="34600000001",
            esm_class=segments[0].esm_class_flags,
            short_message=segments[0].short_message,
        ),
        "id",
    )
    [message] = assemble(store.query())
    assert message["complete"] and message["text"] == "abc" * 100


def test_poisson_mean_for_small_and_large_rates() -> None:
    rng = random.Random(2)
    for mean in (0.3, 5.0, 400.0):
        draws = [poisson(mean, rng) for _ in range(4000)]
        assert abs(sum(draws) / len(draws) - mean) < max(0.05, mean * 0.03)
    assert poisson(0.0, rng) == 0
