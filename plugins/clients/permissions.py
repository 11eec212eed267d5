"""The power the client control introduces (declared through `Plugin.permissions`)."""

from __future__ import annotations

from gatewayd.store.accounts import Role
from panel.types import PermissionSpec
from translations import N_

CLIENTS_CONTROL = "clients.control"

PERMISSIONS = (
    PermissionSpec(CLIENTS_CONTROL, N_("Client control: ban and unban"), frozenset({Role.MASTER.value})),
)
