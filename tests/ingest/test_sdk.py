"""The real sentry-sdk, in a subprocess, reporting to a live server through its DSN."""

import json

import pytest

from bugtracker.services import api_key_create_with_dsn
from dedup.models import DedupGroup
from reports.models import BugReport, BugReportEvent
from telemetry.models import Release
from tests.hardening.live import LiveServer

from .conftest import database_url, run_sdk
from .sdk_app import RELEASE_SHA

pytestmark = pytest.mark.django_db(transaction=True)


def reports():
    return list(BugReport.objects.order_by("created_at"))


def test_the_same_bug_twice_is_one_canonical_with_two_occurrences(dsn):
    run_sdk(dsn, "same_bug_twice")
    first, second = reports()
    assert first.duplicate_of_id is None and second.duplicate_of_id == first.pk
    group = DedupGroup.objects.get()
    assert group.canonical_id == first.pk and group.occurrences == 2
    assert first.source == "system" and first.reporter_id == "shop-backend"
    assert first.title == "KeyError: 'total'" and first.severity == "high"
    assert "in load_order\n" in first.stack_trace and first.stack_trace.startswith("Traceback")
    assert group.inputs["exception_types"] == ["KeyError"]
    assert any(frame.endswith("sdk_app.py:load_order") for frame in group.inputs["frames"])
    kinds = set(BugReportEvent.objects.filter(report=second).values_list("kind", flat=True))
    assert {"created", "duplicate_linked"} <= kinds


def test_two_bugs_are_two_groups(dsn):
    run_sdk(dsn, "two_bugs")
    assert len(reports()) == 2
    assert DedupGroup.objects.count() == 2
    assert {r.title for r in reports()} == {
        "KeyError: 'total'",
        "ValueError: invalid literal for int() with base 10: 'three'",
    }


def test_a_chained_exception_keeps_both_in_order(dsn):
    run_sdk(dsn, "chained")
    (report,) = reports()
    assert report.title == "ValueError: cart 5 has no order total"
    trace = report.stack_trace
    # Cause first, as Python prints it; the SDK does not say whether it was `raise … from`.
    assert trace.count("Traceback (most recent call last):") == 2
    assert (
        trace.index("KeyError: 'total'")
        < trace.index("During handling of the above exception, another exception occurred:")
        < trace.index("ValueError: cart 5 has no order total")
    )
    assert report.dedup_group.inputs["exception_types"] == ["KeyError", "ValueError"]


def test_capture_message_is_titled_by_its_message(dsn):
    run_sdk(dsn, "message")
    (report,) = reports()
    assert report.title == "Disk usage at 91% on db-3"
    assert report.severity == "medium"  # warning
    assert report.stack_trace == "" and report.category == "message"
    assert report.dedup_group.inputs["kind"] == "message"


def test_release_and_environment(dsn):
    run_sdk(dsn, "same_bug_twice")
    report = reports()[0]
    assert report.release_sha == RELEASE_SHA and report.environment == "production"
    assert report.telemetry["release"] == RELEASE_SHA


def test_a_release_version_is_matched_against_the_registry(dsn):
    Release.objects.create(
        sha="1" * 40, version="shop@1.4.2", environment="staging", deployed_at="2026-01-01T00:00Z"
    )
    run_sdk(dsn, "release_version")
    (report,) = reports()
    assert report.release_sha == "1" * 40 and report.environment == "staging"
    assert report.telemetry["release"] == "shop@1.4.2"


def test_the_trace_id_comes_from_the_span(dsn):
    printed = run_sdk(dsn, "span")
    (report,) = reports()  # the transaction itself was accepted and dropped
    assert report.trace_id == printed["trace_id"]


def test_pii_is_left_out_by_default(dsn):
    run_sdk(dsn, "pii")
    (report,) = reports()
    stored = json.dumps(
        {f.attname: str(getattr(report, f.attname)) for f in BugReport._meta.concrete_fields}
    )
    assert report.metadata["user"] == {"id": "u-42"}
    for secret in ("alice@example.com", "203.0.113.9", "s3cr3t", "sessionid", "Bearer xyz"):
        assert secret not in stored
    assert report.route == "/api/orders/{id}/items"
    assert report.telemetry["request"] == {
        "method": "POST",
        "url": "https://shop.example/api/orders/12345/items",
    }
    assert report.component == "checkout"  # the `component` tag
    assert report.metadata["tags"]["component"] == "checkout"
    assert report.metadata["server_name"]


def test_a_traceback_sent_as_text_and_by_the_sdk_land_in_one_group(dsn, reporter_client):
    printed = run_sdk(dsn, "text")
    answer = reporter_client.post(
        "/api/bug-reports",
        {"title": "Quantity would not parse", "stack_trace": printed["texts"][0]},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    sdk_report, text_report = reports()
    assert text_report.dedup_group_id == sdk_report.dedup_group_id
    assert text_report.duplicate_of_id == sdk_report.pk
    assert DedupGroup.objects.get().occurrences == 2


def test_the_sdk_obeys_the_rate_limit(tmp_path, transactional_db):
    log = tmp_path / "server.log"
    with LiveServer(
        database_url=database_url(), log_path=log, INGEST_RATE_PER_KEY="1/min"
    ) as server:
        _, _, dsn = api_key_create_with_dsn(
            name="chatty", role="reporter", host=f"127.0.0.1:{server.port}"
        )
        run_sdk(dsn, "burst")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    posts = [line["status"] for line in lines if line.get("path", "").endswith("/envelope/")]
    # One event through, one 429 that tells the SDK to wait, and the SDK sends no more.
    assert posts == [200, 429]
    assert BugReport.objects.count() == 1
