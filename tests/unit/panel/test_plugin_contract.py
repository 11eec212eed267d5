"""The plugin contract, the loader and the app factory's checks of what plugins give it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from panel.access import public, requires
from panel.app import create_app
from panel.i18n import build_catalogue
from panel.loader import load_plugins
from panel.settings import PanelSettings
from panel.types import MenuItem, Mode, PanelRuntime, PermissionSpec, Plugin, PluginError
from plugins import auth, desk, home
from plugins.desk import AssignmentPolicy, DeskSettings

SETTINGS = PanelSettings(database_url="sqlite+aiosqlite://")
PUSH = PermissionSpec("push.send", "x")


async def bare(request: Request) -> Response:
    return PlainTextResponse("no access declared")


@public
async def open_page(request: Request) -> Response:
    return PlainTextResponse("open")


@requires("panel.access")
async def guarded(request: Request) -> Response:
    return PlainTextResponse("guarded")


def test_a_plugin_is_frozen_and_holds_tuples() -> None:
    plugin = Plugin(name="demo", title="demo", routes=[Route("/demo", open_page)])
    assert isinstance(plugin.routes, tuple)
    with pytest.raises(AttributeError):
        plugin.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"name": "Bad-Name"}, "name must match"),
        ({"routes": ["/not-a-route"]}, "is not a Starlette route"),
        ({"menu_items": [MenuItem("x", "relative", Mode.ADMIN)]}, "must start with '/'"),
        ({"permissions": [PermissionSpec("nodot", "x")]}, "named 'area.power'"),
        ({"templates": Path("/does/not/exist")}, "templates folder"),
        ({"locale": Path("/no/such/locale")}, "locale folder"),
        ({"event_handlers": {"echat/+/mo": "not callable"}}, "bad event handler"),
    ],
)
def test_a_malformed_plugin_is_refused_with_its_name(arguments: dict[str, object], complaint: str) -> None:
    values: dict[str, object] = {"name": "broken", "title": "broken.title", **arguments}
    with pytest.raises(PluginError, match=complaint) as raised:
        Plugin(**values)  # type: ignore[arg-type]
    assert "broken" in str(raised.value) or "Bad-Name" in str(raised.value)


def test_explicit_list_accepts_objects_and_references_sorted_by_name() -> None:
    loaded = load_plugins([home.plugin, "plugins.auth:plugin"])
    assert [plugin.name for plugin in loaded] == ["auth", "home"]


@pytest.mark.parametrize(
    ("reference", "complaint"),
    [
        ("plugins.auth", "must look like"),
        ("no_such_module_xyz:plugin", "cannot be imported"),
        ("plugins.auth:routes", "not a Plugin"),
    ],
)
def test_a_broken_reference_is_an_error_naming_it(reference: str, complaint: str) -> None:
    with pytest.raises(PluginError, match=complaint) as raised:
        load_plugins([reference])
    assert raised.value.plugin == reference


def test_one_name_twice_is_refused() -> None:
    with pytest.raises(PluginError, match="registered twice"):
        load_plugins([auth.plugin, auth.plugin])


def test_a_route_without_declared_access_is_refused() -> None:
    sloppy = Plugin(name="sloppy", title="x", routes=[Mount("/s", routes=[Route("/page", bare)])])
    with pytest.raises(PluginError, match=r"'/s/page' declares no access") as raised:
        create_app(SETTINGS, plugins=[sloppy])
    assert raised.value.plugin == "sloppy"


def test_two_plugins_serving_one_path_and_method_clash() -> None:
    first = Plugin(name="first", title="x", routes=[Route("/same", open_page, methods=["GET"])])
    second = Plugin(name="second", title="x", routes=[Route("/same", guarded, methods=["GET"])])
    with pytest.raises(PluginError, match="already served by 'first'"):
        create_app(SETTINGS, plugins=[first, second])
    other_method = Plugin(name="second", title="x", routes=[Route("/same", guarded, methods=["POST"])])
    create_app(SETTINGS, plugins=[first, other_method])


def test_menu_items_need_known_permissions() -> None:
    needs_unknown = MenuItem("My profile", "/m", Mode.ADMIN, "no.such")
    unknown = Plugin(name="menus", title="x", menu_items=[needs_unknown])
    with pytest.raises(PluginError, match="unknown permission 'no.such'"):
        create_app(SETTINGS, plugins=[unknown])


def test_plugins_cannot_redeclare_permissions() -> None:
    clash = Plugin(name="clash", title="x", permissions=[PermissionSpec("operator.mode", "x")])
    with pytest.raises(PluginError, match="already declared by 'panel'"):
        create_app(SETTINGS, plugins=[clash])
    with pytest.raises(PluginError, match="'push.send' is already declared by 'desk'"):
        create_app(SETTINGS, plugins=[desk.plugin, Plugin(name="pusher", title="x", permissions=[PUSH])])


def _po(folder: Path, domain: str, entries: str) -> Path:
    target = folder / "es" / "LC_MESSAGES"
    target.mkdir(parents=True)
    header = 'msgid ""\nmsgstr ""\n"Language: es\\n"\n"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
    (target / f"{domain}.po").write_text(header + entries, encoding="utf-8")
    return folder


def test_a_plugin_brings_its_catalogue_and_the_panels_texts_come_first(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="locale folder .* does not exist"):
        Plugin(name="gone", title="x", locale=tmp_path / "nowhere")
    entries = 'msgid "Bye"\nmsgstr "Adiós"\n\nmsgid "Sign out"\nmsgstr "Largarse"\n'
    own = Plugin(name="own", title="x", locale=_po(tmp_path / "own", "own", entries))
    catalogue = build_catalogue([own])
    assert catalogue.gettext("es", "Bye") == "Adiós"
    assert catalogue.gettext("es", "Sign out") == "Salir de la cuenta"  # the panel's own wins
    assert catalogue.gettext("en", "Bye") == "Bye"


def test_a_plugin_catalogue_must_cover_every_language_and_keep_placeholders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    half = Plugin(name="half", title="x", locale=tmp_path / "empty")
    with pytest.raises(PluginError, match="no 'es' catalogue"):
        create_app(SETTINGS, plugins=[half])
    wrong = _po(tmp_path / "wrong", "wrong", 'msgid "Hello %(name)s"\nmsgstr "Hola %(nombre)s"\n')
    with pytest.raises(PluginError, match="placeholders"):
        create_app(SETTINGS, plugins=[Plugin(name="wrong", title="x", locale=wrong)])


def test_the_example_plugin_counts_in_each_languages_plural_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "plugins_example"))
    import echat_notes

    catalogue = build_catalogue([echat_notes.plugin])
    one, many = "%(num)d message received", "%(num)d messages received"
    assert catalogue.ngettext("es", one, many, 1) == "1 mensaje recibido"
    assert catalogue.ngettext("es", one, many, 3) == "3 mensajes recibidos"
    assert catalogue.ngettext("en", one, many, 1) == "1 message received"
    assert catalogue.ngettext("en", one, many, 0) == "0 messages received"


async def test_event_handlers_without_a_bus_stop_the_start() -> None:
    async def handler(event: object, runtime: object) -> None:
        return None

    listener = Plugin(name="listener", title="x", event_handlers={"echat/+/mo": handler})
    app = create_app(SETTINGS, plugins=[listener])
    with pytest.raises(PluginError, match="no event bus") as raised:
        async with app.router.lifespan_context(app):
            pass
    assert raised.value.plugin == "listener"


async def test_a_failing_lifespan_names_its_plugin() -> None:
    @asynccontextmanager
    async def explode(runtime: PanelRuntime) -> AsyncIterator[None]:
        raise RuntimeError("boom")
        yield

    app = create_app(SETTINGS, plugins=[Plugin(name="fragile", title="x", lifespan=explode)])
    with pytest.raises(PluginError, match="lifespan failed to start: boom") as raised:
        async with app.router.lifespan_context(app):
            pass
    assert raised.value.plugin == "fragile"


def test_the_desks_presence_grace_outlasts_its_heartbeat() -> None:
    """The heartbeat marks a live desk: a grace no longer than it would make live operators leave."""
    with pytest.raises(ValueError, match="presence grace"):
        DeskSettings(policy=AssignmentPolicy(presence_grace=timedelta(seconds=15)), heartbeat=15.0)
    assert DeskSettings().policy.presence_grace > timedelta(seconds=DeskSettings().heartbeat)


def test_plugins_written_against_plugins_contract_get_the_panels_contract() -> None:
    import panel.types
    import plugins.contract

    for name in plugins.contract.__all__:
        assert getattr(plugins.contract, name) is getattr(panel.types, name), name
    assert {"Plugin", "PluginState", "MenuItem", "Mode", "PermissionSpec"} <= set(plugins.contract.__all__)
