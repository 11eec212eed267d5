"""``gatewayd`` under a benchmark's conditions, without changing the product: the per-cycle tracer of
bench/_trace.py, and "what if" variants that estimate what a change in gatewayd/ would gain before
anyone writes it; then the ordinary command line (``gatewayd run`` picks its event loop itself:
``--event-loop``).

no-pre-ping and generic-plans are what the daemon does since issue 11 (they change nothing now).

    python bench/_daemon.py [--trace FILE] [--what-if NAME ...] -- run --config gatewayd.toml

What-ifs (each replaces one thing at start-up, in this process only):
  no-pre-ping    the engine without ``pool_pre_ping`` (a checkout costs no BEGIN / ';' / ROLLBACK)
  generic-plans  PostgreSQL's default ``plan_cache_mode`` (auto) instead of ``force_custom_plan``
  no-events      events are built but not published (no JSON, no MQTT per MO and per MT change)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


WHAT_IFS = ("no-pre-ping", "generic-plans", "no-events")


def apply_what_ifs(names: set[str]) -> None:
    if names & {"no-pre-ping", "generic-plans"}:
        from typing import Any

        import gatewayd.store.engine as engine

        create_async_engine: Any = getattr(engine, "create_async_engine")  # noqa: B009  (not exported)

        def create(url: Any, **options: Any) -> Any:
            if "no-pre-ping" in names:
                options["pool_pre_ping"] = False
            if "generic-plans" in names and "connect_args" in options:
                options["connect_args"] = {"server_settings": {"plan_cache_mode": "auto"}}
            return create_async_engine(url, **options)

        setattr(engine, "create_async_engine", create)  # noqa: B010
    if "no-events" in names:
        from gatewayd.events import EventPublisher

        async def publish_nothing(self: EventPublisher, topic: str, payload: object) -> None:
            return None

        EventPublisher._publish = publish_nothing  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trace", type=Path, help="record the per-cycle trace into this JSON file at exit")
    parser.add_argument("--what-if", choices=WHAT_IFS, action="append", default=[], help="a variant")
    parser.add_argument("gatewayd", nargs=argparse.REMAINDER, help="-- then the gatewayd arguments")
    args = parser.parse_args()
    command = args.gatewayd[1:] if args.gatewayd[:1] == ["--"] else args.gatewayd
    if not command:
        parser.error("give the gatewayd arguments after --")
    apply_what_ifs(set(args.what_if))
    if args.trace is not None:
        import _trace

        _trace.install(args.trace)
    from echat.cli import main as gatewayd

    return gatewayd(command)


if __name__ == "__main__":
    raise SystemExit(main())
