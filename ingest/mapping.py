"""A Sentry event as a bug report: pure, no database (the release registry is asked by the
service, with what `release_lookup` here says to ask).

Exceptions: `exception.values` (cause first, as Python prints them) with their
`stacktrace.frames` (outermost first) become a Python traceback. Its text is built from the
same parts dedup's fingerprint reads from any traceback (exception type, frame file and
function; `dedup.fingerprint.parse_traceback` reads back exactly the parts written here,
which tests/ingest/test_mapping.py holds), so a Python exception sent as text and the same
one sent by an SDK get one fingerprint, by one function.
"""

import re
import uuid
from dataclasses import dataclass

from dedup.fingerprint import ExceptionBlock, template_route
from reports.serializers import (
    DESCRIPTION_MAX,
    METADATA_MAX,
    SHORT_TEXT_MAX,
    STACK_TRACE_MAX,
    TITLE_MAX,
    json_size,
)

LEVELS = {
    "fatal": "critical",
    "critical": "critical",
    "error": "high",
    "warning": "medium",
    "warn": "medium",
    "info": "low",
    "log": "low",
    "debug": "low",
}
DEFAULT_LEVEL = "error"

# A release that is a commit: a full SHA-1 or SHA-256, alone or as `package@<sha>`.
_SHA = re.compile(r"(?:.*@)?([0-9a-f]{40}|[0-9a-f]{64})")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
# Python prints a builtin exception bare, any other qualified by its module.
_BARE_MODULES = {"builtins", "exceptions", "__main__", ""}
_EXC_TYPE_CHARS = re.compile(r"[^\w.]")
_HEADER = "Traceback (most recent call last):"
# Frames kept at each end of an exception whose traceback does not fit; the middle of a deep
# recursion repeats frames the fingerprint already has.
KEEP_FRAMES = 50
MAX_TAGS = 50


@dataclass
class MappedEvent:
    event_id: uuid.UUID
    data: dict  # a report as BugReportCreateSerializer takes it
    client_fingerprint: list[str] | None = None
    # A release that is not a commit, to look up in the registry by version.
    release_version: str | None = None


def clean(value, limit: int | None = None) -> str:
    """A string a database stores: no NUL, no unpaired surrogate, at most `limit` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:limit] if limit is not None else text


def event_id_of(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


# Exceptions -------------------------------------------------------------------------------


def exception_type(exc: dict) -> str:
    """The type as Python prints it (`module.Type` unless builtin), in the characters a
    traceback's last line allows."""
    name = clean(exc.get("type")) or "Error"
    module = clean(exc.get("module"))
    if module not in _BARE_MODULES and not name.startswith(module + "."):
        name = f"{module}.{name}"
    name = _EXC_TYPE_CHARS.sub("_", name)
    return name if not name[0].isdigit() else "_" + name


def _frame_parts(frame: dict) -> tuple[str, str, int, str]:
    """(file, function, line, source line) of a frame, in the characters a traceback line allows."""
    path = clean(frame.get("abs_path") or frame.get("filename") or frame.get("module") or "?")
    path = path.replace('"', "'").replace("\n", " ").replace("\r", " ") or "?"
    function = clean(frame.get("function") or "?").replace("\n", " ").replace("\r", " ")
    function = function.strip() or "?"
    lineno = frame.get("lineno")
    line = lineno if isinstance(lineno, int) and not isinstance(lineno, bool) and lineno >= 0 else 0
    source = clean(frame.get("context_line")).strip().replace("\n", " ")
    if 'File "' in source or _HEADER in source:
        source = ""  # would read as a frame of its own
    return path, function, line, source


def _safe_value(value: str) -> str:
    # An exception message that quotes a traceback must not add frames to this one.
    return value.replace('File "', "File \u201c").replace(_HEADER, "Traceback:")


def exception_blocks(exceptions: list[dict]) -> list[ExceptionBlock]:
    """The normalised parts the fingerprint reads: per exception, its type and its
    (file, function) frames, outermost first; exceptions without frames are left out, as a
    printed traceback without frames has none to read. What render_traceback writes reads
    back as exactly this (tests/ingest/test_mapping.py)."""
    blocks = []
    for exc in exceptions:
        frames = _list(_dict(exc.get("stacktrace")).get("frames"))
        parts = tuple(_frame_parts(f)[:2] for f in frames if isinstance(f, dict))
        if parts:
            blocks.append(ExceptionBlock(exception_type(exc), parts))
    return blocks


def _render_exception(exc: dict, *, with_source: bool, keep: int | None) -> list[str]:
    frames = [f for f in _list(_dict(exc.get("stacktrace")).get("frames")) if isinstance(f, dict)]
    lines = []
    if frames:
        lines.append(_HEADER)
        shown = frames
        if keep is not None and len(frames) > 2 * keep:
            shown = [*frames[:keep], None, *frames[-keep:]]
        for frame in shown:
            if frame is None:
                lines.append(f"  [{len(frames) - 2 * keep} frames left out]")
                continue
            path, function, line, source = _frame_parts(frame)
            lines.append(f'  File "{path}", line {line}, in {function}')
            if with_source and source:
                lines.append(f"    {source}")
    value = _safe_value(clean(exc.get("value")))
    name = exception_type(exc)
    lines.append(f"{name}: {value}" if value else name)
    return lines


def _chain_text(exc: dict) -> str:
    source = _dict(exc.get("mechanism")).get("source")
    if source == "__cause__":
        return "The above exception was the direct cause of the following exception:"
    return "During handling of the above exception, another exception occurred:"


