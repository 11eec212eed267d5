"""The mass push's pages (manual 1.6), for those holding ``campaigns.manage``: the campaigns with their
progress (/admin/campaigns), the new-campaign form with its audience size (a JSON endpoint the page
calls as the filters change, and a "Count audience" button without JavaScript), its live counter and
its preview for a sample client of the audience, and each campaign's page with live progress and
pause / resume / cancel (audited in the transaction that changes it). The daemon's sender
(``gatewayd.campaigns``) starts and sends them."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gatewayd.outbox import MTRequest, Outbox, OutboxError
from gatewayd.store.base import utcnow
from gatewayd.store.campaigns import Campaign, CampaignStatus
from gatewayd.store.enums import MTKind
from gatewayd.store.repo_campaigns import (
    ACTIONS,
    AudienceSpec,
    TooSlow,
    audience_sample,
    audience_size,
    cancel_campaign_mts,
    change_status,
    get_campaign,
    list_campaigns,
    time_limit,
)
from gatewayd.store.store import Store
from gatewayd.store.subscribers import Subscriber
from panel.access import requires
from panel.audit import audit
from panel.auth.permissions import PANEL_ACCESS
from panel.i18n import zone_or_utc
from panel.web import (
    db,
    db_read,
    error_response,
    language,
    panel,
    render,
    require_user,
    translate,
    translate_plural,
)
from plugins.campaigns.forms import ERRORS, CampaignForm
from plugins.campaigns.permissions import CAMPAIGNS_MANAGE
from plugins.desk.compose import counter, preview
from plugins.desk.permissions import OPERATOR_SEE_MSISDN
from plugins.gallery.links import photo_picker
from smpp.errors import SMPPError
from translations import N_, NP_

CAMPAIGNS_PATH = "/admin/campaigns"

#: The context of the statuses' names (a cancelled campaign is not a cancelled MT: their words differ).
STATUS_CONTEXT = "campaign"
STATUS_LABELS = {
    CampaignStatus.DRAFT: NP_("campaign", "Draft"),
    CampaignStatus.SCHEDULED: NP_("campaign", "Scheduled"),
    CampaignStatus.RUNNING: NP_("campaign", "Sending"),
    CampaignStatus.PAUSED: NP_("campaign", "Paused"),
    CampaignStatus.FINISHED: NP_("campaign", "Finished"),
    CampaignStatus.CANCELLED: NP_("campaign", "Cancelled"),
}
#: The actions the campaign's page offers in each status.
OFFERED = {
    CampaignStatus.SCHEDULED: ("pause", "cancel"),
    CampaignStatus.RUNNING: ("pause", "cancel"),
    CampaignStatus.PAUSED: ("resume", "cancel"),
}
NOTICES = {
    "created": N_("The campaign is scheduled: the gateway sends it from the time you chose."),
    "started": N_("The campaign is under way: the gateway starts sending it now."),
    "pause": N_("The campaign is paused: no more messages are queued until you resume it."),
    "resume": N_("The campaign goes on."),
    "cancel": N_("The campaign is cancelled: its messages not yet sent were withdrawn."),
}
#: The progress figures, in the order the page shows them.
PROGRESS = ("total", "pending", "queued", "sent", "delivered", "failed", "refused", "cancelled", "skipped")


def _choices(request: Request) -> tuple[list[str], list[str]]:
    settings = panel(request).settings.outbox
    services = sorted({item.name for item in settings.services})
    carriers = sorted({item.name for item in settings.carriers})
    return services, carriers


def _progress(campaign: Campaign) -> dict[str, int]:
    return {name: int(getattr(campaign, name)) for name in PROGRESS}


@requires(PANEL_ACCESS, CAMPAIGNS_MANAGE)
async def campaigns_page(request: Request) -> Response:
    async with db_read(request) as session:
        campaigns = await list_campaigns(session)
    context = {"campaigns": campaigns, "labels": _labels(request), "progress": _progress}
    return render(request, "campaigns/list.html", context)


async def _form_page(
    request: Request, form: CampaignForm, *, size: int | None = None, status_code: int = 200
) -> Response:
    services, carriers = _choices(request)
    text = form.text
    info = counter(request, "")
    with contextlib.suppress(SMPPError):
        info = counter(request, text)
    context = {
        "form": form,
        "services": services,
        "carriers": carriers,
        "size": size,
        "counter": info,
        **await photo_picker(request),
    }
    return render(request, "campaigns/new.html", context, status_code=status_code)


@requires(PANEL_ACCESS, CAMPAIGNS_MANAGE)
async def new_page(request: Request) -> Response:
    return await _form_page(request, CampaignForm())


def _spec(request: Request, form: CampaignForm) -> AudienceSpec | None:
    services, carriers = _choices(request)
    return form.audience(services, carriers)


@requires(PANEL_ACCESS, CAMPAIGNS_MANAGE)
async def create(request: Request) -> Response:
    """``action=count``: the form again with its audience size; ``action=send``: the campaign is created
    and scheduled (now or at the date given), audited in the same transaction; else a 400."""
    user = require_user(request)
    data = await request.form()
    form = CampaignForm.read(data)
    spec = _spec(request, form)
    now = utcnow()
    if data.get("action") == "count":
        if spec is None:
            return await _form_page(request, form, status_code=400)
        async with db_read(request) as session:
            size = await audience_size(session, spec, now)
        return await _form_page(request, form, size=size)
    if data.get("action") != "send":
        # Only the form's own button schedules: a request without it (a replay, a script, another
        # form) sends no SMS to anyone; it gets the form back.
        form.errors["action"] = ERRORS["action"]
        return await _form_page(request, form, status_code=400)
    checked = form.check_campaign(zone_or_utc(user.timezone), now)
    if spec is None or checked is None:
        return await _form_page(request, form, status_code=400)
    tps, start = checked
    async with db(request) as session, session.begin():
        campaign = Campaign(
            name=form.name,
            text=form.text,
            last_pushes=spec.last_pushes,
            include_new=spec.include_new,
            service=spec.service,
            carrier=spec.carrier,
            country=spec.country,
            active_days=spec.active_days,
            tps=tps,
            ignore_quiet_hours=form.ignore_quiet_hours,
            status=CampaignStatus.SCHEDULED,
            scheduled_at=start,
            created_by=user.username,
            created_at=now,
            updated_at=now,
        )
        session.add(campaign)
        await session.flush()
        details = {
            "before": None,
            "after": {
                "name": campaign.name,
                "text": campaign.text,
                "audience": asdict(spec),
                "tps": tps,
                "ignore_quiet_hours": campaign.ignore_quiet_hours,
                "scheduled_at": start.isoformat(),
            },
        }
        await audit(session, request, "campaign.create", subject=f"campaign:{campaign.id}", details=details)
    notice = "created" if form.when == "at" else "started"
    return RedirectResponse(f"{CAMPAIGNS_PATH}/{campaign.id}?notice={notice}", status_code=303)


#: How long the live figures wait for the audience (PostgreSQL): the count as the filters change, the
#: sample client of the text's preview. The "Count audience" button waits as long as it takes.
LIVE_COUNT_SECONDS = 3.0
LIVE_SAMPLE_SECONDS = 1.0
SLOW_COUNT = N_("Counting this audience takes a while: press Count audience.")


@requires(PANEL_ACCESS, CAMPAIGNS_MANAGE)
async def audience(request: Request) -> Response:
    """The audience size of the filters in the query string (the form's JavaScript calls it)."""
    form = CampaignForm.read(dict(request.query_params))
    spec = _spec(request, form)
    if spec is None:
        return JSONResponse({"errors": form.errors}, status_code=400)
    try:
        async with (
            db_read(request) as session,
            time_limit(session, LIVE_COUNT_SECONDS, enforced=_timeouts(request)),
        ):
            size = await audience_size(session, spec, utcnow())
    except TooSlow:
        return JSONResponse({"errors": {"audience": translate(request, SLOW_COUNT)}}, status_code=503)
    label = translate_plural(request, "%(num)d client", "%(num)d clients", size)
    return JSONResponse({"size": size, "label": label})


#: How long the sample client of a filter set is kept: the preview follows each keystroke of the text,
#: the audience is looked at again only when the filters change (or after this).
SAMPLE_KEPT_SECONDS = 60.0
_SAMPLES_KEPT = 256


async def _sample(request: Request, session: AsyncSession, spec: AudienceSpec, now: datetime) -> int | None:
    """The audience's sample client, picked once per filter set (kept in the app's state)."""
    state = request.app.state
    samples: dict[AudienceSpec, tuple[float, int | None]] | None = getattr(state, "campaign_samples", None)
    if samples is None:
        samples = state.campaign_samples = {}
    clock = time.monotonic()
    kept = samples.get(spec)
    if kept is not None and clock - kept[0] < SAMPLE_KEPT_SECONDS:
        return kept[1]
    async with time_limit(session, LIVE_SAMPLE_SECONDS, enforced=_timeouts(request)):
        sample = await audience_sample(session, spec, now)
    if len(samples) >= _SAMPLES_KEPT:
        samples.clear()
    samples[spec] = (clock, sample)
    return sample


async def _sample_preview(request: Request, form: CampaignForm, spec: AudienceSpec | None) -> str | None:
    """The text as the audience's first client would receive it; None without a client to show."""
    if spec is None or not form.text:
        return None
    now = utcnow()
    async with db_read(request) as session:
        try:
            sample = await _sample(request, session, spec, now)
        except TooSlow:
            return None  # the counter then counts the text as written
        client = await session.get(Subscriber, sample) if sample is not None else None
        if client is None:
            return None
        request_mt = MTRequest(client.msisdn, form.text, kind=MTKind.MASS, subscriber_id=client.id)
        try:
            prepared = (await Outbox(panel(request).settings.outbox).prepare(session, [request_mt], now))[0]
        except OutboxError:
            return None
    return preview(prepared, require_user(request).has(OPERATOR_SEE_MSISDN))


@requires(PANEL_ACCESS, CAMPAIGNS_MANAGE)
async def draft(request: Request) -> Response:
    """The form's counter and preview, live: the text rendered for a sample client of the audience
    the filters give, counted on that text (compose.js posts the whole form)."""
    form = CampaignForm.read(await request.form())
    rendered = await _sample_preview(request, form, _spec(request, form))
    try:
        info = counter(request, rendered if rendered is not None else form.text)
    except SMPPError:
        info = counter(request, "")
        info["fits"] = False
    info["preview"] = rendered or ""
    return JSONResponse(info)


def _campaign_id(request: Request) -> int:
    return int(request.path_params["campaign_id"])


@requires(PANEL_ACCESS, CAMPAIGNS_MANAGE)
async def campaign_page(request: Request) -> Response:
    async with db_read(request) as session:
        campaign = await get_campaign(session, _campaign_id(request))
    if campaign is None:
        return error_response(request, 404, N_("There is no such campaign."))
    notice = NOTICES.get(request.query_params.get("notice", ""))
    context = {
        "campaign": campaign,
        "labels": _labels(request),
        "progress": _progress(campaign),
        "offered": OFFERED.get(campaign.status, ()),
        "notice": notice,
        "error": None,
    }
    return render(request, "campaigns/campaign.html", context)


@requires(PANEL_ACCESS, CAMPAIGNS_MANAGE)
async def progress(request: Request) -> Response:
    """The campaign's counters (one row: as cheap with a million recipients as with ten)."""
    async with db_read(request) as session:
        campaign = await get_campaign(session, _campaign_id(request))
    if campaign is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    body: dict[str, Any] = {
        "status": campaign.status.value,
        "status_label": _label(request, campaign.status),
        "actions": list(OFFERED.get(campaign.status, ())),
        **_progress(campaign),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _label(request: Request, status: CampaignStatus) -> str:
    return panel(request).catalog.pgettext(language(request), STATUS_CONTEXT, STATUS_LABELS[status])


def _action(form: FormData) -> str | None:
    value = form.get("action")
    return value if isinstance(value, str) and value in ACTIONS else None


@requires(PANEL_ACCESS, CAMPAIGNS_MANAGE)
async def change(request: Request) -> Response:
    """Pause, resume or cancel (cancelling withdraws the campaign's MTs still queued), audited in the
    same transaction."""
    action = _action(await request.form())
    if action is None:
        return error_response(request, 400, N_("Choose pause, resume or cancel."))
    campaign_id = _campaign_id(request)
    now = utcnow()
    async with db(request) as session, session.begin():
        moved = await change_status(session, campaign_id, action, now)
        if moved is None:
            exists = await get_campaign(session, campaign_id) is not None
            status, message = (409, N_("The campaign cannot do that now.")) if exists else (404, None)
            return error_response(request, status, message or N_("There is no such campaign."))
        withdrawn = await cancel_campaign_mts(session, campaign_id, now) if action == "cancel" else []
        before, after = moved
        details = {"before": before.value, "after": after.value, "withdrawn_mts": len(withdrawn)}
        await audit(
            session, request, f"campaign.{action}", subject=f"campaign:{campaign_id}", details=details
        )
    return RedirectResponse(f"{CAMPAIGNS_PATH}/{campaign_id}?notice={action}", status_code=303)


routes = [
    Route(CAMPAIGNS_PATH, campaigns_page, methods=["GET"], name="campaigns.list"),
    Route(CAMPAIGNS_PATH, create, methods=["POST"], name="campaigns.create"),
    Route(f"{CAMPAIGNS_PATH}/new", new_page, methods=["GET"], name="campaigns.new"),
    Route(f"{CAMPAIGNS_PATH}/audience", audience, methods=["GET"], name="campaigns.audience"),
    Route(f"{CAMPAIGNS_PATH}/draft", draft, methods=["POST"], name="campaigns.draft"),
    Route(f"{CAMPAIGNS_PATH}/{{campaign_id:id}}", campaign_page, methods=["GET"], name="campaigns.campaign"),
    Route(
        f"{CAMPAIGNS_PATH}/{{campaign_id:id}}/progress", progress, methods=["GET"], name="campaigns.progress"
    ),
    Route(f"{CAMPAIGNS_PATH}/{{campaign_id:id}}/status", change, methods=["POST"], name="campaigns.status"),
]


def _labels(request: Request) -> dict[CampaignStatus, str]:
    """Every status's name in the reader's language (a campaign's own words: ``campaign`` context)."""
    return {status: _label(request, status) for status in CampaignStatus}


def _timeouts(request: Request) -> bool:
    """Whether the panel's database can time a statement out (chosen with the store, not per call)."""
    return Store.for_engine(panel(request).engine).statement_timeouts
