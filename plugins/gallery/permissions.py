"""The power the photo gallery introduces: masters hold it at creation (admins hold every permission)."""

from __future__ import annotations

from gatewayd.store.accounts import Role
from panel.types import PermissionSpec
from translations import N_

GALLERY_MANAGE = "gallery.manage"

PERMISSIONS = (PermissionSpec(GALLERY_MANAGE, N_("Photo gallery"), frozenset({Role.MASTER.value})),)
