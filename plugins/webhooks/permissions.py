"""The power the webhooks introduce: only admins hold it by default (a subscription sends the gateway's
events, with client IDs and texts, to another system)."""

from __future__ import annotations

from panel.types import PermissionSpec
from translations import N_

WEBHOOKS_MANAGE = "webhooks.manage"

PERMISSIONS = (PermissionSpec(WEBHOOKS_MANAGE, N_("Webhooks"), frozenset()),)
