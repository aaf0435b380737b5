"""GET /metrics: request series by route template, gauges equal to `bugstatus --json`, the
token, and a broken source that does not take the scrape down."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from bugtracker import metrics
from remediation.models import AgentRun
from reports.claims import report_claim
from reports.models import BugReport
from reports.services import report_transition
from tests.factories import make_report


def scrape(client=None, **headers) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    answer = (client or Client()).get("/metrics", **headers)
    assert answer.status_code == 200, answer.content
    assert answer["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(answer.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.parametrize(
    ("route", "template"),
    [
        ("api/bug-reports/(?P<pk>[^/]+)/claim/?$", "/api/bug-reports/{pk}/claim"),
        ("^api/health/?$", "/api/health"),
        ("api/telemetry/traces/(?P<trace_id>[^/]+)/?$", "/api/telemetry/traces/{trace_id}"),
        ("api/<int:project_id>/envelope/", "/api/{project_id}/envelope"),
        ("^metrics/?$", "/metrics"),
    ],
)
def test_route_template_names_the_pattern_not_the_path(route, template):
    assert metrics.route_template(route) == template


@pytest.mark.django_db
def test_requests_are_counted_by_route_template_method_and_status(agent_client):
    before = scrape()
    one, two = make_report(), make_report()
    for report in (one, two):
        assert agent_client.get(f"/api/bug-reports/{report.pk}").status_code == 200
    assert agent_client.get("/api/bug-reports/not-a-report").status_code == 404
    assert agent_client.get("/no/such/page").status_code == 404
    after = scrape()

    def grew(route, status, name="bugtracker_http_requests_total"):
        labels = {"route": route, "method": "GET", "status": status}
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("/api/bug-reports/{pk}", "200") == 2
    assert grew("/api/bug-reports/{pk}", "404") == 1
    assert grew("unmatched", "404") == 1
    assert (
        grew("/api/bug-reports/{pk}", "200", "bugtracker_http_request_duration_seconds_count") == 2
    )
    # No series carries a report id: a label per report would grow without end.
    assert not [key for key in after if str(one.pk) in repr(key) or str(two.pk) in repr(key)]


@pytest.mark.django_db
def test_gauges_match_bugstatus_json():
    now = timezone.now()
    make_report(severity="critical")
    waiting = make_report(severity="low")
    BugReport.objects.filter(pk=waiting.pk).update(needs_human=True)
    old = make_report(severity="high")
    BugReport.objects.filter(pk=old.pk).update(
        created_at=now - timedelta(days=3), sla_due_at=now - timedelta(days=2)
    )
    claimed = make_report(severity="medium")
    report_claim(report_id=claimed.pk, actor="agent-1", lease_seconds=600)
    lapsed = make_report(severity="medium")
    report_claim(report_id=lapsed.pk, actor="agent-2", lease_seconds=600)
    BugReport.objects.filter(pk=lapsed.pk).update(claim_expires_at=now - timedelta(seconds=1))
    done = make_report(severity="low")
    report_transition(report_id=done.pk, to_status="resolved", actor="tests")
    AgentRun.objects.create(report=claimed, attempt=1, runner="w", outcome="failed")
    AgentRun.objects.create(report=claimed, attempt=2, runner="w")

    out = StringIO()
    call_command("bugstatus", "--json", stdout=out)
    status = json.loads(out.getvalue())
    samples = scrape()

    for state, row in status["by_status_severity"].items():
        for severity, count in row.items():
            assert value(samples, "bugtracker_reports", status=state, severity=severity) == count
    assert value(samples, "bugtracker_reports_open") == status["open"] == 5
    assert value(samples, "bugtracker_open_incidents") == status["open_incidents"] == 5
    assert value(samples, "bugtracker_reports_sla_breached") == status["sla_breached"] == 1
    assert value(samples, "bugtracker_claims_live") == status["claims_live"] == 1
    assert value(samples, "bugtracker_reports_needs_human") == status["needs_human"] == 1
    # Two claims: one running, one whose lease lapsed (still `running` until it is noticed).
    assert value(samples, "bugtracker_claim_attempts", outcome="running") == 2
    assert value(samples, "bugtracker_claim_attempts", outcome="released") == 0
    age = value(samples, "bugtracker_oldest_open_report_age_seconds")
    assert abs(age - status["oldest_open_age_seconds"]) < 5
    assert age > 3 * 24 * 3600 - 5
    assert value(samples, "bugtracker_agent_runs", outcome="failed") == 1
    assert value(samples, "bugtracker_agent_runs", outcome="running") == 1
    assert value(samples, "bugtracker_agent_runs", outcome="succeeded") == 0


@pytest.mark.django_db
def test_gauges_cost_a_bounded_number_of_queries(django_assert_max_num_queries):
    for severity in ("critical", "high", "medium", "low") * 5:
        make_report(severity=severity)
    # The summary's two aggregates, attempts by outcome, runs by outcome, deliveries by
    # result, active webhooks: the same six whatever the number of reports.
    with django_assert_max_num_queries(6):
        metrics.exposition()


@pytest.mark.django_db
def test_metrics_token_guards_the_endpoint(settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    refused = Client().get("/metrics")
    assert refused.status_code == 401
    assert refused["Content-Type"] == "application/problem+json"
    assert refused["WWW-Authenticate"].startswith("Bearer")
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    samples = scrape(HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert ("bugtracker_reports_open", frozenset()) in samples


@pytest.mark.django_db
def test_metrics_refuses_writes():
    answer = Client().post("/metrics")
    assert answer.status_code == 405
    assert answer["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_a_failing_gauge_source_is_reported_and_the_rest_still_shown(monkeypatch):
    def broken():
        raise RuntimeError("source down")
        yield  # pragma: no cover

    monkeypatch.setattr(metrics, "_scrape_collectors", [broken, *metrics._scrape_collectors])
    samples = scrape()
    failed = [k for k in samples if k[0] == "bugtracker_metrics_collector_failed"]
    assert len(failed) == 1 and "broken" in dict(failed[0][1])["collector"]
    assert ("bugtracker_reports_open", frozenset()) in samples
