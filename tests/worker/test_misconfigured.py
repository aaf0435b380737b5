"""A worker that is set up wrong says so and harms nothing (issue 14, item 5)."""

import logging
import os
import sys
import time

import pytest
from django.core.management import CommandError, call_command

from remediation import startup as worker_module
from remediation.models import AgentRun
from remediation.startup import start_process_worker
from remediation.worker import RemediationWorker
from reports.models import BugReport
from tests.factories import make_report

from .helpers import SCRIPT


@pytest.fixture
def process_worker_reset():
    yield
    worker = worker_module.process_worker()
    if worker is not None:
        worker.stop(deadline=5)
    worker_module._process_worker = None
    worker_module._process_worker_pid = None


def automatable_reports():
    reports = [make_report(automation_enabled=True, metadata={"mode": "succeed"}) for _ in range(3)]
    BugReport.objects.filter(pk=reports[1].pk).update(attempts=2)
    return [*reports, make_report()]


def state():
    return list(
        BugReport.objects.order_by("id").values_list(
            "id", "status", "attempts", "automation_enabled", "next_attempt_at", "version"
        )
    )


@pytest.mark.django_db(transaction=True)
def test_a_missing_remediation_command_leaves_every_report_as_it_was(
    admin_client, caplog, process_worker_reset
):
    automatable_reports()
    before = state()
    caplog.set_level(logging.INFO, logger="remediation.worker")

    worker = start_process_worker(
        threads=2, poll_seconds=0.05, command=["/nonexistent/fixer"], timeout=5
    )
    time.sleep(1.0)  # twenty scans: before, each claimed a report and crashed its run
    assert worker.alive and worker.last_scan_at is not None

    assert state() == before, "attempts, automation, status and version all unchanged"
    assert not AgentRun.objects.exists()
    refusals = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(refusals) == 1, "one clear line, not one per scan"
    assert "/nonexistent/fixer does not exist" in refusals[0].getMessage()
    assert "refuses to run remediations" in refusals[0].getMessage()

    body = admin_client.get("/api/admin/status").json()
    problem = "REMEDIATION_COMMAND: /nonexistent/fixer does not exist."
    assert body["worker"]["alive"] is True
    assert body["worker"]["command_problem"] == problem
    assert body["worker"]["this_process"]["command_problem"] == problem


@pytest.mark.django_db
def test_a_command_that_cannot_start_counts_no_attempt_and_is_not_tried_again_until_it_changes(
    tmp_path, caplog
):
    fixer = tmp_path / "fixer"
    fixer.write_text("this is not a program\n")  # executable, but exec() refuses it
    fixer.chmod(0o755)
    report = make_report(automation_enabled=True, metadata={"mode": "succeed"})
    BugReport.objects.filter(pk=report.pk).update(attempts=2)
    other = make_report(automation_enabled=True, metadata={"mode": "succeed"})
    worker = RemediationWorker(
        holder="worker:test:9", threads=1, command=[str(fixer)], timeout=10, duties=False
    )

    item = worker.claim_next()
    assert item is not None
    assert worker.process(item) is False
    claimed = BugReport.objects.get(pk=item.report_id)
    assert (claimed.attempts, claimed.automation_enabled, claimed.next_attempt_at) == (
        2 if claimed.pk == report.pk else 0,
        True,
        None,
    )
    assert claimed.claim_holder is None
    run = AgentRun.objects.get()
    assert run.outcome == "crashed" and "Exec format error" in run.error
    released = claimed.events.filter(kind="released").last()
    assert "no attempt is counted" in released.message
    assert "Exec format error" in worker.command_problem

    before = state()
    assert worker.claim_next() is None, "no claims while the command is what it was"
    assert worker.scan_once() == 0
    assert state() == before and AgentRun.objects.count() == 1

    fixer.write_text(f"#!/bin/sh\nexec {sys.executable} {SCRIPT}\n")
    os.utime(fixer, ns=(time.time_ns(), time.time_ns()))
    item = worker.claim_next()
    assert item is not None and worker.command_problem is None
    assert worker.process(item) is True
    item = worker.claim_next()
    assert worker.process(item) is True
    for r in (report, other):
        r.refresh_from_db()
        assert r.status == "resolved"
    report.refresh_from_db()
    assert report.attempts == 2, "the successful run does not count either"


@pytest.mark.django_db
def test_run_worker_once_with_a_missing_command_exits_saying_why(settings):
    automatable_reports()
    before = state()
    settings.REMEDIATION_COMMAND = ["/nonexistent/fixer", "--fast"]
    with pytest.raises(CommandError, match=r"^REMEDIATION_COMMAND: /nonexistent/fixer does not"):
        call_command("run_worker", "--once")
    assert state() == before and not AgentRun.objects.exists()
