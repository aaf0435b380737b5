from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from reports import services
from reports.errors import TransitionNotAllowed
from reports.models import ALLOWED_TRANSITIONS, BugReport, BugReportEvent, Status
from tests.factories import make_report

pytestmark = pytest.mark.django_db

ALL_MOVES = [(a, b) for a in Status.values for b in Status.values if a != b]


def report_in(status: str) -> BugReport:
    report = make_report()
    BugReport.objects.filter(pk=report.pk).update(status=status)
    report.refresh_from_db()
    return report


@pytest.mark.parametrize(("start", "target"), ALL_MOVES)
def test_every_move_is_allowed_or_refused_by_the_map(start, target):
    report = report_in(start)
    events_before = report.events.count()
    if target in ALLOWED_TRANSITIONS[start]:
        moved = services.report_transition(report_id=report.pk, to_status=target, actor="alice")
        assert moved.status == target
        assert report.events.count() == events_before + 1
        event = report.events.last()
        assert (event.kind, event.data, event.actor) == (
            "status_changed",
            {"from": start, "to": target},
            "alice",
        )
    else:
        with pytest.raises(TransitionNotAllowed):
            services.report_transition(report_id=report.pk, to_status=target, actor="alice")
        report.refresh_from_db()
        assert report.status == start
        assert report.events.count() == events_before


def test_resolved_at_is_set_on_resolve_and_cleared_on_reopen():
    report = make_report()
    resolved = services.report_transition(report_id=report.pk, to_status="resolved", actor="a")
    assert resolved.resolved_at is not None
    closed = services.report_transition(report_id=report.pk, to_status="closed", actor="a")
    assert closed.resolved_at == resolved.resolved_at
    reopened = services.report_transition(report_id=report.pk, to_status="triaged", actor="a")
    assert reopened.resolved_at is None
    reopened.refresh_from_db()
    assert reopened.resolved_at is None


def test_every_change_bumps_the_version():
    report = make_report()
    assert report.version == 1
    services.report_update(report_id=report.pk, actor="a", data={"category": "ui"})
    services.report_transition(report_id=report.pk, to_status="triaged", actor="a")
    services.report_add_event(report_id=report.pk, kind="note", actor="a", message="hi")
    report.refresh_from_db()
    assert report.version == 4


def test_update_records_each_changed_field_as_an_event():
    report = make_report(category="ui")
    services.report_update(
        report_id=report.pk,
        actor="bob",
        data={"category": "api", "component": "auth", "title": report.title},
    )
    changes = {
        e.data["field"]: (e.data["from"], e.data["to"])
        for e in report.events.filter(kind="field_changed")
    }
    assert changes == {"category": ("ui", "api"), "component": (None, "auth")}


def test_failing_service_leaves_no_event_and_no_change():
    report = make_report(severity="low")
    with pytest.raises(TransitionNotAllowed):
        # severity is valid but the status move is not: nothing of the request may stick.
        services.report_update(
            report_id=report.pk,
            actor="a",
            data={"severity": "high", "status": "awaiting_verification"},
        )
    report.refresh_from_db()
    assert (report.severity, report.status, report.version) == ("low", "new", 1)
    assert list(report.events.values_list("kind", flat=True)) == ["created"]


def test_sla_due_from_severity_and_recomputed_on_change(settings):
    settings.SLA_HOURS = {"critical": 4, "high": 24, "medium": 72, "low": 168}
    report = make_report(severity="critical")
    assert report.sla_due_at - report.created_at == timedelta(hours=4)
    services.report_update(report_id=report.pk, actor="a", data={"severity": "low"})
    report.refresh_from_db()
    assert report.sla_due_at - report.created_at == timedelta(hours=168)


def test_sla_breached_only_while_open():
    report = make_report(severity="critical")
    BugReport.objects.filter(pk=report.pk).update(sla_due_at=timezone.now() - timedelta(minutes=1))
    report.refresh_from_db()
    assert report.sla_breached
    services.report_transition(report_id=report.pk, to_status="resolved", actor="a")
    report.refresh_from_db()
    assert not report.sla_breached


def test_created_event_is_written_with_the_report():
    report = make_report()
    assert BugReportEvent.objects.filter(report=report, kind="created").count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("severity", "urgent"), ("status", "open"), ("source", "robot")],
)
def test_check_constraints_reject_bad_rows(field, value):
    report = make_report()
    with pytest.raises(IntegrityError), transaction.atomic():
        BugReport.objects.filter(pk=report.pk).update(**{field: value})


def test_a_report_cannot_be_its_own_duplicate():
    report = make_report()
    with pytest.raises(IntegrityError), transaction.atomic():
        BugReport.objects.filter(pk=report.pk).update(duplicate_of=report.pk)


def test_check_constraints_exist_in_the_database():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "bug_reports")
    assert {
        "bug_reports_severity_valid",
        "bug_reports_status_valid",
        "bug_reports_source_valid",
    } <= set(constraints)


def test_turning_automation_back_on_resets_attempts():
    report = make_report(automation_enabled=False)
    BugReport.objects.filter(pk=report.pk).update(attempts=3, next_attempt_at=timezone.now())
    services.report_update(report_id=report.pk, actor="admin", data={"automation_enabled": True})
    report.refresh_from_db()
    assert (report.automation_enabled, report.attempts, report.next_attempt_at) == (True, 0, None)


@pytest.mark.parametrize("how", ["update", "transition"])
def test_open_duplicates_follow_a_canonical_resolved_by_any_path(how):
    canonical = make_report(title="Canonical one")
    duplicate = make_report(title="Duplicate one")
    BugReport.objects.filter(pk=duplicate.pk).update(duplicate_of=canonical)
    if how == "update":
        services.report_update(report_id=canonical.pk, actor="a", data={"status": "resolved"})
    else:
        services.report_transition(report_id=canonical.pk, to_status="resolved", actor="a")
    duplicate.refresh_from_db()
    assert duplicate.status == "resolved"
    assert duplicate.events.last().kind == "resolved"
