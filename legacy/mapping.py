"""One legacy report (a JSON object) mapped to a BugReport row and its events.

The mapping follows `docs/legacy-format.md` field by field. Nothing is dropped: keys the
format does not know, and values that do not fit their column, are kept under
`metadata["legacy"]["extra"]`. The digest is taken over the record's JSON content (keys in
any order, the mirror's marker left out): two exports of a report are the same report when
they say the same thing, and a conflict otherwise.

Over 500 lines and still one concern: the format's field-by-field mapping (every field's
parsing, its fallbacks and its `extra` kept), which reads best in one place.
"""

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from reports.models import BugReport, EventKind, Severity, Source, Status

# Deterministic primary keys: the same legacy id always becomes the same row, in every run.
LEGACY_NAMESPACE = uuid.UUID("6f1c0b1e-4a52-5d4e-9a57-3b0c8f2d9e11")
# Files the LEGACY_MIRROR_DIR writer produces carry this key (see legacy/mirror.py).
MIRROR_MARKER = "_bugtracker"
# The claim holder of reports imported `in_progress` (LEGACY_CLAIM_HOURS, docs/rollout.md).
LEGACY_HOLDER = "legacy"

STATUS_MAP = {
    "open": Status.NEW,
    "new": Status.NEW,
    "triaged": Status.TRIAGED,
    "in_progress": Status.IN_PROGRESS,
    "in-progress": Status.IN_PROGRESS,
    "claimed": Status.IN_PROGRESS,
    "awaiting_verification": Status.AWAITING_VERIFICATION,
    "pending_verification": Status.AWAITING_VERIFICATION,
    "verifying": Status.AWAITING_VERIFICATION,
    "resolved": Status.RESOLVED,
    "fixed": Status.RESOLVED,
    "closed": Status.CLOSED,
    "wontfix": Status.CLOSED,
    "duplicate": Status.CLOSED,
}

SEVERITY_MAP = {
    **{s: Severity(s) for s in Severity.values},
    "p0": Severity.CRITICAL,
    "p1": Severity.HIGH,
    "p2": Severity.MEDIUM,
    "p3": Severity.LOW,
    "sev1": Severity.CRITICAL,
    "sev2": Severity.HIGH,
    "sev3": Severity.MEDIUM,
    "sev4": Severity.LOW,
}

KNOWN_KEYS = frozenset(
    {
        "id",
        "title",
        "description",
        "status",
        "severity",
        "category",
        "source",
        "reporter",
        "assignee",
        "created_at",
        "updated_at",
        "resolved_at",
        "stack_trace",
        "traceback",
        "component",
        "route",
        "context",
        "agent",
        "notes",
        "history",
        "resolution",
        MIRROR_MARKER,
    }
)
CONTEXT_COLUMNS = {
    "trace_id": "trace_id",
    "request_id": "request_id",
    "release": "release_sha",
    "environment": "environment",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SOURCES = frozenset(Source.values)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


class InvalidReport(ValueError):
    """A record the format says must not be imported; the message is the reason."""


@dataclass
class LegacyEvent:
    kind: str
    created_at: datetime
    actor: str = ""
    message: str = ""
    data: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "kind": self.kind,
            "created_at": legacy_iso(self.created_at),
            "actor": self.actor,
            "message": self.message,
            "data": self.data,
        }


@dataclass
class LegacyReport:
    legacy_id: str
    pk: uuid.UUID
    fields: dict[str, Any]
    events: list[LegacyEvent]
    extra: dict[str, Any]
    digest: str
    # The report a LEGACY_MIRROR_DIR file was written from (None for real legacy files).
    mirror_of: uuid.UUID | None = None
    # Remediation attempts the old system made: history, kept apart from `attempts`, which
    # counts only runs made here (MAX_ATTEMPTS applies to those).
    legacy_attempts: int = 0

    @property
    def metadata(self) -> dict:
        legacy: dict[str, Any] = {"id": self.legacy_id, "digest": self.digest}
        if self.legacy_attempts:
            legacy["attempts"] = self.legacy_attempts
        if self.extra:
            legacy["extra"] = self.extra
        return {"legacy": legacy}


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 (Z, offset or none = UTC), "YYYY-MM-DD HH:MM:SS" (UTC), epoch s or ms."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        value = float(text) if "." in text else int(text)
    if isinstance(value, int):
        # Epoch milliseconds are told apart by size: 10^11 s is the year 5138.
        delta = timedelta(milliseconds=value) if abs(value) > 10**11 else timedelta(seconds=value)
        return _EPOCH + delta
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return _EPOCH + timedelta(seconds=value / 1000 if abs(value) > 10**11 else value)
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("z", "Z"):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    raise ValueError(f"{type(value).__name__} is not a timestamp")


