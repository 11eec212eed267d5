"""The simulator's per-message shortcuts give exactly what the general code gives: receipt excerpts,
single-part MOs, the bounded message-state table, the receipt plan's fixed values, MO events."""

from __future__ import annotations

import pytest

import simulator.carrier as carrier_module
from simulator.carrier import Carrier, ReceiptPlan, receipt_excerpt
from simulator.core import Simulator
from simulator.loadgen import LoadGenerator, LoadSpec
from simulator.message_states import MessageStates, format_message_id, message_number
from simulator.mo import build_mo, mo_parts
from simulator.mtstore import MTPDU
from simulator.pdu_json import as_message
from simulator.profiles import (
    CarrierProfile,
    DelayDistribution,
    ReceiptProfile,
    SimulatorConfig,
    default_config,
)
from smpp.concat import split_message, user_data
from smpp.constants import NPI, TON, DataCoding, ESMClass
from smpp.pdu import DataSM, DeliverSM, SMEAddress, SubmitMulti, SubmitSM
from smpp.text import ConcatMode, decode_text, encode_text
from smpp.tlv import Tag, TLVs


def excerpt_by_decoding(pdu: MTPDU) -> bytes:
    """The receipt excerpt the long way: the message's user data decoded, cut, and made ASCII."""
    _, body = user_data(as_message(pdu))
    return decode_text(body[:40], pdu.data_coding)[:20].encode("ascii", "replace")


GSM_TEXTS = [
    "Hola, bench",
    "Tu codigo es 123456. No lo compartas con nadie",  # longer than the excerpt
    "@ y $ y _ y ¡hola!",  # GSM codes that are not their ASCII look-alikes
    "precio 10€ {oferta} [hoy]",  # extension characters: escape pairs
    "abcdefghijklmnopqrs€uvwxyz",  # an escape pair straddling the 20th character
    "abcdefghijklmnopqrst{uvwxyz",  # an escape pair right after it
    "Ñandu, año, pingüino, è",
    "¿Qué? §1 Ärger ¤5 ü",
    "linea uno\nlinea dos\r",
]


@pytest.mark.parametrize("text", GSM_TEXTS)
def test_gsm_receipt_excerpt_matches_decoding(text: str) -> None:
    pdu = SubmitSM(destination_addr="34600111222", short_message=encode_text(text, DataCoding.DEFAULT))
    assert receipt_excerpt(pdu) == excerpt_by_decoding(pdu)


@pytest.mark.parametrize(
    ("raw", "data_coding"),
    [
        (b"Plain ASCII text that is long enough", DataCoding.IA5),
        (b"bytes \x80\xff not ASCII", DataCoding.IA5),
        ("Olá, você está aí?".encode("latin-1"), DataCoding.LATIN1),
        (b"Only ASCII in Latin-1", DataCoding.LATIN1),
        ("Hola 😊 qué tal".encode("utf-16-be"), DataCoding.UCS2),
        (b"\x00\x01\x02binary", DataCoding.BINARY),
        (b"flash text", 0xF0),
        (b"", DataCoding.DEFAULT),
    ],
)
def test_other_codings_receipt_excerpt_matches_decoding(raw: bytes, data_coding: int) -> None:
    pdu = SubmitSM(destination_addr="34600111222", short_message=raw, data_coding=data_coding)
    assert receipt_excerpt(pdu) == excerpt_by_decoding(pdu)


def test_receipt_excerpt_of_udh_payload_data_sm_and_submit_multi() -> None:
    [first, *_] = split_message("Un mensaje largo " * 20, 0, mode=ConcatMode.UDH8, reference=3)
    udh = SubmitSM(esm_class=ESMClass.UDHI, short_message=first.short_message)
    payload = SubmitSM(tlvs=TLVs(((Tag.MESSAGE_PAYLOAD, b"Texto en el campo message payload"),)))
    data_sm = DataSM(tlvs=TLVs(((Tag.MESSAGE_PAYLOAD, b"Texto de data_sm"),)))
    multi = SubmitMulti(dest_addresses=(SMEAddress(1, 1, "34600111222"),), short_message=b"Para todos")
    for pdu in (udh, payload, data_sm, multi):
        assert receipt_excerpt(pdu) == excerpt_by_decoding(pdu)
    assert receipt_excerpt(udh) == b"Un mensaje largo Un "
    assert receipt_excerpt(payload) == b"Texto en el campo me"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("a" * 160, "gsm7"),
        ("a" * 161, "gsm7"),
        ("€" * 80, "gsm7"),
        ("€" * 80 + "a", "gsm7"),
        ("ñ" * 70, "ucs2"),
        ("ñ" * 71, "ucs2"),
        ("😊" * 35, "ucs2"),
        ("😊" * 36, "auto"),
        ("é" * 140, "latin1"),
        ("é" * 141, "latin1"),
        ("Hola", "auto"),
        ("Hola ñ", "auto"),
    ],
)
def test_mo_parts_match_the_general_splitter(text: str, encoding: str) -> None:
    data_coding, parts = mo_parts("34600111222", "997745", text, encoding=encoding, reference=0x1F3)
    segments = split_message(
        encode_text(text, data_coding), data_coding, mode=ConcatMode.UDH8, reference=0xF3
    )
    assert parts == tuple(
        DeliverSM(
            source_addr_ton=TON.INTERNATIONAL,
            source_addr_npi=NPI.ISDN,
            source_addr="34600111222",
            dest_addr_ton=TON.UNKNOWN,
            dest_addr_npi=NPI.ISDN,
            destination_addr="997745",
            esm_class=segment.esm_class_flags,
            data_coding=data_coding,
            short_message=segment.short_message,
            tlvs=segment.tlvs,
        )
        for segment in segments
    )
    message = build_mo("34600111222", "997745", text, encoding=encoding, reference=0x1F3)
    assert (message.data_coding, message.parts, message.text) == (data_coding, parts, text)


