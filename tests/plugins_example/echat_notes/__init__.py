"""A minimal panel plugin: one page per mode, a form, a permission pair, a lifespan keeping the
plugin's typed state for each panel, and a handler of MO events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from panel.access import public, requires
from panel.types import Event, MenuItem, Mode, PanelRuntime, PermissionSpec, Plugin, PluginState
from panel.web import render
from translations import N_

HERE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class Notes:
    """What the plugin keeps for one running panel (never in module globals: a process may run two)."""

    database_url: str
    received: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)  # MO events seen


NOTES = PluginState("notes", Notes)


@asynccontextmanager
async def notes_lifespan(runtime: PanelRuntime) -> AsyncIterator[Notes]:
    yield Notes(runtime.settings.database_url)


@requires("notes.read")
async def notes_page(request: Request) -> Response:
    seen = NOTES.of(request).received.qsize()
    return render(request, "notes/index.html", {"preview": None, "seen": seen})


@requires("notes.write")
async def preview_note(request: Request) -> Response:
    form = await request.form()
    text = form.get("text")
    return render(request, "notes/index.html", {"preview": text if isinstance(text, str) else ""})


@requires("notes.write")
async def notes_settings(request: Request) -> Response:
    return render(request, "notes/index.html", {"preview": None})


@public
async def about(request: Request) -> Response:
    return render(request, "notes/index.html", {"preview": None})


async def on_mo(event: Event, runtime: PanelRuntime) -> None:
    if event.payload.get("text") == "explode":
        raise ValueError("a handler failure is logged, the subscription goes on")
    await NOTES.of(runtime).received.put(event)


plugin = Plugin(
    name="notes",
    title=N_("Notes"),
    routes=[
        Route("/notes", notes_page, methods=["GET"]),
        Route("/notes/preview", preview_note, methods=["POST"]),
        Route("/notes/settings", notes_settings, methods=["GET"]),
        Route("/notes/about", about, methods=["GET"]),
    ],
    menu_items=[
        MenuItem(N_("Notes"), "/notes", Mode.OPERATOR, "notes.read", order=50),
        MenuItem(N_("Notes settings"), "/notes/settings", Mode.ADMIN, "notes.write", order=50),
    ],
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=[
        PermissionSpec("notes.read", N_("Read notes"), frozenset({"master", "operator"})),
        PermissionSpec("notes.write", N_("Write notes"), frozenset({"master"})),
    ],
    lifespan=notes_lifespan,
    event_handlers={"echat/+/mo": on_mo},
    # Its own catalogue (domain "notes"): locale/es/LC_MESSAGES/notes.po, made with pybabel (docs/I18N.md).
    locale=HERE / "locale",
)
