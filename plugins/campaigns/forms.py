"""The new-campaign form read and checked: every field with the English message (``N_``) of what is
wrong with it, so the page says it all at once (400)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gatewayd.outbox import shows_nothing
from gatewayd.store.campaigns import NAME_LENGTH, TEXT_LENGTH
from gatewayd.store.repo_campaigns import MAX_LAST_PUSHES, AudienceSpec
from panel.web import textarea_text
from translations import N_

MAX_ACTIVE_DAYS = 3650
MAX_TPS = 1000
DEFAULT_TPS = 10
COUNTRY = re.compile(r"^[A-Z]{2}$")
#: What a browser's datetime-local field sends (seconds optional).
LOCAL_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")
#: How far ahead a campaign may be scheduled.
MAX_AHEAD = timedelta(days=366)

ERRORS = {
    "name": N_("Give the campaign a name (at most 100 characters)."),
    "text": N_("Write the message (at most 2000 characters)."),
    "last_pushes": N_("The number of pushes must be a whole number from 1 to 100."),
    "active_days": N_("Active within must be a whole number of days from 1 to 3650, or empty."),
    "service": N_("Choose a service from the list."),
    "carrier": N_("Choose a carrier from the list."),
    "country": N_("A country is two letters (ISO 3166, such as ES)."),
    "tps": N_("The speed must be a whole number of SMS per second from 1 to 1000."),
    "scheduled_at": N_(
        "Give the date and time to send at (in your time zone), not in the past and at most a year ahead."
    ),
    "action": N_("Nothing was scheduled: press Schedule campaign to send it."),
}


def _text(form: Mapping[str, object], name: str, limit: int) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _whole(value: str, low: int, high: int) -> int | None:
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 6:
        return None
    number = int(value)
    return number if low <= number <= high else None


@dataclass
class CampaignForm:
    """The form's values as typed (to show them again) and, once checked, its problems by field."""

    name: str = ""
    text: str = ""
    last_pushes: str = "2"
    include_new: bool = True
    service: str = ""
    carrier: str = ""
    country: str = ""
    active_days: str = ""
    tps: str = str(DEFAULT_TPS)
    ignore_quiet_hours: bool = False
    when: str = "now"
    scheduled_at: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, form: Mapping[str, object]) -> CampaignForm:
        return cls(
            name=" ".join(_text(form, "name", NAME_LENGTH * 2).split()),
            text=textarea_text(form, "text", TEXT_LENGTH + 1).strip(),
            last_pushes=_text(form, "last_pushes", 20).strip(),
            include_new=bool(form.get("include_new")),
            service=_text(form, "service", 40).strip(),
            carrier=_text(form, "carrier", 40).strip(),
            country=_text(form, "country", 10).strip().upper(),
            active_days=_text(form, "active_days", 20).strip(),
            tps=_text(form, "tps", 20).strip(),
            ignore_quiet_hours=bool(form.get("ignore_quiet_hours")),
            when="at" if _text(form, "when", 10) == "at" else "now",
            scheduled_at=_text(form, "scheduled_at", 40).strip(),
        )

    def audience(self, services: Collection[str], carriers: Collection[str]) -> AudienceSpec | None:
        """The audience the filters give; None (and their problems in ``errors``) when one is wrong."""
        last_pushes = _whole(self.last_pushes, 1, MAX_LAST_PUSHES)
        if last_pushes is None:
            self.errors["last_pushes"] = ERRORS["last_pushes"]
        active_days = None
        if self.active_days:
            active_days = _whole(self.active_days, 1, MAX_ACTIVE_DAYS)
            if active_days is None:
                self.errors["active_days"] = ERRORS["active_days"]
        if self.service and self.service not in services:
            self.errors["service"] = ERRORS["service"]
        if self.carrier and self.carrier not in carriers:
            self.errors["carrier"] = ERRORS["carrier"]
        if self.country and not COUNTRY.match(self.country):
            self.errors["country"] = ERRORS["country"]
        if self.errors or last_pushes is None:
            return None
        return AudienceSpec(
            last_pushes,
            self.include_new,
            self.service or None,
            self.carrier or None,
            self.country or None,
            active_days,
        )

    def check_campaign(self, zone: ZoneInfo, now: datetime) -> tuple[int, datetime] | None:
        """The campaign's own fields (name, text, speed, date): (tps, when to start), or None with
        their problems in ``errors``."""
        if not self.name or len(self.name) > NAME_LENGTH:
            self.errors["name"] = ERRORS["name"]
        if shows_nothing(self.text) or len(self.text) > TEXT_LENGTH:
            self.errors["text"] = ERRORS["text"]
        tps = _whole(self.tps, 1, MAX_TPS)
        if tps is None:
            self.errors["tps"] = ERRORS["tps"]
        start = now
        if self.when == "at":
            start = self._scheduled_at(zone, now) or now
        if self.errors or tps is None:
            return None
        return tps, start

    def _scheduled_at(self, zone: ZoneInfo, now: datetime) -> datetime | None:
        if not LOCAL_DATETIME.match(self.scheduled_at):
            self.errors["scheduled_at"] = ERRORS["scheduled_at"]
            return None
        try:
            # In UTC here: near year 1 or 9999 the viewer's zone steps off the calendar (OverflowError).
            at = datetime.fromisoformat(self.scheduled_at).replace(tzinfo=zone).astimezone(UTC)
        except (ValueError, OverflowError):
            self.errors["scheduled_at"] = ERRORS["scheduled_at"]
            return None
        if not now - timedelta(seconds=60) <= at <= now + MAX_AHEAD:
            self.errors["scheduled_at"] = ERRORS["scheduled_at"]
            return None
        return at
