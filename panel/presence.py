"""Presence: an operator takes conversations only while at the desk.

An operator is *present* while their account is not locked, one of their web sessions is live and their
desk was seen within a short grace: the desk's event stream marks ``accounts.desk_seen_at`` when it
opens and at every heartbeat, and so does the presence control. Assignment hands conversations only to
present operators whose chosen presence is online (``panel.assignment``).

An operator who is no longer present -- signed out, session expired or revoked, account locked, desk
closed for longer than the grace -- *leaves*: their presence becomes offline and the conversations they
hold go back to the queue. Whether an operator leaves is decided again under their account row's lock
(``FOR UPDATE``; SQLite serializes writers), so several panel processes may look at the same operator
at once: one of them makes the change, the others find nothing left to do.

The statements are the store's (``gatewayd.store.repo_assignment``). Whoever ends an operator's
sessions or makes them leave announces it on the bus
(``<prefix>/account/<id>/changed``): their open desks check their session at once (a signed-out or
locked operator's stream ends) and the panels make them leave without waiting for the sweep.
"""

from __future__ import annotations

from datetime import timedelta

from gatewayd.bus.base import EventBus
from panel.settings import PanelSettings


def session_idle(settings: PanelSettings) -> timedelta:
    """How long a web session may go unused and still count as live."""
    return timedelta(minutes=settings.session_idle_minutes)


async def announce_account_change(bus: EventBus | None, account_id: int) -> None:
    """Tells every panel that ``account_id`` was signed out, locked or left (after the commit): the
    payload carries the id only, whoever hears it reads the rest from the database."""
    if bus is not None:
        await bus.publish(bus.topics.account_changed(account_id), {"account_id": account_id})
