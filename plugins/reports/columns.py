"""The column names of the reports' CSV files. They are written in English, lower case with words joined
by ``_`` (``conversations_handled``), as the files have always had them, and translated into the reader's
language like every other text, with their own context: a column counts what a page's text names
("delivered" is an MT's status on the pages, the MTs delivered in a file)."""

from __future__ import annotations

from translations import NP_

CONTEXT = "CSV column"

COLUMNS = frozenset(
    {
        NP_("CSV column", "day"),
        NP_("CSV column", "mo"),
        NP_("CSV column", "mt"),
        NP_("CSV column", "weekday"),
        NP_("CSV column", "operator"),
        NP_("CSV column", "conversations_handled"),
        NP_("CSV column", "mos_answered"),
        NP_("CSV column", "mts_sent"),
        NP_("CSV column", "first_response_median_s"),
        NP_("CSV column", "first_response_p90_s"),
        NP_("CSV column", "replies_timed"),
        NP_("CSV column", "mts_delivered"),
        NP_("CSV column", "delivered_percent"),
        NP_("CSV column", "service"),
        NP_("CSV column", "short_code"),
        NP_("CSV column", "carrier"),
        NP_("CSV column", "country"),
        NP_("CSV column", "delivered"),
        NP_("CSV column", "failed"),
        NP_("CSV column", "refused"),
        NP_("CSV column", "opt_outs"),
        NP_("CSV column", "new_clients"),
        NP_("CSV column", "direction"),
        NP_("CSV column", "id"),
        NP_("CSV column", "at"),
        NP_("CSV column", "status"),
        NP_("CSV column", "text"),
        NP_("CSV column", "month"),
        NP_("CSV column", "currency"),
        NP_("CSV column", "clients_billed"),
        NP_("CSV column", "total"),
        NP_("CSV column", "average"),
        NP_("CSV column", "max"),
        NP_("CSV column", "paused"),
        NP_("CSV column", "capped"),
        NP_("CSV column", "client_id"),
        NP_("CSV column", "msisdn"),
        NP_("CSV column", "spend"),
        NP_("CSV column", "state"),
    }
)
