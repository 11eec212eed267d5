"""Presence: an operator takes conversations only while at the desk.

An operator is *present* while their account is not locked, one of their web sessions is live and their
desk was seen within a short grace: the desk's event stream marks ``accounts.desk_seen_at`` when it
opens and at every heartbeat, and so does the presence control. Assignment hands conversations only to
present operators whose chosen presence is online, of the conversation's pool (``gatewayd.assignment``,
which the daemon runs and the panel calls for its operators' actions).

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

from gatewayd.assignment import announce_account_change
from panel.settings import PanelSettings

__all__ = ["announce_account_change", "session_idle"]


def session_idle(settings: PanelSettings) -> timedelta:
    """How long a web session may go unused and still count as live."""
    return timedelta(minutes=settings.session_idle_minutes)
