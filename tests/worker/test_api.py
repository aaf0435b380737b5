import time

import pytest

from remediation import startup as worker_module
from remediation.startup import start_process_worker
from remediation.worker import RemediationWorker
from tests.factories import make_report

from .helpers import COMMAND


@pytest.fixture
def script_log(tmp_path, monkeypatch):
    log = tmp_path / "runs.log"
    monkeypatch.setenv("REMEDIATION_LOG", str(log))
    return log


@pytest.fixture
def process_worker_reset():
    yield
    worker = worker_module.process_worker()
    if worker is not None:
        worker.stop(deadline=5)
    worker_module._process_worker = None
    worker_module._process_worker_pid = None


@pytest.mark.django_db
def test_runs_endpoint_lists_a_reports_runs_oldest_first(agent_client, script_log, settings):
    settings.RETRY_COOLDOWN = 0
    report = make_report(automation_enabled=True, metadata={"mode": "fail"})
    worker = RemediationWorker(holder="worker:api:1", threads=1, command=COMMAND, duties=False)
    for _ in range(2):
        worker.process(worker.claim_next())

    response = agent_client.get(f"/api/bug-reports/{report.pk}/runs")
    assert response.status_code == 200
    runs = response.json()["results"]
    assert [(r["attempt"], r["outcome"], r["exit_code"]) for r in runs] == [
        (1, "failed", 3),
        (2, "failed", 3),
    ]
    assert set(runs[0]) >= {
        "runner",
        "command",
        "started_at",
        "finished_at",
        "duration_seconds",
        "output_tail",
        "error",
    }
    assert runs[0]["duration_seconds"] > 0
    assert agent_client.get(f"/api/bug-reports/{report.pk}/runs/").status_code == 200
    assert (
        agent_client.get("/api/bug-reports/00000000-0000-0000-0000-000000000000/runs").status_code
        == 404
    )
    assert agent_client.get("/api/bug-reports/nope/runs").status_code == 404


@pytest.mark.django_db
def test_runs_endpoint_needs_an_agent(api_client, reporter_client):
    report = make_report()
    assert api_client.get(f"/api/bug-reports/{report.pk}/runs").status_code == 401
    assert reporter_client.get(f"/api/bug-reports/{report.pk}/runs").status_code == 403


@pytest.mark.django_db
def test_admin_status_is_for_admins_only(api_client, agent_client, admin_client):
    assert api_client.get("/api/admin/status").status_code == 401
    assert agent_client.get("/api/admin/status").status_code == 403
    response = admin_client.get("/api/admin/status/")
    assert response.status_code == 200
    body = response.json()
    assert body["worker"]["alive"] is False
    assert body["queue"] == {"depth": 0, "in_flight": 0, "processed": 0, "failed": 0}
    assert body["last_scan_at"] is None
    assert body["thresholds"] == {"max_open": 500, "max_age_hours": 168.0}
    assert body["backlog_alerts"] == []


@pytest.mark.django_db
def test_admin_status_shows_backlog_alerts(admin_client, settings):
    settings.BACKLOG_ALERT_MAX_OPEN = 1
    make_report()
    make_report()
    alerts = admin_client.get("/api/admin/status").json()["backlog_alerts"]
    assert len(alerts) == 1 and alerts[0].startswith("2 open incidents")


@pytest.mark.django_db(transaction=True)
def test_a_running_worker_works_the_queue_and_shows_in_admin_status(
    admin_client, script_log, settings, process_worker_reset
):
    settings.RETRY_COOLDOWN = 3600
    good = [make_report(automation_enabled=True, metadata={"mode": "succeed"}) for _ in range(3)]
    bad = make_report(automation_enabled=True, metadata={"mode": "fail"})
    manual = make_report()

    worker = start_process_worker(threads=2, poll_seconds=0.1, command=COMMAND, timeout=20)
    assert start_process_worker() is worker, "once per process"
    deadline = time.monotonic() + 30
    while worker.queue.metrics().processed + worker.queue.metrics().failed < 4:
        assert time.monotonic() < deadline, worker.snapshot()
        time.sleep(0.05)

    body = admin_client.get("/api/admin/status").json()
    assert body["worker"]["alive"] is True
    assert body["worker"]["this_process"]["holder"] == worker.holder
    assert (body["queue"]["processed"], body["queue"]["failed"]) == (3, 1)
    assert body["last_scan_at"] is not None
    assert body["runs"]["by_outcome"]["succeeded"] == 3
    assert body["runs"]["by_outcome"]["failed"] == 1
    assert body["runs"]["duration_p50"] > 0
    assert body["runs"]["duration_p95"] >= body["runs"]["duration_p50"]

    worker.stop(deadline=5)
    assert not worker.alive
    for report in good:
        report.refresh_from_db()
        assert report.status == "resolved"
        assert report.runs.count() == 1
    bad.refresh_from_db()
    assert (bad.status, bad.attempts) == ("triaged", 1)
    manual.refresh_from_db()
    assert manual.version == 1 and not manual.runs.exists()
    assert sorted(line.split()[0] for line in script_log.read_text().splitlines()) == sorted(
        str(r.pk) for r in [*good, bad]
    )


@pytest.mark.django_db(transaction=True)
def test_stopping_mid_run_gives_the_report_back_without_counting_an_attempt(
    script_log, process_worker_reset
):
    report = make_report(automation_enabled=True, metadata={"mode": "hang"})
    worker = RemediationWorker(
        holder="worker:stop:1", threads=1, poll_seconds=0.1, command=COMMAND, duties=False
    )
    worker.start()
    deadline = time.monotonic() + 20
    while not script_log.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    worker.stop(deadline=0.5)
    assert time.monotonic() - started < 10
    report.refresh_from_db()
    assert (report.status, report.claim_holder, report.attempts) == ("triaged", None, 0)
    run = report.runs.get()
    assert run.outcome == "crashed" and "worker stopped" in run.error
    assert report.events.last().kind == "released"
