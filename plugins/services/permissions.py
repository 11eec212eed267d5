"""The powers the services plugin introduces (declared through `Plugin.permissions`)."""

from __future__ import annotations

from gatewayd.store.accounts import Role
from panel.types import PermissionSpec
from translations import N_

SERVICES_DIVERSION = "services.diversion"
CLIENTS_SESSION_RESET = "clients.session_reset"

PERMISSIONS = (
    PermissionSpec(SERVICES_DIVERSION, N_("Call-centre diversion"), frozenset()),
    PermissionSpec(CLIENTS_SESSION_RESET, N_("Reset clients' sessions"), frozenset({Role.MASTER.value})),
)
