"""``gatewayd simulator``: run the simulator, or talk to a running one through its control API.

gatewayd simulator                          # movistar :2775, vodafone :2776, API :8025
gatewayd simulator --config sim.toml --trace pdus.jsonl --trace-dir /var/tmp/traces
gatewayd simulator inject --carrier movistar --from 34600111222 --to 997745 --text "Hola"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import httpx
from pydantic import ValidationError

from settingsfile import describe, error_key
from simulator.core import Simulator
from simulator.errors import SettingsError
from simulator.mo import ENCODINGS, ORDERS
from simulator.profiles import SimulatorConfig, default_config, load_config

DEFAULT_API_URL = "http://127.0.0.1:8025"


def add_simulator_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``simulator`` (and its ``inject`` subcommand) to the ``gatewayd`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulator",
        help="run the SMSC simulator (carriers in a box) or inject an MO into a running one",
        description="An SMSC per carrier profile, with an HTTP control API and a virtual phone at /phone.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML file ([simulator] table or standalone)")
    parser.add_argument("--control-host", metavar="HOST", help="control API address (127.0.0.1)")
    parser.add_argument("--control-port", metavar="PORT", type=int, help="control API port (8025)")
    parser.add_argument("--no-api", action="store_true", help="run without the control API")
    parser.add_argument("--trace", metavar="FILE", help="write every PDU, decoded, as JSON lines to FILE")
    parser.add_argument(
        "--ledger",
        metavar="FILE",
        help="append every MO, MT and receipt outcome to FILE (JSON lines), kept across restarts",
    )
    parser.add_argument(
        "--trace-dir", metavar="DIR", help="where PUT /api/trace may create trace files (default: .)"
    )
    parser.add_argument("--seed", type=int, help="seed of the random choices (receipt states, delays, load)")
    actions = parser.add_subparsers(dest="simulator_action", metavar="ACTION")
    inject = actions.add_parser(
        "inject",
        help="send one MO through a running simulator",
        description="Calls POST /api/mo of a running simulator.",
    )
    inject.add_argument("--url", default=DEFAULT_API_URL, help=f"control API (default {DEFAULT_API_URL})")
    inject.add_argument("--carrier", required=True)
    inject.add_argument("--from", dest="sender", required=True, metavar="MSISDN")
    inject.add_argument("--to", dest="short_code", required=True, metavar="SHORT_CODE")
    inject.add_argument("--text", required=True)
    inject.add_argument("--encoding", choices=list(ENCODINGS), default="auto")
    inject.add_argument(
        "--order",
        choices=list(ORDERS),
        default="in_order",
        help="order the parts of a long message are sent in",
    )
    parser.set_defaults(handler=run_simulator)
    return parser


def run_simulator(args: argparse.Namespace) -> int:
    """Entry point of ``gatewayd simulator``; returns the process exit status."""
    if getattr(args, "simulator_action", None) == "inject":
        return _inject(args)
    try:
        config = _config_from_args(args)
    except SettingsError as exc:
        print(f"gatewayd simulator: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config))
    except SettingsError as exc:
        print(f"gatewayd simulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gatewayd simulator: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def _config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The file's configuration (or the defaults) with the command line's flags over it; SettingsError
    naming every problem."""
    config = load_config(args.config) if args.config else default_config()
    flags = {
        "control_host": args.control_host,
        "control_port": args.control_port,
        "trace_path": args.trace,
        "ledger_path": args.ledger,
        "trace_dir": args.trace_dir,
        "seed": args.seed,
    }
    changes = {name: value for name, value in flags.items() if value is not None}
    if args.no_api:
        changes["control_port"] = None
    try:
        return SimulatorConfig.model_validate({**dict(config), **changes})
    except ValidationError as error:
        flag = {"trace_path": "trace", "ledger_path": "ledger"}
        raise SettingsError(
            "\n".join(
                f"--{flag.get(str(key[0]), str(key[0])).replace('_', '-')}: {describe(problem)}"
                for problem in error.errors()
                for key in [error_key(problem)]
            )
        ) from None


async def _serve(config: SimulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Simulator(config) as simulator:
        for name in simulator.carriers:
            profile = simulator.carrier(name).profile
            print(
                f"{name}: SMPP on {profile.host}:{simulator.port(name)} (system_id {profile.system_id!r}, "
                f"short codes {', '.join(profile.short_codes) or '-'})",
                flush=True,
            )
        if simulator.control_url:
            url = simulator.control_url
            print(f"control API on {url} (phone: {url}/phone)", flush=True)
        await stop.wait()


def _inject(args: argparse.Namespace) -> int:
    body = {
        "carrier": args.carrier,
        "from": args.sender,
        "to": args.short_code,
        "text": args.text,
        "encoding": args.encoding,
        "order": args.order,
    }
    try:
        response = httpx.post(f"{args.url.rstrip('/')}/api/mo", json=body, timeout=10.0)
    except httpx.HTTPError as exc:
        print(f"gatewayd simulator inject: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text}
    if response.is_error:
        print(f"gatewayd simulator inject: {answer.get('error', answer)}", file=sys.stderr)
        return 1
    print(json.dumps(answer, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator``: the same command without the rest of gatewayd."""
    parser = argparse.ArgumentParser(prog="simulator")
    add_simulator_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_simulator(args)
