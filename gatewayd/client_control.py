"""Bans and opt-outs made by people (the panel's client control, the API), one way: the rows changed,
a banned client's open conversations taken from their operators, one audit record per client changed,
all in the caller's transaction. The caller commits, then :func:`gatewayd.assignment.publish_assignments`
with ``withdrawn``. (A client's own BAJA / ALTA by SMS is the MO pipeline's: ``gatewayd.mo``.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.assignment import Assignment, withdraw_clients
from gatewayd.store.audit import AuditEntry, append_audit
from gatewayd.store.repo_subscribers import BanOutcome, set_bans, set_opted_out
from gatewayd.store.subscribers import Subscriber

#: Makes the audit entry of a change by whoever asked for it: (action, subject, details) -> entry.
Recorder = Callable[[str, str, Mapping[str, Any]], AuditEntry]


@dataclass(frozen=True, slots=True)
class BanResult:
    outcome: BanOutcome
    withdrawn: list[Assignment]


async def change_bans(
    session: AsyncSession, client_ids: Sequence[str], *, reason: str | None, now: datetime, record: Recorder
) -> BanResult:
    """Bans (``reason`` given) or unbans (None) these clients; ``client.ban`` / ``client.unban`` per
    client changed."""
    outcome = await set_bans(session, client_ids, reason=reason, now=now)
    withdrawn: list[Assignment] = []
    if reason is not None:
        withdrawn = await withdraw_clients(
            session, [change.subscriber_id for change in outcome.changed.values()], now
        )
    # the audit head last: every row this transaction locks is locked before it (no deadlock)
    verb = "client.ban" if reason is not None else "client.unban"
    for change in outcome.changed.values():
        details = {
            "before": {"banned": reason is None, "reason": change.reason_before},
            "after": {"banned": reason is not None, "reason": change.reason_after},
        }
        await append_audit(session, record(verb, f"client:{change.client_id}", details), now=now)
    return BanResult(outcome, withdrawn)


async def change_opt_out(
    session: AsyncSession, client_id: str, *, opted_out: bool, now: datetime, record: Recorder
) -> bool | None:
    """Opts the client out (no MT but the gateway's own reaches them) or back in; ``client.opt_out`` /
    ``client.opt_in`` when it changed. True: changed, False: already so, None: no such client."""
    subscriber = await session.scalar(
        select(Subscriber).where(Subscriber.client_id == client_id.strip().upper()).with_for_update()
    )
    if subscriber is None:
        return None
    if subscriber.opted_out == opted_out:
        return False
    await set_opted_out(session, subscriber.id, opted_out, now)
    details = {"before": {"opted_out": not opted_out}, "after": {"opted_out": opted_out}}
    action = "client.opt_out" if opted_out else "client.opt_in"
    await append_audit(session, record(action, f"client:{subscriber.client_id}", details), now=now)
    return True
