"""``gatewayd status``: every daemon sharing the database (instance, host, pid, version, started,
heartbeat age, live / stopping / gone), the bind slots each owns (up or not) and its lags; ``--json``
for machines. Exits non-zero when some carrier's configured binds have no live owner."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gatewayd.binds import bind_slots
from gatewayd.config import Config
from gatewayd.fair_share import unowned
from gatewayd.store.cluster import ClusterView
from gatewayd.store.engine import create_engine
from gatewayd.store.store import Store


def add_status_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config_argument: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    status = commands.add_parser(
        "status",
        help="the daemons sharing the database, their binds and lags "
        "(exit 1: a carrier's binds have no owner)",
    )
    config_argument(status)
    status.add_argument("--json", action="store_true", help="one JSON document")
    return status


async def read_view(url: str) -> ClusterView:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        store = Store.for_engine(engine)
        async with store.transaction() as session:
            return await store.cluster.view(session)
    finally:
        await engine.dispose()


def report(config: Config, view: ClusterView) -> dict[str, Any]:
    """The status as a JSON-ready document; ``unowned`` names the carriers with slots no live daemon
    owns, and how many."""
    lease = config.cluster.lease
    live = {daemon.instance for daemon in view.live(lease)}
    held = view.held()
    daemons = []
    for daemon in view.daemons:
        state = "live" if daemon.instance in live else "stopping" if daemon.stopping else "gone"
        owned = sorted(slot for slot, lease_seen in held.items() if lease_seen.owner == daemon.instance)
        up = daemon.status.get("binds", {})
        daemons.append(
            {
                "instance": daemon.instance,
                "host": daemon.host,
                "pid": daemon.pid,
                "version": daemon.version,
                "started_at": daemon.started_at.isoformat(),
                "heartbeat_age": round((view.now - daemon.heartbeat_at).total_seconds(), 3),
                "state": state,
                "binds": {
                    slot: {
                        "carrier": held[slot].carrier,
                        "up": bool(up.get(slot, {}).get("up", False)),
                        "generation": held[slot].generation,
                    }
                    for slot in owned
                },
                "lag": {key: value for key, value in daemon.status.items() if key != "binds"},
            }
        )
    slots = {name: slot.carrier for name, slot in bind_slots(config.carriers).items()}
    return {
        "at": view.now.isoformat(),
        "daemons": daemons,
        "unowned": unowned(slots, {slot: lease.owner for slot, lease in held.items()}, sorted(live)),
    }


def render(document: dict[str, Any]) -> str:
    lines = []
    for daemon in document["daemons"]:
        started = datetime.fromisoformat(daemon["started_at"]).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"{daemon['instance']}  {daemon['state']}  host {daemon['host']} pid {daemon['pid']}  "
            f"version {daemon['version']}  started {started} UTC  "
            f"heartbeat {daemon['heartbeat_age']:.1f} s ago"
        )
        binds = daemon["binds"]
        if binds:
            lines.extend(
                f"    {slot} ({bind['carrier']}): {'up' if bind['up'] else 'DOWN'}"
                for slot, bind in binds.items()
            )
        else:
            lines.append("    no binds")
        lag = daemon["lag"]
        if lag:
            lines.append("    lag: " + ", ".join(f"{key} {value}" for key, value in sorted(lag.items())))
    if not document["daemons"]:
        lines.append("no daemon has run on this database")
    for carrier, count in sorted(document["unowned"].items()):
        lines.append(f"carrier {carrier}: {count} configured bind(s) with no live owner")
    return "\n".join(lines)


def print_status(config: Config, view: ClusterView, *, as_json: bool) -> bool:
    """Prints the status; whether every configured bind has a live owner."""
    document = report(config, view)
    print(json.dumps(document, indent=2) if as_json else render(document))
    return not document["unowned"]
