"""``gatewayd reports rebuild [--since DATE]``: recompute the reports' hourly rollups from the message
tables (after upgrading a database that has traffic from before the rollups, or after a restore)."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from typing import Any

from echat.users import SharedOptions
from gatewayd.store.engine import create_engine
from gatewayd.store.store import Store


def add_reports_commands(subparsers: Any, shared: SharedOptions) -> argparse.ArgumentParser:
    """Add ``reports rebuild`` to a ``parser.add_subparsers(dest="command")`` object."""
    reports: argparse.ArgumentParser = subparsers.add_parser("reports", help="the reports' hourly rollups")
    shared(reports)
    actions = reports.add_subparsers(dest="reports_command", required=True, metavar="ACTION")
    rebuild = actions.add_parser(
        "rebuild", help="recompute the rollups from the message tables (idempotent; all hours by default)"
    )
    rebuild.add_argument(
        "--since", type=date.fromisoformat, metavar="YYYY-MM-DD", help="only the hours from this UTC day on"
    )
    shared(rebuild)
    return reports


async def rebuild(url: str, since: date | None) -> datetime:
    """Rebuilds in one transaction; returns the first hour rebuilt."""
    engine = create_engine(url)
    try:
        store = Store.for_engine(engine)
        async with store.transaction() as session:
            start = datetime(since.year, since.month, since.day, tzinfo=UTC) if since is not None else None
            return await store.rollup_rebuild.rebuild(session, start)
    finally:
        await engine.dispose()
