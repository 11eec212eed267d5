"""The HTTP control API (Starlette, JSON) and the virtual phone page. Documented in ``openapi.json``.

Every bad request gets a 4xx with ``{"error": "<what is wrong>"}``: 400 for a bad value, 404 for an
unknown carrier or path, 405 for a wrong method.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from simulator.core import UnknownCarrier
from simulator.mo import MOError
from simulator.msisdn import InvalidMSISDN, normalize_msisdn
from simulator.mtstore import assemble
from simulator.settings import Reader, SettingsError
from smpp.text import MAX_PARTS

if TYPE_CHECKING:
    from simulator.core import Simulator

#: Seconds between SSE comments that keep idle connections (and proxies) alive.
SSE_HEARTBEAT = 15.0
MAX_LIST_LIMIT = 10_000


class BadRequest(ValueError):
    pass


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> Mapping[str, Any]:
    body = await request.body()
    if not body:
        raise BadRequest("body: expected a JSON object, got an empty body")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body: expected a JSON object")
    return data


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
        return float(raw)
    except ValueError:
        raise BadRequest(f"{name}: expected a number (Unix seconds), got {raw!r}") from None


def create_app(simulator: Simulator) -> Starlette:
    """The control API of ``simulator``."""

    async def openapi(request: Request) -> Response:
        return Response(
            resources.files("simulator").joinpath("openapi.json").read_bytes(), media_type="application/json"
        )

    async def phone(request: Request) -> HTMLResponse:
        return HTMLResponse(resources.files("simulator").joinpath("phone.html").read_text("utf-8"))

    async def status(request: Request) -> JSONResponse:
        return JSONResponse(simulator.status())

    async def carriers(request: Request) -> JSONResponse:
        return JSONResponse({"carriers": [c.profile_dict() for c in simulator.carriers.values()]})

    async def carrier(request: Request) -> JSONResponse:
        target = simulator.carrier(request.path_params["name"])
        if request.method == "PATCH":
            simulator.update_profile(target.name, await _json_body(request))
            return JSONResponse(target.profile_dict())
        return JSONResponse({**target.profile_dict(), "status": target.status(simulator.clock())})

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
            return JSONResponse(simulator.start_load(await _json_body(request)), status_code=201)
        if request.method == "DELETE":
            return JSONResponse({"stopped": simulator.stop_load(request.query_params.get("carrier") or None)})
        return JSONResponse({"generators": simulator.load_status()})

    async def trace(request: Request) -> JSONResponse:
        if request.method == "PUT":
            reader = Reader(await _json_body(request))
            raw = reader.raw("path")
            reader.finish()
            if raw is not None and (not isinstance(raw, str) or not raw):
                raise BadRequest("path: expected a file path or null")
            try:
                simulator.set_trace(raw)
            except OSError as exc:
                raise BadRequest(f"path: cannot open {raw!r}: {exc.strerror}") from None
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
        return _error(400, str(exc))

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
    return Starlette(routes=routes, exception_handlers=handlers)


async def _event_stream(simulator: Simulator, carrier: str | None, msisdn: str | None) -> AsyncIterator[str]:
    """Server-sent events from the simulator's own event hub, filtered for one phone (or everything)."""
    try:
        async with simulator.hub.subscribe() as queue:
            simulator.refresh_observers()
            yield ": connected\n\n"
            stopping = asyncio.ensure_future(simulator.stopping.wait())
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
                stopping.cancel()
    finally:
        simulator.refresh_observers()
