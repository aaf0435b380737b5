"""LEGACY_MIRROR_DIR: reports written back as legacy files, and those files imported again."""

import json
import tarfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from legacy.mapping import MIRROR_MARKER
from reports.models import BugReport
from reports.services import report_add_event, report_create, report_transition, report_update

pytestmark = pytest.mark.django_db

FIELDS = (
    "id",
    "title",
    "description",
    "severity",
    "category",
    "status",
    "source",
    "reporter_id",
    "assignee_id",
    "component",
    "route",
    "environment",
    "stack_trace",
    "trace_id",
    "request_id",
    "release_sha",
    "telemetry",
    "automation_enabled",
    "attempts",
    "resolution_notes",
    "commit_shas",
    "created_at",
    "updated_at",
    "resolved_at",
    "sla_due_at",
)


@pytest.fixture
def mirror(tmp_path, settings):
    settings.LEGACY_MIRROR_DIR = str(tmp_path / "mirror")
    return tmp_path / "mirror"


def backfill(*paths, expect_exit=0) -> str:
    out = StringIO()
    if expect_exit:
        with pytest.raises(SystemExit):
            call_command("backfill_json", *map(str, paths), stdout=out)
    else:
        call_command("backfill_json", *map(str, paths), stdout=out)
    return out.getvalue()


def full_report(**extra) -> BugReport:
    data = {
        "title": "Checkout fails for EUR",
        "description": "Steps: pay in EUR.",
        "severity": "high",
        "category": "crash",
        "source": "agent",
        "reporter_id": "monitor",
        "component": "billing",
        "route": "/api/checkout",
        "environment": "production",
        "stack_trace": 'Traceback (most recent call last):\n  File "/srv/app/billing.py", line 3, in pay\nValueError: eur',
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "request_id": "req-1",
        "release_sha": "a" * 40,
        "telemetry": {"user_agent": "curl/8", "method": "POST"},
        "automation_enabled": True,
    }
    data.update(extra)
    return report_create(actor="api", data=data)


def mirrored(mirror: Path, report: BugReport) -> dict:
    return json.loads((mirror / f"{report.legacy_id or report.pk}.json").read_text())


