"""The HTTP control API (Starlette, JSON) and the virtual phone page. Documented in ``openapi.json``.

Every bad request gets a 4xx with ``{"error": "<what is wrong>"}``: 400 for a bad value, 404 for an
unknown carrier or path, 405 for a wrong method, 413 for a body over 1 MiB, 415 for a body that is not
``application/json``.

Only this machine's own clients may drive it: a web page on another site must not. The browser sends
such a page's requests with the page's ``Origin`` (refused, 403) and, through DNS rebinding (a name of
the attacker's that resolves to 127.0.0.1), with the attacker's name as ``Host`` (refused, 421). Bodies
must say ``application/json``, a type no page can send to another site without the browser asking
first.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from simulator.engine import SMSCEngine, UnknownCarrier
from simulator.loadgen import LoadGenerators
from simulator.mo import MOError
from simulator.msisdn import InvalidMSISDN, normalize_msisdn
from simulator.mtstore import assemble
from simulator.settings import MAX_NESTING, Reader, SettingsError, finite, too_deep
from smpp.text import MAX_PARTS

#: Seconds between SSE comments that keep idle connections (and proxies) alive.
SSE_HEARTBEAT = 15.0
MAX_LIST_LIMIT = 10_000
#: The largest request body read; the largest valid one (an MO of 255 parts) is a fraction of it.
MAX_BODY_BYTES = 1 << 20
#: Digits of the largest 64-bit integer: a longer JSON integer is refused while parsing.
_MAX_INTEGER_DIGITS = 19


class BadRequest(ValueError):
    """A request refused; ``status`` says why (400: a bad value)."""

    status = 400


class BodyTooLarge(BadRequest):
    status = 413


class NotJSON(BadRequest):
    status = 415


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> Mapping[str, Any]:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise NotJSON(f"body: Content-Type must be application/json, not {media_type or 'none'!r}")
    body = await _read_body(request)
    if not body:
        raise BadRequest("body: expected a JSON object, got an empty body")
    data = _parse_json(body)
    if not isinstance(data, dict):
        raise BadRequest("body: expected a JSON object")
    return data


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"body: more than {MAX_BODY_BYTES:,} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(f"body: more than {MAX_BODY_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(body: bytes) -> object:
    """Strict JSON (RFC 8259): no NaN or Infinity, no number a double or a 64-bit integer cannot hold,
    at most ``MAX_NESTING`` levels; each refused with a clear message, never a server error."""
    try:
        data = json.loads(
            body, parse_constant=_json_constant, parse_int=_json_integer, parse_float=_json_float
        )
    except RecursionError:
        raise BadRequest(f"body: nested deeper than {MAX_NESTING} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body: not valid JSON: {exc}") from None
    if too_deep(data):
        raise BadRequest(f"body: nested deeper than {MAX_NESTING} levels")
    return data


def _json_constant(name: str) -> float:
    raise BadRequest(f"body: {name} is not valid JSON (numbers must be finite)")


def _json_integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INTEGER_DIGITS:
        raise BadRequest(f"body: an integer of {digits} digits is more than 64 bits hold")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BadRequest(f"body: the number {text[:40]} is beyond the range of a double")
    return value


def _query_int(
    request: Request, name: str, default: int | None, minimum: int, maximum: int | None = None
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}: expected an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}-{maximum}" if maximum is not None else f">= {minimum}"
        raise BadRequest(f"{name}: must be {bound}, got {value}")
    return value


def _query_float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name}: expected a number (Unix seconds), got {raw!r}") from None
    return finite(name, value)


def create_app(simulator: SMSCEngine, loads: LoadGenerators) -> Starlette:
    """The control API of ``simulator`` and its ``loads``."""

    async def openapi(request: Request) -> Response:
        return Response(
            resources.files("simulator").joinpath("openapi.json").read_bytes(), media_type="application/json"
        )

    async def phone(request: Request) -> HTMLResponse:
        return HTMLResponse(resources.files("simulator").joinpath("phone.html").read_text("utf-8"))

    async def status(request: Request) -> JSONResponse:
        return JSONResponse(simulator.status())

    async def carriers(request: Request) -> JSONResponse:
        return JSONResponse({"carriers": [simulator.profile_dict(name) for name in simulator.carriers]})

    async def carrier(request: Request) -> JSONResponse:
        target = simulator.carrier(request.path_params["name"])
        if request.method == "PATCH":
            simulator.update_profile(target.name, await _json_body(request))
            return JSONResponse(simulator.profile_dict(target.name))
        return JSONResponse(
            {**simulator.profile_dict(target.name), "status": simulator.carrier_status(target.name)}
        )

    async def faults(request: Request) -> JSONResponse:
        target = simulator.carrier(request.path_params["name"])
        if request.method == "POST":
            return JSONResponse(simulator.set_faults(target.name, await _json_body(request)))
        if request.method == "DELETE":
            simulator.clear_faults(target.name)
        return JSONResponse(target.faults.to_dict(simulator.clock()))

    async def clear_all_faults(request: Request) -> JSONResponse:
        simulator.clear_faults()
        return JSONResponse({"cleared": list(simulator.carriers)})

    async def inject(request: Request) -> JSONResponse:
        reader = Reader(await _json_body(request))
        carrier_name = reader.string("carrier", allow_empty=False)
        sender = reader.string("from", allow_empty=False)
        short_code = reader.string("to", allow_empty=False)
        text = reader.string("text")
        encoding = reader.string("encoding", "auto")
        order = reader.string("order", "in_order")
        max_parts = reader.integer("max_parts", MAX_PARTS, minimum=1, maximum=MAX_PARTS)
        reader.finish()
        result = simulator.inject_mo(
            carrier_name, sender, short_code, text, encoding=encoding, order=order, max_parts=max_parts
        )
        return JSONResponse(result, status_code=202)

    async def mts(request: Request) -> JSONResponse:
        carrier_name = request.query_params.get("carrier") or None
        if carrier_name is not None:
            simulator.carrier(carrier_name)
        view = request.query_params.get("view", "parts")
        if view not in ("parts", "messages"):
            raise BadRequest(f"view: {view!r} is not one of parts, messages")
        records = simulator.store.query(
            carrier=carrier_name,
            destination=request.query_params.get("destination") or None,
            source=request.query_params.get("source") or None,
            since_id=_query_int(request, "since_id", None, 0),
            since_time=_query_float(request, "since"),
            limit=_query_int(request, "limit", 100, 1, MAX_LIST_LIMIT) or 100,
        )
        body: dict[str, Any] = {"last_id": simulator.store.last_id}
        if view == "parts":
            body["mts"] = [record.to_dict() for record in records]
        else:
            body["messages"] = assemble(records)
        return JSONResponse(body)

    async def counters(request: Request) -> JSONResponse:
        return JSONResponse(simulator.counters())

    async def reset(request: Request) -> JSONResponse:
        simulator.reset()
        return JSONResponse(simulator.counters())

    async def load(request: Request) -> JSONResponse:
        if request.method == "POST":
            return JSONResponse(loads.start(await _json_body(request)), status_code=201)
        if request.method == "DELETE":
            return JSONResponse({"stopped": loads.stop(request.query_params.get("carrier") or None)})
        return JSONResponse({"generators": loads.status()})

    async def trace(request: Request) -> JSONResponse:
        if request.method == "PUT":
            reader = Reader(await _json_body(request))
            name = reader.raw("name")
            reader.finish()
            if name is not None and not isinstance(name, str):
                raise BadRequest("name: expected a file name or null")
            simulator.trace_to(name)
        tracer = simulator.tracer
        return JSONResponse(
            {"path": None if tracer is None else tracer.path, "lines": 0 if tracer is None else tracer.lines}
        )

    async def events(request: Request) -> StreamingResponse:
        carrier_name = request.query_params.get("carrier") or None
        msisdn = request.query_params.get("msisdn") or None
        if carrier_name is not None:
            target = simulator.carrier(carrier_name)
            if msisdn is not None:
                msisdn = normalize_msisdn(msisdn, target.profile.country)
        stream = _event_stream(simulator, carrier_name, msisdn)
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def on_bad_request(request: Request, exc: Exception) -> Response:
        return _error(exc.status if isinstance(exc, BadRequest) else 400, str(exc))

    async def on_unknown_carrier(request: Request, exc: Exception) -> Response:
        return _error(404, str(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    routes = [
        Route("/openapi.json", openapi),
        Route("/phone", phone),
        Route("/api/status", status),
        Route("/api/carriers", carriers),
        Route("/api/carriers/{name}", carrier, methods=["GET", "PATCH"]),
        Route("/api/carriers/{name}/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/api/faults", clear_all_faults, methods=["DELETE"]),
        Route("/api/mo", inject, methods=["POST"]),
        Route("/api/mts", mts),
        Route("/api/counters", counters),
        Route("/api/reset", reset, methods=["POST"]),
        Route("/api/load", load, methods=["GET", "POST", "DELETE"]),
        Route("/api/trace", trace, methods=["GET", "PUT"]),
        Route("/api/events", events),
    ]
    handlers: dict[Any, Any] = {
        BadRequest: on_bad_request,
        SettingsError: on_bad_request,
        MOError: on_bad_request,
        InvalidMSISDN: on_bad_request,
        UnknownCarrier: on_unknown_carrier,
        HTTPException: on_http_error,
    }
    guard = Middleware(LocalClientsOnly, control_host=simulator.config.control_host)
    return Starlette(routes=routes, exception_handlers=handlers, middleware=[guard])


class LocalClientsOnly:
    """Refuses the requests a web page on another site can make a browser send here (see the module
    docstring): a ``Host`` that is not this server's with 421, a cross-site ``Origin`` with 403.

    Accepted hosts: the configured listen host, ``localhost``, ``127.0.0.1`` and ``::1``; when the API
    listens on every address (``0.0.0.0`` / ``::``), any IP address too. A name resolved by DNS is never
    accepted unless it is the listen host: that is what DNS rebinding needs. An ``Origin`` must be this
    very server (``http://`` plus the request's own ``Host``), as it is for the virtual phone.
    """

    def __init__(self, app: ASGIApp, control_host: str) -> None:
        self.app = app
        listen = _host_name(control_host)
        self.hosts = frozenset({listen, "localhost", "127.0.0.1", "::1"} - {""})
        self.any_address = listen in ("0.0.0.0", "::")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(Headers(scope=scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: Headers) -> Response | None:
        host = headers.get("host", "")
        if not self._known_host(_host_name(host)):
            return _error(421, f"Host {host!r} is not this server: use http://127.0.0.1 or http://localhost")
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"http://{host.lower()}":
            return _error(403, f"Origin {origin!r}: requests from other sites are refused")
        return None

    def _known_host(self, name: str) -> bool:
        if name in self.hosts:
            return True
        if not self.any_address:
            return False
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True


def _host_name(authority: str) -> str:
    """The host of ``host[:port]`` / ``[v6]:port``, lower-case and without brackets."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else ""
    return authority.rpartition(":")[0] if authority.count(":") == 1 else authority


async def _event_stream(simulator: SMSCEngine, carrier: str | None, msisdn: str | None) -> AsyncIterator[str]:
    """Server-sent events from the simulator's own event hub, filtered for one phone (or everything)."""
    try:
        async with simulator.hub.subscribe() as queue:
            simulator.refresh_observers()
            yield ": connected\n\n"
            stopping = asyncio.ensure_future(simulator.stopping.wait())
            getter: asyncio.Future[dict[str, Any]] | None = None
            try:
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait(
                        {getter, stopping}, timeout=SSE_HEARTBEAT, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        getter.cancel()
                        if stopping in done:
                            return
                        yield ": heartbeat\n\n"
                        continue
                    event = getter.result()
                    if carrier is not None and event.get("carrier") != carrier:
                        continue
                    if msisdn is not None and event.get("msisdn") not in (msisdn, None):
                        continue
                    yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
            finally:
                # a client that leaves cancels this generator while it waits: neither wait may outlive it
                stopping.cancel()
                if getter is not None:
                    getter.cancel()
    finally:
        simulator.refresh_observers()
