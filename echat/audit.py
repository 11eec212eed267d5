"""``gatewayd audit verify``: check the audit trail's hash chain from the first record to the head.

Prints how many records were checked and the head's hash (keep it elsewhere: it anchors the chain up
to this point); exit status 0 when the chain is whole, 1 at the first record that does not fit, with
its number and what is wrong with it.
"""

from __future__ import annotations

import argparse
from typing import Any

from echat.users import SharedOptions
from gatewayd.store.audit import AuditCheck, verify_audit
from gatewayd.store.engine import create_engine, read_session_factory


def add_audit_commands(subparsers: Any, shared: SharedOptions) -> argparse.ArgumentParser:
    """Add ``audit verify`` to a ``parser.add_subparsers(dest="command")`` object."""
    audit: argparse.ArgumentParser = subparsers.add_parser("audit", help="the audit trail of panel actions")
    shared(audit)
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="check the hash chain of the audit trail (exit 1 at the first record that does not fit)",
    )
    shared(verify)
    return audit


async def check_audit_trail(url: str) -> AuditCheck:
    engine = create_engine(url)
    try:
        async with read_session_factory(engine)() as session:
            return await verify_audit(session)
    finally:
        await engine.dispose()


def describe(check: AuditCheck) -> str:
    """One line for the operator at the terminal."""
    if check.intact:
        return f"audit trail intact: {check.records} records, head {check.head_seq} hash {check.head_hash}"
    return (
        f"audit trail BROKEN at record {check.bad_seq}: {check.problem} "
        f"({check.records} records before it check out; head {check.head_seq} hash {check.head_hash})"
    )
