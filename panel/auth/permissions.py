"""Named permissions: what one is, the registry of those the panel knows and each role's defaults.

The panel itself declares only the two permissions that open its modes (the control panel and the
operator's desk: `panel.menu`); every other power is declared by the plugin whose routes need it,
built-in or not, through `Plugin.permissions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gatewayd.store.accounts import Role
from panel.errors import PluginError
from translations import N_

PANEL_ACCESS = "panel.access"
OPERATOR_MODE = "operator.mode"

_MASTER = frozenset({Role.MASTER.value})
_MASTER_OPERATOR = frozenset({Role.MASTER.value, Role.OPERATOR.value})


@dataclass(frozen=True, slots=True)
class PermissionSpec:
    name: str  # "<area>.<power>", e.g. "push.send"
    description: str  # i18n key
    default_roles: frozenset[str] = frozenset()  # roles ("master", "operator") granted it at creation


# Admins hold every permission; masters may enter both modes, operators the operator's desk.
CORE_PERMISSIONS: tuple[PermissionSpec, ...] = (
    PermissionSpec(PANEL_ACCESS, N_("Access the control panel (admin mode)"), _MASTER),
    PermissionSpec(OPERATOR_MODE, N_("Operator mode: answer the assigned SMS"), _MASTER_OPERATOR),
)


class DeclaresPermissions(Protocol):
    """What the registry reads of a plugin: its name and the permissions it introduces."""

    @property
    def name(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def permissions(self) -> Sequence[PermissionSpec]: ...


class UnknownPermission(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown permission {name!r}")
        self.name = name


class PermissionRegistry:
    """Every permission the panel knows: the core ones and those the plugins declare."""

    def __init__(self) -> None:
        self._specs: dict[str, PermissionSpec] = {}
        self._owners: dict[str, str] = {}
        #: owner (plugin name, "panel" for the core) -> its title (English, marked for the catalogue)
        self._titles: dict[str, str] = {"panel": N_("Panel modes")}
        for spec in CORE_PERMISSIONS:
            self._add("panel", spec)

    @classmethod
    def build(cls, plugins: Iterable[DeclaresPermissions]) -> PermissionRegistry:
        registry = cls()
        for plugin in plugins:
            registry._titles.setdefault(plugin.name, plugin.title)
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

    def grouped(self) -> tuple[tuple[str, tuple[PermissionSpec, ...]], ...]:
        """The permissions by the plugin that declares them, as (its title, its specs by name), the
        core's first: what an account's powers are edited by."""
        owners = ["panel", *sorted({owner for owner in self._owners.values() if owner != "panel"})]
        return tuple(
            (self._titles[owner], tuple(spec for spec in self.specs if self._owners[spec.name] == owner))
            for owner in owners
        )

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
