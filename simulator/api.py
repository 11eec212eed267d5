"""The HTTP control API (Starlette, JSON) and the virtual phone page. Its OpenAPI document, at
``/openapi.json``, is made from the table of operations below and the models they validate with.

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
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic_core import ErrorDetails
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from settingsfile import MAX_NESTING, Number, Settings, describe, error_key, format_key, too_deep
from simulator.engine import SMSCEngine, UnknownCarrier
from simulator.errors import SettingsError
from simulator.faults import ActiveFaults, FaultPatch
from simulator.loadgen import LoadGenerators, LoadSpec
from simulator.mo import MOError
from simulator.msisdn import InvalidMSISDN, normalize_msisdn
from simulator.mtstore import MTList, assemble
from simulator.openapi import Operation, build_document
from simulator.phone import choose_language, render_phone
from simulator.profiles import CarrierProfile
from simulator.trace import TRACE_NAME
from smpp.text import MAX_PARTS

API_DESCRIPTION: Final = (
    "Control a running SMSC simulator: inject MOs, list received MTs, set carrier profiles and faults, "
    'read counters, run the load generator, trace PDUs. Errors are JSON {"error": message}: 400 for a '
    "bad value (the message names the field), 404 for an unknown carrier or path, 405 for a wrong method, "
    "413 for a body over 1 MiB, 415 for a body that is not Content-Type: application/json. Bodies are "
    "strict JSON: no NaN or Infinity, integers of at most 64 bits, at most 32 levels of nesting. Only "
    "this machine's own clients are served, never a web page of another site: a Host header other than "
    "the listen host, localhost, 127.0.0.1 or [::1] (any IP address when listening on 0.0.0.0 or ::) is "
    "refused with 421 (DNS rebinding), and an Origin header other than this server's own (http:// and "
    "the request's Host) with 403."
)
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


def problem_text(error: ErrorDetails) -> str:
    """``key: message`` for one validation error of a body or a query."""
    return f"{format_key(error_key(error))}: {describe(error, table='object')}"


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


class MORequest(Settings):
    """An MO to inject: from a subscriber of the carrier's country to one of its short codes."""

    model_config = ConfigDict(populate_by_name=True)

    carrier: str = Field(min_length=1)
    sender: str = Field(alias="from", min_length=1, description="MSISDN, national or international")
    to: str = Field(min_length=1, description="one of the carrier's short codes")
    text: str
    encoding: Literal["auto", "gsm7", "ucs2", "latin1"] = "auto"
    order: Literal["in_order", "reverse", "shuffle"] = Field(
        "in_order", description="order the parts are sent in"
    )
    max_parts: int = Field(MAX_PARTS, ge=1, le=MAX_PARTS)


class TraceRequest(Settings):
    """The trace file to write (a name in the trace directory), or null to stop tracing."""

    name: Annotated[str, WithJsonSchema({"type": "string", "pattern": f"^{TRACE_NAME.pattern}$"})] | None = (
        None
    )


