"""bugstatus for humans: short ids and prefixes, columns that fit 80 and 160, COLUMNS in a pipe,
--check --json, and a backlog alert that counts incidents rather than duplicates."""

import json
import subprocess
import sys
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from reports.claims import report_claim
from reports.lifecycle import sla_due_for
from reports.models import BugReport
from tests.factories import make_report

pytestmark = pytest.mark.django_db

LONG_TITLE = "Payments fail for every EUR customer when the basket holds more than ten items"


def bugstatus(*args) -> str:
    out = StringIO()
    call_command("bugstatus", *args, stdout=out)
    return out.getvalue()


def listed(monkeypatch, columns: int) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(columns))
    return bugstatus("--limit", "10").splitlines()


@pytest.fixture
def reports():
    critical = make_report(severity="critical", title=LONG_TITLE)
    waiting = make_report(severity="medium", title="Export hangs")
    BugReport.objects.filter(pk=waiting.pk).update(status="awaiting_verification")
    claimed = make_report(severity="low", title="Typo on the invoice")
    report_claim(report_id=claimed.pk, actor="worker:build-host-17:4242")
    return {"critical": critical, "waiting": waiting, "claimed": claimed}


def row_of(lines: list[str], report) -> str:
    return next(line for line in lines if line.lstrip().startswith(str(report.pk)[:8]))


@pytest.mark.parametrize("columns", [80, 160])
def test_the_list_shows_id_severity_status_sla_and_title_at_80_and_160_columns(
    monkeypatch, reports, columns
):
    lines = listed(monkeypatch, columns)

    assert max(len(line.rstrip()) for line in lines) <= columns
    header = next(line for line in lines if line.lstrip().startswith("id "))
    assert header.split()[:5] == ["id", "severity", "status", "SLA", "title"], "no header cut"
    row = row_of(lines, reports["critical"])
    assert row.split()[:5] == [str(reports["critical"].pk)[:8], "critical", "new", "in", "3h"]
    assert str(reports["critical"].pk) not in "\n".join(lines), "short ids only"
    assert "Payments fail for" in row
    waiting = row_of(lines, reports["waiting"]).split()
    assert waiting[1:3] == ["medium", "awaiting_verification"]
    assert "Export hangs" in row_of(lines, reports["waiting"])

    claimed = row_of(lines, reports["claimed"])
    if columns == 160:
        assert header.split()[5:] == ["assignee", "age"], "no empty duplicate-of column"
        assert "worker:build-host-17:4242" in claimed
        assert LONG_TITLE[:60] in row, "the title takes the room that is left"
    else:
        assert "assignee" not in header, "assignee only when it fits"
        assert row.rstrip().endswith("…")


def test_a_breached_sla_says_so_and_done_reports_have_none(monkeypatch, reports):
    BugReport.objects.filter(pk=reports["critical"].pk).update(sla_due_at=timezone.now())
    BugReport.objects.filter(pk=reports["waiting"].pk).update(status="resolved")
    monkeypatch.setenv("COLUMNS", "80")
    lines = bugstatus("--status", "new,resolved").splitlines()
    assert row_of(lines, reports["critical"]).split()[3] == "breached"
    assert row_of(lines, reports["waiting"]).split()[3] == "Export"  # SLA left empty


def report_with_id(pk: str, title: str) -> BugReport:
    now = timezone.now()
    return BugReport.objects.create(
        id=uuid.UUID(pk), title=title, sla_due_at=sla_due_for(severity="medium", created_at=now)
    )


def test_any_unique_prefix_finds_a_report_and_an_ambiguous_one_says_so():
    first = report_with_id("4a8e9973-1111-4000-8000-000000000001", "First")
    report_with_id("4a8e9973-2222-4000-8000-000000000002", "Second")
    report_with_id("4a8e1234-0000-4000-8000-000000000003", "Third")

    assert "Report 4a8e9973-1111" in bugstatus("4a8e9973-1111")
    assert "Report 4a8e9973-1111" in bugstatus("4A8E99731")
    assert "Third" in bugstatus("4a8e1")
    assert json.loads(bugstatus("4a8e99731", "--json"))["id"] == str(first.pk)

    with pytest.raises(CommandError) as ambiguous:
        bugstatus("4a8e9973")
    assert str(ambiguous.value) == (
        "The prefix '4a8e9973' is ambiguous: it matches 4a8e9973-1111-4000-8000-000000000001, "
        "4a8e9973-2222-4000-8000-000000000002. Give more characters."
    )
    with pytest.raises(CommandError, match="ambiguous: it matches 4a8e1234, 4a8e9973, 4a8e9973"):
        bugstatus("4a8e")
    with pytest.raises(CommandError, match="at least 4"):
        bugstatus("4a8")
    with pytest.raises(CommandError, match="No bug report whose id starts with 'ffff'"):
        bugstatus("ffff")


def test_the_one_report_view_shows_attempts_from_the_old_system_apart():
    report = make_report(automation_enabled=True)
    BugReport.objects.filter(pk=report.pk).update(attempts=1, metadata={"legacy": {"attempts": 2}})
    output = bugstatus(str(report.pk)[:8])
    assert "on, 1 attempts (+2 in the old system, not counted)" in output


def test_check_json_prints_json_and_keeps_its_exit_status(settings):
    make_report()
    healthy = json.loads(bugstatus("--check", "--json"))
    assert healthy["ok"] is True and healthy["alerts"] == []
    assert (healthy["open_incidents"], healthy["open"]) == (1, 1)
    assert healthy["thresholds"] == {"max_open": 500, "max_age_hours": 168.0}

    settings.BACKLOG_ALERT_MAX_OPEN = 0.5  # any open incident alerts
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("bugstatus", "--check", "--json", stdout=out)
    assert exit_info.value.code == 1
    alerting = json.loads(out.getvalue())
    assert alerting["ok"] is False and len(alerting["alerts"]) == 1


def test_the_backlog_alert_counts_open_incidents_not_duplicates(settings, agent_client):
    settings.BACKLOG_ALERT_MAX_OPEN = 2
    storm = make_report(title="ZeroDivisionError in pricing")
    others = [make_report() for _ in range(6)]
    BugReport.objects.filter(pk__in=[r.pk for r in others]).update(duplicate_of=storm)
    make_report(title="Search is slow")

    summary = agent_client.get("/api/bug-reports/summary").json()
    assert (summary["open"], summary["canonical"], summary["duplicates"]) == (8, 2, 6)
    assert summary["open_incidents"] == 2
    assert summary["backlog_alerts"] == [], "one error storm is one incident"
    assert json.loads(bugstatus("--check", "--json"))["ok"] is True

    make_report(title="Login loops")
    alerts = agent_client.get("/api/bug-reports/summary").json()["backlog_alerts"]
    assert alerts == [
        "3 open incidents (canonical reports; 9 open reports with their duplicates), more than "
        "BACKLOG_ALERT_MAX_OPEN=2."
    ]
    assert "ALERT: 3 open incidents" in check_text()


def check_text() -> str:
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("bugstatus", "--check", stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_piped_output_honours_columns(reports):
    from tests.legacy.test_backfill_resume import child_env

    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "bugstatus"]
    for columns in ("80", "160"):
        piped = subprocess.run(
            [*manage, "--limit", "10"],
            env={**child_env(), "COLUMNS": columns},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert piped.returncode == 0, piped.stderr
        lines = piped.stdout.splitlines()
        assert max(len(line) for line in lines) == int(columns)
        assert ("assignee" in lines[1]) is (columns == "160")