def legacy_iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def legacy_pk(legacy_id: str) -> uuid.UUID:
    return uuid.uuid5(LEGACY_NAMESPACE, legacy_id)


_MAX_LENGTHS: dict[str, int | None] = {}


def _max_length(column: str) -> int | None:
    if column not in _MAX_LENGTHS:
        _MAX_LENGTHS[column] = BugReport._meta.get_field(column).max_length
    return _MAX_LENGTHS[column]


def clean_json(value: Any) -> Any:
    """Strings PostgreSQL can store: no NUL characters, no lone surrogates."""
    return _cleaned_with_digest(value)[0]


def _cleaned_with_digest(raw: dict) -> tuple[dict, str]:
    """The record made storable, and the digest of its content.

    Almost every record needs no cleaning: the one C-speed encode that the digest needs
    anyway tells, and only a record with a NUL or a lone surrogate is walked and rebuilt.
    """
    try:
        text, data = _content(raw)
        clean = "\\u0000" not in text
    except UnicodeEncodeError:
        clean = False
    if not clean:
        raw = _clean_deep(raw)
        text, data = _content(raw)
    return raw, hashlib.sha256(data).hexdigest()


def _content(raw: dict) -> tuple[str, bytes]:
    content = {k: v for k, v in raw.items() if k != MIRROR_MARKER}
    text = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return text, text.encode("utf-8")


def _clean_deep(value: Any) -> Any:
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, dict):
        return {_clean_text(k): _clean_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_deep(v) for v in value]
    return value


def _clean_text(text: str) -> str:
    if text.isascii():
        return text.replace("\x00", "\ufffd") if "\x00" in text else text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text.replace("\x00", "\ufffd")


