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
    title="notes.title",
    routes=[
        Route("/notes", notes_page, methods=["GET"]),
        Route("/notes/preview", preview_note, methods=["POST"]),
        Route("/notes/settings", notes_settings, methods=["GET"]),
        Route("/notes/about", about, methods=["GET"]),
    ],
    menu_items=[
        MenuItem("notes.menu", "/notes", Mode.OPERATOR, "notes.read", order=50),
        MenuItem("notes.menu.settings", "/notes/settings", Mode.ADMIN, "notes.write", order=50),
    ],
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=[
        PermissionSpec("notes.read", "notes.perm.read", frozenset({"master", "operator"})),
        PermissionSpec("notes.write", "notes.perm.write", frozenset({"master"})),
    ],
    lifespan=notes_lifespan,
    event_handlers={"echat/+/mo": on_mo},
    messages={
        "es": {
            "notes.title": "Notas",
            "notes.menu": "Notas",
            "notes.menu.settings": "Ajustes de notas",
            "notes.perm.read": "Leer notas",
            "notes.perm.write": "Escribir notas",
            "notes.preview": "Vista previa",
            "notes.seen": "Mensajes recibidos: {count}",
        },
        "en": {
            "notes.title": "Notes",
            "notes.menu": "Notes",
            "notes.menu.settings": "Notes settings",
            "notes.perm.read": "Read notes",
            "notes.perm.write": "Write notes",
            "notes.preview": "Preview",
            "notes.seen": "Messages received: {count}",
        },
    },
)