class _Query(BaseModel):
    """Query parameters; others are ignored (a browser or a proxy may add its own)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class MTQuery(_Query):
    carrier: str | None = None
    destination: str | None = Field(None, description="MSISDN as the ESME sent it")
    source: str | None = None
    since_id: int | None = Field(None, ge=0, description="only ids above this")
    since: Number | None = Field(None, description="Unix time")
    limit: int = Field(100, ge=1, le=MAX_LIST_LIMIT)
    view: Literal["parts", "messages"] = "parts"


class CarrierQuery(_Query):
    carrier: str | None = None


class EventsQuery(_Query):
    carrier: str | None = None
    msisdn: str | None = Field(None, description="only this subscriber's events (with carrier)")


Q = TypeVar("Q", bound=_Query)


def _query(request: Request, model: type[Q]) -> Q:
    return model.model_validate({name: value for name, value in request.query_params.items() if value})


def _simulator(request: Request) -> SMSCEngine:
    simulator: SMSCEngine = request.app.state.simulator
    return simulator


def _path_carrier(request: Request) -> str:
    return _simulator(request).carrier(request.path_params["name"]).name


# --- the operations ------------------------------------------------------------------------------


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def _phone(request: Request) -> HTMLResponse:
    language = choose_language(request.query_params.get("lang"), request.headers.get("accept-language"))
    return HTMLResponse(
        render_phone(language), headers={"Content-Language": language, "Vary": "Accept-Language"}
    )


async def _status(request: Request) -> JSONResponse:
    return JSONResponse(_simulator(request).status())


async def _carriers(request: Request) -> JSONResponse:
    simulator = _simulator(request)
    return JSONResponse({"carriers": [simulator.profile_dict(name) for name in simulator.carriers]})


async def _carrier(request: Request) -> JSONResponse:
    simulator, name = _simulator(request), _path_carrier(request)
    return JSONResponse({**simulator.profile_dict(name), "status": simulator.carrier_status(name)})


async def _patch_carrier(request: Request) -> JSONResponse:
    simulator, name = _simulator(request), _path_carrier(request)
    simulator.update_profile(name, await _json_body(request))
    return JSONResponse(simulator.profile_dict(name))


async def _faults(request: Request) -> JSONResponse:
    simulator, name = _simulator(request), _path_carrier(request)
    return JSONResponse(simulator.carrier(name).faults.to_dict(simulator.clock()))


async def _set_faults(request: Request) -> JSONResponse:
    simulator, name = _simulator(request), _path_carrier(request)
    patch = FaultPatch.model_validate(await _json_body(request))
    return JSONResponse(simulator.set_faults(name, patch))


async def _clear_faults(request: Request) -> JSONResponse:
    simulator, name = _simulator(request), _path_carrier(request)
    simulator.clear_faults(name)
    return JSONResponse(simulator.carrier(name).faults.to_dict(simulator.clock()))


async def _clear_all_faults(request: Request) -> JSONResponse:
    simulator = _simulator(request)
    simulator.clear_faults()
    return JSONResponse({"cleared": list(simulator.carriers)})


async def _inject(request: Request) -> JSONResponse:
    mo = MORequest.model_validate(await _json_body(request))
    result = _simulator(request).inject_mo(
        mo.carrier, mo.sender, mo.to, mo.text, encoding=mo.encoding, order=mo.order, max_parts=mo.max_parts
    )
    return JSONResponse(result, status_code=202)


async def _mts(request: Request) -> JSONResponse:
    simulator = _simulator(request)
    query = _query(request, MTQuery)
    if query.carrier is not None:
        simulator.carrier(query.carrier)
    records = simulator.store.query(
        carrier=query.carrier,
        destination=query.destination,
        source=query.source,
        since_id=query.since_id,
        since_time=query.since,
        limit=query.limit,
    )
    body: MTList = {"last_id": simulator.store.last_id}
    if query.view == "parts":
        body["mts"] = [record.to_dict() for record in records]
    else:
        body["messages"] = assemble(records)
    return JSONResponse(body)


async def _counters(request: Request) -> JSONResponse:
    return JSONResponse(_simulator(request).counters())


async def _reset(request: Request) -> JSONResponse:
    simulator = _simulator(request)
    simulator.reset()
    return JSONResponse(simulator.counters())


def _loads(request: Request) -> LoadGenerators:
    loads: LoadGenerators = request.app.state.loads
    return loads


async def _load_status(request: Request) -> JSONResponse:
    return JSONResponse({"generators": _loads(request).status()})


async def _start_load(request: Request) -> JSONResponse:
    spec = LoadSpec.model_validate(await _json_body(request))
    return JSONResponse(_loads(request).start(spec), status_code=201)


async def _stop_load(request: Request) -> JSONResponse:
    return JSONResponse({"stopped": _loads(request).stop(_query(request, CarrierQuery).carrier)})


def _trace_state(simulator: SMSCEngine) -> JSONResponse:
    tracer = simulator.tracer
    return JSONResponse(
        {"path": None if tracer is None else tracer.path, "lines": 0 if tracer is None else tracer.lines}
    )


async def _trace(request: Request) -> JSONResponse:
    return _trace_state(_simulator(request))


async def _set_trace(request: Request) -> JSONResponse:
    simulator = _simulator(request)
    simulator.trace_to(TraceRequest.model_validate(await _json_body(request)).name)
    return _trace_state(simulator)


async def _events(request: Request) -> StreamingResponse:
    simulator = _simulator(request)
    query = _query(request, EventsQuery)
    msisdn = query.msisdn
    if query.carrier is not None:
        target = simulator.carrier(query.carrier)
        if msisdn is not None:
            msisdn = normalize_msisdn(msisdn, target.profile.country)
    return StreamingResponse(
        _event_stream(simulator, query.carrier, msisdn),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


_CARRIER = "/api/carriers/{name}"
#: Every operation of the API: the routes are made from this table, and so is the OpenAPI document.
OPERATIONS: Final = (
    Operation("GET", "/openapi.json", _openapi, "This document"),
    Operation("GET", "/phone", _phone, "The virtual phone page", content="text/html"),
    Operation("GET", "/api/status", _status, "Carriers, their binds, queued deliver_sm and active faults"),
    Operation("GET", "/api/carriers", _carriers, "Every carrier profile (passwords masked)"),
    Operation("GET", _CARRIER, _carrier, "One carrier profile with its live status", answer=CarrierProfile),
    Operation(
        "PATCH",
        _CARRIER,
        _patch_carrier,
        "Change a profile while running (any subset of the fields; host and port are fixed)",
        body=CarrierProfile,
        answer=CarrierProfile,
    ),
    Operation("GET", f"{_CARRIER}/faults", _faults, "Active faults", answer=ActiveFaults),
    Operation(
        "POST",
        f"{_CARRIER}/faults",
        _set_faults,
        "Set faults (keys given are changed, false/null clears one; drop.now drops every connection)",
        body=FaultPatch,
        answer=ActiveFaults,
    ),
    Operation(
        "DELETE", f"{_CARRIER}/faults", _clear_faults, "Clear every fault of the carrier", answer=ActiveFaults
    ),
    Operation("DELETE", "/api/faults", _clear_all_faults, "Clear every fault of every carrier"),
    Operation(
        "POST",
        "/api/mo",
        _inject,
        "Inject one MO (split into UDH parts when long); queued while no receiver is bound",
        body=MORequest,
        status=202,
        unknown_carrier=True,
    ),
    Operation(
        "GET",
        "/api/mts",
        _mts,
        "MTs received (oldest first), as PDUs (view=parts) or reassembled messages (view=messages)",
        query=MTQuery,
        answer=MTList,
        unknown_carrier=True,
        bad_query=True,
    ),
    Operation(
        "GET",
        "/api/counters",
        _counters,
        "PDUs in/out by command, binds, MT/MO/receipt counts, throughput over the last 1 and 10 s",
    ),
    Operation("POST", "/api/reset", _reset, "Zero the counters and forget stored MTs"),
    Operation("GET", "/api/load", _load_status, "Running load generators"),
    Operation(
        "POST",
        "/api/load",
        _start_load,
        "Start (or replace) the load generator of a carrier",
        body=LoadSpec,
        status=201,
        unknown_carrier=True,
    ),
    Operation(
        "DELETE",
        "/api/load",
        _stop_load,
        "Stop the load generator of ?carrier=, or all",
        query=CarrierQuery,
        unknown_carrier=True,
    ),
    Operation("GET", "/api/trace", _trace, "PDU trace state"),
    Operation(
        "PUT",
        "/api/trace",
        _set_trace,
        "Start tracing every PDU as JSON lines to the file name in the trace directory, or stop with null",
        body=TraceRequest,
    ),
    Operation(
        "GET",
        "/api/events",
        _events,
        "Server-sent events: mo, mt, receipt, binds (filter by carrier and msisdn)",
        query=EventsQuery,
        content="text/event-stream",
        unknown_carrier=True,
        bad_query=True,
    ),
)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the control API, made from :data:`OPERATIONS` and their models."""
    return build_document(
        title="eChat SMSC simulator control API",
        description=API_DESCRIPTION,
        operations=OPERATIONS,
    )


