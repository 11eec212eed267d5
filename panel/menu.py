"""The left menu: the panel's two modes, the items plugins add to them, and what one account sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from panel.auth.identity import CurrentUser
from panel.auth.permissions import OPERATOR_MODE, PANEL_ACCESS
from translations import N_


class Mode(StrEnum):
    """The two faces of the panel: the operator's desk and the control panel."""

    OPERATOR = "operator"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class MenuItem:
    label: str  # i18n key
    path: str
    mode: Mode
    permission: str | None = None  # None: every signed-in account of that mode sees it
    order: int = 100


MODE_PERMISSION = {Mode.OPERATOR: OPERATOR_MODE, Mode.ADMIN: PANEL_ACCESS}
MODE_LABEL = {Mode.OPERATOR: N_("Operator mode"), Mode.ADMIN: N_("Admin mode")}


@dataclass(frozen=True, slots=True)
class MenuSection:
    mode: Mode
    label: str
    items: tuple[MenuItem, ...]


def menu_for(user: CurrentUser | None, menu: Sequence[MenuItem]) -> tuple[MenuSection, ...]:
    """One section per mode the user may enter, holding the items they may open."""
    if user is None:
        return ()
    sections: list[MenuSection] = []
    for mode in Mode:
        if not user.has(MODE_PERMISSION[mode]):
            continue
        items = tuple(
            item
            for item in menu
            if item.mode is mode and (item.permission is None or user.has(item.permission))
        )
        if items:
            sections.append(MenuSection(mode, MODE_LABEL[mode], items))
    return tuple(sections)
