"""The API's answers to what goes wrong below it: a transaction the database ended because another
collided with it is a 503 problem with Retry-After (nothing was done: try again); any other error a
500 problem, never the panel's HTML page."""

from __future__ import annotations

import json

from sqlalchemy.exc import DBAPIError
from starlette.requests import Request

from panel.api.app import _database_error
from panel.api.problems import Problem


class _Deadlock(Exception):
    sqlstate = "40P01"


class _Broken(Exception):
    sqlstate = "XX000"


def _request() -> Request:
    return Request(
        {"type": "http", "method": "POST", "path": "/api/v1/messages", "headers": [], "query_string": b""}
    )


async def test_a_conflict_is_a_503_problem_with_retry_after() -> None:
    response = await _database_error(_request(), DBAPIError("INSERT ...", {}, _Deadlock()))
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.media_type == "application/problem+json"
    body = json.loads(bytes(response.body))
    assert body["type"].endswith("#conflict") and body["status"] == 503


async def test_another_database_error_is_a_500_problem() -> None:
    response = await _database_error(_request(), DBAPIError("INSERT ...", {}, _Broken()))
    assert response.status_code == 500 and response.media_type == "application/problem+json"


def test_a_problem_renders_any_string_a_request_held() -> None:
    """Lone surrogates (a JSON key echoed in ``loc``, a detail) become their escapes as text."""
    problem = Problem(
        422,
        "invalid-request",
        "bad \udfff",
        errors=[{"loc": ["body", "\ud800", 0, "é"], "msg": "Extra inputs are not permitted", "type": "x"}],
    )
    body = json.loads(bytes(problem.response().body).decode("utf-8"))
    assert body["detail"] == "bad \\udfff"
    assert body["errors"][0]["loc"] == ["body", "\\ud800", 0, "é"]
