"""The power the API keys page introduces. No role holds it at creation: a key may send and ban, so
only admins (who hold every permission) make keys unless an admin grants the power."""

from __future__ import annotations

from panel.types import PermissionSpec
from translations import N_

APIKEYS_MANAGE = "apikeys.manage"

PERMISSIONS = (PermissionSpec(APIKEYS_MANAGE, N_("API keys: make and revoke")),)
