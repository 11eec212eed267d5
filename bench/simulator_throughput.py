"""Simulator throughput: submit_sm/s without and with receipts, and MO deliver_sm/s pushed to a client.

The simulator runs in its own process; this process drives it with a bare reference ESME (plain asyncio
and struct, window 100) so the client is never the bottleneck. Targets on a 2-core machine:
>= 50,000 submit_sm/s without receipts, >= 20,000 with a receipt each, >= 30,000 MO deliver_sm/s.

Each run also prints the simulator process's CPU time per message (``time.process_time`` read in that
process before and after): for the receipt run that is one submit_sm in, its resp out, the receipt
deliver_sm out (delay 0) and its resp in; for the MO runs one deliver_sm out and its resp in, the MO
made by the load generator (``mo_deliver``) or by ``Simulator.inject_mo`` as the daemon benchmark does
(``mo_inject``). Last, the CPU the simulator uses per second while nothing happens (``idle``).

    .venv/bin/python bench/simulator_throughput.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HEADER = struct.Struct(">IIII")
BIND_TRANSCEIVER = 0x00000009
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
ENQUIRE_LINK = 0x00000015
WINDOW = 100
TARGETS = {"submit_no_receipt": 50_000, "submit_with_receipt": 20_000, "mo_deliver": 30_000}


def submit_body(registered_delivery: int) -> bytes:
    return (
        b"\x00"  # service_type
        + b"\x00\x00"
        + b"997745\x00"  # source ton/npi/addr
        + b"\x01\x01"
        + b"34600111222\x00"  # dest ton/npi/addr
        + bytes([0, 0, 0])
        + b"\x00"
        + b"\x00"  # esm_class, protocol_id, priority, schedule, validity
        + bytes([registered_delivery, 0, 0, 0])  # registered_delivery, replace, data_coding, default id
        + bytes([len(b"Hola, bench")])
        + b"Hola, bench"
    )


class ReferenceESME(asyncio.Protocol):
    """Binds as transceiver, keeps ``WINDOW`` submits outstanding, answers every deliver_sm."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sequence = 1
        self.bound = asyncio.get_running_loop().create_future()
        self.body = b""
        self.to_send = 0
        self.in_flight = 0
        self.responses = 0
        self.delivers = 0
        self.done: asyncio.Future[None] | None = None
        self.expected_delivers = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        body = b"echat\x00secret1\x00\x00" + bytes([0x34, 0, 0]) + b"\x00"
        transport.write(HEADER.pack(16 + len(body), BIND_TRANSCEIVER, 0, self._next()) + body)

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def start_submits(self, count: int, registered_delivery: int) -> asyncio.Future[None]:
        self.body = submit_body(registered_delivery)
        self.to_send = count
        self.responses = 0
        self.delivers = 0
        self.expected_delivers = count if registered_delivery else 0
        self.done = asyncio.get_running_loop().create_future()
        self._fill()
        return self.done

    def expect_delivers(self, count: int) -> asyncio.Future[None]:
        self.delivers = 0
        self.expected_delivers = count
        self.to_send = 0
        self.responses = 0
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def _fill(self) -> None:
        assert self.transport is not None
        count = min(WINDOW - self.in_flight, self.to_send)
        if count <= 0:
            return
        length = 16 + len(self.body)
        chunks = []
        for _ in range(count):
            chunks.append(HEADER.pack(length, SUBMIT_SM, 0, self._next()))
            chunks.append(self.body)
        self.to_send -= count
        self.in_flight += count
        self.transport.write(b"".join(chunks))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        position, end = 0, len(buffer)
        answers = []
        while end - position >= 16:
            length, command_id, _status, sequence = HEADER.unpack_from(buffer, position)
            if end - position < length:
                break
            if command_id == SUBMIT_SM_RESP:
                self.responses += 1
                self.in_flight -= 1
            elif command_id == DELIVER_SM:
                self.delivers += 1
                answers.append(HEADER.pack(17, DELIVER_SM_RESP, 0, sequence) + b"\x00")
            elif command_id == ENQUIRE_LINK:
                answers.append(HEADER.pack(16, 0x80000015, 0, sequence))
            elif command_id == 0x80000009:
                self.bound.set_result(None)
            position += length
        del buffer[:position]
        assert self.transport is not None
        if answers:
            self.transport.write(b"".join(answers))
        if self.to_send:
            self._fill()
        done = self.done
        if (
            done is not None
            and not done.done()
            and self.to_send == 0
            and self.in_flight == 0
            and self.delivers >= self.expected_delivers
        ):
            done.set_result(None)


