"""Fuzz smpp.codec: mutate valid encodings of every PDU type and feed them to decode() and Framer.

Anything other than RemoteProtocolError coming out of the decoder is a crash: it is printed and the
script exits with status 1. Usage: python bench/fuzz_codec.py [--iterations N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable

from smpp.codec import MAX_SHORT_MESSAGE, Framer, decode, encode
from smpp.constants import MAX_PDU_SIZE
from smpp.errors import RemoteProtocolError
from smpp.pdu import (
    PDU,
    PDU_CLASSES,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSM,
    DataSM,
    DataSMResp,
    DeliverSM,
    DeliverSMResp,
    DistributionList,
    Outbind,
    QuerySM,
    QuerySMResp,
    ReplaceSM,
    SMEAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSM,
    SubmitSMResp,
    UnsuccessSME,
)
from smpp.tlv import KINDS, Kind, TLVs, TLVValue

POOL_SIZE = 2_000
MAX_CRASH_REPORTS = 5


class PDUFactory:
    """Random but valid PDUs of every class, from a seeded ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def text(self, size: int) -> str:
        length = self.rng.choice((0, 1, self.rng.randint(0, size - 1), size - 1))
        return "".join(chr(self.rng.randint(1, 255)) for _ in range(length))

    def octet(self) -> int:
        return self.rng.choice((0, 1, self.rng.randint(0, 255)))

    def tlvs(self) -> TLVs:
        items: list[tuple[int, TLVValue]] = []
        for _ in range(self.rng.choice((0, 0, 1, 2, 4))):
            tag = self.rng.choice((*KINDS, 0x1401, 0x3FFF, self.rng.randint(0, 0xFFFF)))
            kind = KINDS.get(tag, Kind.OCTETS)
            value: TLVValue
            if kind is Kind.CSTRING:
                value = self.text(65)
            elif kind is Kind.OCTETS:
                value = self.rng.randbytes(self.rng.choice((0, 1, 3, 40, 300)))
            else:
                value = self.rng.randint(0, (1 << (8 * kind.value)) - 1)
            items.append((tag, value))
        return TLVs(items)

    def short_message(self) -> bytes:
        return self.rng.randbytes(self.rng.choice((0, 1, 20, 160, MAX_SHORT_MESSAGE)))

    def header(self) -> dict[str, int]:
        return {
            "sequence_number": self.rng.randint(0, 0x7FFFFFFF),
            "command_status": self.rng.choice((0, 0, 0, 0x58, 0x400, self.rng.randint(0, 0xFFFFFFFF))),
        }

    def build(self, cls: type[PDU]) -> PDU:
        make = self.fields.get(cls)
        return cls(**self.header(), **(make() if make else {}))  # type: ignore[arg-type]

    @property
    def fields(self) -> dict[type[PDU], Callable[[], dict[str, object]]]:
        bind = self.bind_fields
        short = self.short_message_fields
        return {
            BindTransmitter: bind,
            BindReceiver: bind,
            BindTransceiver: bind,
            BindTransmitterResp: self.bind_resp_fields,
            BindReceiverResp: self.bind_resp_fields,
            BindTransceiverResp: self.bind_resp_fields,
            Outbind: lambda: {"system_id": self.text(16), "password": self.text(9)},
            SubmitSM: short,
            DeliverSM: short,
            SubmitSMResp: lambda: {"message_id": self.text(65)},
            DeliverSMResp: lambda: {"message_id": self.text(65)},
            SubmitMulti: self.submit_multi_fields,
            SubmitMultiResp: lambda: {
                "message_id": self.text(65),
                "unsuccess_smes": tuple(
                    UnsuccessSME(self.octet(), self.octet(), self.text(21), self.rng.randint(0, 0xFFFFFFFF))
                    for _ in range(self.rng.randint(0, 4))
                ),
            },
            DataSM: lambda: {
                "service_type": self.text(6),
                "source_addr_ton": self.octet(),
                "source_addr_npi": self.octet(),
                "source_addr": self.text(65),
                "dest_addr_ton": self.octet(),
                "dest_addr_npi": self.octet(),
                "destination_addr": self.text(65),
                "esm_class": self.octet(),
                "registered_delivery": self.octet(),
                "data_coding": self.octet(),
                "tlvs": self.tlvs(),
            },
            DataSMResp: lambda: {"message_id": self.text(65), "tlvs": self.tlvs()},
            QuerySM: lambda: {
                "message_id": self.text(65),
                "source_addr_ton": self.octet(),
                "source_addr_npi": self.octet(),
                "source_addr": self.text(21),
            },
            QuerySMResp: lambda: {
                "message_id": self.text(65),
                "final_date": self.text(17),
                "message_state": self.octet(),
                "error_code": self.octet(),
            },
            CancelSM: lambda: {
                "service_type": self.text(6),
                "message_id": self.text(65),
                "source_addr": self.text(21),
                "destination_addr": self.text(21),
                "dest_addr_ton": self.octet(),
            },
            ReplaceSM: lambda: {
                "message_id": self.text(65),
                "source_addr": self.text(21),
                "schedule_delivery_time": self.text(17),
                "validity_period": self.text(17),
                "registered_delivery": self.octet(),
                "short_message": self.short_message(),
            },
            AlertNotification: lambda: {
                "source_addr": self.text(65),
                "esme_addr": self.text(65),
                "esme_addr_ton": self.octet(),
                "tlvs": self.tlvs(),
            },
        }

    def bind_fields(self) -> dict[str, object]:
        return {
            "system_id": self.text(16),
            "password": self.text(9),
            "system_type": self.text(13),
            "interface_version": self.octet(),
            "addr_ton": self.octet(),
            "addr_npi": self.octet(),
            "address_range": self.text(41),
        }

    def bind_resp_fields(self) -> dict[str, object]:
        return {"system_id": self.text(16), "tlvs": self.tlvs()}

    def short_message_fields(self) -> dict[str, object]:
        return {
            "service_type": self.text(6),
            "source_addr_ton": self.octet(),
            "source_addr_npi": self.octet(),
            "source_addr": self.text(21),
            "dest_addr_ton": self.octet(),
            "dest_addr_npi": self.octet(),
            "destination_addr": self.text(21),
            "esm_class": self.octet(),
            "protocol_id": self.octet(),
            "priority_flag": self.octet(),
            "schedule_delivery_time": self.text(17),
            "validity_period": self.text(17),
            "registered_delivery": self.octet(),
            "replace_if_present_flag": self.octet(),
            "data_coding": self.octet(),
            "sm_default_msg_id": self.octet(),
            "short_message": self.short_message(),
            "tlvs": self.tlvs(),
        }

    def submit_multi_fields(self) -> dict[str, object]:
        fields = self.short_message_fields()
        for name in ("dest_addr_ton", "dest_addr_npi", "destination_addr"):
            del fields[name]
        fields["dest_addresses"] = tuple(
            SMEAddress(self.octet(), self.octet(), self.text(21))
            if self.rng.random() < 0.7
            else DistributionList(self.text(21))
            for _ in range(self.rng.randint(0, 5))
        )
        return fields


