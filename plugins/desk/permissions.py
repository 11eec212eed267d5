"""The powers the desk introduces (declared through `Plugin.permissions`, as any plugin's are).

Entering the desk at all is the panel's operator mode (`panel.auth.permissions.OPERATOR_MODE`).
"""

from __future__ import annotations

from gatewayd.store.accounts import Role
from panel.types import PermissionSpec
from translations import N_

OPERATOR_SEE_OTHERS = "operator.see_others"
OPERATOR_SEE_MSISDN = "operator.see_msisdn"
PUSH_SEND = "push.send"

_MASTER = frozenset({Role.MASTER.value})
_MASTER_OPERATOR = frozenset({Role.MASTER.value, Role.OPERATOR.value})

PERMISSIONS = (
    PermissionSpec(OPERATOR_SEE_OTHERS, N_("Read other operators' answers"), _MASTER),
    PermissionSpec(OPERATOR_SEE_MSISDN, N_("See the client's full phone number"), _MASTER),
    PermissionSpec(PUSH_SEND, N_("Send push SMS by hand"), _MASTER_OPERATOR),
)
