"""Trace and request ids for every request, echoed back, on every log line, one access line each."""

import logging
import time

from bugtracker.clients import client_address

from .context import bind_ids, new_request_id, parse_traceparent, reset_ids, sane_request_id

request_logger = logging.getLogger("bugtracker.request")

REQUEST_ID_HEADER = "X-Request-ID"


def _caller(request) -> str | None:
    # DRF copies the authenticated key onto the Django request; only its name is logged.
    user = getattr(request, "user", None)
    return getattr(user, "name", None)


class RequestContextMiddleware:
    """Sets `request.trace_id` (None without a valid traceparent) and `request.request_id`.

    Sits right after SecurityMiddleware, so every response from the layers below it,
    404s and crashes turned into 500s included, carries `X-Request-ID`.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        trace_id = parse_traceparent(request.headers.get("traceparent"))
        request_id = sane_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
        request.trace_id = trace_id
        request.request_id = request_id
        token = bind_ids(request_id=request_id, trace_id=trace_id)
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            self._log(request, response.status_code, started)
            return response
        finally:
            reset_ids(token)

    @staticmethod
    def _log(request, status: int, started: float) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        level = logging.ERROR if status >= 500 else logging.INFO
        # Method, path (no query string), status, timing and the client's address (as the
        # throttle sees it): never headers or tokens.
        client = client_address(request)
        request_logger.log(
            level,
            "%s %s %s %.1fms from %s",
            request.method,
            request.path,
            status,
            duration_ms,
            client,
            extra={
                "event": "request",
                "method": request.method,
                "path": request.path,
                "status": status,
                "duration_ms": duration_ms,
                "caller": _caller(request),
                "client": client,
                "request_id": request.request_id,
                "trace_id": request.trace_id,
            },
        )
