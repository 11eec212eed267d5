"""CPU per MT on the daemon's hot paths, in µs per operation, without sockets or a database.

  mt_build_encode       one MT with default carrier quirks: pick the coding, split, build the
                        submit_sm, apply the quirks, encode (as gatewayd/mt.py build_submits does)
  mt_header_encode      the same with routing.quirks.mt_header: the quirk-adjusted header computed
                        once, each segment's submit_sm built from it directly
  resp_decode           one submit_sm_resp out of a Framer fed 64 PDUs per read
  resp_event            the same through the ESME's sans-IO Connection (matched to its request)
  receipt_decode_parse  one receipt deliver_sm out of a Framer, then parse_receipt + normalise_message_id
  receipt_event         the same through the ESME's Connection, answered with a deliver_sm_resp

Usage: .venv/bin/python bench/mt_path_speed.py [--count N] [--repeat R]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routing.quirks import CarrierQuirks, apply_mt, mt_header  # noqa: E402
from smpp.codec import Framer, encode  # noqa: E402
from smpp.concat import split_message  # noqa: E402
from smpp.connection import NEED_DATA, Connection, RequestReceived, ResponseReceived, Role  # noqa: E402
from smpp.constants import NPI, TON, ESMClass, MessageState, RegisteredDelivery  # noqa: E402
from smpp.pdu import (  # noqa: E402
    BindTransceiver,
    BindTransceiverResp,
    DeliverSM,
    DeliverSMResp,
    SubmitSM,
    SubmitSMResp,
)
from smpp.receipt import normalise_message_id, parse_receipt  # noqa: E402
from smpp.text import ConcatMode, choose_encoding  # noqa: E402
from smpp.tlv import Tag, TLVs  # noqa: E402

SOURCE = "997745"
DESTINATION = "+34600123456"
TEXT = "Hola Laura, tu pedido 18342 ha salido del almacén y llegara mañana entre las 9 y las 13h."
QUIRKS = CarrierQuirks(name="movistar")
PDUS_PER_READ = 64


def build_submits_as_gatewayd(
    text: str, source: str, destination: str, quirks: CarrierQuirks, reference: int
) -> list[SubmitSM]:
    """What gatewayd/mt.py build_submits does for one MT (receipt requested, UDH8 concatenation)."""
    data_coding = choose_encoding(text)
    segments = split_message(text, data_coding, mode=ConcatMode.UDH8, reference=reference % 0x100)
    source_ton = (
        TON.ALPHANUMERIC
        if not source.isdigit()
        else (TON.NETWORK_SPECIFIC if len(source) <= 8 else TON.INTERNATIONAL)
    )
    submits = [
        SubmitSM(
            source_addr_ton=source_ton,
            source_addr_npi=NPI.ISDN if source_ton == TON.INTERNATIONAL else NPI.UNKNOWN,
            source_addr=source,
            dest_addr_ton=TON.INTERNATIONAL,
            dest_addr_npi=NPI.ISDN,
            destination_addr=destination.removeprefix("+"),
            esm_class=segment.esm_class_flags,
            registered_delivery=RegisteredDelivery.FINAL,
            data_coding=data_coding,
            short_message=segment.short_message,
            tlvs=segment.tlvs,
        )
        for segment in segments
    ]
    return [apply_mt(quirks, pdu) for pdu in submits]


def build_submits_with_header(
    text: str, source: str, destination: str, quirks: CarrierQuirks, reference: int
) -> list[SubmitSM]:
    """The same submits through ``mt_header``: no plain SubmitSM built and then rewritten."""
    data_coding = choose_encoding(text)
    segments = split_message(text, data_coding, mode=ConcatMode.UDH8, reference=reference % 0x100)
    header = mt_header(quirks, source, destination, registered_delivery=RegisteredDelivery.FINAL)
    return [
        header.submit_sm(segment.short_message, data_coding, segment.esm_class_flags, segment.tlvs)
        for segment in segments
    ]


def receipt_pdu(number: int) -> DeliverSM:
    """A receipt as the simulator sends it: Appendix B text plus receipted_message_id and message_state."""
    message_id = str(number)
    text = (
        f"id:{message_id} sub:001 dlvrd:001 submit date:2406011200 done date:2406011200 stat:DELIVRD "
        "err:000 Text:Hola Laura, tu pedi"
    )
    return DeliverSM(
        source_addr_ton=TON.INTERNATIONAL,
        source_addr_npi=NPI.ISDN,
        source_addr="34600123456",
        dest_addr_ton=TON.NETWORK_SPECIFIC,
        destination_addr=SOURCE,
        esm_class=ESMClass.DELIVERY_RECEIPT,
        short_message=text.encode("ascii"),
        tlvs=TLVs(((Tag.RECEIPTED_MESSAGE_ID, message_id), (Tag.MESSAGE_STATE, int(MessageState.DELIVERED)))),
    )


def reads(pdus: list[bytes]) -> list[bytes]:
    """The PDUs joined into socket reads of PDUS_PER_READ each."""
    return [b"".join(pdus[start : start + PDUS_PER_READ]) for start in range(0, len(pdus), PDUS_PER_READ)]


def bound_esme() -> Connection:
    esme = Connection(Role.ESME)
    sequence, _ = esme.send_request(BindTransceiver(system_id="bench", password="bench"))
    esme.receive_data(encode(BindTransceiverResp(sequence_number=sequence, system_id="smsc")))
    esme.next_event()
    return esme


def best_us(count: int, repeat: int, run: Callable[[], float | None]) -> float:
    """µs per operation of ``run`` (which does ``count`` of them and may return its own timing), best run."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        measured = run()
        elapsed = measured if measured is not None else time.perf_counter() - started
        best = min(best, elapsed)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    count, repeat = args.count, args.repeat

    assert build_submits_as_gatewayd(TEXT, SOURCE, DESTINATION, QUIRKS, 1) == build_submits_with_header(
        TEXT, SOURCE, DESTINATION, QUIRKS, 1
    )

    def mt_build_encode() -> None:
        for index in range(count):
            for pdu in build_submits_as_gatewayd(TEXT, SOURCE, DESTINATION, QUIRKS, index):
                encode(pdu, index + 1)

    def mt_header_encode() -> None:
        for index in range(count):
            for pdu in build_submits_with_header(TEXT, SOURCE, DESTINATION, QUIRKS, index):
                encode(pdu, index + 1)

    resp_reads = reads(
        [encode(SubmitSMResp(sequence_number=n + 2, message_id=f"{n + 1:x}")) for n in range(count)]
    )
    receipt_reads = reads([encode(receipt_pdu(n + 1), n + 1) for n in range(count)])

    def resp_decode() -> None:
        framer = Framer()
        for data in resp_reads:
            framer.feed(data)
            while framer.next_pdu() is not None:
                pass

    def resp_event() -> float:
        esme = bound_esme()
        submit = SubmitSM(source_addr=SOURCE, destination_addr="34600123456", short_message=b"x")
        for _ in range(count):
            esme.send_request(submit)
        started = time.perf_counter()
        for data in resp_reads:
            esme.receive_data(data)
            while (event := esme.next_event()) is not NEED_DATA:
                assert type(event) is ResponseReceived
        return time.perf_counter() - started

    def receipt_decode_parse() -> None:
        framer = Framer()
        for data in receipt_reads:
            framer.feed(data)
            while (pdu := framer.next_pdu()) is not None:
                assert isinstance(pdu, DeliverSM)
                normalise_message_id(parse_receipt(pdu.short_message, pdu.tlvs).message_id)

    def receipt_event() -> float:
        esme = bound_esme()
        answer = DeliverSMResp()
        started = time.perf_counter()
        for data in receipt_reads:
            esme.receive_data(data)
            while (event := esme.next_event()) is not NEED_DATA:
                assert type(event) is RequestReceived
                pdu = event.pdu
                assert isinstance(pdu, DeliverSM)
                normalise_message_id(parse_receipt(pdu.short_message, pdu.tlvs).message_id)
                esme.send_response(answer, pdu.sequence_number)
        return time.perf_counter() - started

    figures = {
        "mt_build_encode_us": best_us(count, repeat, mt_build_encode),
        "mt_header_encode_us": best_us(count, repeat, mt_header_encode),
        "resp_decode_us": best_us(count, repeat, resp_decode),
        "resp_event_us": best_us(count, repeat, resp_event),
        "receipt_decode_parse_us": best_us(count, repeat, receipt_decode_parse),
        "receipt_event_us": best_us(count, repeat, receipt_event),
    }
    for name, value in figures.items():
        print(f"  {name:28} {value:8.2f} µs")
    print("RESULT " + " ".join(f"{name}={value:.2f}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