class _Mapper:
    def __init__(self, raw: dict):
        self.raw = raw
        self.extra: dict[str, Any] = {}
        self.fields: dict[str, Any] = {}
        self.events: list[LegacyEvent] = []

    def keep(self, key: str, value: Any) -> None:
        self.extra[key] = value

    def text(self, key: str, value: Any, column: str) -> str | None:
        """A string column; anything that does not fit is also kept whole in extra."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.keep(key, value)
            return None
        text = value if isinstance(value, str) else str(value)
        limit = _max_length(column)
        if limit and len(text) > limit:
            self.keep(key, value)
            text = text[:limit]
        return text

    def person(self, key: str, value: Any, column: str) -> str | None:
        """`reporter` / `assignee`: a string, or an object whose `id` is the person."""
        if isinstance(value, dict):
            rest = {k: v for k, v in value.items() if k != "id"}
            if rest:
                self.keep(key, rest)
            ident = value.get("id")
            return self.text(f"{key}.id", ident, column) if ident is not None else None
        return self.text(key, value, column)

    def timestamp(self, key: str, value: Any) -> datetime | None:
        if value is None:
            return None
        try:
            return parse_timestamp(value)
        except (ValueError, OverflowError, OSError):
            self.keep(key, value)
            return None


def map_legacy(raw: dict) -> LegacyReport:
    """Map one legacy report object; raises InvalidReport with the reason when it is invalid."""
    raw, digest = _cleaned_with_digest(raw)
    m = _Mapper(raw)

    title = raw.get("title")
    if "title" not in raw or title is None:
        raise InvalidReport("no title")
    if not isinstance(title, str):
        raise InvalidReport(f"title is not a string (got {type(title).__name__})")
    if not title.strip():
        raise InvalidReport("title is empty")

    raw_status = raw.get("status")
    if raw_status is None:
        raise InvalidReport("no status")
    status = STATUS_MAP.get(raw_status.strip().lower()) if isinstance(raw_status, str) else None
    if status is None:
        raise InvalidReport(f"unknown status {raw_status!r}")

    if raw.get("created_at") is None:
        raise InvalidReport("no created_at")
    try:
        created_at = parse_timestamp(raw["created_at"])
    except (ValueError, OverflowError, OSError):
        raise InvalidReport(f"unparseable created_at {raw['created_at']!r}") from None

    m.fields["title"] = m.text("title", title, "title")
    m.fields["status"] = status
    m.fields["created_at"] = created_at

    description = raw.get("description")
    if description is None or isinstance(description, str):
        m.fields["description"] = description or ""
    else:
        m.keep("description", description)
        m.fields["description"] = ""

    raw_severity = raw.get("severity")
    severity = (
        SEVERITY_MAP.get(raw_severity.strip().lower()) if isinstance(raw_severity, str) else None
    )
    if severity is None:
        severity = Severity.MEDIUM
        if raw_severity is not None:
            m.keep("severity", raw_severity)
    m.fields["severity"] = severity

    raw_source = raw.get("source")
    source = raw_source.strip().lower() if isinstance(raw_source, str) else None
    if source not in SOURCES:
        if raw_source is not None:
            m.keep("source", raw_source)
        source = Source.USER
    m.fields["source"] = source

    m.fields["category"] = m.text("category", raw.get("category"), "category")
    m.fields["component"] = m.text("component", raw.get("component"), "component")
    m.fields["route"] = m.text("route", raw.get("route"), "route")
    m.fields["reporter_id"] = m.person("reporter", raw.get("reporter"), "reporter_id")
    m.fields["assignee_id"] = m.person("assignee", raw.get("assignee"), "assignee_id")
    m.fields["stack_trace"] = _stack_trace(m, raw)
    _map_context(m, raw.get("context"))
    _map_resolution(m, raw.get("resolution"))

    updated_at = m.timestamp("updated_at", raw.get("updated_at"))
    resolved_at = m.timestamp("resolved_at", raw.get("resolved_at"))
    m.fields["resolved_at"] = resolved_at

    _map_history(m, raw.get("history"), created_at)
    _map_notes(m, raw.get("notes"), created_at)
    last_known = max([created_at, resolved_at or created_at, *(e.created_at for e in m.events)])
    m.fields["updated_at"] = updated_at or last_known
    legacy_attempts = _map_agent(m, raw.get("agent"), m.fields["updated_at"])

    for key, value in raw.items():
        if key not in KNOWN_KEYS:
            m.keep(key, value)

    legacy_id = _legacy_id(raw, m, digest)
    m.fields["legacy_id"] = legacy_id
    mirror_of = _mirror_of(raw)
    if mirror_of is not None:
        # Our own mirror says how many of its attempts were runs made here.
        here = raw[MIRROR_MARKER].get("attempts")
        if isinstance(here, int) and not isinstance(here, bool) and 0 <= here <= legacy_attempts:
            m.fields["attempts"], legacy_attempts = here, legacy_attempts - here
    return LegacyReport(
        legacy_id=legacy_id,
        pk=mirror_of or legacy_pk(legacy_id),
        fields=m.fields,
        events=sorted(m.events, key=lambda e: e.created_at),
        extra=m.extra,
        digest=digest,
        mirror_of=mirror_of,
        legacy_attempts=legacy_attempts,
    )


def _legacy_id(raw: dict, m: _Mapper, digest: str) -> str:
    ident = raw.get("id")
    if isinstance(ident, (str, int)) and not isinstance(ident, bool) and str(ident).strip():
        text = str(ident).strip()
        if len(text) <= _max_length("legacy_id"):
            return text
    if ident is not None:
        m.keep("id", ident)
    # No usable id: the content itself identifies the report, so re-runs stay idempotent.
    return "sha256:" + digest[:40]


def _mirror_of(raw: dict) -> uuid.UUID | None:
    marker = raw.get(MIRROR_MARKER)
    if isinstance(marker, dict) and isinstance(marker.get("report_id"), str):
        try:
            return uuid.UUID(marker["report_id"])
        except ValueError:
            return None
    return None


def _stack_trace(m: _Mapper, raw: dict) -> str:
    value = raw.get("stack_trace")
    if value is None:
        value = raw.get("traceback")
    elif raw.get("traceback") is not None:
        m.keep("traceback", raw["traceback"])
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(line if line.endswith("\n") else line + "\n" for line in value).rstrip("\n")
    if isinstance(value, str):
        return value
    m.keep("stack_trace", value)
    return ""


def _map_context(m: _Mapper, context: Any) -> None:
    for column in CONTEXT_COLUMNS.values():
        m.fields[column] = None
    m.fields["telemetry"] = {}
    if context is None:
        return
    if not isinstance(context, dict):
        m.keep("context", context)
        return
    telemetry = {}
    for key, value in context.items():
        column = CONTEXT_COLUMNS.get(key)
        if column is None:
            telemetry[key] = value
        else:
            m.fields[column] = m.text(f"context.{key}", value, column)
    m.fields["telemetry"] = telemetry


def _map_resolution(m: _Mapper, resolution: Any) -> None:
    m.fields["resolution_notes"] = ""
    m.fields["commit_shas"] = []
    if resolution is None:
        return
    if isinstance(resolution, str):
        m.fields["resolution_notes"] = resolution
        return
    if not isinstance(resolution, dict):
        m.keep("resolution", resolution)
        return
    rest = {}
    for key, value in resolution.items():
        if key == "notes" and isinstance(value, str):
            m.fields["resolution_notes"] = value
        elif key == "commit" and isinstance(value, str):
            m.fields["commit_shas"] = [*m.fields["commit_shas"], value]
        elif (
            key == "commits" and isinstance(value, list) and all(isinstance(c, str) for c in value)
        ):
            m.fields["commit_shas"] = [*value, *m.fields["commit_shas"]]
        elif value is not None:
            rest[key] = value
    if rest:
        m.keep("resolution", rest)


def _map_agent(m: _Mapper, agent: Any, at: datetime) -> int:
    """`agent`: automation flag and last error; returns the attempts the old system made
    (runs made here start from 0)."""
    m.fields["attempts"] = 0
    m.fields["automation_enabled"] = False
    legacy_attempts = 0
    if agent is None:
        return legacy_attempts
    if not isinstance(agent, dict):
        m.keep("agent", agent)
        return legacy_attempts
    rest = {}
    for key, value in agent.items():
        if (
            key == "attempts"
            and isinstance(value, int)
            and not isinstance(value, bool)
            and value >= 0
        ):
            legacy_attempts = value
        elif key == "automation_enabled" and isinstance(value, bool):
            m.fields["automation_enabled"] = value
        elif key == "last_error" and isinstance(value, str):
            if value:
                m.events.append(
                    LegacyEvent(
                        kind=EventKind.AGENT_LOG,
                        created_at=at,
                        actor="legacy-agent",
                        message=value,
                        data={"legacy": "last_error"},
                    )
                )
        elif value is not None:
            rest[key] = value
    if rest:
        m.keep("agent", rest)
    return legacy_attempts


def _actor(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value)[:200] if value is not None else ""


def _message(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _entry_time(m: _Mapper, value: Any, fallback: datetime, data: dict) -> datetime:
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError, OSError, TypeError):
        # Kept with the report's creation time; the unreadable value stays in the event.
        data["legacy_at"] = value
        return fallback


def _map_history(m: _Mapper, history: Any, created_at: datetime) -> None:
    if history is None:
        return
    if not isinstance(history, list):
        m.keep("history", history)
        return
    unreadable = []
    for entry in history:
        if not isinstance(entry, dict):
            unreadable.append(entry)
            continue
        before, after = entry.get("from"), entry.get("to")
        data = {"from": _status_name(before), "to": _status_name(after), "legacy": True}
        if _status_name(before) != before or _status_name(after) != after:
            data["legacy_from"], data["legacy_to"] = before, after
        rest = {k: v for k, v in entry.items() if k not in ("at", "from", "to", "by")}
        if rest:
            data["extra"] = rest
        at = _entry_time(m, entry.get("at"), created_at, data)
        m.events.append(
            LegacyEvent(
                kind=EventKind.STATUS_CHANGED,
                created_at=at,
                actor=_actor(entry.get("by")),
                message=f"{data['from']} → {data['to']}",
                data=data,
            )
        )
    if unreadable:
        m.keep("history", unreadable)


def _status_name(value: Any) -> Any:
    if isinstance(value, str):
        return str(STATUS_MAP.get(value.strip().lower(), value))
    return value


def _map_notes(m: _Mapper, notes: Any, created_at: datetime) -> None:
    if notes is None:
        return
    if not isinstance(notes, list):
        m.keep("notes", notes)
        return
    for entry in notes:
        data: dict[str, Any] = {"legacy": True}
        if isinstance(entry, dict):
            rest = {k: v for k, v in entry.items() if k not in ("at", "author", "text")}
            if rest:
                data["extra"] = rest
            at = _entry_time(m, entry.get("at"), created_at, data)
            actor, text = _actor(entry.get("author")), _message(entry.get("text"))
        else:
            at, actor, text = created_at, "", _message(entry)
        m.events.append(
            LegacyEvent(kind=EventKind.NOTE, created_at=at, actor=actor, message=text, data=data)
        )
