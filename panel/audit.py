"""What the panel records in the audit trail (``gatewayd.store.audit``): who, from where, what.

Plugins call :func:`audit` inside the transaction of the action they record, so the action and its
record commit together::

    async with db(request) as session, session.begin():
        ...  # the change
        await audit(session, request, "client.ban", subject=f"client:{client_id}",
                    details={"before": {...}, "after": {...}})

The actor is the signed-in user (their account id and user name), the source the client's address
as the server saw it (behind the trusted proxy, the forwarded one). Action names are
``<area>.<verb>`` (``auth.login``, ``account.lock``, ``client.ban``, ``mt.sent``); subjects are
``<kind>:<id>`` (``account:12``, ``client:<client id>``, ``conversation:7``, ``service:chat``) and
never a phone number: the record outlives the number's owner's consent, and ids lead to it for
those allowed to see it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from gatewayd.store.audit import SOURCE_LENGTH, AuditEntry, AuditRecord, append_audit
from panel.web import current_user

#: The actor of records no signed-in user made (an anonymous failed sign-in names the typed name
#: in its details, never as the actor).
ANONYMOUS = "-"


def client_address(connection: HTTPConnection) -> str | None:
    """The client's address as the server saw it (uvicorn applied the trusted proxy's header)."""
    return connection.client.host[:SOURCE_LENGTH] if connection.client else None


def entry_for(
    connection: HTTPConnection,
    action: str,
    *,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """The entry for ``action`` done by the request's signed-in user (or anonymous) from its address."""
    user = current_user(connection)
    return AuditEntry(
        action=action,
        actor=user.username if user is not None else ANONYMOUS,
        actor_id=user.account_id if user is not None else None,
        source=client_address(connection),
        subject=subject,
        details=details or {},
    )


async def audit(
    session: AsyncSession,
    connection: HTTPConnection,
    action: str,
    *,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Records ``action`` in ``session``'s transaction (see the module's docstring)."""
    return await append_audit(session, entry_for(connection, action, subject=subject, details=details))
