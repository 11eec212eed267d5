"""The API's OpenAPI 3.1 document and its page: served without a key, every operation of the route
table in it, the page rendered on the server under the panel's content security policy."""

from __future__ import annotations

import pytest

from panel.api.app import OPERATIONS

from ..conftest import PanelClient

pytestmark = pytest.mark.integration


async def test_the_document_lists_every_operation_with_its_scope_and_problems(api: PanelClient) -> None:
    response = await api.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0" and document["servers"] == [{"url": "/api/v1"}]
    served = {(method.upper(), path) for path, methods in document["paths"].items() for method in methods}
    assert len(served) == len(OPERATIONS)
    assert ("POST", "/messages/batch") in served and ("GET", "/messages/{mt_id}") in served
    batch = document["paths"]["/messages/batch"]["post"]
    assert batch["x-scope"] == "send" and {"201", "207", "401", "403", "413", "415", "422", "429"} <= set(
        batch["responses"]
    )
    for status in ("201", "207"):
        assert "Idempotent-Replayed" in batch["responses"][status]["headers"]
    assert "Idempotent-Replayed" in document["paths"]["/messages"]["post"]["responses"]["201"]["headers"]
    assert "MessageIn" in document["components"]["schemas"]
    assert document["components"]["schemas"]["MessageIn"]["additionalProperties"] is False


async def test_the_page_renders_the_document_without_inline_script(api: PanelClient) -> None:
    page = await api.get("/api/v1/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script" not in page.text and "style=" not in page.text
    assert "/api/v1/messages/batch" in page.text and 'id="schema-MessageIn"' in page.text
    css = await api.get("/api/v1/static/api-docs.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
