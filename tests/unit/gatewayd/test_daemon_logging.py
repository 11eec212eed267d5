"""Daemon logs: one line per event, structured, secrets never written."""

from __future__ import annotations

import io
import json
import logging

from gatewayd.logging import EventFormatter, configure_logging, log_event, redact, redact_url, register_secret


def _capture(json_lines: bool) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", json_lines=json_lines, stream=stream)
    return logging.getLogger("gatewayd.test"), stream


def test_plain_line_has_event_and_fields() -> None:
    logger, stream = _capture(json_lines=False)
    log_event(logger, "bind.up", carrier="movistar", window=10, note="two words")
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert 'INFO gatewayd.test bind.up carrier=movistar window=10 note="two words"' in line


def test_json_line_parses_and_carries_fields() -> None:
    logger, stream = _capture(json_lines=True)
    log_event(logger, "mo.committed", level=logging.WARNING, count=3)
    document = json.loads(stream.getvalue())
    assert document["event"] == "mo.committed"
    assert document["level"] == "warning"
    assert document["count"] == 3


def test_secret_fields_and_registered_values_are_masked() -> None:
    logger, stream = _capture(json_lines=False)
    register_secret("s3cr3t-bind-pw")
    log_event(logger, "bind.config", password="hunter22", detail="login with s3cr3t-bind-pw failed")
    line = stream.getvalue()
    assert "hunter22" not in line
    assert "s3cr3t-bind-pw" not in line
    assert line.count("***") == 2


def test_url_passwords_are_masked() -> None:
    assert (
        redact_url("postgresql+asyncpg://echat:pw0rd@db:5432/echat")
        == "postgresql+asyncpg://echat:***@db:5432/echat"
    )
    assert redact_url("mqtt://127.0.0.1:1883") == "mqtt://127.0.0.1:1883"
    assert "pw0rd" not in redact("connecting to mqtt://u:pw0rd@broker:1883 failed")


def test_tracebacks_stay_on_one_line() -> None:
    logger, stream = _capture(json_lines=False)
    try:
        raise ValueError("boom")
    except ValueError as error:
        log_event(logger, "pipeline.crashed", level=logging.ERROR, exc_info=error)
    output = stream.getvalue()
    assert output.count("\n") == 1
    assert "ValueError: boom" in output


def test_formatter_handles_plain_records() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    assert EventFormatter().format(record).endswith("INFO x hello world")