def render_traceback(exceptions: list[dict]) -> str:
    """The chain as Python prints it, cause first; shortened to fit STACK_TRACE_MAX by
    dropping source lines, then middle frames."""
    for with_source, keep in ((True, None), (False, None), (False, KEEP_FRAMES), (False, 5)):
        chunks = []
        for index, exc in enumerate(exceptions):
            lines = _render_exception(exc, with_source=with_source, keep=keep)
            if index:
                chunks.append(f"\n{_chain_text(exc)}\n")
            chunks.append("\n".join(lines))
        text = "\n".join(chunks) + "\n"
        if len(text) <= STACK_TRACE_MAX:
            return text
    return text[-STACK_TRACE_MAX:]


# The event --------------------------------------------------------------------------------


def _message(event: dict) -> str:
    logentry = _dict(event.get("logentry"))
    message = event.get("message")
    if isinstance(message, dict):  # the older interface: {"formatted": …, "message": …}
        logentry = logentry or message
        message = None
    return clean(logentry.get("formatted") or message or logentry.get("message"))


def _tags(value) -> dict:
    if isinstance(value, list):  # [[key, value], …] is the other form SDKs send
        value = dict(t for t in value if isinstance(t, list | tuple) and len(t) == 2)
    tags = {}
    for key, tag in _dict(value).items():
        if len(tags) >= MAX_TAGS:
            break
        tags[clean(key, 200)] = clean(tag, 200)
    return tags


def _user(value, keep_pii: bool) -> dict:
    user = _dict(value)
    wanted = ("id", "username", "email", "ip_address") if keep_pii else ("id",)
    return {k: clean(user[k], 200) for k in wanted if user.get(k) not in (None, "")}


def _request(value, keep_pii: bool) -> dict:
    request = _dict(value)
    url = clean(request.get("url"), 2000)
    if not keep_pii:
        url = url.split("?", 1)[0].split("#", 1)[0]
    out = {"method": clean(request.get("method"), 16).upper(), "url": url}
    if keep_pii and request.get("query_string"):
        out["query_string"] = clean(request.get("query_string"), 2000)
    return {k: v for k, v in out.items() if v}


def _fit_metadata(metadata: dict) -> dict:
    """Within METADATA_MAX: tags go first, then everything but the event's identity."""
    if json_size(metadata) <= METADATA_MAX:
        return metadata
    metadata = {**metadata, "tags": {}}
    if json_size(metadata) <= METADATA_MAX:
        return metadata
    return {k: metadata[k] for k in ("event_id", "platform") if k in metadata}


def map_event(event: dict, *, event_id: uuid.UUID, keep_pii: bool) -> MappedEvent:
    """The report an event makes, with its fingerprint override and a release to look up."""
    exceptions = [
        e for e in _list(_dict(event.get("exception")).get("values")) if isinstance(e, dict)
    ]
    if not exceptions and isinstance(event.get("exception"), list):
        exceptions = [e for e in event["exception"] if isinstance(e, dict)]
    level = clean(event.get("level") or DEFAULT_LEVEL).lower()
    message = _message(event)
    if exceptions:
        last = exceptions[-1]
        value = clean(last.get("value"))
        name = exception_type(last)
        title = f"{name}: {value}" if value else name
        description = message or value
        stack_trace = render_traceback(exceptions)
        category = "error"
    else:
        title = message or clean(event.get("transaction")) or f"{level} event"
        description = message
        stack_trace = ""
        category = "message"
    title = " ".join(title.split())[:TITLE_MAX] or "(no title)"

    contexts = _dict(event.get("contexts"))
    trace_id = clean(_dict(contexts.get("trace")).get("trace_id")).lower()
    request = _request(event.get("request"), keep_pii)
    release = clean(event.get("release"), 250)
    sha = _SHA.fullmatch(release)
    tags = _tags(event.get("tags"))

    telemetry = {
        "sdk": {
            k: clean(v, 100) for k, v in _dict(event.get("sdk")).items() if k in ("name", "version")
        }
    }
    if request:
        telemetry["request"] = request
    if release:
        telemetry["release"] = release
    if event.get("platform"):
        telemetry["platform"] = clean(event["platform"], 50)

    metadata = {"event_id": event_id.hex, "tags": tags}
    for key in ("server_name", "logger", "transaction"):
        if event.get(key):
            metadata[key] = clean(event[key], SHORT_TEXT_MAX)
    user = _user(event.get("user"), keep_pii)
    if user:
        metadata["user"] = user

    data = {
        "title": title,
        "description": description[:DESCRIPTION_MAX],
        "severity": LEVELS.get(level, LEVELS[DEFAULT_LEVEL]),
        "category": category,
        "source": "system",
        "stack_trace": stack_trace,
        "environment": clean(event.get("environment"), 100) or None,
        "route": template_route(request.get("url"))[:500] or None if request.get("url") else None,
        "component": tags.get("component") or None,
        "trace_id": trace_id if _TRACE_ID.fullmatch(trace_id) else None,
        "release_sha": sha.group(1) if sha else None,
        "telemetry": telemetry,
        "metadata": _fit_metadata(metadata),
    }
    fingerprint = [clean(p, SHORT_TEXT_MAX) for p in _list(event.get("fingerprint"))[:16]]
    fingerprint = [p for p in fingerprint if p.strip()]
    return MappedEvent(
        event_id=event_id,
        data={k: v for k, v in data.items() if v is not None},
        client_fingerprint=fingerprint or None,
        release_version=release if release and not sha else None,
    )
