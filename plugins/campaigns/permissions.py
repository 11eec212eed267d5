"""The power the mass push introduces: masters hold it at creation (admins hold every permission)."""

from __future__ import annotations

from gatewayd.store.accounts import Role
from panel.types import PermissionSpec
from translations import N_

CAMPAIGNS_MANAGE = "campaigns.manage"

PERMISSIONS = (PermissionSpec(CAMPAIGNS_MANAGE, N_("Mass push"), frozenset({Role.MASTER.value})),)
