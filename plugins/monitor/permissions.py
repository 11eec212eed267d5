"""The power the live monitor introduces (declared through `Plugin.permissions`)."""

from __future__ import annotations

from gatewayd.store.accounts import Role
from panel.types import PermissionSpec
from translations import N_

MONITOR_VIEW = "monitor.view"

PERMISSIONS = (
    PermissionSpec(
        MONITOR_VIEW, N_("Live monitor: watch and reassign conversations"), frozenset({Role.MASTER.value})
    ),
)