async def _on_bad_request(request: Request, exc: Exception) -> Response:
    return _error(exc.status if isinstance(exc, BadRequest) else 400, str(exc))


async def _on_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return _error(400, "; ".join(problem_text(error) for error in exc.errors()))


async def _on_unknown_carrier(request: Request, exc: Exception) -> Response:
    return _error(404, str(exc))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")


def create_app(simulator: SMSCEngine, loads: LoadGenerators) -> Starlette:
    """The control API of ``simulator`` and its ``loads``."""
    methods: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        methods.setdefault(operation.path, {})[operation.method] = operation.endpoint
    routes = [
        Route(path, _dispatch(by_method), methods=list(by_method)) for path, by_method in methods.items()
    ]
    handlers: dict[Any, Any] = {
        BadRequest: _on_bad_request,
        SettingsError: _on_bad_request,
        MOError: _on_bad_request,
        InvalidMSISDN: _on_bad_request,
        ValidationError: _on_invalid,
        UnknownCarrier: _on_unknown_carrier,
        HTTPException: _on_http_error,
    }
    guard = Middleware(LocalClientsOnly, control_host=simulator.config.control_host)
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[guard])
    app.state.simulator = simulator
    app.state.loads = loads
    return app


def _dispatch(by_method: dict[str, Any]) -> Any:
    if len(by_method) == 1:
        return next(iter(by_method.values()))

    async def endpoint(request: Request) -> Response:
        handler = by_method.get(request.method) or by_method["GET"]  # HEAD is a GET without the body
        response: Response = await handler(request)
        return response

    return endpoint


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
