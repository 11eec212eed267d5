"""Quiet hours (issue 14): the local hours in which no push or campaign MT reaches a client, per country.

One rule for both producers: the mass push's sender leaves a sleeping country's recipients pending
(``gatewayd.campaigns``), the outbox holds a single push until the quiet period ends
(``gatewayd.outbox``). Pure: the time is always passed in.

- The client's country picks its hours (:attr:`QuietRule.countries`, else :attr:`QuietRule.default`)
  and its zone (:attr:`QuietRule.zones`, else :attr:`QuietRule.default_zone`); hours are read on that
  zone's wall clock, so a DST change moves them with the clock.
- A client who wrote within :attr:`QuietRule.recent` is answered, not woken: nothing is held for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

#: What the issue names as the default: 22:00 to 09:00, local.
DEFAULT_HOURS = "22:00-09:00"
#: A push to a client whose latest MO is younger than this is a reply in all but name: not held.
DEFAULT_RECENT = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours ``[start, end)``; across midnight when ``end`` comes before ``start`` (22:00-09:00);
    none when they are equal."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """``HH:MM-HH:MM`` (the configuration's form, checked there); None for ``""`` (off)."""
        if not text:
            return None
        first, second = text.split("-")
        return cls(time.fromisoformat(first), time.fromisoformat(second))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def quiet(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def quiet_at(self, now: datetime, zone: ZoneInfo) -> bool:
        """Whether ``now`` (aware) falls in the quiet hours of ``zone``'s wall clock (DST included)."""
        return self.quiet(now.astimezone(zone).time().replace(tzinfo=None))

    def ends_after(self, now: datetime, zone: ZoneInfo) -> datetime | None:
        """When the quiet period ``now`` (aware) falls in ends (UTC), or None when ``now`` is not quiet.
        The end is read on the wall clock of its own day: 09:00 after a DST change is 09:00 local."""
        local = now.astimezone(zone)
        if not self.quiet(local.time().replace(tzinfo=None)):
            return None
        day = local.date()
        if self.start > self.end and local.time().replace(tzinfo=None) >= self.start:
            day += timedelta(days=1)  # evening: it ends tomorrow morning
        wall = datetime.combine(day, self.end)
        end = wall.replace(tzinfo=zone).astimezone(UTC)
        if end.astimezone(zone).replace(tzinfo=None) != wall:
            end = _clock_reaches(wall, zone, end)  # no such wall time: a spring-forward gap
        return max(end, now.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class QuietRule:
    """Quiet hours per country: ``countries`` overrides ``default`` (None: none there), ``zones`` gives
    a country its zone (others: ``default_zone``); ``recent``: how fresh a client's MO spares them."""

    default: QuietHours | None = None
    default_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Madrid"))
    countries: Mapping[str, QuietHours | None] = field(default_factory=lambda: MappingProxyType({}))
    zones: Mapping[str, ZoneInfo] = field(default_factory=lambda: MappingProxyType({}))
    recent: timedelta = DEFAULT_RECENT

    @property
    def own_countries(self) -> frozenset[str]:
        """The countries with hours or a zone of their own (any other is read by the defaults)."""
        return frozenset(self.countries) | frozenset(self.zones)

    def hours(self, country: str | None) -> QuietHours | None:
        if country is not None and country in self.countries:
            return self.countries[country]
        return self.default

    def zone(self, country: str | None) -> ZoneInfo:
        """The client's zone: their country's, else the default one."""
        if country is not None and country in self.zones:
            return self.zones[country]
        return self.default_zone

    def quiet_for(self, country: str | None, now: datetime) -> bool:
        """Whether it is quiet hours at ``now`` for a client of ``country`` (None: unknown)."""
        hours = self.hours(country)
        return hours is not None and hours.quiet_at(now, self.zone(country))

    def held_until(self, country: str | None, now: datetime, last_mo_at: datetime | None) -> datetime | None:
        """Until when (UTC) a push queued at ``now`` for a client of ``country`` waits; None when it may
        leave now: outside their quiet hours, or they wrote at ``last_mo_at`` within :attr:`recent`."""
        if last_mo_at is not None and now - _aware(last_mo_at) < self.recent:
            return None
        hours = self.hours(country)
        return hours.ends_after(now, self.zone(country)) if hours is not None else None


def _clock_reaches(wall: datetime, zone: ZoneInfo, after: datetime) -> datetime:
    """The first second (UTC) at which ``zone``'s clock shows ``wall`` or later, for a ``wall`` time the
    clock skips: the instant it jumps over the gap. No later than ``after`` (``wall`` read with the
    offset before the jump); a clock skips two hours at most."""
    start = after - timedelta(hours=2)
    low, high = 0, 2 * 3600  # seconds after start: the clock is short of ``wall`` at low, past it at high
    while high - low > 1:
        middle = (low + high) // 2
        if (start + timedelta(seconds=middle)).astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return start + timedelta(seconds=high)


def _aware(moment: datetime) -> datetime:
    """The store's times are UTC; SQLite gives them back naive."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
