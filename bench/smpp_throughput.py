"""SMPP throughput: our ESME session -> our SMSC session, each in its own process, over 127.0.0.1.

Prints submit_sm/s end to end (window 100) for:
  ours        ESMESession.submit_many  -> SMSCServer        (both of our sessions)
  bare->ours  bare asyncio-streams client (struct, 100 in flight, no session logic) -> SMSCServer
  bare->sink  the same bare client -> a bare struct sink (the ceiling of plain asyncio on this machine)
codec encode+decode round trips per second, and receipts (deliver_sm) pushed by SMSCServer into an
ESMESession whose handler answers after a batch "commit" (like the daemon's group commit), with the
ESME process's CPU per receipt:
  receipts task    a coroutine handler (one task per deliver_sm)
  receipts future  a plain handler returning a future (no task)
Ends with one ``RESULT`` line. ``reference`` is the bare
client against our SMSC (same server, so the ratio prices our ESME session against no session at
all); the bare sink shows what plain asyncio and the loopback allow without any SMPP decoding.

    .venv/bin/python bench/smpp_throughput.py [--messages 200000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import struct
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smpp.aio import BindRequest, ESMEConfig, ESMESession, Outcome, SMSCServer, SMSCSession  # noqa: E402
from smpp.codec import decode, encode  # noqa: E402
from smpp.constants import NPI, TON, CommandID, ESMClass, MessageState  # noqa: E402
from smpp.pdu import PDU, DataSM, DeliverSM, SubmitSM, SubmitSMResp  # noqa: E402
from smpp.tlv import Tag, TLVs  # noqa: E402

WINDOW = 100
HEADER = struct.Struct(">IIII")


def _submit(index: int) -> SubmitSM:
    return SubmitSM(
        source_addr="4242",
        destination_addr=f"3361{index % 10_000_000:08d}",
        short_message=b"Hello from the throughput bench!",
        registered_delivery=1,
    )


# --- servers (each in a child process) ------------------------------------------------------------


class _AcceptAll:
    def __init__(self) -> None:
        self.count = 0

    def authenticate(self, session: SMSCSession, bind: BindRequest) -> int:
        return 0

    def on_request(self, session: SMSCSession, pdu: PDU) -> PDU | None:
        self.count += 1
        return SubmitSMResp(message_id=f"{self.count:x}")

    def on_bound(self, session: SMSCSession) -> None:
        pass

    def on_closed(self, session: SMSCSession) -> None:
        pass


async def _serve_ours(pipe: Pipe) -> None:
    async with SMSCServer(_AcceptAll(), deliver_window=WINDOW) as server:
        pipe.send(server.port)
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)


class _SinkProtocol(asyncio.Protocol):
    """Answers every request from a header alone: a *_resp with a fixed body (message_id "1")."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        out = []
        offset = 0
        while len(buffer) - offset >= 16:
            length, command_id, _, sequence = HEADER.unpack_from(buffer, offset)
            if len(buffer) - offset < length:
                break
            offset += length
            body = b"1\0" if command_id == CommandID.SUBMIT_SM else b"sink\0" if command_id < 0x10 else b""
            if command_id == CommandID.UNBIND:
                body = b""
            out.append(HEADER.pack(16 + len(body), command_id | 0x80000000, 0, sequence) + body)
        del buffer[:offset]
        if out:
            self.transport.write(b"".join(out))


async def _serve_sink(pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_SinkProtocol, "127.0.0.1", 0)
    pipe.send(server.sockets[0].getsockname()[1])
    await loop.run_in_executor(None, pipe.recv)
    server.close()


RECEIPT = DeliverSM(
    source_addr_ton=TON.INTERNATIONAL,
    source_addr_npi=NPI.ISDN,
    source_addr="34600123456",
    dest_addr_ton=TON.NETWORK_SPECIFIC,
    destination_addr="4242",
    esm_class=ESMClass.DELIVERY_RECEIPT,
    short_message=b"id:1234 sub:001 dlvrd:001 submit date:2406011200 done date:2406011200 stat:DELIVRD "
    b"err:000 Text:Hello from the throug",
    tlvs=TLVs(((Tag.RECEIPTED_MESSAGE_ID, "1234"), (Tag.MESSAGE_STATE, int(MessageState.DELIVERED)))),
)


