"""The control API's OpenAPI document, made from its table of operations and their pydantic models.

Request bodies and query parameters are the models the API validates with; answers are the models
or typed dicts its handlers build. Every operation may answer 403 and 421 (``LocalClientsOnly``);
one with a body may answer 400, 413 and 415; 404 where a carrier is named.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode
from starlette.requests import Request
from starlette.responses import Response
from typing_extensions import TypedDict  # pydantic reads its annotations on Python 3.11

REF: Final = "#/components/schemas/{model}"


class Error(TypedDict):
    """Every refusal: what is wrong, naming the field or the header."""

    error: str


#: The refusals, by status: their description in the document.
_REFUSALS: Final = {
    "400": "a bad value (the message names the field)",
    "403": "an Origin of another site",
    "404": "an unknown carrier or path",
    "413": "a body over 1 MiB",
    "415": "a body without Content-Type: application/json",
    "421": "a Host that is not this server (DNS rebinding)",
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path: its handler, what it takes and what it answers."""

    method: str
    path: str
    endpoint: Callable[[Request], Awaitable[Response]]
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    #: The type of the answer's JSON (a model or a TypedDict); None: an object described by the summary.
    answer: Any = None
    status: int = 200
    content: str = "application/json"
    #: It names a carrier (in the path, the query or the body): 404 when there is no such carrier.
    unknown_carrier: bool = False
    #: Its query parameters may be refused (400).
    bad_query: bool = False


def build_document(*, title: str, description: str, operations: Iterable[Operation]) -> dict[str, Any]:
    operations = tuple(operations)
    wanted: dict[tuple[Any, JsonSchemaMode], None] = {(Error, "serialization"): None}
    for operation in operations:
        if operation.body is not None:
            wanted[(operation.body, "validation")] = None
        if operation.answer is not None:
            wanted[(operation.answer, "serialization")] = None
    generator = GenerateJsonSchema(ref_template=REF)
    refs, definitions = generator.generate_definitions(
        [(kind, mode, TypeAdapter(kind).core_schema) for kind, mode in wanted]
    )
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0", "description": description},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(definitions.items())),
            "responses": {
                status: {
                    "description": text,
                    "content": {"application/json": {"schema": refs[(Error, "serialization")]}},
                }
                for status, text in _REFUSALS.items()
            },
        },
    }


def _operation(operation: Operation, refs: Mapping[tuple[Any, JsonSchemaMode], Any]) -> dict[str, Any]:
    described: dict[str, Any] = {"summary": operation.summary}
    parameters: list[dict[str, Any]] = []
    if "{name}" in operation.path:
        parameters.append(
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "carrier",
            }
        )
    if operation.query is not None:
        for name, schema in operation.query.model_json_schema()["properties"].items():
            parameter = {"name": name, "in": "query", "schema": schema}
            if "description" in schema:
                parameter["description"] = schema.pop("description")
            schema.pop("title", None)
            parameters.append(parameter)
    if parameters:
        described["parameters"] = parameters
    if operation.body is not None:
        described["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(operation.body, "validation")]}},
        }
    answer: dict[str, Any] = {"description": operation.summary}
    if operation.content != "application/json":
        answer["content"] = {operation.content: {"schema": {"type": "string"}}}
    elif operation.answer is None:
        answer["content"] = {"application/json": {"schema": {"type": "object"}}}
    else:
        answer["content"] = {"application/json": {"schema": refs[(operation.answer, "serialization")]}}
    refusals = {"403", "421"}
    if operation.body is not None:
        refusals |= {"400", "413", "415"}
    if operation.bad_query:
        refusals.add("400")
    if operation.unknown_carrier or "{name}" in operation.path:
        refusals.add("404")
    described["responses"] = {
        str(operation.status): answer,
        **{status: {"$ref": f"#/components/responses/{status}"} for status in sorted(refusals)},
    }
    return described
