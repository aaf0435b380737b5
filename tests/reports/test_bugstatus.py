"""bugstatus: the summary (tables and JSON), one report, lists, and --check exit codes."""

import json
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from dedup.models import DedupGroup
from remediation.models import AgentRun
from reports.management.commands.bugstatus import _console
from reports.models import BugReport
from reports.services import report_add_event, report_transition
from reports.summary import backlog_alerts, report_summary
from tests.factories import make_report

pytestmark = pytest.mark.django_db

KEYS = {
    "total",
    "open_incidents",
    "open",
    "done",
    "by_status",
    "by_severity",
    "sla_breached",
    "canonical",
    "duplicates",
    "oldest_open_age_seconds",
    "top_groups",
    "backlog_alerts",
}


def bugstatus(*args) -> str:
    out = StringIO()
    call_command("bugstatus", *args, stdout=out)
    return out.getvalue()


def aged(report: BugReport, hours: float) -> BugReport:
    """Move a report's creation (and SLA) into the past."""
    created = timezone.now() - timedelta(hours=hours)
    BugReport.objects.filter(pk=report.pk).update(
        created_at=created, sla_due_at=created + (report.sla_due_at - report.created_at)
    )
    report.refresh_from_db()
    return report


def duplicate_group(canonical: BugReport, *duplicates: BugReport) -> DedupGroup:
    group = DedupGroup.objects.create(
        fingerprint=f"{canonical.pk.hex}{'0' * 32}",
        canonical=canonical,
        occurrences=1 + len(duplicates),
    )
    BugReport.objects.filter(pk=canonical.pk).update(dedup_group=group)
    BugReport.objects.filter(pk__in=[d.pk for d in duplicates]).update(
        duplicate_of=canonical, dedup_group=group
    )
    return group


@pytest.fixture
def tracker():
    """Seven reports: 5 open (one 10 days old, past its SLA), 2 done; one group of 3."""
    critical = aged(make_report(severity="critical", title="Payments down"), hours=240)
    high = make_report(severity="high")
    dup_a = make_report(severity="high", title="Payments down again")
    dup_b = make_report(severity="low", title="Payments down, once more")
    make_report(severity="medium")
    done = make_report(severity="low")
    report_transition(report_id=done.pk, to_status="resolved", actor="alice")
    closed = make_report(severity="medium")
    report_transition(report_id=closed.pk, to_status="closed", actor="alice")
    group = duplicate_group(critical, dup_a, dup_b)
    return {"critical": critical, "high": high, "group": group}


def test_summary_counts_every_report_duplicates_included(tracker):
    summary = report_summary()

    assert set(summary) >= KEYS
    assert (summary["total"], summary["open"], summary["done"]) == (7, 5, 2)
    assert summary["by_status"] == {
        "new": 5,
        "triaged": 0,
        "in_progress": 0,
        "awaiting_verification": 0,
        "resolved": 1,
        "closed": 1,
    }
    assert summary["by_severity"] == {"critical": 1, "high": 2, "medium": 2, "low": 2}
    assert summary["by_status_severity"]["new"] == {"critical": 1, "high": 2, "medium": 1, "low": 1}
    assert (summary["canonical"], summary["duplicates"]) == (5, 2)
    assert summary["open_incidents"] == 3  # open canonical reports: critical, high, medium
    assert summary["sla_breached"] == 1
    assert 239 * 3600 < summary["oldest_open_age_seconds"] < 241 * 3600
    assert summary["top_groups"] == [
        {
            "id": str(tracker["group"].pk),
            "fingerprint": tracker["group"].fingerprint,
            "occurrences": 3,
            "canonical": str(tracker["critical"].pk),
            "title": "Payments down",
            "status": "new",
            "first_seen": tracker["group"].first_seen.isoformat(),
            "last_seen": tracker["group"].last_seen.isoformat(),
        }
    ]
    # The default limits: 500 open reports, 168 hours for the oldest.
    assert summary["backlog_alerts"] == [
        "The oldest open report is 240 h old, more than BACKLOG_ALERT_MAX_AGE_HOURS=168."
    ]


def test_the_summary_costs_the_same_few_queries_however_many_reports(
    tracker, django_assert_max_num_queries
):
    with django_assert_max_num_queries(3):
        report_summary()
    for _ in range(30):
        duplicate_group(make_report(), make_report())
    with django_assert_max_num_queries(3):
        assert report_summary()["total"] == 67


def test_json_prints_the_summary_object(tracker):
    printed = json.loads(bugstatus("--json"))

    assert set(printed) >= KEYS
    assert printed["total"] == 7 and printed["duplicates"] == 2


