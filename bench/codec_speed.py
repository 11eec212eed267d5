"""Throughput of smpp.codec on the gateway's hot path: a typical submit_sm and its submit_sm_resp.

Usage: python bench/codec_speed.py [--count N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from smpp.codec import Framer, decode, encode
from smpp.constants import DataCoding, RegisteredDelivery
from smpp.pdu import SubmitSM, SubmitSMResp
from smpp.tlv import Tag, TLVs

# A chat reply as the daemon sends it: alphanumeric sender, international MSISDN, receipt requested,
# one user_message_reference TLV.
TYPICAL_SUBMIT = SubmitSM(
    sequence_number=123_456,
    source_addr_ton=5,
    source_addr_npi=0,
    source_addr="eChat",
    dest_addr_ton=1,
    dest_addr_npi=1,
    destination_addr="447700900123",
    registered_delivery=RegisteredDelivery.FINAL,
    data_coding=DataCoding.DEFAULT,
    short_message=b"Hi Sam! Your table for two is booked for 8pm tonight. Reply STOP to opt out.",
    tlvs=TLVs([(Tag.USER_MESSAGE_REFERENCE, 4242)]),
)
TYPICAL_RESP = SubmitSMResp(sequence_number=123_456, message_id="5f0c2a9e-0001")


def rate(count: int, work: Callable[[], object]) -> float:
    """Calls per second of ``work``, best of three runs."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            work()
        best = min(best, time.perf_counter() - started)
    return count / best


def framer_rate(count: int) -> float:
    """submit_sm PDUs per second through Framer, fed in 64 KiB reads like a socket would; best of three."""
    stream = encode(TYPICAL_SUBMIT) * count
    chunks = [stream[start : start + 65_536] for start in range(0, len(stream), 65_536)]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        framer = Framer()
        received = 0
        for chunk in chunks:
            framer.feed(chunk)
            while framer.next_pdu() is not None:
                received += 1
        best = min(best, time.perf_counter() - started)
        assert received == count
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200_000)
    count = parser.parse_args().count

    submit_wire = encode(TYPICAL_SUBMIT)
    resp_wire = encode(TYPICAL_RESP)
    assert decode(submit_wire) == (TYPICAL_SUBMIT, len(submit_wire))

    figures = {
        "submit_sm_encode_per_s": rate(count, lambda: encode(TYPICAL_SUBMIT)),
        "submit_sm_decode_per_s": rate(count, lambda: decode(submit_wire)),
        "submit_sm_encode_decode_per_s": rate(count, lambda: decode(encode(TYPICAL_SUBMIT))),
        "submit_sm_resp_encode_decode_per_s": rate(count, lambda: decode(encode(TYPICAL_RESP))),
        "framer_submit_sm_per_s": framer_rate(count),
    }
    print(f"typical submit_sm: {len(submit_wire)} octets; submit_sm_resp: {len(resp_wire)} octets")
    for name, value in figures.items():
        print(f"  {name:36} {value:>12,.0f}")
    print("RESULT " + " ".join(f"{name}={value:.0f}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
