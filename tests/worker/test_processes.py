import signal
import socket
import time
from collections import Counter

import pytest
from django.utils import timezone

from remediation.models import AgentRun
from reports.models import BugReport
from tests.factories import make_report

from .helpers import kill_quietly, pid_alive
from .processes import Child, child_env, free_port, run_manage

pytestmark = pytest.mark.django_db(transaction=True)


def test_run_worker_stops_cleanly_on_sigterm_and_gives_back_the_report_it_was_running(tmp_path):
    log = tmp_path / "runs.log"
    report = make_report(automation_enabled=True, metadata={"mode": "hang"})
    worker = Child.manage(
        "run_worker",
        "--threads",
        "1",
        "--drain-seconds",
        "1",
        env=child_env(log),
        output=tmp_path / "out",
    )
    try:
        worker.wait_for(log.exists, what="the run to start")
        script_pid = int(log.read_text().split()[1])
    finally:
        returncode = worker.stop(signal.SIGTERM)
    assert returncode == 0, worker.text()
    assert "Stopped." in worker.text()
    report.refresh_from_db()
    assert (report.status, report.claim_holder, report.attempts) == ("triaged", None, 0)
    assert report.runs.get().outcome == "crashed"
    assert not pid_alive(script_pid), "the run's process outlived the worker"


def test_run_worker_once_runs_what_is_due_and_exits(tmp_path):
    reports = [make_report(automation_enabled=True, metadata={"mode": "succeed"}) for _ in range(3)]
    result = run_manage("run_worker", "--once", env=child_env(tmp_path / "runs.log"))
    assert result.returncode == 0, result.stderr
    assert "Ran 3 report(s)." in result.stdout
    assert all(BugReport.objects.get(pk=r.pk).status == "resolved" for r in reports)


def test_a_worker_killed_mid_run_loses_nothing(tmp_path):
    log = tmp_path / "runs.log"
    report = make_report(automation_enabled=True, metadata={"mode": "hang_once"})
    env = child_env(log)
    first = Child.manage("run_worker", "--lease-seconds", "2", env=env, output=tmp_path / "first")
    try:
        first.wait_for(log.exists, what="the first run to start")
        first.process.kill()  # SIGKILL: no clean-up of any kind
        first.process.wait()
    finally:
        first.stop()
    # The runner it had started is an orphan now; it would hang until killed.
    kill_quietly(int(log.read_text().split()[1]))
    report.refresh_from_db()
    assert report.status == "in_progress" and report.claim_holder.endswith(f":{first.pid}")

    time.sleep(max(0.0, (report.claim_expires_at - timezone.now()).total_seconds()) + 0.2)
    result = run_manage("run_worker", "--once", env=env)
    assert result.returncode == 0, result.stderr
    report.refresh_from_db()
    assert report.status == "resolved"
    assert report.resolution_notes == f"Fixed: {report.title}"
    assert list(report.runs.values_list("outcome", flat=True)) == ["crashed", "succeeded"]
    assert report.events.filter(kind="lease_expired").exists()
    assert len(log.read_text().splitlines()) == 2


@pytest.mark.postgres
def test_two_run_workers_and_the_servers_worker_run_every_report_exactly_once(tmp_path):
    count = 50
    reports = [
        make_report(automation_enabled=True, metadata={"mode": "succeed"}, severity=s)
        for s, _ in zip(["critical", "high", "medium", "low"] * count, range(count), strict=False)
    ]
    log = tmp_path / "runs.log"
    env = child_env(log, WORKER_THREADS=2)
    children = [
        Child.manage("run_worker", "--poll-seconds", "0.1", env=env, output=tmp_path / "worker-1"),
        Child.manage("run_worker", "--poll-seconds", "0.1", env=env, output=tmp_path / "worker-2"),
        Child.manage(
            "runserver",
            f"127.0.0.1:{free_port()}",
            "--noreload",
            env=env,
            output=tmp_path / "server",
        ),
    ]
    started = time.monotonic()
    try:
        children[0].wait_for(
            lambda: BugReport.objects.filter(status="resolved").count() == count,
            timeout=240,
            what="every report to be resolved",
        )
        elapsed = time.monotonic() - started
    finally:
        codes = [child.stop(signal.SIGINT) for child in children]
    assert codes[:2] == [0, 0], [c.text()[-2000:] for c in children]

    runs_per_report = Counter(AgentRun.objects.values_list("report_id", flat=True))
    assert runs_per_report == Counter({r.pk: 1 for r in reports})
    assert set(AgentRun.objects.values_list("outcome", flat=True)) == {"succeeded"}
    lines = log.read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(str(r.pk) for r in reports)
    runners = Counter(AgentRun.objects.values_list("runner", flat=True))
    assert set(runners) <= {f"worker:{socket.gethostname()}:{child.pid}" for child in children}
    assert len(runners) >= 2, runners
    print(f"\n{count} reports over {len(runners)} workers in {elapsed:.1f}s: {dict(runners)}")
