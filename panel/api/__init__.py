"""The integrator REST API (issue 14), mounted by the panel at :data:`API_ROOT`: API keys instead of
sessions, JSON in and out, RFC 9457 problem details for every error, an OpenAPI 3.1 document built from
the same pydantic models and route table (:mod:`panel.api.operations`)."""

from __future__ import annotations

API_ROOT = "/api/v1"
