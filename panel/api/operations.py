"""The API's route table, declared once: each :class:`Operation` makes its Starlette route (key check,
scope, body size and type, JSON parsed and validated) and its entry in the OpenAPI 3.1 document.

A new resource adds its handlers and ``Operation`` rows to :data:`panel.api.app.OPERATIONS`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gatewayd.logging import log_event
from gatewayd.store.apikeys import Scope
from gatewayd.store.base import utcnow
from panel.api.auth import Caller, KeyLimits, authorise
from panel.api.models import UNSTORABLE
from panel.api.problems import PROBLEM_TYPE, Problem, ProblemBody

log = logging.getLogger("panel.api")

#: Bytes of a request body: the largest valid one (a 1,600-character text or a 2,000-character webhook
#: URL, every character a 12-byte \u escape pair) fits three times over; more is not a request.
MAX_BODY = 64 * 1024
#: Bytes of a batch's body: 1,000 ASCII texts of 1,600 characters fit; mostly non-ASCII texts (2 to 4
#: bytes a character in UTF-8, 6 or 12 as \u escapes) may need smaller batches.
MAX_BATCH_BODY = 4 * 1024 * 1024
JSON_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the request, its caller, the validated body (or None)."""

    request: Request
    caller: Caller
    body: BaseModel | None
    query: BaseModel | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer: JSON (a model's, or a problem's when ``media`` says so)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    media: str = "application/json"

    @classmethod
    def of(cls, status: int, model: BaseModel) -> Reply:
        return cls(status, model.model_dump(mode="json"))


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    scope: Scope
    summary: str
    #: Status -> the body's model (None: no body, e.g. 204).
    responses: dict[int, type[BaseModel] | None]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    #: (name, description) of headers it reads.
    headers: tuple[tuple[str, str], ...] = ()
    #: (name, description) of headers its successful answers may carry.
    reply_headers: tuple[tuple[str, str], ...] = ()
    #: Problem statuses it may answer besides those of every operation.
    problems: tuple[int, ...] = ()
    #: Bytes its body may have (413 beyond).
    max_body: int = MAX_BODY

    @property
    def operation_id(self) -> str:
        return getattr(self.handler, "__name__", self.path)


#: What any operation may answer: no or a bad key, a missing scope or address, the rate, a conflict.
COMMON_PROBLEMS = (401, 403, 429, 503)
BODY_PROBLEMS = (400, 413, 415, 422)


