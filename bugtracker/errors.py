"""Every error as application/problem+json (RFC 9457), written once for the whole API."""

import logging

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from .domain import DomainError
from .signals import write_refused

logger = logging.getLogger("bugtracker.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"
DB_RETRY_AFTER_SECONDS = 2

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem_type(slug: str) -> str:
    return f"urn:bugtracker:problem:{slug}"


def problem(
    status: int, detail: str, *, slug: str | None = None, title: str | None = None, **extra
):
    body = {
        "type": problem_type(slug or TITLES.get(status, "error").lower().replace(" ", "-")),
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return body


def flatten_errors(errors, prefix="") -> dict[str, list[str]]:
    """DRF's nested error structure as {"field.sub": [messages]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = "body" if key == "non_field_errors" and not prefix else key
            flat.update(flatten_errors(value, f"{prefix}.{name}" if prefix else str(name)))
    elif (
        isinstance(errors, list) and errors and all(not isinstance(e, (dict, list)) for e in errors)
    ):
        flat[prefix or "body"] = [str(e) for e in errors]
    elif isinstance(errors, list):
        for index, value in enumerate(errors):
            flat.update(flatten_errors(value, f"{prefix}.{index}" if prefix else str(index)))
    else:
        flat[prefix or "body"] = [str(errors)]
    return flat


def _is_database_unavailable(exc) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    )


def problem_exception_handler(exc, context):
    headers = {}
    if isinstance(exc, DomainError):
        body = problem(
            exc.status_code, exc.detail, slug=exc.type_slug, title=exc.title, **exc.extra
        )
        return _response(body, exc.status_code, exc.headers)
    if isinstance(exc, RequestDataTooBig):
        return _response(
            problem(413, "Request body is larger than 1 MiB.", slug="payload-too-large"), 413
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif _is_database_unavailable(exc):
        view = context.get("view")
        logger.error("database unavailable in %s: %s", type(view).__name__ if view else "?", exc)
        _log_lost_write(context.get("request"), view, exc)
        body = problem(
            503, "The database is unavailable or busy; retry shortly.", slug="database-unavailable"
        )
        return _response(body, 503, {"Retry-After": str(DB_RETRY_AFTER_SECONDS)})
    if not isinstance(exc, exceptions.APIException):
        return None

    status = exc.status_code
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait) + 1)
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(exc.detail)
        fields = ", ".join(errors)
        body = problem(400, f"Invalid input: {fields}.", slug="validation-error", errors=errors)
    else:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        slug = getattr(exc, "default_code", None) or None
        body = problem(status, str(detail), slug=slug.replace("_", "-") if slug else None)
    return _response(body, status, headers)


WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def _log_lost_write(request, view, exc) -> None:
    """A write the database refused goes to `write_refused` with its body (telemetry logs
    it, so an operator can replay it)."""
    if request is None or request.method not in WRITE_METHODS:
        return
    try:
        payload = request.data
    except Exception:  # the body itself was the problem; there is nothing to keep
        payload = None
    kwargs = getattr(view, "kwargs", None) or {}
    write_refused.send(
        sender=None,
        what=f"{request.method} {request.path}",
        report_id=kwargs.get("pk") or kwargs.get("id"),
        payload=payload,
        exc=exc,
    )


def _response(body, status, headers=None):
    response = Response(body, status=status, headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    return response


def problem_response(status: int, detail: str, **extra) -> JsonResponse:
    """For errors raised outside DRF views (unknown URL, crash, body too large)."""
    return JsonResponse(
        problem(status, detail, **extra), status=status, content_type=PROBLEM_CONTENT_TYPE
    )


def not_found_view(request, exception=None):
    return problem_response(
        404, f"No such resource: {request.path}. The API's entry points are listed at /api/."
    )


def server_error_view(request):
    return problem_response(500, "An unexpected error occurred; it has been logged.")


def bad_request_view(request, exception=None):
    return problem_response(400, "Bad request.")


def forbidden_view(request, exception=None):
    return problem_response(403, "Forbidden.")


class ProblemsInDebugMiddleware:
    """Every answer is problem+json, under DEBUG too.

    Without DEBUG, Django answers an exception a view let through with handler404/403/400/500
    above. With DEBUG it would answer with its HTML debug page instead; here the same problems
    are answered, and a crash is logged with its traceback as Django logs it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not settings.DEBUG:
            return None
        if isinstance(exception, Http404):
            return not_found_view(request, exception)
        if isinstance(exception, DjangoPermissionDenied):
            return forbidden_view(request, exception)
        if isinstance(exception, (BadRequest, SuspiciousOperation)):
            return bad_request_view(request, exception)
        logging.getLogger("django.request").error(
            "Internal Server Error: %s",
            request.path,
            exc_info=exception,
            extra={"status_code": 500, "request": request},
        )
        response = server_error_view(request)
        response._has_been_logged = True  # Django's flag: logged above, with the traceback
        return response
