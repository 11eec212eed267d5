"""The call-centre diversion: which services have their conversations offered to the call-centre
team's pool (``[assignment] callcentre_pool``) instead of their own operators.

A service's switch is the admin's last choice (``service_settings``, written by the panel's
``services`` plugin) or, until an admin switched it once, its ``[[services]] callcentre``. Each
process that assigns keeps the diverted services in a :class:`DiversionCache`: assignment reads the
cache, never the database, per MO. The cache is read again from the database when a switch is
announced on the bus (``<prefix>/service/<name>/diversion``, carrying the new version: the number of
switches made) and at every sweep, so a process that missed the event catches up within a sweep.
The switch applies to every conversation nobody holds, those already waiting too; a conversation an
operator holds stays with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.bus.base import EventBus
from gatewayd.store.services import ServiceSetting, service_settings

__all__ = ["Diversion", "DiversionCache", "announce_diversion", "diversion_of"]


@dataclass(frozen=True, slots=True)
class Diversion:
    """The diverted services and the version (switches made) they were read at."""

    services: frozenset[str] = frozenset()
    version: int = 0


def diversion_of(initial: Mapping[str, bool], rows: Mapping[str, ServiceSetting]) -> Diversion:
    """The diverted services: the switched ones by their switch, the others by ``initial``."""
    switched = {name: row.callcentre_diverted for name, row in rows.items()}
    return _diversion(initial, switched, sum(row.version for row in rows.values()))


def _diversion(initial: Mapping[str, bool], switched: Mapping[str, bool], version: int) -> Diversion:
    diverted = {name for name, on in initial.items() if on and name not in switched}
    diverted.update(name for name, on in switched.items() if on)
    return Diversion(frozenset(diverted), version)


class DiversionCache:
    """The current :class:`Diversion` of one process. ``initial``: each configured service's
    ``[[services]] callcentre``."""

    def __init__(self, initial: Mapping[str, bool] | None = None) -> None:
        self.initial = dict(initial or {})
        self._switched: dict[str, bool] = {}
        self.current = _diversion(self.initial, self._switched, 0)

    @classmethod
    def for_services(cls, services: Iterable[tuple[str, bool]]) -> DiversionCache:
        return cls(dict(services))

    @property
    def services(self) -> frozenset[str]:
        return self.current.services

    def is_stale(self, version: int) -> bool:
        """Whether an announced ``version`` is newer than the one cached."""
        return version > self.current.version

    def configure(self, services: Iterable[tuple[str, bool]]) -> Diversion:
        """New configured values (a reloaded configuration); the switches read last still win."""
        self.initial = dict(services)
        self.current = _diversion(self.initial, self._switched, self.current.version)
        return self.current

    async def refresh(self, session: AsyncSession) -> Diversion:
        """Reads the switches again; returns the diversion now in force."""
        rows = await service_settings(session)
        self._switched = {name: row.callcentre_diverted for name, row in rows.items()}
        self.current = _diversion(self.initial, self._switched, sum(row.version for row in rows.values()))
        return self.current


async def announce_diversion(bus: EventBus | None, service: str, diverted: bool, version: int) -> None:
    """Tells every process that ``service`` was switched (after the commit)."""
    if bus is not None:
        payload = {"service": service, "diverted": diverted, "version": version}
        await bus.publish(bus.topics.service_diversion(service), payload)