def test_message_states_keep_the_newest_numbers_and_forget_the_older_ones() -> None:
    states = MessageStates(3)
    for number in range(4):
        states.set(number, 1)
    assert [states.get(number) for number in range(4)] == [None, 1, 1, 1]
    states.set(0, 2)  # older than the newest three: not kept
    states.set(2, 5)  # a later receipt of one still held
    assert [states.get(number) for number in range(4)] == [None, 1, 5, 1]
    states.set(5, 0)  # 4 passed over: its slot (number 1's) holds nothing
    assert [states.get(number) for number in range(7)] == [None, None, None, 1, None, 0, None]
    states.set(100, 3)  # far ahead: everything before is forgotten
    assert [states.get(number) for number in (3, 5, 98, 99, 100)] == [None, None, None, None, 3]
    assert len(states) == 1
    states.clear()
    assert states.get(100) is None and len(states) == 0


@pytest.mark.parametrize("hex_ids", [True, False])
def test_a_message_id_names_its_number_in_the_carriers_format_only(hex_ids: bool) -> None:
    number = 0x1000002A
    given = format_message_id(number, hex_ids)
    assert given == ("1000002a" if hex_ids else "268435498")
    assert message_number(given, hex_ids) == number
    for other in (" " + given, "+" + given, "0" + given, given.upper() + "A", "1_0", "-1", "", "٣", "x" * 70):
        assert message_number(other, hex_ids) is None, other


def test_query_sm_reports_the_last_receipts_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(carrier_module, "MAX_TRACKED_STATES", 3)
    carrier: Carrier = Simulator(default_config()).carriers["movistar"]
    numbers = range(1 << 28, (1 << 28) + 5)
    for number in numbers:
        carrier.message_states.set(number, 2)
    ids = [format_message_id(number, carrier.hex_ids) for number in numbers]
    assert [carrier.message_state(message_id) for message_id in ids] == [None, None, 2, 2, 2]
    assert carrier.message_state("nonsense") is None
    carrier.reset()
    assert carrier.message_state(ids[-1]) is None


def profile_with(receipts: ReceiptProfile) -> CarrierProfile:
    return CarrierProfile(name="c", country="ES", port=0, system_id="a", password="b", receipts=receipts)


def test_receipt_plan_fixed_values_only_when_nothing_is_drawn() -> None:
    plain = ReceiptPlan(profile_with(ReceiptProfile(delay=DelayDistribution(kind="fixed", seconds=2.5))))
    assert (plain.same_state, plain.fixed_delay) == ("DELIVRD", 2.5)
    mixed = ReceiptPlan(
        profile_with(
            ReceiptProfile(statuses={"DELIVRD": 1.0, "UNDELIV": 1.0}, delay=DelayDistribution(kind="uniform"))
        )
    )
    assert (mixed.same_state, mixed.fixed_delay) == (None, None)
    overridden = ReceiptPlan(profile_with(ReceiptProfile(overrides={"34699999999": "REJECTD"})))
    assert overridden.same_state is None and overridden.fixed_state == "DELIVRD"


async def test_load_generator_mos_reach_the_event_stream_only_while_someone_listens() -> None:
    profile = CarrierProfile(
        name="c", country="ES", port=0, system_id="a", password="b", short_codes=("997745",)
    )
    simulator = Simulator(SimulatorConfig(carriers=(profile,), control_port=None))
    carrier = simulator.carriers["c"]
    load = LoadGenerator(LoadSpec(carrier="c", subscribers=2, seed=1), carrier, 0.0, simulator.wheel.schedule)
    subscriber = load.subscribers[0]
    load._send(subscriber, "997745", "Hola")  # builds the message and keeps it as a template
    async with simulator.hub.subscribe() as events:
        load._send(subscriber, "997745", "Hola")  # from the template
        load._send(subscriber, "997745", "Buenas")
        published = [events.get_nowait() for _ in range(events.qsize())]
    load._send(subscriber, "997745", "Hola")
    assert [(event["type"], event["msisdn"], event["text"]) for event in published] == [
        ("mo", subscriber, "Hola"),
        ("mo", subscriber, "Buenas"),
    ]
    sent = [pdu for pdu, _, _ in carrier.outbox]
    assert [pdu.short_message for pdu in sent] == [b"Hola", b"Hola", b"Buenas", b"Hola"]
    assert all(pdu.source_addr == subscriber and pdu.destination_addr == "997745" for pdu in sent)
    assert load.sent == carrier.counters.mo_injected == 4


def test_timer_wheel_calls_on_first_only_when_it_was_empty() -> None:
    from simulator.timerwheel import TimerWheel

    wheel: TimerWheel[str] = TimerWheel(0.01, now=100.0)
    calls: list[int] = []
    wheel.on_first = lambda: calls.append(len(wheel))
    wheel.schedule(100.02, "a")
    wheel.schedule(100.05, "b")
    assert calls == [0]
    assert list(wheel.drain(101.0)) == ["a", "b"]
    wheel.schedule(101.5, "c")
    assert calls == [0, 0]