def test_the_table_shows_the_matrix_the_totals_groups_and_alerts_without_colour_off_a_terminal(
    tracker,
):
    output = bugstatus()

    assert "\x1b[" not in output  # not a terminal: no escape codes
    lines = output.splitlines()
    header = next(line for line in lines if "critical" in line and "total" in line)
    assert header.split() == ["status", "critical", "high", "medium", "low", "total"]
    assert next(line for line in lines if line.strip().startswith("new ")).split() == [
        "new",
        "1",
        "2",
        "1",
        "1",
        "5",
    ]
    assert next(line for line in lines if line.strip().startswith("total ")).split() == [
        "total",
        "1",
        "2",
        "2",
        "2",
        "7",
    ]
    assert "SLA breached            1" in output
    assert "canonical / duplicates  5 / 2" in output
    assert "oldest open             10d 0h" in output
    assert "Top duplicate groups" in output and "Payments down" in output
    assert "ALERT The oldest open report is 240 h old" in output


def test_colour_only_on_a_terminal():
    class Terminal(StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    _console(stream).print("[red]alert[/red]")
    assert "\x1b[" in stream.getvalue()
    plain = StringIO()
    _console(plain).print("[red]alert[/red]")
    assert plain.getvalue() == "alert\n"


def test_one_report_with_its_events_and_runs(tracker):
    report = tracker["high"]
    report_add_event(
        report_id=report.pk, kind="note", actor="alice", message="Seen on staging [twice]"
    )
    AgentRun.objects.create(
        report=report,
        attempt=1,
        runner="worker-1",
        command=["fix"],
        finished_at=timezone.now(),
        exit_code=1,
        outcome="failed",
        error="boom",
    )

    output = bugstatus(str(report.pk))

    assert f"Report {report.pk}" in output
    assert report.title in output
    assert "Events (2)" in output and "created" in output and "Seen on staging [twice]" in output
    assert "Runs (1)" in output and "worker-1" in output and "failed" in output

    data = json.loads(bugstatus(str(report.pk), "--json"))
    assert data["id"] == str(report.pk)
    assert [e["kind"] for e in data["events"]] == ["created", "note"]
    assert data["runs"][0]["outcome"] == "failed"


def test_one_report_by_its_legacy_id_and_an_unknown_id(tracker):
    BugReport.objects.filter(pk=tracker["high"].pk).update(legacy_id="br-1690000148-0004")

    assert str(tracker["high"].pk) in bugstatus("br-1690000148-0004")
    with pytest.raises(CommandError, match="No bug report"):
        bugstatus("00000000-0000-0000-0000-000000000000")


def test_a_list_of_matching_reports(tracker):
    output = bugstatus("--status", "open", "--severity", "critical,high", "--limit", "2")

    assert "2 of 3 reports" in output
    assert str(tracker["critical"].pk)[:8] in output  # critical first (priority order)
    assert str(tracker["critical"].pk) not in output, "short ids in lists"
    assert "breached" in output

    data = json.loads(bugstatus("--status", "done", "--json"))
    assert data["count"] == 2
    assert {r["status"] for r in data["results"]} == {"resolved", "closed"}

    with pytest.raises(CommandError, match="unknown value 'parked'"):
        bugstatus("--status", "parked")
    with pytest.raises(CommandError, match="--limit"):
        bugstatus("--limit", "0")


def test_check_exits_1_only_when_a_backlog_alert_fires(settings):
    make_report()
    out = StringIO()
    call_command("bugstatus", "--check", stdout=out)
    assert out.getvalue().strip() == "OK: no backlog alert."

    settings.BACKLOG_ALERT_MAX_OPEN = 1
    make_report()
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("bugstatus", "--check", stdout=out)
    assert exit_info.value.code == 1
    alert = (
        "2 open incidents (canonical reports; 2 open reports with their duplicates), more than "
        "BACKLOG_ALERT_MAX_OPEN=1."
    )
    assert out.getvalue().strip() == f"ALERT: {alert}"
    assert backlog_alerts() == [alert]


@pytest.mark.django_db(transaction=True)
def test_check_exit_status_as_cron_sees_it(tmp_path):
    from tests.legacy.test_backfill_resume import child_env

    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "bugstatus"]
    aged(make_report(), hours=2)

    healthy = subprocess.run(
        [*manage, "--check"], env=child_env(), capture_output=True, text=True, timeout=60
    )
    alerting = subprocess.run(
        [*manage, "--check"],
        env={**child_env(), "BACKLOG_ALERT_MAX_AGE_HOURS": "1.5"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    printed = subprocess.run(
        [*manage, "--json"], env=child_env(), capture_output=True, text=True, timeout=60
    )

    assert healthy.returncode == 0, healthy.stderr
    assert alerting.returncode == 1
    assert alerting.stdout.startswith("ALERT: The oldest open report")
    assert json.loads(printed.stdout)["total"] == 1
