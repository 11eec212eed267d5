"""The power the reports introduce: masters hold it at creation (admins hold every permission)."""

from __future__ import annotations

from gatewayd.store.accounts import Role
from panel.types import PermissionSpec
from translations import N_

REPORTS_VIEW = "reports.view"

PERMISSIONS = (PermissionSpec(REPORTS_VIEW, N_("Reports"), frozenset({Role.MASTER.value})),)