class Mutator:
    def __init__(self, rng: random.Random, pool: list[bytes]) -> None:
        self.rng = rng
        self.pool = pool
        self.operations: list[Callable[[bytearray], None]] = [
            self.flip_bit,
            self.insert_byte,
            self.delete_byte,
            self.set_byte,
            self.truncate,
            self.tweak_length,
            self.splice,
            self.duplicate_range,
        ]

    def mutate(self, data: bytes) -> tuple[bytes, str]:
        buffer = bytearray(data)
        names = []
        for _ in range(self.rng.choice((1, 1, 1, 2, 3))):
            operation = self.rng.choice(self.operations)
            operation(buffer)
            names.append(operation.__name__)
        return bytes(buffer), "+".join(names)

    def position(self, buffer: bytearray) -> int:
        # Bias towards the header, where a single change matters most.
        if buffer and self.rng.random() < 0.3:
            return self.rng.randrange(min(16, len(buffer)))
        return self.rng.randint(0, len(buffer))

    def flip_bit(self, buffer: bytearray) -> None:
        if buffer:
            buffer[self.rng.randrange(len(buffer))] ^= 1 << self.rng.randrange(8)

    def insert_byte(self, buffer: bytearray) -> None:
        buffer.insert(self.position(buffer), self.rng.choice((0, 0xFF, self.rng.randrange(256))))

    def delete_byte(self, buffer: bytearray) -> None:
        if buffer:
            del buffer[min(self.position(buffer), len(buffer) - 1)]

    def set_byte(self, buffer: bytearray) -> None:
        if buffer:
            value = self.rng.choice((0, 0xFF, self.rng.randrange(256)))
            buffer[min(self.position(buffer), len(buffer) - 1)] = value

    def truncate(self, buffer: bytearray) -> None:
        del buffer[self.rng.randint(0, len(buffer)) :]

    def tweak_length(self, buffer: bytearray) -> None:
        if len(buffer) >= 4:
            length = int.from_bytes(buffer[:4], "big")
            length = self.rng.choice(
                (
                    length + self.rng.randint(-8, 8),
                    0,
                    15,
                    16,
                    MAX_PDU_SIZE,
                    MAX_PDU_SIZE + 1,
                    0xFFFFFFFF,
                    len(buffer),
                )
            )
            buffer[:4] = (length % (1 << 32)).to_bytes(4, "big")

    def splice(self, buffer: bytearray) -> None:
        other = self.rng.choice(self.pool)
        cut = self.rng.randint(0, len(buffer))
        buffer[cut:] = other[self.rng.randint(0, len(other)) :]

    def duplicate_range(self, buffer: bytearray) -> None:
        if buffer:
            start = self.rng.randrange(len(buffer))
            stop = self.rng.randint(start, len(buffer))
            buffer[stop:stop] = buffer[start:stop]