def test_new_and_changed_reports_are_written_as_legacy_files(
    mirror, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        report = full_report()
    record = mirrored(mirror, report)
    assert record["id"] == str(report.pk)
    assert (record["status"], record["severity"], record["title"]) == ("new", "high", report.title)
    assert record["context"]["trace_id"] == report.trace_id
    assert record[MIRROR_MARKER] == {
        "report_id": str(report.pk),
        "version": 1,
        "duplicate_of": None,
        "attempts": 0,
    }

    with django_capture_on_commit_callbacks(execute=True):
        report_transition(report_id=report.pk, to_status="triaged", actor="alice")
        report_add_event(report_id=report.pk, kind="note", actor="alice", message="looking")

    record = mirrored(mirror, report)
    assert record["status"] == "triaged"
    assert record["history"][0]["from"] == "new" and record["history"][0]["to"] == "triaged"
    assert record["notes"][0]["author"] == "alice" and record["notes"][0]["text"] == "looking"
    assert record[MIRROR_MARKER]["version"] == 3
    assert [p.name for p in mirror.iterdir() if not p.name.startswith(".mirror")] == [
        f"{report.pk}.json"
    ]


def test_nothing_is_written_until_the_transaction_commits_or_when_the_mirror_is_off(
    mirror, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        full_report()
    assert not mirror.exists()
    assert len(callbacks) == 1

    settings.LEGACY_MIRROR_DIR = ""
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        full_report()
    assert callbacks == []


def test_a_mirrored_file_reimports_to_the_same_report(mirror, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        report = full_report()
        report_add_event(report_id=report.pk, kind="note", actor="alice", message="first note")
        report_transition(report_id=report.pk, to_status="in_progress", actor="bob")
        report_update(
            report_id=report.pk,
            actor="bob",
            data={"resolution_notes": "patched", "commit_shas": ["b" * 40]},
        )
        report_transition(report_id=report.pk, to_status="resolved", actor="bob")
    report.refresh_from_db()
    before = {field: getattr(report, field) for field in FIELDS}
    notes = list(report.events.filter(kind="note").values_list("actor", "message", "created_at"))
    BugReport.objects.filter(pk=report.pk).delete()

    backfill(mirror)

    again = BugReport.objects.get()
    assert {field: getattr(again, field) for field in FIELDS} == before
    assert (
        list(again.events.filter(kind="note").values_list("actor", "message", "created_at"))
        == notes
    )
    assert list(again.events.filter(kind="status_changed").values_list("data__to", flat=True)) == [
        "in_progress",
        "resolved",
    ]


def test_mirror_files_of_reports_we_hold_are_never_imported_again(
    mirror, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        report = full_report()
        report_transition(report_id=report.pk, to_status="triaged", actor="alice")

    output = backfill(mirror)

    assert "already present:  1" in output
    assert BugReport.objects.count() == 1
    report.refresh_from_db()
    assert (report.version, report.legacy_id) == (2, None)


def test_an_imported_report_that_changes_is_mirrored_under_its_legacy_id(
    tmp_path, mirror, django_capture_on_commit_callbacks
):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "br-1.json").write_text(
        json.dumps(
            {
                "id": "br-1",
                "title": "Old report",
                "status": "Open",
                "severity": "P1",
                "created_at": "2025-07-01 08:00:00",
                "screenshots": ["a.png"],
                "reporter": {"id": "u-1", "email": "u1@example.com"},
            }
        )
    )
    with django_capture_on_commit_callbacks(execute=True):
        backfill(legacy)
    assert not mirror.exists()  # the legacy file is there already

    report = BugReport.objects.get(legacy_id="br-1")
    with django_capture_on_commit_callbacks(execute=True):
        report_transition(report_id=report.pk, to_status="triaged", actor="alice")

    record = json.loads((mirror / "br-1.json").read_text())
    assert record["id"] == "br-1"
    assert record["status"] == "triaged"
    assert record["screenshots"] == ["a.png"]  # unknown keys go back out as they came in
    assert record["reporter"] == {"id": "u-1", "email": "u1@example.com"}
    assert record["created_at"] == "2025-07-01T08:00:00Z"
    # Either direction, nothing echoes: both files are the report we already hold.
    output = backfill(legacy, mirror)
    assert "already present:  2" in output
    assert BugReport.objects.count() == 1


def test_a_failing_mirror_never_fails_the_change(
    tmp_path, settings, django_capture_on_commit_callbacks, caplog
):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    settings.LEGACY_MIRROR_DIR = str(blocker / "mirror")

    with django_capture_on_commit_callbacks(execute=True):
        report = full_report()

    assert BugReport.objects.filter(pk=report.pk).exists()
    assert "legacy mirror: could not write report" in caplog.text


def test_archive_takes_only_files_whose_reports_are_in_the_database(tmp_path):
    legacy = tmp_path / "legacy"
    (legacy / "2025").mkdir(parents=True)
    report = {"title": "A report", "status": "new", "created_at": "2025-07-01T00:00:00Z"}
    (legacy / "2025" / "in.json").write_text(json.dumps({"id": "in-1", **report}))
    (legacy / "export.jsonl").write_text(json.dumps({"id": "in-2", **report}) + "\n")
    (legacy / "bad.json").write_text("{")
    backfill(legacy, expect_exit=1)
    (legacy / "late.json").write_text(json.dumps({"id": "late-1", **report}))  # not imported
    (legacy / "changed.json").write_text(json.dumps({"id": "in-1", **report, "title": "Other"}))
    archive = tmp_path / "out" / "legacy.tar.gz"

    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "archive_legacy_json", str(legacy), "--to", str(archive), "--delete", stdout=out
        )

    assert exit_info.value.code == 1
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["legacy/2025/in.json", "legacy/export.jsonl"]
    assert sorted(p.name for p in legacy.rglob("*") if p.is_file()) == [
        "bad.json",
        "changed.json",
        "late.json",
    ]
    assert not (legacy / "2025").exists()  # emptied by --delete
    text = out.getvalue()
    assert "Archived 2 files (2 reports)" in text
    assert "late.json: report late-1 is not in the database" in text
    assert "changed.json: report in-1 differs from the copy in the database" in text
    assert "bad.json: truncated JSON" in text

    with pytest.raises(CommandError, match="never overwritten"):
        call_command("archive_legacy_json", str(legacy), "--to", str(archive), stdout=StringIO())


def test_archive_without_delete_keeps_the_files(tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "a.json").write_text(
        json.dumps({"id": "a", "title": "A", "status": "new", "created_at": "2025-07-01T00:00:00Z"})
    )
    backfill(legacy)

    call_command(
        "archive_legacy_json", str(legacy), "--to", str(tmp_path / "a.tar.gz"), stdout=StringIO()
    )

    assert (legacy / "a.json").exists()
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        assert tar.getnames() == ["legacy/a.json"]
