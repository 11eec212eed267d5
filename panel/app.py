"""The panel application factory: plugins assembled into one Starlette app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gatewayd.bus.base import Subscription
from gatewayd.store.engine import create_engine, lookup_session_factory, read_session_factory
from gatewayd.store.errors import is_conflict
from gatewayd.store.store import Store
from panel.access import access_of
from panel.api import API_ROOT
from panel.api.app import create_api
from panel.api.problems import Problem
from panel.api.sweep import idempotency_sweep_loop
from panel.auth.passwords import PasswordHashing, PasswordPolicy
from panel.auth.permissions import PermissionRegistry
from panel.errors import PluginError
from panel.i18n import build_catalogue
from panel.loader import load_plugins
from panel.menu import MenuItem
from panel.middleware import (
    CSRFMiddleware,
    RequestGuardMiddleware,
    SecurityHeadersMiddleware,
    SessionMiddleware,
)
from panel.runtime import STATE_KEY, EventBus, PanelRuntime, StopSignal
from panel.settings import PanelSettings
from panel.templating import CORE_STATIC, build_templates
from panel.types import EventHandler, Plugin, PluginLifespan
from panel.web import error_response
from translations import N_

logger = logging.getLogger(__name__)

# Opens the bus at a URL (e.g. gatewayd's memory:// or mqtt:// factory); the lifespan enters it.
BusFactory = Callable[[str], EventBus]


RouteKey = tuple[str, frozenset[str] | None]


def _check_routes(plugin: Plugin, routes: Iterable[BaseRoute], prefix: str = "") -> list[RouteKey]:
    """Every route declares its access (deny by default); returns (path, methods) for clash checks."""
    keys: list[RouteKey] = []
    for route in routes:
        if isinstance(route, Mount):
            if not route.routes:
                raise PluginError(
                    plugin.name, f"mount {prefix + route.path!r} must hold routes, not a bare app"
                )
            keys.extend(_check_routes(plugin, route.routes, prefix + route.path))
        elif isinstance(route, Route):
            if access_of(route.endpoint) is None:
                raise PluginError(
                    plugin.name,
                    f"route {prefix + route.path!r} declares no access: use @public or @requires()",
                )
            keys.append((prefix + route.path, frozenset(route.methods) if route.methods else None))
        else:
            raise PluginError(plugin.name, f"route {route!r} is neither a Route nor a Mount")
    return keys


def _clashes(methods: frozenset[str] | None, other: frozenset[str] | None) -> bool:
    return methods is None or other is None or bool(methods & other)


def _assemble_routes(plugins: Sequence[Plugin]) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    served: dict[str, list[tuple[frozenset[str] | None, str]]] = {}
    for plugin in plugins:
        for path, methods in _check_routes(plugin, plugin.routes):
            for other_methods, owner in served.get(path, []):
                if _clashes(methods, other_methods):
                    raise PluginError(plugin.name, f"path {path!r} is already served by {owner!r}")
            served.setdefault(path, []).append((methods, plugin.name))
        routes.extend(plugin.routes)
    routes.append(Mount("/static/panel", app=StaticFiles(directory=CORE_STATIC), name="static-panel"))
    for plugin in plugins:
        if plugin.static is not None:
            static = StaticFiles(directory=plugin.static)
            routes.append(Mount(f"/static/{plugin.name}", app=static, name=f"static-{plugin.name}"))
    return routes


def _assemble_menu(plugins: Sequence[Plugin], registry: PermissionRegistry) -> tuple[MenuItem, ...]:
    items: list[MenuItem] = []
    for plugin in plugins:
        for item in plugin.menu_items:
            if item.permission is not None and item.permission not in registry:
                raise PluginError(
                    plugin.name, f"menu item {item.label!r} needs unknown permission {item.permission!r}"
                )
            items.append(item)
    return tuple(sorted(items, key=lambda item: (item.mode.value, item.order, item.label)))


async def _event_handler_loop(
    plugin: str, handler: EventHandler, subscription: Subscription, state: PanelRuntime
) -> None:
    async for event in subscription:
        try:
            await handler(event, state)
        except Exception:  # one bad event must not end the plugin's subscription
            logger.exception(
                "plugin %s: handler for %s failed on %s", plugin, subscription.pattern, event.topic
            )


@asynccontextmanager
async def _plugin_lifespan(plugin: str, lifespan: PluginLifespan, state: PanelRuntime) -> AsyncIterator[None]:
    """A plugin's lifespan as the panel runs it: what it yields is the plugin's state while it runs; a
    failed start names the plugin; a failed stop is logged, so the other plugins, the bus and the
    engine still close."""
    context = lifespan(state)
    try:
        state.plugin_states[plugin] = await context.__aenter__()
    except Exception as exc:
        raise PluginError(plugin, f"lifespan failed to start: {exc}") from exc
    try:
        yield
    finally:
        try:
            await context.__aexit__(None, None, None)
        except Exception:  # one plugin failing to stop must not keep the others, the bus or the engine open
            logger.exception("plugin %s: lifespan failed to stop", plugin)
        finally:
            del state.plugin_states[plugin]


#: Seconds a client is asked to wait before trying a request that collided with another again.
CONFLICT_RETRY_AFTER = 1
#: Seconds the stopping panel gives the idempotency sweep to finish the statement under way.
SWEEP_STOP_GRACE = 2.0


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith(API_ROOT + "/"):
        # A path under the API that its mount does not take (a newline in it): the API's own answer.
        return Problem(status, "not-found" if status == 404 else "error").response()
    return error_response(request, status)


async def _database_error(request: Request, exc: Exception) -> Response:
    """A transaction the database ended because another collided with it (two admins locking each
    other at once: a deadlock) is answered "try again"; nothing was written. Any other database
    error goes on to the server-error handler (500)."""
    if not is_conflict(exc):
        raise exc
    response = error_response(
        request, 503, N_("Another change was being made at the same moment. Please try again.")
    )
    response.headers["retry-after"] = str(CONFLICT_RETRY_AFTER)
    return response


def create_app(
    settings: PanelSettings,
    *,
    engine: AsyncEngine | None = None,
    bus: EventBus | None = None,
    bus_factory: BusFactory | None = None,
    plugins: Sequence[Plugin | str] | None = None,
    stop_signal: StopSignal | None = None,
) -> Starlette:
    """The panel app.

    In the daemon's process pass its `engine` and `bus`; they stay the daemon's. Standalone, leave them
    out: the lifespan creates an engine from `settings.database_url` and, given `bus_factory`, opens the
    bus at `settings.bus_url`, and closes both at shutdown. `plugins` overrides the entry-point group
    (objects or "module:attribute" references). Misconfigured plugins raise `PluginError` here.

    `stop_signal` lets the server end the event streams as soon as it begins to stop (see
    `panel.serve.PanelServer`); the lifespan raises it anyway when it ends.

    Lifespan order: engine, bus, the password-hashing workers, each plugin's lifespan entered (by
    name; what it yields is the plugin's `PluginState`), the API's idempotency sweep; at shutdown the
    stop signal, the event handlers, the sweep, each plugin's lifespan left in reverse order, then
    the hashing workers, the bus and the engine. Only the lifespans that started are left.
    """
    loaded = load_plugins(plugins if plugins is not None else settings.plugins)
    registry = PermissionRegistry.build(loaded)
    catalog = build_catalogue(loaded, settings.default_language)
    menu = _assemble_menu(loaded, registry)
    templates = build_templates(loaded)
    # The integrator API: its own authentication (keys, no cookies), so no plugin's access rules.
    routes = [*_assemble_routes(loaded), Mount(API_ROOT, app=create_api(), name="api")]
    passwords = PasswordPolicy(settings.argon2)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, PanelRuntime]]:
        async with AsyncExitStack() as stack:
            own_engine = engine
            if own_engine is None:
                own_engine = create_engine(settings.database_url, application_name="echat panel")
                stack.push_async_callback(own_engine.dispose)
            own_bus = bus
            if own_bus is None and bus_factory is not None:
                own_bus = await stack.enter_async_context(bus_factory(settings.bus_url))
            hashing = await stack.enter_async_context(
                PasswordHashing(
                    passwords, workers=settings.password_hash_workers, queue=settings.password_hash_queue
                )
            )
            store = Store.for_engine(own_engine)
            state = PanelRuntime(
                settings=settings,
                engine=own_engine,
                sessionmaker=store.sessions,
                readers=read_session_factory(own_engine),
                lookups=lookup_session_factory(own_engine),
                store=store,
                bus=own_bus,
                permissions=registry,
                passwords=passwords,
                hashing=hashing,
                catalog=catalog,
                templates=templates,
                menu=menu,
                stopping=stop_signal or StopSignal(),
            )
            for plugin in loaded:  # the exit stack leaves them in reverse order
                if plugin.lifespan is not None:
                    await stack.enter_async_context(_plugin_lifespan(plugin.name, plugin.lifespan, state))
            handlers = [
                (plugin.name, pattern, handler)
                for plugin in loaded
                for pattern, handler in plugin.event_handlers.items()
            ]
            if handlers and own_bus is None:
                raise PluginError(handlers[0][0], "declares event handlers but the panel has no event bus")
            # Subscribed before the app serves, so no event published after start-up is missed.
            subscriptions: list[tuple[str, EventHandler, Subscription]] = []
            for name, pattern, handler in handlers:
                assert own_bus is not None
                subscription = await stack.enter_async_context(own_bus.subscribe(pattern))
                subscriptions.append((name, handler, subscription))
            async with asyncio.TaskGroup() as tasks:
                running = [
                    tasks.create_task(
                        _event_handler_loop(name, handler, subscription, state),
                        name=f"panel.plugin[{name}].events[{subscription.pattern}]",
                    )
                    for name, handler, subscription in subscriptions
                ]
                sweep = tasks.create_task(
                    idempotency_sweep_loop(state), name="panel.api.idempotency_sweep_loop"
                )
                try:
                    yield {STATE_KEY: state}
                finally:
                    state.stopping.begin()  # the sweep ends by itself, after its statement under way
                    for task in running:
                        task.cancel()
                    # ...unless the database does not answer it: then it is cut, not waited for
                    _, late = await asyncio.wait({sweep}, timeout=SWEEP_STOP_GRACE)
                    for task in late:
                        task.cancel()

    middleware = [
        Middleware(SecurityHeadersMiddleware, hsts=settings.secure_cookies),
        Middleware(
            RequestGuardMiddleware,
            settings=settings,
            uploads=frozenset(path for plugin in loaded for path in plugin.uploads),
        ),
        Middleware(SessionMiddleware),
        Middleware(CSRFMiddleware, trusted_origins=settings.trusted_origins),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, DBAPIError: _database_error, Exception: _http_error},
    )
