"""reports.writes: the hand-built INSERTs store exactly what the ORM's save() stores."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from reports.models import BugReport, BugReportEvent
from reports.writes import Writes
from tests.factories import make_report

pytestmark = pytest.mark.django_db


def every_field(**overrides) -> dict:
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    fields = {
        "title": "Ünïcode title 'quoted' %s",
        "description": "Line one\nline two",
        "severity": "high",
        "category": "payments",
        "status": "triaged",
        "source": "agent",
        "reporter_id": "reporter-1",
        "assignee_id": "agent-7",
        "component": "billing",
        "route": "/api/invoices/{id}",
        "environment": "staging",
        "stack_trace": 'Traceback (most recent call last):\n  File "a.py", line 1, in f\nE: x\n',
        "trace_id": "a" * 32,
        "request_id": "req-1",
        "release_sha": "b" * 40,
        "telemetry": {"host": "web-1", "nested": {"list": [1, 2.5, None, "x"]}},
        "fingerprint": "c" * 64,
        "fingerprint_version": 1,
        "automation_enabled": True,
        "attempts": 2,
        "next_attempt_at": at + timedelta(hours=1),
        "resolution_notes": "",
        "commit_shas": ["d" * 40],
        "resolved_in_release": None,
        "claim_holder": "agent-7",
        "claim_token_hash": "e" * 64,
        "claim_expires_at": at + timedelta(minutes=15),
        "version": 3,
        "metadata": {"k": "v"},
        "created_at": at,
        "updated_at": at + timedelta(seconds=1),
        "sla_due_at": at + timedelta(hours=4),
    }
    fields.update(overrides)
    return fields


def stored(pk) -> dict:
    """Every column as read back, but the primary key."""
    report = BugReport.objects.get(pk=pk)
    return {
        f.attname: getattr(report, f.attname)
        for f in BugReport._meta.concrete_fields
        if not f.primary_key
    }


@pytest.mark.parametrize("nulls", [False, True], ids=["every-field", "nulls"])
def test_a_report_inserted_by_writes_reads_back_as_one_saved_by_the_orm(nulls):
    overrides = {}
    if nulls:
        overrides = {
            k: None for k in ("category", "reporter_id", "next_attempt_at", "claim_holder")
        }
    fields = every_field(**overrides)
    orm = BugReport(id=uuid.uuid4(), **fields)
    orm.save(force_insert=True)
    written = BugReport(id=uuid.uuid4(), **fields)
    writes = Writes()
    writes.insert(written)
    writes.execute()

    assert stored(written.pk) == stored(orm.pk)
    assert written._state.adding is False
    # The saved instance behaves as one the ORM saved: it can be changed and saved again.
    written.title = "Changed"
    written.save(update_fields=["title"])
    assert BugReport.objects.get(pk=written.pk).title == "Changed"


def test_events_keep_the_order_they_were_added_in():
    report = make_report()
    writes = Writes()
    for n in range(3):
        writes.event(report=report, kind="note", actor="a", message=f"n{n}", data={"n": n})
    writes.execute()

    notes = BugReportEvent.objects.filter(report=report, kind="note").order_by("id")
    assert [(e.message, e.data) for e in notes] == [(f"n{n}", {"n": n}) for n in range(3)]


@pytest.mark.postgres
@pytest.mark.parametrize("matched", [True, False])
def test_a_lead_gates_the_writes_and_feeds_them(matched):
    canonical = make_report()
    report = BugReport(id=uuid.uuid4(), **every_field(status="new", legacy_id=None))
    writes = Writes()
    writes.insert(report)
    writes.event(report=report, kind="created", actor="t")
    # A lead that returns the canonical's id, or nothing.
    lead = "SELECT id FROM bug_reports WHERE id = %s AND %s"
    writes.lead(lead, [canonical.pk, matched], expressions={report: {"duplicate_of_id": "lead.id"}})
    writes.lead_event(
        report=report,
        kind="duplicate_linked",
        actor="t",
        message_sql=("'of ' || lead.id", []),
        data_sql=("jsonb_build_object('n', %s::int)", [7]),
        created_at=report.created_at,
    )

    row = writes.execute()

    if matched:
        assert row == (canonical.pk,)
        assert BugReport.objects.get(pk=report.pk).duplicate_of_id == canonical.pk
        events = list(BugReportEvent.objects.filter(report_id=report.pk).order_by("id"))
        assert [(e.kind, e.message, e.data) for e in events] == [
            ("created", "", {}),
            ("duplicate_linked", f"of {canonical.pk}", {"n": 7}),
        ]
        return
    assert row is None
    assert not BugReport.objects.filter(pk=report.pk).exists()
    assert not BugReportEvent.objects.filter(report_id=report.pk).exists()
    # Still queued, without the lead and what read it: sent as plain writes.
    writes.execute()
    assert BugReport.objects.get(pk=report.pk).duplicate_of_id is None
    kinds = BugReportEvent.objects.filter(report_id=report.pk).values_list("kind", flat=True)
    assert list(kinds) == ["created"]
