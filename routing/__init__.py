"""Pure routing: message -> route decision (ordered rules, first match wins), carrier quirks.

No I/O, no clock, no imports from gatewayd / panel / SQLAlchemy / asyncio. Modules:

- ``numbers``   MSISDN normalisation to E.164, national and carrier formats
- ``keywords``  reserved keywords (BAJA / ALTA / AYUDA ...) and the MO's service keyword
- ``context``   ``MOContext`` / ``MTContext``, what routing looks at
- ``rules``     ``MORoute`` / ``MTRoute``, immutable typed rules built from code or plain dicts
- ``table``     ``MORoutingTable`` / ``MTRoutingTable``: first match wins, one default route last
- ``quirks``    ``CarrierQuirks``: per-carrier transforms of submit_sm and incoming addresses
- ``variables`` the manual's message variables and a safe template renderer
- ``errors``    ``RoutingError`` and its subclasses
"""

from routing.context import MOContext, MTContext
from routing.errors import (
    InvalidAddress,
    InvalidDefinition,
    InvalidKeywords,
    InvalidNumber,
    InvalidQuirks,
    InvalidRule,
    NoRoute,
    RoutingError,
)
from routing.keywords import KeywordKind, KeywordMatch, KeywordSet, default_keywords, service_keyword
from routing.numbers import (
    NumberStyle,
    country_of,
    format_for_carrier,
    normalise_msisdn,
    to_international,
    to_national,
)
from routing.quirks import CarrierQuirks, apply_mt, normalise_mo_source
from routing.rules import MORoute, MTRoute
from routing.table import MODecision, MORoutingTable, MTDecision, MTRoutingTable
from routing.variables import message_variables, render_template

__all__ = [
    "CarrierQuirks",
    "InvalidAddress",
    "InvalidDefinition",
    "InvalidKeywords",
    "InvalidNumber",
    "InvalidQuirks",
    "InvalidRule",
    "KeywordKind",
    "KeywordMatch",
    "KeywordSet",
    "MOContext",
    "MODecision",
    "MORoute",
    "MORoutingTable",
    "MTContext",
    "MTDecision",
    "MTRoute",
    "MTRoutingTable",
    "NoRoute",
    "NumberStyle",
    "RoutingError",
    "apply_mt",
    "country_of",
    "default_keywords",
    "format_for_carrier",
    "message_variables",
    "normalise_mo_source",
    "normalise_msisdn",
    "render_template",
    "service_keyword",
    "to_international",
    "to_national",
]
