import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from remediation import services as automation
from remediation.models import AgentRun
from remediation.worker import RemediationWorker
from reports.claims import report_claim, report_heartbeat
from reports.models import BugReport
from tests.factories import make_report

from .helpers import COMMAND, pid_alive

pytestmark = pytest.mark.django_db


@pytest.fixture
def script_log(tmp_path, monkeypatch):
    log = tmp_path / "runs.log"
    monkeypatch.setenv("REMEDIATION_LOG", str(log))
    return log


@pytest.fixture
def worker(script_log):
    return RemediationWorker(
        holder="worker:test:1",
        threads=1,
        lease_seconds=60,
        command=COMMAND,
        timeout=20,
        duties=False,
    )


def automatable(mode="succeed", **fields):
    return make_report(automation_enabled=True, metadata={"mode": mode}, **fields)


def run_next(worker) -> bool:
    item = worker.claim_next()
    if item is None:
        return False
    worker.process(item)
    return True


def kinds(report):
    return list(report.events.values_list("kind", flat=True))


def test_a_successful_run_resolves_with_the_notes_it_printed(worker, script_log):
    report = automatable(title="NullPointer in checkout")
    assert run_next(worker)
    report.refresh_from_db()
    assert report.status == "resolved"
    assert report.resolution_notes == "Fixed: NullPointer in checkout"
    assert report.commit_shas == ["0123abcd"]
    assert report.claim_holder is None and report.resolved_at is not None
    assert report.assignee_id == "worker:test:1"
    run = report.runs.get()
    assert (run.attempt, run.outcome, run.exit_code, run.runner) == (
        1,
        "succeeded",
        0,
        "worker:test:1",
    )
    assert run.command == COMMAND and run.finished_at >= run.started_at
    assert "a line on stderr" in run.output_tail
    assert kinds(report) == ["created", "claimed", "agent_action", "resolved"]
    resolved = report.events.get(kind="resolved")
    assert (resolved.actor, resolved.message) == ("worker:test:1", "Fixed: NullPointer in checkout")
    # The command read the report as the API shows it, and BUG_REPORT_ID matched it.
    seen = json.loads((script_log.parent / "runs.log.d" / f"{report.pk}.json").read_text())
    assert seen["id"] == str(report.pk) and seen["title"] == "NullPointer in checkout"
    assert seen["claim"]["holder"] == "worker:test:1"
    assert "claim_token_hash" not in seen and "claim_token" not in seen
    assert not run_next(worker)


def test_verify_hands_over_for_verification_and_plain_exit_zero_resolves_with_a_default_note(
    worker,
):
    verify = automatable("verify", severity="critical")
    plain = automatable("plain", severity="low")
    assert run_next(worker) and run_next(worker)
    verify.refresh_from_db()
    plain.refresh_from_db()
    assert verify.status == "awaiting_verification"
    assert plain.status == "resolved"
    assert plain.resolution_notes == "Resolved by automated remediation (run 1)."


def test_failure_retries_after_the_growing_cooldown_then_stops_at_max_attempts(worker, settings):
    settings.RETRY_COOLDOWN = 1.0
    settings.MAX_ATTEMPTS = 3
    report = automatable("fail")

    before = timezone.now()
    assert run_next(worker)
    report.refresh_from_db()
    assert (report.status, report.attempts, report.automation_enabled) == ("triaged", 1, True)
    assert report.claim_holder is None
    delay = report.next_attempt_at - before
    assert timedelta(seconds=1.0) <= delay <= timedelta(seconds=1.0 * 1.1 + 1)
    failed = report.events.filter(kind="run_failed").get()
    assert "Exited with status 3" in failed.message
    run = report.runs.get()
    assert (run.outcome, run.exit_code) == ("failed", 3)
    assert "boom: could not reproduce" in run.output_tail

    assert not run_next(worker), "claimed again inside the cooldown"
    time.sleep(max(0.0, (report.next_attempt_at - timezone.now()).total_seconds()) + 0.05)

    before = timezone.now()
    assert run_next(worker)
    report.refresh_from_db()
    assert report.attempts == 2
    assert report.next_attempt_at - before >= timedelta(seconds=2.0)  # 1.0 * 2^(2-1)
    assert not run_next(worker)
    time.sleep(max(0.0, (report.next_attempt_at - timezone.now()).total_seconds()) + 0.05)

    assert run_next(worker)
    report.refresh_from_db()
    assert (report.attempts, report.automation_enabled, report.next_attempt_at) == (3, False, None)
    assert report.status == "triaged" and report.claim_holder is None
    note = report.events.get(kind="automation_disabled")
    assert "failed 3 times" in note.message and "needs a human" in note.message
    assert list(report.runs.values_list("attempt", "outcome")) == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    time.sleep(0.2)
    assert not run_next(worker)


