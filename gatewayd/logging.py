"""Daemon logging: one line per event, plain ``key=value`` or JSON, secrets never written.

Call sites log an *event name* and fields::

    log_event(logger, "bind.up", carrier="movistar", bind="movistar-1")

and the formatter renders ``bind.up carrier=movistar bind=movistar-1`` (or one JSON object per line).
Every value that was registered with :func:`register_secret`, every field whose name looks like a
secret, and the password part of URLs are replaced by ``***`` before anything is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any, Final, TextIO

REDACTED: Final = "***"
_SECRET_FIELD = re.compile(r"pass(word)?|secret|token|api_?key|credential", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*):(?P<password>[^@\s]+)@")
_FIELDS_ATTRIBUTE: Final = "echat_fields"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a secret (a bind password, a DB password) so it is masked wherever it appears."""
    if len(value) >= 3:  # masking one- or two-character strings would shred ordinary text
        with _secrets_lock:
            _secrets.add(value)


def redact_url(url: str) -> str:
    """``postgresql://user:pw@host/db`` -> ``postgresql://user:***@host/db``."""
    return _URL_PASSWORD.sub(lambda match: f"{match['scheme']}:{REDACTED}@", url)


def redact(text: str) -> str:
    """Mask URL passwords and every registered secret in ``text``."""
    text = redact_url(text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _safe_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for key, value in fields.items():
        if _SECRET_FIELD.search(key):
            safe[key] = REDACTED
        elif isinstance(value, str):
            safe[key] = redact(value)
        elif value is None or isinstance(value, bool | int | float):
            safe[key] = value
        else:
            safe[key] = redact(str(value))
    return safe


def log_event(
    logger: logging.Logger,
    event: str,
    level: int = logging.INFO,
    exc_info: BaseException | None = None,
    **fields: Any,
) -> None:
    """Log one event with structured fields (rendered by :class:`EventFormatter`)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, exc_info=exc_info, extra={_FIELDS_ATTRIBUTE: fields})


def _plain_value(value: Any) -> str:
    text = "" if value is None else str(value)
    if not text or any(character in text for character in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class EventFormatter(logging.Formatter):
    """One line per record: ``time level logger event key=value ...`` or one JSON object."""

    def __init__(self, *, json_lines: bool = False) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        fields = _safe_fields(getattr(record, _FIELDS_ATTRIBUTE, {}))
        message = redact(record.getMessage())
        error = redact(self.formatException(record.exc_info)) if record.exc_info else None
        timestamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        timestamp += f".{int(record.msecs):03d}Z"
        if self.json_lines:
            document: dict[str, Any] = {
                "ts": timestamp,
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": message,
                **fields,
            }
            if error:
                document["error"] = error
            return json.dumps(document, ensure_ascii=False, default=str)
        parts = [timestamp, record.levelname, record.name, message]
        parts.extend(f"{key}={_plain_value(value)}" for key, value in fields.items())
        if error:
            # keep one line per event: the traceback is folded into a quoted field
            parts.append(f"error={json.dumps(error, ensure_ascii=False)}")
        return " ".join(parts)


class _StandardError(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is when a record is emitted, not as it was when logging was set
    up: a program that swaps it (a test harness capturing a command's output) gets the lines, and
    none go to a stream it has closed since."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(
    level: str | int = "INFO", *, json_lines: bool = False, stream: IO[str] | None = None
) -> None:
    """Install the event formatter on the root logger (idempotent: replaces earlier handlers); lines go
    to ``stream``, by default standard error."""
    handler = logging.StreamHandler(stream) if stream is not None else _StandardError()
    handler.setFormatter(EventFormatter(json_lines=json_lines))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # third-party chatter at INFO is noise for an operator
    for noisy in ("aiosqlite", "asyncio", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
