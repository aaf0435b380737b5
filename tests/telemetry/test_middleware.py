"""Request ids on every response, trace ids from traceparent, one log line per request."""

import io
import json
import logging
import subprocess
import sys

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from telemetry.context import bind_ids, current_ids, reset_ids
from telemetry.logging import JsonFormatter, RequestContextFilter, TextFormatter

pytestmark = pytest.mark.django_db

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def request_lines(caplog):
    return [r for r in caplog.records if r.name == "bugtracker.request"]


def test_middleware_sits_right_after_security_middleware():
    # Only the request metrics (which time everything) come before the security middleware.
    security = settings.MIDDLEWARE.index("django.middleware.security.SecurityMiddleware")
    assert settings.MIDDLEWARE[: security + 2] == [
        "bugtracker.metrics.RequestMetricsMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "telemetry.middleware.RequestContextMiddleware",
    ]


def test_a_request_id_is_made_when_absent_and_echoed(api_client):
    first = api_client.get("/api/health")
    second = api_client.get("/api/health")
    assert first.status_code == 200
    assert first["X-Request-ID"] and second["X-Request-ID"]
    assert first["X-Request-ID"] != second["X-Request-ID"]


def test_the_callers_request_id_is_echoed(api_client):
    response = api_client.get("/api/health", HTTP_X_REQUEST_ID="client-req-42")
    assert response["X-Request-ID"] == "client-req-42"


@pytest.mark.parametrize("bad", ["has spaces", "x" * 129, "tab\there", "ünï"])
def test_an_insane_request_id_is_replaced(api_client, bad):
    response = api_client.get("/api/health", HTTP_X_REQUEST_ID=bad)
    echoed = response["X-Request-ID"]
    assert echoed and echoed != bad and " " not in echoed


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "/api/no-such-thing", None, 404),
        ("get", "/api/bug-reports/not-a-uuid", None, 401),
        ("get", "/api/bug-reports", None, 401),
        ("post", "/api/telemetry/releases", {"sha": "abc"}, 401),
        ("delete", "/api/health", None, 405),
    ],
)
def test_error_responses_carry_the_request_id(api_client, method, path, body, status):
    response = getattr(api_client, method)(
        path, body, format="json", HTTP_X_REQUEST_ID=f"err-{status}"
    )
    assert response.status_code == status
    assert response["X-Request-ID"] == f"err-{status}"


def test_validation_error_carries_the_request_id(admin_client):
    response = admin_client.post(
        "/api/telemetry/releases", {"sha": "nothex"}, format="json", HTTP_X_REQUEST_ID="bad-body"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response["X-Request-ID"] == "bad-body"


@pytest.mark.urls("tests.telemetry.crash_urls")
def test_a_crash_still_carries_the_request_id_and_is_logged_with_it(caplog):
    client = APIClient()
    client.raise_request_exception = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter())
    django_request = logging.getLogger("django.request")
    django_request.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO):
            response = client.get(
                "/crash", HTTP_X_REQUEST_ID="crash-1", HTTP_TRACEPARENT=TRACEPARENT
            )
    finally:
        django_request.removeHandler(handler)
    assert response.status_code == 500
    assert response["X-Request-ID"] == "crash-1"
    (line,) = request_lines(caplog)
    assert (line.levelname, line.status, line.request_id, line.trace_id) == (
        "ERROR",
        500,
        "crash-1",
        TRACE,
    )
    # Django's own "Internal Server Error" line, with its traceback, carries the same ids.
    crash = json.loads(stream.getvalue().splitlines()[0])
    assert crash["message"].startswith("Internal Server Error: /crash")
    assert (crash["request_id"], crash["trace_id"]) == ("crash-1", TRACE)
    assert "RuntimeError: boom" in crash["exc_info"]


def test_one_log_line_per_request_with_its_ids(agent_client, caplog):
    with caplog.at_level(logging.INFO, logger="bugtracker.request"):
        agent_client.get(
            "/api/bug-reports?status=open", HTTP_X_REQUEST_ID="req-7", HTTP_TRACEPARENT=TRACEPARENT
        )
    (line,) = request_lines(caplog)
    assert line.getMessage().startswith("GET /api/bug-reports 200 ")
    assert (line.method, line.path, line.status) == ("GET", "/api/bug-reports", 200)
    assert (line.request_id, line.trace_id, line.caller) == ("req-7", TRACE, "agent-1")
    assert line.duration_ms >= 0


def test_a_request_without_traceparent_logs_no_trace_id(api_client, caplog):
    with caplog.at_level(logging.INFO, logger="bugtracker.request"):
        response = api_client.get("/api/health", HTTP_TRACEPARENT="00-garbage")
    (line,) = request_lines(caplog)
    assert line.trace_id is None
    assert line.request_id == response["X-Request-ID"]


def test_the_request_log_never_carries_the_key_or_query_string(caplog):
    from tests.conftest import client_for

    client = client_for("agent")
    secret = client._credentials["HTTP_AUTHORIZATION"].split()[1]
    with caplog.at_level(logging.DEBUG):
        client.get("/api/bug-reports?token=hunter2", HTTP_X_CLAIM_TOKEN="claim-secret")
    text = "\n".join(
        JsonFormatter().format(r) for r in caplog.records if r.name.startswith("bugtracker")
    )
    assert "bugtracker.request" in text
    for leaked in (secret, "hunter2", "claim-secret", "Bearer"):
        assert leaked not in text


def test_ids_are_bound_only_for_the_duration_of_a_request(api_client):
    api_client.get("/api/health", HTTP_X_REQUEST_ID="gone-after")
    assert current_ids() == (None, None)


# Formatters and the filter -------------------------------------------------------------


def _capture(formatter):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger("tests.telemetry.capture")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, handler, stream


def test_any_log_line_inside_a_request_gets_the_ids_as_json():
    logger, handler, stream = _capture(JsonFormatter())
    token = bind_ids(request_id="req-9", trace_id=TRACE)
    try:
        logger.info("working on %s", "it", extra={"report_id": "r1"})
    finally:
        reset_ids(token)
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "working on it"
    assert (entry["request_id"], entry["trace_id"], entry["report_id"]) == ("req-9", TRACE, "r1")
    assert entry["level"] == "INFO" and entry["logger"] == "tests.telemetry.capture"


def test_text_lines_show_ids_or_dashes():
    logger, handler, stream = _capture(TextFormatter())
    token = bind_ids(request_id="req-10", trace_id=None)
    try:
        logger.info("inside")
    finally:
        reset_ids(token)
    logger.info("outside")
    logger.removeHandler(handler)
    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith("[req-10 -] inside")
    assert outside.endswith("[- -] outside")


def test_json_lines_carry_the_exception():
    logger, handler, stream = _capture(JsonFormatter())
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert "ValueError: bad" in entry["exc_info"]


def test_log_format_json_makes_the_console_write_json_lines():
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('bugtracker.request').info('hello', extra={'status': 200})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "DJANGO_SETTINGS_MODULE": "bugtracker.settings",
            "SECRET_KEY": "x",
            "LOG_FORMAT": "json",
            "PATH": "/usr/bin:/bin",
        },
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    entry = json.loads(result.stderr.strip().splitlines()[-1])
    assert entry["message"] == "hello" and entry["status"] == 200
    assert entry["request_id"] is None
