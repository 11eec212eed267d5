"""RFC 9457 problem details: every error the API gives, in one shape (``application/problem+json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

PROBLEM_TYPE = "application/problem+json"
#: Problem types are documented in docs/API.md under these anchors.
TYPE_BASE = "https://echat.example/docs/api#"
#: Field errors a problem lists; the rest are only counted (``more_errors``): a body of unknown keys
#: would otherwise make an answer many times its own size.
MAX_LISTED_ERRORS = 20


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where in the request: body / query / header, then the path")
    msg: str
    type: str


class ProblemBody(BaseModel):
    """What every error answers with (RFC 9457)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = Field(None, description=f"The first {MAX_LISTED_ERRORS} field errors")
    more_errors: int | None = Field(None, description="How many field errors are not listed")


class Problem(Exception):
    """An error answered as a problem: ``kind`` names its type (``TYPE_BASE`` + kind)."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or kind)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra
        if errors is not None:
            self.extra["errors"] = list(errors[:MAX_LISTED_ERRORS])
            if len(errors) > MAX_LISTED_ERRORS:
                self.extra["more_errors"] = len(errors) - MAX_LISTED_ERRORS

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.kind,
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
        }
        if self.detail is not None:
            body["detail"] = self.detail
        body.update(self.extra)
        return body

    def response(self) -> Response:
        return Response(
            json.dumps(_encodable(self.body()), ensure_ascii=False),
            status_code=self.status,
            media_type=PROBLEM_TYPE,
            headers=self.headers,
        )


def _encodable(value: Any) -> Any:
    """``value`` with every string UTF-8 can encode: a problem may echo what the request held (a JSON
    key in ``loc``), and a lone surrogate there becomes its escape as text (``\\ud800``)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(item) for item in value]
    return value
