"""Failed writes are logged, with ids and a payload summary, never with secrets."""

import logging

import pytest
from django.db import DatabaseError

from telemetry.context import bind_ids, reset_ids
from telemetry.logging import log_failed_write, summarize_payload
from telemetry.models import Release
from tests.conftest import client_for

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def write_lines(caplog):
    return [r for r in caplog.records if r.name == "bugtracker.writes"]


def test_a_failed_write_is_logged_at_error_with_the_report_id(caplog):
    with caplog.at_level(logging.ERROR, logger="bugtracker.writes"):
        log_failed_write(what="report_update", report_id="r-1", exc=DatabaseError("deadlock"))
    (line,) = write_lines(caplog)
    assert line.levelname == "ERROR"
    assert line.getMessage() == "failed write: report_update (report r-1): DatabaseError: deadlock"
    assert (line.what, line.report_id, line.error) == (
        "report_update",
        "r-1",
        "DatabaseError: deadlock",
    )
    assert line.exc_info[1].args == ("deadlock",)


def test_a_failed_write_inside_a_request_carries_its_ids(caplog):
    token = bind_ids(request_id="req-5", trace_id=TRACE)
    try:
        with caplog.at_level(logging.ERROR, logger="bugtracker.writes"):
            log_failed_write(what="report_create", payload={"title": "x"}, exc=DatabaseError("no"))
    finally:
        reset_ids(token)
    (line,) = write_lines(caplog)
    assert (line.request_id, line.trace_id, line.report_id) == ("req-5", TRACE, None)
    assert line.payload == {"title": "x"}


def test_the_payload_summary_hides_secrets_and_shortens_values():
    summary = summarize_payload(
        {
            "title": "t" * 1000,
            "claim_token": "abc",
            "Authorization": "Bearer xyz",
            "api_key": "k",
            "password": "p",
            "metadata": {"a": 1, "b": 2},
            "commit_shas": ["a", "b", "c"],
            "attempts": 3,
            "automation_enabled": True,
            "blob": b"12345",
        }
    )
    assert summary["title"].startswith("t" * 120) and summary["title"].endswith("(1000 chars)")
    for secret in ("claim_token", "Authorization", "api_key", "password"):
        assert summary[secret] == "[redacted]"
    assert summary["metadata"] == "<object with 2 keys>"
    assert summary["commit_shas"] == "<list of 3 items>"
    assert (summary["attempts"], summary["automation_enabled"]) == (3, True)
    assert summary["blob"] == "<5 bytes>"


def test_the_payload_summary_is_bounded():
    summary = summarize_payload({f"field{n}": n for n in range(50)})
    assert len(summary) == 21
    assert summary["…"] == "30 more fields"
    assert summarize_payload(None) is None
    assert summarize_payload("s" * 500).endswith("(500 chars)")


@pytest.mark.django_db
def test_a_failed_registry_write_is_logged_with_the_request_id(monkeypatch, caplog, admin_client):
    def broken_create(**kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(Release.objects, "create", broken_create)
    admin_client.raise_request_exception = False
    with caplog.at_level(logging.INFO):
        response = admin_client.post(
            "/api/telemetry/releases",
            {"sha": "abcdef12", "environment": "production"},
            format="json",
            HTTP_X_REQUEST_ID="deploy-hook-1",
            HTTP_TRACEPARENT=f"00-{TRACE}-00f067aa0ba902b7-01",
        )
    assert response.status_code == 500
    assert response["X-Request-ID"] == "deploy-hook-1"
    (line,) = write_lines(caplog)
    assert (line.what, line.request_id, line.trace_id) == (
        "release_record",
        "deploy-hook-1",
        TRACE,
    )
    assert line.payload["sha"] == "abcdef12"
    assert line.payload["environment"] == "production"


@pytest.mark.django_db
def test_recording_a_release_is_logged_with_the_actor(caplog):
    client = client_for("admin", "deploy-bot")
    with caplog.at_level(logging.INFO, logger="bugtracker.telemetry"):
        client.post(
            "/api/telemetry/releases",
            {"sha": "abcdef12", "environment": "production", "version": "4.0"},
            format="json",
            HTTP_X_REQUEST_ID="deploy-2",
        )
    (line,) = [r for r in caplog.records if r.name == "bugtracker.telemetry"]
    assert "abcdef12 (4.0) deployed to production" in line.getMessage()
    assert line.actor == "deploy-bot"


def test_a_lost_submission_is_logged_whole_with_secrets_redacted(caplog):
    body = {"title": "t" * 1000, "metadata": {"api_token": "s3cret", "deep": {"n": 1}}}
    with caplog.at_level(logging.ERROR, logger="bugtracker.writes"):
        log_failed_write(
            what="POST /api/bug-reports", payload=body, exc=DatabaseError("down"), keep_content=True
        )
    logged = write_lines(caplog)[-1].payload
    assert logged["title"] == "t" * 1000
    assert logged["metadata"] == {"api_token": "[redacted]", "deep": {"n": 1}}
