"""Catalogs, language negotiation, time zones, the permission registry and the password policy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gatewayd.store.accounts import Presence, Role
from panel.auth.identity import CurrentUser
from panel.auth.passwords import PasswordPolicy, PasswordRejected, check_password_rules
from panel.auth.permissions import CORE_PERMISSIONS, PermissionRegistry, UnknownPermission
from panel.i18n import (
    LOCALE_DIR,
    PRESENCE_LABELS,
    ROLE_LABELS,
    build_catalogue,
    format_datetime,
    negotiate_language,
)
from panel.menu import menu_for
from panel.settings import Argon2Params
from plugins import audit, auth, desk, home
from plugins.desk.labels import CONVERSATION_STATUS, MT_STATUS
from translations import read_catalogue

FAST = Argon2Params(time_cost=1, memory_cost=64, parallelism=1)


def test_every_label_the_panel_shows_is_translated() -> None:
    sources = [
        (LOCALE_DIR, "panel"),
        *((plugin.locale, plugin.name) for plugin in (auth.plugin, desk.plugin, audit.plugin)),
    ]
    spanish = {
        message.id
        for locale, domain in sources
        for message in read_catalogue(locale, "es", domain) or ()
        if locale is not None and message.string
    }
    for spec in (*CORE_PERMISSIONS, *desk.plugin.permissions, *audit.plugin.permissions):
        assert spec.description in spanish, spec.name
    labels = [
        *ROLE_LABELS.values(),
        *PRESENCE_LABELS.values(),
        *MT_STATUS.values(),
        *CONVERSATION_STATUS.values(),
    ]
    assert set(labels) <= spanish
    assert {role.value for role in Role} == set(ROLE_LABELS)
    assert {presence.value for presence in Presence} == set(PRESENCE_LABELS)


def test_gettext_formats_and_falls_back() -> None:
    catalog = build_catalogue([auth.plugin], "es")
    assert catalog.gettext("es", "Signed in as %(name)s", name="Ana") == "Conectado como Ana"
    assert catalog.gettext("en", "Signed in as %(name)s", name="Ana") == "Signed in as Ana"
    assert catalog.gettext("fr", "Signed in as %(name)s", name="Ana") == "Conectado como Ana"
    assert catalog.gettext("es", "Not in any catalogue") == "Not in any catalogue"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "es"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9,en;q=0.8,es;q=0.7", "en"),
        ("en;q=0.2,es;q=0.8", "es"),
        ("de, fr", "es"),
        ("en;q=0", "es"),
        ("en;q=bogus, es", "es"),
    ],
)
def test_accept_language_negotiation(header: str | None, expected: str) -> None:
    assert negotiate_language(header, "es") == expected


def test_dates_show_in_the_readers_zone_in_the_manuals_format() -> None:
    instant = datetime(2024, 7, 1, 22, 30, 5, tzinfo=UTC)
    assert format_datetime(instant, "Europe/Madrid") == "02/07/2024 00:30:05"
    assert format_datetime(instant, "America/Bogota", "time") == "17:30:05"
    assert format_datetime(instant, "Not/AZone", "date") == "01/07/2024"
    assert format_datetime(None, "Europe/Madrid") == ""
    with pytest.raises(ValueError):
        format_datetime(datetime(2024, 1, 1), "UTC")


def test_role_defaults_follow_the_manual() -> None:
    registry = PermissionRegistry.build([auth.plugin, home.plugin, desk.plugin])
    assert registry.defaults_for(Role.ADMIN) == registry.names
    master = registry.defaults_for(Role.MASTER)
    assert {"panel.access", "operator.mode", "operator.see_others", "operator.see_msisdn"} <= master
    assert registry.defaults_for(Role.OPERATOR) == {"operator.mode", "push.send"}


def test_the_panel_declares_its_modes_and_each_builtin_its_own_powers() -> None:
    """Only permissions a route uses exist; the desk declares its own as any plugin would."""
    assert {spec.name for spec in CORE_PERMISSIONS} == {"panel.access", "operator.mode"}
    assert {spec.name for spec in desk.plugin.permissions} == {
        "operator.see_others",
        "operator.see_msisdn",
        "push.send",
    }
    assert auth.plugin.permissions == () and home.plugin.permissions == ()
    assert PermissionRegistry.build([auth.plugin, home.plugin, desk.plugin]).names == {
        "panel.access",
        "operator.mode",
        "operator.see_others",
        "operator.see_msisdn",
        "push.send",
    }


def test_effective_permissions() -> None:
    registry = PermissionRegistry()
    assert registry.effective(Role.ADMIN, []) == registry.names
    assert registry.effective(Role.OPERATOR, ["operator.mode", "gone.away"]) == {"operator.mode"}
    with pytest.raises(UnknownPermission):
        registry.validate(["operator.mode", "gone.away"])


def test_password_rules() -> None:
    with pytest.raises(PasswordRejected) as short:
        check_password_rules("short", "ana")
    assert short.value.key == "The password must have at least %(min)s characters."
    assert (
        short.value.params == {"min": 10}
        and str(short.value) == "The password must have at least 10 characters."
    )
    with pytest.raises(PasswordRejected):
        check_password_rules("Anastasia12", "anastasia12")
    with pytest.raises(PasswordRejected):
        check_password_rules("x" * 257, "ana")
    check_password_rules("a fine passphrase", "ana")


def test_password_hashing_verification_and_rehash() -> None:
    policy = PasswordPolicy(FAST)
    stored = policy.hash("a fine passphrase")
    assert stored.startswith("$argon2id$")
    assert policy.verify(stored, "a fine passphrase")
    assert not policy.verify(stored, "another passphrase")
    assert not policy.verify("not a hash", "a fine passphrase")
    assert not policy.needs_rehash(stored)
    stronger = PasswordPolicy(Argon2Params(time_cost=2, memory_cost=64, parallelism=1))
    assert stronger.needs_rehash(stored)
    assert stronger.verify(stored, "a fine passphrase")


def _user(permissions: set[str]) -> CurrentUser:
    granted = frozenset(permissions)
    return CurrentUser(1, "u", "U", Role.OPERATOR, granted, "es", "UTC", Presence.ONLINE, "s", "c")


def test_menu_sections_follow_mode_and_item_permissions() -> None:
    menu = tuple(home.plugin.menu_items)
    assert menu_for(None, menu) == ()
    operator_only = menu_for(_user({"operator.mode"}), menu)
    assert [section.mode.value for section in operator_only] == ["operator"]
    both = menu_for(_user({"operator.mode", "panel.access"}), menu)
    assert [section.mode.value for section in both] == ["operator", "admin"]
    assert menu_for(_user(set()), menu) == ()
