"""Events, topic names and MQTT-style topic matching shared by every bus implementation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

EVENT_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its full topic and its JSON payload (always holding ``"v"``)."""

    topic: str
    payload: Mapping[str, Any]


class InvalidTopic(ValueError):
    """A topic or subscription pattern that MQTT would refuse."""


# orjson, not the standard library's json: an MO or an MT status change is one event, and encoding a
# typical one took 3.5 µs where orjson takes 0.2 (decoding 2.7 and 0.65; docs/SCALING.md). Dates,
# times and dataclasses are refused as json refuses them (the payload builders format their own), and
# so is an integer past 64 bits; unlike json, orjson writes a plain Enum as its value and a UUID as a
# string (no builder sends either). Keys that are not strings are written as strings, as json writes
# them.
_ENCODING: Final = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of the payload with ``"v": 1`` added unless the payload carries its own
    version. TypeError if a value is not JSON-serializable (caught at publish, not in a subscriber).
    A float that JSON cannot hold (NaN, an infinity) is written as null: every event is valid JSON."""
    body = payload if "v" in payload else {"v": EVENT_VERSION, **payload}
    return orjson.dumps(body, option=_ENCODING)


def decode_payload(body: bytes) -> dict[str, Any] | None:
    """The payload as a dict, or None when it is not a JSON object (or not JSON, or not UTF-8)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def check_topic(topic: str) -> str:
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise InvalidTopic(f"not a publishable topic: {topic!r}")
    return topic


def check_pattern(pattern: str) -> str:
    levels = pattern.split("/")
    for position, level in enumerate(levels):
        misplaced_hash = "#" in level and (level != "#" or position != len(levels) - 1)
        if misplaced_hash or ("+" in level and level != "+"):
            raise InvalidTopic(f"not a valid subscription pattern: {pattern!r}")
    if not pattern or "\x00" in pattern:
        raise InvalidTopic(f"not a valid subscription pattern: {pattern!r}")
    return pattern


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT matching: ``+`` is one level, a final ``#`` is any number of levels (including none)."""
    pattern_levels = pattern.split("/")
    topic_levels = topic.split("/")
    for position, level in enumerate(pattern_levels):
        if level == "#":
            return True
        if position >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[position]:
            return False
    return len(pattern_levels) == len(topic_levels)


class Topics:
    """The topic scheme (docs/ARCHITECTURE.md) under a configurable prefix instead of ``echat``."""

    def __init__(self, prefix: str = "echat") -> None:
        self.prefix = check_topic(prefix.strip("/"))

    def mo(self, short_code: str) -> str:
        """An MO was committed."""
        return f"{self.prefix}/{short_code}/mo"

    def mt_status(self, mt_id: int) -> str:
        """An MT changed status."""
        return f"{self.prefix}/mt/{mt_id}/status"

    def bind_state(self, carrier: str) -> str:
        """A bind went up or down."""
        return f"{self.prefix}/bind/{carrier}/state"

    def status(self) -> str:
        """The daemon's status (binds up per carrier): on every bind change and every few seconds, so a
        panel started later hears it soon."""
        return f"{self.prefix}/status"

    def status_request(self) -> str:
        """A panel that just started asks for the daemon's status now rather than at the next interval."""
        return f"{self.prefix}/status/request"

    def conversation_assigned(self, conversation_id: int) -> str:
        """A conversation was (re)assigned to an operator."""
        return f"{self.prefix}/conversation/{conversation_id}/assigned"

    def account_changed(self, account_id: int) -> str:
        """A panel account was signed out, locked or left the desk: open desks of that operator check
        their session and presence again, from the database."""
        return f"{self.prefix}/account/{account_id}/changed"

    def cluster_changed(self) -> str:
        """A daemon joined, gave bind slots up or left: the others beat now (``gatewayd.cluster``)."""
        return f"{self.prefix}/cluster/changed"

    def outbox_queued(self) -> str:
        """Another process (the panel) queued an MT: daemons claim at once instead of at their next poll.
        A topic of its own, so daemons need not receive every MT status event to hear of it."""
        return f"{self.prefix}/outbox/queued"

    def service_diversion(self, service: str) -> str:
        """An admin switched the service's call-centre diversion: assigning processes read the
        switches again (``gatewayd.diversion``)."""
        return f"{self.prefix}/service/{service}/diversion"

    def all_service_diversions(self) -> str:
        return f"{self.prefix}/service/+/diversion"

    def webhooks_changed(self) -> str:
        """An admin changed the webhook subscriptions: daemons read the active ones again."""
        return f"{self.prefix}/webhooks/changed"

    def all_mo(self) -> str:
        return f"{self.prefix}/+/mo"

    def all_mt_status(self) -> str:
        return f"{self.prefix}/mt/+/status"

    def everything(self) -> str:
        return f"{self.prefix}/#"
