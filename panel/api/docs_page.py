"""``/api/v1/docs``: the OpenAPI document as a page, rendered on the server from the same document (no
script, no CDN: the panel's content security policy holds), with its stylesheet beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
STATIC = HERE / "static"
_TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


def _schema_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    operations = []
    for path, methods in document["paths"].items():
        for method, entry in methods.items():
            body = entry.get("requestBody", {}).get("content", {})
            responses = [
                (status, _schema_name(next(iter(answer["content"].values()))["schema"]["$ref"]))
                if "content" in answer
                else (status, None)
                for status, answer in entry["responses"].items()
            ]
            operations.append(
                {
                    "id": entry["operationId"],
                    "method": method,
                    "path": document["servers"][0]["url"] + path,
                    "summary": entry["summary"],
                    "scope": entry["x-scope"],
                    "parameters": entry["parameters"],
                    "body": _schema_name(next(iter(body.values()))["schema"]["$ref"]) if body else None,
                    "responses": responses,
                }
            )
    return operations


def render_docs(document: dict[str, Any]) -> str:
    schemas = [
        (name, json.dumps(schema, indent=2, ensure_ascii=False))
        for name, schema in sorted(document["components"]["schemas"].items())
    ]
    return _TEMPLATES.get_template("docs.html").render(
        info=document["info"],
        root=document["servers"][0]["url"],
        operations=_operations(document),
        schemas=schemas,
    )
