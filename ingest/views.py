"""`POST /api/<project_id>/envelope/` and `/store/`: what Sentry SDKs send.

Plain Django views, not DRF: the body is a Sentry envelope (or event), read as a stream
and decoded within limits before anything else looks at it, and the answer is Sentry's
`{"id": …}`. Errors are problem details like everywhere else in the API.
"""

import logging
import threading
import uuid

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import ValidationError

from bugtracker.errors import DB_RETRY_AFTER_SECONDS, problem_response
from reports.serializers import BugReportCreateSerializer
from telemetry.context import request_ids

from .auth import IngestAuthError, authenticate
from .envelope import EnvelopeError, parse_envelope, parse_event, read_body
from .mapping import event_id_of, map_event
from .ratelimit import retry_after
from .services import event_file, mapped_report_data

logger = logging.getLogger("ingest")

# Item types accepted and dropped: answered 200, nothing stored. Unknown types are dropped
# too (Sentry's own forward compatibility: a newer SDK must not lose its events).
DROPPED_ITEMS = frozenset(
    {"transaction", "session", "sessions", "client_report", "check_in", "attachment"}
)
EVENT_MAX = 1024 * 1024  # Sentry's own limit for one event


_validators = threading.local()


def _validated(data: dict) -> dict:
    """The submission serializer's validation, with its fields built once per thread (building
    them is most of its cost) rather than per event."""
    serializer = getattr(_validators, "serializer", None)
    if serializer is None:
        serializer = _validators.serializer = BugReportCreateSerializer()
    return serializer.run_validation(data)


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: dict | None = None, **extra):
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers or {}, extra


def _problem(error: Refused):
    response = problem_response(error.status, error.detail, **error.extra)
    for name, value in error.headers.items():
        response[name] = value
    return response


def _serializer_errors(errors) -> dict:
    if not isinstance(errors, dict):
        return {"body": [str(m) for m in errors] if isinstance(errors, list) else [str(errors)]}
    return {
        str(field): [str(m) for m in messages] if isinstance(messages, list) else [str(messages)]
        for field, messages in errors.items()
    }


@method_decorator(csrf_exempt, name="dispatch")
class _IngestView(View):
    http_method_names = ["post"]

    def http_method_not_allowed(self, request, *args, **kwargs):
        response = problem_response(405, f"Method {request.method} not allowed: POST only.")
        response["Allow"] = "POST"
        return response

    def post(self, request, project_id):
        try:
            caller = authenticate(request, int(project_id))
            wait = retry_after(caller.dsn_key_id)
            if wait is not None:
                raise Refused(
                    429,
                    f"Over this DSN's rate ({settings.INGEST_RATE_PER_KEY}); retry in {wait} s.",
                    {"Retry-After": str(wait), "X-Sentry-Rate-Limits": f"{wait}::key"},
                )
            body = read_body(
                request.read,
                encoding=request.headers.get("Content-Encoding", ""),
                max_body=settings.INGEST_MAX_BODY,
                max_decoded=settings.INGEST_MAX_DECOMPRESSED,
            )
            event, event_id = self.event_of(body)
            if event is None:
                return JsonResponse({"id": event_id.hex} if event_id else {})
            return self.file(request, caller, event, event_id)
        except IngestAuthError as exc:
            return _problem(Refused(exc.status, exc.detail))
        except EnvelopeError as exc:
            return _problem(Refused(exc.status, exc.detail))
        except Refused as exc:
            return _problem(exc)
        except (OperationalError, InterfaceError) as exc:
            logger.error("database unavailable during ingest: %s", exc)
            return _problem(
                Refused(
                    503,
                    "The database is unavailable or busy; retry shortly.",
                    {"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
                )
            )

    def event_of(self, body: bytes) -> tuple[dict | None, uuid.UUID | None]:
        raise NotImplementedError

    def file(self, request, caller, event: dict, event_id: uuid.UUID | None):
        event_id = event_id or event_id_of(event.get("event_id")) or uuid.uuid4()
        mapped = map_event(event, event_id=event_id, keep_pii=settings.INGEST_KEEP_PII)
        request_id, _ = request_ids(request)
        data = mapped_report_data(caller=caller, mapped=mapped, request_id=request_id)
        if mapped.client_fingerprint:
            data["fingerprint"] = mapped.client_fingerprint
        try:
            valid = dict(_validated(data))
        except ValidationError as exc:
            errors = _serializer_errors(exc.detail)
            raise Refused(400, f"Invalid event: {', '.join(errors)}.", errors=errors) from None
        fingerprint = valid.pop("fingerprint", None)
        event_file(caller=caller, event_id=event_id, data=valid, client_fingerprint=fingerprint)
        return JsonResponse({"id": event_id.hex})


def _event_id(value, where: str) -> uuid.UUID | None:
    if value in (None, ""):
        return None
    event_id = event_id_of(value)
    if event_id is None:
        raise Refused(400, f"Invalid event_id in the {where}: a UUID (32 hex characters) expected.")
    return event_id


class EnvelopeView(_IngestView):
    def event_of(self, body):
        envelope = parse_envelope(body, max_items=settings.INGEST_MAX_ITEMS)
        events = [item for item in envelope.items if item.type == "event"]
        if len(events) > 1:
            raise Refused(400, "An envelope carries at most one event.")
        header_id = _event_id(envelope.headers.get("event_id"), "envelope header")
        if not events:
            return None, header_id
        return self.checked_event(events[0].payload, "event item"), header_id

    @staticmethod
    def checked_event(payload: bytes, what: str) -> dict:
        if len(payload) > EVENT_MAX:
            raise Refused(413, f"The {what} is larger than {EVENT_MAX:,} bytes.")
        event = parse_event(payload, what)
        _event_id(event.get("event_id"), what)
        return event


class StoreView(_IngestView):
    def event_of(self, body):
        return EnvelopeView.checked_event(body, "event"), None
