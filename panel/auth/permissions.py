"""The registry of named permissions and the defaults each role gets."""

from __future__ import annotations

from collections.abc import Iterable

from gatewayd.store.accounts import Role
from plugins.contract import PermissionSpec, Plugin
from plugins.errors import PluginError

PANEL_ACCESS = "panel.access"
OPERATOR_MODE = "operator.mode"
OPERATOR_SEE_OTHERS = "operator.see_others"
OPERATOR_SEE_MSISDN = "operator.see_msisdn"
PUSH_SEND = "push.send"
PUSH_MASS = "push.mass"
MONITOR_VIEW = "monitor.view"
MONITOR_REASSIGN = "monitor.reassign"
USERS_MANAGE = "users.manage"
SUBSCRIBERS_BAN = "subscribers.ban"
REPORTS_VIEW = "reports.view"
CALLCENTER_MANAGE = "callcenter.manage"
SESSIONS_RESET = "sessions.reset"
GALLERY_MANAGE = "gallery.manage"

_MASTER = frozenset({Role.MASTER.value})
_MASTER_OPERATOR = frozenset({Role.MASTER.value, Role.OPERATOR.value})

# The manual's powers. Admins hold every permission; masters get the control panel minus account
# management; operators get the operator's desk and manual push.
CORE_PERMISSIONS: tuple[PermissionSpec, ...] = (
    PermissionSpec(PANEL_ACCESS, "perm.panel.access", _MASTER),
    PermissionSpec(OPERATOR_MODE, "perm.operator.mode", _MASTER_OPERATOR),
    PermissionSpec(OPERATOR_SEE_OTHERS, "perm.operator.see_others", _MASTER),
    PermissionSpec(OPERATOR_SEE_MSISDN, "perm.operator.see_msisdn", _MASTER),
    PermissionSpec(PUSH_SEND, "perm.push.send", _MASTER_OPERATOR),
    PermissionSpec(PUSH_MASS, "perm.push.mass", _MASTER),
    PermissionSpec(MONITOR_VIEW, "perm.monitor.view", _MASTER),
    PermissionSpec(MONITOR_REASSIGN, "perm.monitor.reassign", _MASTER),
    PermissionSpec(USERS_MANAGE, "perm.users.manage"),
    PermissionSpec(SUBSCRIBERS_BAN, "perm.subscribers.ban", _MASTER),
    PermissionSpec(REPORTS_VIEW, "perm.reports.view", _MASTER),
    PermissionSpec(CALLCENTER_MANAGE, "perm.callcenter.manage"),
    PermissionSpec(SESSIONS_RESET, "perm.sessions.reset", _MASTER),
    PermissionSpec(GALLERY_MANAGE, "perm.gallery.manage", _MASTER),
)


class UnknownPermission(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown permission {name!r}")
        self.name = name


class PermissionRegistry:
    """Every permission the panel knows: the core ones and those the plugins declare."""

    def __init__(self) -> None:
        self._specs: dict[str, PermissionSpec] = {}
        self._owners: dict[str, str] = {}
        for spec in CORE_PERMISSIONS:
            self._add("panel", spec)

    @classmethod
    def build(cls, plugins: Iterable[Plugin]) -> PermissionRegistry:
        registry = cls()
        for plugin in plugins:
            for spec in plugin.permissions:
                registry._add(plugin.name, spec)
        return registry

    def _add(self, owner: str, spec: PermissionSpec) -> None:
        if spec.name in self._specs:
            first = self._owners[spec.name]
            raise PluginError(owner, f"permission {spec.name!r} is already declared by {first!r}")
        unknown_roles = set(spec.default_roles) - {role.value for role in Role}
        if unknown_roles:
            raise PluginError(owner, f"permission {spec.name!r} names unknown roles {sorted(unknown_roles)}")
        self._specs[spec.name] = spec
        self._owners[spec.name] = owner

    @property
    def specs(self) -> tuple[PermissionSpec, ...]:
        return tuple(sorted(self._specs.values(), key=lambda spec: spec.name))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def defaults_for(self, role: Role) -> frozenset[str]:
        if role is Role.ADMIN:
            return self.names
        return frozenset(name for name, spec in self._specs.items() if role.value in spec.default_roles)

    def effective(self, role: Role, granted: Iterable[str]) -> frozenset[str]:
        """What an account may do: admins everything; others their grants that still exist."""
        if role is Role.ADMIN:
            return self.names
        return frozenset(granted) & self.names

    def validate(self, names: Iterable[str]) -> frozenset[str]:
        checked = frozenset(names)
        for name in sorted(checked):
            if name not in self._specs:
                raise UnknownPermission(name)
        return checked
