"""A minimal panel plugin: one page per mode, a form, a permission pair, a startup hook."""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gatewayd.bus.events import Event
from panel.access import public, requires
from panel.runtime import PanelRuntime
from panel.web import render
from plugins.contract import MenuItem, Mode, PermissionSpec, Plugin

HERE = Path(__file__).parent
STARTED: list[str] = []  # database URLs of the panels that ran this plugin's startup hook
RECEIVED: asyncio.Queue[Event] = asyncio.Queue()  # MO events seen by the handler


@requires("notes.read")
async def notes_page(request: Request) -> Response:
    return render(request, "notes/index.html", {"preview": None})


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


async def remember_start(runtime: PanelRuntime) -> None:
    STARTED.append(runtime.settings.database_url)


async def on_mo(event: Event, runtime: PanelRuntime) -> None:
    if event.payload.get("text") == "explode":
        raise ValueError("a handler failure is logged, the subscription goes on")
    await RECEIVED.put(event)


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
    on_startup=remember_start,
    event_handlers={"echat/+/mo": on_mo},
    messages={
        "es": {
            "notes.title": "Notas",
            "notes.menu": "Notas",
            "notes.menu.settings": "Ajustes de notas",
            "notes.perm.read": "Leer notas",
            "notes.perm.write": "Escribir notas",
            "notes.preview": "Vista previa",
        },
        "en": {
            "notes.title": "Notes",
            "notes.menu": "Notes",
            "notes.menu.settings": "Notes settings",
            "notes.perm.read": "Read notes",
            "notes.perm.write": "Write notes",
            "notes.preview": "Preview",
        },
    },
)
