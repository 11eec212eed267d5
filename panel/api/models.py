"""The API's bodies: pydantic models (``extra="forbid"``: an unknown field is an error), from which the
OpenAPI document's schemas are generated."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gatewayd.outbox import MAX_SEGMENTS

#: Items of one batch.
MAX_BATCH = 1000
#: Characters of a template's text before rendering (the outbox checks the rendered SMS).
MAX_TEXT = 160 * MAX_SEGMENTS


# What no column can store: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates (no UTF-8 form).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: str) -> str:
    if _UNSTORABLE.search(value):
        raise ValueError("contains NUL or a lone surrogate, which cannot be stored")
    return value


Text = Annotated[str, AfterValidator(_storable)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageIn(Strict):
    """One MT. ``text`` may hold the manual's variables (``{telefono}``, ``{host}``, ``{operador}``,
    ``{hora}``, ``{fecha}``, ``{pais}``), rendered by the gateway."""

    to: Text = Field(min_length=1, max_length=32, description="E.164 (with or without '+') or national")
    text: Text = Field(min_length=1, max_length=MAX_TEXT)
    carrier: Text | None = Field(None, min_length=1, max_length=32, description="Default: automatic")
    source: Text | None = Field(None, min_length=1, max_length=16, description="Source short code")


class BatchIn(Strict):
    items: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


class Queued(BaseModel):
    index: int
    status: Literal["queued"] = "queued"
    id: int = Field(description="The MT's id: GET /messages/{id}")


class Refused(BaseModel):
    index: int
    status: Literal["refused"] = "refused"
    reason: str = Field(
        description="opted_out, banned, ... (the recipient rule), invalid_number, no_route, "
        "empty, unencodable or too_long"
    )
    detail: str


class SendResult(BaseModel):
    queued: int
    refused: int
    items: list[Queued | Refused]


class Part(BaseModel):
    segment: int
    status: str
    smsc_message_id: str | None
    submitted_at: datetime | None
    receipt_state: str | None = Field(description="The receipt's state (DELIVRD, UNDELIV, ...)")
    receipt_at: datetime | None
    error_code: int | None


class Message(BaseModel):
    id: int
    kind: str
    status: str
    carrier: str
    source: str
    to: str | None = Field(description="Only with the msisdn scope")
    client_id: str | None
    text: str
    segments: int
    created_at: datetime
    last_error: str | None
    parts: list[Part]