class _PushReceipts(_AcceptAll):
    """Pushes ``total`` receipts to the first ESME that binds, as fast as the deliver window allows."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total
        self.sent = 0
        self.session: SMSCSession | None = None

    def on_bound(self, session: SMSCSession) -> None:
        self.session = session
        self.push(None)

    def push(self, outcome: Outcome | None) -> None:
        session = self.session
        while self.sent < self.total and session is not None and session.deliver_nowait(RECEIPT, self.push):
            self.sent += 1


async def _serve_receipts(pipe: Pipe, total: int) -> None:
    async with SMSCServer(_PushReceipts(total), deliver_window=WINDOW) as server:
        pipe.send(server.port)
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)


def _server_process(kind: str, pipe: Pipe, messages: int = 0) -> None:
    if kind == "receipts":
        asyncio.run(_serve_receipts(pipe, messages))
    else:
        asyncio.run(_serve_ours(pipe) if kind == "ours" else _serve_sink(pipe))


# --- clients (in this process) ----------------------------------------------------------------------


#: ESME process CPU µs per submit_sm of each "ours" run (the SMSC runs in another process).
_ESME_CPU: list[float] = []


async def _ours(port: int, messages: int) -> float:
    config = ESMEConfig(
        host="127.0.0.1", port=port, system_id="bench", password="bench", window=WINDOW, response_timeout=60.0
    )
    async with ESMESession(config) as session:
        started, started_cpu = time.perf_counter(), time.process_time()
        # Built as they go, like an outbox reading rows: submit_many reads the generator lazily.
        outcomes = await session.submit_many(_submit(index) for index in range(messages))
        elapsed = time.perf_counter() - started
        _ESME_CPU.append((time.process_time() - started_cpu) / messages * 1e6)
    failed = sum(1 for outcome in outcomes if isinstance(outcome, Exception))
    if failed:
        raise SystemExit(f"{failed} submissions failed")
    return messages / elapsed


async def _bare(port: int, messages: int) -> float:
    """Plain asyncio streams and struct: bind, keep 100 submit_sm in flight, unbind. No session logic."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    bind_body = b"bench\0bench\0\0\x34\0\0\0"
    writer.write(HEADER.pack(16 + len(bind_body), CommandID.BIND_TRANSCEIVER, 0, 1) + bind_body)
    await reader.readexactly(HEADER.unpack(await reader.readexactly(16))[0] - 16)
    body = encode(_submit(0))[16:]
    submit_header = HEADER.pack(16 + len(body), CommandID.SUBMIT_SM, 0, 0)[:12]
    sent = answered = 0
    started = time.perf_counter()
    batch = []
    while sent < min(WINDOW, messages):
        sent += 1
        batch.append(submit_header + sent.to_bytes(4, "big") + body)
    writer.write(b"".join(batch))
    buffer = b""
    while answered < messages:
        chunk = await reader.read(65536)
        if not chunk:
            raise SystemExit("bare client: connection closed")
        buffer += chunk
        offset = 0
        batch = []
        while len(buffer) - offset >= 16:
            length = HEADER.unpack_from(buffer, offset)[0]
            if len(buffer) - offset < length:
                break
            offset += length
            answered += 1
            if sent < messages:
                sent += 1
                batch.append(submit_header + sent.to_bytes(4, "big") + body)
        buffer = buffer[offset:]
        if batch:
            writer.write(b"".join(batch))
    elapsed = time.perf_counter() - started
    writer.write(HEADER.pack(16, CommandID.UNBIND, 0, sent + 1))
    await reader.read(65536)
    writer.close()
    return messages / elapsed


class _BatchCommit:
    """Answers handlers in batches, once per loop turn, as a group commit would."""

    def __init__(self, total: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.waiting: list[asyncio.Future[int]] = []
        self.scheduled = False
        self.total = total
        self.received = 0
        self.started = (0.0, 0.0)
        self.finished: asyncio.Future[tuple[float, float]] = self.loop.create_future()

    def take(self) -> asyncio.Future[int]:
        if self.received == 0:
            self.started = (time.perf_counter(), time.process_time())
        self.received += 1
        future: asyncio.Future[int] = self.loop.create_future()
        self.waiting.append(future)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.commit)
        return future

    def commit(self) -> None:
        self.scheduled = False
        waiting, self.waiting = self.waiting, []
        for future in waiting:
            future.set_result(0)
        if self.received >= self.total and not self.finished.done():
            self.finished.set_result((time.perf_counter(), time.process_time()))


