"""The composer the desk's reply and push share with other pages that write an SMS (the mass push):
the live counter, computed by ``smpp.text`` on the text as it will be sent, and the preview of the
rendered text (``telefono`` masked for a reader without the MSISDN permission). The page side is
``static/compose.js`` with the ``_counter.html``, ``_preview.html`` and ``_photos.html`` partials."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gatewayd.masking import MASK
from gatewayd.outbox import MAX_SEGMENTS, Prepared
from panel.web import translate_plural
from routing.variables import render_template
from smpp.text import DraftInfo, draft_info


def counter(request: Request, text: str) -> dict[str, Any]:
    """The reply box's counter, from smpp.text (what the gateway will actually send): give it the
    text rendered (see :func:`draft`)."""
    info: DraftInfo = draft_info(text, max_segments=MAX_SEGMENTS)
    return {
        "encoding": info.encoding,
        "segments": info.segments,
        "units": info.units,
        "units_left": info.units_left,
        "segment_capacity": info.segment_capacity,
        "non_gsm_chars": list(info.non_gsm_chars),
        "fits": info.fits,
        "label": translate_plural(
            request,
            "%(encoding)s · %(segments)s SMS · %(num)d character left",
            "%(encoding)s · %(segments)s SMS · %(num)d characters left",
            info.units_left,
            encoding=info.encoding,
            segments=info.segments,
        ),
    }


def preview(prepared: Prepared, show_msisdn: bool) -> str:
    """What the client will receive, as the panel may show it: rendered from the same variables,
    ``telefono`` masked for an operator without the MSISDN permission."""
    if show_msisdn:
        return prepared.text
    hidden = {**prepared.variables, "telefono": MASK * len(prepared.variables.get("telefono", ""))}
    return render_template(prepared.request.text, hidden)