def test_a_timeout_kills_the_run_and_counts_as_a_failure(script_log, settings):
    settings.RETRY_COOLDOWN = 60
    worker = RemediationWorker(
        holder="worker:test:2", threads=1, command=COMMAND, timeout=1, duties=False
    )
    report = automatable("spawn_and_hang")
    started = time.monotonic()
    assert run_next(worker)
    assert time.monotonic() - started < 10
    report.refresh_from_db()
    run = report.runs.get()
    assert (run.outcome, run.exit_code) == ("timed_out", None)
    assert (report.attempts, report.status) == (1, "triaged")
    assert report.next_attempt_at > timezone.now()
    assert "timed out" in report.events.get(kind="run_failed").message
    child = int((script_log.parent / "runs.log.d" / f"{report.pk}.child").read_text())
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child)


def test_manual_reports_are_never_touched(worker, script_log):
    manual = make_report(metadata={"mode": "succeed"})
    held_by_agent = automatable()
    report_claim(report_id=held_by_agent.pk, actor="agent-1", lease_seconds=600)
    # An agent's in_progress report whose lease ran out is the agent's to come back to.
    agent_lapsed = automatable()
    report_claim(report_id=agent_lapsed.pk, actor="agent-2", lease_seconds=600)
    BugReport.objects.filter(pk=agent_lapsed.pk).update(
        claim_expires_at=timezone.now() - timedelta(seconds=1)
    )
    done = automatable(status="closed")
    duplicate = automatable(duplicate_of=manual)
    later = automatable(next_attempt_at=timezone.now() + timedelta(hours=1))
    untouched = {
        r.pk: r.version for r in (manual, held_by_agent, agent_lapsed, done, duplicate, later)
    }
    for report in (held_by_agent, agent_lapsed):
        report.refresh_from_db()
        untouched[report.pk] = report.version

    assert not run_next(worker)
    for pk, version in untouched.items():
        assert BugReport.objects.get(pk=pk).version == version
    assert not AgentRun.objects.exists()
    assert not script_log.exists()


def test_a_report_left_by_a_dead_worker_is_run_again_and_its_run_marked_crashed(worker):
    report = automatable()
    _claimed, token = automation.report_claim_for_automation(
        actor="worker:gone:99", lease_seconds=1
    )
    automation.run_start(
        report_id=report.pk, actor="worker:gone:99", claim_token=token, command=COMMAND
    )
    assert not run_next(worker), "the dead worker's lease is still live"
    time.sleep(1.1)

    assert run_next(worker)
    report.refresh_from_db()
    assert report.status == "resolved"
    runs = list(report.runs.values_list("runner", "outcome", "attempt"))
    assert runs == [("worker:gone:99", "crashed", 1), ("worker:test:1", "succeeded", 2)]
    assert "stopped before the run finished" in report.runs.first().error
    assert {"lease_expired", "run_failed"} <= set(kinds(report))
    # An expired lease is an attempt that ended without a fix (it counts towards MAX_ATTEMPTS).
    assert report.attempts == 1
    outcomes = list(report.claim_attempts.values_list("holder", "outcome"))
    assert outcomes == [("worker:gone:99", "expired"), ("worker:test:1", "resolved")]


