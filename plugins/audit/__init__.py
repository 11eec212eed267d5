"""Built-in plugin `audit`: the audit trail's viewer (filters, pages, CSV export) and the check of its
hash chain, for those holding `audit.view` (admins hold every permission)."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.audit.permissions import AUDIT_VIEW, PERMISSIONS
from plugins.audit.routes import routes
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="audit",
    title=N_("Audit trail"),
    routes=routes,
    menu_items=(MenuItem(N_("Audit trail"), "/admin/audit", Mode.ADMIN, AUDIT_VIEW, order=90),),
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=PERMISSIONS,
    locale=HERE / "locale",
)