def problem_from_validation(error: ValidationError, where: str) -> Problem:
    errors = [
        {"loc": [where, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    return Problem(422, "invalid-request", "The request's fields are not valid.", errors=errors)


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = Problem(413, "too-large", f"The body is over {limit} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key given twice is refused, not settled by the last one silently winning."""
    made = dict(pairs)
    if len(made) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Problem(400, "invalid-json", f"An object in the body repeats the key {key[:64]!r}.")
            seen.add(key)
    return made


async def parse_body(request: Request, model: type[BaseModel], limit: int) -> BaseModel:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != JSON_TYPE:
        raise Problem(415, "unsupported-media-type", "Send the body as application/json.")
    raw = await _read_body(request, limit)
    try:
        data = json.loads(raw, object_pairs_hook=_object_without_repeats)
    except (ValueError, UnicodeDecodeError) as error:
        raise Problem(400, "invalid-json", f"The body is not JSON: {error}") from None
    except RecursionError:
        # Arrays or objects nested deeper than the parser's stack (a few hundred kB of "[").
        raise Problem(400, "invalid-json", "The body is nested too deeply.") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise problem_from_validation(error, "body") from None


def parse_query(request: Request, model: type[BaseModel]) -> BaseModel:
    """The query string as ``model``; a parameter given twice is an error, not a silent choice."""
    params = request.query_params
    repeated = sorted({name for name in params if len(params.getlist(name)) > 1})
    if repeated:
        errors = [
            {"loc": ["query", name], "msg": "given more than once", "type": "repeated"} for name in repeated
        ]
        raise Problem(422, "invalid-request", "A query parameter is repeated.", errors=errors)
    try:
        return model.model_validate(dict(params))
    except ValidationError as error:
        raise problem_from_validation(error, "query") from None


def json_reply(reply: Reply) -> Response:
    if reply.status == 204:
        return Response(status_code=204, headers=reply.headers)
    return Response(
        json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")),
        status_code=reply.status,
        media_type=reply.media,
        headers=reply.headers,
    )


def endpoint(operation: Operation, limits: KeyLimits) -> Callable[[Request], Awaitable[Response]]:
    """The route's endpoint; each call is logged (``api.call``: operation, key, status, time): reads
    are counted there, changes are also in the audit trail."""

    async def run(request: Request) -> Response:
        started = time.perf_counter()
        caller: Caller | None = None
        try:
            caller = await authorise(request, limits, operation.scope, utcnow())
            if any(UNSTORABLE.search(str(value)) for value in request.path_params.values()):
                raise Problem(404, "not-found", "No such resource: the path holds NUL or a lone surrogate.")
            body = (
                await parse_body(request, operation.body, operation.max_body)
                if operation.body is not None
                else None
            )
            query = parse_query(request, operation.query) if operation.query is not None else None
            response = json_reply(await operation.handler(Call(request, caller, body, query)))
        except Problem as problem:
            response = problem.response()
        log_event(
            log,
            "api.call",
            operation=operation.operation_id,
            key=caller.public_id if caller is not None else None,
            status=response.status_code,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response

    run.__name__ = operation.operation_id
    return run


def routes(operations: Sequence[Operation], limits: KeyLimits) -> list[Route]:
    return [Route(item.path, endpoint(item, limits), methods=[item.method]) for item in operations]


# --- the OpenAPI 3.1 document -----------------------------------------------------------------------

# ``{name:id}`` is panel.web's database id convertor: 1 to 18 digits.
_PATH_PARAMETER_TYPES: dict[str, dict[str, Any]] = {
    "id": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
    "str": {"type": "string", "minLength": 1},
}


def _path_and_parameters(path: str) -> tuple[str, list[dict[str, Any]]]:
    """``/messages/{mt_id:id}`` -> ``/messages/{mt_id}`` and its parameter."""
    parameters: list[dict[str, Any]] = []
    parts: list[str] = []
    for segment in path.split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            name, _, kind = segment[1:-1].partition(":")
            schema = _PATH_PARAMETER_TYPES[kind or "str"]
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
            segment = "{" + name + "}"
        parts.append(segment)
    return "/".join(parts), parameters


def _response(model: type[BaseModel] | None, ref: Mapping[Any, str]) -> dict[str, Any]:
    if model is None:
        return {"description": "Done; no body"}
    return {
        "description": model.__doc__.strip().splitlines()[0] if model.__doc__ else model.__name__,
        "content": {JSON_TYPE: {"schema": {"$ref": ref[model]}}},
    }


def _problem(ref: str) -> dict[str, Any]:
    return {"description": "A problem (RFC 9457)", "content": {PROBLEM_TYPE: {"schema": {"$ref": ref}}}}


def openapi_document(
    operations: Sequence[Operation], *, title: str, version: str, server: str
) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ProblemBody}
    for item in operations:
        models.update(model for model in item.responses.values() if model is not None)
        if item.body is not None:
            models.add(item.body)
    ordered = sorted(models, key=lambda model: model.__name__)
    keys, definitions = models_json_schema(
        [(model, "validation" if _is_input(model, operations) else "serialization") for model in ordered],
        ref_template="#/components/schemas/{model}",
    )
    ref = {model: keys[(model, mode)]["$ref"] for (model, mode) in keys}
    problem_ref = ref[ProblemBody]
    paths: dict[str, dict[str, Any]] = {}
    for item in operations:
        path, parameters = _path_and_parameters(item.path)
        in_path = bool(parameters)
        if item.query is not None:
            parameters += _query_parameters(item.query)
        parameters += [
            {
                "name": name,
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": text,
            }
            for name, text in item.headers
        ]
        responses: dict[str, Any] = {
            str(status): _response(model, ref) for status, model in item.responses.items()
        }
        if item.reply_headers:
            for response in responses.values():
                response["headers"] = {
                    name: {"description": text, "schema": {"type": "string"}}
                    for name, text in item.reply_headers
                }
        statuses = COMMON_PROBLEMS + item.problems + (BODY_PROBLEMS if item.body is not None else ())
        if item.query is not None:
            statuses += (422,)
        if in_path:
            statuses += (404,)
        for status in sorted(set(statuses)):
            responses[str(status)] = _problem(problem_ref)
        entry: dict[str, Any] = {
            "operationId": item.operation_id,
            "summary": item.summary,
            "security": [{"apiKey": []}],
            "parameters": parameters,
            "responses": responses,
            "x-scope": item.scope.value,
        }
        if item.body is not None:
            entry["requestBody"] = {
                "required": True,
                "description": f"At most {item.max_body:,} bytes (a 413 problem beyond)",
                "content": {JSON_TYPE: {"schema": {"$ref": ref[item.body]}}},
            }
        paths.setdefault(path, {})[item.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "ek_<id>_<secret>"}
            },
        },
    }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One OpenAPI parameter per field of a flat query model (its JSON Schema inlined)."""
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        entry = {key: value for key, value in field_schema.items() if key not in ("title", "description")}
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": entry,
        }
        if "description" in field_schema:
            parameter["description"] = field_schema["description"]
        parameters.append(parameter)
    return parameters


def _is_input(model: type[BaseModel], operations: Sequence[Operation]) -> bool:
    return any(item.body is model for item in operations)