def serve() -> None:
    """The simulator side (its own process): one carrier, API on an ephemeral port."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from simulator import CarrierProfile, DelayDistribution, ReceiptProfile, Simulator, SimulatorConfig

    async def run() -> None:
        profile = CarrierProfile(
            name="bench",
            country="ES",
            port=0,
            system_id="echat",
            password="secret1",
            short_codes=("997745",),
            deliver_window=WINDOW,
            queue_size=1_000_000,
            receipts=ReceiptProfile(delay=DelayDistribution(kind="fixed", seconds=0.0)),
        )
        config = SimulatorConfig(carriers=(profile,), control_port=0, mt_store_size=100_000)
        async with Simulator(config) as simulator:
            print(json.dumps({"smpp": simulator.port("bench"), "api": simulator.control_port}), flush=True)
            loop = asyncio.get_running_loop()
            # Every line asks for this process's CPU seconds so far, "inject N" after injecting N MOs
            # (distinct senders and texts, as bench/gatewayd_throughput.py does); end of input stops.
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                command = line.split()
                if command[:1] == ["inject"]:
                    for index in range(int(command[1])):
                        simulator.inject_mo(
                            "bench", f"+3460{index % 100_000:07d}", "997745", f"bench mo {index} hola que tal"
                        )
                print(json.dumps(time.process_time()), flush=True)

    asyncio.run(run())


def api(port: int, method: str, path: str, body: object | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class SimulatorCPU:
    """Reads the simulator process's CPU seconds through its stdin/stdout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def _ask(self, command: str) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return float(json.loads(self.process.stdout.readline()))

    async def read(self) -> float:
        return await asyncio.get_running_loop().run_in_executor(None, self._ask, "cpu")

    async def inject(self, count: int) -> None:
        """``count`` MOs through ``Simulator.inject_mo``, in the simulator process."""
        await asyncio.get_running_loop().run_in_executor(None, self._ask, f"inject {count}")


async def measure(smpp_port: int, api_port: int, seconds: float, cpu: SimulatorCPU) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(ReferenceESME, "127.0.0.1", smpp_port)
    await asyncio.wait_for(client.bound, 10)
    results: dict[str, float] = {}

    # Warm up (imports, caches), then size each run to last about ``seconds``.
    await client.start_submits(20_000, 0)
    for key, registered in (("submit_no_receipt", 0), ("submit_with_receipt", 1)):
        count = int(TARGETS[key] * seconds * 1.5)
        cpu_before = await cpu.read()
        started = time.perf_counter()
        await asyncio.wait_for(client.start_submits(count, registered), 120)
        elapsed = time.perf_counter() - started
        results[key] = count / elapsed
        results[f"{key}_cpu_us"] = (await cpu.read() - cpu_before) / count * 1e6
        print(
            f"{key}: {count} submit_sm{' + receipts' if registered else ''} in {elapsed:.2f} s "
            f"= {results[key]:,.0f}/s, simulator CPU {results[f'{key}_cpu_us']:.1f} us each",
            flush=True,
        )

    api(api_port, "POST", "/api/reset")
    count = int(TARGETS["mo_deliver"] * seconds * 1.5)
    rate = count / seconds
    done = client.expect_delivers(count)
    cpu_before = await cpu.read()
    started = time.perf_counter()
    await loop.run_in_executor(
        None,
        api,
        api_port,
        "POST",
        "/api/load",
        {"carrier": "bench", "subscribers": 1000, "rate": rate, "reply_probability": 0},
    )
    try:
        await asyncio.wait_for(asyncio.shield(done), seconds * 4)
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - started
    cpu_used = await cpu.read() - cpu_before
    await loop.run_in_executor(None, api, api_port, "DELETE", "/api/load")
    results["mo_deliver"] = client.delivers / elapsed
    results["mo_deliver_cpu_us"] = cpu_used / max(1, client.delivers) * 1e6
    print(
        f"mo_deliver: {client.delivers} deliver_sm in {elapsed:.2f} s (offered {rate:,.0f}/s) "
        f"= {results['mo_deliver']:,.0f}/s, simulator CPU {results['mo_deliver_cpu_us']:.1f} us each",
        flush=True,
    )

    count = int(TARGETS["mo_deliver"] * seconds)
    done = client.expect_delivers(count)
    cpu_before = await cpu.read()
    started = time.perf_counter()
    await cpu.inject(count)
    await asyncio.wait_for(done, 120)
    elapsed = time.perf_counter() - started
    results["mo_inject"] = count / elapsed
    results["mo_inject_cpu_us"] = (await cpu.read() - cpu_before) / count * 1e6
    print(
        f"mo_inject: {count} inject_mo + deliver_sm in {elapsed:.2f} s = {results['mo_inject']:,.0f}/s, "
        f"simulator CPU {results['mo_inject_cpu_us']:.1f} us each",
        flush=True,
    )

    cpu_before = await cpu.read()
    await asyncio.sleep(2.0)
    results["idle_cpu_ms_per_s"] = (await cpu.read() - cpu_before) / 2.0 * 1e3
    print(f"idle: simulator CPU {results['idle_cpu_ms_per_s']:.1f} ms per second", flush=True)
    assert client.transport is not None
    client.transport.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="target length of each run")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline())
        results = asyncio.run(measure(ports["smpp"], ports["api"], args.seconds, SimulatorCPU(process)))
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)
    ok = all(results[key] >= target for key, target in TARGETS.items())
    figures = " ".join(
        f"{key}={value:.1f}" if key.endswith(("_cpu_us", "_per_s")) else f"{key}={value:.0f}"
        for key, value in results.items()
    )
    print(f"RESULT {figures} ok={'yes' if ok else 'no'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