def decode_once(data: bytes, chunk_sizes: list[int], outcomes: Counter[str], statuses: Counter[int]) -> None:
    try:
        result = decode(data)
    except RemoteProtocolError as error:
        outcomes["errors_ok"] += 1
        statuses[error.status] += 1
    else:
        outcomes["decode_none" if result is None else "decoded"] += 1


def frame(data: bytes, chunk_sizes: list[int], outcomes: Counter[str], statuses: Counter[int]) -> None:
    """Feed ``data`` to a Framer in chunks of the given sizes (cycled), draining after each chunk."""
    framer = Framer()
    position = 0
    chunk = 0
    while position < len(data) and not framer.broken:
        step = chunk_sizes[chunk % len(chunk_sizes)]
        chunk += 1
        framer.feed(data[position : position + step])
        position += step
        while True:
            try:
                pdu = framer.next_pdu()
            except RemoteProtocolError as error:
                outcomes["framer_errors_ok"] += 1
                statuses[error.status] += 1
                if framer.broken:
                    outcomes["framer_broken"] += 1
                    break
                continue
            if pdu is None:
                break
            outcomes["framer_pdus"] += 1


def run(iterations: int, seed: int) -> int:
    rng = random.Random(seed)
    factory = PDUFactory(rng)
    classes = list(PDU_CLASSES.values())
    pdus = [factory.build(classes[index % len(classes)]) for index in range(POOL_SIZE)]
    pool = [encode(pdu) for pdu in pdus]
    for original, wire in zip(pdus, pool, strict=True):  # the pool itself must round-trip
        assert decode(wire) == (original, len(wire)), original
    mutator = Mutator(rng, pool)

    outcomes: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    crashes = 0
    started = time.perf_counter()
    for iteration in range(iterations):
        data, how = mutator.mutate(rng.choice(pool))
        if rng.random() < 0.2:  # a valid PDU behind the mutated one: the framer must find it after a skip
            data += rng.choice(pool)
        chunk_sizes = [rng.choice((1, 7, 64, len(data) or 1)) for _ in range(4)]
        for check in (decode_once, frame):
            try:
                check(data, chunk_sizes, outcomes, statuses)
            except Exception:  # anything but RemoteProtocolError escaping is a bug in the codec
                crashes += 1
                if crashes <= MAX_CRASH_REPORTS:
                    print(
                        f"CRASH in {check.__name__} at iteration {iteration} ({how}): data={data.hex()}",
                        file=sys.stderr,
                    )
                    traceback.print_exc()
    seconds = time.perf_counter() - started

    print(
        f"seed {seed}, {iterations:,} iterations over {len(pool):,} valid encodings of "
        f"{len(classes)} PDU types in {seconds:.1f} s ({iterations / seconds:,.0f}/s)"
    )
    for name, count in sorted(outcomes.items()):
        print(f"  {name:18} {count:>12,}")
    print(
        "  RemoteProtocolError statuses:",
        ", ".join(f"0x{status:X}={count:,}" for status, count in statuses.most_common()),
    )
    print(
        f"RESULT iterations={iterations} errors_ok={outcomes['errors_ok']} decoded={outcomes['decoded']} "
        f"crashes={crashes} seconds={seconds:.1f}"
    )
    return 1 if crashes else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20_240_601)
    arguments = parser.parse_args()
    sys.exit(run(arguments.iterations, arguments.seed))


if __name__ == "__main__":
    main()
