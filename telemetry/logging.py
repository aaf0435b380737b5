"""Structured logs: request/trace ids on every record, JSON lines, and failed-write reports.

Wired in settings.LOGGING: `RequestContextFilter` on the console handler, and
`JsonFormatter` when LOG_FORMAT=json (else `TextFormatter`).
"""

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .context import current_ids

write_logger = logging.getLogger("bugtracker.writes")

# Attributes every LogRecord has; anything else on a record came in through `extra`.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None)).keys()
    | {"message", "asctime", "taskName"}
)
_SECRET_MARKERS = (
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "api_key",
    "apikey",
    "key_hash",
    "cookie",
    "credential",
    "private",
)
_SUMMARY_MAX_ITEMS = 20
_SUMMARY_MAX_CHARS = 120
_ERROR_MAX_CHARS = 500


class RequestContextFilter(logging.Filter):
    """Puts the current request id and trace id on each record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id, trace_id = current_ids()
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id
        if getattr(record, "trace_id", None) is None:
            record.trace_id = trace_id
        return True


class TextFormatter(logging.Formatter):
    """Human-readable lines; ids shown as `-` when there is none."""

    default_format = "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(trace_id)s] %(message)s"

    def __init__(self, fmt: str | None = None, *args, **kwargs):
        super().__init__(fmt or self.default_format, *args, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        values = dict(vars(record))
        for name in ("request_id", "trace_id"):
            values[name] = values.get(name) or "-"
        return self._style._fmt % values


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "trace_id": getattr(record, "trace_id", None),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _is_secret(name: Any) -> bool:
    lowered = str(name).lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def _short(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return f"<object with {len(value)} keys>"
    if isinstance(value, (list, tuple, set)):
        return f"<list of {len(value)} items>"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = str(value)
    if len(text) > _SUMMARY_MAX_CHARS:
        return f"{text[:_SUMMARY_MAX_CHARS]}… ({len(text)} chars)"
    return text


def summarize_payload(payload: Any) -> Any:
    """A log-safe summary: top-level fields, values shortened, anything secret-looking redacted."""
    if payload is None:
        return None
    if isinstance(payload, Mapping):
        summary: dict[str, Any] = {}
        for index, (key, value) in enumerate(payload.items()):
            if index == _SUMMARY_MAX_ITEMS:
                summary["…"] = f"{len(payload) - _SUMMARY_MAX_ITEMS} more fields"
                break
            summary[str(key)] = "[redacted]" if _is_secret(key) else _short(value)
        return summary
    return _short(payload)


def redact_secrets(payload: Any) -> Any:
    """The whole payload, with only secret-looking keys (at any depth) redacted."""
    if isinstance(payload, Mapping):
        return {
            str(k): "[redacted]" if _is_secret(k) else redact_secrets(v) for k, v in payload.items()
        }
    if isinstance(payload, list):
        return [redact_secrets(v) for v in payload]
    return payload


def log_failed_write(
    *,
    what: str,
    report_id: Any = None,
    payload: Any = None,
    exc: BaseException,
    keep_content: bool = False,
) -> None:
    """Log a database write that failed, at ERROR, with the report id or a payload summary.

    With `keep_content`, the whole payload is logged (secrets redacted) so that a client
    submission the database refused can be replayed from the log: nothing is lost.
    """
    request_id, trace_id = current_ids()
    error = f"{type(exc).__name__}: {exc}"[:_ERROR_MAX_CHARS]
    target = f"report {report_id}" if report_id is not None else "no report"
    write_logger.error(
        "failed write: %s (%s): %s",
        what,
        target,
        error,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={
            "event": "write_failed",
            "what": what,
            "report_id": str(report_id) if report_id is not None else None,
            "payload": redact_secrets(payload) if keep_content else summarize_payload(payload),
            "error": error,
            "request_id": request_id,
            "trace_id": trace_id,
        },
    )


def log_refused_write(sender=None, *, what, report_id, payload, exc, **kwargs) -> None:
    """`bugtracker.signals.write_refused` receiver: the whole body is logged (secrets
    redacted), so a client submission the database refused can be replayed."""
    log_failed_write(what=what, report_id=report_id, payload=payload, exc=exc, keep_content=True)
