"""The power the audit viewer introduces: no role holds it at creation (admins hold every permission;
a master may be given it)."""

from __future__ import annotations

from panel.types import PermissionSpec
from translations import N_

AUDIT_VIEW = "audit.view"

PERMISSIONS = (PermissionSpec(AUDIT_VIEW, N_("View and export the audit trail"), frozenset()),)