async def _receipts(port: int, messages: int, handler_kind: str) -> tuple[float, float]:
    """(receipts/s, ESME CPU µs per receipt) with a coroutine ("task") or future-returning handler."""
    commit = _BatchCommit(messages)

    async def coroutine_handler(pdu: DeliverSM | DataSM) -> int:
        return await commit.take()

    def future_handler(pdu: DeliverSM | DataSM) -> asyncio.Future[int]:
        return commit.take()

    config = ESMEConfig(
        host="127.0.0.1", port=port, system_id="bench", password="bench", window=WINDOW, response_timeout=60.0
    )
    handler = coroutine_handler if handler_kind == "task" else future_handler
    async with ESMESession(config, handler):
        ended_at, ended_cpu = await commit.finished
        await asyncio.sleep(0.05)  # let the last answers leave before unbinding
    started_at, started_cpu = commit.started
    return messages / (ended_at - started_at), (ended_cpu - started_cpu) / messages * 1e6


def _with_receipts_server(messages: int, handler_kind: str) -> tuple[float, float]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_server_process, args=("receipts", child, messages), daemon=True)
    process.start()
    try:
        return asyncio.run(_receipts(parent.recv(), messages, handler_kind))
    finally:
        parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


def _codec_roundtrips(seconds: float = 1.0) -> float:
    pdu = _submit(1)
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for sequence in range(1, 1001):
            decode(encode(pdu, sequence))
        count += 1000
    return count / (time.perf_counter() - started)


def _with_server(kind: str, client: str, messages: int) -> float:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_server_process, args=(kind, child), daemon=True)
    process.start()
    try:
        port = parent.recv()
        coroutine = _ours(port, messages) if client == "ours" else _bare(port, messages)
        return asyncio.run(coroutine)
    finally:
        parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per figure; the best one counts "
        "(other work on a shared machine only ever makes a run slower)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the ESME side of the 'ours' run")
    parser.add_argument("--only-receipts", action="store_true", help="only the receipts figures")
    args = parser.parse_args()
    if args.profile:
        import cProfile
        import pstats

        cProfile.runctx(
            "_with_server('ours', 'ours', args.messages)", globals(), {"args": args}, "/tmp/smpp_esme.prof"
        )
        pstats.Stats("/tmp/smpp_esme.prof").sort_stats("tottime").print_stats(25)
        return

    def best(label: str, run: Callable[[], float]) -> float:
        figures = [run() for _ in range(args.repeat)]
        print(f"{label}: {max(figures):>10,.0f}/s   (runs: {', '.join(f'{f:,.0f}' for f in figures)})")
        return max(figures)

    def best_receipts(label: str, handler_kind: str) -> tuple[float, float]:
        figures = [_with_receipts_server(args.messages, handler_kind) for _ in range(args.repeat)]
        rate, cpu = max(figure[0] for figure in figures), min(figure[1] for figure in figures)
        print(
            f"{label}: {rate:>10,.0f}/s   ESME CPU {cpu:.1f} µs/receipt   (runs: "
            f"{', '.join(f'{f[0]:,.0f}/s {f[1]:.1f} µs' for f in figures)})"
        )
        return rate, cpu

    count = args.messages
    receipts_task, receipts_task_cpu = best_receipts("receipts task   SMSCServer -> ESME", "task")
    receipts_future, receipts_future_cpu = best_receipts("receipts future SMSCServer -> ESME", "future")
    receipts = (
        f"receipts_task_per_s={receipts_task:.0f} receipts_task_esme_cpu_us={receipts_task_cpu:.1f} "
        f"receipts_future_per_s={receipts_future:.0f} "
        f"receipts_future_esme_cpu_us={receipts_future_cpu:.1f}"
    )
    if args.only_receipts:
        print(f"RESULT {receipts}")
        return
    codec = best("codec encode+decode submit_sm        ", _codec_roundtrips)
    ours = best("ours       ESMESession -> SMSCServer ", lambda: _with_server("ours", "ours", count))
    ours_cpu = min(_ESME_CPU)
    print(f"ours       ESME CPU per submit_sm       : {ours_cpu:.1f} µs")
    reference = best("bare->ours bare client -> SMSCServer ", lambda: _with_server("ours", "bare", count))
    sink = best("bare->sink bare client -> bare sink  ", lambda: _with_server("sink", "bare", count))
    print(
        f"RESULT ours_submit_per_s={ours:.0f} ours_esme_cpu_us={ours_cpu:.1f} "
        f"reference_submit_per_s={reference:.0f} "
        f"ratio={ours / reference:.3f} bare_sink_submit_per_s={sink:.0f} ratio_to_sink={ours / sink:.3f} "
        f"codec_roundtrips_per_s={codec:.0f} {receipts}"
    )


if __name__ == "__main__":
    main()