def test_a_run_whose_lease_was_taken_over_does_not_touch_the_report(worker, settings):
    report = automatable("fail")
    item = worker.claim_next()
    token = worker._tokens[item.report_id]
    # Simulate losing the lease: it expires and someone else claims the report.
    BugReport.objects.filter(pk=report.pk).update(
        claim_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(Exception, match="lease"):
        report_heartbeat(report_id=report.pk, actor=worker.holder, claim_token=token)
    _, _other_token = report_claim(report_id=report.pk, actor="agent-1")
    worker.process(item)
    report.refresh_from_db()
    # The lapsed lease counts once (expired); the lost run counts nothing more.
    assert report.claim_holder == "agent-1" and report.attempts == 1
    assert not report.runs.exists(), "the run never started: the lease was gone"


def test_failure_after_the_lease_moved_on_records_the_run_but_leaves_the_report(worker):
    report = automatable()
    _claimed, token = automation.report_claim_for_automation(actor=worker.holder, lease_seconds=600)
    run = automation.run_start(
        report_id=report.pk, actor=worker.holder, claim_token=token, command=COMMAND
    )
    BugReport.objects.filter(pk=report.pk).update(
        claim_expires_at=timezone.now() - timedelta(seconds=1)
    )
    report_claim(report_id=report.pk, actor="agent-1")
    automation.report_run_failed(
        report_id=report.pk,
        run_id=run.pk,
        actor=worker.holder,
        claim_token=token,
        error="Exited with 1.",
    )
    report.refresh_from_db()
    run.refresh_from_db()
    assert (report.claim_holder, report.attempts, report.status) == ("agent-1", 1, "in_progress")
    assert run.outcome == "failed" and "lease was lost" in run.error


def test_retry_delay_doubles_with_each_attempt_plus_a_little_jitter(settings):
    settings.RETRY_COOLDOWN = 300
    for attempt, base in [(1, 300), (2, 600), (3, 1200), (4, 2400)]:
        delays = {automation.retry_delay(attempt=attempt).total_seconds() for _ in range(20)}
        assert all(base <= d <= base * 1.1 for d in delays)
        assert len(delays) > 1, "no jitter"


def test_no_command_claims_nothing(script_log):
    make_report(automation_enabled=True)
    worker = RemediationWorker(holder="worker:test:3", command=[], duties=False)
    assert worker.claim_next() is None
    assert worker.scan_once() == 0
    assert not BugReport.objects.filter(claim_holder__isnull=False).exists()


def test_scan_claims_only_as_many_reports_as_there_are_idle_runners(worker):
    for _ in range(3):
        automatable()
    assert worker.scan_once() == 1  # one runner thread, not started: the queue holds one
    assert worker.queue.depth == 1
    assert BugReport.objects.filter(claim_holder="worker:test:1").count() == 1
    assert worker.scan_once() == 0


def test_periodic_duties_sweep_leases_enrich_telemetry_and_warn_about_the_backlog(settings, caplog):
    from telemetry.services import release_record

    settings.BACKLOG_ALERT_MAX_OPEN = 1
    deployed = timezone.now() - timedelta(hours=2)
    release_record(
        sha="feedbeef01", version="1", environment="production", deployed_at=deployed, actor="ci"
    )
    unreleased = make_report(environment="production")
    lapsed = make_report()
    report_claim(report_id=lapsed.pk, actor="agent-1", lease_seconds=600)
    BugReport.objects.filter(pk=lapsed.pk).update(
        claim_expires_at=timezone.now() - timedelta(seconds=1)
    )

    worker = RemediationWorker(holder="worker:duties:1", command=COMMAND)
    with caplog.at_level("WARNING", logger="remediation.worker"):
        worker.run_duties(force=True)

    lapsed.refresh_from_db()
    assert lapsed.claim_holder is None
    assert lapsed.events.filter(kind="lease_expired").exists()
    unreleased.refresh_from_db()
    assert unreleased.release_sha == "feedbeef01"
    assert any(
        "Backlog alert" in r.message and "BACKLOG_ALERT_MAX_OPEN=1" in r.message
        for r in caplog.records
    )
    assert worker.last_backlog_alerts


def test_duties_run_on_their_own_schedule_not_every_poll(settings):
    settings.WORKER_SWEEP_SECONDS = 3600
    worker = RemediationWorker(holder="worker:duties:2", command=COMMAND)
    calls = []
    for duty in worker._duties:
        duty.run = lambda name=duty.name: calls.append(name)
    worker.run_duties()
    worker.run_duties()
    assert calls == ["lease_sweep", "telemetry_enrichment", "backlog_alerts"]


def test_a_result_line_the_resolve_validation_refuses_fails_the_run_saying_why(worker):
    report = automatable("bad_result")
    assert run_next(worker)
    report.refresh_from_db()
    assert (report.status, report.attempts, report.commit_shas) == ("triaged", 1, [])
    assert report.resolution_notes == ""
    run = report.runs.get()
    assert (run.outcome, run.exit_code) == ("failed", 0)
    why = (
        "The result line was refused: commit_shas.0: This value does not match the required "
        "pattern; extra: Unknown field."
    )
    assert why in run.error
    failed = report.events.get(kind="run_failed")
    assert why in failed.message and "was not resolved" in failed.message
