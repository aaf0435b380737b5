"""The cut-over (docs/rollout.md): reports imported `in_progress` stay with the old agents for
LEGACY_CLAIM_HOURS, and attempts the old system made do not count against MAX_ATTEMPTS."""

import json
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from legacy.mirror import mirror_write
from remediation.worker import RemediationWorker
from reports.models import BugReport

pytestmark = pytest.mark.django_db

FAILING = [sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(3)"]


def import_files(tmp_path, *records) -> None:
    folder = tmp_path / "legacy"
    folder.mkdir(exist_ok=True)
    for record in records:
        (folder / f"{record['id']}.json").write_text(json.dumps(record))
    call_command("backfill_json", str(folder), stdout=StringIO())


def legacy(ident: str, status: str, **fields) -> dict:
    return {
        "id": ident,
        "title": f"Legacy report {ident}",
        "component": f"component-{ident}",  # one bug each, not duplicates of one another
        "status": status,
        "severity": "high",
        "created_at": "2025-07-01T10:00:00Z",
        **fields,
    }


def test_in_progress_reports_come_in_claimed_by_legacy_and_claim_next_leaves_them_alone(
    tmp_path, settings, agent_client, admin_client
):
    settings.LEGACY_CLAIM_HOURS = 6
    before = timezone.now()
    import_files(
        tmp_path,
        legacy("old-1", "in_progress", assignee="old-fixer-3", severity="critical"),
        legacy("old-2", "open", severity="low"),
    )
    after = timezone.now()

    busy = BugReport.objects.get(legacy_id="old-1")
    assert (busy.status, busy.claim_holder, busy.assignee_id) == (
        "in_progress",
        "legacy",
        "old-fixer-3",
    )
    assert before + timedelta(hours=6) <= busy.claim_expires_at <= after + timedelta(hours=6)
    assert busy.claim_token_hash is None
    imported = busy.events.get(kind="imported")
    assert "claimed by legacy for 6 h (LEGACY_CLAIM_HOURS)" in imported.message
    assert BugReport.objects.get(legacy_id="old-2").claim_holder is None

    # claim-next skips it, even though it is critical and the other is low.
    first = agent_client.post("/api/bug-reports/claim-next", {}, format="json")
    assert first.status_code == 200 and first.json()["report"]["legacy_id"] == "old-2"
    assert agent_client.post("/api/bug-reports/claim-next", {}, format="json").status_code == 204
    taken = agent_client.post(f"/api/bug-reports/{busy.pk}/claim", {}, format="json")
    assert taken.status_code == 409 and "legacy" in taken.json()["detail"]

    # When the lease runs out, agents take it over as any expired claim.
    BugReport.objects.filter(pk=busy.pk).update(claim_expires_at=timezone.now())
    again = agent_client.post("/api/bug-reports/claim-next", {}, format="json")
    assert again.status_code == 200 and again.json()["report"]["id"] == str(busy.pk)
    expired = busy.events.get(kind="lease_expired")
    assert expired.message.startswith("Lease of legacy expired")


def test_an_admin_can_hand_a_legacy_claim_over_early(tmp_path, admin_client, agent_client):
    import_files(tmp_path, legacy("old-3", "in_progress"))
    busy = BugReport.objects.get(legacy_id="old-3")
    released = admin_client.post(f"/api/bug-reports/{busy.pk}/release", {}, format="json")
    assert released.status_code == 200
    claimed = agent_client.post("/api/bug-reports/claim-next", {}, format="json")
    assert claimed.json()["report"]["id"] == str(busy.pk)


def test_legacy_claim_hours_zero_imports_in_progress_reports_unclaimed(tmp_path, settings):
    settings.LEGACY_CLAIM_HOURS = 0
    import_files(tmp_path, legacy("old-4", "in_progress"))
    report = BugReport.objects.get(legacy_id="old-4")
    assert (report.status, report.claim_holder, report.claim_expires_at) == (
        "in_progress",
        None,
        None,
    )


def run_failing(worker) -> None:
    BugReport.objects.update(next_attempt_at=None)  # the cooldown is not under test here
    item = worker.claim_next()
    assert item is not None
    worker.process(item)


def test_attempts_from_the_flat_files_do_not_count_against_max_attempts(tmp_path, settings):
    settings.MAX_ATTEMPTS = 3
    import_files(
        tmp_path,
        legacy("old-5", "triaged", agent={"attempts": 2, "automation_enabled": True}),
    )
    report = BugReport.objects.get(legacy_id="old-5")
    assert (report.attempts, report.metadata["legacy"]["attempts"]) == (0, 2)
    assert (
        "2 attempt(s) in the old system do not count" in report.events.get(kind="imported").message
    )
    worker = RemediationWorker(holder="worker:test:5", threads=1, command=FAILING, duties=False)

    run_failing(worker)
    report.refresh_from_db()
    assert (report.attempts, report.automation_enabled) == (1, True), "not disabled after one"
    run_failing(worker)
    run_failing(worker)
    report.refresh_from_db()
    assert (report.attempts, report.automation_enabled) == (3, False)
    assert "failed 3 times" in report.events.get(kind="automation_disabled").message
    assert list(report.runs.values_list("attempt", flat=True)) == [1, 2, 3]
    assert report.metadata["legacy"]["attempts"] == 2


def test_the_mirror_shows_old_agents_every_attempt_and_reimports_them_apart(tmp_path, settings):
    import_files(
        tmp_path,
        legacy("old-6", "triaged", agent={"attempts": 2, "automation_enabled": True}),
    )
    worker = RemediationWorker(holder="worker:test:6", threads=1, command=FAILING, duties=False)
    run_failing(worker)
    report = BugReport.objects.get(legacy_id="old-6")

    path = mirror_write(report_id=report.pk, directory=tmp_path / "mirror")
    record = json.loads(path.read_text())
    assert record["agent"]["attempts"] == 3, "old agents count theirs and ours"
    assert record["_bugtracker"]["attempts"] == 1

    BugReport.objects.filter(pk=report.pk).delete()
    call_command("backfill_json", str(tmp_path / "mirror"), stdout=StringIO())
    again = BugReport.objects.get(pk=report.pk)
    assert (again.attempts, again.metadata["legacy"]["attempts"]) == (1, 2)
