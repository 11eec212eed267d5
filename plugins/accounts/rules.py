"""Who may manage whom: masters manage operators only, and only those whose powers they hold all of,
and grant only the powers they hold; admins manage every account and the roles; nobody locks
themselves. (The last active admin is kept by `panel.auth.accounts`, whoever makes the change: the
panel or the command line.)"""

from __future__ import annotations

from collections.abc import Set

from gatewayd.store.accounts import Account, Role
from panel.auth.identity import CurrentUser
from panel.types import PermissionSpec
from translations import N_

ACCOUNTS_MANAGE = "accounts.manage"

PERMISSIONS = (
    PermissionSpec(ACCOUNTS_MANAGE, N_("Manage operators and masters"), frozenset({Role.MASTER.value})),
)


class Refused(Exception):
    """The change is not allowed (403) or the form is not valid (400); ``key`` says why."""

    def __init__(self, key: str, status: int = 400, /, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.status = status
        self.params = params


def may_manage_role(actor: CurrentUser, role: Role) -> bool:
    """Admins manage every role; masters (and whoever else holds the power) operators only."""
    return actor.role is Role.ADMIN or role is Role.OPERATOR


def check_manages(actor: CurrentUser, role: Role) -> None:
    if not may_manage_role(actor, role):
        raise Refused(N_("Only an administrator manages administrators and masters."), 403)


def check_manages_account(actor: CurrentUser, account: Account) -> None:
    """As :func:`check_manages` for the account's role; and a non-admin manages (edits, locks,
    sets the password of) only an account whose powers they hold all of themselves: else a master
    could set a new password for an operator given a power the master lacks, and sign in as them."""
    check_manages(actor, account.role)
    if actor.role is not Role.ADMIN and set(account.permissions or ()) - actor.permissions:
        raise Refused(N_("You cannot manage an account that holds powers you do not hold."), 403)


def check_role_change(actor: CurrentUser, before: Role, after: Role) -> None:
    if before is not after and actor.role is not Role.ADMIN:
        raise Refused(N_("Only an administrator changes roles."), 403)


def check_grants(actor: CurrentUser, before: Set[str], after: Set[str]) -> None:
    """A non-admin changes (grants or takes away) only powers they hold themselves."""
    if actor.role is Role.ADMIN:
        return
    if (before ^ after) - actor.permissions:
        raise Refused(N_("You cannot grant or take away a power you do not hold."), 403)


def check_not_self(actor: CurrentUser, account: Account) -> None:
    if account.id == actor.account_id:
        raise Refused(N_("You cannot lock your own account."), 403)
