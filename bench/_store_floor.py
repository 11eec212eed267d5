"""The least a store can do per MO on PostgreSQL: the MO rows alone, in batches of a bind's window.

Each batch is one transaction on a bare asyncpg connection under uvloop (BEGIN, one array INSERT of
``window`` rows into ``mo_messages`` with its indexes, COMMIT with its fsync): no subscriber, no
conversation, no answer, no rollup, no SQLAlchemy, no SMPP. What it costs the client (the driver and
the loop) and the server per MO is the floor under the daemon's and PostgreSQL's own figures in
bench/per_bind.py (phase ``floor``), which runs this in a process of its own and reads its one JSON
line:

    .venv/bin/python bench/_store_floor.py URL WINDOW COUNT
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg  # type: ignore[import-untyped]  # noqa: E402
import uvloop  # noqa: E402
from _measure import process_cpu  # noqa: E402

_INSERT = """
INSERT INTO mo_messages (dedup_key, subscriber_id, conversation_id, carrier, bind_name, short_code, country,
                         text, data_coding, parts, incomplete, smsc_message_id, received_at, service, keyword,
                         raw, answer_id)
SELECT * FROM unnest($1::varchar[], $2::bigint[], $3::bigint[], $4::varchar[], $5::varchar[], $6::varchar[],
                     $7::varchar[], $8::text[], $9::smallint[], $10::smallint[], $11::boolean[],
                     $12::varchar[], $13::timestamptz[], $14::varchar[], $15::varchar[], $16::bytea[],
                     $17::bigint[])
"""


def _batch(conversations: list[tuple[int, int]], start: int, size: int) -> list[list[object]]:
    """``size`` MO rows as the daemon's insert carries them, one list per column."""
    now = datetime.now(UTC)
    rows = [
        (
            os.urandom(16).hex(),
            conversations[(start + index) % len(conversations)][1],
            conversations[(start + index) % len(conversations)][0],
            "floor",
            "floor-1",
            "997745",
            "ES",
            f"ALIAS hola {start + index}",
            0,
            1,
            False,
            f"{start + index:x}",
            now,
            None,
            None,
            None,
            None,
        )
        for index in range(size)
    ]
    return [list(column) for column in zip(*rows, strict=True)]


async def measure(url: str, window: int, count: int) -> dict[str, float]:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        conversations = [
            (row["id"], row["subscriber_id"])
            for row in await connection.fetch("SELECT id, subscriber_id FROM conversations LIMIT 5000")
        ] or [(0, 0)]
        batches = [_batch(conversations, start, window) for start in range(0, count, window)]
        for columns in batches[:20]:  # warm: plans, caches
            async with connection.transaction():
                await connection.execute(_INSERT, *columns)
        started, client, server = time.monotonic(), time.process_time(), process_cpu(backend)
        for columns in batches:
            async with connection.transaction():
                await connection.execute(_INSERT, *columns)
        wall = time.monotonic() - started
        client_used, server_used = time.process_time() - client, process_cpu(backend) - server
        # leave the scratch table as the phases found it
        await connection.execute("DELETE FROM mo_messages WHERE carrier = 'floor'")
    finally:
        await connection.close()
    stored = len(batches) * window
    return {
        "per_s": stored / wall,
        "batch_wall_us": wall / len(batches) * 1e6,
        "driver_us": client_used / stored * 1e6,
        "pg_us": server_used / stored * 1e6,
    }


if __name__ == "__main__":
    url, window, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(uvloop.run(measure(url, window, count))), flush=True)
