"""Request context: W3C trace id, request id, the configured release, and the submission defaults.

Nothing here touches the database or the app registry at import time: the logging
configuration imports it while Django is still starting.
"""

import re
import uuid
from contextvars import ContextVar, Token
from typing import Any

from django.conf import settings

# version "-" trace-id "-" parent-id "-" flags, lowercase hex only (W3C Trace Context, level 1).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
_TRACEPARENT_V0_LENGTH = 55

# A caller's X-Request-ID is kept when it is a short run of visible ASCII (no spaces or
# control characters, so it cannot forge log lines); otherwise a fresh one is made.
REQUEST_ID_MAX_LENGTH = 128
_REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{REQUEST_ID_MAX_LENGTH}}}")

USER_AGENT_MAX_LENGTH = 500
RELEASE_SHA_MAX_LENGTH = 64  # the width of BugReport.release_sha

_ids: ContextVar[tuple[str | None, str | None]] = ContextVar(
    "bugtracker_request_ids", default=(None, None)
)


def parse_traceparent(value: str | None) -> str | None:
    """The trace id of a valid `traceparent` header, else None: malformed is ignored, not an error.

    Version 00 is exactly 55 characters. A later version may append `-…` fields, which are
    ignored; version ff is forbidden. All-zero trace and parent ids are invalid.
    """
    if not value:
        return None
    value = value.strip(" \t")
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, _flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return None
    if version == "00":
        if len(value) != _TRACEPARENT_V0_LENGTH:
            return None
    elif len(value) > _TRACEPARENT_V0_LENGTH and value[_TRACEPARENT_V0_LENGTH] != "-":
        return None
    return trace_id


def sane_request_id(value: str | None) -> str | None:
    """The caller's request id when it is a sane token, else None."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    return uuid.uuid4().hex


# The release ----------------------------------------------------------------------------


def current_release() -> str | None:
    """`RELEASE_SHA` (the release of the application the tracker is embedded in), else None.

    Never the tracker's own git checkout: it says nothing about the application that
    crashed, and stamping it would make a regression look like an occurrence already seen.
    """
    configured = (getattr(settings, "RELEASE_SHA", "") or "").strip()
    return configured[:RELEASE_SHA_MAX_LENGTH] or None


# Per-request ids, for log records ---------------------------------------------------------


def bind_ids(*, request_id: str | None, trace_id: str | None) -> Token:
    return _ids.set((request_id, trace_id))


def reset_ids(token: Token) -> None:
    _ids.reset(token)


def current_ids() -> tuple[str | None, str | None]:
    """(request_id, trace_id) of the request being served by this thread or task, if any."""
    return _ids.get()


def request_ids(request) -> tuple[str, str | None]:
    """The request's ids; computed from its headers when the middleware did not run."""
    request_id = getattr(request, "request_id", None)
    if request_id is None:
        request_id = sane_request_id(request.headers.get("X-Request-ID")) or new_request_id()
        trace_id = parse_traceparent(request.headers.get("traceparent"))
        request.request_id, request.trace_id = request_id, trace_id
        return request_id, trace_id
    return request_id, getattr(request, "trace_id", None)


def submission_context(request) -> dict[str, Any]:
    """What a submission inherits from its request; the body wins for any field it carries."""
    request_id, trace_id = request_ids(request)
    return {
        "trace_id": trace_id,
        "request_id": request_id,
        "release_sha": current_release(),
        "telemetry": {
            "method": request.method,
            "path": request.path,
            "user_agent": (request.headers.get("User-Agent") or "")[:USER_AGENT_MAX_LENGTH],
        },
    }
